//! Tests of log-dirty tracking: unit cases and a property test over the real validator (`ptval::Mm`).
//!
//! The property test builds a small domain (L4 0 → L3 1 → L2 2 → L1 3, L1 4 pinned but not linked, data
//! frames 5..16; frames 16..19 belong to another domain), turns log-dirty on and runs random sequences of
//! guest writes through its mappings (a write fault goes to [`LogDirty::fault`] as the trap code does),
//! `mmu_update`s through `Mm::mod_entry` (make writable, make read-only, unmap, remap, map a table or a
//! foreign frame: the validator refuses those), hypervisor writes through the guest's mappings (the software
//! walk) and by machine address, unpin / re-pin and link / unlink of an L1 (devalidation and validation),
//! the guest writing entries into that frame while it is data, and harvests. Checked after every step:
//! every frame written since the previous harvest is in the harvested set; a stored entry is the guest's
//! logical entry with at most RW cleared, RW cleared only where the slot is protected, never RW where the
//! guest's entry is read-only; every present entry maps a frame of the domain; the reference counts,
//! recounted from the logical entries, match the frame table. Run with 1 and 16 protectable tables (the
//! first exercises the "beyond capacity: marked every harvest" path).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use abi::types::{Maddr, Mfn};
use proptest::prelude::*;

use super::*;
use crate::mm::frame_table::{FrameTable, PageInfo, PageType};
use crate::mm::phys::PhysRead;
use crate::mm::ptval::{ENTRIES, Mm, Policy, PtMem};
use crate::mm::recount::{RecountScratch, recount};

const NF: usize = 20;
const D: u16 = 1;
const OTHER: u16 = 2;

/// Page-table memory whose validator hooks go to a log-dirty state of capacity `R`.
struct TMem<const R: usize> {
    frames: Vec<[u64; ENTRIES]>,
    ld: RefCell<LogDirty<1, R>>,
}

fn split(a: Maddr) -> (Mfn, usize) {
    (Mfn(a.0 >> 12), ((a.0 & 0xfff) / 8) as usize)
}

impl<const R: usize> PhysRead for TMem<R> {
    fn read_u64(&self, addr: Maddr) -> u64 {
        let (t, s) = split(addr);
        self.frames[t.0 as usize][s]
    }
    fn read_bytes(&self, _addr: Maddr, _buf: &mut [u8]) {
        unreachable!()
    }
}

impl<const R: usize> PtMem for TMem<R> {
    fn write_u64(&mut self, addr: Maddr, val: u64) {
        let (t, s) = split(addr);
        self.ld.borrow_mut().stored(t, s, val);
        self.frames[t.0 as usize][s] = val;
    }
    fn read_pte(&self, addr: Maddr) -> u64 {
        let (t, s) = split(addr);
        let raw = self.frames[t.0 as usize][s];
        self.ld.borrow_mut().logical(t, s, raw)
    }
    fn table_validated(&mut self, mfn: Mfn, level: u32) {
        let entries = self.frames[mfn.0 as usize];
        self.ld.borrow_mut().validated(level, entries.into_iter());
    }
    fn table_dropped(&mut self, mfn: Mfn) {
        let frame = &mut self.frames[mfn.0 as usize];
        self.ld.borrow_mut().dropped(mfn, |s| frame[s] |= RW);
    }
}

/// The logical view (what the references count), for the recount.
struct Logical<'a, const R: usize>(&'a TMem<R>);

impl<const R: usize> PhysRead for Logical<'_, R> {
    fn read_u64(&self, addr: Maddr) -> u64 {
        let (t, s) = split(addr);
        let raw = self.0.frames[t.0 as usize][s];
        if raw & P != 0 && self.0.ld.borrow().is_protected(t, s) {
            raw | RW
        } else {
            raw
        }
    }
    fn read_bytes(&self, _addr: Maddr, _buf: &mut [u8]) {
        unreachable!()
    }
}

/// The [`Frames`] view the harvest and the fault fixup get.
struct View<'a> {
    ft: &'a FrameTable<'a>,
    frames: &'a mut Vec<[u64; ENTRIES]>,
}

impl Frames for View<'_> {
    fn read(&self, table: Mfn, slot: usize) -> u64 {
        self.frames[table.0 as usize][slot]
    }
    fn write(&mut self, table: Mfn, slot: usize, v: u64) {
        self.frames[table.0 as usize][slot] = v;
    }
    fn frames(&self) -> u64 {
        NF as u64
    }
    fn owner(&self, mfn: Mfn) -> Option<u16> {
        self.ft.owner(mfn)
    }
    fn is_l1(&self, mfn: Mfn) -> bool {
        self.ft
            .info(mfn)
            .is_some_and(|p| p.ty == PageType::L1 && p.is_validated())
    }
    fn hv_written(&self, mfn: Mfn) -> bool {
        self.ft.info(mfn).is_some_and(|p| p.is_hv_written())
    }
    fn pfn(&self, mfn: Mfn) -> Option<u64> {
        Some(mfn.0 + 1000)
    }
}

struct World<const R: usize> {
    ft: FrameTable<'static>,
    mem: TMem<R>,
    /// The guest's entries of frames 3 and 4 (slots 0..8), as it wrote them.
    model: BTreeMap<(u64, usize), u64>,
    written: BTreeSet<u64>,
}

const POLICY: Policy<'static> = Policy {
    maxphyaddr: 40,
    hv_l4: &[],
};

impl<const R: usize> World<R> {
    fn new() -> Self {
        let infos: &'static mut [PageInfo] =
            Box::leak(vec![PageInfo::EMPTY; NF].into_boxed_slice());
        let mut ft = FrameTable::new(infos);
        for f in 0..NF as u64 {
            ft.assign(Mfn(f), if f < 16 { D } else { OTHER }).unwrap();
        }
        let mut frames = vec![[0u64; ENTRIES]; NF];
        frames[0][0] = (1 << 12) | P | RW;
        frames[1][0] = (2 << 12) | P | RW;
        frames[2][0] = (3 << 12) | P | RW;
        let mut model = BTreeMap::new();
        for s in 0..8usize {
            let v = ((5 + s as u64) << 12) | P | if s % 2 == 0 { RW } else { 0 };
            let u = ((8 + s as u64) << 12) | P | RW;
            model.insert((3, s), v);
            model.insert((4, s), u);
        }
        for (&(t, s), &v) in &model {
            frames[t as usize][s] = v;
        }
        let mut w = World {
            ft,
            mem: TMem {
                frames,
                ld: RefCell::new(LogDirty::new()),
            },
            model,
            written: BTreeSet::new(),
        };
        let mut mm = Mm::new(&mut w.ft, &mut w.mem, POLICY);
        mm.set_base(None, Mfn(0), D).unwrap();
        mm.pin(Mfn(4), 1, D).unwrap();
        mm.hold_hv_writable(Mfn(15), D).unwrap();
        w.with_ld(|ld, v| ld.enable(v, D)).unwrap();
        w
    }

    fn with_ld<T>(&mut self, f: impl FnOnce(&mut LogDirty<1, R>, &mut View<'_>) -> T) -> T {
        let mut ld = self.mem.ld.borrow_mut();
        let mut v = View {
            ft: &self.ft,
            frames: &mut self.mem.frames,
        };
        f(&mut ld, &mut v)
    }

    fn validated_l1(&self, t: u64) -> bool {
        self.ft
            .info(Mfn(t))
            .is_some_and(|p| p.ty == PageType::L1 && p.is_validated())
    }

    /// The L1 that maps L2 slot `l2`, if linked.
    fn l1_at(&self, l2: usize) -> Option<u64> {
        let e = self.mem.frames[2][l2];
        (e & P != 0).then_some((e & ADDR) >> 12)
    }

    /// A guest write through L2 slot `l2`, L1 slot `s` (the hardware, then the trap code's fixup).
    fn guest_write(&mut self, l2: usize, s: usize) -> Result<(), TestCaseError> {
        let Some(t) = self.l1_at(l2) else {
            return Ok(());
        };
        let logical = self.model[&(t, s)];
        let e = self.mem.frames[t as usize][s];
        if e & P == 0 {
            return Ok(());
        }
        let va = ((l2 as u64) << 21) | ((s as u64) << 12);
        let ok = e & RW != 0 || self.with_ld(|ld, v| ld.fault(v, D, Mfn(0), va));
        prop_assert_eq!(ok, logical & RW != 0, "write at L1 {} slot {}", t, s);
        if ok {
            prop_assert!(self.mem.frames[t as usize][s] & RW != 0, "retry must pass");
            self.written.insert((e & ADDR) >> 12);
        }
        Ok(())
    }

    /// A hypervisor write through the guest's mapping (the software walk).
    fn hv_write(&mut self, l2: usize, s: usize) -> Result<(), TestCaseError> {
        let Some(t) = self.l1_at(l2) else {
            return Ok(());
        };
        let logical = self.model[&(t, s)];
        let mut e = self.mem.frames[t as usize][s];
        if e & P == 0 {
            return Ok(());
        }
        if e & RW == 0 {
            e = self.mem.ld.borrow_mut().walk_write(Mfn(t), s, e);
        }
        prop_assert_eq!(e & RW != 0, logical & RW != 0);
        if e & RW != 0 {
            self.written.insert((e & ADDR) >> 12);
        }
        Ok(())
    }

    fn update(&mut self, t: u64, s: usize, v: u64) {
        let ok = Mm::new(&mut self.ft, &mut self.mem, POLICY)
            .mod_entry(Mfn(t), s, v, D, false)
            .is_ok();
        if ok && (t == 3 || t == 4) {
            self.model.insert((t, s), v);
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let ld = self.mem.ld.borrow();
        for t in [3u64, 4] {
            if !self.validated_l1(t) {
                continue;
            }
            for s in 0..ENTRIES {
                let stored = self.mem.frames[t as usize][s];
                let logical = self.model.get(&(t, s)).copied().unwrap_or(0);
                prop_assert_eq!(stored & !RW, logical & !RW, "L1 {} slot {}", t, s);
                if stored & RW != 0 {
                    prop_assert!(
                        logical & RW != 0,
                        "L1 {} slot {}: writable, guest said RO",
                        t,
                        s
                    );
                    prop_assert!(
                        ld.is_marked(Mfn((stored & ADDR) >> 12)),
                        "L1 {} slot {}: writable entry to an unmarked frame",
                        t,
                        s
                    );
                } else if logical & (P | RW) == P | RW {
                    prop_assert!(ld.is_protected(Mfn(t), s), "L1 {} slot {}", t, s);
                }
                if stored & P != 0 {
                    prop_assert_eq!(self.ft.owner(Mfn((stored & ADDR) >> 12)), Some(D));
                }
            }
        }
        drop(ld);
        let (mut mfns, mut refs, mut types, mut demand) =
            ([Mfn(0); NF], [0; NF], [0; NF], [PageType::None; NF]);
        let r = recount(
            &self.ft,
            &Logical(&self.mem),
            D,
            Some(Mfn(0)),
            RecountScratch {
                mfns: &mut mfns,
                refs: &mut refs,
                types: &mut types,
                demand: &mut demand,
            },
        );
        prop_assert!(r.is_ok(), "recount: {:?}", r.err());
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    GuestWrite(usize, usize),
    HvWrite(usize, usize),
    HvMark(u64),
    /// mmu_update of L1 (3 or 4) slot: target, flags (0 unmap, 1 RO, 2 RW).
    Update(u64, usize, u64, u8),
    /// The guest writes an entry value into frame 4 through a mapping of it (only while it is data).
    WriteFrame4(usize, u64, u8),
    Pin4,
    Unpin4,
    Link4(bool),
    Harvest,
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0usize..8;
    let target = prop::sample::select(vec![5u64, 6, 7, 8, 9, 10, 4, 3, 2, 15, 17]);
    prop_oneof![
        4 => (0usize..2, slot.clone()).prop_map(|(a, b)| Op::GuestWrite(a, b)),
        2 => (0usize..2, slot.clone()).prop_map(|(a, b)| Op::HvWrite(a, b)),
        1 => (5u64..16).prop_map(Op::HvMark),
        4 => (3u64..5, slot.clone(), target.clone(), 0u8..3).prop_map(|(t, s, x, f)| Op::Update(t, s, x, f)),
        1 => (slot, target, 0u8..3).prop_map(|(s, x, f)| Op::WriteFrame4(s, x, f)),
        1 => Just(Op::Pin4),
        1 => Just(Op::Unpin4),
        1 => any::<bool>().prop_map(Op::Link4),
        2 => Just(Op::Harvest),
    ]
}

fn entry(target: u64, f: u8) -> u64 {
    match f {
        0 => 0,
        1 => (target << 12) | P,
        _ => (target << 12) | P | RW,
    }
}

fn run<const R: usize>(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut w = World::<R>::new();
    w.check()?;
    for &op in ops {
        match op {
            Op::GuestWrite(l2, s) => w.guest_write(l2, s)?,
            Op::HvWrite(l2, s) => w.hv_write(l2, s)?,
            Op::HvMark(f) => {
                w.mem.ld.borrow_mut().mark(Mfn(f));
                w.written.insert(f);
            }
            Op::Update(t, s, x, f) => w.update(t, s, entry(x, f)),
            Op::WriteFrame4(s, x, f) => {
                let typed =
                    w.ft.info(Mfn(4))
                        .is_some_and(|p| p.type_count > 0 && p.ty != PageType::Writable);
                // A writable mapping of frame 4 in L1 3 (the guest writes through it).
                let via =
                    (0..8).find(|&k| w.model[&(3, k)] & (ADDR | P | RW) == (4 << 12) | P | RW);
                if let (false, Some(k), true) = (typed, via, w.l1_at(0) == Some(3)) {
                    w.guest_write(0, k)?;
                    w.mem.frames[4][s] = entry(x, f);
                    w.model.insert((4, s), entry(x, f));
                }
            }
            Op::Pin4 => {
                let _ = Mm::new(&mut w.ft, &mut w.mem, POLICY).pin(Mfn(4), 1, D);
            }
            Op::Unpin4 => {
                let _ = Mm::new(&mut w.ft, &mut w.mem, POLICY).unpin(Mfn(4), D);
            }
            Op::Link4(on) => w.update(2, 1, if on { (4 << 12) | P | RW } else { 0 }),
            Op::Harvest => {
                let mut got = BTreeSet::new();
                w.with_ld(|ld, v| {
                    ld.clean(v, false, |pfn| {
                        got.insert(pfn - 1000);
                    })
                })
                .unwrap();
                for f in &w.written {
                    prop_assert!(
                        got.contains(f),
                        "frame {} written but not harvested ({:?})",
                        f,
                        got
                    );
                }
                prop_assert!(got.contains(&15), "the held frame is always reported");
                prop_assert!(got.iter().all(|&f| f < 16), "only the domain's frames");
                w.written.clear();
            }
        }
        w.check()?;
    }
    // Off: every entry is the guest's again.
    w.with_ld(|ld, v| ld.disable(v));
    for t in [3u64, 4] {
        if w.validated_l1(t) {
            for s in 0..8 {
                prop_assert_eq!(w.mem.frames[t as usize][s], w.model[&(t, s)]);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn logdirty_no_write_lost(ops in prop::collection::vec(op(), 1..40)) {
        run::<16>(&ops)?;
    }

    #[test]
    fn logdirty_no_write_lost_beyond_capacity(ops in prop::collection::vec(op(), 1..40)) {
        run::<1>(&ops)?;
    }
}

#[test]
fn logdirty_enable_twice_and_clean_when_off() {
    let mut w = World::<4>::new();
    assert_eq!(w.with_ld(|ld, v| ld.enable(v, D)), Err(Errno::EINVAL));
    assert_eq!(w.with_ld(|ld, v| ld.enable(v, OTHER)), Err(Errno::EBUSY));
    w.with_ld(|ld, v| ld.disable(v));
    assert_eq!(
        w.with_ld(|ld, v| ld.clean(v, false, |_| {})),
        Err(Errno::EINVAL)
    );
    // Off: nothing is marked, nothing protected, the hooks pass values through.
    let mut ld = w.mem.ld.borrow_mut();
    ld.mark(Mfn(5));
    assert!(!ld.is_marked(Mfn(5)));
    assert_eq!(ld.logical(Mfn(3), 1, 0x6001), 0x6001);
    assert_eq!(ld.walk_write(Mfn(3), 1, 0x6001), 0x6001);
}

#[test]
fn logdirty_harvest_protects_and_fault_restores() {
    let mut w = World::<4>::new();
    // Enable protected the writable entries of both L1s (3 linked, 4 pinned).
    assert_eq!(w.mem.frames[3][0] & RW, 0);
    assert!(w.mem.ld.borrow().is_protected(Mfn(3), 0));
    assert!(
        !w.mem.ld.borrow().is_protected(Mfn(3), 1),
        "guest's RO entry"
    );
    assert_eq!(w.mem.ld.borrow().protected_tables(), 2);
    // A write through slot 0 faults, is fixed, marks frame 5; through slot 1 (RO) it bounces.
    assert!(w.with_ld(|ld, v| ld.fault(v, D, Mfn(0), 0)));
    assert_eq!(w.mem.frames[3][0] & RW, RW);
    assert!(!w.with_ld(|ld, v| ld.fault(v, D, Mfn(0), 1 << 12)));
    assert!(
        !w.with_ld(|ld, v| ld.fault(v, OTHER, Mfn(0), 2 << 12)),
        "another domain"
    );
    let mut got = Vec::new();
    w.with_ld(|ld, v| ld.clean(v, false, |p| got.push(p - 1000)))
        .unwrap();
    assert_eq!(got, vec![5, 15], "the written frame and the held one");
    assert_eq!(w.mem.frames[3][0] & RW, 0, "protected again");
    // PEEK reports without clearing.
    w.mem.ld.borrow_mut().mark(Mfn(9));
    let mut n = 0;
    w.with_ld(|ld, v| ld.clean(v, true, |_| n += 1)).unwrap();
    w.with_ld(|ld, v| ld.clean(v, true, |_| n += 1)).unwrap();
    assert_eq!(n, 4);
}

/// The one-pass L1 update leaves the entries of a memory with hooks to the general path, which calls
/// them ([`PtMem::plain`] is false by default).
#[test]
fn logdirty_hooked_l1_updates_take_the_general_path() {
    let mut w = World::<4>::new();
    assert!(w.validated_l1(4));
    let mut mm = Mm::new(&mut w.ft, &mut w.mem, POLICY);
    assert_eq!(mm.mod_l1_entry(Mfn(4), 0, 0, D), None);
}
