//! Software walks of a guest's 4-level page tables: translate guest virtual addresses and validate buffers.
//!
//! Used to check hypercall buffers against the calling domain's own mappings, with the permissions the guest
//! itself would need. Guests never get superpages, so any PS bit is refused.

use crate::mm::phys::PhysRead;
use crate::mm::pte::{Pte, PteFlags};
use abi::layout::{RESERVED_VA_END, RESERVED_VA_START, guest_va_allowed};
use abi::types::{Gva, Maddr, Mfn, PAGE_SIZE};

/// The kind of access a translation must allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Access {
    /// The access writes (WRITABLE needed at every level).
    pub write: bool,
    /// The access is made on behalf of ring 3 (USER needed at every level).
    pub user: bool,
}

impl Access {
    /// A supervisor read.
    pub const READ: Access = Access {
        write: false,
        user: false,
    };
    /// A supervisor write.
    pub const WRITE: Access = Access {
        write: true,
        user: false,
    };
}

/// Why a translation or buffer check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The address (or part of the range) is not canonical.
    NonCanonical,
    /// The address (or part of the range) is in the hypervisor's reserved slots.
    Reserved,
    /// The entry at `level` (4 = L4 … 1 = L1) is not present.
    NotPresent {
        /// Page-table level of the missing entry.
        level: u32,
    },
    /// Some level lacks WRITABLE (for a write) or USER (for a user access).
    Protection,
    /// A PS bit is set (in L3/L2, or the reserved PS bit in L4).
    LargePage,
    /// `va + len` overflows.
    Overflow,
    /// The buffer is longer than the caller's limit.
    TooLong,
}

impl core::fmt::Display for WalkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WalkError::NonCanonical => f.write_str("non-canonical guest address"),
            WalkError::Reserved => f.write_str("guest address in the hypervisor's reserved range"),
            WalkError::NotPresent { level } => write!(f, "L{level} entry not present"),
            WalkError::Protection => f.write_str("mapping does not allow this access"),
            WalkError::LargePage => f.write_str("superpage mapping refused"),
            WalkError::Overflow => f.write_str("guest buffer wraps around the address space"),
            WalkError::TooLong => f.write_str("guest buffer too long"),
        }
    }
}

fn check_va(va: Gva) -> Result<(), WalkError> {
    if !va.is_canonical() {
        Err(WalkError::NonCanonical)
    } else if !guest_va_allowed(va.0) {
        Err(WalkError::Reserved)
    } else {
        Ok(())
    }
}

/// Translates `va` through the page tables rooted at `l4`, checking `access` at every level.
pub fn translate(
    mem: &impl PhysRead,
    l4: Mfn,
    va: Gva,
    access: Access,
) -> Result<Maddr, WalkError> {
    // Canonical and outside the reserved slots in one comparison (`regs::va_allowed`, tested against
    // `check_va`'s two); only a refused address takes `check_va` for the exact error.
    if !crate::regs::va_allowed(va.0) {
        check_va(va)?;
    }
    walk_allowed(mem, l4, va, access)
}

/// [`translate`] for an address the caller has already checked with [`abi::layout::guest_va_allowed`]
/// (or an equivalent test, such as `regs::va_allowed`): only the tables are walked.
#[inline(always)]
pub fn translate_allowed(
    mem: &impl PhysRead,
    l4: Mfn,
    va: Gva,
    access: Access,
) -> Result<Maddr, WalkError> {
    walk_allowed(mem, l4, va, access)
}

/// The address bits (32..51) of a page-table entry naming a frame at or above 4 GiB. The fast walk
/// ([`walk_allowed`]) takes an entry only if they are clear; an entry with any of them set goes to the
/// exact walk ([`walk_exact`]), which gives the same result.
const HIGH_FRAME_BITS: u64 = Pte::ADDR_MASK & !0xffff_ffff;

/// [`translate`] for an address already known to be canonical and outside the reserved slots (every
/// page of a range [`check_range`] accepted: both ends canonical in the same half, and the reserved slots
/// are one interval that the range does not meet).
///
/// The common case straight through: at each level one mask-and-compare of the entry against every bit
/// the access needs (present, writable for a write, user for a user access), PS clear above L1 and a
/// frame below 4 GiB. The next table's address is then the entry's low 32 bits with the flags masked
/// off, which the reader can see is below 4 GiB (the identity map's bound check on it folds away).
/// Any entry that fails the test sends the whole walk to [`walk_exact`]: the rules in their order, the
/// exact error, and the log-dirty path for a write through a write-protected L1 entry. Nothing changes
/// the tables in between (the guest is not running), so both walks read the same entries.
#[inline(always)] // A few instructions per level: a call would be a good share of it.
fn walk_allowed(mem: &impl PhysRead, l4: Mfn, va: Gva, access: Access) -> Result<Maddr, WalkError> {
    debug_assert!(va.is_canonical() && guest_va_allowed(va.0));
    let mut need = PteFlags::PRESENT.bits();
    if access.write {
        need |= PteFlags::WRITABLE.bits();
    }
    if access.user {
        need |= PteFlags::USER.bits();
    }
    let mut table = l4.addr().0;
    for level in (1..=4u32).rev() {
        let slot = table + (va.table_index(level) as u64) * 8;
        let pte = mem.read_u64(Maddr(slot));
        let ps = if level >= 2 { PteFlags::HUGE.bits() } else { 0 };
        if pte & (need | ps | HIGH_FRAME_BITS) != need {
            return walk_exact(mem, l4, va, access);
        }
        // Bits 32..51 are clear (tested above): the frame's address is the low 32 bits' address part.
        table = pte & (Pte::ADDR_MASK & 0xffff_ffff);
    }
    Ok(Maddr(table | va.page_offset()))
}

/// The walk with the exact rules, in order at each level: not present, then a large page (L4..L2),
/// then the permission ([`protection`]). Out of line: [`walk_allowed`] comes here only when an entry
/// fails its one test.
#[cold]
#[inline(never)]
fn walk_exact(mem: &impl PhysRead, l4: Mfn, va: Gva, access: Access) -> Result<Maddr, WalkError> {
    let mut table = l4;
    for level in (1..=4u32).rev() {
        let slot = table.addr().0 + (va.table_index(level) as u64) * 8;
        let pte = Pte(mem.read_u64(Maddr(slot)));
        if !pte.is_present() {
            return Err(WalkError::NotPresent { level });
        }
        if level >= 2 && pte.has(PteFlags::HUGE) {
            return Err(WalkError::LargePage);
        }
        if (access.write && !pte.has(PteFlags::WRITABLE))
            || (access.user && !pte.has(PteFlags::USER))
        {
            return protection(mem, l4, va, access);
        }
        table = pte.mfn();
    }
    Ok(Maddr(table.addr().0 | va.page_offset()))
}

/// The L1 table that maps `va` in the address space rooted at `l4`: `None` if an entry of L4..L2 is not
/// present or has PS set (no permission is needed: the caller updates the L1 entry itself). The common
/// case straight through, as in [`walk_allowed`]; an entry that fails the one test (or names a frame at
/// or above 4 GiB) sends the walk to [`l1_table_exact`].
#[inline(always)]
pub fn l1_table(mem: &impl PhysRead, l4: Mfn, va: Gva) -> Option<Mfn> {
    match l1_table_fast(mem, l4, va) {
        Some(l1) => Some(l1),
        None => l1_table_exact(mem, l4, va),
    }
}

/// [`l1_table`]'s common case alone: `None` for any entry that fails its one test (which
/// [`l1_table_exact`] then judges). Apart, so that a caller can join its result with the exact walk's
/// where it branches on it anyway.
#[inline(always)]
pub fn l1_table_fast(mem: &impl PhysRead, l4: Mfn, va: Gva) -> Option<Mfn> {
    let need = PteFlags::PRESENT.bits();
    let mask = need | PteFlags::HUGE.bits() | HIGH_FRAME_BITS;
    let mut table = l4.addr().0;
    for level in [4u32, 3, 2] {
        let pte = mem.read_u64(Maddr(table + va.table_index(level) as u64 * 8));
        if pte & mask != need {
            return None;
        }
        table = pte & (Pte::ADDR_MASK & 0xffff_ffff);
    }
    Some(Maddr(table).mfn())
}

/// [`l1_table`] with the rules at each level, out of line.
#[cold]
#[inline(never)]
pub fn l1_table_exact(mem: &impl PhysRead, l4: Mfn, va: Gva) -> Option<Mfn> {
    let mut table = l4;
    for level in [4u32, 3, 2] {
        let e = Pte(mem.read_u64(Maddr(table.addr().0 + va.table_index(level) as u64 * 8)));
        if !e.is_present() || e.has(PteFlags::HUGE) {
            return None;
        }
        table = e.mfn();
    }
    Some(table)
}

/// A walk refused for lack of a permission. With log-dirty on (`mm::logdirty`) a write may go through an
/// L1 entry write-protected only for tracking: the walk again, such entries writable for the hypervisor's
/// own write (which marks the frame). Out of line, so the walk's common path keeps its shape.
#[cold]
#[inline(never)]
fn protection(mem: &impl PhysRead, l4: Mfn, va: Gva, access: Access) -> Result<Maddr, WalkError> {
    if !(access.write && super::logdirty::on()) {
        return Err(WalkError::Protection);
    }
    let mut table = l4;
    for level in (1..=4u32).rev() {
        let slot = table.addr().0 + (va.table_index(level) as u64) * 8;
        let mut pte = Pte(mem.read_u64(Maddr(slot)));
        if level == 1 && !pte.has(PteFlags::WRITABLE) {
            pte = Pte(super::logdirty::walk_write(slot, pte.0));
        }
        if !pte.is_present() {
            return Err(WalkError::NotPresent { level });
        }
        if level >= 2 && pte.has(PteFlags::HUGE) {
            return Err(WalkError::LargePage);
        }
        if !pte.has(PteFlags::WRITABLE) || (access.user && !pte.has(PteFlags::USER)) {
            return Err(WalkError::Protection);
        }
        table = pte.mfn();
    }
    Ok(Maddr(table.addr().0 | va.page_offset()))
}

/// Pages whose translations [`for_each_chunk`] keeps between validating and delivering (a range of at most
/// this many pages is walked once per page; a longer one twice).
pub const KEPT_PAGES: usize = 4;

/// The range checks every buffer gets before any walk: length limit, wrap-around, canonical ends in one
/// half, outside the hypervisor's reserved slots. Returns the last byte's address.
fn check_range(va: Gva, len: u64, max_len: u64) -> Result<Gva, WalkError> {
    if len > max_len {
        return Err(WalkError::TooLong);
    }
    let last = va.checked_add(len - 1).ok_or(WalkError::Overflow)?;
    check_va(va)?;
    check_va(last)?;
    if (va.0 >> 63) != (last.0 >> 63) {
        // Both ends canonical but in different halves: the range spans the non-canonical hole.
        return Err(WalkError::NonCanonical);
    }
    if va.0 < RESERVED_VA_END && last.0 >= RESERVED_VA_START {
        return Err(WalkError::Reserved);
    }
    Ok(last)
}

/// Checks a whole guest buffer `[va, va+len)` and calls `f(maddr, chunk_len)` for each physically contiguous
/// piece (one per page) in order. Every page is validated before `f` is called even once, so a failure has no
/// side effects.
///
/// Each page is walked once when the range spans at most [`KEPT_PAGES`] pages (the translations are kept
/// from the validating pass); a longer range is walked twice (validate, then deliver). The caller must keep
/// the domain's page tables from changing in between (PV guests can only change them through the
/// hypervisor); if they did change anyway, the second walk's error is returned after some chunks were
/// delivered.
pub fn for_each_chunk(
    mem: &impl PhysRead,
    l4: Mfn,
    va: Gva,
    len: u64,
    access: Access,
    max_len: u64,
    mut f: impl FnMut(Maddr, usize),
) -> Result<(), WalkError> {
    if len == 0 {
        return if len > max_len {
            Err(WalkError::TooLong)
        } else {
            Ok(())
        };
    }
    // Every page of the range is canonical and allowed from here on: the walks skip that check.
    let last = check_range(va, len, max_len)?;
    let pages = ((last.0 >> 12) - (va.0 >> 12) + 1) as usize;
    if pages == 1 {
        // The common small access: one walk, one chunk (len <= PAGE_SIZE, so it fits in usize).
        let ma = walk_allowed(mem, l4, va, access)?;
        f(ma, len as usize);
        return Ok(());
    }
    // Pass 1: validate every page, keeping the first translations. Pass 2: deliver.
    let mut kept = [Maddr(0); KEPT_PAGES];
    let mut cur = va;
    for i in 0..pages {
        let ma = walk_allowed(mem, l4, cur, access)?;
        if let Some(slot) = kept.get_mut(i) {
            *slot = ma;
        }
        if i + 1 < pages {
            // Cannot overflow: the next page start is <= last.
            cur = Gva((cur.0 & !(PAGE_SIZE - 1)) + PAGE_SIZE);
        }
    }
    let mut cur = va;
    let mut left = len;
    for i in 0..pages {
        let chunk = (PAGE_SIZE - cur.page_offset()).min(left);
        let ma = match kept.get(i) {
            Some(&ma) => ma,
            None => walk_allowed(mem, l4, cur, access)?,
        };
        // chunk <= PAGE_SIZE, so it fits in usize.
        f(ma, chunk as usize);
        left -= chunk;
        if left > 0 {
            // Cannot overflow: cur + left - 1 <= last.
            cur = Gva(cur.0 + chunk);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::phys::fake::FakeMachine;

    const P: PteFlags = PteFlags::PRESENT;
    const W: PteFlags = PteFlags::WRITABLE;
    const U: PteFlags = PteFlags::USER;

    /// A tiny page-table builder: frame 1 is the L4, page-table frames from 2 upward, data frames from 64.
    struct Tables {
        m: FakeMachine,
        next: u64,
    }

    impl Tables {
        fn new() -> Self {
            Tables {
                m: FakeMachine::new(128),
                next: 2,
            }
        }
        fn entry(&self, table: Mfn, idx: usize) -> Pte {
            Pte(self.m.read_u64(Maddr(table.addr().0 + idx as u64 * 8)))
        }
        fn set(&mut self, table: Mfn, idx: usize, pte: Pte) {
            self.m
                .write_u64(Maddr(table.addr().0 + idx as u64 * 8), pte.0);
        }
        /// Maps `va` to `mfn` with leaf flags `leaf`, intermediate flags `mid`.
        fn map(&mut self, va: Gva, mfn: Mfn, mid: PteFlags, leaf: PteFlags) {
            let mut t = Mfn(1);
            for level in (2..=4).rev() {
                let idx = va.table_index(level);
                let e = self.entry(t, idx);
                t = if e.is_present() {
                    self.set(t, idx, e.with_flags(mid));
                    e.mfn()
                } else {
                    let n = Mfn(self.next);
                    self.next += 1;
                    self.set(t, idx, Pte::new(n, mid));
                    n
                };
            }
            self.set(t, va.table_index(1), Pte::new(mfn, leaf));
        }
        /// The entry at `level` for `va` (the tables must exist down to that level).
        fn slot(&self, va: Gva, level: u32) -> (Mfn, usize) {
            let mut t = Mfn(1);
            for l in ((level + 1)..=4).rev() {
                t = self.entry(t, va.table_index(l)).mfn();
            }
            (t, va.table_index(level))
        }
    }

    const VA: Gva = Gva(0xffff_ffff_8000_0000);

    #[test]
    fn translate_ok_and_offsets() {
        let mut t = Tables::new();
        t.map(VA, Mfn(70), P | W, P | W);
        t.map(Gva(VA.0 + 0x1000), Mfn(65), P | W, P);
        let l4 = Mfn(1);
        assert_eq!(
            translate(&t.m, l4, Gva(VA.0 + 0x123), Access::READ),
            Ok(Maddr(70 * 4096 + 0x123))
        );
        assert_eq!(
            translate(&t.m, l4, Gva(VA.0 + 0x1fff), Access::READ),
            Ok(Maddr(65 * 4096 + 0xfff))
        );
        assert_eq!(translate(&t.m, l4, VA, Access::WRITE), Ok(Maddr(70 * 4096)));
        assert_eq!(
            translate(&t.m, l4, Gva(VA.0 + 0x1000), Access::WRITE),
            Err(WalkError::Protection)
        );
        assert_eq!(
            translate(&t.m, l4, Gva(VA.0 + 0x2000), Access::READ),
            Err(WalkError::NotPresent { level: 1 })
        );
        assert_eq!(
            translate(&t.m, l4, Gva(0x1000), Access::READ),
            Err(WalkError::NotPresent { level: 4 })
        );
        assert_eq!(
            translate(&t.m, l4, Gva(VA.0 + (1 << 21)), Access::READ),
            Err(WalkError::NotPresent { level: 2 })
        );
        assert_eq!(
            translate(&t.m, l4, Gva(0xffff_ff80_0000_0000), Access::READ),
            Err(WalkError::NotPresent { level: 3 })
        );
    }

    #[test]
    fn refuses_bad_addresses() {
        let t = Tables::new();
        let l4 = Mfn(1);
        assert_eq!(
            translate(&t.m, l4, Gva(0x0000_8000_0000_0000), Access::READ),
            Err(WalkError::NonCanonical)
        );
        assert_eq!(
            translate(&t.m, l4, Gva(RESERVED_VA_START), Access::READ),
            Err(WalkError::Reserved)
        );
        assert_eq!(
            translate(&t.m, l4, Gva(RESERVED_VA_END - 1), Access::READ),
            Err(WalkError::Reserved)
        );
        assert_eq!(
            translate(&t.m, l4, Gva(abi::layout::ENTRY_REGION_VA), Access::READ),
            Err(WalkError::Reserved)
        );
    }

    #[test]
    fn permissions_at_every_level() {
        let l4 = Mfn(1);
        for level in 1..=4u32 {
            let mut t = Tables::new();
            t.map(VA, Mfn(70), P | W | U, P | W | U);
            assert_eq!(
                translate(
                    &t.m,
                    l4,
                    VA,
                    Access {
                        write: true,
                        user: true
                    }
                ),
                Ok(Maddr(70 * 4096))
            );
            let (tab, idx) = t.slot(VA, level);
            let e = t.entry(tab, idx);
            t.set(tab, idx, e.with_flags(P | U));
            assert_eq!(
                translate(&t.m, l4, VA, Access::WRITE),
                Err(WalkError::Protection),
                "L{level}"
            );
            assert_eq!(
                translate(
                    &t.m,
                    l4,
                    VA,
                    Access {
                        write: false,
                        user: true
                    }
                ),
                Ok(Maddr(70 * 4096))
            );
            t.set(tab, idx, e.with_flags(P | W));
            assert_eq!(
                translate(
                    &t.m,
                    l4,
                    VA,
                    Access {
                        write: false,
                        user: true
                    }
                ),
                Err(WalkError::Protection)
            );
            assert_eq!(translate(&t.m, l4, VA, Access::WRITE), Ok(Maddr(70 * 4096)));
            t.set(tab, idx, e.with_flags(W | U));
            assert_eq!(
                translate(&t.m, l4, VA, Access::READ),
                Err(WalkError::NotPresent { level })
            );
        }
    }

    /// Every combination of PRESENT, WRITABLE, USER and bit 7 in the entry of every level, for every
    /// access: the error (or success) is the one the rules give in their order — not present, then a
    /// large page (levels 2..4), then the permission — whatever fast test `translate` makes first.
    #[test]
    fn every_flag_combination_gives_the_rules_first_error() {
        let l4 = Mfn(1);
        let bits = [P, W, U, PteFlags::HUGE];
        for level in 1..=4u32 {
            for combo in 0..16u32 {
                let flags = (0..4)
                    .filter(|b| combo & (1 << b) != 0)
                    .fold(PteFlags::empty(), |f, b| f | bits[b]);
                let mut t = Tables::new();
                t.map(VA, Mfn(70), P | W | U, P | W | U);
                let (tab, idx) = t.slot(VA, level);
                let e = t.entry(tab, idx);
                t.set(tab, idx, Pte::new(e.mfn(), flags));
                for (write, user) in [(false, false), (true, false), (false, true), (true, true)] {
                    let want = if !flags.contains(P) {
                        Err(WalkError::NotPresent { level })
                    } else if level >= 2 && flags.contains(PteFlags::HUGE) {
                        Err(WalkError::LargePage)
                    } else if (write && !flags.contains(W)) || (user && !flags.contains(U)) {
                        Err(WalkError::Protection)
                    } else {
                        Ok(Maddr(70 * 4096))
                    };
                    assert_eq!(
                        translate(&t.m, l4, VA, Access { write, user }),
                        want,
                        "L{level} flags {flags:?} write {write} user {user}"
                    );
                }
            }
        }
    }

    /// Entries naming frames at or above 4 GiB leave the fast test for the exact walk: the same result.
    #[test]
    fn frames_above_4g_take_the_exact_walk() {
        let l4 = Mfn(1);
        let high = Mfn(0x10_0000); // 4 GiB
        let mut t = Tables::new();
        t.map(VA, high, P | W, P | W);
        assert_eq!(
            translate(&t.m, l4, Gva(VA.0 + 0x18), Access::WRITE),
            Ok(Maddr(high.addr().0 + 0x18))
        );
        let (tab, idx) = t.slot(VA, 1);
        t.set(tab, idx, Pte::new(high, P));
        assert_eq!(
            translate(&t.m, l4, VA, Access::WRITE),
            Err(WalkError::Protection)
        );
        // A table above 4 GiB: the fake machine reads zeroes there, so the next level is not present.
        let (tab, idx) = t.slot(VA, 2);
        t.set(tab, idx, Pte::new(Mfn(0x10_0001), P | W));
        assert_eq!(
            translate(&t.m, l4, VA, Access::READ),
            Err(WalkError::NotPresent { level: 1 })
        );
        // Bit 51, the highest address bit.
        t.set(tab, idx, Pte(P.bits() | (1 << 51)));
        assert_eq!(
            translate(&t.m, l4, VA, Access::READ),
            Err(WalkError::NotPresent { level: 1 })
        );
    }

    #[test]
    fn l1_table_of_every_kind_of_entry() {
        let l4 = Mfn(1);
        let mut t = Tables::new();
        t.map(VA, Mfn(70), P | W, P | W);
        let (l1, _) = t.slot(VA, 1);
        assert_eq!(l1_table(&t.m, l4, VA), Some(l1));
        // No permission needed at any level; PS or a missing entry at L4..L2 refused.
        for level in 2..=4u32 {
            let (tab, idx) = t.slot(VA, level);
            let e = t.entry(tab, idx);
            t.set(tab, idx, e.with_flags(P | U));
            assert_eq!(l1_table(&t.m, l4, VA), Some(l1), "L{level}");
            t.set(tab, idx, e.with_flags(P | W | PteFlags::HUGE));
            assert_eq!(l1_table(&t.m, l4, VA), None, "L{level}");
            t.set(tab, idx, e.with_flags(W));
            assert_eq!(l1_table(&t.m, l4, VA), None, "L{level}");
            t.set(tab, idx, e);
        }
        // An L1 above 4 GiB: found by the exact walk.
        let (tab, idx) = t.slot(VA, 2);
        t.set(tab, idx, Pte::new(Mfn(0x10_0000), P | W));
        assert_eq!(l1_table(&t.m, l4, VA), Some(Mfn(0x10_0000)));
    }

    #[test]
    fn large_pages_refused() {
        let l4 = Mfn(1);
        for level in 2..=4u32 {
            let mut t = Tables::new();
            t.map(VA, Mfn(70), P | W, P | W);
            let (tab, idx) = t.slot(VA, level);
            let e = t.entry(tab, idx);
            t.set(tab, idx, e.with_flags(P | W | PteFlags::HUGE));
            assert_eq!(
                translate(&t.m, l4, VA, Access::READ),
                Err(WalkError::LargePage),
                "L{level}"
            );
        }
        // In L1, bit 7 is PAT: fine.
        let mut t = Tables::new();
        t.map(VA, Mfn(70), P | W, P | PteFlags::PAT);
        assert_eq!(translate(&t.m, l4, VA, Access::READ), Ok(Maddr(70 * 4096)));
    }

    #[test]
    fn chunks_split_at_pages() {
        let mut t = Tables::new();
        t.map(VA, Mfn(70), P | W, P | W);
        t.map(Gva(VA.0 + 0x1000), Mfn(66), P | W, P | W);
        t.map(Gva(VA.0 + 0x2000), Mfn(90), P | W, P | W);
        let mut got = Vec::new();
        let r = for_each_chunk(
            &t.m,
            Mfn(1),
            Gva(VA.0 + 0xff0),
            0x1020,
            Access::WRITE,
            1 << 20,
            |m, n| got.push((m, n)),
        );
        assert_eq!(r, Ok(()));
        assert_eq!(
            got,
            vec![
                (Maddr(70 * 4096 + 0xff0), 0x10),
                (Maddr(66 * 4096), 0x1000),
                (Maddr(90 * 4096), 0x10)
            ]
        );
        // Exactly one page, aligned.
        got.clear();
        for_each_chunk(&t.m, Mfn(1), VA, 4096, Access::READ, 4096, |m, n| {
            got.push((m, n))
        })
        .unwrap();
        assert_eq!(got, vec![(Maddr(70 * 4096), 4096)]);
        // Within a page.
        got.clear();
        for_each_chunk(&t.m, Mfn(1), Gva(VA.0 + 8), 8, Access::READ, 8, |m, n| {
            got.push((m, n))
        })
        .unwrap();
        assert_eq!(got, vec![(Maddr(70 * 4096 + 8), 8)]);
    }

    #[test]
    fn chunks_validate_everything_first() {
        let mut t = Tables::new();
        t.map(VA, Mfn(70), P | W, P | W);
        t.map(Gva(VA.0 + 0x1000), Mfn(66), P | W, P); // read-only second page
        let mut calls = 0;
        let r = for_each_chunk(&t.m, Mfn(1), VA, 0x2000, Access::WRITE, 1 << 20, |_, _| {
            calls += 1
        });
        assert_eq!(r, Err(WalkError::Protection));
        assert_eq!(calls, 0);
        let r = for_each_chunk(&t.m, Mfn(1), VA, 0x2001, Access::READ, 1 << 20, |_, _| {
            calls += 1
        });
        assert_eq!(r, Err(WalkError::NotPresent { level: 1 }));
        assert_eq!(calls, 0);
        assert_eq!(
            for_each_chunk(&t.m, Mfn(1), VA, 0x2000, Access::READ, 1 << 20, |_, _| {
                calls += 1
            }),
            Ok(())
        );
        assert_eq!(calls, 2);
    }

    #[test]
    fn chunk_range_checks() {
        let t = Tables::new();
        let l4 = Mfn(1);
        let mut calls = 0;
        let mut run = |va: u64, len: u64, max: u64| {
            for_each_chunk(&t.m, l4, Gva(va), len, Access::READ, max, |_, _| calls += 1)
        };
        assert_eq!(run(0x1000, 0, 0), Ok(()));
        assert_eq!(run(0x0000_8000_0000_0000, 0, 16), Ok(())); // len 0: nothing to check
        assert_eq!(run(0x1000, 17, 16), Err(WalkError::TooLong));
        assert_eq!(run(u64::MAX - 7, 16, 1 << 20), Err(WalkError::Overflow));
        assert_eq!(
            run(0x0000_7fff_ffff_fff0, 0x20, 1 << 20),
            Err(WalkError::NonCanonical)
        );
        assert_eq!(
            run(0x0000_8000_0000_0000, 1, 1 << 20),
            Err(WalkError::NonCanonical)
        );
        // From the low half over the hole into the high half: both ends canonical and allowed.
        assert_eq!(
            run(0x1000, RESERVED_VA_END + 0x10 - 0x1000 + 1, u64::MAX),
            Err(WalkError::NonCanonical)
        );
        assert_eq!(
            run(RESERVED_VA_END - 8, 16, 1 << 20),
            Err(WalkError::Reserved)
        );
        assert_eq!(
            run(RESERVED_VA_START - 8, 16, 1 << 20),
            Err(WalkError::NonCanonical)
        );
        assert_eq!(
            run(RESERVED_VA_END, 16, 1 << 20),
            Err(WalkError::NotPresent { level: 4 })
        );
        assert_eq!(calls, 0);
    }

    #[test]
    fn display() {
        assert_eq!(
            WalkError::NotPresent { level: 2 }.to_string(),
            "L2 entry not present"
        );
        for e in [
            WalkError::NonCanonical,
            WalkError::Reserved,
            WalkError::Protection,
            WalkError::LargePage,
            WalkError::Overflow,
            WalkError::TooLong,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }
}
