//! Timing primitives for the benchmark (`crate::bench`): serialized TSC reads and the ring-1 fast-path
//! `int` (the transition floor).
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
