//! `counters` (our extension, `abi::counters`): copy the calling domain's entry counters to its buffer.
//! The counters themselves are bumped where the entries happen (`trap::hypercall`, `deliver`).

use abi::counters::COUNTERSOP_READ;
use abi::errno::Errno;
use abi::types::Gva;

use super::{Action, HypercallCtx, MachineMem};

/// A decoded `counters` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountersRequest {
    /// Write the caller's counters at this guest address.
    Read(Gva),
}

/// Decode the registers (no side effects).
pub fn decode(args: [u64; 5]) -> Result<CountersRequest, Errno> {
    match args[0] {
        COUNTERSOP_READ => Ok(CountersRequest::Read(Gva(args[1]))),
        _ => Err(Errno::EINVAL),
    }
}

/// Handle `counters`.
pub fn counters<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let result = decode(ctx.args()).and_then(|req| match req {
        CountersRequest::Read(va) => {
            let c = ctx.vcpu.counters;
            ctx.guest().write_obj(va, &c).map(|_| 0)
        }
    });
    Action::from(result)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use abi::counters::DomainCounters;
    use abi::hypercall::nr::COUNTERS;

    fn read_back(w: &mut World, va: u64) -> DomainCounters {
        crate::mm::guest_mem::GuestView::new(&mut w.mem, w.dom.base, false)
            .read_obj(Gva(va))
            .unwrap()
    }

    #[test]
    fn reads_the_callers_counters() {
        let mut w = World::new();
        w.vcpu.counters = DomainCounters {
            hypercalls: 41,
            exceptions: 7,
            syscalls: 3,
            upcalls: u64::MAX,
        };
        let want = w.vcpu.counters;
        assert_eq!(
            w.call(COUNTERS, [COUNTERSOP_READ, RW_PAGE + 8, 0, 0, 0]),
            Action::Return(0)
        );
        assert_eq!(read_back(&mut w, RW_PAGE + 8), want);
        // Reading changes nothing (the hypercall itself is counted by the trap path, not here).
        assert_eq!(w.vcpu.counters, want);
    }

    #[test]
    fn hostile_arguments() {
        let mut w = World::new();
        let efault = Action::Return(Errno::EFAULT.as_ret());
        for va in [
            0,
            RO_PAGE,
            0x20_0000,
            abi::layout::ENTRY_REGION_VA,
            0xdead_0000_0000_0000,
            u64::MAX - 7,
            // Straddles the end of the writable page into the read-only one.
            RW_PAGE + 0xff0,
        ] {
            assert_eq!(
                w.call(COUNTERS, [COUNTERSOP_READ, va, 0, 0, 0]),
                efault,
                "{va:#x}"
            );
        }
        // Nothing was written by the refused straddling call.
        let mut tail = [0u8; 16];
        crate::mm::guest_mem::GuestView::new(&mut w.mem, w.dom.base, false)
            .read(Gva(RW_PAGE + 0xff0), &mut tail)
            .unwrap();
        assert_eq!(tail, [0; 16]);
        let einval = Action::Return(Errno::EINVAL.as_ret());
        for cmd in [1, 2, 0x8000_0000, u64::MAX] {
            assert_eq!(w.call(COUNTERS, [cmd, RW_PAGE, 0, 0, 0]), einval, "{cmd}");
        }
    }
}
