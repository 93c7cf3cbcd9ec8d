//! The user-side runtime of the guest OS's ring-3 programs (placeholder).
#![cfg_attr(not(test), no_std)]
