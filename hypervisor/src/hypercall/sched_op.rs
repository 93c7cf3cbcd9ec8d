//! `sched_op` (hypercall 29): yield the CPU, or shut the calling domain down.
//!
//! Our extension (documented in `abi::sched`): for `SCHEDOP_shutdown` the third argument (RDX) carries the
//! guest's exit code. Blocking and polling arrive with event channels and timers.

use abi::errno::Errno;
use abi::sched::{SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, ShutdownReason};
use abi::types::Gva;
use abi::xen::SchedShutdown;

use super::MachineMem;
use super::{Action, HypercallCtx};

/// A decoded `sched_op` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedRequest {
    /// Let other domains run.
    Yield,
    /// Read a `sched_shutdown` at this address; stop with the given code.
    Shutdown(Gva, u32),
}

/// Decode the registers.
pub fn decode(args: [u64; 5]) -> Result<SchedRequest, Errno> {
    match args[0] {
        SCHEDOP_YIELD => Ok(SchedRequest::Yield),
        SCHEDOP_SHUTDOWN => Ok(SchedRequest::Shutdown(Gva(args[1]), args[2] as u32)),
        _ => Err(Errno::ENOSYS),
    }
}

/// Handle `sched_op`.
pub fn sched_op<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let action = decode(ctx.args).and_then(|req| match req {
        SchedRequest::Yield => Ok(Action::Yield),
        SchedRequest::Shutdown(va, code) => {
            let s: SchedShutdown = ctx.guest().read_obj(va)?;
            let reason = ShutdownReason::from_u32(s.reason).ok_or(Errno::EINVAL)?;
            Ok(Action::Shutdown { reason, code })
        }
    });
    action.unwrap_or_else(|e| Action::Return(e.as_ret()))
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
}
