//! `event_channel_op` (hypercall 32): copy the argument structure in, let `event::op` decode and execute
//! it, copy the reply out, and apply the effect to the target domain's shared_info bits, waking it if it
//! now has an upcall pending (or was polling that port).

use abi::errno::Errno;
use abi::types::Gva;

use super::{Action, HypercallCtx, MachineMem};
use crate::event::bits::SharedInfoPage;
use crate::event::op::{self, Effect};

/// Handle `event_channel_op(cmd, arg)`.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn event_channel_op<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let [cmd, arg, ..] = ctx.args;
    Action::from(run(ctx, cmd, Gva(arg)).map(|()| 0))
}

fn run<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>, cmd: u64, arg: Gva) -> Result<(), Errno> {
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
    if let Some(effect) = out.effect {
        apply(ctx, &effect);
    }
    Ok(())
}

/// Apply an event effect to its domain's shared_info and wake that domain if needed.
pub fn apply<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>, effect: &Effect) {
    let dom = effect.dom();
    let Some(&Some(frame)) = ctx.shared_info.get(usize::from(dom)) else {
        return;
    };
    let mut bits = SharedInfoPage::new(ctx.mem.frame_mut(frame));
    if dom == ctx.domid {
        // The caller's own bits (a send on an IPI or loopback port, an unmask, a close): the caller is
        // running this hypercall, so it is neither blocked nor polling (`SCHEDOP_block`/`SCHEDOP_poll`
        // end the hypercall that blocks, and a multicall stops at them), and a kick needs no wake-up:
        // the return delivers the upcall (`deliver::upcall_due`). So no scheduler lock (which would also
        // make the return check the policy). (A poll entry can outlive its poll only harmlessly: its one
        // use is to wake a blocked poller, and the next poll replaces it.)
        effect.apply(&mut bits, |_| false);
        return;
    }
    let (sched, polls) = ctx.sched.get();
    let polling = polls.ports(dom);
    if effect.apply(&mut bits, |port| polling.contains(&port)) {
        sched.wake(usize::from(dom));
        polls.clear(dom);
    }
}
