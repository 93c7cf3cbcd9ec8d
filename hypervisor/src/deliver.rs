//! Delivering exceptions, system calls and event upcalls to a guest: the bounce (frame layout in
//! `abi::traps`, built by `vcpu::bounce_frame`), Xen's emulation of `int n` for vectors the guest opened
//! to user code, and the upcall on the way back to a guest.

use abi::traps::has_error_code;
use abi::types::{Gva, Mfn};

use crate::arch::paging::IdentityMem;
use crate::domain::state::Domain;
use crate::mm::guest_mem::GuestView;
use crate::mm::walk;
use crate::regs::{EntryFrame, exception_name, frame_ring, page_fault_kind};
use crate::trap::{Next, crash_domain};
use crate::vcpu::{Bounce, BounceError, bounce_at, bounce_sp, enter_handler_at};
use zerocopy::IntoBytes;

/// Offsets in shared_info of vCPU 0's `evtchn_upcall_pending`, `evtchn_upcall_mask` and `arch.cr2`.
const UPCALL_PENDING: usize = 0;
const UPCALL_MASK: usize = 1;
const ARCH_CR2: usize = 16;

fn shared_info(dom: &Domain) -> &'static mut [u8; 4096] {
    shared_info_of(dom.mm.shared_info)
}

/// The shared_info page `mfn` of a domain (see [`shared_info`]).
fn shared_info_of(mfn: Mfn) -> &'static mut [u8; 4096] {
    // SAFETY: callers pass a live domain's shared_info frame, which belongs to it for its whole life and is
    // identity mapped; the guest is not running while the hypervisor is, so nothing else accesses it concurrently.
    unsafe { &mut *(IdentityMem::frame_ptr(mfn) as *mut [u8; 4096]) }
}

/// True if the guest's events are masked (its virtual interrupt flag is clear).
pub fn events_masked(dom: &Domain) -> bool {
    shared_info(dom)[UPCALL_MASK] != 0
}

/// What a bounce delivers, besides the interrupted state: the handler, the error code (pushed only if the
/// bounce is `with_error`), whether events are masked on entry, and the fault address for shared_info (a
/// page fault).
#[derive(Clone, Copy)]
struct Delivery {
    handler: u64,
    error_code: u64,
    mask: bool,
    cr2: Option<u64>,
}

/// Push a bounce frame for the interrupted state `regs` of `dom`'s vCPU and resume it at the handler.
///
/// `regs` is the vCPU's register frame: the live entry frame of the entry being handled (a trap or
/// system call, bounced where the entry code left it, with no copy into the vCPU and back), or the
/// saved registers (`None`: an upcall on the way back to a vCPU that is not running).
///
/// The place comes first (the stack, then the walk of the guest's tables for it, both sized by
/// `with_error`); `late` gives the rest ([`Delivery`]) only once the place is known, from the vCPU's
/// registered state and `regs`: so nothing read for the frame is held across the walk.
#[inline(always)]
fn bounce(
    dom: &mut Domain,
    live: Option<&mut EntryFrame>,
    with_error: bool,
    late: impl FnOnce(&crate::vcpu::VcpuState, &EntryFrame) -> Delivery,
) -> Result<(), BounceError> {
    let (base, kernel_sp, si) = (dom.mm.base, dom.vcpu.pv.kernel_sp, dom.mm.shared_info);
    let regs = match live {
        Some(f) => f,
        None => &mut dom.vcpu.regs,
    };
    let rsp = bounce_sp(regs, with_error, kernel_sp)?;
    let first = bounce_place(base, rsp, with_error)?;
    let d = late(&dom.vcpu.pv, regs);
    // The frame has an error code exactly when its place was sized for one.
    let error = with_error.then_some(d.error_code);
    let si = shared_info_of(si);
    if let Some(cr2) = d.cr2 {
        si[ARCH_CR2..ARCH_CR2 + 8].copy_from_slice(&cr2.to_le_bytes());
    }
    let masked = si[UPCALL_MASK] != 0;
    match first {
        Some(first) => write_bounce(first, &bounce_at(regs, rsp, error, masked)),
        None => write_bounce_split(base, &bounce_at(regs, rsp, error, masked))?,
    }
    enter_handler_at(regs, rsp, d.handler);
    if d.mask {
        si[UPCALL_MASK] = 1;
    }
    Ok(())
}

/// Where the bounce frame at `rsp` (from `bounce_sp`, 8 words if `with_error`, else 7) goes in the
/// address space `base`: the host address of its first word if the frame lies within one page (the
/// usual case: 56 or 64 bytes, 8-byte aligned), `None` if it straddles two (written by the general copy,
/// `write_bounce_split`, which checks both pages).
///
/// The one-page case walks the guest's tables once, for a supervisor write to the frame's first byte,
/// which checks the same things as the general copy (`GuestView::write`) does for a one-page range: a
/// canonical, non-reserved address and a present, writable, 4 KiB mapping at every level.
#[inline(always)]
fn bounce_place(base: Mfn, rsp: u64, with_error: bool) -> Result<Option<*mut u64>, BounceError> {
    let bytes = if with_error { 64 } else { 56 };
    let offset = Gva(rsp).page_offset();
    if offset + bytes > abi::types::PAGE_SIZE {
        return Ok(None);
    }
    // `bounce_sp` made every byte of the frame pass `regs::va_allowed` (`regs::short_range_allowed`:
    // canonical and outside the reserved slots, `translate`'s own address check), so only the tables
    // are walked.
    let ma = walk::translate_allowed(&IdentityMem, base, Gva(rsp), walk::Access::WRITE)
        .map_err(|_| BounceError::BadStack(rsp))?;
    Ok(Some(
        (IdentityMem::frame_ptr(ma.mfn()) as *mut u64).wrapping_add(offset as usize / 8),
    ))
}

/// Write the bounce frame `b` at `first`, the host address of its first word from [`bounce_place`]: the
/// one place the hypervisor stores a one-page bounce frame into guest memory (one store per word).
#[inline(always)]
fn write_bounce(first: *mut u64, b: &Bounce) {
    // SAFETY: `bounce_place` found a present, writable, 4 KiB guest mapping for `b.rsp` and `first` is
    // its host address in the identity map (`frame_ptr` checks the frame); the frame's `word_count()`
    // words fit in that page from `first` (tested there for the size `bounce` gives `b`: `b.error` is
    // set exactly when the place was sized for an 8-word frame),
    // and `b.rsp` is a multiple of 8 (`bounce_sp` aligns the top to 16 and the frame is whole words), so
    // every store is an aligned word inside that frame. The guest is not running while the hypervisor is.
    unsafe {
        first.write(b.rcx);
        first.add(1).write(b.r11);
        let iret = match b.error {
            Some(e) => {
                first.add(2).write(e);
                first.add(3)
            }
            None => first.add(2),
        };
        iret.write(b.iret[0]);
        iret.add(1).write(b.iret[1]);
        iret.add(2).write(b.iret[2]);
        iret.add(3).write(b.iret[3]);
        iret.add(4).write(b.iret[4]);
    }
}

/// [`write_bounce`] for a frame across a page boundary: the general copy, the words in memory order (x86
/// is little-endian: as the guest reads them).
#[cold]
#[inline(never)]
fn write_bounce_split(base: Mfn, b: &Bounce) -> Result<(), BounceError> {
    let mut mem = IdentityMem;
    GuestView::new(&mut mem, base, false)
        .write(Gva(b.rsp), b.words().as_slice().as_bytes())
        .map_err(|_| BounceError::BadStack(b.rsp))
}

/// Stop `dom` through [`crash_domain`], with the live frame (if any) made its saved registers first, so
/// the report shows the registers of the entry that failed.
#[cold]
#[inline(never)]
fn crash_live(dom: &mut Domain, live: Option<&mut EntryFrame>, why: core::fmt::Arguments<'_>) {
    if let Some(f) = live {
        crate::arch::entry::copy_frame(&mut dom.vcpu.regs, f);
    }
    crash_domain(dom, why);
}

/// What is being delivered (for the trace and crash messages only: named when printed).
#[derive(Clone, Copy)]
enum What {
    /// Exception `vector`.
    Exception(u64),
    /// An emulated `int n`.
    SoftInt,
    /// A system call.
    Syscall,
    /// The #UD of a SYSCALL without a callback.
    UdForSyscall,
    /// An event upcall.
    Upcall,
}

impl core::fmt::Display for What {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match *self {
            What::Exception(v) => exception_name(v),
            What::SoftInt => "a software interrupt",
            What::Syscall => "a system call",
            What::UdForSyscall => "#UD for SYSCALL",
            What::Upcall => "an event upcall",
        })
    }
}

#[inline(always)]
fn bounce_or_crash(
    dom: &mut Domain,
    live: Option<&mut EntryFrame>,
    handler: u64,
    error: Option<u64>,
    mask: bool,
    what: What,
    cr2: Option<u64>,
) -> Next {
    if log::log_enabled!(log::Level::Trace) {
        trace_bounce(dom, live.as_deref(), handler, what);
    }
    let d = Delivery {
        handler,
        error_code: error.unwrap_or(0),
        mask,
        cr2,
    };
    bounce_late_or_crash(dom, live, error.is_some(), what, move |_, _| d)
}

/// [`bounce_or_crash`] with the [`Delivery`] given late (see [`bounce`]); the caller traces.
#[inline(always)]
fn bounce_late_or_crash(
    dom: &mut Domain,
    mut live: Option<&mut EntryFrame>,
    with_error: bool,
    what: What,
    late: impl FnOnce(&crate::vcpu::VcpuState, &EntryFrame) -> Delivery,
) -> Next {
    match bounce(dom, live.as_deref_mut(), with_error, late) {
        Ok(()) => Next::Resume,
        Err(e) => bounce_failed(dom, live, what, e),
    }
}

/// A bounce that could not be delivered: crash the domain (out of line, so the message is built only
/// here).
#[cold]
#[inline(never)]
fn bounce_failed(
    dom: &mut Domain,
    live: Option<&mut EntryFrame>,
    what: What,
    e: BounceError,
) -> Next {
    crash_live(
        dom,
        live,
        format_args!("fault while delivering {what}: {e:?}"),
    );
    Next::Switch
}

#[cold]
#[inline(never)]
fn trace_bounce(dom: &Domain, live: Option<&EntryFrame>, handler: u64, what: What) {
    let regs = live.unwrap_or(&dom.vcpu.regs);
    log::trace!(
        "domain {}: {what} at rip={:#x} (ring {}) -> handler {handler:#x}",
        dom.id,
        regs.rip,
        frame_ring(regs)
    );
}

/// `int n` from a ring whose real gate refused it (#GP with the IDT bit): if the guest opened vector `n`
/// to that ring in its trap table, deliver it as the software interrupt it was (Xen does the same).
///
/// The vector is taken from the instruction itself (`CD nn`), and the error code must name it: real CPUs
/// report `n * 8 + 2`, QEMU's TCG reports the IDT byte offset `n * 16 + 2`; both are accepted.
#[inline(never)]
fn emulated_int(dom: &mut Domain, f: &mut EntryFrame) -> Option<Next> {
    if f.vector != 13 || f.error_code & 3 != 2 {
        return None;
    }
    let mut insn = [0u8; 2];
    let mut mem = IdentityMem;
    GuestView::new(&mut mem, dom.mm.base, frame_ring(f) == 3)
        .read(Gva(f.rip), &mut insn)
        .ok()?;
    let n = u64::from(insn[1]);
    if insn[0] != 0xcd || (f.error_code >> 3 != n && f.error_code >> 4 != n) {
        return None;
    }
    let t = dom.vcpu.pv.traps[n as usize];
    if t.address == 0 || t.dpl < frame_ring(f) {
        return None;
    }
    f.rip = f.rip.wrapping_add(2);
    count(&mut dom.vcpu.pv.counters.exceptions);
    Some(bounce_or_crash(
        dom,
        Some(f),
        t.address,
        None,
        t.mask_events,
        What::SoftInt,
        None,
    ))
}

/// An exception taken by the guest, whose registers are the live entry frame `f`: bounce it to the
/// guest's handler in `f` (on [`Next::Resume`] the vCPU's saved registers are stale: `f` is newer), or
/// crash the domain (`f` is then copied into the saved registers first).
#[inline(always)] // Into `trap::exception`, its one caller: one frame for the whole bounce.
pub fn exception(dom: &mut Domain, f: &mut EntryFrame) -> Next {
    let v = f.vector;
    // The caller passes exceptions only (v < 32): `v & 31` changes nothing and keeps the shift in range.
    if SPECIAL_VECTORS >> (v & 31) & 1 != 0
        && let Some(next) = special_exception(dom, f)
    {
        return next;
    }
    // The truncation to u8 changes nothing either and spares the bounds check on the 256-entry table.
    let slot = usize::from(v as u8);
    if dom.vcpu.pv.traps[slot].address == 0 {
        return undeliverable(dom, f, true);
    }
    count(&mut dom.vcpu.pv.counters.exceptions);
    if log::log_enabled!(log::Level::Trace) {
        trace_bounce(
            dom,
            Some(f),
            dom.vcpu.pv.traps[slot].address,
            What::Exception(v),
        );
    }
    // The handler, error code and fault address are read once the frame's place is known.
    let with_error = has_error_code(v);
    bounce_late_or_crash(
        dom,
        Some(f),
        with_error,
        What::Exception(v),
        move |pv, f| {
            let t = pv.traps[slot];
            Delivery {
                handler: t.address,
                error_code: f.error_code,
                mask: t.mask_events,
                // A page fault's address goes to the guest's shared_info. Nothing has faulted in the
                // hypervisor since the guest's fault: CR2 is still the guest's.
                cr2: (v == 14).then(crate::arch::read_cr2),
            }
        },
    )
}

/// The exceptions that are not simply bounced to the guest's handler (one test on the common path, see
/// [`special_exception`]): NMI, #DF, #GP (which may be an emulated `int n`) and #MC.
const SPECIAL_VECTORS: u32 = 1 << 2 | 1 << 8 | 1 << 13 | 1 << 18;

/// [`exception`] for a vector of [`SPECIAL_VECTORS`]: the result, or `None` to bounce it as any other.
/// Out of line: they are rare (a #GP that is not an emulated `int n` is bounced after this returns).
#[inline(never)]
fn special_exception(dom: &mut Domain, f: &mut EntryFrame) -> Option<Next> {
    match f.vector {
        13 => emulated_int(dom, f),
        2 => {
            log::warn!("domain {}: NMI while it ran; ignored", dom.id);
            Some(Next::Resume)
        }
        v @ (8 | 18) => {
            let no_handler = dom.vcpu.pv.traps[usize::from(v as u8)].address == 0;
            Some(undeliverable(dom, f, no_handler))
        }
        _ => None,
    }
}

/// An exception with no handler (`no_handler`) or one never delivered (#DF, #MC): crash the domain.
#[cold]
#[inline(never)]
fn undeliverable(dom: &mut Domain, f: &mut EntryFrame, no_handler: bool) -> Next {
    let why = if no_handler {
        "no handler"
    } else {
        "not deliverable"
    };
    let (ring, v, rip, error_code) = (frame_ring(f), f.vector, f.rip, f.error_code);
    if v == 14 {
        // Nothing since the fault has faulted in the hypervisor: CR2 is still the guest's.
        let cr2 = crate::arch::read_cr2();
        let (access, kind, _) = page_fault_kind(error_code);
        crash_live(
            dom,
            Some(f),
            format_args!(
                "page fault ({access}, {kind}) at {cr2:#x} in ring {ring}, rip={rip:#x}, error {error_code:#x} ({why})"
            ),
        );
    } else {
        crash_live(
            dom,
            Some(f),
            format_args!(
                "{} (vector {v}, error {error_code:#x}) in ring {ring} at rip={rip:#x} ({why})",
                exception_name(v),
            ),
        );
    }
    Next::Switch
}

/// SYSCALL from ring 3, whose registers are the live entry frame `f`: bounce to the syscall callback
/// (events masked), or deliver #UD as real hardware would without SYSCALL support (as [`exception`]).
pub fn syscall(dom: &mut Domain, f: &mut EntryFrame) -> Next {
    let cb = dom.vcpu.pv.syscall_callback;
    if cb != 0 {
        count(&mut dom.vcpu.pv.counters.syscalls);
        return bounce_or_crash(dom, Some(f), cb, None, true, What::Syscall, None);
    }
    let ud = dom.vcpu.pv.traps[6];
    if ud.address != 0 {
        return bounce_or_crash(
            dom,
            Some(f),
            ud.address,
            None,
            ud.mask_events,
            What::UdForSyscall,
            None,
        );
    }
    let rip = f.rip;
    crash_live(
        dom,
        Some(f),
        format_args!("SYSCALL with no syscall callback and no #UD handler, rip={rip:#x}"),
    );
    Next::Switch
}

/// An event upcall is pending, events are not masked and a callback is registered: [`upcall`] will
/// bounce the vCPU (and so needs its saved registers).
#[inline(always)]
pub fn upcall_due(dom: &Domain) -> bool {
    let si = shared_info(dom);
    si[UPCALL_PENDING] != 0 && si[UPCALL_MASK] == 0 && dom.vcpu.pv.event_callback != 0
}

/// The hypervisor address of `dom`'s `evtchn_upcall_pending` byte (in its shared_info page, which is
/// its own for its whole life), for the fast hypercall path's test (`pending::Armed`).
#[inline(always)]
pub fn upcall_pending_addr(dom: &Domain) -> u64 {
    shared_info(dom)[UPCALL_PENDING..].as_ptr() as u64
}

/// On the way back to a guest: deliver the event upcall if one is pending and events are not masked.
/// Returns false if the domain had to be crashed.
#[inline(always)]
pub fn upcall(dom: &mut Domain) -> bool {
    !upcall_due(dom) || upcall_saved(dom)
}

/// The bounce of [`upcall`] into the saved registers, out of line (the return tests [`upcall_due`]
/// inline).
#[inline(never)]
fn upcall_saved(dom: &mut Domain) -> bool {
    upcall_into(dom, None)
}

/// [`upcall`] into the live entry frame `f` of the vCPU that entered (the same-vCPU return, which then
/// returns through `f`), for a caller that has just found [`upcall_due`] true (`sched::resume_live`,
/// under the same lock: nothing changed since), so it is not tested again. If the domain had to be
/// crashed (false), `f` has been copied into its saved registers first.
#[inline(always)] // Into its one caller, `sched::resume_after_upcall`: one frame for the bounce.
pub fn upcall_live(dom: &mut Domain, f: &mut EntryFrame) -> bool {
    debug_assert!(upcall_due(dom));
    upcall_deliver(dom, Some(f))
}

#[inline(always)]
fn upcall_into(dom: &mut Domain, live: Option<&mut EntryFrame>) -> bool {
    if !upcall_due(dom) {
        return true;
    }
    upcall_deliver(dom, live)
}

/// Bounce `dom`'s vCPU (its live frame, or its saved registers) to its event callback, events masked;
/// [`upcall_due`] holds. False if the domain had to be crashed.
#[inline(always)]
fn upcall_deliver(dom: &mut Domain, live: Option<&mut EntryFrame>) -> bool {
    let cb = dom.vcpu.pv.event_callback;
    count(&mut dom.vcpu.pv.counters.upcalls);
    matches!(
        bounce_or_crash(dom, live, cb, None, true, What::Upcall, None),
        Next::Resume
    )
}

/// One more entry of a kind (the `counters` hypercall reads them).
fn count(c: &mut u64) {
    *c = c.wrapping_add(1);
}

/// The shared_info frame of a domain (for the event and time code).
pub fn shared_info_frame(dom: &Domain) -> Mfn {
    dom.mm.shared_info
}
