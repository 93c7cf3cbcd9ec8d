//! Trap-and-emulate: the unmodified native kernel deprivileged to ring 1 (the `emulate` domain kind):
//! the decoder, the virtual CPU, the instruction emulator and the shadow page tables, all pure and
//! host-tested.

pub mod decode;
pub mod shadow;
pub mod vcpu;

#[cfg(test)]
mod shadow_proptest;
