//! The hvm domain kind: an unmodified multiboot kernel in its own ring 0 under AMD SVM with nested paging.
//!
//! Pure, host-tested parts: the VMCB layout and first state ([`vmcb`]), exit decoding and counters
//! ([`exit`]), the nested page tables and their audit ([`npt`]), the CPUID the guest sees ([`cpuid`]), and
//! the exit handler ([`exits`]). The machine-facing parts (building, the run loop, teardown) are in
//! [`run`] with the bare-metal feature; the VMRUN sequence itself is in `arch/x86_64/entry.rs`.

pub mod cpuid;
pub mod exit;
pub mod exits;
pub mod npt;
pub mod vmcb;
