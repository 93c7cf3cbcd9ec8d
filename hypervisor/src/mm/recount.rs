//! The teardown-time frame-table recount: every reference count of a domain's frames recomputed from the
//! page tables in memory, the pins and the base, and compared with the frame table.
//!
//! Page-table validation ([`super::ptval`]) keeps the counts incrementally; a bug there (or anything that
//! writes a validated table behind its back, such as the hypervisor writing into a frame a guest managed to
//! type as a table) shows up as a count that no longer matches the tables. The hypervisor runs this on every
//! domain it tears down, before dropping its pins and base, and logs the result; the fuzzer's harness
//! checks that line. The rules recounted are exactly `ptval`'s:
//!
//! - each present, counted entry of a validated table of level L holds one general reference on its
//!   target, and a type reference too unless it is a read-only L1 entry;
//! - the target of an L2..L4 entry has type L-1, of a writable L1 entry type `Writable`;
//! - a pin and the base each hold one general and one type reference, and so does the hypervisor's hold on
//!   a frame it writes ([`PageInfo::HV_WRITES`], type `Writable`: shared_info);
//! - a frame has a type exactly while its type count is non-zero, and is `VALIDATED` exactly while it has a
//!   page-table type; targets belong to the same domain.

use abi::types::{Maddr, Mfn};

use super::frame_table::{FrameTable, PageInfo, PageType};
use super::phys::PhysRead;
use super::pte::{Pte, PteFlags};
use super::ptval::{ENTRIES, is_reserved_l4};

/// Working memory: one slot per frame of the domain (owned frames, in MFN order).
pub struct RecountScratch<'a> {
    /// The domain's frames.
    pub mfns: &'a mut [Mfn],
    /// Recounted general references.
    pub refs: &'a mut [u32],
    /// Recounted type references.
    pub types: &'a mut [u32],
    /// The type the references demand (`None`: no demand yet).
    pub demand: &'a mut [PageType],
}

/// What the recount saw in a consistent domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecountReport {
    /// Frames the domain owns.
    pub frames: u64,
    /// Of those, validated page tables.
    pub tables: u64,
    /// Pinned frames.
    pub pins: u64,
    /// References recounted in all.
    pub refs: u64,
}

/// The first inconsistency found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// More frames than the scratch space holds (nothing was checked).
    TooManyFrames(u64),
    /// A validated entry names a frame the domain does not own.
    ForeignTarget {
        table: Mfn,
        index: usize,
        target: Mfn,
    },
    /// The frame's counts differ from the recount: `(refs, type_count)` stored and recounted.
    Counts {
        mfn: Mfn,
        stored: (u32, u32),
        recounted: (u32, u32),
    },
    /// The frame's type differs from what its references demand, or its flags contradict its type.
    Type {
        mfn: Mfn,
        have: PageType,
        want: PageType,
    },
}

impl core::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Mismatch::TooManyFrames(n) => write!(f, "{n} frames, too many to recount"),
            Mismatch::ForeignTarget {
                table,
                index,
                target,
            } => write!(f, "{table:?}[{index}] names {target:?}, not the domain's"),
            Mismatch::Counts {
                mfn,
                stored,
                recounted,
            } => write!(
                f,
                "{mfn:?}: refs/type_count {}/{} stored, {}/{} recounted",
                stored.0, stored.1, recounted.0, recounted.1
            ),
            Mismatch::Type { mfn, have, want } => {
                write!(f, "{mfn:?}: type {have:?}, its references need {want:?}")
            }
        }
    }
}

/// Count one reference on slot `at`; with `ty`, a type reference demanding that type. Two references that
/// demand different types are a mismatch (validation allows one type at a time).
fn take(s: &mut RecountScratch<'_>, at: usize, ty: Option<PageType>) -> Result<(), Mismatch> {
    s.refs[at] = s.refs[at].saturating_add(1);
    if let Some(t) = ty {
        if s.types[at] > 0 && s.demand[at] != t {
            return Err(Mismatch::Type {
                mfn: s.mfns[at],
                have: s.demand[at],
                want: t,
            });
        }
        s.types[at] = s.types[at].saturating_add(1);
        s.demand[at] = t;
    }
    Ok(())
}

/// Recount domain `dom`'s references (its current base `base`) and compare them with `ft`.
pub fn recount(
    ft: &FrameTable<'_>,
    mem: &impl PhysRead,
    dom: u16,
    base: Option<Mfn>,
    mut s: RecountScratch<'_>,
) -> Result<RecountReport, Mismatch> {
    let cap = s
        .mfns
        .len()
        .min(s.refs.len())
        .min(s.types.len())
        .min(s.demand.len());
    let mut n = 0usize;
    for i in 0..ft.len() {
        let mfn = Mfn(i as u64);
        if ft.owner(mfn) == Some(dom) {
            if n == cap {
                return Err(Mismatch::TooManyFrames(ft.count(dom)));
            }
            s.mfns[n] = mfn;
            n += 1;
        }
    }
    s.refs[..n].fill(0);
    s.types[..n].fill(0);
    s.demand[..n].fill(PageType::None);
    let slot = |s: &RecountScratch<'_>, m: Mfn| s.mfns[..n].binary_search(&m).ok();
    let mut report = RecountReport {
        frames: n as u64,
        ..RecountReport::default()
    };
    for k in 0..n {
        let table = s.mfns[k];
        let info = ft.info(table).copied().unwrap_or(PageInfo::EMPTY);
        if info.is_pinned() {
            report.pins += 1;
            take(&mut s, k, Some(info.ty))?;
        }
        if info.is_hv_written() {
            take(&mut s, k, Some(PageType::Writable))?;
        }
        let (Some(level), true) = (info.ty.level(), info.is_validated()) else {
            continue;
        };
        report.tables += 1;
        for index in 0..ENTRIES {
            if level == 4 && is_reserved_l4(index) {
                continue;
            }
            let e = Pte(mem.read_u64(Maddr(table.addr().0 + index as u64 * 8)));
            if !e.is_present() {
                continue;
            }
            let target = e.mfn();
            let Some(at) = slot(&s, target) else {
                return Err(Mismatch::ForeignTarget {
                    table,
                    index,
                    target,
                });
            };
            let ty = match level {
                1 if e.has(PteFlags::WRITABLE) => Some(PageType::Writable),
                1 => None,
                l => Some(PageType::table(l - 1)),
            };
            take(&mut s, at, ty)?;
        }
    }
    if let Some(b) = base
        && let Some(at) = slot(&s, b)
    {
        take(&mut s, at, Some(PageType::L4))?;
    }
    for k in 0..n {
        let mfn = s.mfns[k];
        let p = ft.info(mfn).copied().unwrap_or(PageInfo::EMPTY);
        let recounted = (s.refs[k], s.types[k]);
        report.refs += u64::from(recounted.0);
        if (p.refs, p.type_count) != recounted {
            return Err(Mismatch::Counts {
                mfn,
                stored: (p.refs, p.type_count),
                recounted,
            });
        }
        let want = if recounted.1 > 0 {
            s.demand[k]
        } else {
            PageType::None
        };
        if p.ty != want || p.is_validated() != p.ty.level().is_some() {
            return Err(Mismatch::Type {
                mfn,
                have: p.ty,
                want,
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::phys::fake::FakeMachine;
    use crate::mm::ptval::{Mm, Policy, PtMem};

    const D: u16 = 1;
    const NF: usize = 16;
    const P: u64 = 1;
    const RW: u64 = 2;

    struct Scratch {
        mfns: Vec<Mfn>,
        refs: Vec<u32>,
        types: Vec<u32>,
        demand: Vec<PageType>,
    }

    impl Scratch {
        fn new(n: usize) -> Self {
            Scratch {
                mfns: vec![Mfn(0); n],
                refs: vec![0; n],
                types: vec![0; n],
                demand: vec![PageType::None; n],
            }
        }
        fn get(&mut self) -> RecountScratch<'_> {
            RecountScratch {
                mfns: &mut self.mfns,
                refs: &mut self.refs,
                types: &mut self.types,
                demand: &mut self.demand,
            }
        }
    }

    /// Frames 0..12 of D, 12..16 of domain 2: L4 0 -> L3 1 -> L2 2 -> L1 3 mapping 5 (rw) and 6 (ro), 6
    /// also read-only from a pinned L1 4; 0 is the base and pinned.
    fn world() -> (FrameTable<'static>, FakeMachine) {
        let backing = Box::leak(vec![PageInfo::EMPTY; NF].into_boxed_slice());
        let mut ft = FrameTable::new(backing);
        for i in 0..NF as u64 {
            ft.assign(Mfn(i), if i < 12 { D } else { 2 }).unwrap();
        }
        let mut mem = FakeMachine::new(NF);
        let w = |mem: &mut FakeMachine, t: u64, i: u64, v: u64| {
            PtMem::write_u64(mem, Maddr(t * 4096 + i * 8), v)
        };
        w(&mut mem, 0, 0, (1 << 12) | P | RW);
        w(&mut mem, 1, 0, (2 << 12) | P | RW);
        w(&mut mem, 2, 0, (3 << 12) | P | RW);
        w(&mut mem, 3, 0, (5 << 12) | P | RW);
        w(&mut mem, 3, 1, (6 << 12) | P);
        w(&mut mem, 4, 7, (6 << 12) | P);
        {
            let policy = Policy {
                maxphyaddr: 36,
                hv_l4: &[],
            };
            let mut mm = Mm::new(&mut ft, &mut mem, policy);
            mm.set_base(None, Mfn(0), D).unwrap();
            mm.pin(Mfn(0), 4, D).unwrap();
            mm.pin(Mfn(4), 1, D).unwrap();
        }
        (ft, mem)
    }

    #[test]
    fn consistent_counts_pass() {
        let (ft, mem) = world();
        let mut s = Scratch::new(32);
        let r = recount(&ft, &mem, D, Some(Mfn(0)), s.get()).unwrap();
        assert_eq!((r.frames, r.tables, r.pins), (12, 5, 2));
        // base+pin on 0, 1, 2, 3, 5, 6 twice, 4's pin.
        assert_eq!(r.refs, 2 + 1 + 1 + 1 + 1 + 2 + 1);
        // Without the base the L4 is one type reference short.
        assert!(matches!(
            recount(&ft, &mem, D, None, s.get()),
            Err(Mismatch::Counts { mfn: Mfn(0), .. })
        ));
    }

    #[test]
    fn the_hypervisors_hold_on_shared_info_is_counted() {
        let (mut ft, mut mem) = world();
        {
            let policy = Policy {
                maxphyaddr: 36,
                hv_l4: &[],
            };
            Mm::new(&mut ft, &mut mem, policy)
                .hold_hv_writable(Mfn(7), D)
                .unwrap();
        }
        let mut s = Scratch::new(32);
        let r = recount(&ft, &mem, D, Some(Mfn(0)), s.get()).unwrap();
        assert_eq!(r.refs, 2 + 1 + 1 + 1 + 1 + 2 + 1 + 1);
        // A hold the frame table lost is a mismatch.
        ft.info_mut(Mfn(7)).unwrap().flags &= !PageInfo::HV_WRITES;
        assert!(matches!(
            recount(&ft, &mem, D, Some(Mfn(0)), s.get()),
            Err(Mismatch::Counts { mfn: Mfn(7), .. })
        ));
    }

    #[test]
    fn every_kind_of_inconsistency_is_found() {
        let mut s = Scratch::new(32);
        // A count off by one.
        let (mut ft, mem) = world();
        ft.info_mut(Mfn(6)).unwrap().refs += 1;
        let e = recount(&ft, &mem, D, Some(Mfn(0)), s.get()).unwrap_err();
        assert_eq!(
            e,
            Mismatch::Counts {
                mfn: Mfn(6),
                stored: (3, 0),
                recounted: (2, 0)
            }
        );
        assert!(e.to_string().contains("3/0 stored, 2/0 recounted"), "{e}");
        // A validated table changed behind the validator's back (the hypervisor writing into it).
        let (ft, mut mem) = world();
        PtMem::write_u64(&mut mem, Maddr(3 * 4096 + 16), (7 << 12) | P);
        assert!(matches!(
            recount(&ft, &mem, D, Some(Mfn(0)), s.get()),
            Err(Mismatch::Counts { mfn: Mfn(7), .. })
        ));
        // ... to name another domain's frame.
        let (ft, mut mem) = world();
        PtMem::write_u64(&mut mem, Maddr(4 * 4096 + 8), (13 << 12) | P);
        assert_eq!(
            recount(&ft, &mem, D, Some(Mfn(0)), s.get()),
            Err(Mismatch::ForeignTarget {
                table: Mfn(4),
                index: 1,
                target: Mfn(13)
            })
        );
        // ... to map a table writable (two type demands).
        let (ft, mut mem) = world();
        PtMem::write_u64(&mut mem, Maddr(3 * 4096 + 16), (4 << 12) | P | RW);
        assert!(matches!(
            recount(&ft, &mem, D, Some(Mfn(0)), s.get()),
            Err(Mismatch::Type { mfn: Mfn(4), .. })
        ));
        // A type without references, a flag contradicting the type.
        let (mut ft, mem) = world();
        ft.info_mut(Mfn(9)).unwrap().flags = PageInfo::VALIDATED;
        assert!(matches!(
            recount(&ft, &mem, D, Some(Mfn(0)), s.get()),
            Err(Mismatch::Type { mfn: Mfn(9), .. })
        ));
        // Too little scratch space.
        let (ft, mem) = world();
        let mut small = Scratch::new(4);
        assert_eq!(
            recount(&ft, &mem, D, Some(Mfn(0)), small.get()),
            Err(Mismatch::TooManyFrames(12))
        );
    }
}
