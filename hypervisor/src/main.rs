//! The bare-metal hypervisor binary. Everything lives in the library; this file only pulls it in.
#![no_std]
#![no_main]

// The entry point (`_start32`), the panic handler and the runtime symbols are defined in the library's
// `arch` module; naming the crate makes sure it is linked.
use hypervisor as _;
