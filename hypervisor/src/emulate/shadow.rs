//! Shadow page tables, virtual-TLB style: the real tables an emulate domain runs on are a cache of the
//! translations its own (guest-physical) tables allow, filled on hidden page faults and dropped when the
//! guest flushes (INVLPG, CR3 load, CR4.PGE toggles), with the accessed and dirty bits emulated.
//!
//! Rules every shadow leaf obeys (checked by the property test `shadow_proptest.rs`):
//! - it maps the machine frame backing a guest frame below the domain's size (a guest table naming a
//!   frame at or above it crashes the domain: the refusal is documented in ARCHITECTURE);
//! - it is writable only if every guest level is writable and the guest leaf is dirty (the first write
//!   takes a hidden fault that sets D), user only if every guest level is user, no-execute if any level is
//!   (with EFER.NXE), never global (a global shadow entry would survive the switch to another domain);
//! - the root's hypervisor slot (257: the entry region and entry stacks) is the hypervisor's own entry,
//!   installed in every root, and nothing else of the hypervisor is ever present.
#![forbid(unsafe_code)]

/// Entries per table.
pub const ENTRIES: usize = 512;
const P: u64 = 1;
const W: u64 = 1 << 1;
const U: u64 = 1 << 2;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
/// Software bit in shadow entries: the guest translation was global.
const SW_GLOBAL: u64 = 1 << 9;
/// Software bit in a shadow L3 entry: its subtree holds pieces of a guest 1 GiB page.
const SW_SPLIT_1G: u64 = 1 << 10;
const NX: u64 = 1 << 63;
/// Address bits of an entry.
pub const ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Intermediate shadow entries allow everything: permissions live in the leaves.
const TABLE_FLAGS: u64 = P | W | U | A;

/// Page-fault error-code bits.
pub mod pf {
    /// The translation was present (a protection violation).
    pub const PRESENT: u32 = 1;
    /// A write.
    pub const WRITE: u32 = 2;
    /// From CPL 3.
    pub const USER: u32 = 4;
    /// A reserved bit was set.
    pub const RSVD: u32 = 8;
    /// An instruction fetch.
    pub const FETCH: u32 = 16;
}

/// Guest-physical memory: frames 0..pages, each backed by a machine frame the domain owns.
pub trait GuestPhys {
    /// The domain's size in 4 KiB frames.
    fn pages(&self) -> u64;
    /// Read the aligned u64 at `gpa` (`gpa < pages × 4096`).
    fn read_u64(&self, gpa: u64) -> u64;
    /// Write the aligned u64 at `gpa` (`gpa < pages × 4096`).
    fn write_u64(&mut self, gpa: u64, v: u64);
    /// The machine frame backing guest frame `gfn` (`gfn < pages`).
    fn mfn_of(&self, gfn: u64) -> u64;
}

/// The frames shadow tables live in (hypervisor-owned, never mapped into any guest).
pub trait ShadowFrames {
    /// A zeroed frame, or `None` if the pool is empty.
    fn alloc(&mut self) -> Option<u64>;
    /// Return a frame to the pool.
    fn free(&mut self, mfn: u64);
    /// Entry `idx` of the table in frame `mfn`.
    fn read(&self, mfn: u64, idx: usize) -> u64;
    /// Set entry `idx` of the table in frame `mfn`.
    fn write(&mut self, mfn: u64, idx: usize, v: u64);
}

/// The kind of access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Fetch,
}

/// What the guest's tables say about an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The guest frame of the 4 KiB page holding the address.
    pub gfn: u64,
    /// Writable at every level.
    pub writable: bool,
    /// User at every level.
    pub user: bool,
    /// No-execute at some level (with NXE).
    pub nx: bool,
    /// The leaf is global.
    pub global: bool,
    /// The leaf is dirty.
    pub dirty: bool,
    /// The leaf is a 1 GiB page.
    pub huge_1g: bool,
}

/// Why a walk or a fill failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A fault the guest would take on a real machine: reflect #PF with this error code.
    Page(u32),
    /// The domain must be crashed (a table naming memory outside the domain, out of shadow frames, an
    /// address in the hypervisor's slot).
    Crash(&'static str),
}

/// The paging mode bits a walk depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// EFER.NXE.
    pub nxe: bool,
    /// CR4.PGE.
    pub pge: bool,
}

fn idx(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 511) as usize
}

/// Walk the guest's tables for `va` from the L4 at guest-physical `cr3`, checking `access` from `user`
/// mode, setting the accessed bits (and the dirty bit for a permitted write) when `set_ad`.
pub fn walk(
    mem: &mut dyn GuestPhys,
    cr3: u64,
    va: u64,
    access: Access,
    user: bool,
    mode: Mode,
    set_ad: bool,
) -> Result<Translation, Fault> {
    let limit = mem.pages() << 12;
    let mut code = if access == Access::Write {
        pf::WRITE
    } else {
        0
    } | if user { pf::USER } else { 0 }
        | if access == Access::Fetch && mode.nxe {
            pf::FETCH
        } else {
            0
        };
    let canonical = ((va as i64) << 16 >> 16) as u64 == va;
    if !canonical {
        // A real machine raises #GP for a non-canonical address; the emulator checks before walking.
        return Err(Fault::Crash(
            "non-canonical address reached the shadow walk",
        ));
    }
    let mut table = cr3 & ADDR;
    let (mut writable, mut usr, mut nx) = (true, true, false);
    let mut entries: [(u64, u64); 4] = [(0, 0); 4];
    let mut n = 0;
    let mut level = 4;
    let (leaf_frame_base, huge_1g, leaf) = loop {
        if table >= limit {
            return Err(Fault::Crash("guest page table outside the domain's memory"));
        }
        let ea = table + 8 * idx(va, level) as u64;
        let e = mem.read_u64(ea);
        if e & P == 0 {
            return Err(Fault::Page(code));
        }
        let rsvd = (e & NX != 0 && !mode.nxe)
            || (level == 4 && e & PS != 0)
            || (level == 3 && e & PS != 0 && e & 0x3fff_e000 != 0)
            || (level == 2 && e & PS != 0 && e & 0x1f_e000 != 0);
        if rsvd {
            return Err(Fault::Page(code | pf::PRESENT | pf::RSVD));
        }
        writable &= e & W != 0;
        usr &= e & U != 0;
        nx |= mode.nxe && e & NX != 0;
        entries[n] = (ea, e);
        n += 1;
        if level == 1 || (level <= 3 && e & PS != 0) {
            let size_mask = (1u64 << (12 + 9 * (level - 1))) - 1;
            break (
                (e & ADDR & !size_mask) + (va & size_mask & !0xfff),
                level == 3,
                e,
            );
        }
        table = e & ADDR;
        level -= 1;
    };
    let denied =
        (user && !usr) || (access == Access::Write && !writable) || (access == Access::Fetch && nx);
    if denied {
        code |= pf::PRESENT;
        return Err(Fault::Page(code));
    }
    if leaf_frame_base >= limit {
        return Err(Fault::Crash(
            "guest page table maps memory outside the domain",
        ));
    }
    if set_ad {
        for (i, &(ea, e)) in entries[..n].iter().enumerate() {
            let mut v = e | A;
            if i == n - 1 && access == Access::Write {
                v |= D;
            }
            if v != e {
                mem.write_u64(ea, v);
            }
        }
    }
    let dirty = leaf & D != 0 || (set_ad && access == Access::Write);
    Ok(Translation {
        gfn: leaf_frame_base >> 12,
        writable,
        user: usr,
        nx,
        global: mode.pge && leaf & G != 0,
        dirty,
        huge_1g,
    })
}

/// How many shadow roots are cached (by guest CR3).
pub const ROOTS: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Root {
    guest_l4: u64,
    mfn: u64,
    last_use: u64,
}

/// Counters of the shadow code's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShadowStats {
    /// Hidden faults (the shadow lacked a translation the guest allows).
    pub hidden: u64,
    /// True faults (reflected to the guest).
    pub true_faults: u64,
    /// Root switches that found the root cached.
    pub root_hits: u64,
    /// Root switches that built a new root.
    pub root_misses: u64,
    /// Times the whole shadow was dropped because the frame pool ran dry.
    pub pool_resets: u64,
}

/// The shadow page tables of one emulate domain.
#[derive(Debug)]
pub struct Shadow {
    roots: [Option<Root>; ROOTS],
    current: usize,
    tick: u64,
    hv_slot: usize,
    hv_entry: u64,
    /// Work counters.
    pub stats: ShadowStats,
}

/// The result of a page fault's handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultResult {
    /// Hidden: the shadow was filled, retry the instruction.
    Hidden,
    /// True: reflect #PF with this error code (CR2 = the address).
    Reflect(u32),
}

impl Shadow {
    /// A shadow with no roots yet; every root gets L4 entry `hv_entry` at `hv_slot`.
    pub fn new(hv_slot: usize, hv_entry: u64) -> Shadow {
        Shadow {
            roots: [None; ROOTS],
            current: 0,
            tick: 0,
            hv_slot,
            hv_entry,
            stats: ShadowStats::default(),
        }
    }

    /// The machine frame of the current root (what real CR3 holds), if any.
    pub fn current_root(&self) -> Option<u64> {
        self.roots[self.current].map(|r| r.mfn)
    }

    fn free_subtree(&self, fr: &mut dyn ShadowFrames, mfn: u64, level: u32) {
        if level > 1 {
            for i in 0..ENTRIES {
                if level == 4 && i == self.hv_slot {
                    continue;
                }
                let e = fr.read(mfn, i);
                if e & P != 0 {
                    self.free_subtree(fr, (e & ADDR) >> 12, level - 1);
                }
            }
        }
        fr.free(mfn);
    }

    /// Clear the entries of table `mfn` (level `level`) that are not global leaves; free emptied tables.
    /// Returns true if the table is now empty.
    fn flush_table(
        &self,
        fr: &mut dyn ShadowFrames,
        mfn: u64,
        level: u32,
        keep_global: bool,
    ) -> bool {
        let mut empty = true;
        for i in 0..ENTRIES {
            if level == 4 && i == self.hv_slot {
                continue;
            }
            let e = fr.read(mfn, i);
            if e & P == 0 {
                continue;
            }
            if level == 1 {
                if keep_global && e & SW_GLOBAL != 0 {
                    empty = false;
                } else {
                    fr.write(mfn, i, 0);
                }
            } else if self.flush_table(fr, (e & ADDR) >> 12, level - 1, keep_global) {
                fr.free((e & ADDR) >> 12);
                fr.write(mfn, i, 0);
            } else {
                empty = false;
            }
        }
        empty
    }

    /// Drop every translation of every root (`keep_global`: except global ones), e.g. on CR4.PGE changes
    /// or a CR0 write.
    pub fn flush_all(&mut self, fr: &mut dyn ShadowFrames, keep_global: bool) {
        for r in self.roots.iter().flatten() {
            self.flush_table(fr, r.mfn, 4, keep_global);
        }
    }

    /// Forget everything (domain teardown): every frame back to the pool.
    pub fn destroy(&mut self, fr: &mut dyn ShadowFrames) {
        for i in 0..ROOTS {
            if let Some(root) = self.roots[i].take() {
                self.free_subtree(fr, root.mfn, 4);
            }
        }
    }

    /// A CR3 load of guest L4 `cr3`: switch to its cached root (dropping its non-global translations, as a
    /// real CR3 load drops the TLB's), or build one, evicting the least recently used. Returns the root's
    /// machine frame for the real CR3.
    pub fn load_cr3(
        &mut self,
        mem: &dyn GuestPhys,
        fr: &mut dyn ShadowFrames,
        cr3: u64,
        mode: Mode,
    ) -> Result<u64, Fault> {
        let l4 = cr3 & ADDR;
        if l4 >= mem.pages() << 12 {
            return Err(Fault::Crash("CR3 outside the domain's memory"));
        }
        self.tick += 1;
        if let Some(i) = self
            .roots
            .iter()
            .position(|r| r.is_some_and(|r| r.guest_l4 == l4))
        {
            self.stats.root_hits += 1;
            let mfn = self.roots[i].map(|r| r.mfn).unwrap_or(0);
            self.flush_table(fr, mfn, 4, mode.pge);
            if let Some(r) = self.roots[i].as_mut() {
                r.last_use = self.tick;
            }
            self.current = i;
            return Ok(mfn);
        }
        self.stats.root_misses += 1;
        let slot = match self.roots.iter().position(Option::is_none) {
            Some(s) => s,
            None => {
                let lru = (0..ROOTS)
                    .min_by_key(|&i| self.roots[i].map_or(0, |r| r.last_use))
                    .unwrap_or(0);
                if let Some(old) = self.roots[lru].take() {
                    self.free_subtree(fr, old.mfn, 4);
                }
                lru
            }
        };
        let mfn = match fr.alloc() {
            Some(m) => m,
            None => {
                self.reset_pool(fr);
                fr.alloc()
                    .ok_or(Fault::Crash("out of shadow page-table frames"))?
            }
        };
        fr.write(mfn, self.hv_slot, self.hv_entry);
        self.roots[slot] = Some(Root {
            guest_l4: l4,
            mfn,
            last_use: self.tick,
        });
        self.current = slot;
        Ok(mfn)
    }

    /// Free every table below every root (the roots stay), when the pool runs dry.
    fn reset_pool(&mut self, fr: &mut dyn ShadowFrames) {
        self.stats.pool_resets += 1;
        for r in self.roots.iter().flatten() {
            self.flush_table(fr, r.mfn, 4, false);
        }
    }

    /// INVLPG: drop the shadow translations of `va` in every root (a guest 2 MiB page's whole L1, a guest
    /// 1 GiB page's whole L2). The caller flushes the real TLB.
    pub fn invlpg(&mut self, fr: &mut dyn ShadowFrames, va: u64) {
        let (i4, i3, i2) = (idx(va, 4), idx(va, 3), idx(va, 2));
        if i4 == self.hv_slot {
            return;
        }
        for r in self.roots.iter().flatten() {
            let e4 = fr.read(r.mfn, i4);
            if e4 & P == 0 {
                continue;
            }
            let l3 = (e4 & ADDR) >> 12;
            let e3 = fr.read(l3, i3);
            if e3 & P == 0 {
                continue;
            }
            if e3 & SW_SPLIT_1G != 0 {
                self.free_subtree(fr, (e3 & ADDR) >> 12, 2);
                fr.write(l3, i3, 0);
                continue;
            }
            let l2 = (e3 & ADDR) >> 12;
            let e2 = fr.read(l2, i2);
            if e2 & P != 0 {
                fr.free((e2 & ADDR) >> 12);
                fr.write(l2, i2, 0);
            }
        }
    }

    /// A page fault at `va` from the guest (`user`: from its CPL 3) with hardware error code `err`:
    /// fill the shadow if the guest's tables allow the access (hidden fault), else give the fault to
    /// reflect (true fault). The caller flushes the real TLB entry of `va` before retrying.
    pub fn page_fault(
        &mut self,
        mem: &mut dyn GuestPhys,
        fr: &mut dyn ShadowFrames,
        cr3: u64,
        va: u64,
        err: u32,
        mode: Mode,
    ) -> Result<FaultResult, Fault> {
        if err & pf::RSVD != 0 {
            return Err(Fault::Crash("reserved bit in a shadow entry"));
        }
        let access = if err & pf::FETCH != 0 {
            Access::Fetch
        } else if err & pf::WRITE != 0 {
            Access::Write
        } else {
            Access::Read
        };
        let user = err & pf::USER != 0;
        let before = self.lookup(fr, va);
        match self.fill(mem, fr, cr3, va, access, user, mode) {
            Ok(()) if before.is_some() && before == self.lookup(fr, va) => {
                // The guest allows the access, the shadow already did: the fault comes from something the
                // shadow cannot change (SMEP in the real CR4, a real TLB not flushed). Retrying would loop.
                Err(Fault::Crash("page fault the shadow tables cannot resolve"))
            }
            Ok(()) => {
                self.stats.hidden += 1;
                Ok(FaultResult::Hidden)
            }
            Err(Fault::Page(code)) => {
                self.stats.true_faults += 1;
                Ok(FaultResult::Reflect(code))
            }
            Err(e) => Err(e),
        }
    }

    /// Make the shadow translate `va` for `access` as the guest's tables allow (or return the guest's
    /// fault). Used by the fault path and by tests.
    #[allow(clippy::too_many_arguments)]
    pub fn fill(
        &mut self,
        mem: &mut dyn GuestPhys,
        fr: &mut dyn ShadowFrames,
        cr3: u64,
        va: u64,
        access: Access,
        user: bool,
        mode: Mode,
    ) -> Result<(), Fault> {
        if idx(va, 4) == self.hv_slot {
            return Err(Fault::Crash(
                "guest access in the hypervisor's reserved L4 slot",
            ));
        }
        let Some(root) = self.roots[self.current].map(|r| r.mfn) else {
            return Err(Fault::Crash("no shadow root"));
        };
        let t = walk(mem, cr3, va, access, user, mode, true)?;
        let mfn = mem.mfn_of(t.gfn);
        let mut leaf = (mfn << 12) & ADDR | P | A | D;
        if t.writable && t.dirty {
            leaf |= W;
        }
        if t.user {
            leaf |= U;
        }
        if t.nx {
            leaf |= NX;
        }
        if t.global {
            leaf |= SW_GLOBAL;
        }
        let l1 = match self.table_path(fr, root, va, t.huge_1g) {
            Some(l1) => l1,
            None => {
                self.reset_pool(fr);
                self.table_path(fr, root, va, t.huge_1g)
                    .ok_or(Fault::Crash("out of shadow page-table frames"))?
            }
        };
        fr.write(l1, idx(va, 1), leaf);
        Ok(())
    }

    /// The shadow L1 for `va` under `root`, allocating missing tables; `None` if the pool is empty.
    fn table_path(
        &self,
        fr: &mut dyn ShadowFrames,
        root: u64,
        va: u64,
        split_1g: bool,
    ) -> Option<u64> {
        let mut table = root;
        for level in [4u32, 3, 2] {
            let i = idx(va, level);
            let e = fr.read(table, i);
            let next = if e & P != 0 {
                if level == 3 && split_1g && e & SW_SPLIT_1G == 0 {
                    fr.write(table, i, e | SW_SPLIT_1G);
                }
                e & ADDR
            } else {
                let n = fr.alloc()?;
                let mark = if level == 3 && split_1g {
                    SW_SPLIT_1G
                } else {
                    0
                };
                fr.write(table, i, (n << 12) | TABLE_FLAGS | mark);
                n << 12
            };
            table = next >> 12;
        }
        Some(table)
    }

    /// The present shadow leaf for `va` in the current root.
    pub fn lookup(&self, fr: &dyn ShadowFrames, va: u64) -> Option<u64> {
        if idx(va, 4) == self.hv_slot {
            return None;
        }
        let mut table = self.roots[self.current]?.mfn;
        for level in [4u32, 3, 2, 1] {
            let e = fr.read(table, idx(va, level));
            if e & P == 0 {
                return None;
            }
            if level == 1 {
                return Some(e);
            }
            table = (e & ADDR) >> 12;
        }
        None
    }

    /// Every present shadow leaf of every root: (guest L4, virtual address, entry). For audits and tests.
    pub fn for_each_leaf(&self, fr: &dyn ShadowFrames, f: &mut dyn FnMut(u64, u64, u64)) {
        for r in self.roots.iter().flatten() {
            self.leaves(fr, r.guest_l4, r.mfn, 4, 0, f);
        }
    }

    fn leaves(
        &self,
        fr: &dyn ShadowFrames,
        g: u64,
        mfn: u64,
        level: u32,
        base: u64,
        f: &mut dyn FnMut(u64, u64, u64),
    ) {
        for i in 0..ENTRIES {
            if level == 4 && i == self.hv_slot {
                continue;
            }
            let e = fr.read(mfn, i);
            if e & P == 0 {
                continue;
            }
            let mut va = base | ((i as u64) << (12 + 9 * (level - 1)));
            if level == 4 && i >= 256 {
                va |= 0xffff_0000_0000_0000;
            }
            if level == 1 {
                f(g, va, e);
            } else {
                self.leaves(fr, g, (e & ADDR) >> 12, level - 1, va, f);
            }
        }
    }

    /// The hypervisor's slot and entry every root carries.
    pub fn hv_slot(&self) -> (usize, u64) {
        (self.hv_slot, self.hv_entry)
    }

    /// The root frames (machine) of every cached root.
    pub fn root_frames(&self) -> impl Iterator<Item = u64> + '_ {
        self.roots.iter().flatten().map(|r| r.mfn)
    }
}

/// Shadow leaf flag helpers for audits and tests.
pub mod leaf {
    use super::*;
    /// Writable.
    pub fn writable(e: u64) -> bool {
        e & W != 0
    }
    /// User.
    pub fn user(e: u64) -> bool {
        e & U != 0
    }
    /// No-execute.
    pub fn nx(e: u64) -> bool {
        e & NX != 0
    }
    /// Global (must never be set).
    pub fn global(e: u64) -> bool {
        e & G != 0
    }
    /// Machine frame.
    pub fn mfn(e: u64) -> u64 {
        (e & ADDR) >> 12
    }
}
