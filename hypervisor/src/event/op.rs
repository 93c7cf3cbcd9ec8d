//! `event_channel_op(cmd, arg)` (hypercall 32) without guest memory: decode the argument structure the
//! hypercall copied in, act on the [`EventSystem`], and say what to copy back and which event bits to change.
//!
//! The hypercall file does the I/O around it:
//!
//! ```text
//! let size = op::arg_size(cmd)?;                         // -ENOSYS for unknown / unsupported commands
//! read `size` bytes from the guest at `arg`              // -EFAULT
//! let req = op::decode(cmd, &bytes[..size])?;
//! let out = op::execute(&mut events, caller, &req, |d| domain d exists)?;
//! if let Some(reply) = out.reply { write reply.as_bytes() to the guest at `arg` }   // -EFAULT
//! if let Some(effect) = out.effect {
//!     let mut bits = SharedInfoPage::new(shared_info page of effect.dom());
//!     if effect.apply(&mut bits, |port| effect.dom() polls port) { kick effect.dom()'s vCPU }
//! }
//! return 0
//! ```
//!
//! As in Xen, the OUT fields are written back only on success, and a failed write-back (-EFAULT) does not
//! undo the operation. Supported: alloc_unbound, bind_interdomain, bind_virq, bind_ipi, bind_vcpu, close,
//! send, status, unmask, reset (own domain). bind_pirq and the FIFO ABI's commands are -ENOSYS (guests fall
//! back to the 2-level ABI on -ENOSYS).

use abi::errno::Errno;
use abi::event_channel::*;
use abi::xen::{DOMID_SELF, DomId};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::bits::{self, EventBits};
use super::channel::{EventSystem, MAX_PORTS};

/// The largest argument structure (`evtchn_status`).
pub const MAX_ARG_SIZE: usize = 24;

/// A decoded `event_channel_op` request: the command's argument structure as the guest wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnRequest {
    /// `EVTCHNOP_alloc_unbound`.
    AllocUnbound(EvtchnAllocUnbound),
    /// `EVTCHNOP_bind_interdomain`.
    BindInterdomain(EvtchnBindInterdomain),
    /// `EVTCHNOP_bind_virq`.
    BindVirq(EvtchnBindVirq),
    /// `EVTCHNOP_bind_ipi`.
    BindIpi(EvtchnBindIpi),
    /// `EVTCHNOP_bind_vcpu`.
    BindVcpu(EvtchnBindVcpu),
    /// `EVTCHNOP_close`.
    Close(EvtchnClose),
    /// `EVTCHNOP_send`.
    Send(EvtchnSend),
    /// `EVTCHNOP_status`.
    Status(EvtchnStatus),
    /// `EVTCHNOP_unmask`.
    Unmask(EvtchnUnmask),
    /// `EVTCHNOP_reset`.
    Reset(EvtchnReset),
}

/// The size of `cmd`'s argument structure, i.e. how many bytes to copy in from the guest; -ENOSYS for a
/// command this hypervisor does not implement.
pub fn arg_size(cmd: u64) -> Result<usize, Errno> {
    Ok(match cmd {
        EVTCHNOP_ALLOC_UNBOUND => size_of::<EvtchnAllocUnbound>(),
        EVTCHNOP_BIND_INTERDOMAIN => size_of::<EvtchnBindInterdomain>(),
        EVTCHNOP_BIND_VIRQ => size_of::<EvtchnBindVirq>(),
        EVTCHNOP_BIND_IPI => size_of::<EvtchnBindIpi>(),
        EVTCHNOP_BIND_VCPU => size_of::<EvtchnBindVcpu>(),
        EVTCHNOP_CLOSE => size_of::<EvtchnClose>(),
        EVTCHNOP_SEND => size_of::<EvtchnSend>(),
        EVTCHNOP_STATUS => size_of::<EvtchnStatus>(),
        EVTCHNOP_UNMASK => size_of::<EvtchnUnmask>(),
        EVTCHNOP_RESET => size_of::<EvtchnReset>(),
        _ => return Err(Errno::ENOSYS),
    })
}

fn read<T: FromBytes>(bytes: &[u8]) -> Result<T, Errno> {
    T::read_from_bytes(bytes).map_err(|_| Errno::EINVAL)
}

/// Decode `cmd` and its argument bytes (exactly [`arg_size`]`(cmd)` of them, else -EINVAL). Pure.
#[inline] // One call site, on the event-send path: inlined like the rest of the handler.
pub fn decode(cmd: u64, arg: &[u8]) -> Result<EvtchnRequest, Errno> {
    Ok(match cmd {
        EVTCHNOP_ALLOC_UNBOUND => EvtchnRequest::AllocUnbound(read(arg)?),
        EVTCHNOP_BIND_INTERDOMAIN => EvtchnRequest::BindInterdomain(read(arg)?),
        EVTCHNOP_BIND_VIRQ => EvtchnRequest::BindVirq(read(arg)?),
        EVTCHNOP_BIND_IPI => EvtchnRequest::BindIpi(read(arg)?),
        EVTCHNOP_BIND_VCPU => EvtchnRequest::BindVcpu(read(arg)?),
        EVTCHNOP_CLOSE => EvtchnRequest::Close(read(arg)?),
        EVTCHNOP_SEND => EvtchnRequest::Send(read(arg)?),
        EVTCHNOP_STATUS => EvtchnRequest::Status(read(arg)?),
        EVTCHNOP_UNMASK => EvtchnRequest::Unmask(read(arg)?),
        EVTCHNOP_RESET => EvtchnRequest::Reset(read(arg)?),
        _ => return Err(Errno::ENOSYS),
    })
}

/// The argument structure with its OUT fields filled, to copy back to the guest at the same address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    buf: [u8; MAX_ARG_SIZE],
    len: usize,
}

impl Reply {
    fn of(value: &(impl IntoBytes + Immutable)) -> Reply {
        let src = value.as_bytes();
        let mut buf = [0u8; MAX_ARG_SIZE];
        let len = src.len().min(MAX_ARG_SIZE);
        buf[..len].copy_from_slice(&src[..len]);
        Reply { buf, len }
    }

    /// The bytes to write back.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A change to one domain's shared_info event bits that the operation requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// [`bits::set_pending`] on `dom`'s `port` (a send).
    SetPending {
        /// The target domain.
        dom: DomId,
        /// Its port.
        port: EvtchnPort,
    },
    /// [`bits::unmask`] of the caller's `port`.
    Unmask {
        /// The caller.
        dom: DomId,
        /// Its port.
        port: EvtchnPort,
    },
    /// Clear the pending bit of `dom`'s closed `port`.
    ClearPending {
        /// The caller.
        dom: DomId,
        /// Its port.
        port: EvtchnPort,
    },
    /// Clear the pending bits of all of `dom`'s ports (after a reset).
    ClearAllPending {
        /// The caller.
        dom: DomId,
    },
}

impl Effect {
    /// The domain whose shared_info page the effect changes.
    pub const fn dom(&self) -> DomId {
        match *self {
            Effect::SetPending { dom, .. }
            | Effect::Unmask { dom, .. }
            | Effect::ClearPending { dom, .. }
            | Effect::ClearAllPending { dom } => dom,
        }
    }

    /// Apply the effect to [`Effect::dom`]'s event bits; true if its vCPU must be kicked (woken if
    /// blocked; the upcall is delivered on its way back to the guest). `polled(port)`: the domain sleeps in
    /// `SCHEDOP_poll` on `port` (a send goes through [`super::mark_pending`], as a VIRQ does).
    #[inline] // One call site, on the event-send path: inlined like the rest of the handler.
    pub fn apply(
        &self,
        bits: &mut impl EventBits,
        polled: impl FnOnce(EvtchnPort) -> bool,
    ) -> bool {
        match *self {
            Effect::SetPending { port, .. } => super::mark_pending(bits, port, polled),
            Effect::Unmask { port, .. } => bits::unmask(bits, port),
            Effect::ClearPending { port, .. } => {
                bits.clear_pending(port);
                false
            }
            Effect::ClearAllPending { .. } => {
                bits::clear_all_pending(bits, MAX_PORTS);
                false
            }
        }
    }
}

/// The result of a successful operation (the hypercall returns 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes to copy back to the guest's argument structure, if the command has OUT fields.
    pub reply: Option<Reply>,
    /// Event bits to change, if any.
    pub effect: Option<Effect>,
}

impl Outcome {
    const NOTHING: Outcome = Outcome {
        reply: None,
        effect: None,
    };

    fn reply(value: &(impl IntoBytes + Immutable)) -> Outcome {
        Outcome {
            reply: Some(Reply::of(value)),
            effect: None,
        }
    }

    fn effect(effect: Effect) -> Outcome {
        Outcome {
            reply: None,
            effect: Some(effect),
        }
    }
}

/// Carry out `req` for domain `caller` on the port tables. `exists(d)`: domain `d` exists (for remote
/// domains). On error nothing has changed.
#[inline] // One call site, on the event-send path: inlined like the rest of the handler.
pub fn execute(
    sys: &mut EventSystem,
    caller: DomId,
    req: &EvtchnRequest,
    exists: impl Fn(DomId) -> bool,
) -> Result<Outcome, Errno> {
    Ok(match *req {
        EvtchnRequest::AllocUnbound(mut a) => {
            a.port = sys.alloc_unbound(caller, a.dom, a.remote_dom, exists)?;
            Outcome::reply(&a)
        }
        EvtchnRequest::BindInterdomain(mut a) => {
            a.local_port = sys.bind_interdomain(caller, a.remote_dom, a.remote_port, exists)?;
            Outcome::reply(&a)
        }
        EvtchnRequest::BindVirq(mut a) => {
            a.port = sys.bind_virq(caller, a.virq, a.vcpu)?;
            Outcome::reply(&a)
        }
        EvtchnRequest::BindIpi(mut a) => {
            a.port = sys.bind_ipi(caller, a.vcpu)?;
            Outcome::reply(&a)
        }
        EvtchnRequest::BindVcpu(a) => {
            sys.bind_vcpu(caller, a.port, a.vcpu)?;
            Outcome::NOTHING
        }
        EvtchnRequest::Close(a) => {
            sys.close(caller, a.port)?;
            Outcome::effect(Effect::ClearPending {
                dom: caller,
                port: a.port,
            })
        }
        EvtchnRequest::Send(a) => match sys.send(caller, a.port)? {
            Some((dom, port)) => Outcome::effect(Effect::SetPending { dom, port }),
            None => Outcome::NOTHING,
        },
        EvtchnRequest::Status(mut a) => {
            let s = sys.status(caller, a.dom, a.port)?;
            (a.status, a.vcpu, a.u) = (s.status, s.vcpu, s.u);
            Outcome::reply(&a)
        }
        EvtchnRequest::Unmask(a) => {
            sys.check_unmask(caller, a.port)?;
            Outcome::effect(Effect::Unmask {
                dom: caller,
                port: a.port,
            })
        }
        EvtchnRequest::Reset(a) => {
            if a.dom != DOMID_SELF && a.dom != caller {
                return Err(Errno::EPERM);
            }
            if sys.table(caller).is_none() {
                return Err(Errno::ESRCH);
            }
            sys.reset_domain(caller);
            Outcome::effect(Effect::ClearAllPending { dom: caller })
        }
    })
}

/// [`arg_size`], [`decode`] and [`execute`] in one, over argument bytes already copied in (at least
/// `arg_size(cmd)` of them; any beyond are ignored).
pub fn event_channel_op(
    sys: &mut EventSystem,
    caller: DomId,
    cmd: u64,
    arg: &[u8],
    exists: impl Fn(DomId) -> bool,
) -> Result<Outcome, Errno> {
    let size = arg_size(cmd)?;
    let bytes = arg.get(..size).ok_or(Errno::EFAULT)?;
    let req = decode(cmd, bytes)?;
    execute(sys, caller, &req, exists)
}
