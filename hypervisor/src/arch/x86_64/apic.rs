//! The local APIC (xAPIC, MMIO at 0xfee00000) as the hypervisor's one-shot timer, the PIT as the reference
//! for calibrating the TSC (and the APIC timer when TSC-deadline mode is absent), and the legacy PIC line
//! of the serial port.

use super::cpu::{self, inb, outb};

const LAPIC_BASE: u64 = 0xfee0_0000;
const REG_EOI: u64 = 0xb0;
const REG_SVR: u64 = 0xf0;
const REG_LVT_TIMER: u64 = 0x320;
const REG_TIMER_INIT: u64 = 0x380;
const REG_TIMER_CUR: u64 = 0x390;
const REG_TIMER_DIV: u64 = 0x3e0;
const MSR_TSC_DEADLINE: u32 = 0x6e0;
const MSR_APIC_BASE: u32 = 0x1b;

/// The vector of the hypervisor's timer interrupt.
pub const TIMER_VECTOR: u8 = 0xf0;
/// The APIC's spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// The legacy PIC's base vector (IRQ n arrives as PIC_BASE + n).
pub const PIC_BASE: u8 = 0x20;
/// COM1's IRQ line.
pub const SERIAL_IRQ: u8 = 4;

fn read(reg: u64) -> u32 {
    // SAFETY: the LAPIC page is identity mapped uncached (`paging::build`); 32-bit aligned register access.
    unsafe { ((LAPIC_BASE + reg) as *const u32).read_volatile() }
}

fn write(reg: u64, v: u32) {
    // SAFETY: as for `read`.
    unsafe { ((LAPIC_BASE + reg) as *mut u32).write_volatile(v) }
}

/// How the timer is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// Absolute TSC deadlines (IA32_TSC_DEADLINE).
    TscDeadline,
    /// One-shot count-down at this many APIC ticks per TSC tick (fixed point, 32 fractional bits).
    OneShot {
        /// APIC ticks per TSC tick × 2^32.
        ratio: u64,
    },
}

/// The calibrated timer.
#[derive(Clone, Copy, Debug)]
pub struct Timer {
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// Deadline or one-shot.
    pub mode: TimerMode,
}

/// Busy-wait `pit_ticks` (1.193182 MHz) on PIT channel 2, calling `start` right before the count begins.
fn pit_wait(pit_ticks: u16, start: impl FnOnce()) {
    let gate = inb(0x61);
    outb(0x61, (gate & !0x02) | 0x01);
    outb(0x43, 0xb0); // channel 2, lobyte/hibyte, mode 0
    outb(0x42, pit_ticks as u8);
    outb(0x42, (pit_ticks >> 8) as u8);
    // Reloading the count restarts it; OUT2 goes high at terminal count.
    outb(0x61, inb(0x61) & !0x01);
    outb(0x61, inb(0x61) | 0x01);
    start();
    let mut spins = 0u64;
    while inb(0x61) & 0x20 == 0 && spins < 50_000_000 {
        spins += 1;
    }
}

/// The TSC frequency from CPUID: leaf 0x15 (TSC/crystal ratio × crystal frequency), else leaf 0x16 (base
/// frequency in MHz). `None` when the CPU states neither (QEMU's TCG states neither).
pub fn tsc_hz_from_cpuid() -> Option<u64> {
    let max = cpu::cpuid(0, 0).eax;
    if max >= 0x15 {
        let l = cpu::cpuid(0x15, 0);
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            return Some(u64::from(l.ecx) * u64::from(l.ebx) / u64::from(l.eax));
        }
    }
    if max >= 0x16 {
        let mhz = cpu::cpuid(0x16, 0).eax & 0xffff;
        if mhz != 0 {
            return Some(u64::from(mhz) * 1_000_000);
        }
    }
    None
}

/// Enable the local APIC, calibrate the TSC (and the APIC timer if needed) over 10 ms of PIT time.
pub fn init() -> Timer {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; setting the global-enable bit keeps the base.
    unsafe { cpu::wrmsr(MSR_APIC_BASE, cpu::rdmsr(MSR_APIC_BASE) | (1 << 11)) };
    write(REG_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    write(REG_LVT_TIMER, 1 << 16); // masked while calibrating
    write(REG_TIMER_DIV, 0xb); // divide by 1
    const PIT_10MS: u16 = 11932;
    let mut t0 = 0;
    pit_wait(PIT_10MS, || {
        t0 = cpu::rdtsc();
        write(REG_TIMER_INIT, u32::MAX);
    });
    let tsc = cpu::rdtsc() - t0;
    let apic = u64::from(u32::MAX - read(REG_TIMER_CUR));
    write(REG_TIMER_INIT, 0);
    // The CPU's own statement of the TSC frequency where it makes one, else the PIT measurement.
    let tsc_hz = tsc_hz_from_cpuid().unwrap_or(tsc * 1_193_182 / u64::from(PIT_10MS));
    let deadline = cpu::cpuid(1, 0).ecx & (1 << 24) != 0;
    let mode = if deadline {
        write(REG_LVT_TIMER, u32::from(TIMER_VECTOR) | (2 << 17));
        TimerMode::TscDeadline
    } else {
        write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
        TimerMode::OneShot {
            ratio: (apic << 32) / tsc.max(1),
        }
    };
    Timer {
        tsc_hz: tsc_hz.max(1),
        mode,
    }
}

impl Timer {
    /// Fire the timer interrupt at TSC value `deadline` (at once if it is in the past); `None` disarms it.
    pub fn arm(&self, deadline: Option<u64>) {
        match (self.mode, deadline) {
            // SAFETY: TSC-deadline mode is enabled (CPUID said so); writing 0 disarms.
            (TimerMode::TscDeadline, d) => unsafe { cpu::wrmsr(MSR_TSC_DEADLINE, d.unwrap_or(0)) },
            (TimerMode::OneShot { .. }, None) => write(REG_TIMER_INIT, 0),
            (TimerMode::OneShot { ratio }, Some(d)) => {
                let delta = d.saturating_sub(cpu::rdtsc()).max(1);
                let ticks =
                    ((u128::from(delta) * u128::from(ratio)) >> 32).clamp(1, u128::from(u32::MAX));
                write(REG_TIMER_INIT, ticks as u32);
            }
        }
    }
}

/// Signal end of interrupt to the local APIC.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Let COM1's receive interrupt through the legacy PIC (IRQ 4; every other line stays masked).
pub fn unmask_serial_irq() {
    outb(0x21, !(1u8 << SERIAL_IRQ));
}

/// Signal end of interrupt to the legacy PIC.
pub fn pic_eoi() {
    outb(0x20, 0x20);
}
