//! Log-dirty tracking of a PV domain by write protection (live migration, `XEN_DOMCTL_SHADOW_OP`); see
//! docs/ARCHITECTURE.md, "Live migration".
//!
//! A PV guest's page tables pass through the hypervisor's validation, so every writable mapping it has is an
//! L1 entry the hypervisor knows. While log-dirty is on for a domain:
//!
//! - **The harvest** ([`LogDirty::protect`], at enable and after each `CLEAN`) clears RW in every writable
//!   entry of every validated L1 table of the domain and remembers, per L1 slot, that the guest's *logical*
//!   entry is writable (a bitmap of 512 bits per protected L1 frame, here in the hypervisor: no PTE bit is
//!   taken from the guest). The reference counts keep counting the logical entry (`Writable` type on the
//!   target), so a frame the guest maps writable still can never become a page table.
//! - **A write fault** of the guest on such an entry ([`LogDirty::fault`]) marks the target frame dirty and
//!   puts RW back; the guest retries the instruction and never sees the fault.
//! - **The validator** reads the entry `mmu_update` replaces through [`LogDirty::logical`] (a protected entry
//!   reads as writable, so the right references are dropped); a table about to lose its type gets its RW
//!   bits back first ([`LogDirty::dropped`]: its devalidation then reads what the references count); every
//!   entry it writes goes through [`LogDirty::stored`]: the slot forgets its protection (the guest's new
//!   value is stored as given), the table frame is marked (the hypervisor wrote it) and so is the target of
//!   a writable entry. An L1 table validated after the harvest (a pin, a link into an L2, a new base) has
//!   the targets of its writable entries marked ([`LogDirty::validated`]), so it is covered until the next
//!   harvest protects it.
//! - **The hypervisor's own writes** through the guest's mappings (copy_to_guest, bounce frames) walk the
//!   tables in software: a protected entry is writable for them ([`LogDirty::walk_write`]) and marks its
//!   target. Frames the hypervisor writes by machine address are marked with [`LogDirty::mark`], and the
//!   frames it holds for its writes (shared_info) are reported by every harvest.
//!
//! The invariant the property test checks: every L1 entry stored writable points at a frame marked since
//! the last harvest, and every logically writable entry stored read-only is protected. So no write — by the
//! guest, through any mapping, or by the hypervisor — reaches a frame without marking it.
//!
//! **Dirty bitmap by machine frame**, not by pfn: the marks happen where only the machine frame is at hand,
//! under locks that forbid consulting the M2P, and the guest may change a frame's pfn at any time
//! (`MMU_MACHPHYS_UPDATE`, which marks the frame); the harvest translates to pfns once, through the M2P of
//! that moment, and reports only frames the domain owns.
//!
//! One domain at a time has log-dirty (the migration is one at a time too); [`Recs`] bounds the protected
//! L1 tables: the writable entries of tables beyond it are not protected, their targets are marked at every
//! harvest instead (sent every round: correct, only slower).

#![forbid(unsafe_code)]

use abi::errno::Errno;
use abi::types::Mfn;

use super::pte::PteFlags;

const P: u64 = PteFlags::PRESENT.bits();
const RW: u64 = PteFlags::WRITABLE.bits();
const ADDR: u64 = super::pte::Pte::ADDR_MASK;

/// The frame table and page-table memory the harvest and the fault fixup need.
pub trait Frames {
    /// Entry `slot` of the page table in frame `table`, as stored.
    fn read(&self, table: Mfn, slot: usize) -> u64;
    /// Store `v` as entry `slot` of `table` (a plain store: no hook, no reference change).
    fn write(&mut self, table: Mfn, slot: usize, v: u64);
    /// Machine frames (the frame table's length).
    fn frames(&self) -> u64;
    /// The owner of `mfn`.
    fn owner(&self, mfn: Mfn) -> Option<u16>;
    /// True if `mfn` is a validated L1 table.
    fn is_l1(&self, mfn: Mfn) -> bool;
    /// True if the hypervisor holds `mfn` for its own writes (shared_info).
    fn hv_written(&self, mfn: Mfn) -> bool;
    /// The pfn the M2P gives `mfn`.
    fn pfn(&self, mfn: Mfn) -> Option<u64>;
}

/// The protected slots of one L1 table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rec {
    /// The L1 table's frame.
    pub l1: u64,
    /// One bit per slot: the guest's entry is writable, stored without RW.
    pub bits: [u64; 8],
}

impl Rec {
    const EMPTY: Rec = Rec {
        l1: u64::MAX,
        bits: [0; 8],
    };
}

/// Counters of one log-dirty session (Xen's `xen_domctl_shadow_op_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Write faults fixed since the last harvest.
    pub faults: u32,
    /// Frames reported by the last harvest.
    pub dirty: u32,
}

/// The log-dirty state: `W` words of dirty bits by machine frame, at most `R` protected L1 tables.
pub struct LogDirty<const W: usize, const R: usize> {
    dom: Option<u16>,
    dirty: [u64; W],
    recs: [Rec; R],
    n: usize,
    stats: Stats,
}

impl<const W: usize, const R: usize> Default for LogDirty<W, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const W: usize, const R: usize> LogDirty<W, R> {
    /// Off.
    pub const fn new() -> Self {
        LogDirty {
            dom: None,
            dirty: [0; W],
            recs: [Rec::EMPTY; R],
            n: 0,
            stats: Stats {
                faults: 0,
                dirty: 0,
            },
        }
    }

    /// The domain with log-dirty on.
    pub fn domain(&self) -> Option<u16> {
        self.dom
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// L1 tables with protected slots.
    pub fn protected_tables(&self) -> usize {
        self.n
    }

    /// Turn log-dirty on for `dom` and protect its writable entries. `-EINVAL` if it is on for `dom`
    /// already (Xen's answer), `-EBUSY` if it is on for another domain.
    pub fn enable(&mut self, f: &mut impl Frames, dom: u16) -> Result<(), Errno> {
        match self.dom {
            Some(d) if d == dom => return Err(Errno::EINVAL),
            Some(_) => return Err(Errno::EBUSY),
            None => {}
        }
        self.dirty = [0; W];
        self.recs[..self.n].fill(Rec::EMPTY);
        self.n = 0;
        self.stats = Stats::default();
        self.dom = Some(dom);
        self.protect(f);
        Ok(())
    }

    /// Turn log-dirty off: every protected entry gets RW back, the bitmap is cleared. Harmless when off.
    pub fn disable(&mut self, f: &mut impl Frames) {
        for r in &self.recs[..self.n] {
            for slot in 0..512 {
                if r.bits[slot / 64] & (1 << (slot % 64)) != 0 {
                    let v = f.read(Mfn(r.l1), slot);
                    if v & P != 0 {
                        f.write(Mfn(r.l1), slot, v | RW);
                    }
                }
            }
        }
        self.recs[..self.n].fill(Rec::EMPTY);
        self.n = 0;
        self.dirty = [0; W];
        self.dom = None;
    }

    /// `CLEAN` (`peek` false) or `PEEK`: call `out(pfn)` for every frame of the domain written since the
    /// last harvest (and every frame the hypervisor holds for its writes); `CLEAN` then clears the bitmap
    /// and protects again. Returns how many were reported. `-EINVAL` when off.
    pub fn clean(
        &mut self,
        f: &mut impl Frames,
        peek: bool,
        mut out: impl FnMut(u64),
    ) -> Result<u32, Errno> {
        let dom = self.dom.ok_or(Errno::EINVAL)?;
        let mut n = 0u32;
        for mfn in 0..f.frames().min((W * 64) as u64) {
            let m = Mfn(mfn);
            let marked = self.dirty[(mfn / 64) as usize] & (1 << (mfn % 64)) != 0;
            if (marked || f.hv_written(m))
                && f.owner(m) == Some(dom)
                && let Some(pfn) = f.pfn(m)
            {
                out(pfn);
                n = n.saturating_add(1);
            }
        }
        self.stats.dirty = n;
        if !peek {
            self.dirty = [0; W];
            self.stats.faults = 0;
            self.protect(f);
        }
        Ok(n)
    }

    /// The harvest's protection: RW cleared in every writable entry of every validated L1 of the domain,
    /// remembered per slot; the targets of entries beyond [`Recs`] capacity are marked instead.
    pub fn protect(&mut self, f: &mut impl Frames) {
        let Some(dom) = self.dom else {
            return;
        };
        for t in 0..f.frames() {
            let table = Mfn(t);
            if f.owner(table) != Some(dom) || !f.is_l1(table) {
                continue;
            }
            for slot in 0..512 {
                let v = f.read(table, slot);
                if v & (P | RW) != P | RW {
                    continue;
                }
                match self.rec_or_insert(t) {
                    Some(i) => {
                        self.recs[i].bits[slot / 64] |= 1 << (slot % 64);
                        f.write(table, slot, v & !RW);
                    }
                    None => self.mark(Mfn((v & ADDR) >> 12)),
                }
            }
        }
    }

    fn find(&self, l1: u64) -> Result<usize, usize> {
        self.recs[..self.n].binary_search_by_key(&l1, |r| r.l1)
    }

    fn rec_or_insert(&mut self, l1: u64) -> Option<usize> {
        match self.find(l1) {
            Ok(i) => Some(i),
            Err(_) if self.n == R => None,
            Err(i) => {
                self.recs.copy_within(i..self.n, i + 1);
                self.recs[i] = Rec { l1, bits: [0; 8] };
                self.n += 1;
                Some(i)
            }
        }
    }

    /// True if slot `slot` of `table` is protected (the guest's entry is writable, stored without RW).
    pub fn is_protected(&self, table: Mfn, slot: usize) -> bool {
        slot < 512
            && self
                .find(table.0)
                .is_ok_and(|i| self.recs[i].bits[slot / 64] & (1 << (slot % 64)) != 0)
    }

    fn unprotect(&mut self, table: Mfn, slot: usize) {
        if slot < 512
            && let Ok(i) = self.find(table.0)
        {
            self.recs[i].bits[slot / 64] &= !(1 << (slot % 64));
        }
    }

    /// Mark machine frame `mfn` written (nothing when off).
    pub fn mark(&mut self, mfn: Mfn) {
        if self.dom.is_some()
            && let Some(w) = self.dirty.get_mut((mfn.0 / 64) as usize)
        {
            *w |= 1 << (mfn.0 % 64);
        }
    }

    /// True if `mfn` is marked.
    pub fn is_marked(&self, mfn: Mfn) -> bool {
        self.dirty
            .get((mfn.0 / 64) as usize)
            .is_some_and(|w| w & (1 << (mfn.0 % 64)) != 0)
    }

    /// `mmu_update` reads entry `slot` of validated table `table`, stored as `raw`, to replace it: the
    /// guest's logical entry (RW back if protected, so the right references are dropped); the target of a
    /// writable entry is marked.
    pub fn logical(&mut self, table: Mfn, slot: usize, raw: u64) -> u64 {
        if self.dom.is_none() {
            return raw;
        }
        let v = if raw & P != 0 && self.is_protected(table, slot) {
            raw | RW
        } else {
            raw
        };
        if v & (P | RW) == P | RW {
            self.mark(Mfn((v & ADDR) >> 12));
        }
        v
    }

    /// The validator stores `v` as entry `slot` of `table`: the slot is no longer protected, the table
    /// frame and the target of a writable entry are marked.
    pub fn stored(&mut self, table: Mfn, slot: usize, v: u64) {
        if self.dom.is_none() {
            return;
        }
        self.unprotect(table, slot);
        self.mark(table);
        if v & (P | RW) == P | RW {
            self.mark(Mfn((v & ADDR) >> 12));
        }
    }

    /// Table `table` is about to lose its validated type: its protected slots get RW back through
    /// `restore(slot)` (so the devalidation that follows reads the entries its references count, and the
    /// frame, the guest's data again, holds exactly what the guest wrote) and are forgotten; the frame is
    /// marked.
    pub fn dropped(&mut self, table: Mfn, mut restore: impl FnMut(usize)) {
        if let Ok(i) = self.find(table.0) {
            let bits = self.recs[i].bits;
            self.recs.copy_within(i + 1..self.n, i);
            self.n -= 1;
            self.recs[self.n] = Rec::EMPTY;
            for slot in (0..512).filter(|s| bits[s / 64] & (1 << (s % 64)) != 0) {
                restore(slot);
            }
            self.mark(table);
        }
    }

    /// Table `table` was just validated as a level-`level` table with `entries`: the targets of its writable
    /// entries are marked (an L1 validated after the harvest is not protected until the next one).
    pub fn validated(&mut self, level: u32, entries: impl Iterator<Item = u64>) {
        if self.dom.is_none() || level != 1 {
            return;
        }
        for v in entries {
            if v & (P | RW) == P | RW {
                self.mark(Mfn((v & ADDR) >> 12));
            }
        }
    }

    /// A software walk for a hypervisor write met entry `slot` of L1 `table`, stored as `raw`, without
    /// RW: the entry to use (RW back if protected, the target marked).
    pub fn walk_write(&mut self, table: Mfn, slot: usize, raw: u64) -> u64 {
        if self.dom.is_none() || raw & P == 0 || !self.is_protected(table, slot) {
            return raw;
        }
        self.mark(Mfn((raw & ADDR) >> 12));
        raw | RW
    }

    /// A write fault of domain `dom` (address space rooted at L4 `root`) at `va`: true if it hit a
    /// protected entry, which is then writable again (its target marked): the guest retries the write.
    pub fn fault(&mut self, f: &mut impl Frames, dom: u16, root: Mfn, va: u64) -> bool {
        if self.dom != Some(dom) {
            return false;
        }
        let mut table = root;
        for level in [4u32, 3, 2] {
            let e = f.read(table, ((va >> (12 + 9 * (level - 1))) & 511) as usize);
            if e & P == 0 || e & PteFlags::HUGE.bits() != 0 {
                return false;
            }
            table = Mfn((e & ADDR) >> 12);
        }
        let slot = ((va >> 12) & 511) as usize;
        if !self.is_protected(table, slot) {
            return false;
        }
        let e = f.read(table, slot);
        self.unprotect(table, slot);
        if e & P == 0 {
            return false;
        }
        f.write(table, slot, e | RW);
        self.mark(Mfn((e & ADDR) >> 12));
        self.stats.faults = self.stats.faults.saturating_add(1);
        true
    }
}

/// Dirty-bitmap words: one bit per machine frame the hypervisor manages (1 GiB).
pub const WORDS: usize = (1 << 30) / 4096 / 64;
/// Most protected L1 tables (72 bytes each).
pub const RECS: usize = 1024;
/// The hypervisor's log-dirty state.
pub type Recs = LogDirty<WORDS, RECS>;

/// The one log-dirty state (leaf lock: nothing else is locked while it is held).
pub static STATE: spin::Mutex<Recs> = spin::Mutex::new(Recs::new());
/// Log-dirty is on for some domain: the hooks test only this when it is off.
static ON: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// True if log-dirty is on for some domain (one load).
#[inline(always)]
pub fn on() -> bool {
    ON.load(core::sync::atomic::Ordering::Relaxed)
}

/// Run `f` on the state and keep [`on`] in step with it.
pub fn with<R>(f: impl FnOnce(&mut Recs) -> R) -> R {
    let mut s = STATE.lock();
    let r = f(&mut s);
    ON.store(s.domain().is_some(), core::sync::atomic::Ordering::Relaxed);
    r
}

fn split(addr: u64) -> (Mfn, usize) {
    (Mfn(addr >> 12), ((addr & 0xfff) / 8) as usize)
}

// The hooks: when log-dirty is off each is one load and a branch, inlined at its call site; the work is
// in out-of-line, cold functions (so the callers' fast paths keep their shape: the icount budgets).

/// Hook: `mmu_update` reads the entry at machine address `addr`, stored as `raw`, to replace it.
#[inline(always)]
pub fn logical(addr: u64, raw: u64) -> u64 {
    if on() { logical_slow(addr, raw) } else { raw }
}

#[cold]
#[inline(never)]
fn logical_slow(addr: u64, raw: u64) -> u64 {
    let (t, s) = split(addr);
    STATE.lock().logical(t, s, raw)
}

/// Hook: the validator stores `v` at machine address `addr`.
#[inline(always)]
pub fn stored(addr: u64, v: u64) {
    if on() {
        stored_slow(addr, v);
    }
}

#[cold]
#[inline(never)]
fn stored_slow(addr: u64, v: u64) {
    let (t, s) = split(addr);
    STATE.lock().stored(t, s, v);
}

/// Hook: table `mfn` of level `level` was just validated; `entries` reads its entries.
#[inline(always)]
pub fn validated<I: Iterator<Item = u64>>(level: u32, entries: impl FnOnce() -> I) {
    if on() && level == 1 {
        STATE.lock().validated(level, entries());
    }
}

/// Hook: the table in frame `mfn` is about to lose its validated type; `restore(slot)` puts RW back.
#[inline(always)]
pub fn dropped(mfn: Mfn, restore: impl FnMut(usize)) {
    if on() {
        STATE.lock().dropped(mfn, restore);
    }
}

/// Hook: a hypervisor write walked to the read-only entry at `addr` (an L1 slot), stored as `raw`.
#[inline(always)]
pub fn walk_write(addr: u64, raw: u64) -> u64 {
    if on() {
        walk_write_slow(addr, raw)
    } else {
        raw
    }
}

#[cold]
#[inline(never)]
fn walk_write_slow(addr: u64, raw: u64) -> u64 {
    let (t, s) = split(addr);
    STATE.lock().walk_write(t, s, raw)
}

/// Hook: the hypervisor writes machine frame `mfn` of a domain by its machine address.
#[inline(always)]
pub fn mark(mfn: Mfn) {
    if on() {
        mark_slow(mfn);
    }
}

#[cold]
#[inline(never)]
fn mark_slow(mfn: Mfn) {
    STATE.lock().mark(mfn);
}

#[cfg(test)]
#[path = "logdirty_tests.rs"]
mod tests;
