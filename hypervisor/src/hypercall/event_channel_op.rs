//! `event_channel_op` (hypercall 32): copy the argument structure in, let `event::op` decode and execute
//! it, copy the reply out, and apply the effect to the target domain's shared_info bits, waking it if it
//! now has an upcall pending (or was polling that port).

use abi::errno::Errno;
use abi::event_channel::{EVTCHNOP_SEND, EvtchnPort, EvtchnSend};
use abi::types::Gva;
use abi::xen::DomId;

use super::lazy::Env;
use super::sched_op::PollTable;
use super::{Action, HypercallCtx, MachineMem};
use crate::event::bits::{self, SharedInfoPage};
use crate::event::op::{self, Effect};
use crate::sched_policy::SchedPolicy;

/// Handle `event_channel_op(cmd, arg)`.
///
/// `EVTCHNOP_send`, the command behind every notification a domain signals (IPIs, interdomain and
/// loopback ports: each kick of an I/O ring), is handled here; every other command goes to the general
/// path, out of line, so that a send pays only for the registers and frame of its own steps. Both end
/// in the one [`set_pending`] (a send's effect).
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn event_channel_op<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let [cmd, arg, ..] = ctx.args();
    let mark = if cmd == EVTCHNOP_SEND {
        send(ctx, Gva(arg))
    } else {
        general(ctx, cmd, Gva(arg))
    };
    let (dom, port) = match mark {
        Ok(Some(mark)) => mark,
        Ok(None) => return Action::Return(0),
        Err(e) => return Action::Return(e.as_ret()),
    };
    set_pending(ctx, dom, port);
    Action::Return(0)
}

/// Every command but `EVTCHNOP_send`: [`op`]'s decode and execute between the copies in and out, and
/// its effect on the caller's own event bits. An [`Effect::SetPending`] (only a send makes one) is
/// returned, for [`event_channel_op`] to apply with [`set_pending`].
#[inline(never)]
fn general<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    cmd: u64,
    arg: Gva,
) -> Result<Option<(DomId, EvtchnPort)>, Errno> {
    let size = op::arg_size(cmd)?;
    let mut buf = [0u8; 32];
    let bytes = buf.get_mut(..size).ok_or(Errno::EINVAL)?;
    ctx.read(arg, bytes)?;
    let req = op::decode(cmd, bytes)?;
    let peers = ctx.shared_info;
    let out = op::execute(ctx.events.get(), ctx.domid, &req, |d| {
        peers.get(usize::from(d)).is_some_and(Option::is_some)
    })?;
    if let Some(reply) = out.reply {
        // As in Xen, a failed copy-back is reported but the operation stands.
        ctx.guest().write(arg, reply.as_bytes())?;
    }
    match out.effect {
        Some(Effect::SetPending { dom, port }) => return Ok(Some((dom, port))),
        Some(effect) => {
            // An unmask, a close, a reset: the caller's own bits (`op::execute` names the caller in
            // them). The caller is running this hypercall, so a kick needs no wake-up: its return
            // delivers the upcall (`deliver::upcall_due`), as for a send to itself ([`set_pending`]).
            if let Some(mut bits) = ctx.event_bits(effect.dom()) {
                effect.apply(&mut bits, |_| false);
            }
        }
        None => {}
    }
    Ok(None)
}

/// `EVTCHNOP_send` without the general path's argument buffer, decode and [`Effect`]: it reads its one
/// field directly. The steps are the general path's (`op::execute`'s `Send` arm): the port table's
/// [`EventSystem::send`](crate::event::channel::EventSystem::send), whose port to mark pending
/// [`event_channel_op`] passes to [`set_pending`].
#[inline(always)]
fn send<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    arg: Gva,
) -> Result<Option<(DomId, EvtchnPort)>, Errno> {
    let a: EvtchnSend = ctx.read_obj_inline(arg)?;
    ctx.events.get().send(ctx.domid, a.port)
}

/// [`Effect::SetPending`]: mark `dom`'s `port` pending ([`crate::event::mark_pending`]'s rule) and wake
/// `dom` if that kicks it.
#[inline(always)] // One call site, on the send path.
fn set_pending<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>, dom: DomId, port: EvtchnPort) {
    let Some(&Some(frame)) = ctx.shared_info.get(usize::from(dom)) else {
        return;
    };
    let mut bits = SharedInfoPage::new(ctx.mem.frame_mut(frame));
    if dom == ctx.domid {
        // The caller's own bits (a send on an IPI or loopback port): the caller is running this
        // hypercall, so it is neither blocked nor polling (`SCHEDOP_block`/`SCHEDOP_poll` end the
        // hypercall that blocks, and a multicall stops at them), and a kick needs no wake-up: the return
        // delivers the upcall (`deliver::upcall_due`). So no scheduler lock (which would also make the
        // return check the policy). (A poll entry can outlive its poll only harmlessly: its one use is to
        // wake a blocked poller, and the next poll replaces it.)
        bits::set_pending(&mut bits, port);
        return;
    }
    let (sched, polls) = ctx.sched.get();
    // `mark_pending`'s rule. A plain search of the poll table: a poll names a port or a few, too few for
    // `contains`' vectorised loop (which costs the ping-pong bench some 40 instructions per send).
    #[allow(clippy::manual_contains)]
    let polled = |port| polls.ports(dom).iter().any(|&p| p == port);
    if crate::event::mark_pending(&mut bits, port, polled) {
        kick(sched, polls, ctx.env, dom, ctx.domid);
    }
}

/// Wake `dom` (not the caller, `by`), kicked by an event the caller raised, and end its poll.
#[inline(always)]
fn kick(sched: &mut SchedPolicy, polls: &mut PollTable, env: &mut dyn Env, dom: DomId, by: DomId) {
    // The caller is the running vCPU: a wake-up it causes moves only its own slice end, armed here,
    // so that its return needs no scheduling decision (`SchedPolicy::wake_by`).
    let deadline = sched.wake_by(usize::from(dom), usize::from(by));
    polls.clear(dom);
    if let Some(d) = deadline {
        env.arm_deadline(d);
    }
}

#[cfg(test)]
mod tests {
    use abi::errno::Errno;
    use abi::event_channel::{EVTCHNOP_SEND, EvtchnSend};
    use abi::hypercall::nr;
    use abi::xen::DOMID_SELF;
    use zerocopy::IntoBytes;

    use super::super::Action;
    use super::super::testing::{FrameForTest, RO_PAGE, RW_PAGE, World};
    use crate::event::op;

    /// `EVTCHNOP_send`'s own path answers as the general one (`op::event_channel_op`) for every kind
    /// of port and hostile ones, reads its argument from a read-only page or the last word of a page,
    /// and refuses an argument that runs off a page into an unmapped one.
    #[test]
    fn send_agrees_with_the_general_path() {
        let mut w = World::new();
        let ev = &mut *w.events;
        let ipi = ev.bind_ipi(1, 0).unwrap();
        let unbound = ev.alloc_unbound(1, DOMID_SELF, 2, |_| true).unwrap();
        let virq = ev.bind_virq(1, abi::event_channel::VIRQ_TIMER, 0).unwrap();
        let offer = ev.alloc_unbound(2, DOMID_SELF, 1, |_| true).unwrap();
        let inter = ev.bind_interdomain(1, 2, offer, |_| true).unwrap();
        let foreign = ev.bind_ipi(2, 0).unwrap();
        let ports = [
            0,
            ipi,
            unbound,
            virq,
            inter,
            foreign,
            9,
            1023,
            1024,
            4095,
            4096,
            u32::MAX,
        ];
        for (i, &port) in ports.iter().enumerate() {
            // Alternately the last word of the writable page and the start of the read-only one.
            let at = if i % 2 == 0 { RW_PAGE + 0xffc } else { RO_PAGE };
            let frame = if i % 2 == 0 { 10 } else { 11 };
            let off = (at & 0xfff) as usize;
            w.mem.frame_mut_for_test(frame)[off..off + 4]
                .copy_from_slice(EvtchnSend { port }.as_bytes());
            // (`EventSystem::send` takes the tables shared: neither path changes them.)
            let want = op::event_channel_op(
                w.events,
                1,
                EVTCHNOP_SEND,
                EvtchnSend { port }.as_bytes(),
                |d| d <= 2,
            )
            .map(|_| 0)
            .unwrap_or_else(|e| e.as_ret());
            let got = w.call(nr::EVENT_CHANNEL_OP, [EVTCHNOP_SEND, at, 0, 0, 0]);
            assert_eq!(got, Action::Return(want), "port {port}");
        }
        // The 4-byte argument straddling the read-only page's end (the next page is not mapped).
        assert_eq!(
            w.call(
                nr::EVENT_CHANNEL_OP,
                [EVTCHNOP_SEND, RO_PAGE + 0xffe, 0, 0, 0]
            ),
            Action::Return(Errno::EFAULT.as_ret())
        );
    }

    /// The general path's effects (an unmask, a close) change the caller's own bits and leave the
    /// scheduler alone, as a send on the caller's own port does: an event sent on a masked IPI port
    /// stays pending without an upcall, is delivered at its unmask, and a close clears it.
    #[test]
    fn own_port_effects_change_only_the_callers_bits() {
        use abi::event_channel::{EVTCHNOP_CLOSE, EVTCHNOP_UNMASK, EvtchnClose, EvtchnUnmask};

        use crate::event::bits::{EventBits, SharedInfoPage, guest};

        let mut w = World::new();
        w.sched.0.start(1, 256).unwrap();
        w.sched.0.take_changed();
        let ipi = w.events.bind_ipi(1, 0).unwrap();
        guest::set_mask(w.mem.frame_mut_for_test(15), ipi, true);
        let call = |w: &mut World, cmd: u64, arg: &[u8]| {
            w.mem.frame_mut_for_test(10)[0x100..0x100 + arg.len()].copy_from_slice(arg);
            w.call(nr::EVENT_CHANNEL_OP, [cmd, RW_PAGE + 0x100, 0, 0, 0])
        };
        // (pending, masked, upcall pending) of the port in domain 1's shared_info.
        let bits = |w: &mut World| {
            let b = SharedInfoPage::new(w.mem.frame_mut_for_test(15));
            (b.is_pending(ipi), b.is_masked(ipi), b.upcall_pending())
        };
        let sent = call(&mut w, EVTCHNOP_SEND, EvtchnSend { port: ipi }.as_bytes());
        assert_eq!(sent, Action::Return(0));
        assert_eq!(bits(&mut w), (true, true, false), "masked: no upcall");
        let unmasked = call(
            &mut w,
            EVTCHNOP_UNMASK,
            EvtchnUnmask { port: ipi }.as_bytes(),
        );
        assert_eq!(unmasked, Action::Return(0));
        assert_eq!(bits(&mut w), (true, false, true), "delivered at the unmask");
        let closed = call(&mut w, EVTCHNOP_CLOSE, EvtchnClose { port: ipi }.as_bytes());
        assert_eq!(closed, Action::Return(0));
        assert_eq!(
            bits(&mut w),
            (false, false, true),
            "a close clears the port"
        );
        assert!(
            !w.sched.0.changed() && w.armed.is_empty(),
            "no scheduler work"
        );
    }
}
