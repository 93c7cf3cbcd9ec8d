//! Event channels (`event_channel.h`, VIRQs from `xen.h`): `EVTCHNOP_*` sub-commands, VIRQ numbers, the
//! 2-level port layout and the argument structures.
//!
//! `event_channel_op(cmd, arg)`: `RDI` = `EVTCHNOP_*`, `RSI` = guest pointer to the command's `Evtchn*`
//! structure, which the hypervisor reads and writes back (OUT fields).
//!
//! With the 2-level ABI a port's pending and mask bits live in `SharedInfo::evtchn_pending` and
//! `SharedInfo::evtchn_mask`: word `port / 64`, bit `port % 64` ([`port_word_and_mask`]).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::xen::DomId;

/// An event-channel port number (`evtchn_port_t`).
pub type EvtchnPort = u32;

/// Connect to a port another domain allocated with `ALLOC_UNBOUND`. Argument: [`EvtchnBindInterdomain`].
pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
/// Bind a new port to a virtual IRQ on a vCPU. Argument: [`EvtchnBindVirq`].
pub const EVTCHNOP_BIND_VIRQ: u64 = 1;
/// Bind a new port to a physical IRQ (privileged).
pub const EVTCHNOP_BIND_PIRQ: u64 = 2;
/// Close a port. Argument: [`EvtchnClose`].
pub const EVTCHNOP_CLOSE: u64 = 3;
/// Signal the other end of a port. Argument: [`EvtchnSend`].
pub const EVTCHNOP_SEND: u64 = 4;
/// Query a port. Argument: [`EvtchnStatus`].
pub const EVTCHNOP_STATUS: u64 = 5;
/// Allocate a port that a given remote domain may connect to. Argument: [`EvtchnAllocUnbound`].
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
/// Bind a new port for inter-vCPU notification. Argument: [`EvtchnBindIpi`].
pub const EVTCHNOP_BIND_IPI: u64 = 7;
/// Choose which vCPU a port notifies. Argument: [`EvtchnBindVcpu`].
pub const EVTCHNOP_BIND_VCPU: u64 = 8;
/// Unmask a port, delivering an upcall if it is pending. Argument: [`EvtchnUnmask`].
pub const EVTCHNOP_UNMASK: u64 = 9;
/// Close every port of a domain. Argument: [`EvtchnReset`].
pub const EVTCHNOP_RESET: u64 = 10;
/// FIFO ABI: set up a control block.
pub const EVTCHNOP_INIT_CONTROL: u64 = 11;
/// FIFO ABI: add an event-array page.
pub const EVTCHNOP_EXPAND_ARRAY: u64 = 12;
/// FIFO ABI: set a port's priority.
pub const EVTCHNOP_SET_PRIORITY: u64 = 13;

/// Ports in the 2-level ABI: 64 words of 64 bits (`EVTCHN_2L_NR_CHANNELS`, Xen's `NR_EVENT_CHANNELS`).
pub const NR_EVENT_CHANNELS: usize = 64 * 64;

/// The `SharedInfo::evtchn_pending`/`evtchn_mask` word index and bit mask of `port`, which must be below
/// [`NR_EVENT_CHANNELS`]; also the bit of `VcpuInfo::evtchn_pending_sel` for that word is `1 << word`.
pub const fn port_word_and_mask(port: EvtchnPort) -> (usize, u64) {
    ((port / 64) as usize, 1u64 << (port % 64))
}

/// Per-vCPU: timer (periodic tick and/or the `set_timer_op` deadline).
pub const VIRQ_TIMER: u32 = 0;
/// Per-vCPU: request to dump debug information.
pub const VIRQ_DEBUG: u32 = 1;
/// Global: bytes received on the hypervisor (emergency) console.
pub const VIRQ_CONSOLE: u32 = 2;
/// Global: exceptional event for some domain.
pub const VIRQ_DOM_EXC: u32 = 3;
/// Global: trace buffer has records.
pub const VIRQ_TBUF: u32 = 4;
/// Global: a domain paused for debugging.
pub const VIRQ_DEBUGGER: u32 = 6;
/// Per-vCPU: profiling sample available.
pub const VIRQ_XENOPROF: u32 = 7;
/// Global: bytes received on the console ring.
pub const VIRQ_CON_RING: u32 = 8;
/// Global: physical CPU state changed.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// Global: memory event.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// Per-domain: Argo message notification.
pub const VIRQ_ARGO: u32 = 11;
/// Global: hypervisor low on heap memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// Per-vCPU: PMU interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// First architecture-specific VIRQ.
pub const VIRQ_ARCH_0: u32 = 16;
/// Last architecture-specific VIRQ.
pub const VIRQ_ARCH_7: u32 = 23;
/// Number of VIRQs.
pub const NR_VIRQS: u32 = 24;

/// [`EvtchnStatus::status`]: not in use.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// [`EvtchnStatus::status`]: waiting for an inter-domain connection.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// [`EvtchnStatus::status`]: connected to a remote domain.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// [`EvtchnStatus::status`]: bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// [`EvtchnStatus::status`]: bound to a VIRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// [`EvtchnStatus::status`]: bound to an IPI.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// [`EVTCHNOP_ALLOC_UNBOUND`] (`evtchn_alloc_unbound`), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnAllocUnbound {
    /// In: the domain to allocate in (`DOMID_SELF` unless privileged).
    pub dom: DomId,
    /// In: the domain allowed to connect.
    pub remote_dom: DomId,
    /// Out: the new port.
    pub port: EvtchnPort,
}

/// [`EVTCHNOP_BIND_INTERDOMAIN`] (`evtchn_bind_interdomain`), 12 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindInterdomain {
    /// In.
    pub remote_dom: DomId,
    pub _pad0: u16,
    /// In.
    pub remote_port: EvtchnPort,
    /// Out.
    pub local_port: EvtchnPort,
}

/// [`EVTCHNOP_BIND_VIRQ`] (`evtchn_bind_virq`), 12 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindVirq {
    /// In: `VIRQ_*`.
    pub virq: u32,
    /// In.
    pub vcpu: u32,
    /// Out.
    pub port: EvtchnPort,
}

/// [`EVTCHNOP_BIND_IPI`] (`evtchn_bind_ipi`), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindIpi {
    /// In.
    pub vcpu: u32,
    /// Out.
    pub port: EvtchnPort,
}

/// [`EVTCHNOP_CLOSE`] (`evtchn_close`), 4 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnClose {
    pub port: EvtchnPort,
}

/// [`EVTCHNOP_SEND`] (`evtchn_send`), 4 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnSend {
    pub port: EvtchnPort,
}

/// [`EVTCHNOP_UNMASK`] (`evtchn_unmask`), 4 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnUnmask {
    pub port: EvtchnPort,
}

/// [`EVTCHNOP_BIND_VCPU`] (`evtchn_bind_vcpu`), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindVcpu {
    pub port: EvtchnPort,
    pub vcpu: u32,
}

/// [`EVTCHNOP_RESET`] (`evtchn_reset`), 2 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnReset {
    pub dom: DomId,
}

/// [`EVTCHNOP_STATUS`] (`evtchn_status`), 24 bytes.
///
/// `u` is Xen's union, by `status`: `UNBOUND` → `u[0] & 0xffff` is the remote domain allowed to connect;
/// `INTERDOMAIN` → `u[0] & 0xffff` is the remote domain and `u[1]` the remote port; `PIRQ` / `VIRQ` →
/// `u[0]` is the IRQ number.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnStatus {
    /// In.
    pub dom: DomId,
    pub _pad0: u16,
    /// In.
    pub port: EvtchnPort,
    /// Out: `EVTCHNSTAT_*`.
    pub status: u32,
    /// Out: the vCPU the port notifies.
    pub vcpu: u32,
    /// Out: see the type's documentation.
    pub u: [u32; 2],
}

layout!(EvtchnAllocUnbound, 8; port @ 4);
layout!(EvtchnBindInterdomain, 12; remote_port @ 4, local_port @ 8);
layout!(EvtchnBindVirq, 12; port @ 8);
layout!(EvtchnBindIpi, 8);
layout!(EvtchnClose, 4);
layout!(EvtchnSend, 4);
layout!(EvtchnUnmask, 4);
layout!(EvtchnBindVcpu, 8);
layout!(EvtchnReset, 2);
layout!(EvtchnStatus, 24; port @ 4, status @ 8, vcpu @ 12, u @ 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_xens() {
        let ops = [
            EVTCHNOP_BIND_INTERDOMAIN,
            EVTCHNOP_BIND_VIRQ,
            EVTCHNOP_BIND_PIRQ,
            EVTCHNOP_CLOSE,
            EVTCHNOP_SEND,
            EVTCHNOP_STATUS,
            EVTCHNOP_ALLOC_UNBOUND,
            EVTCHNOP_BIND_IPI,
            EVTCHNOP_BIND_VCPU,
            EVTCHNOP_UNMASK,
            EVTCHNOP_RESET,
            EVTCHNOP_INIT_CONTROL,
            EVTCHNOP_EXPAND_ARRAY,
            EVTCHNOP_SET_PRIORITY,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(op, i as u64);
        }
        assert_eq!(
            (
                VIRQ_TIMER,
                VIRQ_DEBUG,
                VIRQ_CONSOLE,
                VIRQ_DOM_EXC,
                VIRQ_TBUF
            ),
            (0, 1, 2, 3, 4)
        );
        assert_eq!(
            (VIRQ_DEBUGGER, VIRQ_XENOPROF, VIRQ_CON_RING, VIRQ_PCPU_STATE),
            (6, 7, 8, 9)
        );
        assert_eq!(
            (VIRQ_MEM_EVENT, VIRQ_ARGO, VIRQ_ENOMEM, VIRQ_XENPMU),
            (10, 11, 12, 13)
        );
        assert_eq!((VIRQ_ARCH_0, VIRQ_ARCH_7, NR_VIRQS), (16, 23, 24));
        assert_eq!(
            (
                EVTCHNSTAT_CLOSED,
                EVTCHNSTAT_UNBOUND,
                EVTCHNSTAT_INTERDOMAIN
            ),
            (0, 1, 2)
        );
        assert_eq!(
            (EVTCHNSTAT_PIRQ, EVTCHNSTAT_VIRQ, EVTCHNSTAT_IPI),
            (3, 4, 5)
        );
        assert_eq!(NR_EVENT_CHANNELS, 4096);
    }

    #[test]
    fn port_layout() {
        assert_eq!(port_word_and_mask(0), (0, 1));
        assert_eq!(port_word_and_mask(63), (0, 1 << 63));
        assert_eq!(port_word_and_mask(64), (1, 1));
        assert_eq!(
            port_word_and_mask(NR_EVENT_CHANNELS as u32 - 1),
            (63, 1 << 63)
        );
        // Every port fits the shared-info bitmaps and the 64-bit selector.
        let words = NR_EVENT_CHANNELS / 64;
        assert_eq!(words, 64);
    }
}
