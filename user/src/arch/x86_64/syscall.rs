//! The two system-call instructions (see `uapi` for the convention): `int 0x80`, the trap gate straight
//! into the guest kernel, and `syscall`, which goes through the hypervisor. Both take the number in RAX
//! and up to five arguments in RDI, RSI, RDX, R10, R8, return the result in RAX, and clobber RCX and R11
//! (the `syscall` instruction writes them; the kernel may do so on the `int 0x80` path too).

use core::arch::asm;

/// Make system call `nr` with `int 0x80`.
///
/// # Safety
/// The arguments must be valid for the call: any memory the kernel writes through a pointer argument must
/// not be referenced by live Rust references elsewhere, and calls that change the address space (`munmap`)
/// or end the process must not pull memory out from under live references. Pointers that the kernel must
/// reject (bad addresses) are fine: the kernel checks them and returns `-EFAULT` without touching memory.
#[inline]
pub unsafe fn raw_int80(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> u64 {
    let ret: u64;
    // SAFETY: the caller guarantees the arguments are valid for the call; the kernel preserves every
    // register except RAX (result), RCX and R11 (declared clobbered). The trap switches to the kernel's
    // stack, but `nostack` is left off anyway so the red zone is never assumed to survive.
    unsafe {
        asm!(
            "int 0x80",
            inlateout("rax") nr => ret,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") a2,
            in("r10") a3,
            in("r8") a4,
            lateout("rcx") _,
            lateout("r11") _,
        )
    };
    ret
}

/// Make system call `nr` with the `syscall` instruction.
///
/// # Safety
/// As for [`raw_int80`].
#[inline]
pub unsafe fn raw_syscall(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> u64 {
    let ret: u64;
    // SAFETY: as for `raw_int80`; SYSCALL itself overwrites RCX (return RIP) and R11 (RFLAGS).
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") a2,
            in("r10") a3,
            in("r8") a4,
            lateout("rcx") _,
            lateout("r11") _,
        )
    };
    ret
}
