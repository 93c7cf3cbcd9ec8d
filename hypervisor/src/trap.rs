//! What happens after a guest enters the hypervisor: hypercalls, exceptions, and the one path that stops a
//! misbehaving domain, [`crash_domain`].

use abi::layout::HYPERCALL_VECTOR;

use crate::arch::paging::IdentityMem;
use crate::console::LineBuffer;
use crate::deliver;
use crate::domain::lifecycle::stop_domain;
use crate::domain::state::MAX_DOMAINS;
use crate::domain::state::{Domain, DomainState, DomainTable};
use crate::hypercall::{self, Action, Env, HypercallCtx, Lazy, Others};
use crate::mm::ptval::Policy;
use crate::regs::{EntryFrame, frame_ring};
use crate::setup::{DOMAINS, EVENTS, HV, MACHINE, SCHED, TIME, TimeBase};
use abi::types::Mfn;

/// How scheduling continues after an entry has been handled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Return to the same vCPU if it can still run.
    Resume,
    /// Let another vCPU run first.
    Switch,
    /// Perform this checked `domctl` once the domain table is released, then resume the caller (its
    /// registers are already in its vCPU).
    Domctl(hypercall::domctl::DomctlOp),
}

/// Entry point from `arch::entry` for every entry from ring 1 or 3 (hypervisor stack, own address space,
/// guest FPU state already saved). `frame` is where the entry code left it: the entry-stack slot that the
/// exit pops (every vector without an IST stack, the hypercall vector among them), or a copy on the
/// private stack (IST vectors).
///
/// A hypercall is handled on the frame in place: if the caller keeps the CPU, the frame goes back to it
/// from the same slot (sanitized there, see [`crate::sched::schedule`]) without being copied into the vCPU
/// and out again; otherwise it is copied into the vCPU's saved registers before anything else can look at
/// them. Traps and system calls are bounced on the frame in place the same way; only the emulated kinds
/// copy it into the vCPU at once.
///
/// Called straight from the entry code (`common_entry`, `hypercall_entry`; an `extern "C"` function, so
/// no trampoline), on the hypervisor stack, in the hypervisor's address space, with the guest's FPU state
/// saved. The entry code passes the frame it just built on the entry stack (mapped at the same alias
/// address in the hypervisor's address space) or copied from an IST stack to the private stack; no Rust
/// code runs on the entry stack and nothing else writes either place until the next exit, so `frame` is
/// the only reference to it.
pub extern "C" fn guest_trap(frame: &mut EntryFrame) -> ! {
    enter::<false>(frame)
}

/// [`guest_trap`] for an entry the hypercall entry code (`hypercall_entry`) has already identified as a
/// hypercall through the hypercall vector's gate from a guest on its entry stack (the frame is the exit
/// slot and its vector is [`HYPERCALL_VECTOR`]): the same handling without the test of the vector.
pub extern "C" fn guest_hypercall(frame: &mut EntryFrame) -> ! {
    debug_assert_eq!(frame.vector, u64::from(HYPERCALL_VECTOR));
    enter::<true>(frame)
}

/// The body of [`guest_trap`] (`HC`: known to be a hypercall, [`guest_hypercall`]).
#[inline(always)]
fn enter<const HC: bool>(frame: &mut EntryFrame) -> ! {
    let (next, live) = {
        let mut table = DOMAINS.lock();
        let DomainTable {
            slots,
            current,
            shared_info,
            ..
        } = &mut *table;
        let Some((c, Some(dom), others)) =
            current.and_then(|c| Others::split(slots, c).map(|(me, others)| (c, me, others)))
        else {
            drop(table);
            no_current_domain(frame.vector)
        };
        if dom.emu.is_some() {
            crate::arch::entry::copy_frame(&mut dom.vcpu.regs, frame);
            (crate::emulate::machine::trap(dom), false)
        } else if HC || frame.vector == u64::from(HYPERCALL_VECTOR) {
            match hypercall(dom, frame, shared_info, others) {
                // Straight back to the caller if nothing needs deciding (does not return then; the frame
                // is the exit slot: the hypercall vector has no IST stack). After a light handler's answer
                // the return also records the fast path's state (`pending::Armed`): the next light
                // hypercall can then be answered in the entry code. Other returns do not pay for
                // recording it.
                Ok(light) => {
                    if light {
                        crate::sched::resume_current::<true, true>(table, c, frame);
                    } else {
                        crate::sched::resume_current::<false, true>(table, c, frame);
                    }
                    crate::sched::schedule(false, Some(frame))
                }
                // (The commonest other way on, without carrying a `Next` out of the block.)
                Err(Next::Switch) => {
                    drop(table);
                    crate::sched::schedule(true, None)
                }
                Err(next) => (next, false),
            }
        } else {
            // Traps and system calls are bounced on the live frame (no copy into the vCPU and back): a
            // bounce the vCPU resumes at once returns through the same-vCPU path, and every other way
            // (an interrupt to act on, a crash) copies the frame into the saved registers first
            // (`schedule`'s `save_live`, `deliver::crash_live`).
            let next = match frame.vector {
                v if v < 32 => exception(dom, frame),
                abi::traps::SYSCALL_PSEUDO_VECTOR => deliver::syscall(dom, frame),
                // A hardware interrupt: record it; the scheduler acts on it before returning to a guest.
                v => {
                    crate::irq::interrupt(v);
                    Next::Resume
                }
            };
            if matches!(next, Next::Resume) {
                // (An IST vector's frame is a copy on the private stack, not the exit slot.)
                crate::sched::resume_current::<false, false>(table, c, frame);
                crate::sched::schedule(false, Some(frame));
            }
            (next, false)
        }
    };
    if let Next::Domctl(op) = next {
        crate::domain::control::perform(op);
    }
    crate::sched::schedule(matches!(next, Next::Switch), live.then_some(frame))
}

/// The fast hypercall path's way back into the general code. The path itself is assembly
/// (`arch::entry`, `hypercall_entry`): when the `pending` word is zero (no interrupt recorded, the
/// scheduling policy unchanged, and the domain table not locked since a same-vCPU return recorded
/// [`crate::pending::Armed`]: the caller is current, runnable, its segments loaded, no segment, gate or
/// TLB work outstanding; the CR3 value to return with), it calls the frame's number's light handler
/// (`hypercall::light::ENTRY`) with the frame and the recorded domain, without the domain table's lock:
/// no guard of it can exist then (every lock raises `DISARMED`, see `setup::DomainsLock`), no Rust code is
/// live on the CPU (entered from a guest, one CPU, interrupts off), and a light handler takes no lock
/// but the machine's (the `light` module's contract: it answers from the frame, its own domain and, for
/// `update_va_mapping`, the frame table, whose lock guards nothing `Armed` relies on). The class it
/// serves is every call a light handler answers (`NULL`, `xen_version`'s register-only sub-commands,
/// `stack_switch`, `set_callbacks`, `update_va_mapping`'s common case), whatever the number. If nothing
/// is left for the return, the entry code sanitizes the frame and returns with the recorded CR3 value;
/// a declined request goes to [`guest_hypercall`] unchanged; and an answered one whose return has work
/// (an event upcall pending: a guest may make any hypercall just to have its events delivered, as
/// Linux's `xen_force_evtchn_callback` does with `xen_version`; gates or segments dirtied by the
/// handler; a TLB flush the fast return's CR3 load does not make; a RIP the sanitizer refuses) comes
/// here, with the result in the frame's RAX, for the general return (as after `hypercall`), which does
/// not return.
#[cold]
pub fn fast_hypercall_return(frame: &mut EntryFrame) -> ! {
    let table = DOMAINS.lock();
    crate::sched::resume_live::<true>(table, frame);
    crate::sched::schedule(false, Some(frame))
}

/// An exception from a guest, whose registers are the live entry frame `frame` (see
/// [`deliver::exception`]). A guest at CPL 1 always has a usable stack to switch to (TSS.RSP0), so it
/// cannot make an exception's delivery fault; a double fault means it ran at CPL 0 with an unusable stack.
#[inline(never)]
fn exception(dom: &mut Domain, frame: &mut EntryFrame) -> Next {
    if crate::domain::logdirty_ctl::write_fault(dom, frame.vector, frame.error_code) {
        return Next::Resume;
    }
    if frame.vector == 8 {
        return double_fault(dom, frame);
    }
    deliver::exception(dom, frame)
}

/// A double fault from a guest (see [`exception`]): crash it, out of line (the message is built only here).
#[cold]
#[inline(never)]
fn double_fault(dom: &mut Domain, frame: &mut EntryFrame) -> Next {
    crate::arch::entry::copy_frame(&mut dom.vcpu.regs, frame);
    crash_domain(
        dom,
        format_args!(
            "double fault at rip={:#x}: entered the hypervisor at CPL 0 (null SS, emulator defect) with \
             an unusable stack",
            frame.rip
        ),
    );
    Next::Switch
}

/// A trusted guest entry with no domain on the CPU: the boot-time fidelity probe's #GP, or a bug.
fn no_current_domain(vector: u64) -> ! {
    if crate::arch::fidelity::probing() {
        crate::arch::fidelity::probe_trapped(vector);
    }
    panic!("entry from a guest with no current domain (vector {vector})");
}

/// Entry point from `arch::entry` for an entry with a guest CS but no stack switch: the current domain ran
/// at CPL 0 (a CPU model that lets ring-1 code into ring 0, see `arch::x86_64::fidelity`). Its registers
/// are on its own stack and are not used; it is crashed.
pub fn untrusted_entry(vector: u64, rip: u64) -> ! {
    {
        let mut table = DOMAINS.lock();
        let current = table.current;
        let Some(dom) = current.and_then(|i| table.slots[i].as_mut()) else {
            panic!(
                "entry without a stack switch and no current domain (vector {vector}, rip {rip:#x})"
            );
        };
        // The saved registers are from its previous entry: show only what is known.
        dom.vcpu.regs = EntryFrame {
            vector,
            rip,
            ..EntryFrame::default()
        };
        crash_domain(
            dom,
            format_args!(
                "entered the hypervisor at CPL 0 (null SS, emulator defect): vector {vector} at rip={rip:#x} \
                 without a stack switch; registers unknown"
            ),
        );
    }
    crate::sched::schedule(true, None)
}

/// Handle the hypercall in `regs` (the caller's live frame) for `dom`. `Ok`: the caller resumes with the
/// result in `regs` only (the flag: the light handler answered). Otherwise how to go on, never
/// [`Next::Resume`]: on [`Next::Switch`] `regs` has also been copied into the vCPU's saved registers.
/// (The same-vCPU return, the common case, then carries no `Next`, whose `Domctl` payload makes it a
/// copy in memory.)
#[inline(always)] // Into both entry points (`guest_trap`, `guest_hypercall`): no call, no result in memory.
fn hypercall(
    dom: &mut Domain,
    regs: &mut EntryFrame,
    peers: &[Option<Mfn>; MAX_DOMAINS],
    others: Others<'_>,
) -> Result<bool, Next> {
    // Every hypercall passes here exactly once (a multicall's entries are dispatched inside it).
    let number = regs.rax;
    dom.vcpu.pv.counters.hypercalls = dom.vcpu.pv.counters.hypercalls.wrapping_add(1);
    // First the light table: a handler that answers from the registers and the caller's own domain
    // needs none of the full context below (no locks, no guest memory).
    let slot = usize::try_from(number)
        .ok()
        .and_then(|n| SLOTS.get(n))
        .copied()
        .unwrap_or(Slot::EMPTY);
    if let Some(h) = slot.light
        && let Some(v) = h(regs, dom)
    {
        if log::max_level() >= log::LevelFilter::Trace {
            trace_light(dom.id, number, v);
        }
        regs.rax = v as u64;
        return Ok(true);
    }
    full_hypercall(number, slot.full, dom, regs, peers, others).map(|()| false)
}

/// A light handler's answer, traced out of line: the hypercall's number and result are passed by value,
/// so the hot path keeps them in registers instead of storing them for a reference the macro would take.
#[cold]
#[inline(never)]
fn trace_light(id: u16, number: u64, v: i64) {
    log::trace!("domain {id}: hypercall {number} (light) -> {v}");
}

/// A full hypercall's outcome other than a plain return, traced out of line (as [`trace_light`]). The
/// arguments are still in the frame's registers: reading them there keeps them out of a stack copy kept
/// alive across the handler's call.
#[cold]
#[inline(never)]
fn trace_full(id: u16, number: u64, regs: &EntryFrame, action: &Action) {
    log::trace!(
        "domain {id}: hypercall {number} {:x?} -> {action:?}",
        hypercall::args_of(regs)
    );
}

/// One hypercall number's handlers: the light one (`hypercall::light`), tried first, and the full one
/// (always present: a number without one has [`enosys`], so the dispatch tests nothing).
#[derive(Clone, Copy)]
struct Slot {
    light: Option<hypercall::light::LightFn>,
    full: hypercall::Handler<IdentityMem>,
}

impl Slot {
    /// A number without handlers (`-ENOSYS`).
    const EMPTY: Slot = Slot {
        light: None,
        full: enosys,
    };
}

/// The full handler of a number that has none (as [`hypercall::dispatch`] answers it).
fn enosys(_: &mut HypercallCtx<'_, '_, IdentityMem>) -> Action {
    Action::Return(abi::errno::Errno::ENOSYS.as_ret())
}

/// The light and the full table merged, indexed by the hypercall number straight from the frame (one
/// bounds check, one slot).
static SLOTS: [Slot; hypercall::TABLE_SLOTS] = {
    let light = hypercall::light::table();
    let full = hypercall::table::<IdentityMem>();
    let mut slots = [Slot::EMPTY; hypercall::TABLE_SLOTS];
    let mut i = 0;
    while i < hypercall::TABLE_SLOTS {
        slots[i] = Slot {
            light: light[i],
            full: match full[i] {
                Some(h) => h,
                None => enosys,
            },
        };
        i += 1;
    }
    slots
};

/// [`hypercall`] through the full context and the number's full `handler` (as [`hypercall::dispatch`]):
/// every call the light table does not answer. `Ok`: the caller resumes.
#[inline(always)]
fn full_hypercall(
    number: u64,
    handler: hypercall::Handler<IdentityMem>,
    dom: &mut Domain,
    regs: &mut EntryFrame,
    peers: &[Option<Mfn>; MAX_DOMAINS],
    others: Others<'_>,
) -> Result<(), Next> {
    let action = {
        let mut mem = IdentityMem;
        let mut ctx = HypercallCtx {
            domid: dom.id,
            privileged: dom.privileged,
            user: frame_ring(regs) == 3,
            mem: &mut mem,
            machine: Lazy::Unlocked(&MACHINE),
            dom: &mut dom.mm,
            regs: &mut *regs,
            vcpu: &mut dom.vcpu.pv,
            events: Lazy::Unlocked(&EVENTS),
            sched: Lazy::Unlocked(SCHED.unraised()),
            shared_info: peers,
            others,
            policy: policy(),
            budget: hypercall::BUDGET,
            env: &mut dom.console,
        };
        // The number's slot in the one table (what `hypercall::dispatch` does, without the call into it).
        handler(&mut ctx)
    };
    // The caller keeps the CPU: the result goes into the live frame only. (Not traced: the test of the log
    // level would be paid by every such return; the other outcomes are.) Tested first, on its own: one
    // compare instead of the indirect jump of a `match` over every outcome.
    if let Action::Return(v) = action {
        regs.rax = v as u64;
        return Ok(());
    }
    let id = dom.id;
    let trace = move |regs: &EntryFrame, action: &Action| {
        if log::max_level() >= log::LevelFilter::Trace {
            trace_full(id, number, regs, action);
        }
    };
    match action {
        Action::Return(_) | Action::Resume => return Ok(()),
        Action::Yield => {
            trace(regs, &action);
            regs.rax = 0;
        }
        Action::Continue(new_args) => {
            trace(regs, &action);
            // Re-execute `int 0x82` (two bytes) with the progress folded into the arguments, after letting
            // the other domains run.
            regs.rax = number;
            hypercall::set_args(regs, new_args);
            regs.rip = regs.rip.wrapping_sub(2);
            dom.mm.preemptions += 1;
        }
        Action::Crash(_) | Action::Shutdown { .. } | Action::Domctl(_) => trace(regs, &action),
    }
    // The caller gives up the CPU (or stops): its registers become its saved state.
    crate::arch::entry::copy_frame(&mut dom.vcpu.regs, regs);
    match action {
        Action::Domctl(op) => return Err(Next::Domctl(op)),
        Action::Crash(why) => crash_domain(dom, format_args!("{why}")),
        Action::Shutdown {
            reason: abi::sched::ShutdownReason::Suspend,
            code,
        } => crate::domain::save::suspended(dom, Mfn(u64::from(code))),
        Action::Shutdown { reason, code } => {
            stop_domain(dom, DomainState::Shutdown { reason, code });
            log::info!("domain {id} shut down: {} code {code}", reason.name());
        }
        _ => {}
    }
    Err(Next::Switch)
}

/// The validator's machine facts (from the boot facts, [`init_policy`]).
static POLICY: spin::Once<Policy<'static>> = spin::Once::new();

/// Record the validator's machine facts from the boot facts `hv`: called by `setup` once they are
/// recorded, before any domain exists (so before any hypercall).
pub fn init_policy(hv: &'static crate::setup::HvInfo) {
    POLICY.call_once(|| Policy {
        maxphyaddr: hv.maxphyaddr,
        hv_l4: &hv.hv_l4,
    });
}

/// The validator's machine facts, for a hypercall's context (no test of whether they are set: every
/// hypercall pays for that test otherwise).
#[inline(always)]
pub(crate) fn policy() -> &'static Policy<'static> {
    // SAFETY: `init_policy` ran at boot before any domain was created, and a hypercall comes from a
    // domain: `POLICY` is initialised.
    unsafe { POLICY.get_unchecked() }
}

/// The hypervisor side of [`Env`]: the caller's console line buffer (its domain id comes with each
/// console call), so the context refers to it with nothing built on every hypercall.
impl Env for LineBuffer {
    fn now_ns(&self) -> u64 {
        TIME.get().map_or(0, TimeBase::now_ns)
    }

    fn console_write(&mut self, id: u16, bytes: &[u8]) {
        if id == crate::console::input_owner() && crate::console::dom0_direct() {
            // Output kept in lines while another domain had the console comes first.
            self.flush(crate::console::guest_direct);
            crate::console::guest_direct(bytes)
        } else {
            self.push(bytes, |line| crate::console::guest_line(id, line))
        }
    }

    fn console_input_owner(&self, id: u16) -> bool {
        id == crate::console::input_owner()
    }

    fn console_read(&mut self, id: u16, buf: &mut [u8]) -> usize {
        if self.console_input_owner(id) {
            crate::irq::read_console(buf)
        } else {
            0
        }
    }

    fn hv_cmdline(&self) -> &str {
        &HV.get().expect("boot facts recorded").cmdline
    }

    fn arm_deadline(&mut self, deadline: u64) {
        crate::sched::arm_deadline(deadline);
    }
}

/// The one way the hypervisor stops a misbehaving domain: report why and where, then tear it down. The
/// other domains are untouched.
pub fn crash_domain(dom: &mut Domain, reason: core::fmt::Arguments<'_>) {
    log::error!("domain {} crashed: {reason}", dom.id);
    crate::panic::dump_frame(&dom.vcpu.regs, |a| log::error!("  {a}"));
    stop_domain(dom, DomainState::Crashed);
}
