//! What happens after a guest enters the hypervisor: hypercalls, exceptions, and the one path that stops a
//! misbehaving domain, [`crash_domain`].

use abi::layout::HYPERCALL_VECTOR;
use abi::types::Mfn;

use crate::arch::paging::IdentityMem;
use crate::domain::state::{Domain, DomainState};
use crate::hypercall::{self, Action, HypercallCtx};
use crate::mm::guest_mem::GuestView;
use crate::regs::{EntryFrame, exception_name, frame_ring, page_fault_kind};
use crate::setup::{DOMAINS, FRAME_TABLE, FRAMES, HV};

/// How scheduling continues after an entry has been handled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Return to the same vCPU if it can still run.
    Resume,
    /// Let another vCPU run first.
    Switch,
}

/// Entry point from `arch::entry` for every entry from ring 1 or 3 (hypervisor stack, own address space,
/// guest FPU state already saved).
pub fn guest_trap(frame: EntryFrame) -> ! {
    let next = {
        let mut table = DOMAINS.lock();
        let Some(dom) = table.current_mut() else {
            panic!(
                "entry from a guest with no current domain (vector {})",
                frame.vector
            );
        };
        dom.vcpu.regs = frame;
        match frame.vector {
            v if v == u64::from(HYPERCALL_VECTOR) => hypercall(dom),
            v if v < 32 => exception(dom, &frame),
            // A spurious interrupt from the (fully masked) legacy PIC: nothing to do.
            0x27 | 0x2f => Next::Resume,
            v => {
                log::warn!("domain {}: unexpected interrupt vector {v:#x}", dom.id);
                Next::Resume
            }
        }
    };
    crate::sched::schedule(next == Next::Switch)
}

fn hypercall(dom: &mut Domain) -> Next {
    let number = dom.vcpu.regs.rax;
    let args = hypercall::args_of(&dom.vcpu.regs);
    let id = dom.id;
    let console = &mut dom.console;
    let mut sink = |bytes: &[u8]| console.push(bytes, |line| crate::console::guest_line(id, line));
    let mut mem = IdentityMem;
    let hv_cmdline = HV.get().map_or("", |h| h.cmdline.as_str());
    let mut ctx = HypercallCtx {
        domid: id,
        privileged: dom.privileged,
        args,
        guest: GuestView::new(
            &mut mem,
            Mfn(dom.vcpu.cr3 >> 12),
            frame_ring(&dom.vcpu.regs) == 3,
        ),
        console: &mut sink,
        hv_cmdline,
    };
    let action = hypercall::dispatch(number, &mut ctx);
    log::trace!("domain {id}: hypercall {number} {args:x?} -> {action:?}");
    match action {
        Action::Return(v) => {
            dom.vcpu.regs.rax = v as u64;
            Next::Resume
        }
        Action::Yield => {
            dom.vcpu.regs.rax = 0;
            Next::Switch
        }
        Action::Shutdown { reason, code } => {
            stop_domain(dom, DomainState::Shutdown { reason, code });
            log::info!("domain {id} shut down: {} code {code}", reason.name());
            Next::Switch
        }
    }
}

fn exception(dom: &mut Domain, f: &EntryFrame) -> Next {
    let ring = frame_ring(f);
    if f.vector == 14 {
        let cr2 = crate::arch::read_cr2();
        let (access, kind, _) = page_fault_kind(f.error_code);
        crash_domain(
            dom,
            format_args!(
                "page fault ({access}, {kind}) at {cr2:#x} in ring {ring}, rip={:#x}, error {:#x}",
                f.rip, f.error_code
            ),
        );
    } else {
        crash_domain(
            dom,
            format_args!(
                "{} (vector {}, error {:#x}) in ring {ring} at rip={:#x}",
                exception_name(f.vector),
                f.vector,
                f.error_code,
                f.rip
            ),
        );
    }
    Next::Switch
}

/// Mark the domain stopped, flush its console and give its memory back.
fn stop_domain(dom: &mut Domain, state: DomainState) {
    dom.state = state;
    let id = dom.id;
    dom.console
        .flush(|line| crate::console::guest_line(id, line));
    let mut frames = FRAMES.lock();
    let frames = frames.as_mut().expect("frame allocator initialised");
    let released = FRAME_TABLE
        .lock()
        .as_mut()
        .expect("frame table initialised")
        .release_all(id, |m| {
            IdentityMem::zero(m);
            if let Err(e) = frames.free(m) {
                log::error!("domain {id}: freeing {m:?}: {e:?}");
            }
        });
    log::debug!("domain {id}: {released} frames released");
}

/// The one way the hypervisor stops a misbehaving domain: report why and where, then tear it down. The
/// other domains are untouched.
pub fn crash_domain(dom: &mut Domain, reason: core::fmt::Arguments<'_>) {
    log::error!("domain {} crashed: {reason}", dom.id);
    crate::panic::dump_frame(&dom.vcpu.regs, |a| log::error!("  {a}"));
    stop_domain(dom, DomainState::Crashed);
}
