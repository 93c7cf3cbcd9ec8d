//! Hypercall dispatch: decode the number, hand the arguments to the family's handler, report the outcome.
//!
//! Register convention (see `abi::hypercall`): number in RAX; arguments in RDI, RSI, RDX, R10, R8; result in
//! RAX, a negative Xen errno on failure. Each family lives in its own file and follows one pattern: decode
//! the raw registers (and any guest structure) into a typed request with no side effects, then act.

pub mod console_io;
pub mod sched_op;
pub mod xen_version;

use abi::errno::Errno;
use abi::hypercall::nr;
use abi::sched::ShutdownReason;

use crate::mm::guest_mem::GuestView;
use crate::mm::phys::FrameMem;
use crate::regs::EntryFrame;

/// Everything a handler may use: the caller's identity, its arguments and its memory.
pub struct HypercallCtx<'a, M: FrameMem> {
    /// Calling domain.
    pub domid: u16,
    /// The caller has `SIF_PRIVILEGED`.
    pub privileged: bool,
    /// RDI, RSI, RDX, R10, R8.
    pub args: [u64; 5],
    /// The caller's address space.
    pub guest: GuestView<'a, M>,
    /// Where console output of this domain goes.
    pub console: &'a mut dyn FnMut(&[u8]),
    /// The hypervisor's own command line (for `XENVER_commandline`).
    pub hv_cmdline: &'a str,
}

/// What the hypervisor does after a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Put this value in RAX and return to the caller.
    Return(i64),
    /// Return 0 and let another domain run first.
    Yield,
    /// The domain stops.
    Shutdown {
        /// Why.
        reason: ShutdownReason,
        /// Exit code (RDX, our extension).
        code: u32,
    },
}

impl From<Result<i64, Errno>> for Action {
    fn from(r: Result<i64, Errno>) -> Action {
        Action::Return(r.unwrap_or_else(Errno::as_ret))
    }
}

/// The arguments of a hypercall in the order of the register convention.
pub fn args_of(f: &EntryFrame) -> [u64; 5] {
    [f.rdi, f.rsi, f.rdx, f.r10, f.r8]
}

/// Run hypercall `number` for the caller described by `ctx`. Unknown numbers get `-ENOSYS`.
pub fn dispatch<M: FrameMem>(number: u64, ctx: &mut HypercallCtx<'_, M>) -> Action {
    match number {
        nr::CONSOLE_IO => console_io::console_io(ctx),
        nr::XEN_VERSION => xen_version::xen_version(ctx),
        nr::SCHED_OP => sched_op::sched_op(ctx),
        nr::NULL => Action::Return(0),
        _ => Action::Return(Errno::ENOSYS.as_ret()),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A fake caller: one domain whose page tables map a few pages, for the families' tests.
    use super::*;
    use crate::mm::phys::fake::FakeMachine;
    use abi::types::Mfn;

    /// Guest address of the writable test page (frame 10); 0x40_1000 is read-only (frame 11).
    pub const RW_PAGE: u64 = 0x40_0000;
    /// Guest address of the read-only test page.
    pub const RO_PAGE: u64 = 0x40_1000;

    /// A machine whose L4 (frame 1) maps RW_PAGE writable and RO_PAGE read-only.
    pub fn machine() -> (FakeMachine, Mfn) {
        let mut m = FakeMachine::new(32);
        let put = |m: &mut FakeMachine, t: u64, i: usize, v: u64| {
            m.frame_mut(Mfn(t))[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(&mut m, 1, 0, 0x2000 | 3);
        put(&mut m, 2, 0, 0x3000 | 3);
        put(&mut m, 3, 2, 0x4000 | 3);
        put(&mut m, 4, 0, 0xa000 | 3);
        put(&mut m, 4, 1, 0xb000 | 1);
        (m, Mfn(1))
    }

    /// Run one hypercall as domain 1 (unprivileged); returns the action and the console output.
    pub fn call(m: &mut FakeMachine, root: Mfn, number: u64, args: [u64; 5]) -> (Action, Vec<u8>) {
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        let mut ctx = HypercallCtx {
            domid: 1,
            privileged: false,
            args,
            guest: GuestView::new(m, root, false),
            console: &mut sink,
            hv_cmdline: "loglevel=info",
        };
        let a = dispatch(number, &mut ctx);
        (a, out)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn unknown_numbers_are_enosys() {
        let (mut m, root) = machine();
        for n in [11, 19, 27, 47, 56, 63, 64, 1000, u64::MAX] {
            assert_eq!(
                call(&mut m, root, n, [0; 5]).0,
                Action::Return(-38),
                "hypercall {n}"
            );
        }
    }

    #[test]
    fn null_hypercall() {
        let (mut m, root) = machine();
        assert_eq!(
            call(&mut m, root, nr::NULL, [u64::MAX; 5]).0,
            Action::Return(0)
        );
    }
}
