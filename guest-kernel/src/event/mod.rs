//! Interrupt sources, kernel side: the upcall handler and the kernel's interface to its sources ("ports").
//!
//! | module | what |
//! |---|---|
//! | [`handlers`] | per-port handlers and counters (pure) |
//! | `channel` | (bare metal) the upcall, bind/send/close/mask/unmask over the platform seam |
//!
//! The interrupt entry (`trap::dispatch`, vector `VECTOR_EVENT`) calls [`upcall`](channel::upcall), which
//! asks the platform for every pending, unmasked source (on PV, `platform::xen_event_scan`: clear
//! `upcall_pending`, take the selector, clear each pending unmasked port's bit) and runs its handler with
//! interrupts masked; the trap exit then unmasks (on PV through the `iret` hypercall), so an event raised
//! meanwhile is delivered at once.

pub mod handlers;

#[cfg(feature = "baremetal")]
mod channel;

#[cfg(feature = "baremetal")]
pub use channel::*;

/// Event-channel operations that exist only on PV, for the PV scenarios that test the hypervisor's event
/// channels (the kernel itself binds sources through [`bind`](channel::bind)).
#[cfg(feature = "baremetal")]
pub use crate::platform::xen_events::{alloc_unbound_in, bind_virq, status};

pub use handlers::{PortHandler, PortHandlers};
