//! Delivering exceptions, system calls and event upcalls to a guest: the bounce (frame layout in
//! `abi::traps`, built by `vcpu::bounce_frame`), Xen's emulation of `int n` for vectors the guest opened
//! to user code, and the upcall on the way back to a guest.

use abi::traps::has_error_code;
use abi::types::{Gva, Mfn};

use crate::arch::paging::IdentityMem;
use crate::domain::state::Domain;
use crate::mm::guest_mem::GuestView;
use crate::regs::{EntryFrame, exception_name, frame_ring, page_fault_kind};
use crate::trap::{Next, crash_domain};
use crate::vcpu::{BounceError, bounce_frame, enter_handler};
use zerocopy::IntoBytes;

/// Offsets in shared_info of vCPU 0's `evtchn_upcall_pending`, `evtchn_upcall_mask` and `arch.cr2`.
const UPCALL_PENDING: usize = 0;
const UPCALL_MASK: usize = 1;
const ARCH_CR2: usize = 16;

fn shared_info(dom: &Domain) -> &'static mut [u8; 4096] {
    // SAFETY: the shared_info frame belongs to this domain for its whole life and is identity mapped; the
    // guest is not running while the hypervisor is, so nothing else accesses it concurrently.
    unsafe { &mut *(IdentityMem::frame_ptr(dom.mm.shared_info) as *mut [u8; 4096]) }
}

/// True if the guest's events are masked (its virtual interrupt flag is clear).
pub fn events_masked(dom: &Domain) -> bool {
    shared_info(dom)[UPCALL_MASK] != 0
}

/// Push a bounce frame for the current state of `dom`'s vCPU and resume it at `handler`.
fn bounce(
    dom: &mut Domain,
    handler: u64,
    error: Option<u64>,
    mask: bool,
) -> Result<(), BounceError> {
    let masked = events_masked(dom);
    let b = bounce_frame(&dom.vcpu.regs, error, masked, dom.vcpu.pv.kernel_sp)?;
    let mut mem = IdentityMem;
    // The words in memory order (x86 is little-endian: as the guest reads them).
    GuestView::new(&mut mem, dom.mm.base, false)
        .write(Gva(b.rsp), b.words().as_bytes())
        .map_err(|_| BounceError::BadStack(b.rsp))?;
    enter_handler(&mut dom.vcpu.regs, &b, handler);
    if mask {
        shared_info(dom)[UPCALL_MASK] = 1;
    }
    Ok(())
}

fn bounce_or_crash(
    dom: &mut Domain,
    handler: u64,
    error: Option<u64>,
    mask: bool,
    what: &str,
) -> Next {
    log::trace!(
        "domain {}: {what} at rip={:#x} (ring {}) -> handler {handler:#x}",
        dom.id,
        dom.vcpu.regs.rip,
        frame_ring(&dom.vcpu.regs)
    );
    match bounce(dom, handler, error, mask) {
        Ok(()) => Next::Resume,
        Err(e) => {
            crash_domain(dom, format_args!("fault while delivering {what}: {e:?}"));
            Next::Switch
        }
    }
}

/// `int n` from a ring whose real gate refused it (#GP with the IDT bit): if the guest opened vector `n`
/// to that ring in its trap table, deliver it as the software interrupt it was (Xen does the same).
///
/// The vector is taken from the instruction itself (`CD nn`), and the error code must name it: real CPUs
/// report `n * 8 + 2`, QEMU's TCG reports the IDT byte offset `n * 16 + 2`; both are accepted.
fn emulated_int(dom: &mut Domain, f: &EntryFrame) -> Option<Next> {
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
    dom.vcpu.regs.rip = f.rip.wrapping_add(2);
    count(&mut dom.vcpu.pv.counters.exceptions);
    Some(bounce_or_crash(
        dom,
        t.address,
        None,
        t.mask_events,
        "a software interrupt",
    ))
}

/// An exception taken by the guest: bounce it to the guest's handler, or crash the domain.
pub fn exception(dom: &mut Domain, f: &EntryFrame) -> Next {
    if let Some(next) = emulated_int(dom, f) {
        return next;
    }
    let ring = frame_ring(f);
    let v = f.vector;
    if v == 2 {
        log::warn!("domain {}: NMI while it ran; ignored", dom.id);
        return Next::Resume;
    }
    let cr2 = if v == 14 { crate::arch::read_cr2() } else { 0 };
    let t = dom.vcpu.pv.traps[v as usize];
    if t.address == 0 || v == 8 || v == 18 {
        let why = if t.address == 0 {
            "no handler"
        } else {
            "not deliverable"
        };
        if v == 14 {
            let (access, kind, _) = page_fault_kind(f.error_code);
            crash_domain(
                dom,
                format_args!(
                    "page fault ({access}, {kind}) at {cr2:#x} in ring {ring}, rip={:#x}, error {:#x} ({why})",
                    f.rip, f.error_code
                ),
            );
        } else {
            crash_domain(
                dom,
                format_args!(
                    "{} (vector {v}, error {:#x}) in ring {ring} at rip={:#x} ({why})",
                    exception_name(v),
                    f.error_code,
                    f.rip
                ),
            );
        }
        return Next::Switch;
    }
    if v == 14 {
        shared_info(dom)[ARCH_CR2..ARCH_CR2 + 8].copy_from_slice(&cr2.to_le_bytes());
    }
    let error = has_error_code(v).then_some(f.error_code);
    count(&mut dom.vcpu.pv.counters.exceptions);
    bounce_or_crash(dom, t.address, error, t.mask_events, exception_name(v))
}

/// SYSCALL from ring 3: bounce to the syscall callback (events masked), or deliver #UD as real hardware
/// would without SYSCALL support.
pub fn syscall(dom: &mut Domain) -> Next {
    let cb = dom.vcpu.pv.syscall_callback;
    if cb != 0 {
        count(&mut dom.vcpu.pv.counters.syscalls);
        return bounce_or_crash(dom, cb, None, true, "a system call");
    }
    let ud = dom.vcpu.pv.traps[6];
    if ud.address != 0 {
        return bounce_or_crash(dom, ud.address, None, ud.mask_events, "#UD for SYSCALL");
    }
    let rip = dom.vcpu.regs.rip;
    crash_domain(
        dom,
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

/// On the way back to a guest: deliver the event upcall if one is pending and events are not masked.
/// Returns false if the domain had to be crashed.
pub fn upcall(dom: &mut Domain) -> bool {
    if !upcall_due(dom) {
        return true;
    }
    let cb = dom.vcpu.pv.event_callback;
    count(&mut dom.vcpu.pv.counters.upcalls);
    bounce_or_crash(dom, cb, None, true, "an event upcall") == Next::Resume
}

/// One more entry of a kind (the `counters` hypercall reads them).
fn count(c: &mut u64) {
    *c = c.wrapping_add(1);
}

/// The shared_info frame of a domain (for the event and time code).
pub fn shared_info_frame(dom: &Domain) -> Mfn {
    dom.mm.shared_info
}
