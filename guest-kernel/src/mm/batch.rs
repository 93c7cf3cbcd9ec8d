//! Batched page-table updates: queue `mmu_update` requests, send them in one hypercall when the queue is
//! full or when the caller flushes (before the TLB or another hypercall depends on them), and report the
//! exact entry the hypervisor refused.
//!
//! The hypervisor applies a batch in order and stops at the first bad entry: entries before it are
//! applied, it and everything after are not. A failed flush therefore drops the rest of the queue and
//! returns [`MmError::Batch`] naming the entry (its index in the hypercall, its `ptr` and `val`, the errno).

use abi::errno::Errno;
use abi::mm::{MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE};
use abi::types::{Maddr, Mfn, Pfn};
use abi::xen::MmuUpdate;

use super::fault::{MmError, report};
use super::pte::{Pte, entry_maddr};

/// Something that applies `mmu_update` batches (the platform, or a model of the hypervisor in tests).
pub trait PtUpdate {
    /// Apply `reqs` in order with one hypercall; returns how many were applied and the hypercall's result.
    fn mmu_update(&self, reqs: &[MmuUpdate]) -> (usize, Result<(), Errno>);
}

/// Requests sent per hypercall at most (1 KiB of requests on the stack).
pub const BATCH_CAPACITY: usize = 64;

/// A queue of page-table updates.
pub struct Batch {
    reqs: [MmuUpdate; BATCH_CAPACITY],
    len: usize,
    hypercalls: usize,
    applied: usize,
}

impl Batch {
    /// An empty queue.
    pub const fn new() -> Batch {
        Batch {
            reqs: [MmuUpdate { ptr: 0, val: 0 }; BATCH_CAPACITY],
            len: 0,
            hypercalls: 0,
            applied: 0,
        }
    }

    /// Queue a raw request, flushing first if the queue is full.
    pub fn queue(&mut self, hv: &(impl PtUpdate + ?Sized), req: MmuUpdate) -> Result<(), MmError> {
        if self.len == BATCH_CAPACITY {
            self.flush(hv)?;
        }
        self.reqs[self.len] = req;
        self.len += 1;
        Ok(())
    }

    /// Queue a checked write of entry `idx` of the table in frame `table`.
    pub fn set_entry(
        &mut self,
        hv: &(impl PtUpdate + ?Sized),
        table: Mfn,
        idx: usize,
        pte: Pte,
    ) -> Result<(), MmError> {
        self.set_at(hv, entry_maddr(table, idx), pte)
    }

    /// Queue a checked write of the entry at machine address `at`.
    pub fn set_at(
        &mut self,
        hv: &(impl PtUpdate + ?Sized),
        at: Maddr,
        pte: Pte,
    ) -> Result<(), MmError> {
        self.queue(hv, normal_update(at, pte))
    }

    /// Queue an M2P update: machine frame `mfn` now backs guest frame `pfn`.
    pub fn set_m2p(
        &mut self,
        hv: &(impl PtUpdate + ?Sized),
        mfn: Mfn,
        pfn: Pfn,
    ) -> Result<(), MmError> {
        self.queue(
            hv,
            MmuUpdate {
                ptr: (mfn.0 << abi::types::PAGE_SHIFT) | MMU_MACHPHYS_UPDATE,
                val: pfn.0,
            },
        )
    }

    /// The requests not sent yet.
    pub fn pending(&self) -> &[MmuUpdate] {
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
            .find(|r| r.ptr == at.0 | MMU_NORMAL_PT_UPDATE)
            .map(|r| r.val)
    }

    /// `(hypercalls made, requests applied)` so far.
    pub fn stats(&self) -> (usize, usize) {
        (self.hypercalls, self.applied)
    }

    /// Send everything queued; returns how many were applied. On a refusal the rest of the queue is
    /// dropped and the refused entry is reported.
    pub fn flush(&mut self, hv: &(impl PtUpdate + ?Sized)) -> Result<usize, MmError> {
        let len = self.len;
        if len == 0 {
            return Ok(0);
        }
        self.len = 0;
        self.hypercalls += 1;
        let (done, r) = hv.mmu_update(&self.reqs[..len]);
        self.applied += done.min(len);
        match r {
            Ok(()) if done == len => Ok(len),
            Ok(()) => Err(report(MmError::Internal(
                "mmu_update succeeded but applied fewer entries than sent",
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

/// A `MMU_NORMAL_PT_UPDATE` request writing `pte` at machine address `at`.
pub const fn normal_update(at: Maddr, pte: Pte) -> MmuUpdate {
    MmuUpdate {
        ptr: at.0 | MMU_NORMAL_PT_UPDATE,
        val: pte.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;

    /// Applies requests to a map and refuses any value with bit 62 set, like the hypervisor stops at a
    /// bad entry.
    #[derive(Default)]
    struct Model {
        calls: RefCell<Vec<Vec<MmuUpdate>>>,
        mem: RefCell<std::collections::BTreeMap<u64, u64>>,
    }

    impl PtUpdate for Model {
        fn mmu_update(&self, reqs: &[MmuUpdate]) -> (usize, Result<(), Errno>) {
            self.calls.borrow_mut().push(reqs.to_vec());
            for (i, r) in reqs.iter().enumerate() {
                if r.val & (1 << 62) != 0 {
                    return (i, Err(Errno::EINVAL));
                }
                self.mem.borrow_mut().insert(r.ptr, r.val);
            }
            (reqs.len(), Ok(()))
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
        assert_eq!(b.pending()[2].ptr, 0x1001);
        assert_eq!(b.pending()[2].val, 9);
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
                entry: MmuUpdate {
                    ptr: 0x2020,
                    val: 1 << 62
                },
                errno: Errno::EINVAL
            }
        );
        assert!(b.is_empty(), "the rest is dropped");
        let mem = m.mem.borrow();
        assert_eq!(mem.len(), 4, "entries 0..4 applied, 5..8 not");
        assert_eq!(mem[&0x2018], 103);
    }
}
