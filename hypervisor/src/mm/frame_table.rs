//! The frame table: Xen's `struct page_info` array. One [`PageInfo`] per machine frame, indexed by MFN.
//!
//! Each frame has an owner, a total reference count (`refs`) and a *type* with its own count
//! (`type_count`), as in Xen's mm.c: a frame is at any time at most one of "level-N page table" or
//! "mapped writable", and it changes type only while its type count is zero. The counting rules live in
//! [`crate::mm::ptval`]; this module only stores the state and hands frames to and from domains.
//!
//! Invariants kept by `ptval` (and checked by its property test): `type_count == 0` exactly when
//! `ty == PageType::None`; [`PageInfo::VALIDATED`] is set exactly on frames typed as a page table;
//! [`PageInfo::PINNED`] implies a type reference; [`PageInfo::HV_WRITES`] implies a [`PageType::Writable`]
//! type reference (so such a frame can never take a page-table type); only frames with an owner have
//! non-zero counts.

use abi::types::Mfn;

/// Owner value of a frame that belongs to no domain (free, or the hypervisor's own).
pub const NO_OWNER: u16 = u16::MAX;

/// The type of a frame (Xen's `PGT_*` type field). Types are exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageType {
    /// No type: the frame may become anything (its type count is zero).
    None,
    /// A validated level-1 page table.
    L1,
    /// A validated level-2 page table.
    L2,
    /// A validated level-3 page table.
    L3,
    /// A validated level-4 page table (an address-space root).
    L4,
    /// Mapped writable somewhere: may not become a page table while the mappings exist.
    Writable,
}

impl PageType {
    /// The page-table type of `level` (1..=4); [`PageType::None`] for any other level.
    #[inline(always)]
    pub const fn table(level: u32) -> PageType {
        // A table look-up, not a branch per level (this is on the path of every page-table update).
        const TABLES: [PageType; 5] = [
            PageType::None,
            PageType::L1,
            PageType::L2,
            PageType::L3,
            PageType::L4,
        ];
        if level < 5 {
            TABLES[level as usize]
        } else {
            PageType::None
        }
    }

    /// The page-table level of this type, or `None` if it is not a page-table type.
    #[inline(always)]
    pub const fn level(self) -> Option<u32> {
        // The discriminants of L1..L4 are their levels: one range test instead of a branch per type.
        let l = self as u32;
        if l >= PageType::L1 as u32 && l <= PageType::L4 as u32 {
            Some(l)
        } else {
            None
        }
    }
}

const _: () = assert!(
    PageType::L1 as u32 == 1
        && PageType::L2 as u32 == 2
        && PageType::L3 as u32 == 3
        && PageType::L4 as u32 == 4
);

/// The state of one machine frame (Xen's `struct page_info`, reduced).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct PageInfo {
    /// The owning domain, or [`NO_OWNER`].
    pub owner: u16,
    /// The current type (meaningful while `type_count > 0`; [`PageType::None`] otherwise).
    pub ty: PageType,
    /// [`PageInfo::VALIDATED`] | [`PageInfo::PINNED`] | [`PageInfo::HV_WRITES`].
    pub flags: u8,
    /// References holding the type: page-table entries that need it, a pin, the address-space base.
    pub type_count: u32,
    /// All references to the frame (every type reference is also a general reference).
    pub refs: u32,
}

static_assertions::assert_eq_size!(PageInfo, [u8; 12]);

impl PageInfo {
    /// Flag: the frame's contents were validated for its page-table type.
    pub const VALIDATED: u8 = 1;
    /// Flag: the guest pinned the frame as a page table (holds one type reference).
    pub const PINNED: u8 = 2;
    /// Flag: the hypervisor writes this frame on the domain's behalf (its shared_info page); the flag holds
    /// one [`PageType::Writable`] type reference for the frame's whole life in the domain, so the frame can
    /// never become a page table (Xen keeps shared_info permanently typed writable for the same reason).
    pub const HV_WRITES: u8 = 4;

    /// An unowned frame with no type and no references.
    pub const EMPTY: PageInfo = PageInfo {
        owner: NO_OWNER,
        ty: PageType::None,
        flags: 0,
        type_count: 0,
        refs: 0,
    };

    /// True if [`PageInfo::VALIDATED`] is set.
    pub const fn is_validated(&self) -> bool {
        self.flags & Self::VALIDATED != 0
    }

    /// True if [`PageInfo::PINNED`] is set.
    pub const fn is_pinned(&self) -> bool {
        self.flags & Self::PINNED != 0
    }

    /// True if [`PageInfo::HV_WRITES`] is set.
    pub const fn is_hv_written(&self) -> bool {
        self.flags & Self::HV_WRITES != 0
    }
}

/// The state of every machine frame below a fixed limit.
pub struct FrameTable<'a> {
    frames: &'a mut [PageInfo],
}

/// A frame outside the table, or already owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignError {
    /// The MFN is beyond the table.
    OutOfRange(Mfn),
    /// The frame already has an owner.
    AlreadyOwned(Mfn, u16),
}

impl<'a> FrameTable<'a> {
    /// A table over `frames.len()` frames, all unowned, untyped and unreferenced.
    pub fn new(frames: &'a mut [PageInfo]) -> Self {
        frames.fill(PageInfo::EMPTY);
        FrameTable { frames }
    }

    /// Number of frames the table covers (MFNs `0..len()`).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True if the table covers no frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The state of `mfn`, or `None` beyond the table.
    pub fn info(&self, mfn: Mfn) -> Option<&PageInfo> {
        self.frames.get(usize::try_from(mfn.0).ok()?)
    }

    /// The mutable state of `mfn`, or `None` beyond the table.
    pub fn info_mut(&mut self, mfn: Mfn) -> Option<&mut PageInfo> {
        self.frames.get_mut(usize::try_from(mfn.0).ok()?)
    }

    /// The owner of `mfn`, if any.
    pub fn owner(&self, mfn: Mfn) -> Option<u16> {
        match self.info(mfn)?.owner {
            NO_OWNER => None,
            d => Some(d),
        }
    }

    /// Give an unowned frame to `domid`, with no type and no references (a frame changing hands never
    /// keeps type state).
    pub fn assign(&mut self, mfn: Mfn, domid: u16) -> Result<(), AssignError> {
        let slot = self.info_mut(mfn).ok_or(AssignError::OutOfRange(mfn))?;
        if slot.owner != NO_OWNER {
            return Err(AssignError::AlreadyOwned(mfn, slot.owner));
        }
        *slot = PageInfo {
            owner: domid,
            ..PageInfo::EMPTY
        };
        Ok(())
    }

    /// Take every frame of `domid` away from it, resetting every field (owner, type, flags, counts), and
    /// call `release` for each (in MFN order). Returns how many frames were released.
    ///
    /// Normal teardown (`ptval::Mm::teardown`) calls this once the counts are back to zero; for a domain
    /// whose state cannot be unwound it is also the last resort, since it does not look at the counts.
    pub fn release_all(&mut self, domid: u16, mut release: impl FnMut(Mfn)) -> u64 {
        let mut n = 0;
        for (i, p) in self.frames.iter_mut().enumerate() {
            if p.owner == domid && domid != NO_OWNER {
                *p = PageInfo::EMPTY;
                release(Mfn(i as u64));
                n += 1;
            }
        }
        n
    }

    /// Number of frames `domid` owns.
    pub fn count(&self, domid: u16) -> u64 {
        if domid == NO_OWNER {
            return 0;
        }
        self.frames.iter().filter(|p| p.owner == domid).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_and_release() {
        let mut backing = [PageInfo::EMPTY; 16];
        let mut t = FrameTable::new(&mut backing);
        assert_eq!(t.len(), 16);
        assert!(!t.is_empty());
        assert_eq!(t.owner(Mfn(3)), None);
        t.assign(Mfn(3), 1).unwrap();
        t.assign(Mfn(5), 1).unwrap();
        t.assign(Mfn(6), 2).unwrap();
        assert_eq!(
            t.assign(Mfn(3), 2),
            Err(AssignError::AlreadyOwned(Mfn(3), 1))
        );
        assert_eq!(t.assign(Mfn(16), 2), Err(AssignError::OutOfRange(Mfn(16))));
        assert_eq!(
            t.assign(Mfn(u64::MAX), 2),
            Err(AssignError::OutOfRange(Mfn(u64::MAX)))
        );
        assert_eq!(t.count(1), 2);
        let mut got = Vec::new();
        assert_eq!(t.release_all(1, |m| got.push(m)), 2);
        assert_eq!(got, vec![Mfn(3), Mfn(5)]);
        assert_eq!(t.owner(Mfn(3)), None);
        assert_eq!(t.owner(Mfn(6)), Some(2));
        assert_eq!(t.owner(Mfn(99)), None);
    }

    #[test]
    fn new_resets_and_info_bounds() {
        let mut backing = [PageInfo {
            owner: 7,
            ty: PageType::L2,
            flags: PageInfo::VALIDATED | PageInfo::PINNED,
            type_count: 3,
            refs: 9,
        }; 4];
        let mut t = FrameTable::new(&mut backing);
        assert_eq!(t.info(Mfn(3)), Some(&PageInfo::EMPTY));
        assert_eq!(t.info(Mfn(4)), None);
        assert_eq!(t.info(Mfn(u64::MAX)), None);
        assert!(t.info_mut(Mfn(4)).is_none());
        t.info_mut(Mfn(0)).unwrap().refs = 2;
        assert_eq!(t.info(Mfn(0)).unwrap().refs, 2);
        // Nothing is "owned" by NO_OWNER.
        assert_eq!(t.count(NO_OWNER), 0);
        assert_eq!(t.release_all(NO_OWNER, |_| panic!("released")), 0);
        let mut empty: [PageInfo; 0] = [];
        assert!(FrameTable::new(&mut empty).is_empty());
    }

    #[test]
    fn release_all_resets_every_field_even_with_counts() {
        let mut backing = [PageInfo::EMPTY; 4];
        let mut t = FrameTable::new(&mut backing);
        t.assign(Mfn(1), 3).unwrap();
        t.assign(Mfn(2), 4).unwrap();
        // A crashed domain's frame with state that was never unwound.
        *t.info_mut(Mfn(1)).unwrap() = PageInfo {
            owner: 3,
            ty: PageType::L4,
            flags: PageInfo::VALIDATED | PageInfo::PINNED,
            type_count: 2,
            refs: 5,
        };
        assert_eq!(t.release_all(3, |_| {}), 1);
        assert_eq!(t.info(Mfn(1)), Some(&PageInfo::EMPTY));
        assert_eq!(t.owner(Mfn(2)), Some(4));
        // Re-assigning yields a clean frame.
        t.assign(Mfn(1), 4).unwrap();
        let p = t.info(Mfn(1)).unwrap();
        assert_eq!(
            (p.owner, p.ty, p.flags, p.type_count, p.refs),
            (4, PageType::None, 0, 0, 0)
        );
    }

    #[test]
    fn page_type_levels() {
        for l in 1..=4 {
            assert_eq!(PageType::table(l).level(), Some(l));
        }
        assert_eq!(PageType::table(0), PageType::None);
        assert_eq!(PageType::table(5), PageType::None);
        assert_eq!(PageType::None.level(), None);
        assert_eq!(PageType::Writable.level(), None);
        assert_eq!(core::mem::size_of::<PageInfo>(), 12);
        assert!(!PageInfo::EMPTY.is_pinned() && !PageInfo::EMPTY.is_validated());
        assert!(!PageInfo::EMPTY.is_hv_written());
    }
}
