//! `memory_op` (hypercall 12): the caller's reservation, the M2P table's location, and giving frames back
//! and taking new ones.
//!
//! - `XENMEM_current_reservation` / `XENMEM_maximum_reservation` (arg: a `domid_t`, only `DOMID_SELF` or the
//!   caller): the number of frames the domain owns / may own.
//! - `XENMEM_machphys_mapping` (arg: `xen_machphys_mapping`): where the read-only M2P table is mapped.
//! - `XENMEM_decrease_reservation` (arg: `xen_memory_reservation`, `extent_start` = array of MFNs, as for
//!   a PV guest): each frame must be the caller's and completely unused (no mapping, no page-table type);
//!   it is zeroed and returned to the hypervisor. Returns how many extents were released; stops at the
//!   first that cannot be.
//! - `XENMEM_increase_reservation`: new zeroed frames, up to the domain's maximum; their MFNs are written
//!   into `extent_start`. Returns how many were allocated. The guest records them in its P2M and the M2P
//!   (`MMU_MACHPHYS_UPDATE`).
//!
//! Deviation: only `extent_order` 0 (single frames) is supported; other orders return -EINVAL. Long calls
//! are continued Xen's way, with the extents done in the command's upper bits (`MEMOP_EXTENT_SHIFT`).

use abi::errno::Errno;
use abi::mm::*;
use abi::types::{Gva, Mfn};
use abi::xen::DOMID_SELF;

use super::MachineMem;
use super::{Action, HypercallCtx};

/// A decoded `memory_op` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryRequest {
    /// Report the reservation (current or maximum) of the domain named at this address.
    Reservation {
        /// Maximum rather than current.
        maximum: bool,
        /// Address of the `domid_t`.
        domid_at: Gva,
    },
    /// Describe the M2P mapping at this address.
    MachphysMapping(Gva),
    /// Free or allocate extents described by the `xen_memory_reservation` at `arg`.
    Extents {
        /// Allocate (increase) rather than free (decrease).
        increase: bool,
        /// The reservation structure.
        arg: Gva,
        /// Extents already done (continuation).
        start: u64,
    },
}

/// Decode the registers (pure).
pub fn decode(args: [u64; 5]) -> Result<MemoryRequest, Errno> {
    let [cmd, arg, ..] = args;
    let op = cmd & MEMOP_CMD_MASK;
    let start = cmd >> MEMOP_EXTENT_SHIFT;
    let arg = Gva(arg);
    if start != 0 && op != XENMEM_INCREASE_RESERVATION && op != XENMEM_DECREASE_RESERVATION {
        return Err(Errno::ENOSYS);
    }
    Ok(match op {
        XENMEM_CURRENT_RESERVATION => MemoryRequest::Reservation {
            maximum: false,
            domid_at: arg,
        },
        XENMEM_MAXIMUM_RESERVATION => MemoryRequest::Reservation {
            maximum: true,
            domid_at: arg,
        },
        XENMEM_MACHPHYS_MAPPING => MemoryRequest::MachphysMapping(arg),
        XENMEM_INCREASE_RESERVATION => MemoryRequest::Extents {
            increase: true,
            arg,
            start,
        },
        XENMEM_DECREASE_RESERVATION => MemoryRequest::Extents {
            increase: false,
            arg,
            start,
        },
        _ => return Err(Errno::ENOSYS),
    })
}

fn check_self(domid: u16, caller: u16) -> Result<(), Errno> {
    if domid == DOMID_SELF || domid == caller {
        Ok(())
    } else {
        Err(Errno::EPERM)
    }
}

/// Free one of the caller's frames, if it is completely unused.
fn release<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>, mfn: Mfn) -> Result<(), Errno> {
    // The shared-info page belongs to the domain but is the hypervisor's to keep (Xen: a xenheap page).
    if mfn == ctx.dom.shared_info {
        return Err(Errno::EBUSY);
    }
    let domid = ctx.domid;
    ctx.mm().free_frame(mfn, domid).map_err(|e| e.errno())?;
    let m = ctx.machine.get();
    m.m2p.invalidate(mfn);
    ctx.mem.frame_mut(mfn).fill(0);
    if m.frames.free(mfn).is_err() {
        // The frame table said the caller owned it; the allocator disagrees: a hypervisor bug.
        log::error!(
            "domain {}: freeing {mfn:?} that the allocator thinks is free",
            ctx.domid
        );
    }
    ctx.dom.tot_pages -= 1;
    Ok(())
}

/// Allocate one zeroed frame for the caller.
fn acquire<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Result<Mfn, Errno> {
    if ctx.dom.tot_pages >= ctx.dom.max_pages {
        return Err(Errno::ENOMEM);
    }
    let m = ctx.machine.get();
    let mfn = m.frames.alloc().ok_or(Errno::ENOMEM)?;
    ctx.mem.frame_mut(mfn).fill(0);
    if m.ft.assign(mfn, ctx.domid).is_err() {
        let _ = m.frames.free(mfn);
        return Err(Errno::ENOMEM);
    }
    m.m2p.invalidate(mfn);
    ctx.dom.tot_pages += 1;
    Ok(mfn)
}

fn extents<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    increase: bool,
    arg: Gva,
    start: u64,
) -> Action {
    let r: XenMemoryReservation = match ctx.guest().read_obj(arg) {
        Ok(r) => r,
        Err(e) => return Action::Return(e.as_ret()),
    };
    if r.extent_order != 0 || r.nr_extents > u64::from(u32::MAX) || start > r.nr_extents {
        return Action::Return(Errno::EINVAL.as_ret());
    }
    if let Err(e) = check_self(r.domid, ctx.domid) {
        return Action::Return(e.as_ret());
    }
    let op = if increase {
        XENMEM_INCREASE_RESERVATION
    } else {
        XENMEM_DECREASE_RESERVATION
    };
    for i in start..r.nr_extents {
        if !ctx.spend() {
            return Action::Continue([op | (i << MEMOP_EXTENT_SHIFT), arg.0, 0, 0, 0]);
        }
        let Some(slot) = Gva(r.extent_start).checked_add(i * 8) else {
            return Action::Return(i as i64);
        };
        let ok = if increase {
            acquire(ctx).and_then(|mfn| {
                let written = ctx.guest().write_obj(slot, &mfn.0);
                if written.is_err() {
                    // The guest cannot learn the frame: take it back.
                    let _ = release(ctx, mfn);
                }
                written
            })
        } else {
            ctx.guest()
                .read_obj::<u64>(slot)
                .and_then(|mfn| release(ctx, Mfn(mfn)))
        };
        if ok.is_err() {
            return Action::Return(i as i64);
        }
    }
    Action::Return(r.nr_extents as i64)
}

/// Handle `memory_op`.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn memory_op<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    match decode(ctx.args()) {
        Err(e) => Action::Return(e.as_ret()),
        Ok(MemoryRequest::Reservation { maximum, domid_at }) => {
            let r = ctx
                .guest()
                .read_obj::<u16>(domid_at)
                .and_then(|d| check_self(d, ctx.domid))
                .map(|()| {
                    (if maximum {
                        ctx.dom.max_pages
                    } else {
                        ctx.dom.tot_pages
                    }) as i64
                });
            Action::from(r)
        }
        Ok(MemoryRequest::MachphysMapping(at)) => {
            let len = ctx.machine.get().m2p.len();
            let m = XenMachphysMapping {
                v_start: RO_MPT_VIRT_START,
                v_end: RO_MPT_VIRT_START + len * 8,
                max_mfn: len.saturating_sub(1),
            };
            Action::from(ctx.guest().write_obj(at, &m).map(|()| 0))
        }
        Ok(MemoryRequest::Extents {
            increase,
            arg,
            start,
        }) => extents(ctx, increase, arg, start),
    }
}
