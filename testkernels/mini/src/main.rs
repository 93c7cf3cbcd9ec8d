//! The bare-metal `mini` test kernel binary. Everything lives in the library; this file only pulls it in.
#![no_std]
#![no_main]

// The entry points, handlers, panic handler and runtime symbols are in the library.
use mini as _;
