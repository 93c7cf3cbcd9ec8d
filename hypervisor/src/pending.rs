//! The one "work pending" word the same-vCPU return tests before it may simply resume the guest that
//! entered: set by whoever creates work the return must not skip, cleared only by the code that has
//! looked at that work.
//!
//! # Contract
//! - [`raise`]`(kind)` is called *before* (or while) the work is created, by the code that creates it:
//!   [`IRQ`] by `irq::record` for every interrupt the scheduler must act on; [`SCHED`] by every lock of
//!   the scheduling policy (`setup::SCHED.lock()`, and the hypercall context's lazy lock when a handler
//!   took it), since any holder may block, pause, wake or re-time a vCPU or mark the policy changed.
//! - A clear bit is a promise: nothing of that kind happened since the bit was last cleared. The
//!   return (`sched::resume_live`) skips the policy's lock and its checks only while [`SCHED`] is clear;
//!   when it is set it checks the policy under its lock and clears the bit only if that check found
//!   nothing to decide. [`IRQ`] is cleared with the interrupt record itself (`irq::take_all`).
//! - [`DISARMED`] is raised by every lock of the domain table (`setup::DOMAINS.lock()`): whoever holds it
//!   may change anything the fast hypercall return relies on (the current domain, its run state, its
//!   segment/gate/TLB flags, its address space). The same-vCPU return (`sched::resume_live`) clears it
//!   after its checks passed, when it records the [`Armed`] state in the table; while the whole word is
//!   zero, `trap::fast_hypercall` may answer a light hypercall and return with that state alone.
//! - A bit may be set when there is nothing to do (a lock taken only to read): that costs one slow check,
//!   never a missed decision. Code that adds a new kind of work the return must see adds a bit here and
//!   one `raise` call where the work is created.
//!
//! The hypervisor runs on one CPU with interrupts off outside the idle loop, so `Relaxed` suffices (the
//! idle loop's interrupt handlers only record, through `irq::record`).

use core::sync::atomic::{AtomicU32, Ordering};

/// An interrupt was recorded that the scheduler has not acted on (`irq::record`).
pub const IRQ: u32 = 1;
/// The scheduling policy was locked (and so possibly changed) since the return last checked it.
pub const SCHED: u32 = 2;

/// The domain table was locked (and so possibly changed) since the same-vCPU return last recorded the
/// [`Armed`] state: the fast hypercall path must not use it.
pub const DISARMED: u32 = 4;

/// The pending kinds, one bit each. Starts with [`SCHED`] and [`DISARMED`] set: nothing has been checked
/// yet.
///
/// The hypercall entry code (`arch::entry`, `hypercall_entry`) reads it as one 32-bit word: zero is the
/// condition for the fast hypercall path.
pub static WORD: AtomicU32 = AtomicU32::new(SCHED | DISARMED);

/// What the same-vCPU return found true when it last returned to a vCPU with nothing to decide, kept in
/// the domain table (valid only while [`DISARMED`] is clear, i.e. until the table is next locked): the
/// vCPU `slot` is current, runnable, its segments in the CPU, no segment, gate or TLB work outstanding,
/// and `cr3` is the value to return to it with (its root, PCID and no-flush bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Armed {
    /// The current domain's slot in the table.
    pub slot: usize,
    /// Its CR3 value for a return without a TLB flush.
    pub cr3: u64,
    /// The hypervisor address (identity map) of its shared_info page's `evtchn_upcall_pending` byte.
    pub upcall_pending: u64,
}

impl Armed {
    /// Nothing recorded yet (never used while [`DISARMED`] is set, which it is from boot).
    pub const NONE: Armed = Armed {
        slot: 0,
        cr3: 0,
        upcall_pending: 0,
    };
}

/// Record that work of `kind` (one or more of [`IRQ`], [`SCHED`], [`DISARMED`]) may be pending.
#[inline(always)]
pub fn raise(kind: u32) {
    WORD.fetch_or(kind, Ordering::Relaxed);
}

/// Whether anything at all may be pending (one load).
#[inline(always)]
pub fn any() -> bool {
    WORD.load(Ordering::Relaxed) != 0
}

/// The whole word (a mask of the kinds that may be pending), for a caller that tests several with one
/// load.
#[inline(always)]
pub fn word() -> u32 {
    WORD.load(Ordering::Relaxed)
}

/// Whether work of `kind` may be pending.
#[inline(always)]
pub fn is_raised(kind: u32) -> bool {
    WORD.load(Ordering::Relaxed) & kind != 0
}

/// The caller has looked at all work of `kind` and acted on it (or found none).
#[inline(always)]
pub fn clear(kind: u32) {
    WORD.fetch_and(!kind, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word is process-global: one test walks through the whole protocol.
    #[test]
    fn raise_any_clear() {
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
