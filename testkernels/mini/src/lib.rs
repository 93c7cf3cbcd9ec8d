//! `mini`: a minimal multiboot v1 kernel for the tests, written apart from ring1pv's guest kernel so that
//! the hypervisor's full-virtualization modes are shown to run *a* multiboot kernel, not only ours.
//!
//! Booted by any multiboot v1 loader (QEMU's `-kernel`, or the hypervisor's hvm domain builder), it
//! switches to long mode itself (identity-mapped first GiB, 2 MiB pages), then: initializes COM1 and
//! prints, remaps the two 8259 PICs to vectors 0x20–0x2f, programs PIT channel 0 at [`TICK_HZ`], takes
//! exactly [`TICKS`] timer interrupts with `sti; hlt` (the last one masks IRQ0), reads the unmapped
//! [`FAULT_ADDR`] and recovers in its #PF handler (which maps a page of its image there and lets the
//! read run again; on page tables it did not build itself it resumes after the read instead), prints a
//! summary and writes its exit code to `isa-debug-exit` (port 0xf4). Every line it prints is
//! deterministic, so the same kernel gives the same output natively and under the hypervisor.
//!
//! This library holds the pure parts (host-tested); the image's bare-metal code is behind the
//! `baremetal` feature (`kernel` and `arch`).
#![cfg_attr(not(test), no_std)]

#[cfg(feature = "baremetal")]
mod arch;
#[cfg(feature = "baremetal")]
mod kernel;

/// The PIT's input clock in Hz.
pub const PIT_INPUT_HZ: u32 = 1_193_182;
/// The timer interrupt rate the kernel programs.
pub const TICK_HZ: u32 = 100;
/// How many timer interrupts it takes before going on (the last one masks IRQ0).
pub const TICKS: u32 = 10;
/// The vector the master PIC is remapped to (IRQ0, the timer); the slave gets the next eight.
pub const PIC_BASE_VECTOR: u8 = 0x20;
/// The page-fault vector.
pub const PF_VECTOR: u8 = 14;
/// The address the kernel reads on purpose: 256 GiB, outside its identity mapping of the first GiB
/// (and outside any RAM a test machine has), so not present in any page table a loader may build.
pub const FAULT_ADDR: u64 = 0x40_0000_0000;
// Outside the identity-mapped GiB, and canonical (a non-canonical address would #GP, not #PF).
const _: () = assert!(FAULT_ADDR >= 1 << 30 && FAULT_ADDR < 1 << 47);
/// The value written to `isa-debug-exit` when every step went as expected.
pub const EXIT_SUCCESS: u32 = 0;
/// The value written when something went wrong (an unexpected exception or a wrong result).
pub const EXIT_FAILURE: u32 = 1;
/// The 64-bit ring-0 code selector of the kernel's own GDT (loaded by `_start32` and again by `_start64`);
/// its interrupt gates name it.
pub const KERNEL_CS: u16 = 0x08;
/// The COM1 UART's base port.
pub const COM1: u16 = 0x3f8;
/// The `isa-debug-exit` device's port.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// The multiboot v1 magic a loader passes in EAX.
pub const MULTIBOOT_MAGIC: u32 = 0x2bad_b002;

/// The PIT channel 0 reload value for `hz` interrupts per second (rounded to nearest; clamped to the
/// 16-bit counter, where 0 stands for 65536).
pub const fn pit_divisor(hz: u32) -> u16 {
    if hz == 0 {
        return 0;
    }
    let d = (PIT_INPUT_HZ + hz / 2) / hz;
    if d >= 65536 {
        0
    } else if d == 0 {
        1
    } else {
        d as u16
    }
}

/// The line the kernel ends with before writing its exit code: `native: shut down: poweroff code C`,
/// the shutdown-line convention `xtask` reads for kernels it boots without the hypervisor (QEMU's exit
/// status 1 is both "wrote 0" and QEMU's own failure; the line tells them apart).
pub struct ShutdownLine(pub u32);

impl core::fmt::Display for ShutdownLine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let reason = if self.0 == EXIT_SUCCESS {
            "poweroff"
        } else {
            "crash"
        };
        write!(f, "native: shut down: {reason} code {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pit_divisor_for_common_rates() {
        assert_eq!(pit_divisor(100), 11932);
        assert_eq!(pit_divisor(1000), 1193);
        assert_eq!(pit_divisor(TICK_HZ), 11932);
        // Too slow for the 16-bit counter: 0 (= 65536); too fast: 1; zero: 0.
        assert_eq!(pit_divisor(10), 0);
        assert_eq!(pit_divisor(2_000_000), 1);
        assert_eq!(pit_divisor(0), 0);
    }

    #[test]
    fn shutdown_lines() {
        assert_eq!(
            ShutdownLine(0).to_string(),
            "native: shut down: poweroff code 0"
        );
        assert_eq!(
            ShutdownLine(1).to_string(),
            "native: shut down: crash code 1"
        );
    }
}
