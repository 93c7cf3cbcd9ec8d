//! The time-stamp counter, read in program order (LFENCE; RDTSC), for the pvclock (`crate::time`).

use core::arch::asm;

/// The TSC, read after every earlier instruction has completed.
#[inline(always)]
pub fn rdtsc_ordered() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: LFENCE and RDTSC are unprivileged (the hypervisor leaves CR4.TSD clear), write only EAX and
    // EDX, and touch no memory.
    unsafe {
        asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// PAUSE: a spin-wait hint.
#[inline(always)]
pub fn pause() {
    core::hint::spin_loop();
}
