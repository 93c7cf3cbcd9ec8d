//! The hypercall instruction: `int 0x82` with Xen's 64-bit register convention (number in RAX; arguments
//! in RDI, RSI, RDX, R10, R8; result in RAX). The hypervisor may clobber the argument registers.

use core::arch::asm;

/// Issue hypercall `nr` with five arguments; returns RAX (negative errno on failure).
///
/// # Safety
/// Pointer arguments must be valid for what the hypercall does with them (the hypervisor checks them
/// against this domain's page tables, so a bad pointer yields -EFAULT, but a valid one is written to).
#[inline(always)]
pub unsafe fn hypercall5(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let ret: i64;
    // SAFETY: the gate is DPL 1, reachable from this ring; the caller vouches for pointer arguments.
    unsafe {
        asm!(
            "int 0x82",
            inlateout("rax") nr as i64 => ret,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            options(nostack)
        );
    }
    ret
}
