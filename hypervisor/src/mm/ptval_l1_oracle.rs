//! The oracle check of [`mod_l1_entry`]: every update the property test makes without `preserve_ad` is
//! replayed through the L1 update on a copy of the state it started from, and must give the general
//! path's result (`Mm::prepare` + `Mm::perform`), frame table and memory, with one write on success and
//! none on failure; `None` (the general path's job) exactly when the table is not a validated L1 of the
//! caller or the index is out of range (the test's memory is [`plain`](super::super::ptval::PtMem::plain)).

use std::sync::atomic::{AtomicU64, Ordering};

use abi::types::Mfn;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::super::frame_table::{FrameTable, NO_OWNER, PageInfo, PageType};
use super::super::pte::reserved_addr_mask;
use super::super::ptval::Mm;
use super::super::ptval::{ENTRIES, MmError, mod_l1_entry};
use super::{Harness, Mem, Op, apply, infos, policy};

/// Updates replayed through the L1 path and compared; updates it declined (`None`).
pub static COMPARED: AtomicU64 = AtomicU64::new(0);
/// See [`COMPARED`].
pub static DECLINED: AtomicU64 = AtomicU64::new(0);

/// The state an update starts from.
pub struct Before {
    infos: Vec<PageInfo>,
    frames: Vec<[u64; ENTRIES]>,
}

/// Copy the frame table and memory before an update.
pub fn snapshot(ft: &FrameTable<'_>, mem: &Mem) -> Before {
    Before {
        infos: infos(ft),
        frames: mem.frames.clone(),
    }
}

/// Replay `mod_entry(table, index, val, dom, false)` from `before` through [`mod_l1_entry`] and compare
/// with what the general path returned (`outcome`) and left (`ft`, `mem`).
pub fn check(
    before: Before,
    (table, index, val, dom): (u64, usize, u64, u16),
    outcome: Result<bool, MmError>,
    ft: &FrameTable<'_>,
    mem: &Mem,
) -> Result<(), TestCaseError> {
    let l1 = before.infos.get(table as usize).is_some_and(|p| {
        dom != NO_OWNER
            && p.owner == dom
            && p.ty == PageType::L1
            && p.is_validated()
            && index < ENTRIES
    });
    let mut backing = vec![PageInfo::EMPTY; before.infos.len()];
    let mut ft2 = FrameTable::new(&mut backing);
    for (i, p) in before.infos.iter().enumerate() {
        *ft2.info_mut(Mfn(i as u64)).expect("same size") = *p;
    }
    let mut mem2 = Mem {
        frames: before.frames,
        writes: 0,
    };
    let policy = policy();
    let rsvd = reserved_addr_mask(policy.maxphyaddr);
    let fast = mod_l1_entry(
        &mut ft2,
        &mut mem2,
        &policy,
        rsvd,
        Mfn(table),
        index,
        val,
        dom,
    );
    let Some(fast) = fast else {
        prop_assert!(!l1, "the L1 path declined an L1 update: {:?}", outcome);
        DECLINED.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    prop_assert!(
        l1,
        "the L1 path took table {} (not an L1 of {})",
        table,
        dom
    );
    COMPARED.fetch_add(1, Ordering::Relaxed);
    prop_assert_eq!(fast, outcome, "result of the L1 path and the general one");
    prop_assert!(
        infos(&ft2) == infos(ft),
        "frame tables differ after {:?}",
        outcome
    );
    prop_assert!(
        mem2.frames == mem.frames,
        "memory differs after {:?}",
        outcome
    );
    prop_assert_eq!(
        mem2.writes,
        u64::from(outcome.is_ok()),
        "writes of the L1 path"
    );
    Ok(())
}

/// [`apply`], and for an update without `preserve_ad` the same update through `ptval::mod_l1_entry`
/// on a copy of the state, compared (this module).
pub fn apply_checked(
    mm: &mut Mm<'_, '_, Mem>,
    h: &Harness,
    op: Op,
) -> Result<Result<bool, MmError>, TestCaseError> {
    let before = match op {
        Op::Mod { ad: false, .. } => Some(snapshot(mm.ft, mm.mem)),
        _ => None,
    };
    let outcome = apply(mm, h, op);
    if let (
        Some(before),
        Op::Mod {
            table,
            index,
            val,
            dom,
            ..
        },
    ) = (before, op)
    {
        check(before, (table, index, val.0, dom), outcome, mm.ft, mm.mem)?;
    }
    Ok(outcome)
}
