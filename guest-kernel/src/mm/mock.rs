//! A model of the hypervisor's side of memory management for host tests: frames with types and counts as in
//! Xen's validation model (a writable mapping and a page-table type exclude each other; a table is validated
//! when pinned, installed as base or linked into a validated parent, and devalidated when its last reference
//! goes), a physmap whose entries are writable unless the frame is a table, and a page allocator.
//!
//! Machine frame = pfn + [`MFN_OFFSET`], so code that confuses the two fails here.

use core::cell::{Cell, RefCell};

use abi::errno::Errno;
use abi::types::{Maddr, Mfn, Pfn};

use super::MmEnv;
use super::frame_alloc::FrameAllocator;
use super::physmap::leaf_flags;
use super::pte::{ENTRIES, Level, Pte, PteFlags};
use crate::platform::{Flush, Mmu, PtTarget, PtWrite};

pub const MFN_OFFSET: u64 = 0x1000;
/// Machine address of the (model's) physmap L1 entries: entry of pfn `p` at `PHYSMAP_L1 + 8 p`.
const PHYSMAP_L1: u64 = 0x8000_0000;
/// Frames of the kernel's own tables: the L4 and two L3s (slots 273 and 511).
const KERNEL_L4: usize = 0;
const FIRST_FREE: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    None,
    Writable,
    Table(Level),
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    ty: Ty,
    count: u32,
    pinned: bool,
}

pub struct MockHv {
    frames: RefCell<Vec<[u64; ENTRIES]>>,
    info: RefCell<Vec<Frame>>,
    physmap: RefCell<Vec<u64>>,
    alloc: RefCell<FrameAllocator<Vec<u64>>>,
    base: Cell<Mfn>,
    refuse_pins: Cell<bool>,
    tlb_flushes: Cell<usize>,
}

fn mfn(pfn: usize) -> Mfn {
    Mfn(pfn as u64 + MFN_OFFSET)
}

impl MockHv {
    /// A domain of `n` pages: the kernel's L4 and L3s validated, every other frame free and mapped
    /// writable in the physmap.
    pub fn new(n: usize) -> MockHv {
        let mut alloc = FrameAllocator::new(vec![0u64; n.div_ceil(64)]);
        alloc.reset(n);
        alloc.add_free(FIRST_FREE, n);
        let hv = MockHv {
            frames: RefCell::new(vec![[0u64; ENTRIES]; n]),
            info: RefCell::new(vec![
                Frame {
                    ty: Ty::Writable,
                    count: 1,
                    pinned: false
                };
                n
            ]),
            physmap: RefCell::new(
                (0..n)
                    .map(|p| Pte::new(mfn(p), leaf_flags(p < FIRST_FREE)).0)
                    .collect(),
            ),
            alloc: RefCell::new(alloc),
            base: Cell::new(mfn(KERNEL_L4)),
            refuse_pins: Cell::new(false),
            tlb_flushes: Cell::new(0),
        };
        {
            let mut f = hv.frames.borrow_mut();
            let link = PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::ACCESSED;
            f[KERNEL_L4][273] = Pte::new(mfn(1), link).0;
            f[KERNEL_L4][511] = Pte::new(mfn(2), link).0;
            let mut info = hv.info.borrow_mut();
            // Pinned (as the kernel does at boot) and the current base.
            info[KERNEL_L4] = Frame {
                ty: Ty::Table(Level::L4),
                count: 2,
                pinned: true,
            };
            for p in [1, 2] {
                info[p] = Frame {
                    ty: Ty::Table(Level::L3),
                    count: 1,
                    pinned: false,
                };
            }
        }
        hv
    }

    pub fn free_count(&self) -> usize {
        self.alloc.borrow().free_count()
    }

    pub fn is_pinned(&self, m: Mfn) -> bool {
        self.info.borrow()[self.pfn(m)].pinned
    }

    pub fn refuse_pins(&self, on: bool) {
        self.refuse_pins.set(on);
    }

    pub fn tlb_flushes(&self) -> usize {
        self.tlb_flushes.get()
    }

    fn pfn(&self, m: Mfn) -> usize {
        (m.0 - MFN_OFFSET) as usize
    }

    /// Walk the tables from `root`: the page mapped at `va` and whether it is writable.
    pub fn translate(&self, root: Mfn, va: u64) -> Option<(Pfn, bool)> {
        let frames = self.frames.borrow();
        let mut table = self.pfn(root);
        let mut writable = true;
        for level in [Level::L4, Level::L3, Level::L2, Level::L1] {
            let e = Pte(frames[table][super::pte::index(va, level)]);
            if !e.is_present() {
                return None;
            }
            writable &= e.flags().contains(PteFlags::WRITABLE);
            table = self.pfn(e.mfn());
        }
        Some((Pfn(table as u64), writable))
    }

    /// Every free frame is back to its start state: mapped writable in the physmap, no table type.
    pub fn check_no_types_left(&self) {
        let info = self.info.borrow();
        let alloc = self.alloc.borrow();
        for (p, i) in info.iter().enumerate().skip(FIRST_FREE) {
            if alloc.is_free(Pfn(p as u64)) {
                assert_eq!(
                    (i.ty, i.count, i.pinned),
                    (Ty::Writable, 1, false),
                    "free pfn {p}"
                );
                assert!(
                    Pte(self.physmap.borrow()[p])
                        .flags()
                        .contains(PteFlags::WRITABLE)
                );
            }
        }
    }

    fn get_writable(&self, p: usize) -> Result<(), Errno> {
        let mut info = self.info.borrow_mut();
        let f = &mut info[p];
        match f.ty {
            Ty::Table(_) if f.count > 0 => Err(Errno::EBUSY),
            _ => {
                f.ty = Ty::Writable;
                f.count += 1;
                Ok(())
            }
        }
    }

    fn put_writable(&self, p: usize) {
        let mut info = self.info.borrow_mut();
        let f = &mut info[p];
        assert_eq!(f.ty, Ty::Writable, "pfn {p}");
        f.count -= 1;
        if f.count == 0 {
            f.ty = Ty::None;
        }
    }

    /// Take a reference to an entry's target on behalf of a table of `level`.
    fn get_target(&self, level: Level, e: Pte) -> Result<(), Errno> {
        if !e.is_present() {
            return Ok(());
        }
        let p = self.pfn(e.mfn());
        match level.below() {
            None if e.flags().contains(PteFlags::WRITABLE) => self.get_writable(p),
            None => Ok(()),
            Some(below) => self.get_table(p, below),
        }
    }

    fn put_target(&self, level: Level, e: Pte) {
        if !e.is_present() {
            return;
        }
        let p = self.pfn(e.mfn());
        match level.below() {
            None if e.flags().contains(PteFlags::WRITABLE) => self.put_writable(p),
            None => {}
            Some(_) => self.put_table(p),
        }
    }

    fn get_table(&self, p: usize, level: Level) -> Result<(), Errno> {
        let f = self.info.borrow()[p];
        match f.ty {
            Ty::Table(l) if l == level && f.count > 0 => {
                self.info.borrow_mut()[p].count += 1;
                return Ok(());
            }
            Ty::None => {}
            _ if f.count == 0 => {}
            _ => return Err(Errno::EBUSY),
        }
        let entries = self.frames.borrow()[p];
        for (i, &e) in entries.iter().enumerate() {
            if level == Level::L4 && (256..=271).contains(&i) {
                continue;
            }
            if let Err(err) = self.get_target(level, Pte(e)) {
                for &done in &entries[..i] {
                    self.put_target(level, Pte(done));
                }
                return Err(err);
            }
        }
        self.info.borrow_mut()[p] = Frame {
            ty: Ty::Table(level),
            count: 1,
            pinned: false,
        };
        Ok(())
    }

    fn put_table(&self, p: usize) {
        let f = self.info.borrow()[p];
        let Ty::Table(level) = f.ty else {
            panic!("put_table of pfn {p} of type {:?}", f.ty)
        };
        if f.count > 1 {
            self.info.borrow_mut()[p].count -= 1;
            return;
        }
        let entries = self.frames.borrow()[p];
        for (i, &e) in entries.iter().enumerate() {
            if !(level == Level::L4 && (256..=271).contains(&i)) {
                self.put_target(level, Pte(e));
            }
        }
        self.info.borrow_mut()[p] = Frame {
            ty: Ty::None,
            count: 0,
            pinned: false,
        };
    }

    fn update(&self, r: &PtWrite) -> Result<(), Errno> {
        let at = match r.target() {
            PtTarget::Entry(at) => at.0,
            PtTarget::FrameOwner(_) | PtTarget::Other(_) => return Err(Errno::ENOSYS),
        };
        let new = Pte(r.value());
        if (PHYSMAP_L1..PHYSMAP_L1 + 8 * self.physmap.borrow().len() as u64).contains(&at) {
            let p = ((at - PHYSMAP_L1) / 8) as usize;
            self.get_target(Level::L1, new)?;
            let old = Pte(self.physmap.borrow()[p]);
            self.put_target(Level::L1, old);
            self.physmap.borrow_mut()[p] = new.0;
            return Ok(());
        }
        let p = self.pfn(Mfn(at >> 12));
        let idx = ((at & 0xfff) / 8) as usize;
        let f = self.info.borrow()[p];
        let Ty::Table(level) = f.ty else {
            return Err(Errno::EINVAL);
        };
        if level == Level::L4 && (256..=271).contains(&idx) {
            return Err(Errno::EINVAL);
        }
        self.get_target(level, new)?;
        let old = Pte(self.frames.borrow()[p][idx]);
        self.put_target(level, old);
        self.frames.borrow_mut()[p][idx] = new.0;
        Ok(())
    }

    fn physmap_writable(&self, pfn: Pfn) -> bool {
        Pte(self.physmap.borrow()[pfn.0 as usize])
            .flags()
            .contains(PteFlags::WRITABLE)
    }
}

/// The platform's page-table operations, as the hypervisor's validation model does them.
impl Mmu for MockHv {
    fn write_ptes(&self, reqs: &[PtWrite]) -> (usize, Result<(), Errno>) {
        for (i, r) in reqs.iter().enumerate() {
            if let Err(e) = self.update(r) {
                return (i, Err(e));
            }
        }
        (reqs.len(), Ok(()))
    }

    fn pin_table(&self, level: Level, m: Mfn) -> Result<(), Errno> {
        if self.refuse_pins.get() {
            return Err(Errno::EPERM);
        }
        let p = self.pfn(m);
        if self.info.borrow()[p].pinned {
            return Err(Errno::EINVAL);
        }
        self.get_table(p, level)?;
        self.info.borrow_mut()[p].pinned = true;
        Ok(())
    }

    fn unpin_table(&self, m: Mfn) -> Result<(), Errno> {
        let p = self.pfn(m);
        if !self.info.borrow()[p].pinned {
            return Err(Errno::EINVAL);
        }
        self.info.borrow_mut()[p].pinned = false;
        self.put_table(p);
        Ok(())
    }

    fn switch_address_space(&self, m: Mfn) -> Result<(), Errno> {
        self.get_table(self.pfn(m), Level::L4)?;
        self.put_table(self.pfn(self.base.get()));
        self.base.set(m);
        Ok(())
    }

    fn flush_tlb(&self, _what: Flush) -> Result<(), Errno> {
        self.tlb_flushes.set(self.tlb_flushes.get() + 1);
        Ok(())
    }
}

impl MmEnv for MockHv {
    fn current_base(&self) -> Mfn {
        self.base.get()
    }

    fn kernel_base(&self) -> (Pfn, Mfn) {
        (Pfn(KERNEL_L4 as u64), mfn(KERNEL_L4))
    }

    fn pfn_to_mfn(&self, pfn: Pfn) -> Mfn {
        mfn(pfn.0 as usize)
    }

    fn physmap_entry(&self, pfn: Pfn) -> Maddr {
        Maddr(PHYSMAP_L1 + pfn.0 * 8)
    }

    fn read_entry(&self, pfn: Pfn, idx: usize) -> u64 {
        self.frames.borrow()[pfn.0 as usize][idx]
    }

    fn write_entry(&self, pfn: Pfn, idx: usize, val: u64) {
        assert!(self.physmap_writable(pfn), "write to read-only pfn {pfn:?}");
        self.frames.borrow_mut()[pfn.0 as usize][idx] = val;
    }

    fn zero_frame(&self, pfn: Pfn) {
        assert!(self.physmap_writable(pfn), "zeroing read-only pfn {pfn:?}");
        self.frames.borrow_mut()[pfn.0 as usize] = [0; ENTRIES];
    }

    fn alloc_page(&self) -> Option<Pfn> {
        self.alloc.borrow_mut().alloc()
    }

    fn free_page(&self, pfn: Pfn) {
        self.alloc.borrow_mut().free(pfn).expect("mock free");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::Batch;

    /// The model through the platform's `Mmu` trait object, as the kernel holds its platform.
    #[test]
    fn the_model_is_a_platform_mmu() {
        let hv = MockHv::new(64);
        let mmu: &dyn Mmu = &hv;
        let p = hv.alloc_page().unwrap();
        hv.zero_frame(p);
        let m = hv.pfn_to_mfn(p);

        // A writable frame is not a table: pinning it is refused until its physmap mapping is read-only.
        assert_eq!(mmu.pin_table(Level::L1, m), Err(Errno::EBUSY));
        assert!(!hv.is_pinned(m));
        let ro = PtWrite::entry(hv.physmap_entry(p), Pte::new(m, leaf_flags(true)));
        assert_eq!(mmu.write_ptes(&[ro]), (1, Ok(())));
        assert_eq!(mmu.pin_table(Level::L1, m), Ok(()));
        assert!(hv.is_pinned(m));
        assert_eq!(
            mmu.pin_table(Level::L1, m),
            Err(Errno::EINVAL),
            "pinned twice"
        );
        assert_eq!(mmu.unpin_table(m), Ok(()));
        assert_eq!(mmu.unpin_table(m), Err(Errno::EINVAL), "unpinned twice");

        // Writes stop at the first refusal; a frame-owner record is not something the model does.
        let bad = [ro, PtWrite::frame_owner(m, p), ro];
        assert_eq!(mmu.write_ptes(&bad), (1, Err(Errno::ENOSYS)));

        let flushes = hv.tlb_flushes();
        assert_eq!(mmu.flush_tlb(Flush::All), Ok(()));
        assert_eq!(hv.tlb_flushes(), flushes + 1);

        // Give the frame back as it came.
        let mut b = Batch::new();
        b.set_at(mmu, hv.physmap_entry(p), Pte::new(m, leaf_flags(false)))
            .unwrap();
        b.flush(mmu).unwrap();
        hv.free_page(p);
        hv.check_no_types_left();
    }
}
