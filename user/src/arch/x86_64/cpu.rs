//! Single instructions the demonstration programs need: reading CS (`ring`), and the deliberate faults of
//! `fault` (a store to an address the program may not write, a jump to a non-executable page, privileged
//! instructions). The faulting ones are written in assembly so the compiler cannot reason about (or
//! remove) an access it would consider undefined behaviour.

use core::arch::asm;

/// The current code segment selector; its low two bits are the privilege level this code runs at.
pub fn read_cs() -> u16 {
    let cs: u16;
    // SAFETY: reading CS is unprivileged and has no side effects.
    unsafe { asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    cs
}

/// Store the 64-bit `value` at `addr`.
///
/// # Safety
/// The store may fault (which the caller expects the kernel to punish) or, if it succeeds, overwrite any
/// memory at `addr`: the caller must not hold references to it.
pub unsafe fn store_u64(addr: u64, value: u64) {
    // SAFETY: the caller accepts the fault or owns the memory.
    unsafe { asm!("mov qword ptr [{0}], {1}", in(reg) addr, in(reg) value, options(nostack)) };
}

/// Call the code at `addr` as a function taking and returning nothing.
///
/// # Safety
/// The call may fault (expected by the caller), or run whatever is at `addr`, which must then behave like
/// a function with the C calling convention.
pub unsafe fn call_at(addr: u64) {
    // SAFETY: the caller accepts the fault or vouches for the code; every caller-saved register is
    // declared clobbered through `clobber_abi`.
    unsafe { asm!("call {0}", in(reg) addr, clobber_abi("C")) };
}

/// Execute CLI, a privileged instruction: from ring 3 (IOPL 0) it raises #GP.
pub fn cli() {
    // SAFETY: in ring 3 the instruction cannot change the interrupt flag; it either faults (and the kernel
    // ends the process) or, were IOPL 3, clears IF for this process only.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Execute HLT, a privileged instruction: from ring 3 it raises #GP.
pub fn hlt() {
    // SAFETY: HLT outside ring 0 always faults; the kernel ends the process.
    unsafe { asm!("hlt", options(nomem, nostack)) };
}

/// Raise vector 0x20 with `int` (natively the PIT's interrupt vector; under the hypervisor one of its
/// PIC vectors): its gate is not user-invocable, so from ring 3 this raises #GP.
pub fn int_0x20() {
    // SAFETY: the gate's DPL is 0: the instruction faults before any handler runs; the kernel ends the
    // process.
    unsafe { asm!("int 0x20", options(nomem, nostack)) };
}

/// Load RFLAGS with IF cleared through POPFQ, then read RFLAGS back: `(IF before, IF after)`. From ring 3
/// (IOPL 0) POPF does not fault and silently leaves IF unchanged — the classic sensitive but unprivileged
/// instruction.
pub fn popf_clear_if() -> (bool, bool) {
    let (before, after): (u64, u64);
    // SAFETY: only RFLAGS changes, through the stack (balanced pushes and pops); in ring 3 POPFQ cannot
    // change IF or IOPL, and the other flags it loads are the ones just read.
    unsafe {
        asm!(
            "pushfq",
            "pop {before}",
            "mov {tmp}, {before}",
            "and {tmp}, {mask}",
            "push {tmp}",
            "popfq",
            "pushfq",
            "pop {after}",
            before = out(reg) before,
            after = out(reg) after,
            tmp = out(reg) _,
            mask = in(reg) !(1u64 << 9),
        )
    };
    (before & (1 << 9) != 0, after & (1 << 9) != 0)
}
