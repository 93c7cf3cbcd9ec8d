//! The hypervisor library: host-testable logic, plus (with feature `baremetal`) the machine-facing parts.
#![cfg_attr(not(test), no_std)]

pub mod bootinfo;
pub mod domain;
pub mod loader;
pub mod mm;
