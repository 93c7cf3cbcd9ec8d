//! Timing primitives for the benchmark (`crate::bench`): serialized TSC reads and the ring-1 fast-path
//! `int` (the transition floor, timed inside one asm block: [`floor_ticks`]).
//!
//! A measured region is `tsc_start()` … operation … `tsc_end()`:
//!
//! ```text
//!   lfence; rdtsc        every earlier instruction has completed before the TSC is read
//!   ... operation ...
//!   rdtscp; lfence       the operation has completed before the TSC is read, and nothing later starts early
//! ```
//!
//! Under QEMU's `-icount shift=0` the TSC advances by one per executed instruction, so the difference of
//! the two reads is an instruction count; otherwise it is time. The blocks are not `nomem`, so the compiler
//! does not move memory accesses of the operation across them.

use core::arch::asm;

/// Read the TSC at the start of a measured region: LFENCE, then RDTSC. The two halves are combined inside
/// the block, so the compiler has no arithmetic of its own to schedule into the measured region (which
/// would make the empty pair and a measured operation differ by a few instructions).
#[inline(always)]
pub fn tsc_start() -> u64 {
    let t: u64;
    // SAFETY: LFENCE, RDTSC, SHL and OR are unprivileged (the hypervisor leaves CR4.TSD clear), write only
    // RAX, RDX and the flags, and touch no memory.
    unsafe {
        asm!(
            "lfence",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            out("rax") t,
            out("rdx") _,
            options(nostack)
        )
    };
    t
}

/// Read the TSC at the end of a measured region: RDTSCP (waits for every earlier instruction), then LFENCE.
#[inline(always)]
pub fn tsc_end() -> u64 {
    let t: u64;
    // SAFETY: RDTSCP, LFENCE, SHL and OR are unprivileged, write only RAX, RDX, RCX (TSC_AUX) and the
    // flags, and touch no memory.
    unsafe {
        asm!(
            "rdtscp",
            "lfence",
            "shl rdx, 32",
            "or rax, rdx",
            out("rax") t,
            out("rdx") _,
            out("rcx") _,
            options(nostack)
        )
    };
    t
}

/// `int 0x83` ([`abi::layout::FASTPATH_VECTOR`]): a DPL-1 gate whose hypervisor stub is a bare IRETQ, so
/// this is one ring-1 → ring-0 → ring-1 round trip with no address-space switch (the measurement floor).
#[inline(always)]
pub fn int_fastpath() {
    // SAFETY: the gate is DPL 1 and its stub returns at once with IRETQ on the frame the CPU pushed on the
    // hypervisor's entry stack (the CPU switches stacks, so this kernel's stack is not touched); no register
    // changes.
    unsafe {
        asm!(
            "int {v}",
            v = const abi::layout::FASTPATH_VECTOR,
            options(nostack)
        )
    };
}

/// Ticks of one measured region holding `int 0x83` (`with_int`) or nothing, read with the same fenced
/// sequence as [`tsc_start`]/[`tsc_end`] but inside ONE asm block: no compiler-generated instruction (a
/// call of the measured closure, a spill) can land inside the region, whatever the inliner decides for the
/// surrounding code. The floor is then exactly the INT's round trip (2 instructions under icount: INT and
/// the hypervisor stub's IRETQ) in every build.
#[inline(always)]
pub fn floor_ticks(with_int: bool) -> u64 {
    let t: u64;
    // SAFETY: LFENCE, RDTSC(P), SHL, OR, MOV and SUB are unprivileged and touch no memory; `int 0x83` is
    // the DPL-1 gate whose hypervisor stub returns at once with IRETQ (see `int_fastpath`). Written: RAX,
    // RDX, RCX (TSC_AUX), R8 and the flags.
    unsafe {
        if with_int {
            asm!(
                "lfence", "rdtsc", "shl rdx, 32", "or rax, rdx", "mov r8, rax",
                "int {v}",
                "rdtscp", "lfence", "shl rdx, 32", "or rax, rdx", "sub rax, r8",
                v = const abi::layout::FASTPATH_VECTOR,
                out("rax") t, out("rdx") _, out("rcx") _, out("r8") _,
                options(nomem, nostack)
            )
        } else {
            asm!(
                "lfence", "rdtsc", "shl rdx, 32", "or rax, rdx", "mov r8, rax",
                "rdtscp", "lfence", "shl rdx, 32", "or rax, rdx", "sub rax, r8",
                out("rax") t, out("rdx") _, out("rcx") _, out("r8") _,
                options(nomem, nostack)
            )
        }
    };
    t
}
