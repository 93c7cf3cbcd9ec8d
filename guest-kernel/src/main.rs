//! The bare-metal guest-kernel binary. Everything lives in the library; this file only pulls it in.
#![no_std]
#![no_main]

// The entry point (`_start`), the panic handler and the runtime symbols are in the library's `arch` module.
use guest_kernel as _;
