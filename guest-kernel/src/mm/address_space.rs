//! Address spaces: a fresh L4 whose kernel half is the kernel's (entries of slots 272..=511 copied, so the
//! kernel's L3s are shared), a user half of its own, built and torn down with the page-table recipe of
//! [`super`] through batched hypercalls.
//!
//! `map` takes ownership of the page it maps; `unmap` hands it back; `destroy` frees every page still
//! mapped and every table. Updates are queued in the address space's [`Batch`] and flushed before they can
//! matter: on `flush`, `switch_to`, `unmap` (the page may be reused at once) and `destroy`, and whenever
//! the queue is full. A mapping changed or removed while the address space is current is followed by a TLB
//! flush at the next `flush`.

use alloc::collections::BTreeMap;

use abi::types::{Mfn, PAGE_SIZE, Pfn};

use super::batch::Batch;
use super::fault::{MmError, report};
use super::physmap::leaf_flags;
use super::pte::{Level, Pte, PteFlags, index};
use super::{KERNEL_SLOTS, MmEnv, USER_END};
use crate::platform::Flush;

bitflags::bitflags! {
    /// Access rights of a user mapping (reads are always allowed).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Prot: u8 {
        /// Writes allowed.
        const WRITE = 1 << 0;
        /// Instruction fetches allowed.
        const EXEC = 1 << 1;
    }
}

/// Flags of an entry linking a user table into its parent (permissions are decided at the leaves).
const USER_TABLE_FLAGS: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::USER)
    .union(PteFlags::ACCESSED);

/// The leaf flags of a user mapping with `prot`.
pub fn user_leaf_flags(prot: Prot) -> PteFlags {
    let mut f = PteFlags::PRESENT | PteFlags::USER | PteFlags::ACCESSED;
    if prot.contains(Prot::WRITE) {
        f |= PteFlags::WRITABLE | PteFlags::DIRTY;
    }
    if !prot.contains(Prot::EXEC) {
        f |= PteFlags::NO_EXECUTE;
    }
    f
}

/// The key of the table of `level` that covers `va`.
fn table_key(level: Level, va: u64) -> (u8, u64) {
    let shift = Level::L4.entry_shift().min(level.entry_shift() + 9);
    (level as u8, va >> shift)
}

/// An address space of its own: L4, user-half tables and user pages.
pub struct AddressSpace {
    l4: Pfn,
    l4_mfn: Mfn,
    /// Every table below the L4, by (level, `va >> bits covered by the table`).
    tables: BTreeMap<(u8, u64), Pfn>,
    /// Every mapped user page, by virtual address.
    pages: BTreeMap<u64, (Pfn, Prot)>,
    batch: Batch,
    /// A mapping was changed or removed since the last TLB flush.
    stale_tlb: bool,
}

impl AddressSpace {
    /// A new address space: a zeroed L4 with the kernel half copied, made read-only in the physmap and
    /// pinned as an L4 (the hypervisor validates it and fills its own slots).
    pub fn new(env: &impl MmEnv) -> Result<AddressSpace, MmError> {
        let l4 = env
            .alloc_page()
            .ok_or_else(|| report(MmError::OutOfMemory))?;
        env.zero_frame(l4);
        let (kernel, _) = env.kernel_base();
        for slot in KERNEL_SLOTS {
            let e = env.read_entry(kernel, slot);
            if e != 0 {
                env.write_entry(l4, slot, e);
            }
        }
        let l4_mfn = env.pfn_to_mfn(l4);
        let mut batch = Batch::new();
        let ro = batch
            .set_at(
                env,
                env.physmap_entry(l4),
                Pte::new(l4_mfn, leaf_flags(true)),
            )
            .and_then(|()| batch.flush(env));
        if let Err(e) = ro {
            env.free_page(l4);
            return Err(e);
        }
        if let Err(errno) = env.pin_table(Level::L4, l4_mfn) {
            let e = report(MmError::Hypercall {
                op: "pin L4",
                arg: l4_mfn.0,
                errno,
            });
            // Not a table: make it writable again and give it back.
            let rw = batch
                .set_at(
                    env,
                    env.physmap_entry(l4),
                    Pte::new(l4_mfn, leaf_flags(false)),
                )
                .and_then(|()| batch.flush(env));
            if rw.is_ok() {
                env.free_page(l4);
            }
            return Err(e);
        }
        Ok(AddressSpace {
            l4,
            l4_mfn,
            tables: BTreeMap::new(),
            pages: BTreeMap::new(),
            batch,
            stale_tlb: false,
        })
    }

    /// The L4's machine frame (what `NEW_BASEPTR` takes).
    pub fn root(&self) -> Mfn {
        self.l4_mfn
    }

    /// Look the L4's machine frame up again (after a restore moved every frame).
    pub fn refresh_root(&mut self, env: &impl MmEnv) {
        self.l4_mfn = env.pfn_to_mfn(self.l4);
    }

    /// The L4's guest frame.
    pub fn root_pfn(&self) -> Pfn {
        self.l4
    }

    /// Number of tables, the L4 included.
    pub fn table_count(&self) -> usize {
        1 + self.tables.len()
    }

    /// Number of mapped user pages.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The page mapped at `va`, if any.
    pub fn lookup(&self, va: u64) -> Option<(Pfn, Prot)> {
        self.pages.get(&va).copied()
    }

    /// The (pfn, machine frame) of the table of `level` covering `va`, if it exists.
    pub fn table(&self, env: &impl MmEnv, level: Level, va: u64) -> Option<(Pfn, Mfn)> {
        if level == Level::L4 {
            return Some((self.l4, self.l4_mfn));
        }
        let pfn = *self.tables.get(&table_key(level, va))?;
        Some((pfn, env.pfn_to_mfn(pfn)))
    }

    fn check_user_va(va: u64) -> Result<(), MmError> {
        if va >= USER_END || !va.is_multiple_of(PAGE_SIZE) {
            return Err(report(MmError::BadAddress(va)));
        }
        Ok(())
    }

    /// The L1 covering `va` (frame and machine frame), creating missing tables on the way.
    fn l1_for(&mut self, env: &impl MmEnv, va: u64) -> Result<Mfn, MmError> {
        let mut parent = self.l4_mfn;
        let mut level = Level::L4;
        while let Some(below) = level.below() {
            let key = table_key(below, va);
            parent = match self.tables.get(&key) {
                Some(&pfn) => env.pfn_to_mfn(pfn),
                None => {
                    let pfn = env
                        .alloc_page()
                        .ok_or_else(|| report(MmError::OutOfMemory))?;
                    env.zero_frame(pfn);
                    let mfn = env.pfn_to_mfn(pfn);
                    // Recorded before the updates are queued, so destroy() finds it whatever happens next.
                    self.tables.insert(key, pfn);
                    self.batch.set_at(
                        env,
                        env.physmap_entry(pfn),
                        Pte::new(mfn, leaf_flags(true)),
                    )?;
                    self.batch.set_entry(
                        env,
                        parent,
                        index(va, level),
                        Pte::new(mfn, USER_TABLE_FLAGS),
                    )?;
                    mfn
                }
            };
            level = below;
        }
        Ok(parent)
    }

    /// Map `pfn` at user address `va` with `prot`. The address space owns the page from now on.
    pub fn map(&mut self, env: &impl MmEnv, va: u64, pfn: Pfn, prot: Prot) -> Result<(), MmError> {
        Self::check_user_va(va)?;
        if self.pages.contains_key(&va) {
            return Err(report(MmError::AlreadyMapped(va)));
        }
        let l1 = self.l1_for(env, va)?;
        self.pages.insert(va, (pfn, prot));
        self.batch.set_entry(
            env,
            l1,
            index(va, Level::L1),
            Pte::new(env.pfn_to_mfn(pfn), user_leaf_flags(prot)),
        )
    }

    /// Allocate a zeroed page and map it at `va`; returns its pfn.
    pub fn map_zeroed(&mut self, env: &impl MmEnv, va: u64, prot: Prot) -> Result<Pfn, MmError> {
        Self::check_user_va(va)?;
        let pfn = env
            .alloc_page()
            .ok_or_else(|| report(MmError::OutOfMemory))?;
        env.zero_frame(pfn);
        match self.map(env, va, pfn, prot) {
            Ok(()) => Ok(pfn),
            Err(e) => {
                if !self.pages.contains_key(&va) {
                    env.free_page(pfn);
                }
                Err(e)
            }
        }
    }

    /// Change the rights of the mapping at `va`.
    pub fn protect(&mut self, env: &impl MmEnv, va: u64, prot: Prot) -> Result<(), MmError> {
        Self::check_user_va(va)?;
        let Some(entry) = self.pages.get_mut(&va) else {
            return Err(report(MmError::NotMapped(va)));
        };
        entry.1 = prot;
        let pfn = entry.0;
        let (_, l1) = self
            .table(env, Level::L1, va)
            .ok_or_else(|| report(MmError::Internal("mapped page without an L1")))?;
        self.stale_tlb = true;
        self.batch.set_entry(
            env,
            l1,
            index(va, Level::L1),
            Pte::new(env.pfn_to_mfn(pfn), user_leaf_flags(prot)),
        )
    }

    /// Remove the mapping at `va` and return its page to the caller (the removal is applied, and the TLB
    /// flushed if this address space is current, before this returns, so the page may be reused at once).
    pub fn unmap(&mut self, env: &impl MmEnv, va: u64) -> Result<Pfn, MmError> {
        Self::check_user_va(va)?;
        let Some(&(pfn, _)) = self.pages.get(&va) else {
            return Err(report(MmError::NotMapped(va)));
        };
        let (_, l1) = self
            .table(env, Level::L1, va)
            .ok_or_else(|| report(MmError::Internal("mapped page without an L1")))?;
        self.batch
            .set_entry(env, l1, index(va, Level::L1), Pte::EMPTY)?;
        self.stale_tlb = true;
        self.flush(env)?;
        self.pages.remove(&va);
        Ok(pfn)
    }

    /// Send the queued updates; flush the TLB if this address space is current and a mapping changed.
    pub fn flush(&mut self, env: &impl MmEnv) -> Result<(), MmError> {
        self.batch.flush(env)?;
        if self.stale_tlb && env.current_base() == self.l4_mfn {
            env.flush_tlb(Flush::All).map_err(|errno| {
                report(MmError::Hypercall {
                    op: "TLB flush",
                    arg: 0,
                    errno,
                })
            })?;
        }
        self.stale_tlb = false;
        Ok(())
    }

    /// `(hypercalls made, updates applied)` by this address space's batch.
    pub fn batch_stats(&self) -> (usize, usize) {
        self.batch.stats()
    }

    /// Make this the current address space (`NEW_BASEPTR`), after sending every queued update.
    pub fn switch_to(&mut self, env: &impl MmEnv) -> Result<(), MmError> {
        self.flush(env)?;
        self.stale_tlb = false;
        env.switch_address_space(self.l4_mfn).map_err(|errno| {
            report(MmError::Hypercall {
                op: "NEW_BASEPTR",
                arg: self.l4_mfn.0,
                errno,
            })
        })
    }

    /// Tear down: switch to the kernel's address space if this one is current, unpin the L4 (the
    /// hypervisor drops the types of all its tables), make every table frame writable again in the physmap,
    /// and free every table and every mapped page. If a step fails the error is reported and the frames it
    /// concerns are kept out of the allocator (leaked rather than reused while still typed).
    pub fn destroy(mut self, env: &impl MmEnv) -> Result<(), MmError> {
        let mut first_err = self.batch.flush(env).err();
        if env.current_base() == self.l4_mfn {
            let (_, kernel) = env.kernel_base();
            if let Err(errno) = env.switch_address_space(kernel) {
                keep(
                    &mut first_err,
                    report(MmError::Hypercall {
                        op: "NEW_BASEPTR (back to the kernel)",
                        arg: kernel.0,
                        errno,
                    }),
                );
            }
        }
        if let Err(errno) = env.unpin_table(self.l4_mfn) {
            let e = report(MmError::Hypercall {
                op: "unpin L4",
                arg: self.l4_mfn.0,
                errno,
            });
            // Still validated: every frame stays typed or referenced. Leak them all.
            return Err(first_err.unwrap_or(e));
        }
        let tables = core::iter::once(self.l4).chain(self.tables.values().copied());
        let mut writable = true;
        for pfn in tables.clone() {
            let pte = Pte::new(env.pfn_to_mfn(pfn), leaf_flags(false));
            if let Err(e) = self.batch.set_at(env, env.physmap_entry(pfn), pte) {
                writable = false;
                keep(&mut first_err, e);
            }
        }
        if let Err(e) = self.batch.flush(env) {
            writable = false;
            keep(&mut first_err, e);
        }
        if writable {
            for pfn in tables {
                env.free_page(pfn);
            }
        }
        // The pages lost their mappings when the tables lost their types.
        for (pfn, _) in self.pages.values() {
            env.free_page(*pfn);
        }
        if let Err(errno) = env.flush_tlb(Flush::All) {
            keep(
                &mut first_err,
                report(MmError::Hypercall {
                    op: "TLB flush",
                    arg: 0,
                    errno,
                }),
            );
        }
        match first_err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// Remember the first error of a sequence that carries on after errors.
fn keep(first: &mut Option<MmError>, e: MmError) {
    first.get_or_insert(e);
}

#[cfg(test)]
mod tests {
    use super::super::mock::MockHv;
    use super::*;

    #[test]
    fn leaf_flags_follow_prot() {
        assert_eq!(
            user_leaf_flags(Prot::empty()),
            PteFlags::PRESENT | PteFlags::USER | PteFlags::ACCESSED | PteFlags::NO_EXECUTE
        );
        assert!(user_leaf_flags(Prot::WRITE).contains(PteFlags::WRITABLE));
        assert!(!user_leaf_flags(Prot::EXEC).contains(PteFlags::NO_EXECUTE));
        assert_eq!(table_key(Level::L1, 0x40_3000), (1, 2));
        assert_eq!(table_key(Level::L2, 0x4000_0000), (2, 1));
        assert_eq!(table_key(Level::L3, 0x80_0000_0000), (3, 1));
    }

    #[test]
    fn create_map_switch_destroy_leaves_nothing_behind() {
        let hv = MockHv::new(256);
        let free = hv.free_count();
        let mut a = AddressSpace::new(&hv).unwrap();
        assert!(hv.is_pinned(a.root()));
        let p = a.map_zeroed(&hv, 0x40_0000, Prot::WRITE).unwrap();
        a.map_zeroed(&hv, 0x40_1000, Prot::empty()).unwrap();
        a.map_zeroed(&hv, 0x7fff_ffff_f000, Prot::EXEC).unwrap();
        assert_eq!(a.table_count(), 1 + 3 + 3);
        a.switch_to(&hv).unwrap();
        assert_eq!(hv.current_base(), a.root());
        assert_eq!(hv.translate(a.root(), 0x40_0000), Some((p, true)));
        assert_eq!(hv.translate(a.root(), 0x40_1000).map(|t| t.1), Some(false));
        // The kernel half is shared: slot 511 and 273 are the kernel's.
        assert_eq!(hv.read_entry(a.root_pfn(), 511), hv.read_entry(Pfn(0), 511));
        a.destroy(&hv).unwrap();
        assert_eq!(hv.current_base(), hv.kernel_base().1);
        assert_eq!(hv.free_count(), free, "every frame came back");
        hv.check_no_types_left();
    }

    #[test]
    fn protect_and_unmap() {
        let hv = MockHv::new(128);
        let free = hv.free_count();
        let mut a = AddressSpace::new(&hv).unwrap();
        let p = a.map_zeroed(&hv, 0x1000, Prot::WRITE).unwrap();
        a.switch_to(&hv).unwrap();
        a.protect(&hv, 0x1000, Prot::empty()).unwrap();
        a.flush(&hv).unwrap();
        assert_eq!(hv.translate(a.root(), 0x1000), Some((p, false)));
        assert!(
            hv.tlb_flushes() > 0,
            "protect on the current address space flushes"
        );
        assert_eq!(a.unmap(&hv, 0x1000), Ok(p));
        assert_eq!(hv.translate(a.root(), 0x1000), None);
        assert_eq!(a.unmap(&hv, 0x1000), Err(MmError::NotMapped(0x1000)));
        hv.free_page(p);
        assert_eq!(
            a.map(&hv, 0xffff_8880_0000_0000, p, Prot::WRITE),
            Err(MmError::BadAddress(0xffff_8880_0000_0000))
        );
        assert_eq!(
            a.map(&hv, 0x1001, p, Prot::WRITE),
            Err(MmError::BadAddress(0x1001))
        );
        a.destroy(&hv).unwrap();
        assert_eq!(hv.free_count(), free);
        hv.check_no_types_left();
    }

    #[test]
    fn many_pages_span_batches() {
        let hv = MockHv::new(2048);
        let free = hv.free_count();
        let mut a = AddressSpace::new(&hv).unwrap();
        for i in 0..600u64 {
            a.map_zeroed(&hv, 0x20_0000 + i * PAGE_SIZE, Prot::WRITE)
                .unwrap();
        }
        a.flush(&hv).unwrap();
        assert!(a.batch_stats().0 > 1);
        for i in (0..600u64).step_by(7) {
            assert!(hv.translate(a.root(), 0x20_0000 + i * PAGE_SIZE).is_some());
        }
        a.destroy(&hv).unwrap();
        assert_eq!(hv.free_count(), free);
        hv.check_no_types_left();
    }

    #[test]
    fn a_refused_pin_gives_the_frame_back() {
        let hv = MockHv::new(64);
        let free = hv.free_count();
        hv.refuse_pins(true);
        assert!(matches!(
            AddressSpace::new(&hv),
            Err(MmError::Hypercall { op: "pin L4", .. })
        ));
        assert_eq!(hv.free_count(), free);
        hv.refuse_pins(false);
        let a = AddressSpace::new(&hv).unwrap();
        a.destroy(&hv).unwrap();
        assert_eq!(hv.free_count(), free);
    }

    #[test]
    fn churn() {
        let hv = MockHv::new(64);
        let free = hv.free_count();
        for i in 0..200u64 {
            let mut a = AddressSpace::new(&hv).unwrap();
            a.map_zeroed(&hv, (i % 7) << 30, Prot::WRITE).unwrap();
            a.switch_to(&hv).unwrap();
            a.destroy(&hv).unwrap();
        }
        assert_eq!(hv.free_count(), free);
        hv.check_no_types_left();
    }
}
