//! `sched_op` (hypercall 29): yield, block, poll, or shut the calling domain down.
//!
//! - `SCHEDOP_yield`: let the other runnable domains go first.
//! - `SCHEDOP_block`: re-enable events and sleep until one is pending — atomically: if an upcall is already
//!   pending the call returns at once (and the upcall is delivered on the way out).
//! - `SCHEDOP_poll` (`sched_poll`: ports, count, timeout): sleep until one of the ports is pending or the
//!   absolute timeout passes; events stay masked. At most [`MAX_POLL_PORTS`] ports.
//! - `SCHEDOP_shutdown`: stop with a reason; our extension (documented in `abi::sched`): the third
//!   argument (RDX) carries the guest's exit code; for `SHUTDOWN_suspend` it is, as in Xen, the MFN of the
//!   caller's start-info page (`-EINVAL` if that frame is not the caller's), and the domain is kept,
//!   paused, for the toolstack (`domain::save`).

use abi::errno::Errno;
use abi::sched::{
    SCHEDOP_BLOCK, SCHEDOP_POLL, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, SchedPoll, ShutdownReason,
};
use abi::types::{Gva, Maddr, Mfn, PAGE_SIZE};
use abi::xen::SchedShutdown;
use zerocopy::{FromZeros, IntoBytes};

use super::MachineMem;
use super::{Action, HypercallCtx};
use crate::event::bits::PENDING_OFFSET;
use crate::mm::phys::PhysRead;
use crate::mm::walk;

/// A decoded `sched_op` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedRequest {
    /// Let other domains run.
    Yield,
    /// Enable events and sleep until one is pending.
    Block,
    /// Sleep until one of the ports in the `sched_poll` at this address is pending.
    Poll(Gva),
    /// Read a `sched_shutdown` at this address; stop with the given code.
    Shutdown(Gva, u32),
}

/// Decode the registers.
pub fn decode(args: [u64; 5]) -> Result<SchedRequest, Errno> {
    match args[0] {
        SCHEDOP_YIELD => Ok(SchedRequest::Yield),
        SCHEDOP_BLOCK => Ok(SchedRequest::Block),
        SCHEDOP_POLL => Ok(SchedRequest::Poll(Gva(args[1]))),
        SCHEDOP_SHUTDOWN => Ok(SchedRequest::Shutdown(Gva(args[1]), args[2] as u32)),
        _ => Err(Errno::ENOSYS),
    }
}

/// Handle `sched_op`.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn sched_op<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    // `SCHEDOP_yield` (a cooperative switch, a guest's spin-wait) needs only the policy: it is answered
    // here, without the stack frame of the other requests' handlers (guest memory, polls, shutdown).
    if ctx.args()[0] == SCHEDOP_YIELD {
        ctx.sched.get().0.yield_now(usize::from(ctx.domid));
        return Action::Yield;
    }
    sched_op_other(ctx)
}

/// [`sched_op`] for the requests but yield (`decode` gives all of them; a yield is answered above).
/// `SCHEDOP_poll` (every event round trip's wait) is handled here, the rarer requests out of line, so
/// that this frame and code are the poll's alone.
#[inline(never)]
fn sched_op_other<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    // Each arm makes its own `Action` (no merged result to copy out).
    match decode(ctx.args()) {
        Ok(SchedRequest::Poll(at)) => poll(ctx, at).unwrap_or_else(|e| Action::Return(e.as_ret())),
        Ok(SchedRequest::Yield) => yield_op(ctx),
        Ok(SchedRequest::Block) => block_op(ctx),
        Ok(SchedRequest::Shutdown(va, code)) => {
            shutdown_op(ctx, va, code).unwrap_or_else(|e| Action::Return(e.as_ret()))
        }
        Err(e) => Action::Return(e.as_ret()),
    }
}

/// `SCHEDOP_yield`: let the other runnable domains go first.
#[inline(never)]
fn yield_op<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    ctx.sched.get().0.yield_now(usize::from(ctx.domid));
    Action::Yield
}

/// `SCHEDOP_block`: re-enable events and sleep until one is pending.
#[inline(never)]
fn block_op<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let domid = ctx.domid;
    let pending = ctx
        .event_bits(domid)
        .is_some_and(|mut b| crate::event::bits::block_enable_events(&mut b));
    if pending {
        // An event is already pending: return at once; the upcall is delivered on the way out.
        return Action::Return(0);
    }
    ctx.sched.get().0.block(usize::from(domid), None);
    Action::Yield
}

/// `SCHEDOP_shutdown` with the `sched_shutdown` at `va` and the exit code `code`.
#[inline(never)]
fn shutdown_op<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    va: Gva,
    code: u32,
) -> Result<Action, Errno> {
    let s: SchedShutdown = ctx.guest().read_obj(va)?;
    let reason = ShutdownReason::from_u32(s.reason).ok_or(Errno::EINVAL)?;
    // Suspend (Xen's protocol): RDX names the caller's start-info frame, which must be its own
    // (`domain::save`); the domain stays, paused, with its memory.
    let start_info = ctx.args()[2];
    if reason == ShutdownReason::Suspend
        && (start_info != u64::from(code)
            || ctx.machine.get().ft.owner(abi::types::Mfn(start_info)) != Some(ctx.domid))
    {
        return Err(Errno::EINVAL);
    }
    Ok(Action::Shutdown { reason, code })
}

/// Most ports one `SCHEDOP_poll` may wait on.
pub const MAX_POLL_PORTS: usize = 16;

/// The ports each domain waits on in `SCHEDOP_poll` (empty when it is not polling).
pub struct PollTable {
    slots: [PollSlot; crate::domain::state::MAX_DOMAINS],
}

/// One domain's polled ports: the first `len` (at most [`MAX_POLL_PORTS`]) of `ports`. A plain array, so
/// that a poll stores its ports with one fixed-size copy.
#[derive(Clone, Copy)]
struct PollSlot {
    ports: [u32; MAX_POLL_PORTS],
    len: usize,
}

impl PollSlot {
    const EMPTY: PollSlot = PollSlot {
        ports: [0; MAX_POLL_PORTS],
        len: 0,
    };

    fn as_slice(&self) -> &[u32] {
        self.ports.get(..self.len).unwrap_or(&[])
    }
}

impl PollTable {
    /// Nobody polls.
    pub const fn new() -> Self {
        PollTable {
            slots: [PollSlot::EMPTY; crate::domain::state::MAX_DOMAINS],
        }
    }

    /// True if domain `dom` is polling `port`.
    pub fn polls(&self, dom: u16, port: u32) -> bool {
        self.ports(dom).contains(&port)
    }

    /// The ports domain `dom` is polling (empty if none, or no such domain).
    pub fn ports(&self, dom: u16) -> &[u32] {
        self.slots
            .get(usize::from(dom))
            .map_or(&[], PollSlot::as_slice)
    }

    /// Domain `dom` stopped polling (woken, or gone).
    pub fn clear(&mut self, dom: u16) {
        if let Some(p) = self.slots.get_mut(usize::from(dom)) {
            p.len = 0;
        }
    }

    /// Domain `dom` polls the first `len` of `ports` (`len` at most [`MAX_POLL_PORTS`]).
    fn set(&mut self, dom: u16, ports: &[u32; MAX_POLL_PORTS], len: usize) {
        if let Some(p) = self.slots.get_mut(usize::from(dom)) {
            *p = PollSlot {
                ports: *ports,
                len: len.min(MAX_POLL_PORTS),
            };
        }
    }
}

impl Default for PollTable {
    fn default() -> Self {
        Self::new()
    }
}

/// Read the `sched_poll` at `at` and its ports (each checked against the port table); return at once if
/// one of them is pending, else block the caller polling them until one is or the timeout passes.
///
/// The argument, then the port array through the same translation when it lies in the argument's page
/// (the usual case: both on the caller's stack); one pass over the ports reads, checks and tests them.
// `#[inline]`, not `always`: forced, it left the policy lock and `block` out of line (measured).
#[inline]
fn poll<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>, at: Gva) -> Result<Action, Errno> {
    let mut p = SchedPoll::new_zeroed();
    let page = read_in_page(ctx, at, p.as_mut_bytes())?;
    let n = p.nr_ports as usize;
    if n == 0 || n > MAX_POLL_PORTS {
        return Err(Errno::EINVAL);
    }
    let domid = ctx.domid;
    // The caller's shared_info (pending bits); a caller without one is -ESRCH once its ports are read.
    let shared_info = ctx.shared_info.get(usize::from(domid)).copied().flatten();
    let mut raw = [0u32; MAX_POLL_PORTS];
    let pending = poll_ports(ctx, Gva(p.ports), &mut raw, n, page, shared_info)?;
    if shared_info.is_none() {
        return Err(Errno::ESRCH);
    }
    if pending {
        return Ok(Action::Return(0));
    }
    let timeout = (p.timeout != 0).then_some(ctx.dom.to_system_time(p.timeout));
    let (sched, polls) = ctx.sched.get();
    polls.set(domid, &raw, n);
    sched.block(usize::from(domid), timeout);
    Ok(Action::Yield)
}

/// A page of the caller's already translated for its reads: the page's address and where it starts in
/// machine memory.
type Translated = (Gva, Maddr);

/// Copy the caller's bytes at `va` into `buf` as [`HypercallCtx::read`] does; if they lie in one page,
/// that page, translated (one walk of the caller's tables, for the caller's ring, as `read` does for a
/// one-page range), so that a later read in the same page needs no walk of its own.
#[inline(always)]
fn read_in_page<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    va: Gva,
    buf: &mut [u8],
) -> Result<Option<Translated>, Errno> {
    if buf.is_empty() || va.page_offset() + buf.len() as u64 > PAGE_SIZE {
        ctx.read(va, buf)?;
        return Ok(None);
    }
    let ma = translate(ctx, va)?;
    ctx.mem.read_bytes(ma, buf);
    Ok(Some((va.page_base(), Maddr(ma.0 - va.page_offset()))))
}

/// Where the caller's byte at `va` lies in machine memory, as [`HypercallCtx::read`] translates it for
/// a one-page range (any failure is -EFAULT).
#[inline(always)]
fn translate<M: MachineMem>(ctx: &HypercallCtx<'_, '_, M>, va: Gva) -> Result<Maddr, Errno> {
    let access = walk::Access {
        write: false,
        user: ctx.user,
    };
    walk::translate(&*ctx.mem, ctx.dom.base, va, access).map_err(|_| Errno::EFAULT)
}

/// Whether `port` (below the port table's size) is pending in the shared_info frame `si`: its bit in
/// `evtchn_pending` (as [`crate::event::EventBits::is_pending`] reads it), read without borrowing the
/// frame, so that the same pass can read the caller's memory.
#[inline(always)]
fn is_pending(mem: &impl PhysRead, si: Option<Mfn>, port: u32) -> bool {
    si.is_some_and(|si| {
        let word = si.addr().0 + PENDING_OFFSET as u64 + u64::from(port / 64) * 8;
        mem.read_u64(Maddr(word)) >> (port % 64) & 1 != 0
    })
}

/// Read the `n` (1..=[`MAX_POLL_PORTS`]) ports of a poll at `at` into `raw`, each checked against the
/// port table (-EINVAL beyond it); returns whether one of them is pending in `si`. An array within one
/// page is read from that page, translated once (or not at all, if it is `page`): -EFAULT if it is not
/// readable. An array across pages is read as one, or if that fails port by port, so the errors are
/// those of reading them in order (-EFAULT at the first unreadable one, -EINVAL at the first beyond
/// the port table).
#[inline(always)]
fn poll_ports<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    at: Gva,
    raw: &mut [u32; MAX_POLL_PORTS],
    n: usize,
    page: Option<Translated>,
    si: Option<Mfn>,
) -> Result<bool, Errno> {
    if at.page_offset() + n as u64 * 4 > PAGE_SIZE {
        return poll_ports_across(ctx, at, raw, n, si);
    }
    let start = match page {
        Some((base, start)) if at.page_base() == base => Maddr(start.0 + at.page_offset()),
        _ => translate(ctx, at)?,
    };
    let mut pending = false;
    let raw = raw.get_mut(..n).ok_or(Errno::EINVAL)?;
    for (i, slot) in raw.iter_mut().enumerate() {
        let mut b = [0u8; 4];
        ctx.mem.read_bytes(Maddr(start.0 + i as u64 * 4), &mut b);
        let port = u32::from_le_bytes(b);
        if port as usize >= crate::event::channel::MAX_PORTS {
            return Err(Errno::EINVAL);
        }
        *slot = port;
        pending |= is_pending(&*ctx.mem, si, port);
    }
    Ok(pending)
}

/// [`poll_ports`] for an array that crosses a page boundary (rare: out of line).
#[cold]
#[inline(never)]
fn poll_ports_across<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    at: Gva,
    raw: &mut [u32; MAX_POLL_PORTS],
    n: usize,
    si: Option<Mfn>,
) -> Result<bool, Errno> {
    let raw = raw.get_mut(..n).ok_or(Errno::EINVAL)?;
    let whole = ctx.read(at, raw.as_mut_bytes()).is_ok();
    let mut pending = false;
    for (i, port) in raw.iter_mut().enumerate() {
        if !whole {
            let a = at.checked_add(i as u64 * 4).ok_or(Errno::EFAULT)?;
            *port = ctx.guest().read_obj(a)?;
        }
        if *port as usize >= crate::event::channel::MAX_PORTS {
            return Err(Errno::EINVAL);
        }
        pending |= is_pending(&*ctx.mem, si, *port);
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::mm::phys::FrameMem;
    use abi::hypercall::nr::SCHED_OP;
    use abi::types::Mfn;

    #[test]
    fn yield_and_shutdown() {
        let (mut m, root) = machine();
        assert_eq!(
            call(&mut m, root, SCHED_OP, [SCHEDOP_YIELD, 0, 0, 0, 0]).0,
            Action::Yield
        );
        m.frame_mut(Mfn(10))[..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            call(&mut m, root, SCHED_OP, [SCHEDOP_SHUTDOWN, RW_PAGE, 7, 0, 0]).0,
            Action::Shutdown {
                reason: ShutdownReason::Crash,
                code: 7
            }
        );
    }

    #[test]
    fn hostile_arguments() {
        let (mut m, root) = machine();
        m.frame_mut(Mfn(10))[..4].copy_from_slice(&99u32.to_le_bytes());
        let r = |m: &mut _, a| call(m, root, SCHED_OP, a).0;
        assert_eq!(
            r(&mut m, [SCHEDOP_SHUTDOWN, RW_PAGE, 0, 0, 0]),
            Action::Return(Errno::EINVAL.as_ret())
        );
        let efault = Action::Return(Errno::EFAULT.as_ret());
        for va in [
            0u64,
            0x20_0000,
            abi::layout::ENTRY_REGION_VA,
            0x8000_0000_0000_0000 >> 1,
            RO_PAGE + 0xffe,
        ] {
            assert_eq!(
                r(&mut m, [SCHEDOP_SHUTDOWN, va, 0, 0, 0]),
                efault,
                "{va:#x}"
            );
        }
        assert_eq!(
            r(&mut m, [42, 0, 0, 0, 0]),
            Action::Return(Errno::ENOSYS.as_ret())
        );
    }

    /// A vCPU polling a masked port sleeps until an event on that port (sent by another domain),
    /// which wakes it and ends the poll; the event stays pending, with no upcall.
    #[test]
    fn poll_on_a_masked_port_wakes_at_the_event() {
        use crate::event::bits::{EventBits, SharedInfoPage, guest};
        use crate::sched_policy::RunState;
        use abi::event_channel::{
            EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_SEND, EvtchnAllocUnbound,
            EvtchnBindInterdomain, EvtchnSend,
        };
        use abi::hypercall::nr::EVENT_CHANNEL_OP;
        use abi::xen::DOMID_SELF;
        use zerocopy::{FromBytes, IntoBytes};

        let mut w = World::new();
        w.sched.0.start(1, 256).unwrap();
        w.sched.0.start(2, 256).unwrap();
        let arg = RW_PAGE + 0x200;
        let at = |va: u64| (va - RW_PAGE) as usize;
        // Domain 1 offers a port to domain 2, which binds it (its calls read their argument through
        // domain 1's test tables: only the caller's identity matters to these calls).
        let offer = EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 2,
            port: 0,
        };
        w.mem.frame_mut(Mfn(10))[at(arg)..at(arg) + 8].copy_from_slice(offer.as_bytes());
        let r = w.call(EVENT_CHANNEL_OP, [EVTCHNOP_ALLOC_UNBOUND, arg, 0, 0, 0]);
        assert_eq!(r, Action::Return(0));
        let port =
            EvtchnAllocUnbound::read_from_bytes(&w.mem.frame_mut(Mfn(10))[at(arg)..at(arg) + 8])
                .unwrap()
                .port;
        let bind = EvtchnBindInterdomain {
            remote_dom: 1,
            _pad0: 0,
            remote_port: port,
            local_port: 0,
        };
        w.mem.frame_mut(Mfn(10))[at(arg)..at(arg) + 12].copy_from_slice(bind.as_bytes());
        w.caller = 2;
        let r = w.call(EVENT_CHANNEL_OP, [EVTCHNOP_BIND_INTERDOMAIN, arg, 0, 0, 0]);
        assert_eq!(r, Action::Return(0));
        let remote = EvtchnBindInterdomain::read_from_bytes(
            &w.mem.frame_mut(Mfn(10))[at(arg)..at(arg) + 12],
        )
        .unwrap()
        .local_port;
        w.caller = 1;
        guest::set_mask(w.mem.frame_mut(Mfn(15)), port, true);
        // SCHEDOP_poll(port, no timeout): blocks.
        let (poll, ports) = (RW_PAGE + 0x300, RW_PAGE + 0x340);
        let p = SchedPoll {
            ports,
            nr_ports: 1,
            _pad0: 0,
            timeout: 0,
        };
        w.mem.frame_mut(Mfn(10))[at(poll)..at(poll) + 24].copy_from_slice(p.as_bytes());
        w.mem.frame_mut(Mfn(10))[at(ports)..at(ports) + 4].copy_from_slice(&port.to_le_bytes());
        assert_eq!(
            w.call(SCHED_OP, [SCHEDOP_POLL, poll, 0, 0, 0]),
            Action::Yield
        );
        assert!(w.sched.1.polls(1, port));
        assert_eq!(
            w.sched.0.state(1),
            Some(RunState::Blocked { wake_at: None })
        );
        // Domain 2, now running, sends on the masked port: that wakes domain 1 and ends its poll; no
        // upcall. Only domain 2's slice end moved: armed by the handler, no policy change left to act on.
        assert_eq!(w.sched.0.pick(0), Some(2));
        w.sched.0.take_changed();
        let send = EvtchnSend { port: remote };
        w.mem.frame_mut(Mfn(10))[at(arg)..at(arg) + 4].copy_from_slice(send.as_bytes());
        w.caller = 2;
        assert_eq!(
            w.call(EVENT_CHANNEL_OP, [EVTCHNOP_SEND, arg, 0, 0, 0]),
            Action::Return(0)
        );
        assert_eq!(w.sched.0.state(1), Some(RunState::Runnable));
        assert!(!w.sched.0.changed());
        assert_eq!(w.armed.len(), 1);
        assert_eq!(Some(w.armed[0]), w.sched.0.next_deadline(0));
        assert!(w.sched.1.ports(1).is_empty());
        let bits = SharedInfoPage::new(w.mem.frame_mut(Mfn(15)));
        assert!(bits.is_pending(port) && !bits.upcall_pending());
    }

    /// The ports of a poll: read as one array when they are readable, else port by port with the
    /// errors of reading them in order; a port beyond the table is -EINVAL, too many ports -EINVAL.
    #[test]
    fn poll_port_array_errors() {
        use zerocopy::IntoBytes;
        let mut w = World::new();
        w.sched.0.start(1, 256).unwrap();
        let at = |va: u64| (va - RW_PAGE) as usize;
        let poll = RW_PAGE + 0x300;
        let call = |w: &mut World, ports: u64, n: u32, values: &[u32]| {
            let p = SchedPoll {
                ports,
                nr_ports: n,
                _pad0: 0,
                timeout: 0,
            };
            w.mem.frame_mut(Mfn(10))[at(poll)..at(poll) + 24].copy_from_slice(p.as_bytes());
            for (i, v) in values.iter().enumerate() {
                let a = at(ports) + 4 * i;
                w.mem.frame_mut(Mfn(10))[a..a + 4].copy_from_slice(&v.to_le_bytes());
            }
            w.call(SCHED_OP, [SCHEDOP_POLL, poll, 0, 0, 0])
        };
        let einval = Action::Return(Errno::EINVAL.as_ret());
        let efault = Action::Return(Errno::EFAULT.as_ret());
        assert_eq!(call(&mut w, RW_PAGE + 0x400, 0, &[]), einval);
        assert_eq!(call(&mut w, RW_PAGE + 0x400, 17, &[]), einval);
        assert_eq!(call(&mut w, RW_PAGE + 0x400, 3, &[1, 1024, 2]), einval);
        // The array runs off the read-only page (frame 11) into an unmapped one: the first port is
        // checked first.
        let last = RO_PAGE + 0xffc;
        for (first, want) in [(4096u32, einval), (5, efault)] {
            w.mem.frame_mut(Mfn(11))[0xffc..].copy_from_slice(&first.to_le_bytes());
            assert_eq!(call(&mut w, last, 2, &[]), want, "first port {first}");
        }
        assert_eq!(call(&mut w, 0, 1, &[]), efault);
        // Valid ports, none pending: the caller blocks polling them.
        assert_eq!(call(&mut w, RW_PAGE + 0x400, 3, &[1, 2, 3]), Action::Yield);
        assert_eq!(w.sched.1.ports(1), &[1, 2, 3]);
    }

    /// One pass over the ports: any pending port (even the last, in an array on another page than the
    /// argument) makes the poll return at once without blocking; a port beyond the table is -EINVAL even
    /// after a pending one; a poll with none pending blocks on all of them, replacing an earlier poll's.
    #[test]
    fn poll_tests_every_port() {
        use crate::event::bits::{SharedInfoPage, set_pending};
        use crate::sched_policy::RunState;
        use zerocopy::IntoBytes;
        let mut w = World::new();
        w.sched.0.start(1, 256).unwrap();
        let poll = RW_PAGE + 0x300;
        let call = |w: &mut World, ports: u64, values: &[u32]| {
            let p = SchedPoll {
                ports,
                nr_ports: values.len() as u32,
                _pad0: 0,
                timeout: 0,
            };
            let at = (poll - RW_PAGE) as usize;
            w.mem.frame_mut(Mfn(10))[at..at + 24].copy_from_slice(p.as_bytes());
            let (frame, base) = if ports >= RO_PAGE {
                (11, RO_PAGE)
            } else {
                (10, RW_PAGE)
            };
            for (i, v) in values.iter().enumerate() {
                let a = (ports - base) as usize + 4 * i;
                w.mem.frame_mut(Mfn(frame))[a..a + 4].copy_from_slice(&v.to_le_bytes());
            }
            w.call(SCHED_OP, [SCHEDOP_POLL, poll, 0, 0, 0])
        };
        set_pending(&mut SharedInfoPage::new(w.mem.frame_mut(Mfn(15))), 700);
        for at in [RW_PAGE + 0x400, RO_PAGE + 0x10] {
            assert_eq!(
                call(&mut w, at, &[3, 64, 700]),
                Action::Return(0),
                "{at:#x}"
            );
            assert_eq!(
                call(&mut w, at, &[700, 2000]),
                Action::Return(Errno::EINVAL.as_ret())
            );
            assert_eq!(w.sched.0.state(1), Some(RunState::Runnable));
            assert!(w.sched.1.ports(1).is_empty());
        }
        w.sched.1.clear(1);
        let all: Vec<u32> = (1..=16).collect();
        assert_eq!(call(&mut w, RO_PAGE + 0x10, &all), Action::Yield);
        assert_eq!(w.sched.1.ports(1), all.as_slice());
        assert_eq!(
            w.sched.0.state(1),
            Some(RunState::Blocked { wake_at: None })
        );
    }
}
