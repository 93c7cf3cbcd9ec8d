//! Board-level tests: the programming sequences ring1pv's native backend (and a Linux-like kernel) uses,
//! through port accesses only, with the vectors, timings and bytes a real PC gives.

use super::*;

const MS: u64 = 1_000_000;

fn out(b: &mut Board, port: u16, v: u8, now: u64) -> IoEffect {
    b.io_out(port, 1, u32::from(v), now)
}

fn inb(b: &mut Board, port: u16, now: u64) -> u8 {
    b.io_in(port, 1, now) as u8
}

/// ring1pv's `pic_init_sequence(0x20)` then the masks for timer and COM1 open.
fn remap(b: &mut Board) {
    for (port, v) in [
        (0x20, 0x11),
        (0xa0, 0x11),
        (0x21, 0x20),
        (0xa1, 0x28),
        (0x21, 0x04),
        (0xa1, 0x02),
        (0x21, 0x01),
        (0xa1, 0x01),
        (0x21, 0xfb),
        (0xa1, 0xff),
    ] {
        assert_eq!(out(b, port, v, 0), IoEffect::None);
    }
}

#[test]
fn debug_line() {
    let mut b = Board::new(0);
    remap(&mut b);
    assert_eq!(
        b.to_string(),
        "pic base 0x20/0x28 irr 00/00 isr 00/00 imr fb/ff; pit0 mode 3 count 65536; \
         uart ier 0 iir 1 rx 0; rtc b 02 c 00"
    );
}

#[test]
fn bios_state_delivers_nothing() {
    let mut b = Board::new(0);
    // A PIT running but every PIC line masked.
    out(&mut b, 0x43, 0x34, 0);
    out(&mut b, 0x40, 0x9c, 0);
    out(&mut b, 0x40, 0x2e, 0);
    b.advance(100 * MS);
    assert_eq!(b.pending_vector(), None);
    assert_eq!(b.acknowledge(), None);
    assert_eq!(b.next_deadline_ns(), None, "IRQ 0 masked: no wake-up");
}

#[test]
fn periodic_timer_after_remap() {
    let mut b = Board::new(0);
    remap(&mut b);
    // 10 ms periodic (11,932 clocks), mode 2, as set_periodic_timer does.
    out(&mut b, 0x43, 0x34, 0);
    out(&mut b, 0x40, 0x9c, 0);
    out(&mut b, 0x40, 0x2e, 0);
    out(&mut b, 0x21, 0xfa, 0); // timer unmasked
    let period = (11_932u128 * 1_000_000_000).div_ceil(1_193_182) as u64;
    assert_eq!(b.next_deadline_ns(), Some(period));
    b.advance(period - 1);
    assert_eq!(b.pending_vector(), None, "not yet due");
    b.advance(period);
    assert_eq!(b.pending_vector(), Some(0x20));
    assert_eq!(b.acknowledge(), Some(0x20));
    assert_eq!(b.pending_vector(), None, "in service");
    // ISR shows line 0 (OCW3 read ISR), then a non-specific EOI clears it.
    out(&mut b, 0x20, 0x0b, period);
    assert_eq!(inb(&mut b, 0x20, period), 0x01);
    out(&mut b, 0x20, 0x20, period);
    assert_eq!(inb(&mut b, 0x20, period), 0x00);
    // The domain was descheduled for a second: one late tick, not a hundred.
    b.advance(period + 1000 * MS);
    assert_eq!(b.acknowledge(), Some(0x20));
    out(&mut b, 0x20, 0x20, period + 1000 * MS);
    assert_eq!(b.pending_vector(), None, "missed periods coalesced");
    let next = b.next_deadline_ns().unwrap();
    assert!(next > period + 1000 * MS && next <= period + 1010 * MS + 1);
}

#[test]
fn channel0_oneshot_calibration_like_ring1pv() {
    // calibrate_tsc: mode 0, count 59,659 (50 ms), latch and read until 0 or wrap.
    let mut b = Board::new(0);
    remap(&mut b);
    out(&mut b, 0x43, 0x30, 0);
    out(&mut b, 0x40, 59_659u16 as u8, 0);
    out(&mut b, 0x40, (59_659u16 >> 8) as u8, 0);
    let read = |b: &mut Board, now| {
        out(b, 0x43, 0x00, now);
        let lo = inb(b, 0x40, now);
        let hi = inb(b, 0x40, now);
        u16::from(lo) | u16::from(hi) << 8
    };
    assert_eq!(read(&mut b, 0), 59_659);
    let c = read(&mut b, 25 * MS);
    assert!((29_820..=29_840).contains(&c), "{c}");
    let end = (59_659u128 * 1_000_000_000).div_ceil(1_193_182) as u64;
    assert_eq!(read(&mut b, end), 0, "terminal count");
    assert_eq!(
        read(&mut b, end + 2 * MS),
        0xffff - 2386 + 1,
        "then it wraps"
    );
    // The terminal count latched IRQ 0 while masked; unmasking shows it.
    assert_eq!(b.pending_vector(), None);
    out(&mut b, 0x21, 0xfa, end + 3 * MS);
    assert_eq!(b.pending_vector(), Some(0x20));
    // pit_stop: a control word alone stops the channel.
    b.acknowledge();
    out(&mut b, 0x20, 0x20, end + 3 * MS);
    out(&mut b, 0x43, 0x30, end + 3 * MS);
    assert_eq!(b.next_deadline_ns(), None);
    b.advance(end + 1000 * MS);
    assert_eq!(b.pending_vector(), None);
}

#[test]
fn channel2_calibration_through_port_61() {
    // The classic loop: gate on, speaker off, mode 0 on channel 2, poll OUT in port 0x61 bit 5.
    let mut b = Board::new(0);
    let p61 = inb(&mut b, 0x61, 0);
    out(&mut b, 0x61, (p61 & !0x02) | 0x01, 0);
    out(&mut b, 0x43, 0xb0, 0);
    out(&mut b, 0x42, 0x9c, 0); // 11,932: 10 ms
    out(&mut b, 0x42, 0x2e, 0);
    assert_eq!(inb(&mut b, 0x61, 0) & 0x21, 0x01, "gate on, OUT low");
    assert_eq!(inb(&mut b, 0x61, 9 * MS) & 0x20, 0, "still counting");
    let end = (11_932u128 * 1_000_000_000).div_ceil(1_193_182) as u64;
    assert_eq!(inb(&mut b, 0x61, end - 1) & 0x20, 0);
    assert_eq!(
        inb(&mut b, 0x61, end) & 0x20,
        0x20,
        "OUT high at terminal count"
    );
    // Gate off pauses a mode-0 count.
    out(&mut b, 0x43, 0xb0, end);
    out(&mut b, 0x42, 0xff, end);
    out(&mut b, 0x42, 0xff, end);
    out(&mut b, 0x61, 0x00, end + MS);
    out(&mut b, 0x43, 0x80, end + 5 * MS);
    let lo = inb(&mut b, 0x42, end + 5 * MS);
    let hi = inb(&mut b, 0x42, end + 5 * MS);
    let v = u16::from(lo) | u16::from(hi) << 8;
    assert_eq!(v, 0xffff - 1193, "paused after 1 ms");
    // Channel 2 never touches IRQ 0: only channel 0's BIOS tick is due.
    assert_eq!(b.pit().next_irq_ns(), Some(54_925_402));
}

#[test]
fn uart_polled_output_and_input() {
    let mut b = Board::new(0);
    // ring1pv's init_sequence(COM1, 1).
    for (port, v) in [
        (0x3f9, 0),
        (0x3fb, 0x80),
        (0x3f8, 1),
        (0x3f9, 0),
        (0x3fb, 0x03),
        (0x3fa, 0x07),
        (0x3fc, 0x03),
    ] {
        assert_eq!(out(&mut b, port, v, 0), IoEffect::None);
    }
    assert_eq!(b.uart().divisor, 1);
    for &c in b"hi\r\n" {
        assert_eq!(inb(&mut b, 0x3fd, 0) & 0x60, 0x60, "THRE and TEMT");
        assert_eq!(out(&mut b, 0x3f8, c, 0), IoEffect::Output(c));
    }
    assert_eq!(inb(&mut b, 0x3fd, 0) & 1, 0);
    b.push_input(b'x');
    b.push_input(b'y');
    assert_eq!(inb(&mut b, 0x3fd, 0) & 1, 1);
    assert_eq!(inb(&mut b, 0x3f8, 0), b'x');
    assert_eq!(inb(&mut b, 0x3f8, 0), b'y');
    assert_eq!(inb(&mut b, 0x3fd, 0) & 1, 0);
}

#[test]
fn uart_rx_interrupt_on_irq4() {
    let mut b = Board::new(0);
    remap(&mut b);
    out(&mut b, 0x3fa, 0x07, 0);
    // rx_interrupt_sequence, and line 4 unmasked.
    out(&mut b, 0x3f9, 0x01, 0);
    out(&mut b, 0x3fc, 0x0b, 0);
    out(&mut b, 0x21, 0xeb, 0);
    assert_eq!(b.pending_vector(), None);
    b.push_input(b'a');
    assert_eq!(b.pending_vector(), Some(0x24));
    assert_eq!(b.acknowledge(), Some(0x24));
    assert_eq!(inb(&mut b, 0x3fa, 0), 0xc4, "FIFOs on, received data");
    assert_eq!(inb(&mut b, 0x3f8, 0), b'a');
    assert_eq!(inb(&mut b, 0x3fa, 0), 0xc1, "nothing pending");
    out(&mut b, 0x20, 0x20, 0);
    b.push_input(b'b');
    assert_eq!(
        b.acknowledge(),
        Some(0x24),
        "a new edge after the line fell"
    );
}

#[test]
fn rtc_reads_like_the_native_backend() {
    // 2026-12-02 03:12:27 UTC.
    let wall = 20_789 * 86_400 + 3 * 3600 + 12 * 60 + 27;
    let mut b = Board::new(wall);
    let cmos = |b: &mut Board, r: u8, now| {
        out(b, 0x70, r, now);
        inb(b, 0x71, now)
    };
    let now = 5 * 1_000_000_000 + 1000;
    assert_eq!(cmos(&mut b, 0x0a, now) & 0x80, 0, "no update in progress");
    assert_eq!(cmos(&mut b, 0x00, now), 0x32, "27 + 5 s in BCD");
    assert_eq!(cmos(&mut b, 0x02, now), 0x12);
    assert_eq!(cmos(&mut b, 0x04, now), 0x03);
    assert_eq!(cmos(&mut b, 0x07, now), 0x02);
    assert_eq!(cmos(&mut b, 0x08, now), 0x12);
    assert_eq!(cmos(&mut b, 0x09, now), 0x26);
    assert_eq!(cmos(&mut b, 0x32, now), 0x20);
    assert_eq!(cmos(&mut b, 0x0b, now), 0x02, "24-hour BCD");
    assert_eq!(cmos(&mut b, 0x8b, now), 0x02, "the NMI-mask bit is ignored");
    assert_eq!(
        cmos(&mut b, 0x0a, 6 * 1_000_000_000 - 1000) & 0x80,
        0x80,
        "UIP"
    );
}

#[test]
fn debug_exit_and_unknown_ports() {
    let mut b = Board::new(0);
    assert_eq!(b.io_out(0xf4, 4, 0x31, 0), IoEffect::Shutdown(0x31));
    assert_eq!(b.io_out(0xf4, 1, 0x1ff, 0), IoEffect::Shutdown(0xff));
    assert_eq!(b.io_out(0xf4, 2, 0x12345, 0), IoEffect::Shutdown(0x2345));
    assert_eq!(b.io_in(0xf4, 4, 0), 0xffff_ffff);
    assert_eq!(b.io_in(0x1234, 1, 0), 0xff);
    assert_eq!(b.io_in(0x1234, 2, 0), 0xffff);
    assert_eq!(b.io_in(0x1234, 4, 0), 0xffff_ffff);
    assert_eq!(b.io_in(0x1234, 3, 0), 0xffff_ffff);
    assert_eq!(b.io_out(0x1234, 4, 7, 0), IoEffect::None);
    assert_eq!(b.io_out(0xf4, 3, 7, 0), IoEffect::None, "invalid size");
}

#[test]
fn wide_accesses_split_into_bytes() {
    let mut b = Board::new(0);
    remap(&mut b);
    // outw 0x20: 0x20 ← 0x0b (read ISR), 0x21 ← 0xfa (mask).
    b.io_out(0x20, 2, 0xfa0b, 0);
    assert_eq!(b.pic().master.imr, 0xfa);
    assert!(b.pic().master.read_isr);
    assert_eq!(b.io_out(0x3f8, 2, 0x0041, 0), IoEffect::Output(b'A'));
    assert_eq!(b.io_out(0x3f7, 2, 0x4200, 0), IoEffect::Output(b'B'));
}

#[test]
fn rtc_periodic_interrupt_through_the_slave() {
    let mut b = Board::new(0);
    remap(&mut b);
    out(&mut b, 0x21, 0xfb, 0); // cascade open (the timer's BIOS tick stays masked)
    out(&mut b, 0xa1, 0xfe, 0); // IRQ 8
    out(&mut b, 0x70, 0x0b, 0);
    out(&mut b, 0x71, 0x42, 0); // PIE, 24 h
    assert_eq!(
        b.next_deadline_ns(),
        Some(976_563),
        "the RTC's 1024 Hz, no PIT"
    );
    b.advance(976_563);
    assert_eq!(b.acknowledge(), Some(0x28));
    out(&mut b, 0x70, 0x0c, 976_563);
    assert_eq!(inb(&mut b, 0x71, 976_563), 0xc0);
    out(&mut b, 0xa0, 0x20, 976_563);
    out(&mut b, 0x20, 0x20, 976_563);
    b.advance(1_953_125);
    assert_eq!(b.acknowledge(), Some(0x28), "C was read: a new edge");
    // Not reading C: the line stays up, no further interrupt.
    out(&mut b, 0xa0, 0x20, 1_953_125);
    out(&mut b, 0x20, 0x20, 1_953_125);
    b.advance(10 * MS);
    assert_eq!(b.pending_vector(), None);
    assert_eq!(b.next_deadline_ns(), None);
}

#[test]
fn the_end_of_time() {
    let mut b = Board::new(u64::MAX);
    remap(&mut b);
    b.io_out(0x21, 1, 0, 0);
    b.io_out(0xa1, 1, 0, 0);
    out(&mut b, 0x43, 0x34, 0);
    out(&mut b, 0x40, 1, 0);
    out(&mut b, 0x40, 0, 0);
    out(&mut b, 0x70, 0x0b, 0);
    out(&mut b, 0x71, 0x72, 0);
    for now in [
        u64::MAX / 2,
        u64::MAX - 1_000_000_000,
        u64::MAX - 1,
        u64::MAX,
    ] {
        b.advance(now);
        if let Some(d) = b.next_deadline_ns() {
            assert!(d > now);
        }
        while b.acknowledge().is_some() {
            out(&mut b, 0xa0, 0x20, now);
            out(&mut b, 0x20, 0x20, now);
        }
        for r in 0..0x40 {
            out(&mut b, 0x70, r, now);
            inb(&mut b, 0x71, now);
        }
    }
    assert_eq!(
        b.rtc().secs(u64::MAX),
        253_402_300_799,
        "9999-12-31 23:59:59 at most"
    );
}

#[test]
#[ignore = "a measurement: run it with --release -- --ignored --nocapture"]
fn measure() {
    let mut b = Board::new(0);
    remap(&mut b);
    out(&mut b, 0x43, 0x34, 0);
    out(&mut b, 0x40, 0xa9, 0);
    out(&mut b, 0x40, 0x04, 0);
    let n = 10_000_000u64;
    let t = std::time::Instant::now();
    let mut acc = 0u32;
    for i in 0..n {
        acc ^= b.io_in(0x3fd, 1, i * 100);
        b.io_out(0x3f8, 1, u32::from(b'x'), i * 100);
    }
    let per = t.elapsed().as_nanos() as f64 / (2 * n) as f64;
    eprintln!(
        "Board: {} bytes; {per:.1} ns per port access (LSR read / THR write pairs, time advancing) [{acc}]",
        core::mem::size_of::<Board>()
    );
}

#[test]
fn feed_input_takes_only_what_the_receiver_has_room_for() {
    let mut b = Board::new(0);
    let mut queued: std::collections::VecDeque<u8> = b"abc".iter().copied().collect();
    b.feed_input(|| queued.pop_front());
    assert_eq!(queued.len(), 2, "no FIFO: one byte, the rest stays queued");
    assert_eq!(b.io_in(0x3f8, 1, 0), u32::from(b'a'));
    b.feed_input(|| queued.pop_front());
    assert_eq!(b.io_in(0x3f8, 1, 0), u32::from(b'b'));
    assert_eq!(b.io_in(0x3fd, 1, 0) & 2, 0, "no overrun");
}
