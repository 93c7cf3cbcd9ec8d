//! The hypercall table the trap path consults first: handlers that answer from the caller's own registers
//! and domain alone, before (and usually instead of) building the full [`super::HypercallCtx`].
//!
//! Which numbers have one is a property of the call, not of a benchmark: every hypercall that needs
//! neither the clock, nor another domain, nor a lock but the machine's (the frame table) — `NULL`,
//! `xen_version`'s register-only sub-commands, `stack_switch` (a guest kernel calls it on every process
//! switch), `set_callbacks`, and `update_va_mapping`'s common case (a guest kernel's every mapping change:
//! a page fault filled, a page mapped or protected). Each shares its code with its full handler (`*_on`
//! functions), so the two cannot drift apart.
//!
//! The table is indexed by the hypercall number straight from the entry frame. A light handler returns
//! `Some(value)` for RAX, or `None` when this particular request needs more (guest memory, a lock, the
//! clock): the trap code then builds the full context and goes through [`super::dispatch`] as for every
//! number without a light handler. A light handler therefore has no side effect but its result; whatever
//! it answers, [`super::dispatch`] answers the same for the same registers, with the same effect on the
//! caller's page tables and the frame table (a `multicall` entry and the host tests go through `dispatch`;
//! the tests below check both agree).
//!
//! A light handler must never take the domain table's lock, nor the event channels' or the scheduling
//! policy's (nor call anything that does): the hypercall entry code calls it with no lock held, with a
//! `&mut Domain` that is sound only because nothing else can reach the domain table at that moment
//! (`pending::Armed`, docs/ARCHITECTURE.md "Entry and exit"), and a change to the events or the policy
//! would need the checks of the general return. The one lock it may take is the machine's
//! (`setup::MACHINE`: free frames, frame table, M2P), which guards nothing the fast path's state
//! (`pending::Armed`) depends on; nothing holds it while a guest runs (one CPU, every lock released
//! before an exit), so the light handler takes it at once, and releases it before it answers. A call
//! that would need anything more returns `None` and takes the full path.

use abi::hypercall::nr;

use crate::domain::state::Domain;
use crate::regs::EntryFrame;

/// A handler that needs only the caller's frame and domain ([module docs](self)). (Frame first: the
/// hypercall entry code holds the frame in the first argument register already.)
pub type LightFn = fn(&EntryFrame, &mut Domain) -> Option<i64>;

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
    #[cfg(feature = "baremetal")]
    {
        t[nr::UPDATE_VA_MAPPING as usize] = Some(update_va_mapping);
    }
    t
}

/// What a light handler's entry-ABI twin ([`ENTRY`]) returns to the hypercall entry code, in RAX and
/// RDX (a 16-byte `repr(C)` aggregate: the System V ABI returns it in those two registers).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// [`DECLINED`], [`ANSWERED`], or more than that: answered, but the return has work first.
    pub status: u64,
    /// The result for the guest's RAX (when answered).
    pub value: i64,
}

/// [`Answer::status`]: the request needs the general path; nothing was changed.
pub const DECLINED: u64 = 0;
/// [`Answer::status`]: answered (counted in the vCPU's hypercall counter), and nothing the handler did
/// needs the general return (no gate or segment work; anything above this value: some).
pub const ANSWERED: u64 = 1;

/// A light handler as the hypercall entry code calls it (`arch::entry`, `hypercall_entry`): the frame
/// and the current domain (the pointer the last same-vCPU return recorded, `pending::Armed`).
#[allow(improper_ctypes_definitions)] // Rust-only types behind references: the caller passes pointers.
pub type EntryFn = extern "C" fn(&EntryFrame, &mut Domain) -> Answer;

/// `h`'s answer as [`Answer`], counting an answered call in the vCPU's counter and adding whatever work
/// the handler left for the return: a `stack_switch` dirties the gates; and, with `TLB` (a handler that
/// may change the page tables: `update_va_mapping`), a TLB flush asked for (`DomainMm::flush_tlb`),
/// which the fast return's CR3 load performs when [`cr3_load_flushes`] (without PCID every CR3 load
/// flushes the guest's TLB entries, and the fast return's recorded value is the flushing one,
/// `sched::guest_cr3_and_keep`): the flush is then done and cleared; with PCID the general return
/// makes it.
#[inline(always)]
fn answer<const TLB: bool>(r: Option<i64>, d: &mut Domain) -> Answer {
    let Some(value) = r else {
        return Answer {
            status: DECLINED,
            value: 0,
        };
    };
    let mut flush_left = false;
    if TLB {
        if cr3_load_flushes() {
            d.mm.flush_tlb = false;
        } else {
            flush_left = d.mm.flush_tlb;
        }
    }
    let pv = &mut d.vcpu.pv;
    pv.counters.hypercalls = pv.counters.hypercalls.wrapping_add(1);
    Answer {
        status: ANSWERED + u64::from(pv.gates_dirty | pv.segments_dirty | flush_left),
        value,
    }
}

/// The entry-ABI twins of the light handlers: `extern "C"` functions of the same name with the `_entry`
/// suffix, each the handler itself (inlined) and [`answer`] (`tlb`: its `TLB`).
macro_rules! entry_twins {
    ($($twin:ident => $handler:path, tlb: $tlb:literal;)*) => {$(
        #[allow(improper_ctypes_definitions)]
        extern "C" fn $twin(f: &EntryFrame, d: &mut Domain) -> Answer {
            let r = $handler(f, d);
            answer::<$tlb>(r, d)
        }
    )*};
}
entry_twins! {
    null_entry => null, tlb: false;
    xen_version_entry => super::xen_version::light, tlb: false;
    stack_switch_entry => stack_switch, tlb: false;
    set_callbacks_entry => set_callbacks, tlb: false;
}
#[cfg(feature = "baremetal")]
entry_twins! {
    update_va_mapping_entry => update_va_mapping, tlb: true;
}

/// Whether the fast return's CR3 load flushes the guest's TLB entries: without PCID every CR3 load does
/// (see [`answer`]). (The host tests have no CPU to ask: there the flush is left to the general return.)
#[inline(always)]
fn cr3_load_flushes() -> bool {
    #[cfg(feature = "baremetal")]
    {
        !crate::arch::pcid_enabled()
    }
    #[cfg(not(feature = "baremetal"))]
    {
        false
    }
}

/// [`TABLE`] for the hypercall entry code: the same slots, each with the entry-ABI twin of the light
/// handler there. The entry code indexes it with the frame's RAX (below [`SLOTS`]) and calls the entry
/// (non-null) with the frame and the recorded current domain.
pub static ENTRY: [Option<EntryFn>; SLOTS] = entry_table();
// The entry code reads an entry as one pointer, null for `None`.
const _: () = assert!(core::mem::size_of::<Option<EntryFn>>() == 8);

const fn entry_table() -> [Option<EntryFn>; SLOTS] {
    let mut t: [Option<EntryFn>; SLOTS] = [None; SLOTS];
    t[nr::NULL as usize] = Some(null_entry);
    t[nr::XEN_VERSION as usize] = Some(xen_version_entry);
    t[nr::STACK_SWITCH as usize] = Some(stack_switch_entry);
    t[nr::SET_CALLBACKS as usize] = Some(set_callbacks_entry);
    #[cfg(feature = "baremetal")]
    {
        t[nr::UPDATE_VA_MAPPING as usize] = Some(update_va_mapping_entry);
    }
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
fn null(_: &EntryFrame, _: &mut Domain) -> Option<i64> {
    Some(0)
}

/// `stack_switch(ss, rsp)`, always answered here.
fn stack_switch(f: &EntryFrame, d: &mut Domain) -> Option<i64> {
    Some(super::traps::stack_switch_on(
        &mut d.vcpu.pv,
        super::args_of(f),
    ))
}

/// `set_callbacks(event, failsafe, syscall)`, always answered here.
fn set_callbacks(f: &EntryFrame, d: &mut Domain) -> Option<i64> {
    Some(super::traps::set_callbacks_on(
        &mut d.vcpu.pv,
        super::args_of(f),
    ))
}

/// `update_va_mapping(va, val, flags)`: its common case ([`super::mmu_update::update_va_on`], shared
/// with the full handler) under the machine's lock, which this handler takes itself (the one lock a
/// light handler may take, see the module docs); arguments the full handler refuses are refused the
/// same way. Declined, with nothing changed, whenever the full handler would take its general path (an
/// entry the fast walk does not take, a table that is not a validated L1 of the caller, log-dirty on).
/// On the hypervisor only: the host tests' machine is not behind the lock (they reach the shared code
/// through the full handler); the `hostile-calls` scenario checks in QEMU that its answers to hostile
/// registers are the full path's (through a multicall) and change nothing.
#[cfg(feature = "baremetal")]
fn update_va_mapping(f: &EntryFrame, d: &mut Domain) -> Option<i64> {
    use super::mmu_update::{update_va_on, uvm_args_ok};
    let [va, val, flags, ..] = super::args_of(f);
    if !uvm_args_ok(va, flags) {
        return Some(abi::errno::Errno::EINVAL.as_ret());
    }
    let mut machine = crate::setup::MACHINE.lock();
    let machine = machine.as_mut()?;
    update_va_on(
        &mut crate::arch::paging::IdentityMem,
        &mut machine.ft,
        crate::trap::policy(),
        &mut d.mm,
        d.id,
        abi::types::Gva(va),
        val,
    )
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
                    if let Some(v) = h(&frame, &mut dom) {
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
                &EntryFrame::default(),
                &mut other_domain(0, crate::domain::state::DomainState::Runnable, fresh.mm),
            )),
            Some(Some(0))
        );
    }

    /// [`ENTRY`] has a twin exactly where [`TABLE`] has a handler, and each twin answers as its handler
    /// does, counts an answered call once, reports gate or segment work left for the return, and changes
    /// nothing when its handler declines.
    #[test]
    fn entry_twins_agree_with_handlers() {
        let w = World::new();
        let fresh = other_domain(0, crate::domain::state::DomainState::Runnable, w.dom);
        let mut declined = 0;
        for n in 0..SLOTS {
            assert_eq!(ENTRY[n].is_some(), TABLE[n].is_some(), "slot {n}");
            let (Some(h), Some(twin)) = (TABLE[n], ENTRY[n]) else {
                continue;
            };
            for a0 in [
                0,
                1,
                2,
                6,
                9,
                10,
                u64::from(abi::layout::GUEST_KERNEL_SS),
                u64::MAX,
            ] {
                let frame = EntryFrame {
                    rax: n as u64,
                    rdi: a0,
                    rsi: 0xffff_ffff_8000_2000,
                    ..EntryFrame::default()
                };
                for dirty in [false, true] {
                    let mut a =
                        other_domain(0, crate::domain::state::DomainState::Runnable, fresh.mm);
                    a.vcpu.pv = fresh.vcpu.pv;
                    a.vcpu.pv.gates_dirty = false;
                    a.vcpu.pv.segments_dirty = dirty;
                    let mut b =
                        other_domain(0, crate::domain::state::DomainState::Runnable, fresh.mm);
                    b.vcpu.pv = a.vcpu.pv;
                    let before = format!("{:?}", a.vcpu.pv);
                    let want = h(&frame, &mut a);
                    let got = twin(&frame, &mut b);
                    match want {
                        None => {
                            declined += 1;
                            assert_eq!(got.status, DECLINED, "nr {n} {a0:#x}");
                            assert_eq!(
                                format!("{:?}", b.vcpu.pv),
                                before,
                                "nr {n}: declined but changed"
                            );
                        }
                        Some(v) => {
                            assert_eq!(got.value, v, "nr {n} {a0:#x}");
                            let work = a.vcpu.pv.gates_dirty || a.vcpu.pv.segments_dirty;
                            assert_eq!(got.status == ANSWERED, !work, "nr {n} {a0:#x}");
                            assert!(got.status >= ANSWERED);
                            a.vcpu.pv.counters.hypercalls += 1;
                            assert_eq!(
                                format!("{:?}", b.vcpu.pv),
                                format!("{:?}", a.vcpu.pv),
                                "nr {n}"
                            );
                        }
                    }
                }
            }
        }
        assert!(
            declined > 0,
            "no request declined: the test does not reach that case"
        );
    }

    /// A handler that may change the page tables (`answer::<true>`): a TLB flush it leaves is return
    /// work, kept for the general return, when the fast return's CR3 load does not flush (the host
    /// build's case, and PCID's); an answer without one, or a declined request, adds nothing; and a
    /// handler that cannot change them (`answer::<false>`) ignores the flag.
    #[test]
    fn a_left_flush_is_return_work_unless_the_cr3_load_makes_it() {
        assert!(!cr3_load_flushes());
        let w = World::new();
        for flush in [false, true] {
            let mut d = other_domain(0, crate::domain::state::DomainState::Runnable, w.dom);
            d.vcpu.pv.gates_dirty = false;
            d.vcpu.pv.segments_dirty = false;
            d.mm.flush_tlb = flush;
            let got = answer::<true>(Some(0), &mut d);
            assert_eq!(got.status, ANSWERED + u64::from(flush), "flush {flush}");
            assert_eq!(d.mm.flush_tlb, flush, "the flush stays for the return");
            assert_eq!(answer::<false>(Some(0), &mut d).status, ANSWERED);
            assert_eq!(answer::<true>(None, &mut d).status, DECLINED);
        }
    }
}
