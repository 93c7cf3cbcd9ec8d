//! PV page-table validation: Xen's frame type / reference-count model (mm.c) over the frame table.
//!
//! A guest builds its page tables in its own frames and asks the hypervisor to use them; the hypervisor
//! never lets a guest write a frame it uses as a page table. The model, as in Xen:
//!
//! - every frame has an owner, a general reference count and a *type* with a type count
//!   ([`PageInfo`]); types are exclusive (none, L1..L4, writable), and a frame changes type only while its
//!   type count is zero. A frame gets a table type only after every entry of it was *validated*, and each
//!   validated entry holds a reference on what it points at:
//!   - an L1 entry: a general reference on its target, plus a `Writable` type reference if it is writable;
//!   - an L2 / L3 / L4 entry: a type reference of the level below (L1 / L2 / L3) on its target;
//! - so a page-table frame can never be mapped writable, and a frame mapped writable can never become a page
//!   table. The type of a table being validated is set *before* its entries are, so a table that maps
//!   itself writable, or names itself as a lower-level table, fails with a type conflict;
//! - **linear page tables are refused.** Xen optionally allows an L2..L4 entry to point at a table of its
//!   own level (read-only, one level deep); here an Ln entry always needs type L(n-1), so any
//!   self-referencing or same-level entry is a [`MmError::TypeConflict`]. Type requests strictly descend in
//!   level, so validation and devalidation recurse at most four levels deep and can never loop;
//! - every entry must be free of reserved bits; guests never get superpages (PS in an L2/L3 entry is
//!   [`MmError::LargePage`]); the software-available bits 9..11 and 52..62 are the guest's;
//! - the L4 slots `RESERVED_L4_FIRST..=RESERVED_L4_LAST` belong to the hypervisor: validating an L4 does not
//!   look at them but writes the hypervisor's entries ([`Policy::hv_l4`]) into them and clears the other
//!   reserved slots (Xen's `init_xen_l4_slots`); they take no references, are ignored on devalidation and
//!   cannot be changed by [`Mm::mod_entry`];
//! - a pin holds one type reference (pins do not nest); the address-space base (`NEW_BASEPTR`) holds one
//!   L4 type reference;
//! - **frames the hypervisor writes on the domain's behalf** (its shared_info page; any later vcpu_info or
//!   ring registration) are *held* ([`Mm::hold_hv_writable`]): one `Writable` type reference flagged
//!   [`PageInfo::HV_WRITES`], which the guest cannot drop (it is not a pin), so while the hypervisor uses
//!   the frame every page-table type request on it (pin, link into a table, base) is a
//!   [`MmError::TypeConflict`] (-EBUSY), whether or not the guest still maps it writable. Without this, a
//!   guest that remapped its shared_info read-only could pin it as an L1 and let the hypervisor's event
//!   bits forge page-table entries. Registration in the other order fails too: a frame that is a page table
//!   cannot be held.
//!
//! **Bounded work.** A frame is validated only when its type count goes from 0 to 1 and devalidated only
//! when it goes back to 0, so one operation validates (or devalidates) each frame of the domain at most
//! once: the work of any single operation is bounded by (frames of the domain) × 512 entries. Unlike Xen's,
//! it is not preemptible (no continuations): a domain with a huge hierarchy can make one call long.
//!
//! **Failure is atomic.** A fallible operation either succeeds or leaves the frame table and memory exactly
//! as they were: a failed validation drops the references it took, and memory is written only after every
//! check passed (a new entry is referenced *before* it is written and the old entry's references are
//! dropped *after*, Xen's order, so rewriting an entry with itself never drops a count to zero on the way).
//! The property test (`ptval_proptest.rs`) recounts all references from memory after every step.

use core::fmt;

use abi::errno::Errno;
use abi::layout::{RESERVED_L4_FIRST, RESERVED_L4_LAST};
use abi::types::{Maddr, Mfn};

use super::frame_table::{FrameTable, NO_OWNER, PageInfo, PageType};
use super::phys::PhysRead;
use super::pte::{Pte, PteFlags, reserved_addr_mask};

/// Entries per page table.
pub const ENTRIES: usize = 512;

/// Machine memory that page-table validation reads and writes (the hypervisor's direct map).
pub trait PtMem: PhysRead {
    /// Writes the little-endian `u64` at `addr` (8-byte aligned: always a page-table slot).
    fn write_u64(&mut self, addr: Maddr, val: u64);
    /// The entry at `addr` of a validated table as its references count it (log-dirty stores a writable L1
    /// entry without RW: `mm::logdirty`). Plain memory by default.
    fn read_pte(&self, addr: Maddr) -> u64 {
        self.read_u64(addr)
    }
    /// True if the entry at `addr` may be read ([`PhysRead::read_u64`]) and written
    /// ([`PtMem::write_plain`]) as plain memory: no hook is on (log-dirty is off) and the slot is in the
    /// memory's range. The one-pass L1 update (`mod_l1_entry`) leaves any other entry to the general path.
    /// False unless overridden.
    fn plain(&self, _addr: Maddr) -> bool {
        false
    }
    /// [`PtMem::write_u64`] of an entry [`PtMem::plain`] accepted.
    fn write_plain(&mut self, addr: Maddr, val: u64) {
        self.write_u64(addr, val);
    }
    /// The validated table in `mfn` is about to lose its type (log-dirty gives its entries RW back first).
    fn table_dropped(&mut self, _mfn: Mfn) {}
    /// The table in `mfn` was just validated as a level-`level` table (log-dirty marks the targets of its
    /// writable entries).
    fn table_validated(&mut self, _mfn: Mfn, _level: u32) {}
}

/// What the validator must know about the machine and the hypervisor.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'a> {
    /// The CPU's physical-address width: address bits above it are reserved.
    pub maxphyaddr: u32,
    /// The hypervisor's own L4 entries `(slot, value)`, slots in `RESERVED_L4_FIRST..=RESERVED_L4_LAST`
    /// (entries for other slots are ignored). Written into every L4 a guest gets validated.
    pub hv_l4: &'a [(usize, u64)],
}

/// Why a memory-management request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// The frame does not exist, belongs to another domain, or to no domain (hypervisor frames).
    NotOwned(Mfn),
    /// Frame `mfn` has type `have` (with a non-zero type count) and type `want` was needed.
    TypeConflict {
        mfn: Mfn,
        have: PageType,
        want: PageType,
    },
    /// Entry `index` of a level-`level` table is present with reserved bits set.
    ReservedBits { level: u32, index: usize },
    /// Entry `index` of a level-`level` (2 or 3) table is present with PS set (no superpages for guests).
    LargePage { level: u32, index: usize },
    /// The L4 slot belongs to the hypervisor.
    ReservedSlot(usize),
    /// The frame is not a validated page table (or the level asked for is not 1..=4).
    NotPageTable(Mfn),
    /// An entry index beyond 511.
    BadIndex(usize),
    /// The frame is already pinned.
    AlreadyPinned(Mfn),
    /// The frame is not pinned.
    NotPinned(Mfn),
    /// A reference count would overflow.
    CountOverflow(Mfn),
    /// The frame is still in use.
    InUse(Mfn),
}

impl MmError {
    /// The Xen error number for this error: `NotOwned` → EPERM, `TypeConflict` and `InUse` → EBUSY,
    /// everything else → EINVAL.
    pub fn errno(&self) -> Errno {
        match self {
            MmError::NotOwned(_) => Errno::EPERM,
            MmError::TypeConflict { .. } | MmError::InUse(_) => Errno::EBUSY,
            _ => Errno::EINVAL,
        }
    }
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmError::NotOwned(m) => write!(f, "frame {m:?} is not the domain's"),
            MmError::TypeConflict { mfn, have, want } => {
                write!(f, "frame {mfn:?} is typed {have:?}, wanted {want:?}")
            }
            MmError::ReservedBits { level, index } => {
                write!(f, "L{level} entry {index}: reserved bits set")
            }
            MmError::LargePage { level, index } => {
                write!(f, "L{level} entry {index}: superpage refused")
            }
            MmError::ReservedSlot(i) => write!(f, "L4 slot {i} belongs to the hypervisor"),
            MmError::NotPageTable(m) => write!(f, "frame {m:?} is not a validated page table"),
            MmError::BadIndex(i) => write!(f, "entry index {i} out of range"),
            MmError::AlreadyPinned(m) => write!(f, "frame {m:?} is already pinned"),
            MmError::NotPinned(m) => write!(f, "frame {m:?} is not pinned"),
            MmError::CountOverflow(m) => write!(f, "frame {m:?}: reference count overflow"),
            MmError::InUse(m) => write!(f, "frame {m:?} is in use"),
        }
    }
}

/// True if L4 slot `index` belongs to the hypervisor.
pub const fn is_reserved_l4(index: usize) -> bool {
    index >= RESERVED_L4_FIRST && index <= RESERVED_L4_LAST
}

/// True if entry `index` of a level-`level` table takes references (all but the reserved L4 slots).
const fn counted(level: u32, index: usize) -> bool {
    !(level == 4 && is_reserved_l4(index))
}

/// The counted entries of a level-`level` table (see [`counted`]), as two ranges of indices: for an L4 the
/// slots below and above the hypervisor's, for the other levels all of them (and an empty range).
#[inline(always)]
fn counted_ranges(level: u32) -> [core::ops::Range<usize>; 2] {
    if level == 4 {
        [0..RESERVED_L4_FIRST, RESERVED_L4_LAST + 1..ENTRIES]
    } else {
        [0..ENTRIES, ENTRIES..ENTRIES]
    }
}

/// The type reference a present entry `e` of a level-`level` table holds on its target besides its
/// general reference: `Writable` for a writable L1 entry, none ([`PageType::None`]) for a read-only one,
/// the table type of the level below for an L2..L4 entry.
#[inline(always)]
fn entry_type(e: Pte, level: u32) -> PageType {
    match level {
        1 if e.has(PteFlags::WRITABLE) => PageType::Writable,
        1 => PageType::None,
        _ => PageType::table(level - 1),
    }
}

/// The machine address of entry `index` of `table`.
fn slot(table: Mfn, index: usize) -> Maddr {
    Maddr(table.addr().0 + (index as u64) * 8)
}

/// The validator: the frame table, the memory holding the tables, and the policy, borrowed for one
/// operation (the caller holds the lock that makes them consistent).
pub struct Mm<'t, 'm, M: PtMem> {
    /// Frame states.
    pub ft: &'t mut FrameTable<'m>,
    /// Machine memory holding the page tables.
    pub mem: &'t mut M,
    /// Machine facts and the hypervisor's L4 entries.
    pub policy: Policy<'t>,
    /// `reserved_addr_mask(policy.maxphyaddr)`, computed once for all the entries this `Mm` checks.
    rsvd_addr: u64,
}

/// A page-table update that passed every check and holds the references of its new entry: what
/// [`Mm::prepare`] returns and [`Mm::perform`] carries out (which cannot fail). Dropping one without
/// performing it would leak the new entry's references, hence `must_use`.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtWrite {
    /// The validated page table written.
    pub table: Mfn,
    /// The entry's index in it.
    pub index: usize,
    /// The table's level (1..=4).
    pub level: u32,
    /// The entry it replaces (its references are dropped by `perform`).
    pub old: Pte,
    /// The entry stored (its references are taken).
    pub new: Pte,
}

impl<'t, 'm, M: PtMem> Mm<'t, 'm, M> {
    /// Bundles the three for a sequence of operations.
    pub fn new(ft: &'t mut FrameTable<'m>, mem: &'t mut M, policy: Policy<'t>) -> Self {
        let rsvd_addr = reserved_addr_mask(policy.maxphyaddr);
        Mm {
            ft,
            mem,
            policy,
            rsvd_addr,
        }
    }

    /// The state of `mfn` if `dom` owns it.
    #[inline]
    fn owned_mut(&mut self, mfn: Mfn, dom: u16) -> Result<&mut PageInfo, MmError> {
        match self.ft.info_mut(mfn) {
            Some(p) if dom != NO_OWNER && p.owner == dom => Ok(p),
            _ => Err(MmError::NotOwned(mfn)),
        }
    }

    fn read(&self, table: Mfn, index: usize) -> Pte {
        Pte(self.mem.read_u64(slot(table, index)))
    }

    /// Takes a general reference on `mfn`, which `dom` must own.
    #[inline]
    pub fn get_page(&mut self, mfn: Mfn, dom: u16) -> Result<(), MmError> {
        self.get_ref(mfn, PageType::None, dom)
    }

    /// Drops a general reference on `mfn` (a hypervisor bug if there is none: ignored in release builds).
    #[inline]
    pub fn put_page(&mut self, mfn: Mfn) {
        self.put_ref(mfn, false);
    }

    /// Takes a general and a type reference of type `ty` on `mfn`, which `dom` must own.
    ///
    /// At type count 0 the frame takes the type; a page-table type is validated first (which takes the
    /// references of all its entries, recursively). Otherwise the frame must already have type `ty`.
    /// `ty` must not be [`PageType::None`] (that fails with a `TypeConflict`). On error nothing changed.
    pub fn get_page_type(&mut self, mfn: Mfn, ty: PageType, dom: u16) -> Result<(), MmError> {
        if ty == PageType::None {
            // The checks of a general reference come first (as for any other type); then the conflict.
            let p = self.owned_mut(mfn, dom)?;
            p.refs.checked_add(1).ok_or(MmError::CountOverflow(mfn))?;
            let have = p.ty;
            return Err(MmError::TypeConflict {
                mfn,
                have,
                want: ty,
            });
        }
        self.get_ref(mfn, ty, dom)
    }

    /// Drops a type reference (and its general reference) on `mfn`. When the type count reaches 0 the
    /// frame loses its type; a page table first drops the references of all its entries, recursively.
    pub fn put_page_type(&mut self, mfn: Mfn) {
        self.put_ref(mfn, true);
    }

    /// The reference an entry takes on its target, in one look-up of the target's frame: a general
    /// reference, plus a type reference of type `ty` unless `ty` is [`PageType::None`] (for a type
    /// reference at type count 0 the frame takes the type, and a table type is validated first, out of
    /// line in [`Mm::take_table_type`]). `mfn` must be `dom`'s. On error nothing changed.
    #[inline(always)]
    fn get_ref(&mut self, mfn: Mfn, ty: PageType, dom: u16) -> Result<(), MmError> {
        let p = self.owned_mut(mfn, dom)?;
        let refs = p.refs.checked_add(1).ok_or(MmError::CountOverflow(mfn))?;
        if ty == PageType::None {
            p.refs = refs;
            return Ok(());
        }
        if p.type_count > 0 {
            if p.ty != ty {
                let have = p.ty;
                return Err(MmError::TypeConflict {
                    mfn,
                    have,
                    want: ty,
                });
            }
            p.type_count = p
                .type_count
                .checked_add(1)
                .ok_or(MmError::CountOverflow(mfn))?;
            p.refs = refs;
            return Ok(());
        }
        // Type first, so the table's own entries see it (a self-reference is a type conflict).
        p.refs = refs;
        p.ty = ty;
        p.type_count = 1;
        match ty.level() {
            Some(level) => self.take_table_type(mfn, level, dom),
            None => Ok(()),
        }
    }

    /// The rest of [`Mm::get_ref`] for a frame that just took table type `level` (counts already set):
    /// validates it, or on failure gives back the type and the general reference.
    #[inline(never)]
    fn take_table_type(&mut self, mfn: Mfn, level: u32, dom: u16) -> Result<(), MmError> {
        let result = self.validate(mfn, level, dom);
        if result.is_ok() {
            self.mem.table_validated(mfn, level);
        }
        if let Some(p) = self.ft.info_mut(mfn) {
            match result {
                Ok(()) => p.flags |= PageInfo::VALIDATED,
                Err(_) => {
                    p.ty = PageType::None;
                    p.type_count = 0;
                    p.refs = p.refs.saturating_sub(1);
                }
            }
        }
        result
    }

    /// Drops what [`Mm::get_ref`] took, in one look-up: a general reference, and with `typed` a type
    /// reference; at type count 0 the frame loses its type, and a validated table drops its entries'
    /// references (out of line, [`Mm::drop_table_type`]).
    ///
    /// (The frame's general reference goes before its entries' do; the order does not matter: every type
    /// reference is also a general one, so the count cannot reach zero early, and the entries' references
    /// are counted on other frames or are general references of this one that devalidation drops by its
    /// own look-ups.) Dropping a reference that is not there is a hypervisor bug: ignored in release
    /// builds.
    #[inline(always)]
    fn put_ref(&mut self, mfn: Mfn, typed: bool) {
        let Some(p) = self.ft.info_mut(mfn) else {
            return;
        };
        if let Some(level) = release(p, mfn, typed) {
            self.drop_table_type(mfn, level);
        }
    }

    /// The rest of [`Mm::put_ref`] for a table whose last type reference went: its entries' references.
    #[inline(never)]
    fn drop_table_type(&mut self, mfn: Mfn, level: u32) {
        self.mem.table_dropped(mfn);
        self.devalidate(mfn, level, ENTRIES);
    }

    /// Validates every counted entry of `table` (typed level `level`, owned by `dom`); on failure drops the
    /// references taken so far. A valid L4 then gets the hypervisor's slots (only here: L4s are never
    /// validated as part of another table, so nothing after this write can fail).
    fn validate(&mut self, table: Mfn, level: u32, dom: u16) -> Result<(), MmError> {
        for range in counted_ranges(level) {
            for index in range {
                let e = self.read(table, index);
                if !e.is_present() {
                    continue;
                }
                if let Err(err) = self.get_entry(e, level, index, dom) {
                    self.devalidate(table, level, index);
                    return Err(err);
                }
            }
        }
        if level == 4 {
            for index in RESERVED_L4_FIRST..=RESERVED_L4_LAST {
                let hv = self.policy.hv_l4.iter().find(|&&(s, _)| s == index);
                self.mem
                    .write_u64(slot(table, index), hv.map_or(0, |&(_, v)| v));
            }
        }
        Ok(())
    }

    /// Drops the references of the counted entries `0..end` of `table` (in reverse order).
    fn devalidate(&mut self, table: Mfn, level: u32, end: usize) {
        for range in counted_ranges(level).into_iter().rev() {
            for index in (range.start..range.end.min(end)).rev() {
                let e = self.read(table, index);
                if e.is_present() {
                    self.put_entry(e, level);
                }
            }
        }
    }

    /// Checks entry `e` (at `index` of a level-`level` table of `dom`) and takes its references: one
    /// look-up of the target frame (see [`Mm::get_page_type`]).
    #[inline(always)]
    fn get_entry(&mut self, e: Pte, level: u32, index: usize, dom: u16) -> Result<(), MmError> {
        if !e.is_present() {
            return Ok(());
        }
        if (level == 2 || level == 3) && e.has(PteFlags::HUGE) {
            return Err(MmError::LargePage { level, index });
        }
        // What `Pte::has_reserved_bits` finds in an entry without PS (PS in an L2/L3 entry was refused just
        // above): the address bits above MAXPHYADDR, and PS itself in an L4 entry (in an L1 it is PAT).
        let ps = if level == 4 { PteFlags::HUGE.bits() } else { 0 };
        let reserved = e.0 & (self.rsvd_addr | ps) != 0;
        debug_assert_eq!(reserved, e.has_reserved_bits(level, self.policy.maxphyaddr));
        if reserved {
            return Err(MmError::ReservedBits { level, index });
        }
        self.get_ref(e.mfn(), entry_type(e, level), dom)
    }

    /// Drops the references a validated entry `e` of a level-`level` table holds.
    #[inline(always)]
    fn put_entry(&mut self, e: Pte, level: u32) {
        if e.is_present() {
            self.put_ref(e.mfn(), entry_type(e, level) != PageType::None);
        }
    }

    /// `mmu_update` `NORMAL_PT_UPDATE` / `PT_UPDATE_PRESERVE_AD`: sets entry `index` of the validated page
    /// table `table` of `dom` to `new`. With `preserve_ad`, the ACCESSED/DIRTY bits of a present old entry
    /// are ORed into the new one (as Xen does). Returns whether the old entry was present (the caller must
    /// flush the TLB). On error nothing changed. [`Mm::prepare`] then [`Mm::perform`].
    pub fn mod_entry(
        &mut self,
        table: Mfn,
        index: usize,
        new: u64,
        dom: u16,
        preserve_ad: bool,
    ) -> Result<bool, MmError> {
        let w = self.prepare(table, index, new, dom, preserve_ad)?;
        Ok(self.perform(w))
    }

    /// The checking half of [`Mm::mod_entry`]: every check, and the new entry's references taken (the
    /// table's frame and the new target's are each looked up once). On error nothing changed; on success
    /// nothing is written yet and the returned [`PtWrite`] must be [performed](Mm::perform).
    #[inline(always)]
    pub fn prepare(
        &mut self,
        table: Mfn,
        index: usize,
        new: u64,
        dom: u16,
        preserve_ad: bool,
    ) -> Result<PtWrite, MmError> {
        let p = self.owned_mut(table, dom)?;
        // An L1 entry (every mapping of a page: most updates) is checked with its level known, so the
        // checks of the upper levels (reserved L4 slots, superpage, L4's PS, the table type below) fold
        // away; the same checks as for any other level.
        let l1 = p.ty == PageType::L1;
        let level = match p.ty.level() {
            Some(l) if p.is_validated() => l,
            _ => return Err(MmError::NotPageTable(table)),
        };
        if index >= ENTRIES {
            return Err(MmError::BadIndex(index));
        }
        if l1 {
            self.prepare_at(table, index, 1, new, dom, preserve_ad)
        } else {
            self.prepare_at(table, index, level, new, dom, preserve_ad)
        }
    }

    /// The rest of [`Mm::prepare`] once the table's `level` is known.
    #[inline(always)]
    fn prepare_at(
        &mut self,
        table: Mfn,
        index: usize,
        level: u32,
        new: u64,
        dom: u16,
        preserve_ad: bool,
    ) -> Result<PtWrite, MmError> {
        if !counted(level, index) {
            return Err(MmError::ReservedSlot(index));
        }
        let old = Pte(self.mem.read_pte(slot(table, index)));
        let mut new = Pte(new);
        if preserve_ad && old.is_present() {
            new.0 |= old.0 & (PteFlags::ACCESSED | PteFlags::DIRTY).bits();
        }
        self.get_entry(new, level, index, dom)?;
        Ok(PtWrite {
            table,
            index,
            level,
            old,
            new,
        })
    }

    /// The acting half of [`Mm::mod_entry`], which cannot fail: stores `w.new` and drops the references of
    /// `w.old` (after the new ones were taken, Xen's order, so rewriting an entry with itself never drops a
    /// count to zero on the way). Returns whether the old entry was present (the TLB must be flushed).
    ///
    /// `w` must come from [`Mm::prepare`] on this frame table with nothing done to the table in between;
    /// its `new` may be changed only to an entry holding the same references.
    #[inline(always)]
    pub fn perform(&mut self, w: PtWrite) -> bool {
        self.mem.write_u64(slot(w.table, w.index), w.new.0);
        // As in `prepare`: an L1 entry's references with the level known.
        if w.level == 1 {
            self.put_entry(w.old, 1);
        } else {
            self.put_entry(w.old, w.level);
        }
        w.old.is_present()
    }

    /// [`mod_l1_entry`] with this validator's frame table, memory and reserved-bit mask: `None` unless
    /// `table` is a validated L1 of `dom`, `index < 512` and the entry [`PtMem::plain`] (otherwise
    /// [`Mm::mod_entry`] is the way).
    #[inline(always)]
    pub fn mod_l1_entry(
        &mut self,
        table: Mfn,
        index: usize,
        new: u64,
        dom: u16,
    ) -> Option<Result<bool, MmError>> {
        mod_l1_entry(
            self.ft,
            self.mem,
            &self.policy,
            self.rsvd_addr,
            table,
            index,
            new,
            dom,
        )
    }

    /// `decrease_reservation`: takes frame `mfn` away from `dom`, which is allowed only while nothing
    /// references it (`InUse` otherwise). The frame is left unowned with every field reset.
    pub fn free_frame(&mut self, mfn: Mfn, dom: u16) -> Result<(), MmError> {
        let p = self.owned_mut(mfn, dom)?;
        if p.refs != 0 || p.type_count != 0 || p.flags != 0 {
            return Err(MmError::InUse(mfn));
        }
        *p = PageInfo::EMPTY;
        Ok(())
    }

    /// `MMUEXT_PIN_L<level>_TABLE`: validates `mfn` as a level-`level` table (if not already) and pins it.
    /// A level outside 1..=4 is `NotPageTable`. On error nothing changed.
    pub fn pin(&mut self, mfn: Mfn, level: u32, dom: u16) -> Result<(), MmError> {
        let ty = PageType::table(level);
        if ty == PageType::None {
            return Err(MmError::NotPageTable(mfn));
        }
        self.get_page_type(mfn, ty, dom)?;
        match self.ft.info_mut(mfn) {
            Some(p) if !p.is_pinned() => {
                p.flags |= PageInfo::PINNED;
                Ok(())
            }
            _ => {
                // Already pinned: the pin still holds its type reference, so this cannot devalidate.
                self.put_page_type(mfn);
                Err(MmError::AlreadyPinned(mfn))
            }
        }
    }

    /// `MMUEXT_UNPIN_TABLE`: drops the pin's type reference (devalidating the table if it was the last).
    pub fn unpin(&mut self, mfn: Mfn, dom: u16) -> Result<(), MmError> {
        let p = self.owned_mut(mfn, dom)?;
        if !p.is_pinned() {
            return Err(MmError::NotPinned(mfn));
        }
        p.flags &= !PageInfo::PINNED;
        self.put_page_type(mfn);
        Ok(())
    }

    /// Holds `mfn` (owned by `dom`) for the hypervisor's writes: takes a `Writable` type reference and sets
    /// [`PageInfo::HV_WRITES`]. Fails with a `TypeConflict` if the frame is a page table now, `InUse` if it is
    /// already held. On error nothing changed. Teardown drops the hold.
    pub fn hold_hv_writable(&mut self, mfn: Mfn, dom: u16) -> Result<(), MmError> {
        if self.owned_mut(mfn, dom)?.is_hv_written() {
            return Err(MmError::InUse(mfn));
        }
        self.get_page_type(mfn, PageType::Writable, dom)?;
        if let Some(p) = self.ft.info_mut(mfn) {
            p.flags |= PageInfo::HV_WRITES;
        }
        Ok(())
    }

    /// Ends a [`hold_hv_writable`](Self::hold_hv_writable) (the hypervisor no longer writes the frame):
    /// clears the flag and drops its type reference. `NotPinned` if the frame is not held.
    pub fn release_hv_writable(&mut self, mfn: Mfn, dom: u16) -> Result<(), MmError> {
        let p = self.owned_mut(mfn, dom)?;
        if !p.is_hv_written() {
            return Err(MmError::NotPinned(mfn));
        }
        p.flags &= !PageInfo::HV_WRITES;
        self.put_page_type(mfn);
        Ok(())
    }

    /// `MMUEXT_NEW_BASEPTR`: takes an L4 type reference on `new` (validating it if needed), then drops the
    /// one `old` (the domain's current base, if any) held. On error nothing changed and `old` stays the base.
    pub fn set_base(&mut self, old: Option<Mfn>, new: Mfn, dom: u16) -> Result<(), MmError> {
        self.get_page_type(new, PageType::L4, dom)?;
        if let Some(old) = old {
            self.put_page_type(old);
        }
        Ok(())
    }

    /// Domain teardown: unpins every pinned frame of `dom`, drops every hypervisor hold and the base's
    /// reference (`base`: the current base, if any), which returns every count of its frames to 0; then takes all its frames away
    /// ([`FrameTable::release_all`], calling `release` for each). Returns how many frames were released.
    ///
    /// Every reference to a frame of `dom` comes from a validated table of `dom`, a pin, a hold or the base, and
    /// every validated table is reachable from a pin or the base, so this unwinds everything. A `base` that
    /// is not an L4 of `dom` is ignored, and `release_all` resets whatever is left, so a crashed domain with
    /// inconsistent state is still torn down.
    pub fn teardown(&mut self, dom: u16, base: Option<Mfn>, release: impl FnMut(Mfn)) -> u64 {
        for i in 0..self.ft.len() {
            let mfn = Mfn(i as u64);
            if let Ok(p) = self.owned_mut(mfn, dom)
                && p.is_pinned()
                && p.type_count > 0
            {
                p.flags &= !PageInfo::PINNED;
                self.put_page_type(mfn);
            }
            if let Ok(p) = self.owned_mut(mfn, dom)
                && p.is_hv_written()
                && p.type_count > 0
            {
                p.flags &= !PageInfo::HV_WRITES;
                self.put_page_type(mfn);
            }
        }
        if let Some(b) = base
            && let Ok(p) = self.owned_mut(b, dom)
            && p.ty == PageType::L4
            && p.type_count > 0
        {
            self.put_page_type(b);
        }
        self.ft.release_all(dom, release)
    }
}

#[path = "ptval_l1.rs"]
mod l1;
pub use l1::mod_l1_entry;

/// The counting part of [`Mm::put_ref`] on frame `mfn`'s info `p` (shared with the one-pass L1 update,
/// `ptval_l1`): drop a general reference, and with `typed` a type reference; at type count 0 the frame
/// loses its type. Returns the level of a validated table that lost its type, whose entries' references
/// the caller must then drop (`Mm::drop_table_type`). Dropping a reference that is not there is a
/// hypervisor bug: ignored in release builds.
#[inline(always)]
pub(super) fn release(p: &mut PageInfo, mfn: Mfn, typed: bool) -> Option<u32> {
    debug_assert!(p.refs > 0, "reference dropped on {mfn:?} without one");
    if !typed {
        p.refs = p.refs.saturating_sub(1);
        return None;
    }
    debug_assert!(
        p.type_count > 0,
        "type reference dropped on {mfn:?} without one"
    );
    if p.type_count == 0 {
        return None;
    }
    p.refs = p.refs.saturating_sub(1);
    p.type_count -= 1;
    if p.type_count != 0 {
        return None;
    }
    let ty = p.ty;
    p.ty = PageType::None;
    // Only a validated frame (a table) has more to undo: one flag test for the others (a frame that was
    // mapped writable, the common case).
    if !p.is_validated() {
        return None;
    }
    p.flags &= !PageInfo::VALIDATED;
    ty.level()
}

#[cfg(test)]
impl PtMem for super::phys::fake::FakeMachine {
    fn write_u64(&mut self, addr: Maddr, val: u64) {
        super::phys::fake::FakeMachine::write_u64(self, addr, val);
    }
    fn plain(&self, _addr: Maddr) -> bool {
        true
    }
}

#[cfg(test)]
#[path = "ptval_tests.rs"]
mod tests;
