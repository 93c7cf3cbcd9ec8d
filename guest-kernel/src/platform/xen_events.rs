//! Event-channel operations that only the PV backend has, in Xen's terms (a raw VIRQ number, a domain
//! argument, the full `EVTCHNOP_status` record): for the PV scenarios that test the hypervisor's event
//! channels, re-exported as `crate::event::{bind_virq, alloc_unbound_in, status}`.

use abi::errno::Errno;
use abi::event_channel::{
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_VIRQ, EvtchnAllocUnbound, EvtchnBindVirq, EvtchnPort,
    EvtchnStatus,
};
use abi::xen::DomId;

use super::xen_pv::XEN_PV;
use crate::event::PortHandler;

/// Bind `virq` (vCPU 0) to a new port with `handler`, unmasked.
pub fn bind_virq(virq: u32, handler: Option<PortHandler>) -> Result<EvtchnPort, Errno> {
    let mut b = EvtchnBindVirq {
        virq,
        vcpu: 0,
        port: 0,
    };
    XEN_PV.event_channel_op(EVTCHNOP_BIND_VIRQ, &mut b)?;
    crate::event::channel_bound(b.port, handler)
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

/// `EVTCHNOP_status` of `port` in domain `dom` (`DOMID_SELF` for this one).
pub fn status(dom: DomId, port: EvtchnPort) -> Result<EvtchnStatus, Errno> {
    XEN_PV.evtchn_status(dom, port)
}
