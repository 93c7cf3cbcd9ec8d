//! Time: a monotonic clock from the platform's clock (PV: the pvclock), sleeping on the one-shot timer, and
//! a periodic tick.
//!
//! | module | what |
//! |---|---|
//! | [`monotonic`] | the monotonic clamp (pure) |
//! | `clock` | (bare metal) [`now`](clock::now), [`sleep`](clock::sleep) (`set_timer_op` + `SCHEDOP_block`), [`wait_until`](clock::wait_until), the periodic tick (`VCPUOP_set_periodic_timer`), the wall clock |
//!
//! All timer events arrive on the VIRQ_TIMER port bound at boot ([`init`](clock::init)); its handler
//! counts them. A sleep masks events, arms the timer, and blocks (the hypervisor unmasks atomically and
//! wakes the vCPU at the next event) until the deadline has passed on the pvclock.

pub mod monotonic;

pub use crate::platform::ClockReading as Reading;
pub use monotonic::Monotonic;

#[cfg(feature = "baremetal")]
mod clock;

#[cfg(feature = "baremetal")]
pub use clock::*;

/// Nanoseconds per millisecond.
pub const NS_PER_MS: u64 = 1_000_000;
/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;
