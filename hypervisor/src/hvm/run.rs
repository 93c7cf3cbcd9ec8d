//! The VMRUN loop of an hvm vCPU, entered by the scheduler in place of the PV exit to ring 1: inject what
//! the devices raise, enter the guest, handle exits until one needs the scheduler (a physical interrupt,
//! HLT with nothing to deliver, the domain stopping), and the `exits:` line when the domain stops.

use super::exits::{self, Action};
use super::vmcb::Vmcb;
use crate::arch::paging::IdentityMem;
use crate::arch::{cpu, entry, svm};
use crate::domain::lifecycle::stop_domain;
use crate::domain::state::{Domain, DomainState};
use crate::hvm::cpuid::Regs;
use crate::setup::{SCHED, TIME};
use crate::trap::crash_domain;
use abi::sched::ShutdownReason;

/// Why the loop handed the CPU back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Something for the scheduler (an interrupt, or the guest halted): decide again.
    Reschedule,
    /// The domain stopped.
    Stopped,
}

fn host_cpuid(leaf: u32, sub: u32) -> Regs {
    let r = cpu::cpuid(leaf, sub);
    Regs {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

fn interrupt_recorded() -> bool {
    crate::irq::any_recorded()
}

/// The domain's VMCB (a hypervisor frame).
fn vmcb_of(vmcb: abi::types::Mfn) -> &'static mut Vmcb {
    // SAFETY: the frame was allocated for this domain's VMCB and holds one; identity mapped; the only
    // reference while the domain table is locked (the CPU uses it only inside `svm_run`).
    unsafe { &mut *(IdentityMem::frame_ptr(vmcb) as *mut Vmcb) }
}

/// Run `dom` (an hvm domain, the scheduler's choice) until the scheduler must decide again.
pub fn run(dom: &mut Domain) -> RunEnd {
    let time = TIME.get().expect("time initialised");
    let id = dom.id;
    let owner = crate::console::input_owner() == id;
    loop {
        if interrupt_recorded() {
            return RunEnd::Reschedule;
        }
        let Some(h) = dom.hvm.as_mut() else {
            return RunEnd::Stopped;
        };
        let vmcb = vmcb_of(h.vmcb);
        let now = time.now_ns();
        if owner {
            feed_input(&mut h.board);
        }
        h.board.advance(now);
        exits::prepare_entry(vmcb, &mut h.board);
        crate::sched::arm_timer_also(now, exits::device_timer(h.board.next_deadline_ns(), now));
        // SAFETY: the domain's own VMCB (VMRUN, the isolation intercepts and its nested tables were set by
        // the builder and never changed by guest input), the host VMSAVE page, the domain's FXSAVE area; SVM
        // was enabled when the domain was built; the interrupt handlers take none of the locks held.
        unsafe {
            entry::svm_run(
                h.vmcb.addr().0,
                &mut h.gprs,
                dom.vcpu.fx.0.as_mut_ptr(),
                svm::host_save_pa(),
            )
        };
        h.exits.count(vmcb.exitcode);
        if let Some(why) = exits::check_state(vmcb) {
            svm::scrub_extended_state();
            dom.vcpu.regs = frame_of(vmcb, &h.gprs);
            crash_domain(dom, format_args!("{why}"));
            return RunEnd::Stopped;
        }
        let now = time.now_ns();
        let direct = owner && crate::console::dom0_direct();
        let console = &mut dom.console;
        let pending = &mut h.direct_out;
        let mut out = |b: u8| {
            if direct {
                // Gathered per line (or until the guest halts or stops), so another domain's line cannot
                // land inside one of this guest's byte-by-byte UART lines.
                console.flush(crate::console::guest_direct);
                if pending.is_full() {
                    crate::console::guest_direct(pending);
                    pending.clear();
                }
                let _ = pending.push(b);
                if b == b'\n' {
                    crate::console::guest_direct(pending);
                    pending.clear();
                }
            } else {
                console.push(&[b], |line| crate::console::guest_line(id, line));
            }
        };
        let action = exits::handle(vmcb, &mut h.gprs, &mut h.board, now, host_cpuid, &mut out);
        // A prompt waits for input with HLT: what is gathered goes out then (and when the domain stops).
        if matches!(
            action,
            Action::Halt | Action::Shutdown(_) | Action::Crash(_)
        ) && !h.direct_out.is_empty()
        {
            crate::console::guest_direct(&h.direct_out);
            h.direct_out.clear();
        }
        match action {
            Action::Resume => {}
            Action::Reschedule => return RunEnd::Reschedule,
            Action::Halt => {
                if owner {
                    feed_input(&mut h.board);
                }
                h.board.advance(now);
                if exits::interrupt_deliverable(vmcb, &h.board) {
                    continue;
                }
                // Sleep until the board's next timer interrupt (or serial input, which wakes the owner).
                let wake_at = exits::device_timer(h.board.next_deadline_ns(), now);
                SCHED.lock().0.block(usize::from(id), wake_at);
                return RunEnd::Reschedule;
            }
            Action::Shutdown(code) => {
                stop_domain(
                    dom,
                    DomainState::Shutdown {
                        reason: ShutdownReason::Poweroff,
                        code,
                    },
                );
                log::info!("domain {id} shut down: poweroff code {code}");
                return RunEnd::Stopped;
            }
            Action::Crash(why) => {
                dom.vcpu.regs = frame_of(vmcb, &h.gprs);
                crash_domain(dom, format_args!("{why}"));
                return RunEnd::Stopped;
            }
        }
    }
}

/// Move typed input into the UART as far as its receiver has room (the guest drains it through I/O exits,
/// so the loop comes back here for the rest; the UART is never overrun whatever its FIFO mode).
fn feed_input(board: &mut crate::devices::Board) {
    board.feed_input(|| {
        let mut b = [0u8; 1];
        (crate::irq::read_console(&mut b) == 1).then_some(b[0])
    });
}

/// The guest's registers in the shape the crash report prints.
fn frame_of(v: &Vmcb, g: &exits::GuestGprs) -> crate::regs::EntryFrame {
    crate::regs::EntryFrame {
        r15: g.r15,
        r14: g.r14,
        r13: g.r13,
        r12: g.r12,
        r11: g.r11,
        r10: g.r10,
        r9: g.r9,
        r8: g.r8,
        rbp: g.rbp,
        rdi: g.rdi,
        rsi: g.rsi,
        rdx: g.rdx,
        rcx: g.rcx,
        rbx: g.rbx,
        rax: v.rax,
        vector: v.exitcode,
        error_code: v.exitinfo1,
        rip: v.rip,
        cs: u64::from(v.cs.selector),
        rflags: v.rflags,
        rsp: v.rsp,
        ss: u64::from(v.ss.selector),
    }
}

/// The counts of the `exits:` line (CONTRACTS section 4) of an hvm domain.
fn exits_line(dom: &Domain) -> Option<heapless::String<2048>> {
    let h = dom.hvm.as_ref()?;
    let mut line = heapless::String::new();
    let _ = h.exits.write_line(&mut line);
    Some(line)
}

/// Log the `exits:` line of `dom` (when it stops).
pub fn log_exits(dom: &Domain) {
    if let Some(line) = exits_line(dom) {
        log::info!("exits: domain {} (hvm): {line}", dom.id);
    }
}

/// Print the same line for the debug key `x` (the counts so far).
pub fn print_exits(dom: &Domain) {
    if let Some(line) = exits_line(dom) {
        crate::console::print(format_args!(
            "[hv] exits: domain {} (hvm): {line}\n",
            dom.id
        ));
    }
}

/// Teardown of the hvm parts (called by `stop_domain` before the common release of the domain's frames):
/// the `exits:` line, then the nested tables and the VMCB go back to the allocator.
pub fn teardown(dom: &mut Domain, m: &mut crate::mm::machine::Machine<'_>) {
    log_exits(dom);
    if let Some(h) = dom.hvm.as_mut() {
        super::build::free_hypervisor_frames(m, &h.npt, h.vmcb);
        h.vmcb = abi::types::Mfn(0);
    }
}

/// The teardown-time check of an hvm domain (the counterpart of `domain::teardown_check` for PV): the
/// nested tables audited again (every leaf one of the domain's frames, below its memory size; the tables
/// nobody's) and the domain's frame count, on one line that the tests look for.
pub fn teardown_check(dom: &Domain, m: &crate::mm::machine::Machine<'_>) {
    let Some(h) = dom.hvm.as_ref() else { return };
    let id = dom.id;
    let owned = m.ft.count(id);
    let audit = super::npt::audit(
        &IdentityMem,
        &h.npt,
        id,
        h.nr_pages,
        |f| m.ft.owner(f),
        |_| false,
    );
    match audit {
        Ok(r) if owned == h.nr_pages + 1 => log::info!(
            "teardown check: domain {id} (hvm): {owned} frames owned ({} guest pages + shared_info); nested tables: {} leaves, {} tables; isolation audit: 0 violations",
            h.nr_pages,
            r.leaves,
            r.tables
        ),
        Ok(_) => log::error!(
            "teardown check: domain {id} (hvm): frame count MISMATCH: {owned} owned, {} expected",
            h.nr_pages + 1
        ),
        Err(v) => log::error!("teardown check: domain {id} (hvm): isolation audit VIOLATION: {v}"),
    }
}
