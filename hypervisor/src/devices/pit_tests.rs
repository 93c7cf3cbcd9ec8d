//! Tests of the 8254: counting in each mode against the 1,193,182 Hz clock, IRQ 0 edges and their
//! coalescing, the byte-access flip-flops, counter latch and read-back, BCD, channel 2's gate and port
//! 0x61.

use super::pit::*;

/// The system time of `ticks` input clocks after `from` (rounded up, as the model computes it).
fn at(from: u64, ticks: u64) -> u64 {
    from + (u128::from(ticks) * 1_000_000_000).div_ceil(1_193_182) as u64
}

fn program(p: &mut Pit, ch: u16, control: u8, count: u16, now: u64) {
    p.write(0x43, control, now);
    match (control >> 4) & 3 {
        1 => p.write(0x40 + ch, count as u8, now),
        2 => p.write(0x40 + ch, (count >> 8) as u8, now),
        _ => {
            p.write(0x40 + ch, count as u8, now);
            p.write(0x40 + ch, (count >> 8) as u8, now);
        }
    }
}

fn read16(p: &mut Pit, ch: u16, now: u64) -> u16 {
    let lo = p.read(0x40 + ch, now);
    let hi = p.read(0x40 + ch, now);
    u16::from(lo) | u16::from(hi) << 8
}

/// Channel 0's status through the read-back command (status only).
fn status0(p: &mut Pit, now: u64) -> u8 {
    p.write(0x43, 0xe2, now);
    p.read(0x40, now)
}

fn latched(p: &mut Pit, ch: u16, now: u64) -> u16 {
    p.write(0x43, (ch as u8) << 6, now);
    read16(p, ch, now)
}

#[test]
fn mode2_edges_every_period() {
    let mut p = Pit::new();
    let t0 = 5_000;
    program(&mut p, 0, 0x34, 1000, t0);
    assert_eq!(p.next_irq_ns(), Some(at(t0, 1000)));
    assert!(!p.advance(at(t0, 1000) - 1));
    assert!(p.advance(at(t0, 1000)));
    assert!(!p.advance(at(t0, 1000)), "once");
    assert_eq!(p.next_irq_ns(), Some(at(t0, 2000)));
    // Counter values over one period: 1000 down to 1.
    assert_eq!(latched(&mut p, 0, at(t0, 1000)), 1000);
    assert_eq!(latched(&mut p, 0, at(t0, 1500)), 500);
    assert_eq!(latched(&mut p, 0, at(t0, 1999)), 1);
    // OUT goes low on count 1 only.
    assert!(p.channels[0].out(at(t0, 1998)));
    assert!(!p.channels[0].out(at(t0, 1999)));
    // A long absence: one edge, the next deadline in the future, on the period grid.
    assert!(p.advance(at(t0, 1_000_500)));
    assert_eq!(p.next_irq_ns(), Some(at(t0, 1_001_000)));
}

#[test]
fn mode3_square_wave() {
    let mut p = Pit::new();
    program(&mut p, 0, 0x36, 100, 0);
    let c = p.channels[0];
    assert!(c.out(at(0, 0)) && c.out(at(0, 49)));
    assert!(!c.out(at(0, 50)) && !c.out(at(0, 99)));
    assert!(c.out(at(0, 100)));
    assert_eq!(latched(&mut p, 0, at(0, 10)), 80, "counts down by two");
    assert_eq!(latched(&mut p, 0, at(0, 60)), 80, "second half reloads");
    assert!(p.advance(at(0, 100)));
    assert_eq!(p.next_irq_ns(), Some(at(0, 200)));
    // Count 0 is 65536: about 54.9 ms (18.2 Hz, the BIOS tick).
    program(&mut p, 0, 0x36, 0, 0);
    assert_eq!(p.next_irq_ns(), Some(at(0, 65_536)));
    assert_eq!(at(0, 65_536), 54_925_402);
}

#[test]
fn mode0_interrupt_on_terminal_count() {
    let mut p = Pit::new();
    program(&mut p, 0, 0x30, 500, 0);
    assert!(!p.channels[0].out(at(0, 499)));
    assert!(p.channels[0].out(at(0, 500)));
    assert!(p.advance(at(0, 10_000)));
    assert_eq!(p.next_irq_ns(), None, "one shot");
    assert!(!p.advance(at(0, 100_000)));
    assert_eq!(
        latched(&mut p, 0, at(0, 501)),
        0xffff,
        "keeps counting, wrapped"
    );
    // The first byte of a new count stops it (OUT low) until the second arrives.
    p.write(0x43, 0x30, at(0, 600));
    assert!(!p.channels[0].out(at(0, 600)));
    p.write(0x40, 0x10, at(0, 600));
    assert_eq!(p.next_irq_ns(), None);
    p.write(0x40, 0x00, at(0, 700));
    assert_eq!(p.next_irq_ns(), Some(at(at(0, 700), 16)));
}

#[test]
fn mode4_strobe_one_clock_late() {
    let mut p = Pit::new();
    program(&mut p, 0, 0x38, 100, 0);
    let c = p.channels[0];
    assert!(c.out(at(0, 99)) && !c.out(at(0, 100)) && c.out(at(0, 101)));
    assert_eq!(p.next_irq_ns(), Some(at(0, 101)));
}

#[test]
fn byte_access_modes_and_flip_flops() {
    let mut p = Pit::new();
    // Low byte only.
    program(&mut p, 0, 0x14, 0x80, 0);
    assert_eq!(p.channels[0].count, 0x80);
    assert_eq!(p.read(0x40, at(0, 0x10)), 0x70);
    // High byte only.
    program(&mut p, 0, 0x24, 0x0200, 0);
    assert_eq!(p.channels[0].count, 0x200);
    assert_eq!(p.read(0x40, at(0, 0x100)), 0x01);
    // Both: the read flip-flop alternates and a control word resets it.
    program(&mut p, 0, 0x34, 0x1234, 0);
    assert_eq!(p.read(0x40, 0), 0x34);
    p.write(0x43, 0x34, 0);
    p.write(0x40, 0x34, 0);
    p.write(0x40, 0x12, 0);
    assert_eq!(read16(&mut p, 0, 0), 0x1234);
}

#[test]
fn latch_holds_while_time_passes() {
    let mut p = Pit::new();
    program(&mut p, 0, 0x34, 10_000, 0);
    p.write(0x43, 0x00, at(0, 100));
    p.write(0x43, 0x00, at(0, 200)); // a second latch before reading is ignored
    assert_eq!(read16(&mut p, 0, at(0, 5000)), 9_900);
    assert_eq!(read16(&mut p, 0, at(0, 5000)), 5_000, "latch released");
}

#[test]
fn read_back_status_and_count() {
    let mut p = Pit::new();
    program(&mut p, 2, 0xb6, 1000, 0); // channel 2, both bytes, mode 3
    p.write(0x43, 0x30, 0); // channel 0 control word only: null count, OUT low
    // Read-back of status and count for channels 0 and 2.
    p.write(0x43, 0xc0 | 0x08 | 0x02, at(0, 10));
    assert_eq!(
        p.read(0x40, at(0, 500)),
        0x40 | 0x30,
        "OUT low, null count, both bytes, mode 0"
    );
    assert_eq!(read16(&mut p, 0, at(0, 500)), 0);
    assert_eq!(
        p.read(0x42, at(0, 500)),
        0x80 | 0x30 | 0x06,
        "mode 3, gate low: OUT held high"
    );
}

#[test]
fn bcd_counting() {
    let mut p = Pit::new();
    program(&mut p, 0, 0x35, 0x1000, 0); // mode 2, BCD 1000
    assert_eq!(p.channels[0].count, 1000);
    assert_eq!(latched(&mut p, 0, at(0, 1)), 0x0999);
    assert_eq!(p.next_irq_ns(), Some(at(0, 1000)));
    program(&mut p, 0, 0x35, 0, 0);
    assert_eq!(p.channels[0].count, 10_000, "0 is 10^4 in BCD");
}

#[test]
fn channel2_gate_and_port_b() {
    let mut p = Pit::new();
    assert_eq!(p.read_port_b(0) & 0x03, 0, "gate and speaker off");
    // Mode 1 (hardware one-shot): waits for the gate.
    program(&mut p, 2, 0xb2, 100, 0);
    assert_eq!(p.read_port_b(at(0, 500)) & 0x20, 0x20, "not triggered");
    p.write_port_b(0x01, at(0, 500));
    assert_eq!(p.read_port_b(at(0, 550)) & 0x21, 0x01, "triggered: OUT low");
    assert_eq!(p.read_port_b(at(0, 600)) & 0x20, 0x20, "count done");
    // Mode 2 with the gate low holds; the rising gate reloads.
    let t = at(0, 600);
    program(&mut p, 2, 0xb4, 100, t);
    p.write_port_b(0x00, at(t, 50));
    assert_eq!(latched(&mut p, 2, at(t, 5000)), 50);
    let t = at(t, 5000);
    p.write_port_b(0x03, t);
    assert_eq!(latched(&mut p, 2, at(t, 10)), 90);
    assert!(p.speaker);
    p.write_port_b(0xff, at(t, 10));
    assert_eq!(
        p.read_port_b(at(t, 10)) & 0xcf,
        0x0f,
        "bits 0-3 as written, 6-7 clear"
    );
    // The refresh bit toggles every 18 clocks.
    assert_ne!(
        p.read_port_b(at(0, 0)) & 0x10,
        p.read_port_b(at(0, 18)) & 0x10
    );
    assert_eq!(
        p.next_irq_ns(),
        Some(at(0, 65_536)),
        "channel 2 is not IRQ 0: the BIOS tick only"
    );
}

#[test]
fn channel0_gate_is_tied_high() {
    let mut p = Pit::new();
    program(&mut p, 0, 0x32, 100, 0); // mode 1 on channel 0: never triggers
    assert_eq!(p.next_irq_ns(), None);
    assert!(!p.advance(u64::MAX));
    program(&mut p, 0, 0x3e, 100, 0); // mode 7 is mode 3
    assert_eq!(p.channels[0].mode, 3);
    assert_eq!(p.next_irq_ns(), Some(at(0, 100)));
}

#[test]
fn new_count_without_control_word() {
    // Mode 2: the new count is loaded at the end of the current period.
    let mut p = Pit::new();
    program(&mut p, 0, 0x34, 1000, 0);
    p.write(0x40, 0xf4, at(0, 300));
    p.write(0x40, 0x01, at(0, 300)); // 500
    assert_eq!(status0(&mut p, at(0, 300)) & 0x40, 0x40, "null count");
    assert_eq!(latched(&mut p, 0, at(0, 400)), 600, "still the old period");
    assert_eq!(p.next_irq_ns(), Some(at(0, 1000)));
    assert!(p.advance(at(0, 1000)));
    let t = at(0, 1000);
    assert_eq!(p.next_irq_ns(), Some(at(t, 500)), "then every 500");
    assert_eq!(latched(&mut p, 0, at(t, 100)), 400);
    assert_eq!(status0(&mut p, at(t, 100)) & 0x40, 0);
    // Mode 0: a new count restarts at once.
    program(&mut p, 0, 0x30, 1000, 0);
    p.write(0x40, 0x10, at(0, 300));
    p.write(0x40, 0x00, at(0, 300));
    assert_eq!(p.next_irq_ns(), Some(at(at(0, 300), 16)));
    // Mode 1 on channel 2: the new count waits for the next trigger.
    program(&mut p, 2, 0xb2, 100, 0);
    p.write_port_b(1, 0);
    p.write(0x42, 50, at(0, 10));
    p.write(0x42, 0, at(0, 10));
    assert_eq!(
        latched(&mut p, 2, at(0, 20)),
        80,
        "the running one-shot goes on"
    );
    p.write_port_b(0, at(0, 200));
    p.write_port_b(1, at(0, 200));
    assert_eq!(
        latched(&mut p, 2, at(at(0, 200), 10)),
        40,
        "retriggered with 50"
    );
}

#[test]
fn bios_tick_and_written_edges() {
    let mut p = Pit::new();
    assert_eq!((p.channels[0].mode, p.channels[0].count), (3, 65_536));
    assert!(!p.advance(at(0, 65_535)));
    assert!(p.advance(at(0, 65_536)), "18.2 Hz from reset");
    // Stop the channel (mode 0 control word: OUT low), then program mode 2: OUT rises, an edge.
    let t = at(0, 70_000);
    p.write(0x43, 0x30, t);
    assert!(!p.advance(t));
    p.write(0x43, 0x34, t);
    assert!(p.advance(t), "the output rose on the control word");
    assert!(!p.advance(t));
    // Mode 2 again while OUT is high: no edge.
    p.write(0x43, 0x34, t);
    assert!(!p.advance(t));
}
