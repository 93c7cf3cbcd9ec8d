//! End-to-end tests of a Board driven the way a kernel drives real hardware, with time passing per port
//! access as it does for a trapped guest (1 µs per access here): ring1pv's native boot (TSC calibration on
//! channel 0, the RTC read with its UIP wait and double read), a Linux-style channel-2 calibration, and a
//! periodic-timer interrupt loop with the native backend's ISR read and EOI.

use super::*;

/// A guest on a 3 GHz CPU whose every port access takes `cost_ns`.
struct Guest {
    board: Board,
    now: u64,
    cost_ns: u64,
}

impl Guest {
    fn new(wall: u64) -> Guest {
        Guest {
            board: Board::new(wall),
            now: 1_000_000,
            cost_ns: 1_000,
        }
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.now += self.cost_ns;
        assert_eq!(
            self.board.io_out(port, 1, u32::from(v), self.now),
            IoEffect::None
        );
    }
    fn inb(&mut self, port: u16) -> u8 {
        self.now += self.cost_ns;
        self.board.io_in(port, 1, self.now) as u8
    }
    fn rdtsc(&self) -> u64 {
        self.now * 3
    }
    /// `devices::pit_read`: latch channel 0 and read both bytes.
    fn pit_read(&mut self) -> u16 {
        self.outb(0x43, 0x00);
        let lo = self.inb(0x40);
        let hi = self.inb(0x40);
        u16::from(lo) | u16::from(hi) << 8
    }
    fn cmos(&mut self, r: u8) -> u8 {
        self.outb(0x70, r);
        self.inb(0x71)
    }
}

fn hz_from(tsc: u64, pit_ticks: u64) -> u64 {
    (u128::from(tsc) * 1_193_182 / u128::from(pit_ticks)) as u64
}

#[test]
fn ring1pv_native_tsc_calibration() {
    let mut g = Guest::new(0);
    // devices::calibrate_tsc(59_659): one-shot on channel 0, poll the latched count until 0 or a wrap.
    let count = 59_659u16;
    g.outb(0x43, 0x30);
    g.outb(0x40, count as u8);
    g.outb(0x40, (count >> 8) as u8);
    let start = g.rdtsc();
    let mut last = g.pit_read();
    let mut spins = 0;
    loop {
        let now = g.pit_read();
        if now == 0 || now > last {
            break;
        }
        last = now;
        spins += 1;
        assert!(spins < 1_000_000, "the count never ended");
    }
    let hz = hz_from(g.rdtsc() - start, u64::from(count));
    assert!((2_999_000_000..3_001_000_000).contains(&hz), "{hz}");
    g.outb(0x43, 0x30); // pit_stop
    assert_eq!(g.board.next_deadline_ns(), None);
}

#[test]
fn linux_style_channel2_calibration() {
    let mut g = Guest::new(0);
    // Gate on, speaker off; channel 2 mode 0, 10 ms; wait for OUT in port 0x61 bit 5.
    let b = g.inb(0x61);
    g.outb(0x61, (b & !0x02) | 0x01);
    g.outb(0x43, 0xb0);
    let latch = 11_932u16;
    g.outb(0x42, latch as u8);
    g.outb(0x42, (latch >> 8) as u8);
    let start = g.rdtsc();
    let mut polls = 0;
    while g.inb(0x61) & 0x20 == 0 {
        polls += 1;
        assert!(polls < 1_000_000);
    }
    let hz = hz_from(g.rdtsc() - start, u64::from(latch));
    assert!((2_999_000_000..3_001_000_000).contains(&hz), "{hz}");
    assert!(
        (9_990..10_010).contains(&polls),
        "{polls} polls of 1 µs in 10 ms"
    );
}

#[test]
fn ring1pv_native_rtc_read() {
    // 2026-12-02 03:12:27, read starting 50 µs before a second boundary: UIP is set, the reader waits.
    let wall = 20_789 * 86_400 + 3 * 3600 + 12 * 60 + 27;
    let mut g = Guest::new(wall);
    g.now = 7 * 1_000_000_000 - 50_000;
    let read = |g: &mut Guest| {
        let mut spins = 0;
        while g.cmos(0x0a) & 0x80 != 0 && spins < 1_000_000 {
            spins += 1;
        }
        [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32, 0x0b].map(|r| g.cmos(r))
    };
    let a = read(&mut g);
    let b = read(&mut g);
    assert_eq!(a, b, "two reads agree");
    let bcd = |v: u8| u32::from(v >> 4) * 10 + u32::from(v & 0xf);
    let [sec, min, hour, day, month, year, century, status_b] = a;
    assert_eq!(status_b, 0x02, "BCD, 24-hour");
    let days = rtc::days_from_civil(
        i64::from(bcd(century) * 100 + bcd(year)),
        bcd(month),
        bcd(day),
    );
    let secs = days * 86_400 + i64::from(bcd(hour) * 3600 + bcd(min) * 60 + bcd(sec));
    assert_eq!(secs, wall as i64 + 7, "the second after the update");
}

#[test]
fn periodic_timer_loop_with_native_eoi() {
    let mut g = Guest::new(0);
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
        g.outb(port, v);
    }
    // set_periodic_timer(1 ms): 1,194 clocks, mode 2; then pic_line(0, true).
    g.outb(0x43, 0x34);
    g.outb(0x40, (1_194u16 & 0xff) as u8);
    g.outb(0x40, (1_194u16 >> 8) as u8);
    g.outb(0x21, 0xfa);
    g.outb(0xa1, 0xff);
    let t0 = g.now;
    let mut ticks = 0;
    // Halt until each deadline; take the interrupt; irq_dispatch reads ISR and sends EOI.
    while ticks < 100 {
        let d = g.board.next_deadline_ns().expect("a timer is programmed");
        assert!(d > g.now);
        g.now = d;
        g.board.advance(g.now);
        assert_eq!(g.board.acknowledge(), Some(0x20));
        g.outb(0x20, 0x0b);
        g.outb(0xa0, 0x0b);
        let isr = u16::from(g.inb(0x20)) | u16::from(g.inb(0xa0)) << 8;
        assert_eq!(isr, 1);
        g.outb(0x20, 0x20);
        ticks += 1;
    }
    let elapsed = g.now - t0;
    // 100 periods of 1,194 clocks: 100.068 ms (the guest's own accesses run inside the periods).
    assert!((100_000_000..100_100_000).contains(&elapsed), "{elapsed}");
    // Descheduled for a second: one interrupt, then the period grid again.
    g.now += 1_000_000_000;
    g.board.advance(g.now);
    assert_eq!(g.board.acknowledge(), Some(0x20));
    g.outb(0x20, 0x20);
    assert_eq!(g.board.acknowledge(), None);
    let d = g.board.next_deadline_ns().unwrap();
    assert!(d > g.now && d - g.now <= 1_000_800, "{}", d - g.now);
}

#[test]
fn console_output_and_input_like_the_native_backend() {
    let mut g = Guest::new(0);
    for (port, v) in [
        (0x3f9, 0),
        (0x3fb, 0x80),
        (0x3f8, 1),
        (0x3f9, 0),
        (0x3fb, 0x03),
        (0x3fa, 0x07),
        (0x3fc, 0x03),
    ] {
        g.outb(port, v);
    }
    // put_byte: wait for THR empty (never waits), then write.
    let mut wire = Vec::new();
    for &c in b"ok\r\n" {
        let mut spins = 0;
        while g.inb(0x3fd) & 0x20 == 0 {
            spins += 1;
            assert!(spins < 10);
        }
        g.now += 1000;
        match g.board.io_out(0x3f8, 1, u32::from(c), g.now) {
            IoEffect::Output(b) => wire.push(b),
            e => panic!("{e:?}"),
        }
    }
    assert_eq!(wire, b"ok\r\n");
    // irq_unmask(console): IER RX, OUT2, PIC line 4; typed bytes raise IRQ 4 once per edge.
    for (port, v) in [
        (0x20, 0x11),
        (0x21, 0x20),
        (0x21, 0x04),
        (0x21, 0x01),
        (0x21, 0xef),
        (0x3f9, 0x01),
        (0x3fc, 0x0b),
    ] {
        g.outb(port, v);
    }
    for &c in b"ls\r" {
        g.board.push_input(c);
    }
    assert_eq!(g.board.acknowledge(), Some(0x24));
    // console_read: drain while LSR says data ready.
    let mut got = Vec::new();
    while g.inb(0x3fd) & 1 != 0 {
        got.push(g.inb(0x3f8));
    }
    assert_eq!(got, b"ls\r");
    g.outb(0x20, 0x20);
    assert_eq!(g.board.pending_vector(), None);
}
