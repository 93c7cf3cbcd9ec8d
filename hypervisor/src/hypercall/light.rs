//! The hypercall table the trap path consults first: handlers that answer from the caller's own registers
//! and domain alone, before (and usually instead of) building the full [`super::HypercallCtx`].
//!
//! Which numbers have one is a property of the call, not of a benchmark: every hypercall that needs
//! neither guest memory, nor a lock, nor the clock — `NULL`, `xen_version`'s register-only sub-commands,
//! `stack_switch` (a guest kernel calls it on every process switch) and `set_callbacks`. Each shares its
//! code with its full handler (`*_on` functions), so the two cannot drift apart.
//!
//! The table is indexed by the hypercall number straight from the entry frame. A light handler returns
//! `Some(value)` for RAX, or `None` when this particular request needs more (guest memory, a lock, the
//! clock): the trap code then builds the full context and goes through [`super::dispatch`] as for every
//! number without a light handler. A light handler therefore has no side effect but its result; whatever
//! it answers, [`super::dispatch`] answers the same for the same registers (a `multicall` entry and the host
//! tests go through `dispatch`; the tests below check both agree).

use abi::hypercall::nr;

use crate::domain::state::Domain;
use crate::regs::EntryFrame;

/// A handler that needs only the caller's domain and frame ([module docs](self)).
pub type LightFn = fn(&mut Domain, &EntryFrame) -> Option<i64>;

/// One slot per hypercall number below this.
pub const SLOTS: usize = super::TABLE_SLOTS;

/// The light handlers by hypercall number (`None`: the full context is always needed). The hypercall
/// entry code (`arch::entry`, `hypercall_entry`) indexes it with the frame's RAX to choose the fast path.
pub static TABLE: [Option<LightFn>; SLOTS] = table();
// The entry code reads an entry as one pointer, null for `None`.
const _: () = assert!(core::mem::size_of::<Option<LightFn>>() == 8);

/// The light handlers by number (also merged into the trap path's one table of slots).
pub const fn table() -> [Option<LightFn>; SLOTS] {
    let mut t: [Option<LightFn>; SLOTS] = [None; SLOTS];
    t[nr::NULL as usize] = Some(null);
    t[nr::XEN_VERSION as usize] = Some(super::xen_version::light);
    t[nr::STACK_SWITCH as usize] = Some(stack_switch);
    t[nr::SET_CALLBACKS as usize] = Some(set_callbacks);
    t
}

/// The light handler for `number`, if it has one.
#[inline(always)]
pub fn handler(number: u64) -> Option<LightFn> {
    match TABLE.get(usize::try_from(number).ok()?) {
        Some(h) => *h,
        None => None,
    }
}

/// `NULL` (our extension): returns 0, does nothing.
fn null(_: &mut Domain, _: &EntryFrame) -> Option<i64> {
    Some(0)
}

/// `stack_switch(ss, rsp)`, always answered here.
fn stack_switch(d: &mut Domain, f: &EntryFrame) -> Option<i64> {
    Some(super::traps::stack_switch_on(
        &mut d.vcpu.pv,
        super::args_of(f),
    ))
}

/// `set_callbacks(event, failsafe, syscall)`, always answered here.
fn set_callbacks(d: &mut Domain, f: &EntryFrame) -> Option<i64> {
    Some(super::traps::set_callbacks_on(
        &mut d.vcpu.pv,
        super::args_of(f),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{Action, args_of};
    use super::*;

    /// Every light answer equals `dispatch`'s for the same registers, over every slot and a spread of
    /// hostile arguments; and numbers past the table have no light handler.
    #[test]
    fn light_answers_agree_with_dispatch() {
        let w = World::new();
        let fresh = other_domain(0, crate::domain::state::DomainState::Runnable, w.dom);
        let kernel_ss = u64::from(abi::layout::GUEST_KERNEL_SS);
        let args = [
            0,
            1,
            2,
            5,
            6,
            7,
            8,
            9,
            10,
            kernel_ss,
            0xffff_ffff_8000_1000,
            0x7fff_ffff,
            u64::MAX,
        ];
        let mut answered = 0;
        for n in 0..SLOTS as u64 + 4 {
            let Some(h) = handler(n) else { continue };
            for &a0 in &args {
                for &a1 in &[
                    0,
                    crate::hypercall::testing::RW_PAGE,
                    0xffff_ffff_8000_2000,
                    u64::MAX,
                ] {
                    let frame = EntryFrame {
                        rax: n,
                        rdi: a0,
                        rsi: a1,
                        rdx: a0,
                        r10: a1,
                        r8: a0,
                        ..EntryFrame::default()
                    };
                    let mut dom =
                        other_domain(0, crate::domain::state::DomainState::Runnable, fresh.mm);
                    dom.vcpu.pv = fresh.vcpu.pv;
                    if let Some(v) = h(&mut dom, &frame) {
                        answered += 1;
                        let mut w = World::new();
                        w.vcpu = fresh.vcpu.pv;
                        assert_eq!(
                            w.call(n, args_of(&frame)),
                            Action::Return(v),
                            "nr {n} {a0:#x}"
                        );
                        // And the same effect on the vCPU.
                        assert_eq!(
                            format!("{:?}", w.vcpu),
                            format!("{:?}", dom.vcpu.pv),
                            "nr {n} {a0:#x}: the light and the full handler left different vCPU state"
                        );
                    }
                }
            }
        }
        assert!(answered > 0);
        assert!(handler(SLOTS as u64).is_none() && handler(u64::MAX).is_none());
        assert_eq!(
            handler(nr::NULL).map(|h| h(
                &mut other_domain(0, crate::domain::state::DomainState::Runnable, fresh.mm),
                &EntryFrame::default()
            )),
            Some(Some(0))
        );
    }
}
