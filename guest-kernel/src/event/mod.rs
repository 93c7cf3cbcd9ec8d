//! Event channels, guest side: the upcall handler and the kernel's event-channel interface.
//!
//! | module | what |
//! |---|---|
//! | [`scan`] | the 2-level bitmaps and the upcall scan loop (pure) |
//! | [`handlers`] | per-port handlers and counters (pure) |
//! | `channel` | (bare metal) the upcall, bind/alloc/send/close/mask/unmask/status over `event_channel_op` |
//!
//! The event callback (`trap::dispatch`, vector `VECTOR_EVENT`) calls [`upcall`](channel::upcall), which
//! scans the shared-info bitmaps (clear `upcall_pending`, take the selector, clear each pending unmasked
//! port's bit, run its handler) with events masked; the trap exit then unmasks through the `iret`
//! hypercall, so an event raised meanwhile is delivered at once.

pub mod handlers;
pub mod scan;

#[cfg(feature = "baremetal")]
mod channel;

#[cfg(feature = "baremetal")]
pub use channel::*;

pub use handlers::{PortHandler, PortHandlers};
