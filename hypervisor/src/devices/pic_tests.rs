//! Tests of the 8259A pair: initialisation, priorities and nesting, EOI forms, rotation, auto-EOI, the
//! cascade, poll, special mask mode, edge and level triggering, the spurious slave vector.

use super::pic::*;

/// The pair remapped to 0x20/0x28 as ring1pv and Linux do, with the masks given.
fn remapped(master_mask: u8, slave_mask: u8, icw4: u8) -> Pics {
    let mut p = Pics::new();
    for (port, v) in [
        (0x20, 0x11),
        (0xa0, 0x11),
        (0x21, 0x20),
        (0xa1, 0x28),
        (0x21, 0x04),
        (0xa1, 0x02),
        (0x21, icw4),
        (0xa1, icw4),
        (0x21, master_mask),
        (0xa1, slave_mask),
    ] {
        p.write(port, v);
    }
    p
}

#[test]
fn bios_defaults_then_remap() {
    let mut p = Pics::new();
    assert_eq!((p.master.base, p.slave.base), (0x08, 0x70));
    p.pulse(0);
    assert_eq!(p.pending_vector(), None, "masked at power-on");
    let mut p = remapped(0x00, 0x00, 0x01);
    assert_eq!(p.master.step, InitStep::Ready);
    assert_eq!(
        (p.master.base, p.slave.base, p.master.icw3, p.slave.icw3),
        (0x20, 0x28, 4, 2)
    );
    assert_eq!(p.read(0x21), 0x00);
    p.pulse(1);
    assert_eq!(p.pending_vector(), Some(0x21));
}

#[test]
fn fully_nested_priorities() {
    let mut p = remapped(0x00, 0xff, 0x01);
    p.pulse(4);
    p.pulse(3);
    assert_eq!(p.acknowledge(), Some(0x23), "line 3 before line 4");
    assert_eq!(p.pending_vector(), None, "line 4 waits for line 3's EOI");
    p.pulse(0);
    assert_eq!(p.acknowledge(), Some(0x20), "line 0 nests above line 3");
    assert_eq!(p.master.isr, 0b1001);
    p.write(0x20, 0x20); // non-specific EOI: the highest in service (0)
    assert_eq!(p.master.isr, 0b1000);
    p.write(0x20, 0x63); // specific EOI for line 3
    assert_eq!(p.master.isr, 0);
    assert_eq!(p.acknowledge(), Some(0x24));
    assert_eq!(p.acknowledge(), None);
}

#[test]
fn irr_isr_and_imr_reads() {
    let mut p = remapped(0xfe, 0xff, 0x01);
    p.pulse(0);
    p.pulse(5);
    assert_eq!(p.read(0x20), 0x21, "IRR by default");
    p.write(0x20, 0x0b);
    assert_eq!(p.read(0x20), 0x00, "ISR");
    p.acknowledge();
    assert_eq!(p.read(0x20), 0x01);
    p.write(0x20, 0x0a);
    assert_eq!(p.read(0x20), 0x20, "IRR: line 5 still requested, masked");
    assert_eq!(p.read(0x21), 0xfe);
    p.write(0x21, 0x00);
    assert_eq!(p.pending_vector(), None, "line 5 below line 0 in service");
}

#[test]
fn auto_eoi_and_rotation() {
    let mut p = remapped(0x00, 0xff, 0x03);
    p.pulse(3);
    p.pulse(0);
    assert_eq!(p.acknowledge(), Some(0x20));
    assert_eq!(p.master.isr, 0, "auto-EOI");
    assert_eq!(p.acknowledge(), Some(0x23));
    // Rotate in auto-EOI mode: the line just served becomes the lowest priority.
    p.write(0x20, 0x80);
    p.pulse(0);
    p.pulse(5);
    assert_eq!(p.acknowledge(), Some(0x20));
    p.pulse(0);
    assert_eq!(
        p.acknowledge(),
        Some(0x25),
        "line 0 now has the lowest priority"
    );
    assert_eq!(p.acknowledge(), Some(0x20));
}

#[test]
fn rotate_on_eoi_and_set_priority() {
    let mut p = remapped(0x00, 0xff, 0x01);
    p.pulse(0);
    assert_eq!(p.acknowledge(), Some(0x20));
    p.write(0x20, 0xa0); // rotate on non-specific EOI
    assert_eq!(p.master.priority_add, 1);
    p.pulse(0);
    p.pulse(6);
    assert_eq!(p.acknowledge(), Some(0x26), "line 0 is now lowest");
    p.write(0x20, 0xe6); // rotate on specific EOI (line 6): line 7 highest
    p.pulse(7);
    assert_eq!(p.acknowledge(), Some(0x27));
    p.write(0x20, 0x20);
    p.write(0x20, 0xc7); // set priority: line 7 lowest, line 0 highest
    assert_eq!(p.acknowledge(), Some(0x20));
}

#[test]
fn cascade_and_slave_eoi() {
    let mut p = remapped(0xfb, 0xfe, 0x01);
    p.set_level(8, true);
    assert_eq!(p.pending_vector(), Some(0x28));
    assert_eq!(p.acknowledge(), Some(0x28));
    assert_eq!((p.master.isr, p.slave.isr), (0x04, 0x01));
    p.set_level(8, false);
    p.write(0xa0, 0x20);
    p.write(0x20, 0x20);
    assert_eq!((p.master.isr, p.slave.isr), (0, 0));
    // The cascade masked: nothing from the slave.
    p.write(0x21, 0xff);
    p.pulse(8);
    assert_eq!(p.pending_vector(), None);
    assert!(p.line_masked(8) && p.line_masked(0) && p.line_masked(2));
    p.write(0x21, 0xfb);
    assert_eq!(
        p.acknowledge(),
        Some(0x28),
        "latched in the slave, seen when the cascade opens"
    );
}

#[test]
fn vanished_slave_request_gives_the_spurious_vector() {
    let mut p = remapped(0xfb, 0xfe, 0x01);
    p.pulse(8);
    // Mask the slave line after the master latched the cascade request.
    p.write(0xa1, 0xff);
    assert_eq!(p.master.irr & 4, 4);
    assert_eq!(p.acknowledge(), Some(0x2f), "slave line 7");
    assert_eq!(p.slave.isr, 0, "a spurious interrupt is not in service");
}

#[test]
fn poll_command() {
    let mut p = remapped(0xff, 0xff, 0x01);
    p.pulse(6);
    p.write(0x20, 0x0c);
    assert_eq!(p.read(0x20), 0x00, "a masked request is not polled");
    let mut p = remapped(0x00, 0xff, 0x01);
    p.write(0x20, 0x0c);
    assert_eq!(p.read(0x20), 0x00, "nothing pending");
    p.pulse(6);
    p.write(0x20, 0x0c);
    assert_eq!(p.read(0x20), 0x86);
    assert_eq!(p.master.isr, 0x40, "the poll acknowledged it");
    assert_eq!(p.read(0x20), 0x00, "next read is IRR again");
}

#[test]
fn edge_detection() {
    let mut p = remapped(0x00, 0xff, 0x01);
    p.set_level(4, true);
    assert_eq!(p.acknowledge(), Some(0x24));
    p.write(0x20, 0x20);
    assert_eq!(p.pending_vector(), None, "still high: no new edge");
    p.set_level(4, false);
    p.set_level(4, true);
    assert_eq!(p.pending_vector(), Some(0x24));
    // ICW1 resets the detectors: a line high across initialisation must fall and rise again.
    let mut q = p;
    q.write(0x20, 0x11);
    q.write(0x21, 0x20);
    q.write(0x21, 0x04);
    q.write(0x21, 0x01);
    assert_eq!(q.master.imr, 0, "ICW1 cleared the mask");
    assert_eq!(q.pending_vector(), None);
    q.set_level(4, true);
    assert_eq!(q.pending_vector(), None);
}

#[test]
fn level_triggered_mode() {
    let mut p = Pics::new();
    for (port, v) in [
        (0x20, 0x19),
        (0x21, 0x40),
        (0x21, 0x04),
        (0x21, 0x01),
        (0x21, 0x00),
    ] {
        p.write(port, v);
    }
    assert!(p.master.level_triggered);
    p.set_level(3, true);
    assert_eq!(p.acknowledge(), Some(0x43));
    p.write(0x20, 0x20);
    assert_eq!(p.pending_vector(), Some(0x43), "still high: requests again");
    p.set_level(3, false);
    assert_eq!(p.pending_vector(), None, "IRR follows the line");
}

#[test]
fn special_mask_mode() {
    let mut p = remapped(0x00, 0xff, 0x01);
    p.pulse(0);
    assert_eq!(p.acknowledge(), Some(0x20));
    p.pulse(5);
    assert_eq!(p.pending_vector(), None);
    // Mask line 0 and set special mask mode: its in-service bit no longer blocks line 5.
    p.write(0x21, 0x01);
    p.write(0x20, 0x68);
    assert_eq!(p.pending_vector(), Some(0x25));
    p.write(0x20, 0x48);
    assert_eq!(p.pending_vector(), None, "special mask mode off again");
}

#[test]
fn short_initialisations() {
    // Single chip, ICW4: no ICW3.
    let mut p = Pics::new();
    p.write(0x20, 0x13);
    p.write(0x21, 0x50);
    assert_eq!(p.master.step, InitStep::Icw4);
    p.write(0x21, 0x01);
    assert_eq!(p.master.step, InitStep::Ready);
    // Cascade without ICW4.
    p.write(0xa0, 0x10);
    p.write(0xa1, 0x78);
    p.write(0xa1, 0x02);
    assert_eq!(p.slave.step, InitStep::Ready);
    assert_eq!(p.slave.base, 0x78);
    p.write(0xa1, 0x55);
    assert_eq!(p.slave.imr, 0x55);
    // ICW2's low bits are not part of the base.
    p.write(0x20, 0x11);
    p.write(0x21, 0x27);
    assert_eq!(p.master.base, 0x20);
}

#[test]
fn elcr_makes_single_lines_level_triggered() {
    let mut p = remapped(0x00, 0x00, 0x01);
    p.write_elcr(MASTER_ELCR, 0xff);
    p.write_elcr(SLAVE_ELCR, 0xff);
    assert_eq!(
        (p.read_elcr(MASTER_ELCR), p.read_elcr(SLAVE_ELCR)),
        (0xf8, 0xde),
        "0, 1, 2, 8, 13 stay edge"
    );
    p.set_level(5, true);
    assert_eq!(p.acknowledge(), Some(0x25));
    p.write(0x20, 0x20);
    assert_eq!(
        p.pending_vector(),
        Some(0x25),
        "level: requests again while high"
    );
    p.set_level(5, false);
    assert_eq!(p.pending_vector(), None);
    // Line 0 stays edge-triggered.
    p.set_level(0, true);
    assert_eq!(p.acknowledge(), Some(0x20));
    p.write(0x20, 0x20);
    assert_eq!(p.pending_vector(), None);
    // Switching a high line to level mode requests at once.
    p.write_elcr(MASTER_ELCR, 0);
    p.set_level(6, true);
    assert_eq!(p.acknowledge(), Some(0x26));
    p.write(0x20, 0x20);
    assert_eq!(p.pending_vector(), None);
    p.write_elcr(MASTER_ELCR, 0x40);
    assert_eq!(p.pending_vector(), Some(0x26));
}
