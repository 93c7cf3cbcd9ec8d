//! The hypervisor library: host-testable logic, plus (with feature `baremetal`) the machine-facing parts.
#![cfg_attr(not(test), no_std)]

// The runtime symbols (memcpy and friends) of the bare-metal image.
#[cfg(feature = "baremetal")]
extern crate rt;

pub mod bootinfo;
pub mod console;
#[cfg(feature = "baremetal")]
pub mod debugkeys;
#[cfg(feature = "baremetal")]
pub mod deliver;
pub mod devices;
pub mod domain;
pub mod drivers;
pub mod emulate;
pub mod event;
pub mod gdt;
pub mod hvm;
pub mod hypercall;
pub mod loader;
pub mod mm;
pub mod pending;
pub mod regs;
pub mod sched_policy;
pub mod time;
pub mod vcpu;

#[cfg(feature = "baremetal")]
pub mod arch;
#[cfg(feature = "baremetal")]
pub mod bench;
#[cfg(feature = "baremetal")]
pub mod irq;
#[cfg(feature = "baremetal")]
pub mod panic;
#[cfg(feature = "baremetal")]
pub mod sched;
#[cfg(feature = "baremetal")]
pub mod setup;
#[cfg(feature = "baremetal")]
pub mod trap;
