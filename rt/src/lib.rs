//! The symbols a `no_std`, `no_main` Rust image needs from its environment, shared by the hypervisor and
//! the guest kernel: `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp` (the compiler emits calls to them),
//! and the unwinding personality and resume hook (never used: both images abort on panic).
//!
//! Depend on this crate only from a bare-metal build (the images enable it with their `baremetal`
//! feature): these unmangled symbols would otherwise replace libc's in a host test binary.
#![no_std]

pub mod arch;
