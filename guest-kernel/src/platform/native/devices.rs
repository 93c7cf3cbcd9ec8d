//! The native backend's legacy devices (bare metal): the 8259 PIC pair, the 8254 PIT (timer and TSC
//! calibration) and the CMOS RTC. The arithmetic is in [`super::pic_pit`] and [`super::rtc`].

use core::sync::atomic::{AtomicU16, Ordering};

use super::pic_pit::{self as pp, EOI, PIC1_CMD, PIC1_DATA, PIC2_CMD, PIC2_DATA};
use super::rtc;
use crate::arch::x86_64::native::{inb, outb};
use crate::arch::x86_64::tsc::rdtsc_ordered;

/// PIC lines the kernel has unmasked.
static ENABLED: AtomicU16 = AtomicU16::new(0);

/// Remap the PICs to vectors 0x20..0x30, every line masked.
pub fn pic_init() {
    for (port, v) in pp::pic_init_sequence(pp::IRQ_BASE) {
        outb(port, v);
    }
    ENABLED.store(0, Ordering::Relaxed);
}

/// Unmask (`on`) or mask PIC line `line`.
pub fn pic_line(line: u8, on: bool) {
    let bit = 1u16 << line;
    let now = if on {
        ENABLED.fetch_or(bit, Ordering::Relaxed) | bit
    } else {
        ENABLED.fetch_and(!bit, Ordering::Relaxed) & !bit
    };
    let (m, s) = pp::masks(now);
    outb(PIC1_DATA, m);
    outb(PIC2_DATA, s);
}

/// End of interrupt for `line`.
pub fn pic_eoi(line: u8) {
    for &port in pp::eoi_ports(line) {
        outb(port, EOI);
    }
}

/// The PICs' interrupt request registers (lines raised, not yet taken), bit n = line n.
pub fn pic_irr() -> u16 {
    outb(PIC1_CMD, 0x0a);
    outb(PIC2_CMD, 0x0a);
    u16::from(inb(PIC1_CMD)) | (u16::from(inb(PIC2_CMD)) << 8)
}

/// The PICs' in-service registers, bit n = line n.
pub fn pic_isr() -> u16 {
    outb(PIC1_CMD, 0x0b);
    outb(PIC2_CMD, 0x0b);
    u16::from(inb(PIC1_CMD)) | (u16::from(inb(PIC2_CMD)) << 8)
}

/// PIT channel 0: an interrupt every `count` input clocks.
pub fn pit_periodic(count: u32) {
    let (lo, hi) = pp::pit_count_bytes(count);
    outb(pp::PIT_CMD, pp::PIT_MODE_PERIODIC);
    outb(pp::PIT_CH0, lo);
    outb(pp::PIT_CH0, hi);
}

/// PIT channel 0: one interrupt after `count` input clocks.
pub fn pit_oneshot(count: u32) {
    let (lo, hi) = pp::pit_count_bytes(count);
    outb(pp::PIT_CMD, pp::PIT_MODE_ONESHOT);
    outb(pp::PIT_CH0, lo);
    outb(pp::PIT_CH0, hi);
}

/// PIT channel 0 stopped (mode set, no count: it waits for one).
pub fn pit_stop() {
    outb(pp::PIT_CMD, pp::PIT_MODE_ONESHOT);
}

/// Channel 0's current count (latched).
fn pit_read() -> u16 {
    outb(pp::PIT_CMD, 0x00);
    let lo = inb(pp::PIT_CH0);
    let hi = inb(pp::PIT_CH0);
    u16::from(lo) | (u16::from(hi) << 8)
}

/// The TSC frequency in Hz, measured over `count` PIT input clocks of a one-shot count-down (interrupts
/// masked at the PIC; the line's pending edge is dropped by the caller's later programming).
pub fn calibrate_tsc(count: u16) -> u64 {
    pit_oneshot(u32::from(count));
    let start = rdtsc_ordered();
    let mut last = pit_read();
    let mut spins = 0u64;
    // Count down to the terminal count (mode 0 then wraps to 0xffff: a rise ends it too).
    loop {
        let now = pit_read();
        if now == 0 || now > last || spins > 50_000_000 {
            break;
        }
        last = now;
        spins += 1;
    }
    let end = rdtsc_ordered();
    pit_stop();
    pp::tsc_hz(end - start, u32::from(count))
}

/// One CMOS register.
fn cmos(reg: u8) -> u8 {
    outb(0x70, reg);
    inb(0x71)
}

/// The RTC's date and time, read twice until two reads agree (not during an update).
pub fn rtc_now() -> Option<u64> {
    let read = || {
        let mut spins = 0;
        while cmos(0x0a) & 0x80 != 0 && spins < 1_000_000 {
            spins += 1;
        }
        rtc::Raw {
            sec: cmos(0x00),
            min: cmos(0x02),
            hour: cmos(0x04),
            day: cmos(0x07),
            month: cmos(0x08),
            year: cmos(0x09),
            century: cmos(0x32),
            status_b: cmos(0x0b),
        }
    };
    for _ in 0..5 {
        let a = read();
        let b = read();
        if a == b {
            return rtc::unix_seconds(&a);
        }
    }
    None
}
