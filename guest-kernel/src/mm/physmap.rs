//! The physmap: every guest pfn mapped at [`PHYSMAP_BASE`](super::PHYSMAP_BASE) + pfn × 4 KiB, so the
//! kernel can reach any of its frames (zero a new page table, read any table, copy pages).
//!
//! Shape: one L3 (linked at L4 slot [`PHYSMAP_SLOT`](super::PHYSMAP_SLOT)), one L2, and one L1 per 512 pfns;
//! up to [`MAX_PFNS`](super::MAX_PFNS) pfns (1 GiB). Leaves are writable and no-execute, except frames that
//! are page tables (the bootstrap tables, the physmap's own tables, later every address space's tables),
//! which are mapped read-only: the hypervisor refuses a writable mapping of a page table. A pfn with no
//! machine frame behind it (given back with `XENMEM_decrease_reservation`) has no entry.
//!
//! This module computes the layout and the entries; `kernel.rs` builds it at boot with hypercalls.

use abi::types::{Mfn, Pfn};

use super::MAX_PFNS;
use super::pte::{ENTRIES, INVALID_MFN, Pte, PteFlags};

/// Flags of an entry linking a kernel table into its parent (permissions are decided at the leaves).
pub const KERNEL_TABLE_FLAGS: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::ACCESSED);

/// The physmap's size in pages and tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysmapLayout {
    /// Pfns mapped: `0..pages`.
    pub pages: usize,
    /// L1 tables (512 pfns each).
    pub l1s: usize,
}

impl PhysmapLayout {
    /// The layout for a domain of `nr_pages` pages (capped to [`MAX_PFNS`]).
    pub const fn new(nr_pages: usize) -> PhysmapLayout {
        let pages = if nr_pages < MAX_PFNS {
            nr_pages
        } else {
            MAX_PFNS
        };
        PhysmapLayout {
            pages,
            l1s: pages.div_ceil(ENTRIES),
        }
    }

    /// Every table: the L3, the L2 and the L1s.
    pub const fn tables(&self) -> usize {
        2 + self.l1s
    }
}

/// The flags of the physmap leaf for a frame: writable unless it is a page table.
pub const fn leaf_flags(is_table: bool) -> PteFlags {
    let base = PteFlags::PRESENT
        .union(PteFlags::ACCESSED)
        .union(PteFlags::NO_EXECUTE);
    if is_table {
        base
    } else {
        base.union(PteFlags::WRITABLE).union(PteFlags::DIRTY)
    }
}

/// The physmap leaf for machine frame `mfn` (`None` or invalid: no entry).
pub fn leaf(mfn: Option<Mfn>, is_table: bool) -> Pte {
    match mfn {
        Some(m) if m.0 != INVALID_MFN => Pte::new(m, leaf_flags(is_table)),
        _ => Pte::EMPTY,
    }
}

/// Where the physmap entry of `pfn` is: (index of its L1 in the L2, index in that L1).
pub const fn slot(pfn: Pfn) -> (usize, usize) {
    ((pfn.0 as usize) / ENTRIES, (pfn.0 as usize) % ENTRIES)
}

/// The entries of L1 number `j`: pfns `512 j .. 512 j + 512` below `layout.pages`.
pub fn compose_l1(
    layout: &PhysmapLayout,
    j: usize,
    p2m: impl Fn(Pfn) -> Option<Mfn>,
    is_table: impl Fn(Pfn) -> bool,
    out: &mut [u64; ENTRIES],
) {
    for (i, e) in out.iter_mut().enumerate() {
        let pfn = j * ENTRIES + i;
        *e = if pfn < layout.pages {
            let p = Pfn(pfn as u64);
            leaf(p2m(p), is_table(p)).0
        } else {
            0
        };
    }
}

/// The entries of the L2: one per L1.
pub fn compose_l2(layout: &PhysmapLayout, l1: impl Fn(usize) -> Mfn, out: &mut [u64; ENTRIES]) {
    for (j, e) in out.iter_mut().enumerate() {
        *e = if j < layout.l1s {
            Pte::new(l1(j), KERNEL_TABLE_FLAGS).0
        } else {
            0
        };
    }
}

/// The entries of the L3: the L2 in slot 0.
pub fn compose_l3(l2: Mfn, out: &mut [u64; ENTRIES]) {
    out.fill(0);
    out[0] = Pte::new(l2, KERNEL_TABLE_FLAGS).0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(
            PhysmapLayout::new(4096),
            PhysmapLayout {
                pages: 4096,
                l1s: 8
            }
        );
        assert_eq!(PhysmapLayout::new(4097).l1s, 9);
        assert_eq!(PhysmapLayout::new(16384).tables(), 34);
        assert_eq!(PhysmapLayout::new(1 << 30).pages, MAX_PFNS);
        assert_eq!(PhysmapLayout::new(1 << 30).l1s, 512);
        assert_eq!(slot(Pfn(1025)), (2, 1));
    }

    #[test]
    fn entries() {
        let l = PhysmapLayout::new(600);
        let mut t = [0u64; ENTRIES];
        let p2m = |p: Pfn| match p.0 {
            7 => None,
            8 => Some(Mfn(INVALID_MFN)),
            n => Some(Mfn(0x1000 + n)),
        };
        compose_l1(&l, 0, p2m, |p| p.0 == 3, &mut t);
        assert_eq!(t[0], 0x8000_0000_0100_0063, "P|RW|A|D|NX");
        assert_eq!(t[3], 0x8000_0000_0100_3021, "a page table: read-only");
        assert_eq!((t[7], t[8]), (0, 0), "no frame, no entry");
        compose_l1(&l, 1, p2m, |_| false, &mut t);
        assert_eq!(Pte(t[87]).mfn(), Mfn(0x1000 + 599));
        assert_eq!(t[88], 0, "beyond the domain");
        compose_l2(&l, |j| Mfn(0x50 + j as u64), &mut t);
        assert_eq!(&t[..3], &[0x50023, 0x51023, 0]);
        compose_l3(Mfn(0x77), &mut t);
        assert_eq!((t[0], t[1]), (0x77023, 0));
    }
}
