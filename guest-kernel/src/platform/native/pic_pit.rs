//! The 8259 PIC pair and the 8254 PIT, as port writes and arithmetic: remapping the PICs' vectors above
//! the exceptions, line masks, end-of-interrupt, the PIT's divisors for a period or a one-shot deadline,
//! and the TSC frequency from a PIT-timed interval. Pure and host-tested; the backend performs the I/O.

/// Master PIC command / data ports.
pub const PIC1_CMD: u16 = 0x20;
/// Master PIC data (mask) port.
pub const PIC1_DATA: u16 = 0x21;
/// Slave PIC command port.
pub const PIC2_CMD: u16 = 0xa0;
/// Slave PIC data (mask) port.
pub const PIC2_DATA: u16 = 0xa1;
/// The vector of IRQ 0 after remapping (IRQ n → vector 0x20 + n).
pub const IRQ_BASE: u8 = 0x20;
/// The non-specific end-of-interrupt command.
pub const EOI: u8 = 0x20;

/// The PIT's input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// PIT channel 0 data port.
pub const PIT_CH0: u16 = 0x40;
/// PIT mode/command port.
pub const PIT_CMD: u16 = 0x43;
/// Command: channel 0, low then high byte, mode 2 (rate generator: periodic), binary.
pub const PIT_MODE_PERIODIC: u8 = 0x34;
/// Command: channel 0, low then high byte, mode 0 (interrupt on terminal count: one-shot), binary.
pub const PIT_MODE_ONESHOT: u8 = 0x30;

/// The initialisation words that remap the master to `base` and the slave to `base + 8` (cascade on
/// IRQ 2, 8086 mode), leaving every line masked but the cascade.
pub const fn pic_init_sequence(base: u8) -> [(u16, u8); 10] {
    [
        (PIC1_CMD, 0x11), // ICW1: edge, cascade, ICW4 follows
        (PIC2_CMD, 0x11),
        (PIC1_DATA, base), // ICW2: vector base
        (PIC2_DATA, base + 8),
        (PIC1_DATA, 0x04), // ICW3: slave on IRQ 2
        (PIC2_DATA, 0x02), // ICW3: slave identity 2
        (PIC1_DATA, 0x01), // ICW4: 8086 mode
        (PIC2_DATA, 0x01),
        (PIC1_DATA, 0xfb), // masks: all but the cascade
        (PIC2_DATA, 0xff),
    ]
}

/// The (master, slave) mask bytes that leave exactly `enabled` (a bit per IRQ 0..16) unmasked; the
/// cascade line is open whenever a slave line is.
pub const fn masks(enabled: u16) -> (u8, u8) {
    let slave = !(enabled >> 8) as u8;
    let mut master = !(enabled as u8);
    if slave != 0xff {
        master &= !0x04;
    }
    (master, slave)
}

/// The IRQ line of a vector, if the vector is a remapped PIC line.
pub const fn irq_of_vector(vector: u8) -> Option<u8> {
    if vector >= IRQ_BASE && vector < IRQ_BASE + 16 {
        Some(vector - IRQ_BASE)
    } else {
        None
    }
}

/// The command ports an end-of-interrupt for `irq` goes to, in order (slave lines need both).
pub const fn eoi_ports(irq: u8) -> &'static [u16] {
    if irq >= 8 {
        &[PIC2_CMD, PIC1_CMD]
    } else {
        &[PIC1_CMD]
    }
}

/// The PIT count for an interval of `ns`, clamped to the counter's range (1..=65536, 0 meaning 65536).
pub const fn pit_count(ns: u64) -> u32 {
    let ticks = (ns as u128 * PIT_HZ as u128).div_ceil(1_000_000_000);
    if ticks < 1 {
        1
    } else if ticks > 65_536 {
        65_536
    } else {
        ticks as u32
    }
}

/// The bytes written to channel 0 for `count` (low, high; 65536 is written as 0).
pub const fn pit_count_bytes(count: u32) -> (u8, u8) {
    let c = (count & 0xffff) as u16;
    (c as u8, (c >> 8) as u8)
}

/// The TSC frequency in Hz from `tsc_delta` cycles counted over `pit_ticks` PIT input clocks.
pub const fn tsc_hz(tsc_delta: u64, pit_ticks: u32) -> u64 {
    if pit_ticks == 0 {
        return 0;
    }
    (tsc_delta as u128 * PIT_HZ as u128 / pit_ticks as u128) as u64
}

/// Nanoseconds for `cycles` TSC cycles at `hz`.
pub const fn tsc_to_ns(cycles: u64, hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    (cycles as u128 * 1_000_000_000 / hz as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pic_remap_puts_irqs_above_the_exceptions() {
        let seq = pic_init_sequence(IRQ_BASE);
        assert_eq!(seq[0], (0x20, 0x11));
        assert_eq!(seq[2], (0x21, 0x20), "IRQ 0 → vector 0x20");
        assert_eq!(seq[3], (0xa1, 0x28), "IRQ 8 → vector 0x28");
        assert_eq!(&seq[8..], &[(0x21, 0xfb), (0xa1, 0xff)]);
        assert_eq!(irq_of_vector(0x20), Some(0));
        assert_eq!(irq_of_vector(0x24), Some(4), "COM1");
        assert_eq!(irq_of_vector(0x2f), Some(15));
        assert_eq!(irq_of_vector(0x1f), None, "an exception");
        assert_eq!(irq_of_vector(0x30), None);
        assert_eq!(irq_of_vector(0x80), None, "the system-call gate");
    }

    #[test]
    fn masks_open_exactly_the_enabled_lines() {
        assert_eq!(masks(0), (0xff, 0xff));
        assert_eq!(masks(1 << 0 | 1 << 4), (0xee, 0xff), "timer and COM1");
        assert_eq!(masks(1 << 8), (0xfb, 0xfe), "RTC opens the cascade");
        assert_eq!(eoi_ports(4), &[0x20]);
        assert_eq!(eoi_ports(8), &[0xa0, 0x20]);
    }

    #[test]
    fn pit_counts() {
        assert_eq!(pit_count(10_000_000), 11_932, "10 ms, rounded up");
        assert_eq!(pit_count(1_000_000), 1_194);
        assert_eq!(pit_count(0), 1, "never zero: zero means 65536");
        assert_eq!(pit_count(1), 1);
        assert_eq!(
            pit_count(1_000_000_000),
            65_536,
            "clamped to the longest interval"
        );
        assert_eq!(pit_count_bytes(11_932), (0x9c, 0x2e));
        assert_eq!(pit_count_bytes(65_536), (0, 0));
        assert_ne!(PIT_MODE_PERIODIC, PIT_MODE_ONESHOT);
    }

    #[test]
    fn tsc_calibration() {
        // 10 ms of PIT input clock during which the TSC advanced 30 million cycles: 3 GHz.
        let hz = tsc_hz(30_000_000, 11_932);
        assert!((2_999_000_000..3_001_000_000).contains(&hz), "{hz}");
        assert_eq!(tsc_hz(1, 0), 0);
        assert_eq!(tsc_to_ns(3_000_000_000, 3_000_000_000), 1_000_000_000);
        assert_eq!(tsc_to_ns(3, 3_000_000_000), 1);
        assert_eq!(
            tsc_to_ns(u64::MAX, 1_000_000_000),
            u64::MAX,
            "no overflow at 1 GHz"
        );
        assert_eq!(tsc_to_ns(5, 0), 0);
    }
}
