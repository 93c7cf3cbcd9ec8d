//! `mmuext_op` (hypercall 26): pin and unpin page tables, switch the page-table base, flush the TLB.
//!
//! `mmuext_op(ops, count, pdone, foreigndom)` with 24-byte `mmuext_op` entries; batching, `pdone` and
//! preemption work exactly like `mmu_update` (see there). Pinning takes a type reference so a table stays
//! validated while it is not in use; `NEW_BASEPTR` validates the new L4 (taking its type reference) before
//! dropping the old one's.

use abi::errno::Errno;
use abi::mm::*;
use abi::types::{Gva, Mfn};
use abi::xen::MmuextOp;

use super::MachineMem;
use super::mmu_update::run_batch;
use super::{Action, HypercallCtx};

/// A decoded `mmuext_op` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtOp {
    /// Validate and pin a table of this level (1..=4).
    Pin(Mfn, u32),
    /// Drop a pin.
    Unpin(Mfn),
    /// Load a new L4.
    NewBaseptr(Mfn),
    /// Flush every TLB entry of this address space.
    FlushTlb,
    /// Flush the translation of one page.
    Invlpg(Gva),
}

/// Decode one entry (pure).
pub fn decode_op(op: MmuextOp) -> Result<ExtOp, Errno> {
    let mfn = Mfn(op.arg1);
    Ok(match op.cmd {
        MMUEXT_PIN_L1_TABLE..=MMUEXT_PIN_L4_TABLE => {
            ExtOp::Pin(mfn, op.cmd - MMUEXT_PIN_L1_TABLE + 1)
        }
        MMUEXT_UNPIN_TABLE => ExtOp::Unpin(mfn),
        MMUEXT_NEW_BASEPTR => ExtOp::NewBaseptr(mfn),
        MMUEXT_TLB_FLUSH_LOCAL | MMUEXT_TLB_FLUSH_ALL | MMUEXT_TLB_FLUSH_MULTI => ExtOp::FlushTlb,
        MMUEXT_INVLPG_LOCAL | MMUEXT_INVLPG_ALL | MMUEXT_INVLPG_MULTI => {
            // An invalidation address is checked before it could reach INVLPG (XSA-279).
            let va = Gva(op.arg1);
            if !va.is_canonical() {
                return Err(Errno::EINVAL);
            }
            ExtOp::Invlpg(va)
        }
        _ => return Err(Errno::ENOSYS),
    })
}

/// Carry out one decoded entry (pinned inline into `mmuext_op`'s loop: see `run_batch`).
#[inline(always)]
fn apply<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>, op: ExtOp) -> Result<(), Errno> {
    let domid = ctx.domid;
    match op {
        ExtOp::Pin(mfn, level) => ctx.mm().pin(mfn, level, domid).map_err(|e| e.errno()),
        ExtOp::Unpin(mfn) => {
            ctx.mm().unpin(mfn, domid).map_err(|e| e.errno())?;
            ctx.dom.flush_tlb = true;
            Ok(())
        }
        ExtOp::NewBaseptr(mfn) => {
            let old = ctx.dom.base;
            ctx.mm()
                .set_base(Some(old), mfn, domid)
                .map_err(|e| e.errno())?;
            ctx.dom.base = mfn;
            ctx.dom.flush_tlb = true;
            Ok(())
        }
        // Every return to the guest without PCID reloads CR3 (a full flush); with PCID the domain's tag is
        // flushed on its next entry. Either way the request is honoured.
        ExtOp::FlushTlb | ExtOp::Invlpg(_) => {
            ctx.dom.flush_tlb = true;
            Ok(())
        }
    }
}

/// Handle `mmuext_op`.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn mmuext_op<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    run_batch(ctx, 24, |ctx, op: MmuextOp| {
        decode_op(op).and_then(|op| apply(ctx, op))
    })
}
