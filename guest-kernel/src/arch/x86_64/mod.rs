//! x86_64 support for the guest kernel: the entry point, the hypercall instruction, and the few
//! unprivileged instructions the kernel uses directly.

pub mod emulate_probes;
pub mod entry;
pub mod hostile_probes;
pub mod hypercall;
pub mod isolation_probes;
pub mod native;
pub mod sensitive_probes;
pub mod svm_probes;
pub mod timing;
pub mod trap_entry;
pub mod trap_probes;
pub mod tsc;

use core::arch::asm;

/// The current code segment selector; its low two bits are the privilege level the kernel runs at.
pub fn read_cs() -> u16 {
    let cs: u16;
    // SAFETY: reading CS is unprivileged and has no side effects.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    cs
}

/// Read one byte at `addr` (used by the isolation scenarios to touch memory they must not reach).
///
/// # Safety
/// The read may fault; the caller expects the hypervisor to stop the domain if it does.
pub unsafe fn read_byte(addr: u64) -> u8 {
    // SAFETY: the caller accepts a fault.
    unsafe { (addr as *const u8).read_volatile() }
}

/// Write one byte at `addr` (see [`read_byte`]).
///
/// # Safety
/// The write may fault, or corrupt memory if it succeeds; the caller expects the former.
pub unsafe fn write_byte(addr: u64, val: u8) {
    // SAFETY: the caller accepts a fault.
    unsafe { (addr as *mut u8).write_volatile(val) }
}

/// Execute HLT, a privileged instruction: in ring 1 it raises #GP, which the hypervisor must turn into a
/// crash of this domain only.
pub fn privileged_hlt() {
    // SAFETY: in ring 1 this faults before having any effect.
    unsafe { asm!("hlt", options(nomem, nostack)) };
}
