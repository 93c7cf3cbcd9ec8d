//! The user-side runtime of the guest OS's ring-3 programs, and the logic they share.
//!
//! Host-testable, pure modules: [`shell`] (command-line parsing for `sh`), [`num`] (argument parsing), [`osbench`] (the workload list and result lines),
//! [`display`] (tables and human-readable numbers) and [`io`] (the fixed buffers behind `print!`).
//!
//! With feature `baremetal` (the programs themselves): the entry point and system-call instructions
//! ([`arch`], the only place with assembly), the typed system calls ([`sys`]), the `print!` family and the
//! [`main!`] entry macro, and the panic handler ([`runtime`]).
#![cfg_attr(not(test), no_std)]

// The runtime symbols (memcpy and friends) of the bare-metal programs.
#[cfg(feature = "baremetal")]
extern crate rt;

pub mod benchcmd;
pub mod display;
pub mod io;
pub mod jobs;
pub mod num;
pub mod osbench;
pub mod shell;
pub mod xl;

#[cfg(feature = "baremetal")]
pub mod arch;
#[cfg(feature = "baremetal")]
pub mod runtime;
#[cfg(feature = "baremetal")]
pub mod sys;

pub use uapi::Errno;
