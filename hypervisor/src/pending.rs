//! The one "work pending" word the same-vCPU return tests before it may simply resume the guest that
//! entered: set by whoever creates work the return must not skip, cleared only by the code that has
//! looked at that work.
//!
//! # Contract
//! - [`raise`]`(kind)` is called *before* (or while) the work is created, by the code that creates it:
//!   [`IRQ`] by `irq::record` for every interrupt the scheduler must act on; [`SCHED`] by every lock of
//!   the scheduling policy through `setup::SCHED.lock()`, since any holder may block, pause, wake or
//!   re-time a vCPU or mark the policy changed. The hypercall context's lazy lock of the policy raises it
//!   instead when it releases the lock, if the handler marked the policy changed (`hypercall::lazy`):
//!   still before anything reads the bit, since the return runs after the context is dropped, and every
//!   change the return must see (a vCPU blocked, stopped, paused, woken into a new choice, re-timed)
//!   marks the policy.
//! - A clear bit is a promise: nothing of that kind happened since the bit was last cleared. The
//!   return (`sched::resume_live`) skips the policy's lock and its checks only while [`SCHED`] is clear;
//!   when it is set it checks the policy under its lock and clears the bit only if that check found
//!   nothing to decide. [`IRQ`] is cleared with the interrupt record itself (`irq::take_all`).
//! - [`DISARMED`] is raised by every lock of the domain table (`setup::DOMAINS.lock()`): whoever holds it
//!   may change anything the fast hypercall return relies on (the current domain, its run state, its
//!   segment/gate/TLB flags, its address space). The same-vCPU return (`sched::resume_live`, after a
//!   light answer) clears it after its checks passed, when it records the [`Armed`] state ([`arm`]);
//!   while the whole word is zero, the hypercall entry code (`arch::entry`, `hypercall_entry`) may
//!   answer a light hypercall and return with that state alone.
//! - A bit may be set when there is nothing to do (a lock taken only to read): that costs one slow check,
//!   never a missed decision. Code that adds a new kind of work the return must see adds a bit here and
//!   one `raise` call where the work is created.
//!
//! The hypervisor runs on one CPU with interrupts off outside the idle loop, so `Relaxed` suffices (the
//! idle loop's interrupt handlers only record, through `irq::record`).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

/// An interrupt was recorded that the scheduler has not acted on (`irq::record`).
pub const IRQ: u32 = 1;
/// The scheduling policy was locked (and so possibly changed) since the return last checked it.
pub const SCHED: u32 = 2;

/// The domain table was locked (and so possibly changed) since the same-vCPU return last recorded the
/// [`Armed`] state: the fast hypercall path must not use it.
pub const DISARMED: u32 = 4;

/// The pending kinds, one bit each, and the recorded fast-return state, in one place so that the
/// hypercall entry code reaches both through one address ([`STATE`]).
#[repr(C)]
pub struct State {
    /// The pending kinds, one bit each. Starts with [`SCHED`] and [`DISARMED`] set: nothing has been
    /// checked yet. The hypercall entry code (`arch::entry`, `hypercall_entry`) reads it as one 32-bit
    /// word: zero is the condition for the fast hypercall path.
    pub word: AtomicU32,
    /// What the last same-vCPU return recorded ([`Armed`]); meaningful only while [`DISARMED`] is clear.
    armed: UnsafeCell<Armed>,
}

// SAFETY: the hypervisor runs on one CPU with interrupts off outside the idle loop (whose interrupt
// handlers touch only `word`, atomically). `armed` is written only by [`arm`], whose caller holds the
// domain table, and read only by the hypercall entry code, which runs with no Rust code live on the CPU
// (entered from a guest): the two never overlap.
unsafe impl Sync for State {}

/// The one pending word and the fast return's recorded state.
pub static STATE: State = State {
    word: AtomicU32::new(SCHED | DISARMED),
    armed: UnsafeCell::new(Armed::NONE),
};

/// Offset of [`State`]'s word, for the entry code.
pub const STATE_WORD: usize = core::mem::offset_of!(State, word);
/// Offset of [`State`]'s recorded [`Armed`] state, for the entry code.
pub const STATE_ARMED: usize = core::mem::offset_of!(State, armed);

/// What the same-vCPU return found true when it last returned to a vCPU with nothing to decide (valid
/// only while [`DISARMED`] is clear, i.e. until the domain table is next locked): the vCPU of `dom` is
/// current, runnable, its segments in the CPU, no segment, gate or TLB work outstanding, and `cr3` is the
/// value to return to it with (its root, PCID and no-flush bit). Read by the hypercall entry code
/// (`arch::entry`, `hypercall_entry`) at the offsets of its fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Armed {
    /// The hypervisor address of the current `Domain` (its slot in the static domain table: it stays
    /// there until the slot is reused, which takes the table's lock, which raises [`DISARMED`]).
    pub dom: u64,
    /// Its CR3 value for a return without a TLB flush.
    pub cr3: u64,
    /// The hypervisor address (identity map) of its shared_info page's `evtchn_upcall_pending` byte.
    pub upcall_pending: u64,
}

impl Armed {
    /// Nothing recorded yet (never used while [`DISARMED`] is set, which it is from boot).
    pub const NONE: Armed = Armed {
        dom: 0,
        cr3: 0,
        upcall_pending: 0,
    };
}

/// Record `armed` for the fast hypercall path, then clear [`DISARMED`] (the caller has just checked
/// everything [`Armed`] states). Only for the same-vCPU return, which holds the domain table (`_table`,
/// the proof) and releases it before it returns to the guest without taking any other lock.
#[inline(always)]
pub fn arm(_table: &mut crate::domain::state::DomainTable, armed: Armed) {
    // SAFETY: see `State`'s `Sync`: the entry code reads `armed` only on a later entry from a guest, and
    // no other reference to it exists (this function is its only writer).
    unsafe { STATE.armed.get().write(armed) };
    clear(DISARMED);
}

/// Record that work of `kind` (one or more of [`IRQ`], [`SCHED`], [`DISARMED`]) may be pending.
#[inline(always)]
pub fn raise(kind: u32) {
    STATE.word.fetch_or(kind, Ordering::Relaxed);
}

/// Whether anything at all may be pending (one load).
#[inline(always)]
pub fn any() -> bool {
    STATE.word.load(Ordering::Relaxed) != 0
}

/// The whole word (a mask of the kinds that may be pending), for a caller that tests several with one
/// load.
#[inline(always)]
pub fn word() -> u32 {
    STATE.word.load(Ordering::Relaxed)
}

/// Whether work of `kind` may be pending.
#[inline(always)]
pub fn is_raised(kind: u32) -> bool {
    STATE.word.load(Ordering::Relaxed) & kind != 0
}

/// The caller has looked at all work of `kind` and acted on it (or found none).
#[inline(always)]
pub fn clear(kind: u32) {
    STATE.word.fetch_and(!kind, Ordering::Relaxed);
}

/// The word is process-global: host tests that raise or clear it hold this lock.
#[cfg(test)]
pub static TEST_WORD: spin::Mutex<()> = spin::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    /// One test walks through the whole protocol.
    #[test]
    fn raise_any_clear() {
        let _word = TEST_WORD.lock();
        clear(IRQ | SCHED | DISARMED);
        assert!(!any());
        raise(DISARMED);
        assert!(any() && is_raised(DISARMED) && !is_raised(SCHED | IRQ));
        clear(DISARMED);
        raise(SCHED);
        assert!(any() && is_raised(SCHED) && !is_raised(IRQ));
        raise(IRQ);
        clear(SCHED);
        assert!(any() && is_raised(IRQ) && !is_raised(SCHED));
        clear(IRQ);
        assert!(!any());
    }
}
