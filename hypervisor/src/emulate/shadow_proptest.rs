//! Property test of the shadow page tables: random guest table writes, INVLPGs, CR3 loads and accesses
//! against a model CPU that uses only the shadow tables.
//!
//! A domain of 32 guest frames (machine frames 1000..1032), a shadow pool of 48 frames (2000..2048), the
//! hypervisor's slot 257 pointing at machine frame 9999. Guest tables live in frames 0..8 and are written
//! with random entries naming frames inside and outside the domain, with random P/W/U/PS/NX/G bits. After
//! every step: every shadow leaf maps a domain frame, is never global, and every root keeps the
//! hypervisor's entry. After every INVLPG of an address and every CR3 load, every shadow translation of
//! that address (resp. of the loaded root) agrees with the guest's tables now (frame, and never writable,
//! user or executable beyond them), and an access through the shadow gives exactly what the guest's tables
//! give: the same frame, or the same #PF error code, after at most two hidden faults.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::shadow::{
    self, Access, Fault, FaultResult, GuestPhys, Mode, Shadow, ShadowFrames, leaf, pf,
};

const PAGES: u64 = 32;
const MFN_BASE: u64 = 1000;
const POOL_BASE: u64 = 2000;
const POOL: u64 = 48;
const HV_SLOT: usize = 257;
const HV_ENTRY: u64 = (9999 << 12) | 3;

struct Mem {
    frames: Vec<[u64; 512]>,
}

impl GuestPhys for Mem {
    fn pages(&self) -> u64 {
        PAGES
    }
    fn read_u64(&self, gpa: u64) -> u64 {
        self.frames[(gpa >> 12) as usize][((gpa & 0xfff) / 8) as usize]
    }
    fn write_u64(&mut self, gpa: u64, v: u64) {
        self.frames[(gpa >> 12) as usize][((gpa & 0xfff) / 8) as usize] = v;
    }
    fn mfn_of(&self, gfn: u64) -> u64 {
        assert!(gfn < PAGES);
        MFN_BASE + gfn
    }
}

struct Pool {
    mem: Vec<[u64; 512]>,
    free: Vec<u64>,
}

impl ShadowFrames for Pool {
    fn alloc(&mut self) -> Option<u64> {
        let m = self.free.pop()?;
        self.mem[(m - POOL_BASE) as usize] = [0; 512];
        Some(m)
    }
    fn free(&mut self, mfn: u64) {
        assert!(
            (POOL_BASE..POOL_BASE + POOL).contains(&mfn),
            "freeing a foreign frame {mfn}"
        );
        assert!(!self.free.contains(&mfn), "double free of {mfn}");
        self.free.push(mfn);
    }
    fn read(&self, mfn: u64, idx: usize) -> u64 {
        assert!(
            (POOL_BASE..POOL_BASE + POOL).contains(&mfn),
            "shadow table in a foreign frame {mfn}"
        );
        self.mem[(mfn - POOL_BASE) as usize][idx]
    }
    fn write(&mut self, mfn: u64, idx: usize, v: u64) {
        assert!(
            (POOL_BASE..POOL_BASE + POOL).contains(&mfn),
            "shadow table in a foreign frame {mfn}"
        );
        self.mem[(mfn - POOL_BASE) as usize][idx] = v;
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        frame: u64,
        idx: usize,
        target: u64,
        flags: u64,
    },
    Invlpg(u64),
    LoadCr3(u64),
    Access(u64, u8, bool),
}

const IDX: [usize; 4] = [0, 0, 1, 511];

fn va_strategy() -> impl Strategy<Value = u64> {
    (0..5usize, 0..4usize, 0..4usize, 0..4usize, 0..2u64).prop_map(|(a, b, c, d, off)| {
        let l4 = [0usize, 0, 1, 257, 511][a];
        let mut va = ((l4 as u64) << 39)
            | ((IDX[b] as u64) << 30)
            | ((IDX[c] as u64) << 21)
            | ((IDX[d] as u64) << 12);
        va |= off * 0x123;
        if l4 >= 256 {
            va |= 0xffff_0000_0000_0000;
        }
        va
    })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..8u64, prop_oneof![Just(0usize), Just(1), Just(257), Just(511)], prop_oneof![0..12u64, Just(40u64)],
              prop::bits::u64::masked(1 | 2 | 4 | 1 << 7 | 1 << 8 | 1 << 63 | 1 << 5 | 1 << 6))
            .prop_map(|(frame, idx, target, flags)| Op::Write { frame, idx, target, flags: flags | 1 }),
        1 => (0..8u64, prop_oneof![Just(0usize), Just(1), Just(511)]).prop_map(|(frame, idx)| Op::Write { frame, idx, target: 0, flags: 0 }),
        2 => va_strategy().prop_map(Op::Invlpg),
        1 => prop_oneof![0..4u64, Just(40u64)].prop_map(Op::LoadCr3),
        4 => (va_strategy(), 0..3u8, any::<bool>()).prop_map(|(v, k, u)| Op::Access(v, k, u)),
    ]
}

/// What the model CPU does with the shadow alone: `Ok(mfn)` or `Err(error code)`.
fn cpu_access(sh: &Shadow, pool: &Pool, va: u64, access: Access, user: bool) -> Result<u64, u32> {
    let code = if access == Access::Write {
        pf::WRITE
    } else {
        0
    } | if user { pf::USER } else { 0 }
        | if access == Access::Fetch {
            pf::FETCH
        } else {
            0
        };
    let e = sh.lookup(pool, va).ok_or(code)?;
    let denied = (user && !leaf::user(e))
        || (access == Access::Write && !leaf::writable(e))
        || (access == Access::Fetch && leaf::nx(e));
    if denied {
        Err(code | pf::PRESENT)
    } else {
        Ok(leaf::mfn(e))
    }
}

struct Harness {
    mem: Mem,
    pool: Pool,
    sh: Shadow,
    cr3: u64,
    mode: Mode,
    /// No guest table write since the last CR3 load: every shadow leaf of the current root must agree
    /// with the guest's tables exactly.
    fresh: bool,
}

thread_local! {
    static SUCCESSES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Harness {
    fn check_fresh(&mut self) -> Result<(), TestCaseError> {
        if !self.fresh {
            return Ok(());
        }
        let mut leaves = vec![];
        let cr3 = self.cr3;
        self.sh.for_each_leaf(&self.pool, &mut |g, v, e| {
            if g == cr3 {
                leaves.push((g, v, e));
            }
        });
        for (g, v, e) in leaves {
            self.check_leaf(g, v, e)?;
        }
        Ok(())
    }

    fn check_always(&self) -> Result<(), TestCaseError> {
        let mut bad = None;
        self.sh.for_each_leaf(&self.pool, &mut |_, va, e| {
            let m = leaf::mfn(e);
            if !(MFN_BASE..MFN_BASE + PAGES).contains(&m) || leaf::global(e) {
                bad = Some((va, e));
            }
        });
        prop_assert!(bad.is_none(), "bad shadow leaf {:x?}", bad);
        for r in self.sh.root_frames() {
            prop_assert_eq!(self.pool.read(r, HV_SLOT), HV_ENTRY);
        }
        Ok(())
    }

    /// Shadow leaves of `va` (all roots, or only the current one) agree with the guest's tables now.
    fn check_leaf(&mut self, g_l4: u64, va: u64, e: u64) -> Result<(), TestCaseError> {
        match shadow::walk(
            &mut self.mem,
            g_l4,
            va,
            Access::Read,
            false,
            self.mode,
            false,
        ) {
            Ok(t) => {
                prop_assert_eq!(leaf::mfn(e), MFN_BASE + t.gfn, "stale frame at {:#x}", va);
                prop_assert!(
                    !leaf::writable(e) || (t.writable && t.dirty),
                    "writable beyond the guest at {:#x}",
                    va
                );
                prop_assert!(
                    !leaf::user(e) || t.user,
                    "user beyond the guest at {:#x}",
                    va
                );
                prop_assert!(
                    leaf::nx(e) || !t.nx,
                    "executable beyond the guest at {:#x}",
                    va
                );
            }
            Err(f) => prop_assert!(
                false,
                "shadow maps {:#x} ({:#x}) the guest does not: {:?}",
                va,
                e,
                f
            ),
        }
        Ok(())
    }

    /// An access through the shadow gives what the guest's tables give. `Ok(false)`: the domain crashed.
    fn access(
        &mut self,
        va: u64,
        access: Access,
        user: bool,
        exact: bool,
    ) -> Result<bool, TestCaseError> {
        if (va >> 39) & 511 == HV_SLOT as u64 || self.sh.current_root().is_none() {
            return Ok(true);
        }
        for _ in 0..3 {
            match cpu_access(&self.sh, &self.pool, va, access, user) {
                Ok(m) => {
                    SUCCESSES.with(|c| c.set(c.get() + 1));
                    if exact || self.fresh {
                        let want = shadow::walk(
                            &mut self.mem,
                            self.cr3,
                            va,
                            access,
                            user,
                            self.mode,
                            false,
                        );
                        prop_assert_eq!(
                            want.map(|t| MFN_BASE + t.gfn),
                            Ok(m),
                            "access to {:#x} disagrees",
                            va
                        );
                    }
                    return Ok(true);
                }
                Err(code) => {
                    let want =
                        shadow::walk(&mut self.mem, self.cr3, va, access, user, self.mode, false);
                    match self.sh.page_fault(
                        &mut self.mem,
                        &mut self.pool,
                        self.cr3,
                        va,
                        code,
                        self.mode,
                    ) {
                        Ok(FaultResult::Hidden) => prop_assert!(
                            want.is_ok(),
                            "hidden fault the guest refuses at {:#x}",
                            va
                        ),
                        Ok(FaultResult::Reflect(c)) => {
                            prop_assert_eq!(want, Err(Fault::Page(c)), "true fault at {:#x}", va);
                            return Ok(true);
                        }
                        Err(Fault::Crash(_)) => return Ok(false),
                        Err(Fault::Page(_)) => {
                            prop_assert!(false, "page_fault returned a page fault")
                        }
                    }
                }
            }
        }
        prop_assert!(false, "more than two hidden faults at {:#x}", va);
        Ok(false)
    }
}

fn run_case(nxe: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness {
        mem: Mem {
            frames: vec![[0; 512]; PAGES as usize],
        },
        pool: Pool {
            mem: vec![[0; 512]; POOL as usize],
            free: (POOL_BASE..POOL_BASE + POOL).collect(),
        },
        sh: Shadow::new(HV_SLOT, HV_ENTRY),
        cr3: 0,
        mode: Mode { nxe, pge: false },
        fresh: true,
    };
    // A plausible start: frame 0 is an L4 -> 1 (L3) -> 2 (L2) -> 3 (L1) -> frames 8.. for VA 0.
    h.mem.frames[0][0] = (1 << 12) | 7;
    h.mem.frames[1][0] = (2 << 12) | 7;
    h.mem.frames[2][0] = (3 << 12) | 7;
    h.mem.frames[3][0] = (8 << 12) | 7;
    h.mem.frames[3][1] = (9 << 12) | 5;
    h.mem.frames[3][511] = (10 << 12) | 3 | 1 << 63;
    h.mem.frames[2][1] = (4 << 12) | 3;
    h.mem.frames[4][0] = (11 << 12) | 7;
    h.mem.frames[4][1] = (12 << 12) | 7;
    h.mem.frames[1][1] = (5 << 12) | 7;
    h.mem.frames[5][0] = 0x87; // a 2 MiB page at 0
    h.mem.frames[6][0] = 0x83; // a 1 GiB page at 0
    h.mem.frames[0][511] = (6 << 12) | 3;
    h.mem.frames[6][511] = (7 << 12) | 3;
    h.mem.frames[7][511] = 0x83;
    h.sh.load_cr3(&h.mem, &mut h.pool, 0, h.mode).unwrap();
    let kinds = [Access::Read, Access::Write, Access::Fetch];
    for op in ops {
        match op {
            Op::Write {
                frame,
                idx,
                target,
                flags,
            } => {
                let v = if flags == 0 {
                    0
                } else {
                    (target << 12) | (flags & !(1 << 63) & 0xfff) | (flags & (1 << 63))
                };
                h.mem.frames[frame as usize][idx] = v;
                h.fresh = false;
            }
            Op::Invlpg(va) => {
                h.sh.invlpg(&mut h.pool, va);
                let page = va & !0xfff;
                let mut leaves = vec![];
                h.sh.for_each_leaf(&h.pool, &mut |g, v, e| {
                    if v == page {
                        leaves.push((g, v, e));
                    }
                });
                for (g, v, e) in leaves {
                    h.check_leaf(g, v, e)?;
                }
                for k in kinds {
                    for u in [false, true] {
                        if !h.access(va, k, u, true)? {
                            return Ok(());
                        }
                    }
                }
            }
            Op::LoadCr3(f) => {
                match h.sh.load_cr3(&h.mem, &mut h.pool, f << 12, h.mode) {
                    Ok(_) => {
                        h.cr3 = f << 12;
                        h.fresh = true;
                    }
                    Err(Fault::Crash(_)) => return Ok(()),
                    Err(e) => prop_assert!(false, "{:?}", e),
                }
                let cur = h.sh.current_root().unwrap();
                let mut leaves = vec![];
                h.sh.for_each_leaf(&h.pool, &mut |g, v, e| {
                    if g == h.cr3 {
                        leaves.push((g, v, e));
                    }
                });
                prop_assert!(leaves.is_empty() || h.pool.read(cur, HV_SLOT) == HV_ENTRY);
                for (g, v, e) in leaves {
                    h.check_leaf(g, v, e)?;
                }
            }
            Op::Access(va, k, u) => {
                if !h.access(va, kinds[usize::from(k)], u, false)? {
                    return Ok(());
                }
            }
        }
        h.check_always()?;
        h.check_fresh()?;
    }
    // Teardown returns every frame.
    h.sh.destroy(&mut h.pool);
    prop_assert_eq!(h.pool.free.len() as u64, POOL);
    Ok(())
}

#[test]
fn shadow_invariants_hold_under_random_guest_behaviour() {
    let cases = std::env::var("SHADOW_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(any::<bool>(), prop::collection::vec(op_strategy(), 4..40)),
            |(nxe, ops)| run_case(nxe, ops),
        )
        .unwrap();
    // The cases must exercise translations, not only faults.
    let ok = SUCCESSES.with(|c| c.get());
    assert!(
        ok > u64::from(cases),
        "only {ok} successful accesses in {cases} cases"
    );
}

#[test]
fn hidden_then_dirty_then_true_fault() {
    let mut h = Harness {
        mem: Mem {
            frames: vec![[0; 512]; PAGES as usize],
        },
        pool: Pool {
            mem: vec![[0; 512]; POOL as usize],
            free: (POOL_BASE..POOL_BASE + POOL).collect(),
        },
        sh: Shadow::new(HV_SLOT, HV_ENTRY),
        cr3: 0,
        mode: Mode {
            nxe: true,
            pge: false,
        },
        fresh: false,
    };
    h.mem.frames[0][0] = (1 << 12) | 7;
    h.mem.frames[1][0] = (2 << 12) | 7;
    h.mem.frames[2][0] = (3 << 12) | 7;
    h.mem.frames[3][0] = (8 << 12) | 3; // supervisor, writable, clean
    h.sh.load_cr3(&h.mem, &mut h.pool, 0, h.mode).unwrap();
    // Read: one hidden fault, the leaf read-only (not dirty yet), guest A set.
    assert_eq!(cpu_access(&h.sh, &h.pool, 0, Access::Read, false), Err(0));
    assert_eq!(
        h.sh.page_fault(&mut h.mem, &mut h.pool, 0, 0, 0, h.mode),
        Ok(FaultResult::Hidden)
    );
    assert_eq!(cpu_access(&h.sh, &h.pool, 0, Access::Read, false), Ok(1008));
    assert_eq!(h.mem.frames[3][0] & 0x60, 0x20);
    // Write: a second hidden fault sets D and makes the leaf writable.
    assert_eq!(cpu_access(&h.sh, &h.pool, 0, Access::Write, false), Err(3));
    assert_eq!(
        h.sh.page_fault(&mut h.mem, &mut h.pool, 0, 0, 3, h.mode),
        Ok(FaultResult::Hidden)
    );
    assert_eq!(h.mem.frames[3][0] & 0x60, 0x60);
    assert_eq!(
        cpu_access(&h.sh, &h.pool, 0, Access::Write, false),
        Ok(1008)
    );
    // User access to a supervisor page: a true fault with the guest's error code.
    assert_eq!(
        h.sh.page_fault(&mut h.mem, &mut h.pool, 0, 0, 5, h.mode),
        Ok(FaultResult::Reflect(5))
    );
    // The guest makes the page read-only; without INVLPG the stale writable entry may stay (TLB semantics);
    // after INVLPG the write is a true fault.
    h.mem.frames[3][0] = (8 << 12) | 1 | 0x60;
    h.sh.invlpg(&mut h.pool, 0);
    assert_eq!(cpu_access(&h.sh, &h.pool, 0, Access::Write, false), Err(2));
    assert_eq!(
        h.sh.page_fault(&mut h.mem, &mut h.pool, 0, 0, 2, h.mode),
        Ok(FaultResult::Reflect(3))
    );
    // A guest table naming a frame outside the domain crashes the domain.
    h.mem.frames[3][1] = (40 << 12) | 3;
    assert_eq!(
        h.sh.page_fault(&mut h.mem, &mut h.pool, 0, 0x1000, 0, h.mode),
        Err(Fault::Crash(
            "guest page table maps memory outside the domain"
        ))
    );
    // The hypervisor's slot is never filled.
    assert!(matches!(
        h.sh.page_fault(&mut h.mem, &mut h.pool, 0, 0xffff_8080_0000_0000, 0, h.mode),
        Err(Fault::Crash(_))
    ));
    // Reserved bit: PS in an L4 entry.
    h.mem.frames[0][1] = (1 << 12) | 0x87;
    assert_eq!(
        h.sh.page_fault(&mut h.mem, &mut h.pool, 0, 1 << 39, 0, h.mode),
        Ok(FaultResult::Reflect(pf::PRESENT | pf::RSVD))
    );
}

#[test]
fn pool_exhaustion_resets_instead_of_failing() {
    let mut h = Harness {
        mem: Mem {
            frames: vec![[0; 512]; PAGES as usize],
        },
        pool: Pool {
            mem: vec![[0; 512]; 4],
            free: (POOL_BASE..POOL_BASE + 4).collect(),
        },
        sh: Shadow::new(HV_SLOT, HV_ENTRY),
        cr3: 0,
        mode: Mode {
            nxe: false,
            pge: false,
        },
        fresh: false,
    };
    // L4 -> L3 -> two L2 entries -> two L1s: the second fill needs a 5th frame.
    h.mem.frames[0][0] = (1 << 12) | 7;
    h.mem.frames[1][0] = (2 << 12) | 7;
    h.mem.frames[2][0] = (3 << 12) | 7;
    h.mem.frames[2][1] = (4 << 12) | 7;
    h.mem.frames[3][0] = (8 << 12) | 7;
    h.mem.frames[4][0] = (9 << 12) | 7;
    h.sh.load_cr3(&h.mem, &mut h.pool, 0, h.mode).unwrap();
    assert_eq!(
        h.sh.page_fault(&mut h.mem, &mut h.pool, 0, 0, 0, h.mode),
        Ok(FaultResult::Hidden)
    );
    assert_eq!(
        h.sh.page_fault(&mut h.mem, &mut h.pool, 0, 1 << 21, 0, h.mode),
        Ok(FaultResult::Hidden)
    );
    assert_eq!(h.sh.stats.pool_resets, 1);
    assert_eq!(
        cpu_access(&h.sh, &h.pool, 1 << 21, Access::Read, false),
        Ok(1009)
    );
}
