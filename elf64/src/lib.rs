//! Validation and description of hostile ELF64 x86_64 executables: the `PT_LOAD` segments, checked against
//! an address policy chosen by the loader.
//!
//! Only the ELF header and the program headers are looked at. [`parse`] proves every segment lies inside the
//! file and inside the addresses the caller's [`AddressPolicy`] allows, without two segments sharing a page,
//! and the entry point inside an executable segment. The hypervisor loads guest kernels with it (upper-half
//! images, its reserved range excluded); the guest kernel loads ring-3 programs (user half only).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

mod error;
mod format;
mod parse;
pub mod write;

#[cfg(test)]
mod tests;

pub use error::ElfError;
pub use format::{PF_R, PF_W, PF_X, PT_LOAD};
pub use parse::{AddressPolicy, ElfImage, MAX_SEGMENTS, PAGE_SIZE, Segment, parse};
