//! Batched page-table writes: queue [`PtWrite`]s, hand them to the platform ([`Mmu::write_ptes`]: one
//! hypercall on PV, a run of stores natively) when the queue is full or when the caller flushes (before the
//! TLB or another operation depends on them), and report the exact write the platform refused.
//!
//! The platform applies a batch in order and stops at the first bad write: writes before it are applied,
//! it and everything after are not. A failed flush therefore drops the rest of the queue and returns
//! [`MmError::Batch`] naming the write (its index in the batch, its target and value, the errno).

use abi::types::{Maddr, Mfn, Pfn};

use super::fault::{MmError, report};
use super::pte::{Pte, entry_maddr};
use crate::platform::{Mmu, PtTarget, PtWrite};

/// Writes handed to the platform at once at most (1 KiB of writes on the stack).
pub const BATCH_CAPACITY: usize = 64;

/// A queue of page-table updates.
pub struct Batch {
    reqs: [PtWrite; BATCH_CAPACITY],
    len: usize,
    hypercalls: usize,
    applied: usize,
}

impl Batch {
    /// An empty queue.
    pub const fn new() -> Batch {
        Batch {
            reqs: [PtWrite::from_raw(0, 0); BATCH_CAPACITY],
            len: 0,
            hypercalls: 0,
            applied: 0,
        }
    }

    /// Queue a write, flushing first if the queue is full.
    pub fn queue(
        &mut self,
        hv: &(impl Mmu + ?Sized),
        req: impl Into<PtWrite>,
    ) -> Result<(), MmError> {
        if self.len == BATCH_CAPACITY {
            self.flush(hv)?;
        }
        self.reqs[self.len] = req.into();
        self.len += 1;
        Ok(())
    }

    /// Queue a checked write of entry `idx` of the table in frame `table`.
    pub fn set_entry(
        &mut self,
        hv: &(impl Mmu + ?Sized),
        table: Mfn,
        idx: usize,
        pte: Pte,
    ) -> Result<(), MmError> {
        self.set_at(hv, entry_maddr(table, idx), pte)
    }

    /// Queue a checked write of the entry at machine address `at`.
    pub fn set_at(&mut self, hv: &(impl Mmu + ?Sized), at: Maddr, pte: Pte) -> Result<(), MmError> {
        self.queue(hv, PtWrite::entry(at, pte))
    }

    /// Queue a frame-owner record (PV: an M2P update): machine frame `mfn` now backs guest frame `pfn`.
    pub fn set_m2p(&mut self, hv: &(impl Mmu + ?Sized), mfn: Mfn, pfn: Pfn) -> Result<(), MmError> {
        self.queue(hv, PtWrite::frame_owner(mfn, pfn))
    }

    /// The writes not sent yet.
    pub fn pending(&self) -> &[PtWrite] {
        &self.reqs[..self.len]
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The newest queued value for the entry at `at`, if one is queued (reads of tables must see it).
    pub fn lookup(&self, at: Maddr) -> Option<u64> {
        self.pending()
            .iter()
            .rev()
            .find(|r| r.target() == PtTarget::Entry(at))
            .map(|r| r.value())
    }

    /// `(batches handed to the platform, writes applied)` so far.
    pub fn stats(&self) -> (usize, usize) {
        (self.hypercalls, self.applied)
    }

    /// Send everything queued; returns how many were applied. On a refusal the rest of the queue is
    /// dropped and the refused entry is reported.
    pub fn flush(&mut self, hv: &(impl Mmu + ?Sized)) -> Result<usize, MmError> {
        let len = self.len;
        if len == 0 {
            return Ok(0);
        }
        self.len = 0;
        self.hypercalls += 1;
        let (done, r) = hv.write_ptes(&self.reqs[..len]);
        self.applied += done.min(len);
        match r {
            Ok(()) if done == len => Ok(len),
            Ok(()) => Err(report(MmError::Internal(
                "the platform accepted a batch but applied fewer writes than sent",
            ))),
            Err(errno) => Err(report(MmError::Batch {
                index: done,
                len,
                entry: self.reqs[done.min(len - 1)],
                errno,
            })),
        }
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::pte::Level;
    use crate::platform::Flush;
    use abi::errno::Errno;
    use core::cell::RefCell;

    /// Applies requests to a map and refuses any value with bit 62 set, like the hypervisor stops at a
    /// bad entry.
    #[derive(Default)]
    struct Model {
        calls: RefCell<Vec<Vec<PtWrite>>>,
        mem: RefCell<std::collections::BTreeMap<u64, u64>>,
    }

    impl Mmu for Model {
        fn write_ptes(&self, reqs: &[PtWrite]) -> (usize, Result<(), Errno>) {
            self.calls.borrow_mut().push(reqs.to_vec());
            for (i, r) in reqs.iter().enumerate() {
                if r.value() & (1 << 62) != 0 {
                    return (i, Err(Errno::EINVAL));
                }
                self.mem.borrow_mut().insert(r.raw().0, r.value());
            }
            (reqs.len(), Ok(()))
        }
        fn pin_table(&self, _: Level, _: Mfn) -> Result<(), Errno> {
            Ok(())
        }
        fn unpin_table(&self, _: Mfn) -> Result<(), Errno> {
            Ok(())
        }
        fn switch_address_space(&self, _: Mfn) -> Result<(), Errno> {
            Ok(())
        }
        fn flush_tlb(&self, _: Flush) -> Result<(), Errno> {
            Ok(())
        }
    }

    #[test]
    fn flushes_when_full_and_on_demand() {
        let m = Model::default();
        let mut b = Batch::new();
        for i in 0..BATCH_CAPACITY + 3 {
            b.set_entry(&m, Mfn(7), i % 512, Pte(i as u64 + 1)).unwrap();
        }
        assert_eq!(m.calls.borrow().len(), 1, "one full batch sent");
        assert_eq!(m.calls.borrow()[0].len(), BATCH_CAPACITY);
        assert_eq!(b.pending().len(), 3);
        assert_eq!(b.lookup(entry_maddr(Mfn(7), 65)), Some(66));
        assert_eq!(b.lookup(entry_maddr(Mfn(7), 1)), None, "already sent");
        assert_eq!(b.flush(&m), Ok(3));
        assert!(b.is_empty());
        assert_eq!(b.flush(&m), Ok(0), "an empty flush makes no hypercall");
        assert_eq!(m.calls.borrow().len(), 2);
        assert_eq!(b.stats(), (2, BATCH_CAPACITY + 3));
        assert_eq!(m.mem.borrow()[&0x7000], 1);
    }

    #[test]
    fn newest_pending_value_wins() {
        let m = Model::default();
        let mut b = Batch::new();
        b.set_at(&m, Maddr(0x1008), Pte(1)).unwrap();
        b.set_at(&m, Maddr(0x1008), Pte(2)).unwrap();
        b.set_m2p(&m, Mfn(0x1), Pfn(9)).unwrap();
        assert_eq!(b.lookup(Maddr(0x1008)), Some(2));
        assert_eq!(b.pending()[2].raw(), (0x1001, 9));
        assert_eq!(b.pending()[2].target(), PtTarget::FrameOwner(Mfn(1)));
    }

    #[test]
    fn refusal_names_the_entry_and_drops_the_rest() {
        let m = Model::default();
        let mut b = Batch::new();
        for i in 0..8u64 {
            let val = if i == 4 { 1 << 62 } else { i + 100 };
            b.set_at(&m, Maddr(0x2000 + i * 8), Pte(val)).unwrap();
        }
        let e = b.flush(&m).unwrap_err();
        assert_eq!(
            e,
            MmError::Batch {
                index: 4,
                len: 8,
                entry: PtWrite::entry(Maddr(0x2020), Pte(1 << 62)),
                errno: Errno::EINVAL
            }
        );
        assert!(b.is_empty(), "the rest is dropped");
        let mem = m.mem.borrow();
        assert_eq!(mem.len(), 4, "entries 0..4 applied, 5..8 not");
        assert_eq!(mem[&0x2018], 103);
    }

    #[test]
    fn batches_go_through_a_dyn_platform_and_take_raw_writes() {
        // The kernel hands `ops()` (a `&dyn Platform`) to the batch; the scenarios queue raw requests.
        let m = Model::default();
        let hv: &dyn Mmu = &m;
        let mut b = Batch::new();
        b.set_entry(hv, Mfn(3), 1, Pte(5)).unwrap();
        b.queue(hv, PtWrite::from_raw(0x3010, 6)).unwrap();
        b.set_m2p(hv, Mfn(9), Pfn(2)).unwrap();
        assert_eq!(b.lookup(Maddr(0x3008)), Some(5));
        assert_eq!(
            b.lookup(Maddr(0x3010)),
            Some(6),
            "a raw entry write is an entry write"
        );
        assert_eq!(
            b.lookup(Maddr(0x9000)),
            None,
            "a frame-owner record is not an entry"
        );
        assert_eq!(b.flush(hv), Ok(3));
        assert_eq!(m.calls.borrow()[0].len(), 3);
    }
}
