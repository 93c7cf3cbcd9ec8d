//! Trap-and-emulate: the unmodified native kernel deprivileged to ring 1 (the `emulate` domain kind):
//! the decoder, the virtual CPU, the instruction emulator, control transfers through the guest's own
//! descriptor tables and the shadow page tables, all pure and host-tested.

pub mod boot;
pub mod decode;
pub mod dispatch;
pub mod env;
pub mod exec;
pub mod exits;
#[cfg(feature = "baremetal")]
pub mod machine;
pub mod reflect;
pub mod shadow;
pub mod vcpu;

#[cfg(test)]
mod exec_tests;
#[cfg(test)]
mod shadow_proptest;
