//! The teardown-time checks: before a domain's pins and base are dropped, its frame-table counts are
//! recounted from its page tables ([`crate::mm::recount`]) and its current address space is audited again
//! ([`crate::mm::audit`]), so that whatever the domain did while it ran (the fuzzer, a hostile scenario) is
//! checked against the rules at the point where mistakes would otherwise vanish. One log line says so:
//!
//! `teardown check: domain N: frame-table recount matches (...); isolation audit: 0 violations`
//!
//! or an ERROR line naming the first mismatch or violation (tests look for both).

use abi::types::Mfn;

use crate::arch::paging::IdentityMem;
use crate::mm::audit;
use crate::mm::frame_table::PageType;
use crate::mm::machine::Machine;
use crate::mm::recount::{RecountScratch, recount};
use crate::setup::{HvInfo, MAX_DOMAIN_PAGES};

/// Slots for every frame a domain may own: its pages, shared_info, and some slack.
const SLOTS: usize = MAX_DOMAIN_PAGES + 64;

struct Scratch {
    mfns: [Mfn; SLOTS],
    refs: [u32; SLOTS],
    types: [u32; SLOTS],
    demand: [PageType; SLOTS],
}

static SCRATCH: spin::Mutex<Scratch> = spin::Mutex::new(Scratch {
    mfns: [Mfn(0); SLOTS],
    refs: [0; SLOTS],
    types: [0; SLOTS],
    demand: [PageType::None; SLOTS],
});

/// Recount and audit domain `domid` (current base `base`) and log the result.
pub fn check(m: &Machine<'_>, hv: &HvInfo, domid: u16, base: Mfn) {
    let mut s = SCRATCH.lock();
    let s = &mut *s;
    let scratch = RecountScratch {
        mfns: &mut s.mfns,
        refs: &mut s.refs,
        types: &mut s.types,
        demand: &mut s.demand,
    };
    let counted = recount(&m.ft, &IdentityMem, domid, Some(base), scratch);
    let hvm = hv.mappings();
    // The base must still be one of the domain's L4s for the audit to mean anything.
    let audited = match m.ft.info(base) {
        Some(p) if m.ft.owner(base) == Some(domid) && p.ty == PageType::L4 => {
            audit::audit(&IdentityMem, base, domid, |f| m.ft.owner(f), &hvm).map(Some)
        }
        _ => Ok(None),
    };
    match (counted, audited) {
        (Ok(r), Ok(a)) => log::info!(
            "teardown check: domain {domid}: frame-table recount matches ({} frames, {} page tables, {} pins, {} references); isolation audit: {}",
            r.frames,
            r.tables,
            r.pins,
            r.refs,
            if a.is_some() {
                "0 violations"
            } else {
                "skipped (no L4 base)"
            }
        ),
        (Err(e), _) => {
            log::error!("teardown check: domain {domid}: frame-table recount MISMATCH: {e}")
        }
        (_, Err(v)) => {
            log::error!("teardown check: domain {domid}: isolation audit VIOLATION: {v}")
        }
    }
}
