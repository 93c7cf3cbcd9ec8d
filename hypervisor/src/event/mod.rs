//! Event channels, Xen's 2-level ABI: the pure logic, host-tested.
//!
//! | module | what |
//! |---|---|
//! | [`bits`] | a domain's pending/mask/selector/upcall bits in its shared_info page ([`bits::EventBits`], [`bits::SharedInfoPage`]) and Xen's [`bits::set_pending`] / [`bits::unmask`] rules |
//! | [`channel`] | every domain's port table ([`channel::EventSystem`]): alloc_unbound, bind_*, close, send, status, VIRQ lookup, domain reset; invariant check |
//! | [`op`] | `event_channel_op`: decode the guest's argument structure, act, and report the bytes to copy back and the event bits to change ([`op::Effect`]) |
//!
//! The hypervisor keeps one [`EventSystem`] for all domains. What it does with it:
//!
//! - **Hypercall** `event_channel_op`: see [`op`]'s module documentation.
//! - **Raising a VIRQ** (`VIRQ_TIMER` at a guest timer's deadline, `VIRQ_CONSOLE` on serial input,
//!   `VIRQ_DEBUG` on the debug key): [`raise_virq`] with the domain's shared_info page; kick on true.
//! - **One wake rule** for every source ([`mark_pending`], used by a send and by [`raise_virq`]): wake the
//!   vCPU if its upcall became pending *or* it sleeps in `SCHEDOP_poll` on that port, masked or not.
//! - **Kick**: the target vCPU's `evtchn_upcall_pending` went from 0 to 1 (or it polls the port): wake it
//!   if it is blocked (the scheduling policy's `wake`), and end its poll. A running or runnable vCPU needs nothing more: on every exit to a guest,
//!   if [`bits::upcall_deliverable`] holds, bounce to its event callback (setting `evtchn_upcall_mask`, the
//!   old value saved in the frame).
//! - **`SCHEDOP_block`**: [`bits::block_enable_events`]; if it returns true do not block.
//! - **Domain teardown**: [`EventSystem::reset_domain`] (also before reusing a domain slot).

pub mod bits;
pub mod channel;
pub mod op;

#[cfg(test)]
mod tests;

pub use bits::{EventBits, SharedInfoPage};
pub use channel::{EventSystem, MAX_PORTS, PortState};

use abi::event_channel::EvtchnPort;
use abi::xen::DomId;

/// Marks `port` pending in `bits` (the shared_info bits of the domain owning the port) and says whether
/// that domain's vCPU must be woken: its upcall became pending ([`bits::set_pending`]), or it sleeps in
/// `SCHEDOP_poll` on `port` (`polled(port)`), which waits for the pending bit whatever the port's mask.
/// The one rule for every event source: a send ([`op::Effect::SetPending`]) and a VIRQ ([`raise_virq`]).
pub fn mark_pending(
    bits: &mut impl EventBits,
    port: EvtchnPort,
    polled: impl FnOnce(EvtchnPort) -> bool,
) -> bool {
    let kick = bits::set_pending(bits, port);
    kick | polled(port)
}

/// Raise `virq` for domain `dom` if it bound a port to it: [`mark_pending`] on that port in `bits` (which
/// must be `dom`'s shared_info bits; `polled(port)`: `dom` polls `port`). Returns true if `dom`'s vCPU
/// must be kicked. A VIRQ nobody bound is dropped, as in Xen.
pub fn raise_virq(
    sys: &EventSystem,
    dom: DomId,
    virq: u32,
    bits: &mut impl EventBits,
    polled: impl FnOnce(EvtchnPort) -> bool,
) -> bool {
    match sys.virq_port(dom, virq) {
        Some(port) => mark_pending(bits, port, polled),
        None => false,
    }
}
