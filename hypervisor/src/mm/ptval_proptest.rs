//! Property test of page-table validation: random operation sequences with every invariant recounted.
//!
//! A small machine (frames 0..16 of domain 1, 16..19 of domain 2, 19..22 of nobody), tables pre-filled
//! with random entries, 1–3 pins, then 6–12 random `mod_entry` / `pin` / `unpin` / `set_base` operations
//! by either domain, and a teardown of both. After every step the invariants are checked from scratch,
//! independently of `ptval`'s own bookkeeping: every count is recounted from the entries in memory of the
//! frames flagged VALIDATED, the pins, the hypervisor holds and the bases the harness recorded. A failed
//! operation must change nothing (frame table snapshot, no memory write). Updates go through
//! `Mm::prepare` and `Mm::perform` as `mmu_update` does: the prepared update must match the request and
//! leave memory alone, and performing it writes exactly the one entry. Default 100 000 cases;
//! `MM_PROPTEST_CASES=n` overrides.
//!
//! Most cases give each domain a *held* frame (`Mm::hold_hv_writable`: its shared_info page, which the
//! hypervisor writes). After every step the harness writes forged present, writable entries into it, as the
//! event code would write pending bits; the frame must stay typed `Writable` and never be validated, pinned
//! or a base, and every attempt to make it a table must be a type conflict.

use std::cell::Cell;
use std::time::Instant;

use abi::types::{Maddr, Mfn};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRunner};

use super::frame_table::{FrameTable, NO_OWNER, PageInfo, PageType};
use super::phys::PhysRead;
use super::pte::{Pte, PteFlags};
use super::ptval::{ENTRIES, Mm, MmError, Policy, PtMem, is_reserved_l4};

const NF: usize = 22;
const D1: u16 = 1;
const D2: u16 = 2;
const MAXPHYADDR: u32 = 36;
const P: u64 = PteFlags::PRESENT.bits();
const RW: u64 = PteFlags::WRITABLE.bits();
/// The hypervisor's L4 entry (slot 257, pointing at an unowned frame: it must take no reference).
const HV_L4: &[(usize, u64)] = &[(257, (20 << 12) | P | RW)];
/// Every index the test ever writes (the ops' indices and the reserved slots validation fills); all other
/// entries stay zero, which is checked at the end of each case, so recounting over these is complete.
const IDX: [usize; 21] = [
    0, 1, 2, 3, 256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 511,
];
/// Indices the operations use: mostly a few low slots, plus reserved L4 slots, the last one and one
/// beyond the table.
const OP_IDX: [usize; 9] = [0, 1, 2, 3, 256, 257, 271, 511, 512];

fn owner_of(f: usize) -> u16 {
    match f {
        0..16 => D1,
        16..19 => D2,
        _ => NO_OWNER,
    }
}

/// Flat, fast page-table memory counting its writes.
struct Mem {
    frames: Vec<[u64; ENTRIES]>,
    writes: u64,
}

impl PhysRead for Mem {
    fn read_u64(&self, addr: Maddr) -> u64 {
        let (f, i) = ((addr.0 >> 12) as usize, ((addr.0 & 0xfff) / 8) as usize);
        assert_eq!(addr.0 % 8, 0, "unaligned page-table read");
        self.frames.get(f).map_or(0, |fr| fr[i])
    }
    fn read_bytes(&self, _addr: Maddr, _buf: &mut [u8]) {
        unreachable!("validation reads whole entries")
    }
}

impl PtMem for Mem {
    fn write_u64(&mut self, addr: Maddr, val: u64) {
        assert_eq!(addr.0 % 8, 0, "unaligned page-table write");
        self.frames[(addr.0 >> 12) as usize][((addr.0 & 0xfff) / 8) as usize] = val;
        self.writes += 1;
    }
    fn plain(&self, _addr: Maddr) -> bool {
        true
    }
}

/// An entry value, printed in hex in failure reports.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Hex(u64);

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// One operation as generated (before [`resolve`], which is deterministic given the state).
#[derive(Clone, Copy, Debug)]
enum Op {
    Mod {
        /// The table, or with `pick_validated` the `table % n`-th of the `n` validated tables of `dom`
        /// (if it has any), so that most updates reach a real page table.
        table: u64,
        pick_validated: bool,
        /// With `smart`, a present entry of an L2..L4 points at a frame with no type or the type it needs
        /// (the `target % n`-th of the `n` such frames of `dom`), so that deep hierarchies get built.
        smart: bool,
        index: usize,
        val: Hex,
        dom: u16,
        ad: bool,
    },
    Pin {
        mfn: u64,
        level: u32,
        dom: u16,
    },
    Unpin {
        mfn: u64,
        dom: u16,
    },
    Base {
        mfn: u64,
        dom: u16,
    },
}

// Generation. Proptest (built without optimisation) only draws plain `u64`s, cheaply, with the fast XorShift
// generator; this module, optimised, decodes each word into an operation. Every field is a few bits of the
// word, arranged so that shrinking a word towards 0 gives a simpler operation (a `mod_entry` of entry 0 of
// frame 0, no special bits), and the decoded operations are what a failure report prints.

/// splitmix64's finaliser: garbage bits derived from a word.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A frame from 5 bits: mostly domain 1's frames 0..8, sometimes other ones, another domain's, a
/// hypervisor frame or one beyond the table.
fn decode_frame(b: u64) -> u64 {
    const OTHERS: [u64; 8] = [8, 11, 14, 16, 17, 19, 21, 22];
    match b & 0x1f {
        x @ 0..24 => x & 7,
        x => OTHERS[(x - 24) as usize],
    }
}

/// An entry value from 24 bits: present entries to interesting frames with random flags, or non-present
/// garbage.
fn decode_entry(w: u64) -> u64 {
    match w & 0xf {
        0 => return 0,
        1 => return mix(w) & !P,
        _ => {}
    }
    let target = match (w >> 4) & 0x3f {
        t @ 0..32 => t & 7,
        t @ 32..56 => 8 + (t - 32) % 8,
        t @ 56..59 => 16 + (t - 56),
        t @ 59..62 => 19 + (t - 59),
        62 => 40,
        _ => (1 << 24) - 1,
    };
    let mut e = (target << 12) | P | if (w >> 10) & 1 != 0 { RW } else { 0 };
    e |= match (w >> 11) & 0x1f {
        28 | 29 => PteFlags::HUGE.bits(),
        30 => 1 << 40, // reserved address bit
        31 => 1 << MAXPHYADDR,
        _ => 0,
    };
    let extra = [
        PteFlags::ACCESSED.bits(),
        PteFlags::DIRTY.bits(),
        PteFlags::NO_EXECUTE.bits(),
        PteFlags::USER.bits(),
        PteFlags::GLOBAL.bits(),
        1 << 52,
        1 << 9,
        1 << 62,
    ];
    for (b, x) in extra.iter().enumerate() {
        if (w >> 16) & (1 << b) != 0 {
            e |= x;
        }
    }
    e
}

fn decode_op(w: u64) -> Op {
    let dom = if (w >> 4) & 7 == 7 { D2 } else { D1 };
    let mfn = decode_frame(w >> 7);
    match w & 0xf {
        0..7 => Op::Mod {
            table: mfn,
            pick_validated: (w >> 12) & 7 != 0,
            smart: (w >> 20) & 1 != 0,
            index: OP_IDX[(((w >> 15) & 0xf) % OP_IDX.len() as u64) as usize],
            ad: (w >> 19) & 1 != 0,
            val: Hex(decode_entry(w >> 24)),
            dom,
        },
        7..12 => Op::Pin {
            mfn,
            level: match (w >> 19) & 0xf {
                14 => 0,
                15 => 5,
                l => 1 + (l as u32) % 4,
            },
            dom,
        },
        12 | 13 => Op::Unpin { mfn, dom },
        _ => Op::Base { mfn, dom },
    }
}

/// Initial contents: entries at indices 0..4 and two reserved slots of owned frames.
fn decode_init(w: u64) -> (usize, usize, Hex) {
    let f = ((w & 0x1f) % 19) as usize;
    (
        f,
        [0, 1, 2, 3, 256, 257][(((w >> 5) & 7) % 6) as usize],
        Hex(decode_entry(w >> 8)),
    )
}

/// What the harness knows independently of the frame table: owners, pins (with their level), each base,
/// the frames held for the hypervisor.
struct Harness {
    owner: [u16; NF],
    pinned: [Option<u32>; NF],
    base: [Option<Mfn>; 3],
    held: [bool; NF],
}

/// The frames held for the hypervisor in a case, from one word: domain 1's among 0..8 (or none), domain
/// 2's among 16..19 (or none).
fn decode_held(w: u64) -> [Option<usize>; 2] {
    let (a, b) = ((w % 10) as usize, ((w >> 8) % 4) as usize);
    [(a < 8).then_some(a), (b < 3).then_some(16 + b)]
}

fn policy() -> Policy<'static> {
    Policy {
        maxphyaddr: MAXPHYADDR,
        hv_l4: HV_L4,
    }
}

fn infos(ft: &FrameTable<'_>) -> Vec<PageInfo> {
    (0..NF).map(|f| *ft.info(Mfn(f as u64)).unwrap()).collect()
}

fn demand(need: &mut [Option<PageType>; NF], f: usize, ty: PageType) -> Result<(), TestCaseError> {
    match need[f] {
        None => need[f] = Some(ty),
        Some(t) => prop_assert_eq!(t, ty, "frame {} needed as two types", f),
    }
    Ok(())
}

/// Recounts every reference from scratch and checks invariants (1)–(3).
fn check(ft: &FrameTable<'_>, mem: &Mem, h: &Harness) -> Result<(), TestCaseError> {
    let infos = infos(ft);
    let (mut refs, mut tc) = ([0u32; NF], [0u32; NF]);
    let mut need = [None; NF];
    for (t, p) in infos.iter().enumerate() {
        prop_assert_eq!(p.owner, h.owner[t]);
        if p.owner == NO_OWNER {
            prop_assert_eq!(*p, PageInfo::EMPTY, "unowned frame {}", t);
        }
        prop_assert_eq!(
            p.type_count == 0,
            p.ty == PageType::None,
            "frame {}: {:?}",
            t,
            p
        );
        prop_assert_eq!(
            p.is_validated(),
            p.ty.level().is_some(),
            "frame {}: {:?}",
            t,
            p
        );
        prop_assert_eq!(p.is_pinned(), h.pinned[t].is_some(), "frame {}: {:?}", t, p);
        prop_assert_eq!(p.is_hv_written(), h.held[t], "frame {}: {:?}", t, p);
        if h.held[t] {
            // (5) a frame the hypervisor writes is never a page table.
            prop_assert_eq!(p.ty, PageType::Writable, "held frame {}: {:?}", t, p);
            prop_assert!(!p.is_validated() && !p.is_pinned(), "held frame {}", t);
        }
        let flags = PageInfo::VALIDATED | PageInfo::PINNED | PageInfo::HV_WRITES;
        prop_assert_eq!(p.flags & !flags, 0);
        let Some(level) = p.ty.level() else { continue };
        for &i in &IDX {
            let e = Pte(mem.frames[t][i]);
            if level == 4 && is_reserved_l4(i) {
                let hv = HV_L4.iter().find(|s| s.0 == i).map_or(0, |s| s.1);
                prop_assert_eq!(e.0, hv, "L4 {} reserved slot {}", t, i);
                continue;
            }
            if !e.is_present() {
                continue;
            }
            prop_assert!(
                !e.has_reserved_bits(level, MAXPHYADDR),
                "L{} {}[{}] = {:?}",
                level,
                t,
                i,
                e
            );
            prop_assert!(level == 1 || level == 4 || !e.has(PteFlags::HUGE));
            let g = e.mfn().0 as usize;
            // (3) only the table owner's frames.
            prop_assert!(
                g < NF && h.owner[g] == p.owner,
                "{}[{}] -> foreign {:?}",
                t,
                i,
                e
            );
            refs[g] += 1;
            if level > 1 {
                tc[g] += 1;
                demand(&mut need, g, PageType::table(level - 1))?;
            } else if e.has(PteFlags::WRITABLE) {
                // (2) a writable mapping only of a frame typed Writable, never of a table.
                prop_assert_eq!(
                    infos[g].ty,
                    PageType::Writable,
                    "L1 {}[{}] maps {} RW",
                    t,
                    i,
                    g
                );
                tc[g] += 1;
                demand(&mut need, g, PageType::Writable)?;
            }
        }
    }
    for (f, l) in h.pinned.iter().enumerate() {
        if let Some(l) = *l {
            refs[f] += 1;
            tc[f] += 1;
            demand(&mut need, f, PageType::table(l))?;
        }
    }
    for b in h.base.iter().flatten() {
        let f = b.0 as usize;
        refs[f] += 1;
        tc[f] += 1;
        demand(&mut need, f, PageType::L4)?;
    }
    for f in (0..NF).filter(|&f| h.held[f]) {
        refs[f] += 1;
        tc[f] += 1;
        demand(&mut need, f, PageType::Writable)?;
    }
    // (1) the counts are exactly the references.
    for (f, p) in infos.iter().enumerate() {
        prop_assert_eq!(p.refs, refs[f], "refs of frame {}: {:?}", f, p);
        prop_assert_eq!(p.type_count, tc[f], "type count of frame {}: {:?}", f, p);
        prop_assert_eq!(
            p.ty,
            need[f].unwrap_or(PageType::None),
            "type of frame {}",
            f
        );
    }
    Ok(())
}

/// The number of levels of the longest chain of validated tables starting at `t` (0 if `t` is not one).
fn chain(infos: &[PageInfo], mem: &Mem, t: usize) -> u32 {
    let Some(level) = infos[t].ty.level() else {
        return 0;
    };
    let below = IDX
        .iter()
        .map(|&i| Pte(mem.frames[t][i]))
        .filter(|e| level > 1 && e.is_present() && (e.mfn().0 as usize) < NF)
        .map(|e| chain(infos, mem, e.mfn().0 as usize))
        .max()
        .unwrap_or(0);
    1 + below
}

/// What the operations did, to see that the generator reaches the interesting cases.
#[derive(Default)]
struct Stats {
    ok: [Cell<u64>; 4],
    refused: [Cell<u64>; 4],
    /// Refusals per `MmError` variant, in declaration order.
    errors: [Cell<u64>; 11],
    /// Steps after which the longest chain of validated tables had 1, 2, 3, 4 levels.
    depth: [Cell<u64>; 4],
    max_refs: Cell<u32>,
    max_tables: Cell<usize>,
    /// Pins, bases and table links aimed at a held frame (all refused).
    held_refused: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

fn error_index(e: MmError) -> usize {
    match e {
        MmError::NotOwned(_) => 0,
        MmError::TypeConflict { .. } => 1,
        MmError::ReservedBits { .. } => 2,
        MmError::LargePage { .. } => 3,
        MmError::ReservedSlot(_) => 4,
        MmError::NotPageTable(_) => 5,
        MmError::BadIndex(_) => 6,
        MmError::AlreadyPinned(_) => 7,
        MmError::NotPinned(_) => 8,
        MmError::CountOverflow(_) => 9,
        MmError::InUse(_) => 10,
    }
}

/// Domain 2 works on its own frames: swaps the roles of frames 0..16 and 16..19 (input selection only).
fn localize(mfn: u64, dom: u16) -> u64 {
    match mfn {
        0..16 if dom == D2 => 16 + mfn % 3,
        16..19 if dom == D2 => mfn - 16,
        _ => mfn,
    }
}

fn localize_entry(e: u64, dom: u16) -> u64 {
    let pte = Pte(e);
    if !pte.is_present() || pte.mfn().0 >= NF as u64 {
        return e;
    }
    (e & !Pte::ADDR_MASK) | (localize(pte.mfn().0, dom) << 12)
}

/// Resolves the generator's choices against the current state (input selection only, not checking):
/// `pick_validated` picks one of the domain's validated tables, an unpin mostly picks a pinned frame, and
/// domain 2 gets its own frames.
fn resolve(op: Op, ft: &FrameTable<'_>) -> Op {
    let pick = |sel: u64, dom: u16, want: fn(&PageInfo) -> bool| {
        let mut it = (0..NF as u64).filter(|&f| {
            let p = ft.info(Mfn(f)).unwrap();
            p.owner == dom && want(p)
        });
        let n = it.clone().count() as u64;
        if n == 0 {
            None
        } else {
            it.nth((sel % n) as usize)
        }
    };
    match op {
        Op::Mod {
            table,
            pick_validated,
            smart,
            index,
            val,
            dom,
            ad,
        } => {
            let picked = match pick_validated {
                true => pick(table, dom, PageInfo::is_validated),
                false => None,
            };
            let table = picked.unwrap_or_else(|| localize(table, dom));
            let mut val = localize_entry(val.0, dom);
            let e = Pte(val);
            let level = ft.info(Mfn(table)).and_then(|p| p.ty.level());
            if let (true, true, Some(level @ 2..=4)) = (smart, e.is_present(), level) {
                let want = PageType::table(level - 1);
                let mut it = (0..NF as u64).filter(|&f| {
                    let p = ft.info(Mfn(f)).unwrap();
                    p.owner == dom && (p.ty == PageType::None || p.ty == want)
                });
                let n = it.clone().count() as u64;
                if n > 0 {
                    let f = it.nth((e.mfn().0 % n) as usize).unwrap();
                    val = (val & !Pte::ADDR_MASK) | (f << 12);
                }
            }
            Op::Mod {
                table,
                pick_validated: false,
                smart: false,
                index,
                val: Hex(val),
                dom,
                ad,
            }
        }
        Op::Unpin { mfn, dom } => Op::Unpin {
            mfn: match mfn % 4 {
                0 => localize(mfn, dom),
                _ => pick(mfn, dom, PageInfo::is_pinned).unwrap_or(localize(mfn, dom)),
            },
            dom,
        },
        Op::Pin { mfn, level, dom } => Op::Pin {
            mfn: localize(mfn, dom),
            level,
            dom,
        },
        Op::Base { mfn, dom } => Op::Base {
            mfn: localize(mfn, dom),
            dom,
        },
    }
}

#[path = "ptval_l1_oracle.rs"]
mod l1_oracle;

fn apply(mm: &mut Mm<'_, '_, Mem>, h: &Harness, op: Op) -> Result<bool, MmError> {
    match op {
        Op::Mod {
            table,
            index,
            val,
            dom,
            ad,
            ..
        } => {
            // The two halves `mmu_update` uses, with their contract checked: `prepare` writes nothing
            // and describes the update exactly; `perform` stores it (one write) and cannot fail.
            let writes = mm.mem.writes;
            let old =
                (index < ENTRIES).then(|| mm.mem.read_u64(Maddr(table * 4096 + index as u64 * 8)));
            let w = mm.prepare(Mfn(table), index, val.0, dom, ad)?;
            assert_eq!(mm.mem.writes, writes, "prepare wrote memory");
            let ad_bits = (PteFlags::ACCESSED | PteFlags::DIRTY).bits();
            let old = old.expect("a prepared update has an index below 512");
            let want = if ad && old & P != 0 {
                val.0 | (old & ad_bits)
            } else {
                val.0
            };
            assert_eq!(
                (w.table, w.index, w.old.0, w.new.0),
                (Mfn(table), index, old, want),
                "the prepared update"
            );
            let flush = mm.perform(w);
            assert_eq!(
                mm.mem.writes,
                writes + 1,
                "perform wrote other than one entry"
            );
            Ok(flush)
        }
        Op::Pin { mfn, level, dom } => mm.pin(Mfn(mfn), level, dom).map(|()| false),
        Op::Unpin { mfn, dom } => mm.unpin(Mfn(mfn), dom).map(|()| false),
        Op::Base { mfn, dom } => mm
            .set_base(h.base[dom as usize], Mfn(mfn), dom)
            .map(|()| false),
    }
}

/// After a refusal: nothing changed (4), and simple preconditions gave the expected error.
fn check_refusal(
    op: Op,
    e: MmError,
    before: &[PageInfo],
    h: &Harness,
) -> Result<(), TestCaseError> {
    let owned = |f: u64, d: u16| (f as usize) < NF && h.owner[f as usize] == d;
    match op {
        Op::Mod { table, dom, .. } if !owned(table, dom) => {
            prop_assert_eq!(e, MmError::NotOwned(Mfn(table)))
        }
        Op::Mod { table, .. } if !before[table as usize].is_validated() => {
            prop_assert_eq!(e, MmError::NotPageTable(Mfn(table)))
        }
        Op::Mod { index, .. } if index >= ENTRIES => prop_assert_eq!(e, MmError::BadIndex(index)),
        Op::Mod { table, index, .. }
            if before[table as usize].ty == PageType::L4 && is_reserved_l4(index) =>
        {
            prop_assert_eq!(e, MmError::ReservedSlot(index))
        }
        Op::Pin { mfn, level, .. } if !(1..=4).contains(&level) => {
            prop_assert_eq!(e, MmError::NotPageTable(Mfn(mfn)))
        }
        Op::Pin { mfn, dom, .. } | Op::Unpin { mfn, dom } | Op::Base { mfn, dom }
            if !owned(mfn, dom) =>
        {
            prop_assert_eq!(e, MmError::NotOwned(Mfn(mfn)))
        }
        Op::Unpin { mfn, .. } => prop_assert_eq!(e, MmError::NotPinned(Mfn(mfn))),
        _ => prop_assert!(!matches!(
            e,
            MmError::NotPinned(_) | MmError::InUse(_) | MmError::CountOverflow(_)
        )),
    }
    Ok(())
}

/// After a success: the harness records pins and bases; an update wrote exactly what it should.
fn record_success(
    op: Op,
    flush: bool,
    old: u64,
    mem: &Mem,
    h: &mut Harness,
) -> Result<(), TestCaseError> {
    match op {
        Op::Mod {
            table,
            index,
            val,
            ad,
            ..
        } => {
            let ad_bits = (PteFlags::ACCESSED | PteFlags::DIRTY).bits();
            let old_present = old & P != 0;
            let want = if ad && old_present {
                val.0 | (old & ad_bits)
            } else {
                val.0
            };
            prop_assert_eq!(mem.frames[table as usize][index], want);
            prop_assert_eq!(flush, old_present);
        }
        Op::Pin { mfn, level, .. } => {
            prop_assert!(h.pinned[mfn as usize].is_none());
            h.pinned[mfn as usize] = Some(level);
        }
        Op::Unpin { mfn, .. } => {
            prop_assert!(h.pinned[mfn as usize].is_some());
            h.pinned[mfn as usize] = None;
        }
        Op::Base { mfn, dom } => h.base[dom as usize] = Some(Mfn(mfn)),
    }
    Ok(())
}

/// Whether `op` asks for a page-table type on a held frame of the caller: a pin (of a level 1..=4) or a
/// base — `Some(true)`: nothing else can be wrong with it, so it must be a type conflict — or a present entry
/// of an L2..L4 naming it (`Some(false)`: it may also fail for other reasons).
fn targets_held(op: Op, ft: &FrameTable<'_>, h: &Harness) -> Option<bool> {
    let held =
        |f: u64, dom: u16| (f as usize) < NF && h.held[f as usize] && h.owner[f as usize] == dom;
    let hit = match op {
        Op::Pin { mfn, level, dom } => held(mfn, dom) && (1..=4).contains(&level),
        Op::Base { mfn, dom } => held(mfn, dom),
        Op::Mod {
            table, val, dom, ..
        } => {
            let level = ft.info(Mfn(table)).and_then(|p| p.ty.level());
            let e = Pte(val.0);
            let hit = matches!(level, Some(2..=4)) && e.is_present() && held(e.mfn().0, dom);
            return hit.then_some(false);
        }
        Op::Unpin { .. } => false,
    };
    hit.then_some(true)
}

fn run_case(
    init: &[(usize, usize, Hex)],
    ops: &[Op],
    held: [Option<usize>; 2],
    stats: &Stats,
) -> Result<(), TestCaseError> {
    let mut backing = vec![PageInfo::EMPTY; NF];
    let mut ft = FrameTable::new(&mut backing);
    for f in 0..NF {
        if owner_of(f) != NO_OWNER {
            ft.assign(Mfn(f as u64), owner_of(f)).unwrap();
        }
    }
    let mut mem = Mem {
        frames: vec![[0; ENTRIES]; NF],
        writes: 0,
    };
    for &(f, i, Hex(v)) in init {
        mem.frames[f][i] = v;
    }
    let mut h = Harness {
        owner: core::array::from_fn(owner_of),
        pinned: [None; NF],
        base: [None; 3],
        held: [false; NF],
    };
    for f in held.into_iter().flatten() {
        Mm::new(&mut ft, &mut mem, policy())
            .hold_hv_writable(Mfn(f as u64), owner_of(f))
            .map_err(|e| TestCaseError::fail(format!("hold of frame {f}: {e:?}")))?;
        h.held[f] = true;
    }
    check(&ft, &mem, &h)?;
    for (step, &op) in ops.iter().enumerate() {
        let op = resolve(op, &ft);
        let at_held = targets_held(op, &ft, &h);
        let (before, writes) = (infos(&ft), mem.writes);
        let old = match op {
            Op::Mod { table, index, .. } if (table as usize) < NF && index < ENTRIES => {
                mem.frames[table as usize][index]
            }
            _ => 0,
        };
        let kind = match op {
            Op::Mod { .. } => 0,
            Op::Pin { .. } => 1,
            Op::Unpin { .. } => 2,
            Op::Base { .. } => 3,
        };
        match l1_oracle::apply_checked(&mut Mm::new(&mut ft, &mut mem, policy()), &h, op)? {
            Err(e) => {
                if let Some(strict) = at_held {
                    bump(&stats.held_refused);
                    let conflict = matches!(e, MmError::TypeConflict { have, .. } if have == PageType::Writable);
                    prop_assert!(!strict || conflict, "{:?} at a held frame: {:?}", op, e);
                }
                bump(&stats.refused[kind]);
                bump(&stats.errors[error_index(e)]);
                // (4) a failed operation changed nothing.
                prop_assert!(
                    before == infos(&ft),
                    "{:?} failed with {:?} but changed the frame table",
                    op,
                    e
                );
                prop_assert_eq!(
                    mem.writes,
                    writes,
                    "{:?} failed with {:?} but wrote memory",
                    op,
                    e
                );
                check_refusal(op, e, &before, &h)?;
            }
            Ok(flush) => {
                prop_assert!(at_held.is_none(), "{:?} made a held frame a page table", op);
                bump(&stats.ok[kind]);
                record_success(op, flush, old, &mem, &mut h)?;
            }
        }
        let now = infos(&ft);
        stats.max_refs.set(
            stats
                .max_refs
                .get()
                .max(now.iter().map(|p| p.refs).max().unwrap_or(0)),
        );
        let tables = now.iter().filter(|p| p.is_validated()).count();
        let depth = (0..NF).map(|t| chain(&now, &mem, t)).max().unwrap_or(0);
        if depth > 0 {
            bump(&stats.depth[depth as usize - 1]);
        }
        stats.max_tables.set(stats.max_tables.get().max(tables));
        check(&ft, &mem, &h)?;
        // The hypervisor writes its "event bits" into the held frames: forged present, writable entries
        // (to a frame of the domain, a foreign one, a hypervisor one). Were a held frame a table, the next
        // recount would find references nobody took.
        for f in (0..NF).filter(|&f| h.held[f]) {
            let target = [0u64, 5, 16, 20][step % 4];
            mem.write_u64(
                Maddr((f * 4096 + IDX[step % 4] * 8) as u64),
                (target << 12) | P | RW,
            );
        }
        check(&ft, &mem, &h)?;
    }
    // Nothing outside IDX was ever written, so the recounts above saw every entry.
    for (f, fr) in mem.frames.iter().enumerate() {
        for (i, &e) in fr.iter().enumerate() {
            prop_assert!(
                e == 0 || IDX.contains(&i),
                "frame {} entry {} = {:#x}",
                f,
                i,
                e
            );
        }
    }
    // Teardown of domain 1, then domain 2: all counts back to zero, frames released, the other domain intact.
    for d in [D1, D2] {
        let base = h.base[d as usize];
        let mut released = 0;
        let n = Mm::new(&mut ft, &mut mem, policy()).teardown(d, base, |_| released += 1);
        prop_assert_eq!(n, if d == D1 { 16 } else { 3 });
        prop_assert_eq!(n, released);
        h.base[d as usize] = None;
        for f in 0..NF {
            if owner_of(f) == d {
                h.pinned[f] = None;
                h.held[f] = false;
                h.owner[f] = NO_OWNER;
            }
        }
        check(&ft, &mem, &h)?;
    }
    prop_assert!(infos(&ft).iter().all(|p| *p == PageInfo::EMPTY));
    Ok(())
}

#[test]
fn random_operation_sequences() {
    let cases = std::env::var("MM_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let config = Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let stats = Stats::default();
    let start = Instant::now();
    let strategy = (
        prop::collection::vec(any::<u64>().prop_map(decode_init), 0..16),
        // A few pins first (the guest recipe: build, pin, then update), then the random operations.
        prop::collection::vec(any::<u64>().prop_map(|w| decode_op((w & !0xf) | 7)), 1..=3),
        prop::collection::vec(any::<u64>().prop_map(decode_op), 6..=12),
        any::<u64>().prop_map(decode_held),
    );
    let result = runner.run(&strategy, |(init, pins, ops, held)| {
        run_case(&init, &[pins, ops].concat(), held, &stats)
    });
    let n = |c: &[Cell<u64>]| c.iter().map(Cell::get).collect::<Vec<_>>();
    eprintln!(
        "ptval property test: {cases} cases in {:.1?}; ok [mod pin unpin base] {:?}, refused {:?}, \
         refusals by MmError variant {:?}, max refs {}, max validated tables {}, \
         steps by longest validated chain [1 2 3 4 levels] {:?}, table requests at held frames \
         (all refused) {}",
        start.elapsed(),
        n(&stats.ok),
        n(&stats.refused),
        n(&stats.errors),
        stats.max_refs.get(),
        stats.max_tables.get(),
        n(&stats.depth),
        stats.held_refused.get(),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    let (compared, declined) = (
        l1_oracle::COMPARED.load(std::sync::atomic::Ordering::Relaxed),
        l1_oracle::DECLINED.load(std::sync::atomic::Ordering::Relaxed),
    );
    eprintln!(
        "mod_l1_entry against the general path: {compared} updates compared, {declined} declined"
    );
    // About 0.38 per case: most updates go to validated tables, many of them L1s.
    assert!(
        cases < 1000 || compared * 10 >= u64::from(cases),
        "too few L1 updates compared: {compared}"
    );
}
