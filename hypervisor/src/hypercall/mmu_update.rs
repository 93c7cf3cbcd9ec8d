//! `mmu_update` (hypercall 1) and `update_va_mapping` (hypercall 14): validated page-table updates.
//!
//! `mmu_update(reqs, count, pdone, foreigndom)`: each 16-byte request is `(ptr, val)`; the low two bits of
//! `ptr` select the command: `MMU_NORMAL_PT_UPDATE` / `MMU_PT_UPDATE_PRESERVE_AD` (ptr = machine address of
//! the entry: its frame must be one of the caller's validated page tables) or `MMU_MACHPHYS_UPDATE` (ptr =
//! mfn << 12, val = pfn: an M2P entry of one of the caller's frames). Requests are read one at a time, each
//! checked where it is read; the first bad one stops the batch with its errno and `*pdone` says exactly how
//! many were applied before it. A long batch is preempted after [`super::BUDGET`] requests: `*pdone` is
//! written, and the call restarts at the next request with `MMU_UPDATE_PREEMPTED` in `count`, so the result
//! is identical to an unpreempted run.
//!
//! `update_va_mapping(va, val, flags)`: the same validated update on the L1 entry that maps `va` in the
//! current address space, then the requested flush.

use abi::errno::Errno;
use abi::mm::{
    MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, MMU_UPDATE_PREEMPTED,
    UVMF_ALL, UVMF_FLUSHTYPE_MASK, UVMF_INVLPG,
};
use abi::types::{Gva, Maddr, Mfn, PAGE_SIZE, Pfn};
use abi::xen::{DOMID_SELF, MmuUpdate};
use zerocopy::{FromZeros, IntoBytes};

use super::MachineMem;
use super::{Action, DomainMm, HypercallCtx};
use crate::mm::guest_mem::GuestView;
use crate::mm::machine::M2p;
use crate::mm::pte::reserved_addr_mask;
use crate::mm::ptval::{Mm, PtWrite, mod_l1_entry};

/// A decoded `mmu_update` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmuUpdateCall {
    /// Guest address of the first request.
    pub reqs: Gva,
    /// Requests left.
    pub count: u64,
    /// Where to report the number applied (`None` for a null pointer).
    pub done: Option<Gva>,
    /// A continuation: `*done` already holds the count applied before.
    pub resumed: bool,
    /// The `foreigndom` argument, kept for the continuation.
    pub foreigndom: u64,
}

/// Decode the registers shared by `mmu_update` and `mmuext_op`.
pub fn decode_batch(args: [u64; 5], domid: u16) -> Result<MmuUpdateCall, Errno> {
    let [reqs, count, done, foreigndom, _] = args;
    if count > u64::from(u32::MAX) {
        return Err(Errno::EINVAL);
    }
    // Foreign mappings arrive with grant tables; until then only the caller's own memory.
    let fd = foreigndom as u16;
    if foreigndom > u64::from(u16::MAX) || (fd != DOMID_SELF && fd != domid) {
        return Err(Errno::EPERM);
    }
    Ok(MmuUpdateCall {
        reqs: Gva(reqs),
        count: count & !MMU_UPDATE_PREEMPTED,
        done: (done != 0).then_some(Gva(done)),
        resumed: count & MMU_UPDATE_PREEMPTED != 0,
        foreigndom,
    })
}

/// A decoded `mmu_update` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuRequest {
    /// Write `val` into entry `index` of page table `table`.
    PtUpdate {
        /// The page-table frame.
        table: Mfn,
        /// Entry index.
        index: usize,
        /// New entry.
        val: u64,
        /// Keep the old accessed/dirty bits.
        preserve_ad: bool,
    },
    /// Set `m2p[mfn] = pfn`.
    MachPhys {
        /// The caller's frame.
        mfn: Mfn,
        /// Its pfn.
        pfn: Pfn,
    },
}

/// Decode one request (pure).
pub fn decode_request(r: MmuUpdate) -> Result<MmuRequest, Errno> {
    let cmd = r.ptr & 3;
    match cmd {
        MMU_NORMAL_PT_UPDATE | MMU_PT_UPDATE_PRESERVE_AD => {
            let addr = r.ptr & !3;
            if addr & 7 != 0 {
                return Err(Errno::EINVAL);
            }
            Ok(MmuRequest::PtUpdate {
                table: Maddr(addr).mfn(),
                index: ((addr & 0xfff) >> 3) as usize,
                val: r.val,
                preserve_ad: cmd == MMU_PT_UPDATE_PRESERVE_AD,
            })
        }
        MMU_MACHPHYS_UPDATE => Ok(MmuRequest::MachPhys {
            mfn: Maddr(r.ptr).mfn(),
            pfn: Pfn(r.val),
        }),
        _ => Err(Errno::EINVAL),
    }
}

/// Read the `done` count a preempted call left in the guest.
pub fn resumed_done<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>, call: &MmuUpdateCall) -> u64 {
    match (call.resumed, call.done) {
        (true, Some(p)) => ctx.guest().read_obj::<u32>(p).map_or(0, u64::from),
        _ => 0,
    }
}

/// Report `done` to the guest (a bad pointer is ignored, as in Xen: the updates stand).
pub fn report_done<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    call: &MmuUpdateCall,
    done: u64,
) {
    if let Some(p) = call.done {
        let _ = ctx.guest().write_obj(p, &(done as u32));
    }
}

/// Run a `mmu_update`-style batch: for each `size`-byte element, spend a work unit (or create the
/// continuation Xen uses: the rest of the batch with `MMU_UPDATE_PREEMPTED` and the running `*pdone`), read
/// it, and `step` it; the first error stops the batch. `*pdone` is reported on every way out. Used by
/// `mmuext_op` (`mmu_update` has its own loop, [`update_loop`]).
///
/// The elements are read one walk per page, as in [`update_loop`]; an element that changes the caller's
/// page-table root (`MMUEXT_NEW_BASEPTR`) makes the next one walk again, through the new root.
///
/// Pinned inline (with `mmuext_op::apply`) into its one caller, `mmuext_op`, which is out of line itself:
/// left to the inliner, the split moves with unrelated changes elsewhere in the crate (+30 on
/// `tlb_flush_local` when both were outlined).
#[inline(always)]
pub fn run_batch<M: MachineMem, T: zerocopy::FromBytes + zerocopy::IntoBytes>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    size: u64,
    mut step: impl FnMut(&mut HypercallCtx<'_, '_, M>, T) -> Result<(), Errno>,
) -> Action {
    let call = match decode_batch(ctx.args(), ctx.domid) {
        Ok(c) => c,
        Err(e) => return Action::Return(e.as_ret()),
    };
    let before = resumed_done(ctx, &call);
    let mut i = 0;
    let stop = 'pages: loop {
        if i >= call.count {
            break Action::Return(0);
        }
        let Some(at) = call.reqs.checked_add(i * size) else {
            break Action::Return(Errno::EFAULT.as_ret());
        };
        let n = ((PAGE_SIZE - at.page_offset()) / size).min(call.count - i);
        let root = ctx.dom.base;
        let page = match n {
            0 => Err(Errno::EFAULT),
            _ => ctx.guest().translate_in_page(at, n * size, false),
        };
        // A page that cannot be read, or an element across a page boundary: that element on its own.
        let n = if page.is_ok() { n } else { 1 };
        for k in 0..n {
            let at = Gva(at.0 + k * size);
            if !ctx.spend() {
                let rest = (call.count - i) | MMU_UPDATE_PREEMPTED;
                let pdone = call.done.map_or(0, |p| p.0);
                break 'pages Action::Continue([at.0, rest, pdone, call.foreigndom, 0]);
            }
            // The element itself, not a `Result` of it, leaves this match: with the slow read's result
            // merged in, the fast read went through two stack copies (+16 on `tlb_flush_local`).
            let x = match page {
                Ok(first) => {
                    let mut x = T::new_zeroed();
                    ctx.mem
                        .read_bytes(Maddr(first.0 + k * size), x.as_mut_bytes());
                    x
                }
                Err(_) => match ctx.guest().read_obj::<T>(at) {
                    Ok(x) => x,
                    Err(e) => break 'pages Action::Return(e.as_ret()),
                },
            };
            if let Err(e) = step(ctx, x) {
                break 'pages Action::Return(e.as_ret());
            }
            i += 1;
            if ctx.dom.base != root {
                continue 'pages;
            }
        }
    };
    report_done(ctx, &call, before + i);
    stop
}

/// Handle `mmu_update`.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn mmu_update<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let call = match decode_batch(ctx.args(), ctx.domid) {
        Ok(c) => c,
        Err(e) => return Action::Return(e.as_ret()),
    };
    let before = resumed_done(ctx, &call);
    let (applied, stop) = update_loop(ctx, &call);
    report_done(ctx, &call, before + applied);
    stop
}

/// Size of one `mmu_update` request.
const REQ: u64 = core::mem::size_of::<MmuUpdate>() as u64;

/// The request loop of `mmu_update`: returns how many requests were applied and how the call ends. The
/// same checks, in the same order, with the same outcome for every request as [`run_batch`] (work unit,
/// read, decode, apply), but the validator is set up once per call and the request array is translated
/// once per page: every request that lies wholly in the page of the current one (and within the count and
/// the budget) is read from there (sound for the reasons [`GuestView::translate_in_page`] gives: no
/// request frees a frame or gives it away).
fn update_loop<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    call: &MmuUpdateCall,
) -> (u64, Action) {
    let (domid, root, user) = (ctx.domid, ctx.dom.base, ctx.user);
    let machine = ctx.machine.get();
    let mut mm = Mm::new(&mut machine.ft, &mut *ctx.mem, *ctx.policy);
    let m2p = &mut machine.m2p;
    let dom = &mut *ctx.dom;
    let budget = &mut ctx.budget;
    let mut i = 0;
    while i < call.count {
        let Some(at) = call.reqs.checked_add(i * REQ) else {
            return (i, Action::Return(Errno::EFAULT.as_ret()));
        };
        if *budget == 0 {
            let rest = (call.count - i) | MMU_UPDATE_PREEMPTED;
            let pdone = call.done.map_or(0, |p| p.0);
            return (i, Action::Continue([at.0, rest, pdone, call.foreigndom, 0]));
        }
        // The requests from `at` to the end of its page, as far as the count and the budget go (none if
        // the request at `at` crosses into the next page: it is read on its own).
        let n = ((PAGE_SIZE - at.page_offset()) / REQ)
            .min(call.count - i)
            .min(u64::from(*budget));
        if n == 0 {
            *budget -= 1;
            let req = GuestView::new(&mut *mm.mem, root, user).read_obj::<MmuUpdate>(at);
            if let Err(e) = req.and_then(|r| update_one(&mut mm, m2p, dom, domid, r)) {
                return (i, Action::Return(e.as_ret()));
            }
            i += 1;
            continue;
        }
        let page = GuestView::new(&mut *mm.mem, root, user).translate_in_page(at, n * REQ, false);
        let Ok(first) = page else {
            *budget -= 1;
            return (i, Action::Return(Errno::EFAULT.as_ret()));
        };
        // n <= budget, a u32.
        *budget -= n as u32;
        let applied = if n == 1 {
            // A single request (the common `mmu_update` of one entry): no call.
            let mut r = MmuUpdate::new_zeroed();
            mm.mem.read_bytes(first, r.as_mut_bytes());
            update_one(&mut mm, m2p, dom, domid, r).map_err(|e| (0, e))
        } else {
            update_page(&mut mm, m2p, dom, domid, first, n)
        };
        if let Err((k, e)) = applied {
            // Only the requests up to this one spent their work unit.
            *budget += (n - k - 1) as u32;
            return (i + k, Action::Return(e.as_ret()));
        }
        i += n;
    }
    (i, Action::Return(0))
}

/// Apply the `n` requests at machine address `first` (in one page of the caller's request array); on the
/// first error, its index and errno. The loop every request of a batch runs, on its own so that nothing
/// around it takes its registers.
#[inline(never)]
fn update_page<M: MachineMem>(
    mm: &mut Mm<'_, '_, M>,
    m2p: &mut M2p<'_>,
    dom: &mut DomainMm,
    domid: u16,
    first: Maddr,
    n: u64,
) -> Result<(), (u64, Errno)> {
    for k in 0..n {
        let mut r = MmuUpdate::new_zeroed();
        mm.mem
            .read_bytes(Maddr(first.0 + k * REQ), r.as_mut_bytes());
        update_one(mm, m2p, dom, domid, r).map_err(|e| (k, e))?;
    }
    Ok(())
}

/// Decode and apply one `mmu_update` request of domain `domid`.
#[inline(always)]
fn update_one<M: MachineMem>(
    mm: &mut Mm<'_, '_, M>,
    m2p: &mut M2p<'_>,
    dom: &mut DomainMm,
    domid: u16,
    r: MmuUpdate,
) -> Result<(), Errno> {
    match decode_request(r)? {
        MmuRequest::PtUpdate {
            table,
            index,
            val,
            preserve_ad,
        } => {
            // An entry of an L1 (most requests): the L1 update; any other table the general one.
            if !preserve_ad && let Some(done) = mm.mod_l1_entry(table, index, val, domid) {
                done.map_err(|e| e.errno())?;
                dom.flush_tlb = true;
                return Ok(());
            }
            let w = mm
                .prepare(table, index, val, domid, preserve_ad)
                .map_err(|e| e.errno())?;
            perform(mm, dom, w);
            Ok(())
        }
        MmuRequest::MachPhys { mfn, pfn } => {
            if mm.ft.owner(mfn) != Some(domid) {
                return Err(Errno::EPERM);
            }
            m2p.set(mfn, pfn);
            crate::mm::logdirty::mark(mfn);
            Ok(())
        }
    }
}

/// Carry out a checked page-table update of the caller (`mmu_update`, `update_va_mapping`): the one place
/// where those hypercalls store an entry into a page-table frame. It cannot fail.
#[inline(always)]
fn perform<M: MachineMem>(mm: &mut Mm<'_, '_, M>, dom: &mut DomainMm, w: PtWrite) {
    mm.perform(w);
    dom.flush_tlb = true;
}

/// A decoded `update_va_mapping` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateVaMapping {
    /// The address whose L1 entry changes.
    pub va: Gva,
    /// The new entry.
    pub val: u64,
    /// Flush the TLB after the update (`UVMF_TLB_FLUSH` or `UVMF_INVLPG`).
    pub flush: bool,
}

/// The `update_va_mapping` flags accepted, as a set of flag values below 8: a flush type other than 3
/// (`UVMF_NONE`, `UVMF_TLB_FLUSH`, `UVMF_INVLPG`), with or without `UVMF_ALL`. Only LOCAL/ALL are
/// supported; UVMF_MULTI's vCPU-mask pointer in the upper bits is not.
const UVM_FLAGS_OK: u64 = {
    let mut set = 0;
    let mut f = 0;
    while f < 8 {
        if f & !(UVMF_FLUSHTYPE_MASK | UVMF_ALL) == 0 && f & UVMF_FLUSHTYPE_MASK <= UVMF_INVLPG {
            set |= 1 << f;
        }
        f += 1;
    }
    set
};

/// True if `update_va_mapping` accepts the address `va` and the flags `flags` (the handler tests its
/// registers with this directly, without [`decode_uvm`]'s result).
#[inline(always)]
pub fn uvm_args_ok(va: u64, flags: u64) -> bool {
    // `guest_va_allowed` in one comparison; the flags one bit of a constant.
    crate::regs::va_allowed(va) && flags < 8 && (UVM_FLAGS_OK >> flags) & 1 != 0
}

/// Decode the registers (pure).
pub fn decode_uvm(args: [u64; 5]) -> Result<UpdateVaMapping, Errno> {
    let [va, val, flags, ..] = args;
    if !uvm_args_ok(va, flags) {
        return Err(Errno::EINVAL);
    }
    Ok(UpdateVaMapping {
        va: Gva(va),
        val,
        flush: flags & UVMF_FLUSHTYPE_MASK != 0,
    })
}

/// Handle `update_va_mapping`.
///
/// The common case straight through ([`update_va_on`], which the light handler shares: `hypercall::light`
/// answers this call before any context is built when the fast-path state holds). Anything else (an
/// entry the fast walk does not take, a table that is not a validated L1 of the caller, log-dirty on)
/// goes, before anything changed, to [`update_va_mapping_general`], which starts again from the
/// registers; so nothing is live across a call on the way and the handler keeps few registers.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn update_va_mapping<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let [va, val, flags, ..] = ctx.args();
    if !uvm_args_ok(va, flags) {
        return Action::Return(Errno::EINVAL.as_ret());
    }
    let machine = ctx.machine.get();
    match update_va_on(
        &mut *ctx.mem,
        &mut machine.ft,
        ctx.policy,
        ctx.dom,
        ctx.domid,
        Gva(va),
        val,
    ) {
        Some(v) => Action::Return(v),
        None => update_va_mapping_general(ctx),
    }
}

/// The common case of `update_va_mapping` for domain `domid` (its memory-management state `dm`), whose
/// registers were accepted ([`uvm_args_ok`]): the walk's fast half to the L1 table that maps `va`, then
/// the one-pass L1 update ([`mod_l1_entry`]) with the new entry `val`. `Some(result)` when that settles
/// the call (done, or refused with an errno); `None`, with nothing changed, when the request needs the
/// general path ([`update_va_mapping_general`]'s exact walk and update), which gives the same outcome for
/// every request. Shared by the full handler and the light one (`hypercall::light`), which cannot drift
/// apart because of it.
#[inline(always)]
pub fn update_va_on<M: MachineMem>(
    mem: &mut M,
    ft: &mut crate::mm::frame_table::FrameTable<'_>,
    policy: &crate::mm::ptval::Policy<'_>,
    dm: &mut DomainMm,
    domid: u16,
    va: Gva,
    val: u64,
) -> Option<i64> {
    let l1 = crate::mm::walk::l1_table_fast(&*mem, dm.base, va)?;
    let rsvd = reserved_addr_mask(policy.maxphyaddr);
    match mod_l1_entry(ft, mem, policy, rsvd, l1, va.table_index(1), val, domid)? {
        Ok(_) => {
            // Every page-table change already forces a flush of the domain's TLB entries before it runs
            // again (`DomainMm::flush_tlb`); the requested flush type adds nothing on this single-CPU
            // hypervisor.
            dm.flush_tlb = true;
            Some(0)
        }
        Err(e) => Some(e.errno().as_ret()),
    }
}

/// [`update_va_mapping`] with the exact walk ([`crate::mm::walk::l1_table`]) and the general update
/// ([`Mm::mod_entry`], which the one-pass L1 update is checked against): the same outcome for every
/// call. Its arguments were accepted ([`uvm_args_ok`]) and nothing has changed yet.
#[cold]
#[inline(never)]
fn update_va_mapping_general<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let [va, val, ..] = ctx.args();
    let va = Gva(va);
    let Some(l1) = crate::mm::walk::l1_table(&*ctx.mem, ctx.dom.base, va) else {
        return Action::Return(Errno::EINVAL.as_ret());
    };
    let (domid, index) = (ctx.domid, va.table_index(1));
    let machine = ctx.machine.get();
    let done = Mm::new(&mut machine.ft, &mut *ctx.mem, *ctx.policy)
        .mod_entry(l1, index, val, domid, false);
    if let Err(e) = done {
        return Action::Return(e.errno().as_ret());
    }
    ctx.dom.flush_tlb = true;
    Action::Return(0)
}

#[cfg(test)]
#[path = "mmu_update_tests.rs"]
mod tests;
