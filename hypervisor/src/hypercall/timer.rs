//! Time hypercalls: `set_timer_op` (15) and the timer commands of `vcpu_op` (24). Deadlines are absolute
//! system time in ns; the scheduling policy keeps them and raises VIRQ_TIMER when they pass.

use abi::errno::Errno;
use abi::types::Gva;
use abi::vcpu::*;

use super::{Action, HypercallCtx, MachineMem};
use crate::time::pvclock::set_timer_op_deadline;

/// `set_timer_op(timeout)`: a one-shot VIRQ_TIMER at `timeout` ns of system time; 0 cancels.
#[inline] // Small: into `dispatch` (LLVM's own choice flips with unrelated changes elsewhere: ±10).
pub fn set_timer_op<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let now = ctx.env.now_ns().wrapping_add(ctx.dom.time_offset_ns);
    let deadline = set_timer_op_deadline(ctx.args()[0], now).map(|t| ctx.dom.to_system_time(t));
    ctx.sched
        .get()
        .0
        .set_singleshot(usize::from(ctx.domid), deadline);
    Action::Return(0)
}

/// `vcpu_op(cmd, vcpu, arg)`: single-shot and periodic timers of vCPU 0.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn vcpu_op<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let [cmd, vcpu, arg, ..] = ctx.args();
    if vcpu != 0 {
        return Action::Return(Errno::ENOENT.as_ret());
    }
    let d = usize::from(ctx.domid);
    let now = ctx.env.now_ns().wrapping_add(ctx.dom.time_offset_ns);
    let r = match cmd {
        VCPUOP_SET_SINGLESHOT_TIMER => ctx
            .guest()
            .read_obj::<VcpuSetSingleshotTimer>(Gva(arg))
            .and_then(|t| {
                if t.flags & VCPU_SSHOTTMR_FUTURE != 0 && t.timeout_abs_ns < now {
                    return Err(Errno::ETIME);
                }
                ctx.sched
                    .get()
                    .0
                    .set_singleshot(d, Some(ctx.dom.to_system_time(t.timeout_abs_ns)));
                Ok(0)
            }),
        VCPUOP_STOP_SINGLESHOT_TIMER => {
            ctx.sched.get().0.set_singleshot(d, None);
            Ok(0)
        }
        VCPUOP_SET_PERIODIC_TIMER => ctx
            .guest()
            .read_obj::<VcpuSetPeriodicTimer>(Gva(arg))
            .and_then(|t| {
                ctx.sched
                    .get()
                    .0
                    .set_periodic(d, Some(t.period_ns), now)
                    .map(|()| 0)
            }),
        VCPUOP_STOP_PERIODIC_TIMER => ctx.sched.get().0.set_periodic(d, None, now).map(|()| 0),
        _ => Err(Errno::ENOSYS),
    };
    Action::from(r)
}
