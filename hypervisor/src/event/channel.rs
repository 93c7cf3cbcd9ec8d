//! Event-channel port tables: every domain's ports, their states and bindings, and the operations of
//! `event_channel_op` on them (no shared_info bits: those are [`super::bits`]'s).
//!
//! Each domain has [`MAX_PORTS`] (1024) ports. Port 0 is reserved, as in Xen: never allocated, `close` and
//! `send` refuse it, `status` reports it closed. A port is in one of the [`PortState`]s; interdomain ports
//! come in pairs, each end naming the other, and [`EventSystem`] holds all domains' tables so that one
//! operation can update both ends.
//!
//! Errors, Xen's:
//!
//! | condition | errno |
//! |---|---|
//! | port 0 where a bound port is needed, port ≥ [`MAX_PORTS`] (1024..4096 exist in the ABI but not in this table; ≥ 4096 not in the ABI), port in the wrong state (free, or not the kind the operation needs) | -EINVAL |
//! | no free port left when allocating | -ENOSPC |
//! | naming another domain's table (`dom` not `DOMID_SELF` / the caller) | -EPERM |
//! | a remote domain that does not exist | -ESRCH |
//! | a VIRQ already bound | -EEXIST |
//! | a vCPU other than 0 | -ENOENT (-EINVAL for a global VIRQ, as Xen) |
//!
//! A domain only ever names its own ports: every operation indexes the caller's table, and the only way
//! to reach another domain's port is through an interdomain binding the other domain offered
//! (`alloc_unbound` naming the caller). Closing one end of an interdomain pair turns the other end into
//! `Unbound { remote: closer }` (Xen), so no port ever points at a freed one; [`EventSystem::check`]
//! verifies this and the VIRQ table from scratch.

use abi::errno::Errno;
use abi::event_channel::{
    EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_IPI, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ,
    EvtchnPort, NR_VIRQS, VIRQ_ARCH_0, VIRQ_ARCH_7, VIRQ_DEBUG, VIRQ_TIMER, VIRQ_XENOPROF,
    VIRQ_XENPMU,
};
use abi::xen::{DOMID_SELF, DomId};

use crate::domain::state::MAX_DOMAINS;

/// Ports per domain (a quarter of the 2-level ABI's 4096, which would cost 32 KiB per domain here).
pub const MAX_PORTS: usize = 1024;

/// The state of one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortState {
    /// Not in use (port 0 is always `Free` and never allocated).
    Free,
    /// Allocated by `alloc_unbound`, waiting for `remote` to `bind_interdomain`; or the surviving end of a
    /// pair whose other end closed. Sending on it does nothing.
    Unbound {
        /// The domain allowed to connect.
        remote: DomId,
    },
    /// Connected to `remote_port` of `remote` (which names this port back).
    Interdomain {
        /// The other end's domain.
        remote: DomId,
        /// The other end's port.
        remote_port: EvtchnPort,
    },
    /// Bound to a virtual IRQ of vCPU 0.
    Virq {
        /// `VIRQ_*`.
        virq: u32,
    },
    /// Bound for notifications to the domain's own vCPU 0.
    Ipi,
}

/// What `status` reports: Xen's `evtchn_status` out fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// `EVTCHNSTAT_*`.
    pub status: u32,
    /// The vCPU the port notifies (always 0).
    pub vcpu: u32,
    /// `u[0]`: remote domain (unbound, interdomain) or VIRQ; `u[1]`: remote port (interdomain).
    pub u: [u32; 2],
}

/// Xen's `virq_is_global`: global VIRQs must be bound on vCPU 0; the others are per-vCPU.
pub const fn virq_is_global(virq: u32) -> bool {
    match virq {
        VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU => false,
        // x86's arch_virq_is_global() is true for every architectural VIRQ.
        VIRQ_ARCH_0..=VIRQ_ARCH_7 => true,
        _ => true,
    }
}

/// One domain's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortTable {
    ports: [PortState; MAX_PORTS],
    /// `virq_to_port[v]`: the port bound to VIRQ `v`, 0 if none.
    virq_to_port: [u16; NR_VIRQS as usize],
}

static_assertions::const_assert!(MAX_PORTS <= u16::MAX as usize);

impl PortTable {
    /// Every port free.
    pub const fn new() -> PortTable {
        PortTable {
            ports: [PortState::Free; MAX_PORTS],
            virq_to_port: [0; NR_VIRQS as usize],
        }
    }

    /// The state of `port` (`None` beyond the table).
    pub fn get(&self, port: EvtchnPort) -> Option<PortState> {
        self.ports.get(port as usize).copied()
    }

    /// The ports that are not free, in order.
    pub fn bound(&self) -> impl Iterator<Item = (EvtchnPort, PortState)> + '_ {
        self.ports
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != PortState::Free)
            .map(|(p, s)| (p as EvtchnPort, *s))
    }

    /// The lowest free port above 0.
    fn free_port(&self) -> Result<usize, Errno> {
        (1..MAX_PORTS)
            .find(|&p| self.ports[p] == PortState::Free)
            .ok_or(Errno::ENOSPC)
    }
}

impl Default for PortTable {
    fn default() -> Self {
        Self::new()
    }
}

/// The index of a port a domain may name in an operation on a bound port: 1..[`MAX_PORTS`].
fn port_index(port: EvtchnPort) -> Result<usize, Errno> {
    match port as usize {
        p @ 1..MAX_PORTS => Ok(p),
        _ => Err(Errno::EINVAL),
    }
}

/// A domain id that has a table.
fn dom_index(dom: DomId) -> Result<usize, Errno> {
    match dom as usize {
        d @ 0..MAX_DOMAINS => Ok(d),
        _ => Err(Errno::ESRCH),
    }
}

/// Every domain's ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSystem {
    tables: [PortTable; MAX_DOMAINS],
}

impl EventSystem {
    /// No port bound anywhere. (About 64 KiB: keep it in a static.)
    pub const fn new() -> EventSystem {
        EventSystem {
            tables: [const { PortTable::new() }; MAX_DOMAINS],
        }
    }

    /// Domain `dom`'s table (`None` beyond `MAX_DOMAINS`).
    pub fn table(&self, dom: DomId) -> Option<&PortTable> {
        self.tables.get(dom as usize)
    }

    /// The state of `dom`'s `port` (`None` if either is out of range).
    pub fn state(&self, dom: DomId, port: EvtchnPort) -> Option<PortState> {
        self.table(dom)?.get(port)
    }

    fn set(&mut self, dom: usize, port: usize, state: PortState) {
        self.tables[dom].ports[port] = state;
    }

    /// The caller's own bound port: range, state not free.
    fn own_port(
        &self,
        caller: DomId,
        port: EvtchnPort,
    ) -> Result<(usize, usize, PortState), Errno> {
        let d = dom_index(caller)?;
        let p = port_index(port)?;
        match self.tables[d].ports[p] {
            PortState::Free => Err(Errno::EINVAL),
            s => Ok((d, p, s)),
        }
    }

    /// `EVTCHNOP_alloc_unbound`: a new port of `dom` (`DOMID_SELF` or the caller itself, else -EPERM) that
    /// `remote_dom` (`DOMID_SELF` meaning the caller) may connect to; the remote must exist (-ESRCH).
    pub fn alloc_unbound(
        &mut self,
        caller: DomId,
        dom: DomId,
        remote_dom: DomId,
        exists: impl Fn(DomId) -> bool,
    ) -> Result<EvtchnPort, Errno> {
        let d = dom_index(caller)?;
        if dom != DOMID_SELF && dom != caller {
            return Err(Errno::EPERM);
        }
        let remote = if remote_dom == DOMID_SELF {
            caller
        } else {
            remote_dom
        };
        if dom_index(remote).is_err() || !exists(remote) {
            return Err(Errno::ESRCH);
        }
        let p = self.tables[d].free_port()?;
        self.set(d, p, PortState::Unbound { remote });
        Ok(p as EvtchnPort)
    }

    /// `EVTCHNOP_bind_interdomain`: connect a new port of the caller to `remote_port` of `remote_dom`
    /// (`DOMID_SELF`: a loopback pair within the caller), which must be `Unbound` for the caller. Both ends
    /// become `Interdomain`, naming each other. Returns the caller's new port.
    pub fn bind_interdomain(
        &mut self,
        caller: DomId,
        remote_dom: DomId,
        remote_port: EvtchnPort,
        exists: impl Fn(DomId) -> bool,
    ) -> Result<EvtchnPort, Errno> {
        let d = dom_index(caller)?;
        let remote = if remote_dom == DOMID_SELF {
            caller
        } else {
            remote_dom
        };
        let r = dom_index(remote).map_err(|_| Errno::ESRCH)?;
        if !exists(remote) {
            return Err(Errno::ESRCH);
        }
        let rp = port_index(remote_port)?;
        if self.tables[r].ports[rp] != (PortState::Unbound { remote: caller }) {
            return Err(Errno::EINVAL);
        }
        // The remote port is not free, so the new one differs from it even for a loopback pair.
        let p = self.tables[d].free_port()?;
        self.set(
            d,
            p,
            PortState::Interdomain {
                remote,
                remote_port,
            },
        );
        self.set(
            r,
            rp,
            PortState::Interdomain {
                remote: caller,
                remote_port: p as EvtchnPort,
            },
        );
        Ok(p as EvtchnPort)
    }

    /// `EVTCHNOP_bind_virq`: a new port for `virq` (< `NR_VIRQS`, else -EINVAL) on `vcpu` (0: -ENOENT for
    /// others, -EINVAL for a global VIRQ on another vCPU, as Xen); -EEXIST if the VIRQ is already bound.
    pub fn bind_virq(&mut self, caller: DomId, virq: u32, vcpu: u32) -> Result<EvtchnPort, Errno> {
        let d = dom_index(caller)?;
        if virq >= NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        if vcpu != 0 {
            return Err(if virq_is_global(virq) {
                Errno::EINVAL
            } else {
                Errno::ENOENT
            });
        }
        if self.tables[d].virq_to_port[virq as usize] != 0 {
            return Err(Errno::EEXIST);
        }
        let p = self.tables[d].free_port()?;
        self.set(d, p, PortState::Virq { virq });
        self.tables[d].virq_to_port[virq as usize] = p as u16;
        Ok(p as EvtchnPort)
    }

    /// Restore: bind `dom`'s free `port` exactly as a saved domain had it. Only the local kinds — a VIRQ
    /// not bound yet, or an IPI — can be restored (an interdomain or unbound port is closed on restore, as
    /// Xen's resume reports them); anything else, a port out of range or in use: -EINVAL.
    pub fn restore_local(
        &mut self,
        dom: DomId,
        port: EvtchnPort,
        state: PortState,
    ) -> Result<(), Errno> {
        let d = dom_index(dom)?;
        let p = port_index(port)?;
        if self.tables[d].ports[p] != PortState::Free {
            return Err(Errno::EINVAL);
        }
        match state {
            PortState::Virq { virq }
                if virq < NR_VIRQS && self.tables[d].virq_to_port[virq as usize] == 0 =>
            {
                self.set(d, p, state);
                self.tables[d].virq_to_port[virq as usize] = p as u16;
                Ok(())
            }
            PortState::Ipi => {
                self.set(d, p, state);
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// `EVTCHNOP_bind_ipi`: a new port that notifies the caller's `vcpu` (0 only, else -ENOENT).
    pub fn bind_ipi(&mut self, caller: DomId, vcpu: u32) -> Result<EvtchnPort, Errno> {
        let d = dom_index(caller)?;
        if vcpu != 0 {
            return Err(Errno::ENOENT);
        }
        let p = self.tables[d].free_port()?;
        self.set(d, p, PortState::Ipi);
        Ok(p as EvtchnPort)
    }

    /// `EVTCHNOP_bind_vcpu`: choose the vCPU a port notifies. Only vCPU 0 exists (-ENOENT otherwise), so
    /// this only checks, Xen's way, that the port may be re-bound: unbound, interdomain or a global VIRQ.
    pub fn bind_vcpu(&self, caller: DomId, port: EvtchnPort, vcpu: u32) -> Result<(), Errno> {
        let (_, _, state) = self.own_port(caller, port)?;
        match state {
            PortState::Unbound { .. } | PortState::Interdomain { .. } => {}
            PortState::Virq { virq } if virq_is_global(virq) => {}
            _ => return Err(Errno::EINVAL),
        }
        if vcpu != 0 {
            return Err(Errno::ENOENT);
        }
        Ok(())
    }

    /// `EVTCHNOP_close`: free the caller's `port`. The other end of an interdomain pair becomes
    /// `Unbound { remote: caller }`, so it may be bound again. The caller's pending bit for the port should
    /// be cleared (the `event_channel_op` layer reports that as an effect).
    pub fn close(&mut self, caller: DomId, port: EvtchnPort) -> Result<(), Errno> {
        let (d, p, state) = self.own_port(caller, port)?;
        match state {
            // (own_port refuses free ports.)
            PortState::Free | PortState::Unbound { .. } | PortState::Ipi => {}
            PortState::Virq { virq } => {
                if let Some(slot) = self.tables[d].virq_to_port.get_mut(virq as usize) {
                    *slot = 0;
                }
            }
            PortState::Interdomain {
                remote,
                remote_port,
            } => {
                // Invariant: the other end names this one. Check anyway rather than trust it blindly.
                let peer = (remote as usize, remote_port as usize);
                let back = PortState::Interdomain {
                    remote: caller,
                    remote_port: port,
                };
                if self.state(remote, remote_port) == Some(back) {
                    self.set(peer.0, peer.1, PortState::Unbound { remote: caller });
                }
            }
        }
        self.set(d, p, PortState::Free);
        Ok(())
    }

    /// `EVTCHNOP_send`: what to mark pending for a send on the caller's `port`: the other end of an
    /// interdomain pair, the port itself for an IPI, nothing for an unbound port (Xen drops it silently).
    /// Sending on a VIRQ or free port is -EINVAL.
    pub fn send(
        &self,
        caller: DomId,
        port: EvtchnPort,
    ) -> Result<Option<(DomId, EvtchnPort)>, Errno> {
        let (_, _, state) = self.own_port(caller, port)?;
        match state {
            PortState::Interdomain {
                remote,
                remote_port,
            } => Ok(Some((remote, remote_port))),
            PortState::Ipi => Ok(Some((caller, port))),
            PortState::Unbound { .. } => Ok(None),
            PortState::Virq { .. } | PortState::Free => Err(Errno::EINVAL),
        }
    }

    /// `EVTCHNOP_status` of `port` of `dom` (`DOMID_SELF` or the caller, else -EPERM). Port 0 and free ports
    /// are `EVTCHNSTAT_closed`; ports beyond the table are -EINVAL.
    pub fn status(&self, caller: DomId, dom: DomId, port: EvtchnPort) -> Result<Status, Errno> {
        let d = dom_index(caller)?;
        if dom != DOMID_SELF && dom != caller {
            return Err(Errno::EPERM);
        }
        let state = self.tables[d].get(port).ok_or(Errno::EINVAL)?;
        let (status, u) = match state {
            PortState::Free => (EVTCHNSTAT_CLOSED, [0, 0]),
            PortState::Unbound { remote } => (EVTCHNSTAT_UNBOUND, [remote as u32, 0]),
            PortState::Interdomain {
                remote,
                remote_port,
            } => (EVTCHNSTAT_INTERDOMAIN, [remote as u32, remote_port]),
            PortState::Virq { virq } => (EVTCHNSTAT_VIRQ, [virq, 0]),
            PortState::Ipi => (EVTCHNSTAT_IPI, [0, 0]),
        };
        Ok(Status { status, vcpu: 0, u })
    }

    /// A port a domain may pass to `EVTCHNOP_unmask`: any port of its table (Xen only checks the range;
    /// the mask bit is the guest's own).
    pub fn check_unmask(&self, caller: DomId, port: EvtchnPort) -> Result<(), Errno> {
        let d = dom_index(caller)?;
        self.tables[d].get(port).map(|_| ()).ok_or(Errno::EINVAL)
    }

    /// The port `dom` bound to `virq`, for the hypervisor to raise it (`VIRQ_TIMER`, `VIRQ_CONSOLE`,
    /// `VIRQ_DEBUG`…).
    pub fn virq_port(&self, dom: DomId, virq: u32) -> Option<EvtchnPort> {
        let p = *self.table(dom)?.virq_to_port.get(virq as usize)?;
        (p != 0).then_some(p as EvtchnPort)
    }

    /// Close every port of `dom` (domain teardown, `EVTCHNOP_reset`): its peers' interdomain ends become
    /// `Unbound { remote: dom }`. Out-of-range `dom` does nothing.
    pub fn reset_domain(&mut self, dom: DomId) {
        if dom_index(dom).is_err() {
            return;
        }
        for port in 1..MAX_PORTS as EvtchnPort {
            // Only errors: the port is already free.
            let _ = self.close(dom, port);
        }
    }

    /// Verify every invariant from scratch: port 0 free in every table; each interdomain end's peer exists
    /// and names it back; each VIRQ port is in the VIRQ table and vice versa. The first violation found.
    pub fn check(&self) -> Result<(), &'static str> {
        for (d, t) in self.tables.iter().enumerate() {
            if t.ports[0] != PortState::Free {
                return Err("port 0 is in use");
            }
            for (p, s) in t.ports.iter().enumerate() {
                match *s {
                    PortState::Interdomain {
                        remote,
                        remote_port,
                    } => {
                        let back = PortState::Interdomain {
                            remote: d as DomId,
                            remote_port: p as EvtchnPort,
                        };
                        if self.state(remote, remote_port) != Some(back) {
                            return Err("an interdomain end's peer does not name it back");
                        }
                    }
                    PortState::Virq { virq }
                        if t.virq_to_port.get(virq as usize) != Some(&(p as u16)) =>
                    {
                        return Err("a VIRQ port is missing from the VIRQ table");
                    }
                    PortState::Unbound { remote } if remote as usize >= MAX_DOMAINS => {
                        return Err("an unbound port names a domain beyond the table");
                    }
                    _ => {}
                }
            }
            for (v, &p) in t.virq_to_port.iter().enumerate() {
                if p != 0 && t.get(p as EvtchnPort) != Some(PortState::Virq { virq: v as u32 }) {
                    return Err("the VIRQ table names a port not bound to that VIRQ");
                }
            }
        }
        Ok(())
    }
}

impl Default for EventSystem {
    fn default() -> Self {
        Self::new()
    }
}
