//! The update of one L1 entry (`update_va_mapping`, and `mmu_update` on an L1) in one pass, with the
//! level known and without an [`Mm`]: the general path ([`Mm::prepare`] + [`Mm::perform`]) reduced to
//! what it does for an L1, checked against it by the property test (`ptval_l1_oracle.rs`).

use abi::types::Mfn;

use super::super::frame_table::{FrameTable, NO_OWNER, PageType};
use super::super::pte::{Pte, PteFlags, reserved_addr_mask};
use super::{ENTRIES, Mm, MmError, Policy, PtMem, slot};

/// [`Mm::mod_entry`] of entry `index` of `table` without `preserve_ad`, for the case every mapping
/// update of a guest is (`update_va_mapping` finds its entry with a walk through the validated tables,
/// which always ends at an L1): `table` a validated L1 of `dom`, `index < 512`, and an entry the memory
/// calls [`plain`](PtMem::plain) (log-dirty off). `None` otherwise: the caller takes [`Mm::mod_entry`],
/// which then gives the exact outcome (with the log-dirty hooks).
///
/// For an L1 the general path reduces to this: the new entry takes a general reference and, if writable,
/// a `Writable` type reference (never a table type, so nothing is validated), the old entry drops the
/// same; the checks, their order, their errors and "failure changes nothing" are those of
/// [`Mm::prepare`] and [`Mm::perform`] at level 1 (the property test runs both on every update it
/// generates and compares results, frame tables and memory). Without an [`Mm`] (one is built only where
/// the old target would lose a table type, which the invariants rule out for an L1 entry's target), so
/// its fields are not set up and spilled on the way.
/// `rsvd_addr` is `reserved_addr_mask(policy.maxphyaddr)` (an [`Mm`] has it: [`Mm::mod_l1_entry`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)] // An `Mm`'s parts, passed apart on purpose (see above), and the update.
pub fn mod_l1_entry<M: PtMem>(
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    policy: &Policy<'_>,
    rsvd_addr: u64,
    table: Mfn,
    index: usize,
    new: u64,
    dom: u16,
) -> Option<Result<bool, MmError>> {
    match ft.info_mut(table) {
        Some(p)
            if dom != NO_OWNER
                && p.owner == dom
                && p.ty == PageType::L1
                && p.is_validated()
                && index < ENTRIES => {}
        _ => return None,
    }
    let at = slot(table, index);
    if !mem.plain(at) {
        return None;
    }
    // No hook: the entry as stored is the entry as its references count it.
    let old = Pte(mem.read_u64(at));
    let new = Pte(new);
    if new.is_present() {
        // `Mm::get_entry` at level 1: PS is PAT there, so only the address bits above MAXPHYADDR.
        debug_assert_eq!(rsvd_addr, reserved_addr_mask(policy.maxphyaddr));
        if new.0 & rsvd_addr != 0 {
            return Some(Err(MmError::ReservedBits { level: 1, index }));
        }
        // `Mm::get_ref` for a general reference, plus a `Writable` one for a writable entry.
        let mfn = new.mfn();
        let p = match ft.info_mut(mfn) {
            Some(p) if p.owner == dom => p,
            _ => return Some(Err(MmError::NotOwned(mfn))),
        };
        let Some(refs) = p.refs.checked_add(1) else {
            return Some(Err(MmError::CountOverflow(mfn)));
        };
        if new.has(PteFlags::WRITABLE) {
            if p.type_count > 0 {
                if p.ty != PageType::Writable {
                    let have = p.ty;
                    return Some(Err(MmError::TypeConflict {
                        mfn,
                        have,
                        want: PageType::Writable,
                    }));
                }
                let Some(n) = p.type_count.checked_add(1) else {
                    return Some(Err(MmError::CountOverflow(mfn)));
                };
                p.type_count = n;
            } else {
                p.ty = PageType::Writable;
                p.type_count = 1;
            }
        }
        p.refs = refs;
    }
    mem.write_plain(at, new.0);
    // `Mm::put_ref` of the old entry's references.
    if old.is_present() {
        let mfn = old.mfn();
        if let Some(p) = ft.info_mut(mfn)
            && let Some(level) = super::release(p, mfn, old.has(PteFlags::WRITABLE))
        {
            drop_table_type(ft, mem, policy, mfn, level);
        }
    }
    Some(Ok(old.is_present()))
}

/// [`Mm::drop_table_type`] for the old target of an L1 entry that was the last reference to a table type
/// (the invariants rule it out), out of line.
#[cold]
#[inline(never)]
fn drop_table_type<M: PtMem>(
    ft: &mut FrameTable<'_>,
    mem: &mut M,
    policy: &Policy<'_>,
    mfn: Mfn,
    level: u32,
) {
    Mm::new(ft, mem, *policy).drop_table_type(mfn, level);
}
