//! The kernel's interrupt sources ("ports": event channels on PV, IRQ lines natively) over the platform
//! seam, and the upcall that dispatches them to their handlers.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::errno::Errno;

use super::handlers::{PortHandler, PortHandlers};
use crate::platform::{Irq, IrqSource, ops};

/// The kernel's per-port handlers.
pub static HANDLERS: PortHandlers = PortHandlers::new();

static UPCALLS: AtomicU64 = AtomicU64::new(0);

/// The upcall: take every pending, unmasked source and run its handler (interrupts masked: called from
/// the interrupt entry).
pub fn upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    ops().irq_dispatch(&mut |port| HANDLERS.dispatch(port));
}

/// Upcalls taken so far.
pub fn upcalls() -> u64 {
    UPCALLS.load(Ordering::Relaxed)
}

/// `(events dispatched to a handler, events on ports without one)` so far.
pub fn counts() -> (u64, u64) {
    HANDLERS.counts()
}

/// Install or remove the handler of `port`.
pub fn set_handler(port: Irq, handler: Option<PortHandler>) {
    HANDLERS.set(port, handler);
}

/// Install the handler (if any) of a new port and unmask it (what every binding does last).
pub fn channel_bound(port: Irq, handler: Option<PortHandler>) -> Result<Irq, Errno> {
    if handler.is_some() {
        set_handler(port, handler);
    }
    unmask(port)?;
    Ok(port)
}

/// A new source for `what` with `handler`, unmasked.
pub fn bind(what: IrqSource, handler: Option<PortHandler>) -> Result<Irq, Errno> {
    let port = ops().irq_bind(what)?;
    channel_bound(port, handler)
}

/// A source this CPU raises itself, with `handler`, unmasked.
pub fn bind_ipi(handler: Option<PortHandler>) -> Result<Irq, Errno> {
    bind(IrqSource::SelfIpi, handler)
}

/// Allocate a port in this domain that domain `remote` may connect to.
pub fn alloc_unbound(remote: u16) -> Result<Irq, Errno> {
    ops().irq_bind(IrqSource::PeerOffer { peer: remote })
}

/// Connect to `remote_port` of domain `remote_dom` (allocated unbound for this domain); the new local
/// port gets `handler` and is unmasked.
pub fn bind_interdomain(
    remote_dom: u16,
    remote_port: Irq,
    handler: Option<PortHandler>,
) -> Result<Irq, Errno> {
    let local = bind_interdomain_raw(remote_dom, remote_port)?;
    channel_bound(local, handler)
}

/// Ports of another domain [`bind_offered`] tries.
pub const OFFER_SCAN_PORTS: Irq = 64;

/// The rendezvous of the two-domain setups (events scenario, benchmark partner, ping server), which have
/// no store to publish a port in: bind to the first of `remote`'s ports `1..=OFFER_SCAN_PORTS` that
/// `bind_interdomain` accepts, i.e. the one `remote` allocated unbound for this domain (no handler, mask
/// untouched). `None` if there is none (yet).
pub fn bind_offered(remote: u16) -> Option<Irq> {
    (1..=OFFER_SCAN_PORTS).find_map(|p| bind_interdomain_raw(remote, p).ok())
}

/// Connect to a peer's offered port alone (no handler, mask untouched).
pub fn bind_interdomain_raw(remote_dom: u16, remote_port: Irq) -> Result<Irq, Errno> {
    ops().irq_bind(IrqSource::PeerConnect {
        peer: remote_dom,
        remote: remote_port,
    })
}

/// Signal the other end of `port` (or raise it, for a self IPI).
pub fn send(port: Irq) -> Result<(), Errno> {
    ops().irq_send(port)
}

/// Close `port` (masked and its handler removed first, so nothing runs for it afterwards).
pub fn close(port: Irq) -> Result<(), Errno> {
    mask(port);
    let r = close_raw(port);
    if r.is_ok() {
        set_handler(port, None);
        ops().irq_take_pending(port);
    }
    r
}

/// Release `port` alone.
pub fn close_raw(port: Irq) -> Result<(), Errno> {
    ops().irq_close(port)
}

/// Let `port` be delivered (at once, if it is pending).
pub fn unmask(port: Irq) -> Result<(), Errno> {
    ops().irq_unmask(port)
}

/// Stop delivering `port` (it still becomes pending).
pub fn mask(port: Irq) {
    ops().irq_mask(port);
}

/// True if `port` is pending.
pub fn is_pending(port: Irq) -> bool {
    ops().irq_is_pending(port)
}

/// True if `port` is masked.
pub fn is_masked(port: Irq) -> bool {
    ops().irq_is_masked(port)
}

/// Clear `port`'s pending state (for polled ports, which no upcall takes); returns whether it was set.
/// Every wait loop on a polled port calls it after each wake-up, so it runs the backend's own code
/// (`on_backend!`, inlined) rather than a call through `ops()`.
pub fn take_pending(port: Irq) -> bool {
    use crate::platform::Platform;
    crate::platform::on_backend!(p => p.irq_take_pending(port))
}
