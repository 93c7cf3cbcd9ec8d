//! x86_64 support for ring-3 programs: the entry point, the two system-call instructions, and the few
//! instructions the demonstration programs execute on purpose (reading CS, faulting stores and jumps,
//! privileged instructions).

pub mod cpu;
pub mod entry;
pub mod probe;
pub mod syscall;
