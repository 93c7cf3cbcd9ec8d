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

/// Issue hypercall `nr` with `a1` and `a2` (the other arguments 0) after setting the RFLAGS bits `set`
/// (with POPF); returns RAX and RFLAGS as the hypercall's return left them (PUSHF right after it). The
/// caller's RFLAGS are restored afterwards.
///
/// # Safety
/// As [`hypercall5`]; `set` must be bits POPF may change in this ring without harm to the code around
/// (e.g. NT, AC).
#[inline(never)]
pub unsafe fn hypercall_rflags(nr: u64, a1: u64, a2: u64, set: u64) -> (i64, u64) {
    let ret: i64;
    let after: u64;
    // SAFETY: as in `hypercall5`; the block pushes three words and pops them again (no `nostack`), and
    // restores RFLAGS as they were before it.
    unsafe {
        asm!(
            "pushfq",
            "pushfq",
            "or qword ptr [rsp], {set}",
            "popfq",
            "int 0x82",
            "pushfq",
            "pop {after}",
            "popfq",
            set = in(reg) set,
            after = lateout(reg) after,
            inlateout("rax") nr as i64 => ret,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") 0u64 => _,
            inlateout("r10") 0u64 => _,
            inlateout("r8") 0u64 => _,
        );
    }
    (ret, after)
}

/// Issue hypercall `nr` with `a1` and `a2` (the other arguments 0) while RBX, RBP and R12-R15 hold
/// `seed`, `seed + 1`, ..., `seed + 5`; returns RAX and whether all six came back unchanged (the
/// hypervisor returns every register but RAX as the guest left it, whichever way it answers).
///
/// # Safety
/// As [`hypercall5`].
#[inline(never)]
pub unsafe fn hypercall_keeps_callee_saved(nr: u64, a1: u64, a2: u64, seed: u64) -> (i64, bool) {
    let ret: i64;
    let changed: u64;
    // SAFETY: as in `hypercall5`; RBX and RBP (which Rust reserves) are saved on the stack around the
    // block (no `nostack`) and restored; R12-R15 are declared clobbered.
    unsafe {
        asm!(
            "push rbx",
            "push rbp",
            "mov rbx, r9",
            "lea rbp, [r9 + 1]",
            "lea r12, [r9 + 2]",
            "lea r13, [r9 + 3]",
            "lea r14, [r9 + 4]",
            "lea r15, [r9 + 5]",
            "int 0x82",
            "mov r11, rbx",
            "xor r11, r9",
            "lea rcx, [r9 + 1]",
            "xor rcx, rbp",
            "or r11, rcx",
            "lea rcx, [r9 + 2]",
            "xor rcx, r12",
            "or r11, rcx",
            "lea rcx, [r9 + 3]",
            "xor rcx, r13",
            "or r11, rcx",
            "lea rcx, [r9 + 4]",
            "xor rcx, r14",
            "or r11, rcx",
            "lea rcx, [r9 + 5]",
            "xor rcx, r15",
            "or r11, rcx",
            "pop rbp",
            "pop rbx",
            inlateout("rax") nr as i64 => ret,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") 0u64 => _,
            inlateout("r10") 0u64 => _,
            inlateout("r8") 0u64 => _,
            in("r9") seed,
            out("rcx") _,
            out("r11") changed,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
        );
    }
    (ret, changed == 0)
}
