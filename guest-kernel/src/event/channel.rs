//! The kernel's event-channel interface on the Xen PV platform, and the upcall.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::errno::Errno;
use abi::event_channel::{
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_IPI, EVTCHNOP_BIND_VIRQ,
    EVTCHNOP_CLOSE, EVTCHNOP_SEND, EVTCHNOP_UNMASK, EvtchnAllocUnbound, EvtchnBindInterdomain,
    EvtchnBindIpi, EvtchnBindVirq, EvtchnClose, EvtchnPort, EvtchnSend, EvtchnStatus, EvtchnUnmask,
};
use abi::xen::{DOMID_SELF, DomId};

use super::handlers::{PortHandler, PortHandlers};
use super::scan::EventState;
use crate::platform::xen_pv::XEN_PV;

/// The kernel's per-port handlers.
pub static HANDLERS: PortHandlers = PortHandlers::new();

static UPCALLS: AtomicU64 = AtomicU64::new(0);

/// The event state in shared_info (None before the platform is initialised).
pub fn state() -> Option<EventState<'static>> {
    XEN_PV.event_state()
}

/// The upcall: scan and dispatch (events are masked: called from the event callback).
pub fn upcall() {
    let Some(ev) = state() else { return };
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    ev.scan(|port| HANDLERS.dispatch(port));
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
pub fn set_handler(port: EvtchnPort, handler: Option<PortHandler>) {
    HANDLERS.set(port, handler);
}

/// Install the handler (if any) of a new port and unmask it.
fn bound(port: EvtchnPort, handler: Option<PortHandler>) -> Result<EvtchnPort, Errno> {
    if handler.is_some() {
        set_handler(port, handler);
    }
    unmask(port)?;
    Ok(port)
}

/// Bind `virq` (vCPU 0) to a new port with `handler`, unmasked.
pub fn bind_virq(virq: u32, handler: Option<PortHandler>) -> Result<EvtchnPort, Errno> {
    let mut b = EvtchnBindVirq {
        virq,
        vcpu: 0,
        port: 0,
    };
    XEN_PV.event_channel_op(EVTCHNOP_BIND_VIRQ, &mut b)?;
    bound(b.port, handler)
}

/// Bind an IPI port (vCPU 0) with `handler`, unmasked.
pub fn bind_ipi(handler: Option<PortHandler>) -> Result<EvtchnPort, Errno> {
    let mut b = EvtchnBindIpi { vcpu: 0, port: 0 };
    XEN_PV.event_channel_op(EVTCHNOP_BIND_IPI, &mut b)?;
    bound(b.port, handler)
}

/// Allocate a port in this domain that domain `remote` may connect to.
pub fn alloc_unbound(remote: DomId) -> Result<EvtchnPort, Errno> {
    alloc_unbound_in(DOMID_SELF, remote)
}

/// `EVTCHNOP_alloc_unbound` with an explicit `dom` (only `DOMID_SELF` should be allowed).
pub fn alloc_unbound_in(dom: DomId, remote: DomId) -> Result<EvtchnPort, Errno> {
    let mut a = EvtchnAllocUnbound {
        dom,
        remote_dom: remote,
        port: 0,
    };
    XEN_PV.event_channel_op(EVTCHNOP_ALLOC_UNBOUND, &mut a)?;
    Ok(a.port)
}

/// Connect to `remote_port` of domain `remote_dom` (allocated unbound for this domain); the new local
/// port gets `handler` and is unmasked.
pub fn bind_interdomain(
    remote_dom: DomId,
    remote_port: EvtchnPort,
    handler: Option<PortHandler>,
) -> Result<EvtchnPort, Errno> {
    let local = bind_interdomain_raw(remote_dom, remote_port)?;
    bound(local, handler)
}

/// Ports of another domain [`bind_offered`] tries.
pub const OFFER_SCAN_PORTS: EvtchnPort = 64;

/// The rendezvous of the two-domain setups (events scenario, benchmark partner, ping server), which have
/// no store to publish a port in: bind to the first of `remote`'s ports `1..=OFFER_SCAN_PORTS` that
/// `bind_interdomain` accepts, i.e. the one `remote` allocated unbound for this domain (no handler, mask
/// untouched). `None` if there is none (yet).
pub fn bind_offered(remote: DomId) -> Option<EvtchnPort> {
    (1..=OFFER_SCAN_PORTS).find_map(|p| bind_interdomain_raw(remote, p).ok())
}

/// `EVTCHNOP_bind_interdomain` alone (no handler, mask untouched).
pub fn bind_interdomain_raw(
    remote_dom: DomId,
    remote_port: EvtchnPort,
) -> Result<EvtchnPort, Errno> {
    let mut b = EvtchnBindInterdomain {
        remote_dom,
        _pad0: 0,
        remote_port,
        local_port: 0,
    };
    XEN_PV.event_channel_op(EVTCHNOP_BIND_INTERDOMAIN, &mut b)?;
    Ok(b.local_port)
}

/// Signal the other end of `port`.
pub fn send(port: EvtchnPort) -> Result<(), Errno> {
    XEN_PV.event_channel_op(EVTCHNOP_SEND, &mut EvtchnSend { port })
}

/// Close `port` (masked and its handler removed first, so nothing runs for it afterwards).
pub fn close(port: EvtchnPort) -> Result<(), Errno> {
    mask(port);
    let r = close_raw(port);
    if r.is_ok() {
        set_handler(port, None);
        if let Some(ev) = state() {
            ev.test_and_clear_pending(port);
        }
    }
    r
}

/// `EVTCHNOP_close` alone.
pub fn close_raw(port: EvtchnPort) -> Result<(), Errno> {
    XEN_PV.event_channel_op(EVTCHNOP_CLOSE, &mut EvtchnClose { port })
}

/// `EVTCHNOP_unmask`: the hypervisor clears the mask bit and, if the port is pending, delivers it.
pub fn unmask(port: EvtchnPort) -> Result<(), Errno> {
    XEN_PV.event_channel_op(EVTCHNOP_UNMASK, &mut EvtchnUnmask { port })
}

/// Set the port's mask bit (local; no hypercall).
pub fn mask(port: EvtchnPort) {
    if let Some(ev) = state() {
        ev.mask_port(port);
    }
}

/// `EVTCHNOP_status` of `port` in domain `dom` (`DOMID_SELF` for this one).
pub fn status(dom: DomId, port: EvtchnPort) -> Result<EvtchnStatus, Errno> {
    XEN_PV.evtchn_status(dom, port)
}

/// True if `port`'s pending bit is set.
pub fn is_pending(port: EvtchnPort) -> bool {
    state().is_some_and(|e| e.is_pending(port))
}

/// True if `port`'s mask bit is set.
pub fn is_masked(port: EvtchnPort) -> bool {
    state().is_some_and(|e| e.is_masked(port))
}

/// Clear `port`'s pending bit (for polled ports, which no upcall scans); returns whether it was set.
pub fn take_pending(port: EvtchnPort) -> bool {
    state().is_some_and(|e| e.test_and_clear_pending(port))
}
