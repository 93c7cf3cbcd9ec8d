//! Instructions `osbench` measures that Rust cannot express: the time-stamp counter, both system-call
//! instructions in a bare loop body, and a store whose page fault is handled in ring 3 and resumed just
//! after it (the handler and the store are one assembly block, so the resume address is a known label).

use core::arch::{asm, global_asm};

/// The time-stamp counter, read after every earlier instruction has completed (LFENCE; RDTSC). Under
/// QEMU's `-icount shift=0` it counts executed instructions.
#[inline(always)]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC is allowed in ring 3 (CR4.TSD is clear in both the PV and native kernels) and only
    // writes EDX:EAX; LFENCE has no architectural effect beyond ordering.
    unsafe {
        asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

global_asm!(
    // osbench_store_probe(addr): one byte store to `addr`. If it faults and the process's fault handler
    // is `osbench_fault_entry`, execution resumes at the label after the store.
    ".globl osbench_store_probe",
    "osbench_store_probe:",
    "mov byte ptr [rdi], 1",
    ".globl osbench_store_resume",
    "osbench_store_resume:",
    "ret",
    // osbench_fault_entry: the handler. RDI = fault address, RSI = error code, RDX = faulting RIP (all
    // ignored). fault_return(osbench_store_resume) puts the faulting registers back and resumes after
    // the store; if the kernel refuses, `ud2` ends the process.
    ".globl osbench_fault_entry",
    "osbench_fault_entry:",
    "lea rdi, [rip + osbench_store_resume]",
    "mov eax, {fault_return}",
    "int 0x80",
    "ud2",
    fault_return = const uapi::nr::FAULT_RETURN,
);

unsafe extern "C" {
    fn osbench_store_probe(addr: u64);
    fn osbench_fault_entry();
}

/// The address of the fault handler that resumes after [`store_probe`]'s store.
pub fn fault_entry() -> u64 {
    osbench_fault_entry as *const () as usize as u64
}

/// Store one byte at `addr`.
///
/// # Safety
/// The store may fault (the caller registered [`fault_entry`] as the handler, or accepts being killed)
/// or succeed, overwriting the byte at `addr`, which no live reference may point at.
pub unsafe fn store_probe(addr: u64) {
    // SAFETY: the caller accepts the store or its fault; the probe follows the C calling convention and
    // touches only `addr` (RDI), and the handler restores every register of the faulting context.
    unsafe { osbench_store_probe(addr) }
}
