//! Nested page tables: guest-physical 0..N → the domain's machine frames, 4-level, 4 KiB leaves.
//!
//! The tables live in frames the hypervisor allocates and never maps for the guest (they are reached only
//! through N_CR3 by the CPU's nested walk), so the guest cannot read or change them. Every guest access
//! counts as a user access in the nested walk: entries carry P, RW and US; nothing else (no large pages,
//! no NX: the guest's own tables decide execute rights).
#![forbid(unsafe_code)]

use abi::types::{Maddr, Mfn};

use crate::mm::phys::{FrameMem, FrameSource, PhysRead};

/// Present.
pub const P: u64 = 1 << 0;
/// Writable.
pub const RW: u64 = 1 << 1;
/// User (every nested access is a user access).
pub const US: u64 = 1 << 2;
/// Large page (never set here).
pub const PS: u64 = 1 << 7;
/// Address bits of an entry.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Accessed and dirty bits (the CPU sets them in the nested tables).
pub const AD: u64 = 3 << 5;
/// The bits this builder ever sets (plus what the CPU may set).
const ALLOWED: u64 = P | RW | US | AD | ADDR_MASK;

/// Why a nested table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NptError {
    /// No frame left for a table.
    OutOfFrames,
    /// A guest-physical frame number beyond the 48-bit guest-physical space.
    BadGfn(u64),
}

/// A nested page-table tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Npt {
    /// The level-4 table (N_CR3).
    pub root: Mfn,
}

fn index(gfn: u64, level: u32) -> usize {
    ((gfn >> (9 * (level - 1))) & 511) as usize
}

fn read_entry(mem: &impl PhysRead, table: Mfn, i: usize) -> u64 {
    mem.read_u64(Maddr(table.addr().0 + 8 * i as u64))
}

fn write_entry(mem: &mut impl FrameMem, table: Mfn, i: usize, v: u64) {
    mem.frame_mut(table)[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
}

impl Npt {
    /// An empty tree (one zeroed root frame).
    pub fn new(mem: &mut impl FrameMem, frames: &mut impl FrameSource) -> Result<Npt, NptError> {
        let root = frames.alloc_frame().ok_or(NptError::OutOfFrames)?;
        mem.frame_mut(root).fill(0);
        Ok(Npt { root })
    }

    /// Map guest frame `gfn` to machine frame `mfn` (read, write, execute), creating tables as needed.
    pub fn map(
        &self,
        mem: &mut impl FrameMem,
        frames: &mut impl FrameSource,
        gfn: u64,
        mfn: Mfn,
    ) -> Result<(), NptError> {
        if gfn >= 1 << 36 {
            return Err(NptError::BadGfn(gfn));
        }
        let mut table = self.root;
        for level in (2..=4).rev() {
            let i = index(gfn, level);
            let e = read_entry(mem, table, i);
            table = if e & P != 0 {
                Mfn((e & ADDR_MASK) >> 12)
            } else {
                let t = frames.alloc_frame().ok_or(NptError::OutOfFrames)?;
                mem.frame_mut(t).fill(0);
                write_entry(mem, table, i, t.addr().0 | P | RW | US);
                t
            };
        }
        write_entry(mem, table, index(gfn, 1), mfn.addr().0 | P | RW | US);
        Ok(())
    }

    /// The machine address guest-physical `gpa` maps to, if any.
    pub fn translate(&self, mem: &impl PhysRead, gpa: u64) -> Option<Maddr> {
        if gpa >= 1 << 48 {
            return None;
        }
        let gfn = gpa >> 12;
        let mut table = self.root;
        for level in (1..=4).rev() {
            let e = read_entry(mem, table, index(gfn, level));
            if e & P == 0 || e & PS != 0 {
                return None;
            }
            if level == 1 {
                return Some(Maddr((e & ADDR_MASK) | (gpa & 0xfff)));
            }
            table = Mfn((e & ADDR_MASK) >> 12);
        }
        None
    }

    /// Visit every table frame (`table(mfn, level)`, the root first) and every present leaf
    /// (`leaf(gfn, entry)`), in guest-physical order.
    pub fn walk(
        &self,
        mem: &impl PhysRead,
        table: &mut impl FnMut(Mfn, u32),
        leaf: &mut impl FnMut(u64, u64),
    ) {
        fn visit(
            mem: &impl PhysRead,
            t: Mfn,
            level: u32,
            base: u64,
            table: &mut impl FnMut(Mfn, u32),
            leaf: &mut impl FnMut(u64, u64),
        ) {
            table(t, level);
            for i in 0..512 {
                let e = read_entry(mem, t, i);
                if e & P == 0 {
                    continue;
                }
                let gfn = base | (i as u64) << (9 * (level - 1));
                if level == 1 || e & PS != 0 {
                    leaf(gfn, e);
                } else {
                    visit(mem, Mfn((e & ADDR_MASK) >> 12), level - 1, gfn, table, leaf);
                }
            }
        }
        visit(mem, self.root, 4, 0, table, leaf);
    }
}

/// What [`audit`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NptReport {
    /// Leaves (guest pages) mapped.
    pub leaves: u64,
    /// Table frames.
    pub tables: u64,
}

/// A broken rule of the nested tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NptViolation {
    /// A leaf maps a frame the domain does not own (a hypervisor or foreign frame).
    ForeignFrame {
        /// Guest frame.
        gfn: u64,
        /// The frame it maps.
        mfn: u64,
    },
    /// A leaf beyond the domain's memory.
    BeyondMemory {
        /// Guest frame.
        gfn: u64,
    },
    /// A leaf maps one of the nested tables themselves.
    MapsTable {
        /// Guest frame.
        gfn: u64,
    },
    /// A table frame belongs to a domain (it must be the hypervisor's).
    TableOwned {
        /// The table frame.
        mfn: u64,
    },
    /// An entry with a bit the builder never sets (large page, reserved, NX...).
    BadEntry {
        /// Guest frame (of the leaf, or the first one under the table entry).
        gfn: u64,
        /// The entry.
        entry: u64,
    },
}

impl core::fmt::Display for NptViolation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            NptViolation::ForeignFrame { gfn, mfn } => {
                write!(
                    f,
                    "nested leaf gfn {gfn:#x} maps frame {mfn:#x} not owned by the domain"
                )
            }
            NptViolation::BeyondMemory { gfn } => {
                write!(f, "nested leaf gfn {gfn:#x} beyond the domain's memory")
            }
            NptViolation::MapsTable { gfn } => {
                write!(f, "nested leaf gfn {gfn:#x} maps a nested table frame")
            }
            NptViolation::TableOwned { mfn } => {
                write!(f, "nested table frame {mfn:#x} is owned by a domain")
            }
            NptViolation::BadEntry { gfn, entry } => {
                write!(
                    f,
                    "nested entry {entry:#x} at gfn {gfn:#x} has unexpected bits"
                )
            }
        }
    }
}

/// Check the nested tables of domain `domid` with `nr_pages` of memory: every leaf maps a frame the domain
/// owns (`owner`), below `nr_pages`, never a table frame; table frames are nobody's (the hypervisor's);
/// no entry carries a bit outside P/RW/US/A/D and the address. `is_table` must say whether a frame is one
/// of this tree's tables (collected by the caller with [`Npt::walk`]).
pub fn audit(
    mem: &impl PhysRead,
    npt: &Npt,
    domid: u16,
    nr_pages: u64,
    owner: impl Fn(Mfn) -> Option<u16>,
    is_table: impl Fn(Mfn) -> bool,
) -> Result<NptReport, NptViolation> {
    let report = core::cell::Cell::new(NptReport::default());
    let first: core::cell::Cell<Option<NptViolation>> = core::cell::Cell::new(None);
    let note = |v: NptViolation| {
        if first.get().is_none() {
            first.set(Some(v));
        }
    };
    npt.walk(
        mem,
        &mut |t, level| {
            let mut r = report.get();
            r.tables += 1;
            report.set(r);
            if owner(t).is_some() {
                note(NptViolation::TableOwned { mfn: t.0 });
            }
            // Entries of the upper tables: the same allowed bits (no PS, no reserved, no NX). Leaves are
            // checked below.
            for i in (0..512).filter(|_| level > 1) {
                let e = read_entry(mem, t, i);
                if e & P != 0 && e & !ALLOWED != 0 {
                    note(NptViolation::BadEntry { gfn: 0, entry: e });
                }
            }
        },
        &mut |gfn, e| {
            let mut r = report.get();
            r.leaves += 1;
            report.set(r);
            let mfn = Mfn((e & ADDR_MASK) >> 12);
            if e & !ALLOWED != 0 {
                note(NptViolation::BadEntry { gfn, entry: e });
            } else if gfn >= nr_pages {
                note(NptViolation::BeyondMemory { gfn });
            } else if is_table(mfn) {
                note(NptViolation::MapsTable { gfn });
            } else if owner(mfn) != Some(domid) {
                note(NptViolation::ForeignFrame { gfn, mfn: mfn.0 });
            }
        },
    );
    match first.get() {
        Some(v) => Err(v),
        None => Ok(report.get()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::phys::fake::FakeMachine;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    /// Build a tree over `nr` guest pages with frames from the top of a fake machine; returns the tree, the
    /// gfn → mfn map and the owner map (guest frames owned by domain 1, tables by nobody).
    fn build(m: &mut FakeMachine, nr: u64) -> (Npt, HashMap<u64, Mfn>, HashMap<u64, u16>) {
        let mut frames = FakeFrames::default();
        let npt = Npt::new(m, &mut frames.with(m)).unwrap();
        let mut map = HashMap::new();
        let mut owner = HashMap::new();
        for gfn in 0..nr {
            let f = frames.next(m);
            owner.insert(f.0, 1u16);
            map.insert(gfn, f);
            npt.map(m, &mut frames.with(m), gfn, f).unwrap();
        }
        (npt, map, owner)
    }

    /// Hands out frames downwards from the top of the fake machine (tables and guest frames interleaved).
    #[derive(Default)]
    struct FakeFrames {
        used: u64,
    }
    struct Src<'a>(&'a mut u64, u64);
    impl FrameSource for Src<'_> {
        fn alloc_frame(&mut self) -> Option<Mfn> {
            *self.0 += 1;
            self.1.checked_sub(*self.0).map(Mfn)
        }
    }
    impl FakeFrames {
        fn with(&mut self, m: &FakeMachine) -> Src<'_> {
            Src(&mut self.used, m.nr_frames() as u64)
        }
        fn next(&mut self, m: &FakeMachine) -> Mfn {
            self.with(m).alloc_frame().unwrap()
        }
    }

    fn tables_of(m: &FakeMachine, npt: &Npt) -> HashSet<u64> {
        let mut t = HashSet::new();
        npt.walk(
            m,
            &mut |f, _| {
                t.insert(f.0);
            },
            &mut |_, _| {},
        );
        t
    }

    #[test]
    fn maps_and_translates() {
        let mut m = FakeMachine::new(64);
        let (npt, map, owner) = build(&mut m, 20);
        for (&gfn, &mfn) in &map {
            assert_eq!(
                npt.translate(&m, gfn << 12 | 0x123),
                Some(Maddr(mfn.addr().0 | 0x123))
            );
        }
        assert_eq!(npt.translate(&m, 20 << 12), None);
        assert_eq!(npt.translate(&m, 1 << 30), None);
        assert_eq!(npt.translate(&m, u64::MAX), None);
        let tables = tables_of(&m, &npt);
        assert_eq!(tables.len(), 4, "one table per level for 20 pages");
        let r = audit(
            &m,
            &npt,
            1,
            20,
            |f| owner.get(&f.0).copied(),
            |f| tables.contains(&f.0),
        )
        .unwrap();
        assert_eq!(
            r,
            NptReport {
                leaves: 20,
                tables: 4
            }
        );
    }

    #[test]
    fn out_of_frames_and_bad_gfn() {
        let mut m = FakeMachine::new(4);
        let mut used = 0;
        let npt = Npt::new(&mut m, &mut Src(&mut used, 3)).unwrap();
        assert_eq!(
            npt.map(&mut m, &mut Src(&mut used, 3), 0, Mfn(0)),
            Err(NptError::OutOfFrames)
        );
        assert_eq!(
            npt.map(&mut m, &mut Src(&mut 0, 4), 1 << 36, Mfn(0)),
            Err(NptError::BadGfn(1 << 36))
        );
    }

    #[test]
    fn audit_catches_hostile_trees() {
        let mut m = FakeMachine::new(64);
        let (npt, _, mut owner) = build(&mut m, 8);
        let tables = tables_of(&m, &npt);
        let run = |m: &FakeMachine, owner: &HashMap<u64, u16>, nr| {
            audit(
                m,
                &npt,
                1,
                nr,
                |f| owner.get(&f.0).copied(),
                |f| tables.contains(&f.0),
            )
        };
        assert!(run(&m, &owner, 8).is_ok());
        assert_eq!(
            run(&m, &owner, 7),
            Err(NptViolation::BeyondMemory { gfn: 7 })
        );
        // A second tree to make hostile: a leaf pointing at a hypervisor frame (owner none), at a table,
        // with NX set.
        let mut m2 = FakeMachine::new(64);
        let (npt2, map2, owner2) = build(&mut m2, 8);
        let t2 = tables_of(&m2, &npt2);
        // Find the level-1 table and rewrite entry 3.
        let mut l1t = None;
        npt2.walk(
            &m2,
            &mut |f, lvl| {
                if lvl == 1 {
                    l1t = Some(f)
                }
            },
            &mut |_, _| {},
        );
        let l1t = l1t.unwrap();
        let a2 = |m: &FakeMachine, o: &HashMap<u64, u16>| {
            audit(
                m,
                &npt2,
                1,
                8,
                |f| o.get(&f.0).copied(),
                |f| t2.contains(&f.0),
            )
        };
        m2.write_u64(Maddr(l1t.addr().0 + 3 * 8), 2 << 12 | P | RW | US);
        assert_eq!(
            a2(&m2, &owner2),
            Err(NptViolation::ForeignFrame { gfn: 3, mfn: 2 })
        );
        m2.write_u64(Maddr(l1t.addr().0 + 3 * 8), npt2.root.addr().0 | P | US);
        assert_eq!(a2(&m2, &owner2), Err(NptViolation::MapsTable { gfn: 3 }));
        let good = map2[&3];
        m2.write_u64(
            Maddr(l1t.addr().0 + 3 * 8),
            good.addr().0 | P | RW | US | 1 << 63,
        );
        assert!(matches!(
            a2(&m2, &owner2),
            Err(NptViolation::BadEntry { gfn: 3, .. })
        ));
        // A table frame owned by the domain.
        owner.insert(npt.root.0, 1);
        assert_eq!(
            run(&m, &owner, 8),
            Err(NptViolation::TableOwned { mfn: npt.root.0 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// For any memory size: every leaf maps a frame of the domain, no leaf lies beyond N, no table
        /// frame is a leaf, every gpa below N translates to its frame and none at or above N does.
        #[test]
        fn tree_invariants(nr in 1u64..1500, probes in proptest::collection::vec(0u64..(1 << 33), 32)) {
            let mut m = FakeMachine::new(1600 + 16);
            let (npt, map, owner) = build(&mut m, nr);
            let tables = tables_of(&m, &npt);
            let r = audit(&m, &npt, 1, nr, |f| owner.get(&f.0).copied(), |f| tables.contains(&f.0));
            prop_assert_eq!(r.map(|r| r.leaves), Ok(nr));
            let mut leaves = 0;
            npt.walk(&m, &mut |_, _| {}, &mut |gfn, e| {
                leaves += 1;
                assert!(gfn < nr);
                assert!(!tables.contains(&((e & ADDR_MASK) >> 12)));
                assert_eq!(Mfn((e & ADDR_MASK) >> 12), map[&gfn]);
            });
            prop_assert_eq!(leaves, nr);
            for p in probes {
                let t = npt.translate(&m, p);
                if p >> 12 < nr {
                    prop_assert_eq!(t, Some(Maddr(map[&(p >> 12)].addr().0 | (p & 0xfff))));
                } else {
                    prop_assert_eq!(t, None);
                }
            }
        }
    }
}
