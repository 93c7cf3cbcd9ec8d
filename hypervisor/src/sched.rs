//! The scheduler: act on what interrupts recorded, choose the vCPU to run (the weighted-fair policy in
//! `sched_policy`), arm the one-shot timer, and return to the guest — or idle with HLT, or power off when
//! no domain is left.
//!
//! A hypercall that does not give up the CPU returns straight to its caller (no policy decision); the
//! decision runs after a yield, block, poll, shutdown or crash, and whenever the timer fired (slice end or
//! a guest timer), so a vCPU that spins — even with events masked — is preempted at its slice end.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::event_channel::{VIRQ_CONSOLE, VIRQ_TIMER};

use crate::arch::{self, entry, serial};
use crate::deliver;
use crate::domain::state::{DomainTable, MAX_DOMAINS};
use crate::event::bits::SharedInfoPage;
use crate::irq;
use crate::mm::pcid;
use crate::pending;
use crate::regs::{EntryFrame, sanitize_in_place};
use crate::setup::{DOMAINS, EVENTS, HV, SCHED, TIME, integrity_checksum};
use crate::time::pvclock;
use crate::trap::crash_domain;

/// The deadline (ns of system time) the hardware timer is armed for (u64::MAX: none armed, or it fired).
static ARMED: AtomicU64 = AtomicU64::new(u64::MAX);

/// The handler the IDT's direct `int 0x80` gate enters (0: the hypervisor's stub, no direct gate; a
/// non-canonical value, which no handler can be, before the first install). Only [`schedule`] writes
/// that gate.
static INSTALLED_GATE: AtomicU64 = AtomicU64::new(1 << 63);

/// Save the segment state in the CPU into vCPU `pv`, which is leaving it; returns that state for
/// [`arch::switch_segments`], or `None` if the CPU's bases are not `pv`'s (`segments_dirty`: a
/// `set_segment_base` or context load since `pv` last ran, whose bases are newer than the CPU's and are
/// kept — only the selectors, which only the guest itself changes, are read then).
#[inline(always)]
fn save_segments(pv: &mut crate::vcpu::VcpuState) -> Option<arch::GuestSegments> {
    let selectors = arch::cpu::read_data_selectors();
    pv.selectors = selectors.0;
    if pv.segments_dirty {
        return None;
    }
    [pv.fs_base, pv.gs_base] = arch::user_segment_bases();
    Some(arch::GuestSegments {
        selectors,
        bases: [pv.fs_base, pv.gs_base, pv.gs_kernel],
    })
}

fn shared_info_page(table: &DomainTable, dom: usize) -> Option<&'static mut [u8; 4096]> {
    let d = table.slots.get(dom)?.as_ref().filter(|d| d.runnable())?;
    // SAFETY: the frame is the domain's shared_info page, identity mapped, and no guest runs now.
    Some(unsafe {
        &mut *(crate::arch::paging::IdentityMem::frame_ptr(d.mm.shared_info) as *mut [u8; 4096])
    })
}

/// Raise `virq` in `dom` and wake it if that makes an upcall pending or it polls the VIRQ's port (the same
/// rule as a send: `event::mark_pending`).
pub(crate) fn raise(table: &DomainTable, dom: usize, virq: u32) {
    // An hvm domain has no event channels: console input (the only VIRQ it can be sent) just wakes it,
    // and its run loop hands the bytes to its UART.
    if table
        .slots
        .get(dom)
        .is_some_and(|d| d.as_ref().is_some_and(|d| d.hvm.is_some()))
    {
        SCHED.lock().0.wake(dom);
        return;
    }
    let Some(page) = shared_info_page(table, dom) else {
        return;
    };
    let events = EVENTS.lock();
    let (sched, polls) = &mut *SCHED.lock();
    let id = dom as u16;
    let wake =
        crate::event::raise_virq(&events, id, virq, &mut SharedInfoPage::new(page), |port| {
            polls.polls(id, port)
        });
    if wake {
        sched.wake(dom);
        polls.clear(id);
    }
}

/// Act on what the interrupt handlers recorded. Returns true if the timer fired.
fn service_interrupts(table: &DomainTable, now: u64) -> bool {
    // Nothing recorded (the usual decision: a yield, a block): one load, no read-modify-writes (the
    // `pending` word's IRQ bit is set only together with a record, see `irq::record`).
    if !irq::any_recorded() {
        return false;
    }
    let what = irq::take_all();
    let fired = what & irq::TIMER != 0;
    if fired {
        ARMED.store(u64::MAX, Ordering::Relaxed);
        let due = SCHED.lock().0.timers_due(now);
        for d in due.timers {
            raise(table, d, VIRQ_TIMER);
        }
        for d in due.woken {
            SCHED.lock().1.clear(d as u16);
        }
    }
    if what & irq::CONSOLE != 0 {
        // The input owner, or domain 0 again if the owner is gone.
        let mut owner = crate::console::input_owner();
        if !table
            .slots
            .get(usize::from(owner))
            .is_some_and(|d| d.as_ref().is_some_and(|d| d.runnable()))
        {
            owner = 0;
            crate::console::set_input_owner(0);
        }
        raise(table, usize::from(owner), VIRQ_CONSOLE);
    }
    // A key is pushed before its bit is recorded (interrupts are off here), so a clear bit means an
    // empty queue.
    if what & irq::DEBUG != 0 {
        loop {
            let key = irq::DEBUG_KEYS.lock().pop_front();
            let Some(key) = key else { break };
            crate::debugkeys::handle(key, table, now);
        }
    }
    fired
}

/// Make sure the hardware timer fires no later than the earlier of `policy` (the policy's next deadline)
/// and `extra` (an hvm domain's next device interrupt, which must end its run on time), in ns of system
/// time.
///
/// Lazily: a timer already armed for that deadline or an earlier one is left alone. An early expiry is
/// harmless — the scheduler then decides again (`pick` keeps a vCPU whose slice has not ended, nothing is
/// due) and arms for the deadline of that moment — so only a deadline earlier than the armed one costs
/// the conversion to a TSC value and the timer write. The common case it saves: every switch between
/// runnable vCPUs starts a fresh slice, moving the deadline a little later each time; on hardware a
/// TSC-deadline MSR or APIC write per switch is replaced by at most one early interrupt per slice. (A
/// timer that fired no longer counts as armed: `service_interrupts` clears [`ARMED`].)
fn arm_for(policy: Option<u64>, extra: Option<u64>) {
    let want = match (policy, extra) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(u64::MAX),
    };
    if want >= ARMED.load(Ordering::Relaxed) {
        return;
    }
    ARMED.store(want, Ordering::Relaxed);
    let time = TIME.get().expect("time initialised");
    let tsc = time.scale.tsc_at(want);
    time.timer.arm(Some(tsc));
}

/// Make sure the hardware timer fires no later than `deadline` (see [`arm_for`]): for a hypercall
/// whose change to the policy moved only that deadline (`SchedPolicy::wake_by`), so that its return
/// needs no decision.
pub fn arm_deadline(deadline: u64) {
    arm_for(Some(deadline), None);
}

/// Arm the hardware timer for the earlier of the policy's next deadline and `extra` (see [`arm_for`]).
pub fn arm_timer_also(now: u64, extra: Option<u64>) {
    let policy = SCHED.lock().0.next_deadline(now);
    arm_for(policy, extra);
}

/// Publish a new `vcpu_time_info` record for vCPU `pv` in its shared_info `page` at system time `now`
/// (see [`pvclock::must_republish`]), and remember what it left in the page. Out of line: most switches
/// keep the record.
#[inline(never)]
fn republish(page: &mut [u8; 4096], pv: &mut crate::vcpu::VcpuState, offset_ns: u64, now: u64) {
    let time = TIME.get().expect("time initialised");
    let mut info = time.clock.lock().publish(arch::cpu::rdtsc());
    // A domain restored from a later boot's image sees its own clock continue.
    info.system_time = info.system_time.wrapping_add(offset_ns);
    pvclock::write_vcpu_time(page.as_mut_slice(), 0, &info);
    pv.time_record = pvclock::vcpu0_time_words(page);
    pv.time_due = now.saturating_add(pvclock::REPUBLISH_NS);
}

/// Give the current domain's live frame (an entry handled in place) back to its saved registers.
fn save_live(table: &mut DomainTable, live: &mut Option<&mut EntryFrame>) {
    if let Some(f) = live.take()
        && let Some(d) = table.current.and_then(|c| table.slots[c].as_mut())
    {
        entry::copy_frame(&mut d.vcpu.regs, f);
    }
}

/// Run a vCPU: the current one if `switch` is false and nothing else needs deciding, else the policy's
/// choice.
///
/// `live` is the current vCPU's frame when an entry was handled in place (a hypercall whose caller keeps
/// the CPU, see [`crate::trap::guest_trap`]): normally the entry-stack slot the exit pops, and newer than
/// the vCPU's saved registers. If the current vCPU simply resumes, that frame is sanitized where it is
/// and returned from without a copy; on every other way (a decision, an upcall to deliver, a crash) it is
/// first copied into the saved registers, so no other code ever sees stale ones.
pub fn schedule(switch: bool, live: Option<&mut EntryFrame>) -> ! {
    // SAFETY: `setup::start` sets the time base (`init_time`) before it creates a domain and before its
    // own first call here; every other call comes from a guest's entry or a domain's end, so later.
    let time = unsafe { TIME.get_unchecked() };
    let mut switch = switch;
    let mut live = live;
    // The same-vCPU return was tried after a policy change (see below).
    let mut tried_resume = false;
    loop {
        let mut table = DOMAINS.lock();
        let pending = irq::any_recorded();
        // The fast path: the caller keeps the CPU and nothing happened that needs a decision. A policy
        // change alone (an event woke another vCPU, a timer was set) needs no decision either when no
        // domain stopped: the caller keeps the CPU all the same (a choice is made only on a switch or
        // when the timer fired), so only the timer is brought up to date for the new deadline; with
        // no vCPU stopped there is no domain to reap (a domain leaves the runnable state only through
        // `lifecycle::stop_domain`, which stops its vCPU in the policy). The full decision consumes the
        // "stopped" mark, under the same lock, and reaps only if it was set.
        // The policy's lock, held on for the decision itself when nothing is to be done in between (see
        // `quiet` below): one acquisition per decision.
        let mut s = SCHED.lock();
        let (current, changed, fast, stopped) = if switch {
            // A decision in any case (the current vCPU is not a candidate to keep the CPU): only the
            // marks are consumed.
            (None, s.0.take_changed(), false, s.0.take_stopped())
        } else {
            let cur = table.current.filter(|&c| {
                table.slots[c].as_ref().is_some_and(|d| d.runnable())
                    && matches!(s.0.state(c), Some(crate::sched_policy::RunState::Runnable))
            });
            let changed = s.0.take_changed();
            let fast = !pending && cur.is_some() && (!changed || !s.0.stopped_since());
            let stopped = !fast && s.0.take_stopped();
            (cur, changed, fast, stopped)
        };
        // The system time of this decision (the slow path reads the clock; a switch needs it).
        let mut decided_at = None;
        let next = if fast {
            drop(s);
            if changed {
                let now = time.now_ns();
                crate::emulate::machine::service(&mut table, now);
                let deadline = SCHED.lock().0.next_deadline(now);
                arm_for(deadline, None);
                // The policy change was all that kept the caller from the same-vCPU return (an event
                // that woke another vCPU, a timer set): with the timer up to date, return through it —
                // once; if it cannot (it then changed nothing), the general way below.
                if !tried_resume && let Some(f) = live.as_deref_mut() {
                    tried_resume = true;
                    resume_live::<false>(table, f);
                    continue;
                }
            }
            current
        } else {
            save_live(&mut table, &mut live);
            let now = time.now_ns();
            // Nothing to reap, no interrupt recorded (interrupts are off: none can be recorded until the
            // guest runs or the CPU idles) and no emulated machine to service: nothing that could change
            // the policy comes before the choice, which is made under the lock already held.
            let quiet = !stopped && !pending && !crate::emulate::machine::any_live();
            let mut fired = false;
            if !quiet {
                drop(s);
                // Domains may have stopped since the last decision: reap them (they leave the domain
                // list), and the peers' shared_info list follows. (`reap` clears a reaped domain's entry
                // and `insert` sets a new one, so the list needs rebuilding only after a reap; only a
                // stopped vCPU leaves a domain to reap, see `fast` above.)
                if stopped && table.reap() > 0 {
                    // The console's input owner may be gone: the input goes back to domain 0.
                    let owner = usize::from(crate::console::input_owner());
                    if table.slots.get(owner).is_none_or(Option::is_none) {
                        crate::console::set_input_owner(0);
                    }
                    table.refresh_shared_info();
                }
                crate::emulate::machine::service(&mut table, now);
                fired = service_interrupts(&table, now);
                s = SCHED.lock();
            }
            // The choice and the deadline that follows from it, under one lock (`decide` leaves the
            // policy unmarked: this deadline is armed just below).
            let (next, deadline) = match current {
                Some(c) if !switch && !fired => (Some(c), s.0.next_deadline(now)),
                _ => s.0.decide(now),
            };
            // The policy as just decided and unmarked, the chosen vCPU runnable in it (`decide` chooses
            // only runnable vCPUs; the kept one was found runnable under this lock, and anything since
            // that could change its state marks the policy): exactly what the same-vCPU return's check
            // would find (`policy_unchanged`), so the bit this lock raised is cleared under it, as that
            // check does — the chosen vCPU's first hypercall returns without taking the policy's lock
            // again. (Any later lock raises it again.)
            if next.is_some() && !s.0.changed() {
                pending::clear(pending::SCHED);
            }
            drop(s);
            arm_for(deadline, None);
            decided_at = Some(now);
            next
        };
        let Some(i) = next else {
            // Nothing left that could ever run: no live domain, or only paused ones (a paused domain needs
            // another domain to unpause it).
            let live = {
                let s = SCHED.lock();
                table
                    .iter()
                    .any(|d| d.runnable() && !s.0.paused(usize::from(d.id)))
            };
            if !live {
                drop(table);
                power_off();
            }
            drop(table);
            // Everyone is blocked: sleep until an interrupt (timer or console) changes that.
            crate::console::release_on_idle();
            arch::idle_wait();
            switch = true;
            continue;
        };
        switch = true;
        if table.slots[i].is_none() {
            continue;
        }
        // An hvm vCPU: "resume" is its VMRUN loop, which returns when the scheduler must decide again.
        if table.slots[i].as_ref().is_some_and(|d| d.hvm.is_some()) {
            save_live(&mut table, &mut live);
            table.current = Some(i);
            let dom = table.slots[i].as_mut().expect("checked above");
            crate::hvm::run::run(dom);
            continue;
        }
        let prev_loaded = table.segments_loaded;
        // Only the fast path keeps a live frame, and it resumes the vCPU that entered.
        debug_assert!(live.is_none() || table.current == Some(i));
        if live.is_some() && deliver::upcall_due(table.slots[i].as_ref().expect("checked above")) {
            save_live(&mut table, &mut live);
        }
        let dom = table.slots[i].as_mut().expect("checked above");
        arch::set_umip(dom.emu.is_some());
        if dom.emu.is_some() && !crate::emulate::machine::before_resume(dom) {
            continue;
        }
        if !deliver::upcall(dom) {
            continue;
        }
        // The frame is sanitized where it is (no copy): the live frame in the entry-stack slot, or the
        // saved registers, which are then staged there. The guest never sees it unsanitized.
        let sanitized = match live.as_deref_mut() {
            Some(f) => sanitize_in_place(f),
            None => sanitize_in_place(&mut dom.vcpu.regs),
        };
        if let Err(e) = sanitized {
            save_live(&mut table, &mut live);
            let dom = table.slots[i].as_mut().expect("checked above");
            crash_domain(dom, format_args!("cannot resume: {e}"));
            continue;
        }
        let switching = table.current != Some(i);
        if switching {
            log::debug!("switching to domain {i}");
        }
        table.current = Some(i);
        // Segment state: save the one in the CPU (if it belongs to another live domain), load ours —
        // over the saved one, only what differs.
        let mut in_cpu = None;
        if prev_loaded != Some(i) {
            if let Some(p) = prev_loaded.and_then(|p| table.slots[p].as_mut()) {
                in_cpu = save_segments(&mut p.vcpu.pv);
            }
            table.segments_loaded = Some(i);
        }
        let dom = table.slots[i].as_mut().expect("checked above");
        let pv = &mut dom.vcpu.pv;
        if prev_loaded != Some(i) {
            let ours = arch::GuestSegments {
                selectors: arch::cpu::DataSelectors(pv.selectors),
                bases: [pv.fs_base, pv.gs_base, pv.gs_kernel],
            };
            match in_cpu {
                Some(cpu) => arch::switch_segments(&cpu, &ours),
                None => arch::load_segments(&ours),
            }
            pv.segments_dirty = false;
        } else if pv.segments_dirty {
            arch::load_segment_bases([pv.fs_base, pv.gs_base, pv.gs_kernel]);
            pv.segments_dirty = false;
        }
        if switching || pv.gates_dirty {
            // The IDT's direct gate is rewritten only when it names another handler (vCPUs of one guest
            // kernel usually have the same); TSS.RSP1 is one store.
            let gate = pv.direct_gate();
            if INSTALLED_GATE.load(Ordering::Relaxed) != gate.unwrap_or(0) {
                INSTALLED_GATE.store(gate.unwrap_or(0), Ordering::Relaxed);
                arch::set_direct_gate(gate);
            }
            arch::set_rsp1(pv.kernel_sp);
            pv.gates_dirty = false;
        }
        if switching {
            // SAFETY: the domain's own shared_info frame, identity mapped; the guest is not running.
            let page = unsafe {
                &mut *(crate::arch::paging::IdentityMem::frame_ptr(dom.mm.shared_info)
                    as *mut [u8; 4096])
            };
            // The vCPU's time record: kept while the page still holds exactly what was last published
            // there (a record stays exact however old it is), published again on a first run, a new or
            // restored page, a record the guest overwrote, and at least every `REPUBLISH_NS`.
            let now = decided_at.unwrap_or_else(|| time.now_ns());
            if pvclock::must_republish(page, &pv.time_record, pv.time_due, now) {
                republish(page, pv, dom.mm.time_offset_ns, now);
            }
        }
        let cr3 = guest_cr3(dom);
        let fx = dom.vcpu.fx.0.as_mut_ptr();
        match live.as_deref() {
            // A live frame is normally the slot itself: nothing to copy.
            Some(f) => {
                debug_assert!(crate::regs::is_sanitized(f));
                if !entry::is_exit_slot(f) {
                    entry::stage_frame(f);
                }
            }
            None => {
                debug_assert!(crate::regs::is_sanitized(&dom.vcpu.regs));
                entry::stage_frame(&dom.vcpu.regs);
            }
        }
        drop(table);
        // SAFETY: cr3 is the domain's validated base (entry region installed); `fx` points into the domain's
        // slot of the static domain table, which stays put while the domain exists; the staged frame was
        // sanitized; no lock is held.
        unsafe { entry::exit_to_guest(cr3, fx) }
    }
}

/// The same-vCPU return through a live frame, taken by `trap::guest_trap` while it still holds the
/// domain table, when there is nothing to decide on the way: no interrupt recorded, no scheduling
/// change (both read from the one `pending` word; the policy's lock is taken only when the word says it
/// may have changed), the vCPU still runnable with its segments in the CPU, no segment base or gate to reload, a
/// frame that sanitizes. Then it does exactly what [`schedule`]'s loop would do for it (deliver a due
/// event upcall, here into the live frame; sanitize the frame in place, CR3 with any pending flush, the
/// FXSAVE area) and nothing else. Otherwise it returns, having unlocked the table, and the caller goes
/// through [`schedule`]; nothing has changed then, unless delivering the upcall crashed the domain (its
/// registers are then saved) or bounced the frame (events are then masked, so `schedule` does not
/// deliver it twice).
///
/// `trap::guest_trap` takes its body, [`resume_current`], inlined (it knows the current vCPU); this
/// out-of-line entry is for the callers that do not ([`schedule`], `trap::fast_hypercall_return`).
#[inline(never)]
pub fn resume_live<const ARM: bool>(
    table: spin::MutexGuard<'_, DomainTable>,
    frame: &mut EntryFrame,
) {
    let Some(c) = table.current else {
        return;
    };
    resume_current::<ARM, false>(table, c, frame)
}

/// [`resume_live`] for vCPU `c`, the current one, known by the caller (`trap::guest_trap`, which found
/// it current on entry with a domain in its slot: handling an entry changes neither). With `SLOT`, the
/// caller knows that `frame` is the entry stack's exit slot (the hypercall vector has no IST stack), so it
/// is not compared with it. Inlined, so the same-vCPU return after an entry costs no call.
#[inline(always)]
pub fn resume_current<const ARM: bool, const SLOT: bool>(
    table: spin::MutexGuard<'_, DomainTable>,
    c: usize,
    frame: &mut EntryFrame,
) {
    if table.segments_loaded != Some(c) {
        return;
    }
    // One load for "an interrupt recorded or the policy possibly changed" (`pending`'s contract;
    // `DISARMED` is always set here, the table being locked).
    let pending = pending::word();
    if pending & (pending::IRQ | pending::SCHED) != 0
        && (pending & pending::IRQ != 0 || !policy_unchanged(c))
    {
        return;
    }
    // (`c % MAX_DOMAINS` is `c`, a slot index; written so it needs no bounds check.)
    let Some(dom) = table.slots[c % MAX_DOMAINS].as_ref() else {
        return;
    };
    let pv = &dom.vcpu.pv;
    if !dom.runnable() || (pv.segments_dirty | pv.gates_dirty) {
        return;
    }
    // A due upcall is bounced into the live frame, which then returns as any other (the way `schedule`
    // does it on the saved registers), out of line so that this path stays a leaf.
    if deliver::upcall_due(dom) {
        return resume_after_upcall::<ARM>(table, c, frame);
    }
    resume_checked::<ARM, SLOT>(table, c, frame)
}

/// The end of [`resume_live`], once its checks have passed for vCPU `c` (current, segments loaded,
/// nothing pending, runnable, nothing dirty, no upcall due): sanitize the frame in place, CR3 with any
/// pending flush, the FXSAVE area, and (with `ARM`) record `pending::Armed`. `SLOT`: `frame` is known to
/// be the exit slot ([`resume_current`]). Returns (having unlocked the table, the frame unchanged) only if
/// the frame does not sanitize.
#[inline(always)]
fn resume_checked<const ARM: bool, const SLOT: bool>(
    mut table: spin::MutexGuard<'_, DomainTable>,
    c: usize,
    frame: &mut EntryFrame,
) {
    let Some(dom) = table.slots[c % MAX_DOMAINS].as_mut() else {
        return;
    };
    // On an error the frame is unchanged and the general path crashes the domain.
    if sanitize_in_place(frame).is_err() {
        return;
    }
    let (cr3, keep_cr3) = guest_cr3_and_keep(dom);
    let fx = dom.vcpu.fx.0.as_mut_ptr();
    debug_assert!(crate::regs::is_sanitized(frame));
    debug_assert!(!SLOT || entry::is_exit_slot(frame));
    if !SLOT && !entry::is_exit_slot(frame) {
        entry::stage_frame(frame);
    }
    // Everything the fast hypercall path relies on was just checked (`pending::Armed`): with `ARM` (the
    // caller's light hypercall was just answered), record it, with the CR3 value for a return without a
    // flush (this return does any flush due), and clear `DISARMED` until the next lock of the table. (A
    // root at machine address 0 never arms: 0 is the fast path's "not answered".)
    if ARM && keep_cr3 != 0 {
        let armed = pending::Armed {
            dom: core::ptr::from_mut(dom) as u64,
            cr3: keep_cr3,
            upcall_pending: deliver::upcall_pending_addr(dom),
        };
        pending::arm(&mut table, armed);
    }
    drop(table);
    // SAFETY: as in `schedule`: the current domain's validated base, its FXSAVE area in the static
    // domain table, a sanitized frame in the slot, no lock held.
    unsafe { entry::exit_to_guest(cr3, fx) }
}

/// [`pending::SCHED`] is set (and no interrupt recorded): true if, all the same, vCPU `c` may simply
/// resume (the policy unchanged and `c` runnable in it), having cleared the bit; false if `schedule` must
/// decide.
#[inline(always)]
fn policy_unchanged(c: usize) -> bool {
    let s = SCHED.unraised().lock();
    if s.0.changed() || !matches!(s.0.state(c), Some(crate::sched_policy::RunState::Runnable)) {
        return false;
    }
    // Checked under the lock: nothing to decide until the next lock of the policy raises it again.
    pending::clear(pending::SCHED);
    true
}

/// [`resume_live`] with an event upcall due for vCPU `c`, its other checks passed: bounce the upcall into
/// the live frame, then return through it. The bounce changes only the frame and the guest's event mask
/// (so no upcall is due any more): what `resume_live` checked still holds, and the return goes straight
/// to [`resume_checked`]. If the bounce crashed the domain (the frame is then in its saved registers),
/// return and let `schedule` decide.
#[inline(never)]
fn resume_after_upcall<const ARM: bool>(
    mut table: spin::MutexGuard<'_, DomainTable>,
    c: usize,
    frame: &mut EntryFrame,
) {
    let Some(dom) = table.slots[c].as_mut() else {
        return;
    };
    if deliver::upcall_live(dom, frame) {
        debug_assert!(!deliver::upcall_due(dom));
        // (The frame may be an IST copy: compared with the exit slot.)
        resume_checked::<ARM, false>(table, c, frame);
    }
}

/// The CR3 value to return to `dom` with, taking its pending TLB flush (without PCID, as under QEMU's
/// TCG or on older CPUs, the root itself).
#[inline(always)]
fn guest_cr3(dom: &mut crate::domain::state::Domain) -> u64 {
    guest_cr3_and_keep(dom).0
}

/// [`guest_cr3`], and the value for a later return without a flush (what `pending::Armed` records).
#[inline(always)]
fn guest_cr3_and_keep(dom: &mut crate::domain::state::Domain) -> (u64, u64) {
    let flush = core::mem::take(&mut dom.mm.flush_tlb);
    let root = dom.mm.base.addr().0;
    if arch::pcid_enabled() {
        let pcid = pcid::domain_pcid(dom.id);
        let keep = pcid::cr3_value(root, true, pcid, false);
        (pcid::cr3_value(root, true, pcid, flush), keep)
    } else {
        let v = pcid::cr3_value(root, false, 0, flush);
        (v, v)
    }
}

/// No runnable domain is left: report, check the hypervisor's integrity and stop the machine.
fn power_off() -> ! {
    let mut status = DOMAINS.lock().status();
    if HV
        .get()
        .is_some_and(|h| h.boot_errors.load(core::sync::atomic::Ordering::Relaxed))
    {
        log::error!("some boot modules could not be started (see above)");
        status = status.max(abi::exit::EXIT_BOOT_ERROR);
    }
    match HV.get() {
        Some(hv) if hv.integrity == integrity_checksum() => {
            log::info!("integrity: hypervisor text and rodata unchanged")
        }
        _ => log::error!("integrity: hypervisor text, rodata or canary CHANGED"),
    }
    log::info!("all domains finished: exit status {status}");
    // Lines held back for domain 0's unfinished direct line go out before the machine stops.
    crate::console::release_all();
    serial::debug_exit(status)
}
