//! The hypercall ABI: numbers, structures and error codes shared by hypervisor and guest.
#![no_std]
#![forbid(unsafe_code)]

pub mod exit;
pub mod layout;
pub mod types;
