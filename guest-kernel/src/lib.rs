//! The PV guest kernel library: host-testable logic, plus (with feature `baremetal`) the kernel itself.
#![cfg_attr(not(test), no_std)]

// The runtime symbols (memcpy and friends) of the bare-metal image.
#[cfg(feature = "baremetal")]
extern crate rt;

extern crate alloc;

pub mod bench;
pub mod cmdline;
pub mod event;
pub mod fuzz;
pub mod mm;
pub mod platform;
pub mod proc;
pub mod sensitive;
pub mod time;
pub mod trap;
pub mod xtf;

#[cfg(feature = "baremetal")]
pub mod arch;
#[cfg(feature = "baremetal")]
pub mod boot;
#[cfg(feature = "baremetal")]
pub mod console;
#[cfg(feature = "baremetal")]
pub mod demo;
#[cfg(feature = "baremetal")]
pub mod scenarios;
