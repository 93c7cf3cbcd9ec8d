//! The operations of the traps/events/time work: event send + upcall to self, the interdomain event
//! ping-pong, `set_timer_op`, the page-fault bounce, and the two ring-3 system-call paths.
//!
//! | operation | one sample |
//! |---|---|
//! | `evtchn_send_self` | `EVTCHNOP_send` on an IPI port of this domain, **events enabled**: the hypervisor delivers the upcall on the way back, the event callback scans and runs the port's handler, and returns through the `iret` hypercall to after the send |
//! | `evtchn_pingpong_interdomain` | `EVTCHNOP_send` to domain 1 (`bench-partner`), then `SCHEDOP_poll` until its reply is pending (both ports masked, polled) |
//! | `set_timer_op` | `set_timer_op(deadline)` with a deadline 1000 s ahead (cancelled once afterwards) |
//! | `pf_bounce` | a read of an unmapped kernel address: #PF bounced to the guest's handler, which skips the instruction |
//! | `syscall_int80_direct` | from ring 3, timed in ring 3: `int 0x80` ping through the direct gate and back |
//! | `syscall_bounce` | from ring 3, timed in ring 3: SYSCALL ping, bounced by the hypervisor to the syscall callback, and back |

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use abi::errno::Errno;
use abi::event_channel::{EVTCHNOP_SEND, EvtchnPort, EvtchnSend};
use abi::hypercall::nr;
use abi::sched::{SCHEDOP_POLL, SCHEDOP_YIELD, SchedPoll};
use abi::xen::DomId;

use super::runner::Bench;
use super::{Options, WARMUP};
use crate::arch::x86_64::trap_probes::{
    self as probes, USER_SYS_RECORD, guest_probe_pf_insn, guest_probe_pf_next,
};
use crate::boot::platform;
use crate::event;
use crate::platform::xen_pv::{XEN_PV, raw};
use crate::time::{self, NS_PER_SEC};
use crate::trap::frame::{VECTOR_INT80, VECTOR_SYSCALL};
use crate::trap::user::UserSpace;
use crate::trap::{Disposition, HANDLERS, TrapCtx, TrapFrame, dispatch, sys};

/// The ping-pong operation's name.
pub const PINGPONG: &str = "evtchn_pingpong_interdomain";
/// The partner domain.
const PARTNER: DomId = 1;
/// An unmapped kernel address (the traps scenario's #PF probe address).
const PF_ADDR: u64 = 0x0000_0000_dead_b0ef;

fn etimedout() -> i64 {
    Errno::ETIMEDOUT.as_ret()
}

/// Domain 0, before domain 1 boots: allocate the ping-pong port unbound for domain 1 (masked: it is
/// polled, never delivered by upcall). `None` if the operation is not selected.
pub fn offer_pingpong(opts: &Options<'_>) -> Option<Result<EvtchnPort, Errno>> {
    if !opts.selected(PINGPONG) {
        return None;
    }
    let enabled = platform().irq_disable();
    let r = event::alloc_unbound(PARTNER).inspect(|&p| event::mask(p));
    platform().irq_restore(enabled);
    Some(r)
}

/// Wait (poll) until `port` is pending, then clear it; false at `deadline` (system time).
fn await_port(port: EvtchnPort, deadline: u64) -> Result<bool, Errno> {
    loop {
        if event::take_pending(port) {
            return Ok(true);
        }
        if time::now() >= deadline {
            return Ok(false);
        }
        XEN_PV.sched_poll(&[port], deadline)?;
    }
}

static SELF_EVENTS: AtomicU64 = AtomicU64::new(0);

fn self_event(_: EvtchnPort) {
    SELF_EVENTS.fetch_add(1, Ordering::Relaxed);
}

/// `evtchn_send_self`.
pub fn send_self(b: &mut Bench<'_>) {
    const NAME: &str = "evtchn_send_self";
    if !b.selected(NAME) {
        return;
    }
    if !dispatch::callbacks_ready() {
        b.fail(
            NAME,
            format_args!("no event callback (see the traps: line at boot)"),
        );
        return;
    }
    let port = match event::bind_ipi(Some(self_event)) {
        Ok(p) => p,
        Err(e) => {
            b.fail(NAME, format_args!("EVTCHNOP_bind_ipi: {e}"));
            return;
        }
    };
    let send = EvtchnSend { port };
    let send_ptr = &raw const send as u64;
    let n = b.opts.iterations;
    let before = SELF_EVENTS.load(Ordering::Relaxed);
    let mut ran = 0u64;
    let result = b.collect_events(NAME, n, || {
        ran += 1;
        raw(nr::EVENT_CHANNEL_OP, [EVTCHNOP_SEND, send_ptr, 0, 0, 0])
    });
    let got = SELF_EVENTS.load(Ordering::Relaxed) - before;
    let _ = event::close(port);
    if let Some((n, stats)) = result {
        if got == ran {
            b.report(NAME, n, &stats);
        } else {
            b.fail(
                NAME,
                format_args!("{ran} sends but {got} upcalls reached the port's handler"),
            );
        }
    }
}

/// `evtchn_pingpong_interdomain` (domain 0's side; `offer` from [`offer_pingpong`]).
pub fn pingpong(b: &mut Bench<'_>, offer: Option<Result<EvtchnPort, Errno>>) {
    let Some(offer) = offer else { return };
    let port = match offer {
        Ok(p) => p,
        Err(e) => {
            b.fail(
                PINGPONG,
                format_args!("alloc_unbound for domain {PARTNER}: {e}"),
            );
            return;
        }
    };
    let deadline = time::now() + 60 * NS_PER_SEC;
    // Domain 1 binds and says hello as soon as it boots.
    match await_port(port, time::now() + 20 * NS_PER_SEC) {
        Ok(true) => {}
        other => {
            b.fail(
                PINGPONG,
                format_args!("no hello from domain {PARTNER}: {other:?}"),
            );
            let _ = event::close(port);
            return;
        }
    }
    let send = EvtchnSend { port };
    let send_ptr = &raw const send as u64;
    let ports = [port];
    let poll = SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports: 1,
        _pad0: 0,
        timeout: deadline,
    };
    let poll_ptr = &raw const poll as u64;
    let n = b.opts.iterations;
    b.measure(PINGPONG, n, 1, || {
        let r = raw(nr::EVENT_CHANNEL_OP, [EVTCHNOP_SEND, send_ptr, 0, 0, 0]);
        if r < 0 {
            return r;
        }
        loop {
            let r = raw(nr::SCHED_OP, [SCHEDOP_POLL, poll_ptr, 0, 0, 0]);
            if r < 0 {
                return r;
            }
            if event::take_pending(port) {
                return 0;
            }
            if time::now() >= deadline {
                return etimedout();
            }
        }
    });
    let _ = event::close(port);
}

/// `bench-partner`'s side of the ping-pong: find domain 0's offer (the first of its ports
/// `bind_interdomain` accepts), say hello, answer `WARMUP + iterations` pings. Returns the exit code.
pub fn partner_pingpong(opts: &Options<'_>) -> u32 {
    let mut found = None;
    for _ in 0..100 {
        found = event::bind_offered(0);
        if found.is_some() {
            break;
        }
        let _ = raw(nr::SCHED_OP, [SCHEDOP_YIELD, 0, 0, 0, 0]);
    }
    let Some(port) = found else {
        crate::println!("bench-partner: domain 0 offered no port");
        return 1;
    };
    event::mask(port);
    let rounds = WARMUP + opts.iterations;
    crate::println!("bench-partner: echoing {rounds} events on port {port}");
    let deadline = time::now() + 60 * NS_PER_SEC;
    let mut code = 0;
    if let Err(e) = event::send(port) {
        crate::println!("bench-partner: hello: {e}");
        code = 1;
    }
    for i in 0..rounds {
        if code != 0 {
            break;
        }
        match await_port(port, deadline) {
            Ok(true) => {
                if let Err(e) = event::send(port) {
                    crate::println!("bench-partner: reply {i}: {e}");
                    code = 1;
                }
            }
            other => {
                crate::println!("bench-partner: waiting for ping {i}: {other:?}");
                code = 1;
            }
        }
    }
    let _ = event::close(port);
    code
}

/// `set_timer_op`: arm a deadline far ahead (the same one every time), cancel once afterwards.
pub fn set_timer(b: &mut Bench<'_>) {
    const NAME: &str = "set_timer_op";
    if !b.selected(NAME) {
        return;
    }
    let deadline = time::now() + 1000 * NS_PER_SEC;
    let n = b.opts.iterations;
    b.measure(NAME, n, 1, || raw(nr::SET_TIMER_OP, [deadline, 0, 0, 0, 0]));
    let r = raw(nr::SET_TIMER_OP, [0; 5]);
    if r < 0 {
        b.fail(
            NAME,
            format_args!(
                "cancelling the timer returned {}",
                super::runner::errno_name(r)
            ),
        );
    }
}

static PF_HITS: AtomicU64 = AtomicU64::new(0);

/// The `pf_bounce` handler: resume after the probe's read (RAX stays 0).
fn pf_skip(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    let insn = &raw const guest_probe_pf_insn as u64;
    if ctx.from_user || f.rip != insn {
        return Disposition::Unhandled;
    }
    f.rip = &raw const guest_probe_pf_next as u64;
    PF_HITS.fetch_add(1, Ordering::Relaxed);
    Disposition::Resume
}

/// `pf_bounce`.
pub fn page_fault(b: &mut Bench<'_>) {
    const NAME: &str = "pf_bounce";
    if !b.selected(NAME) {
        return;
    }
    if !dispatch::traps_ready() {
        b.fail(
            NAME,
            format_args!("no trap table (see the traps: line at boot)"),
        );
        return;
    }
    let _g = HANDLERS.scoped(14, pf_skip);
    let before = PF_HITS.load(Ordering::Relaxed);
    let mut ran = 0u64;
    let n = b.opts.iterations;
    b.measure(NAME, n, 1, || {
        ran += 1;
        // SAFETY: the probe reads the unmapped PF_ADDR once; the handler installed above resumes it at
        // its next instruction, and the probe touches only caller-saved registers.
        unsafe { probes::guest_probe_pf(PF_ADDR) };
        0
    });
    let hits = PF_HITS.load(Ordering::Relaxed) - before;
    if b.selected(NAME) && hits != ran {
        b.fail(NAME, format_args!("{ran} probes but {hits} faults handled"));
    }
}

/// Where the running ring-3 loop's samples go (the bench's sample buffer), its length, and the count.
static RECORD_BUF: AtomicPtr<u64> = AtomicPtr::new(core::ptr::null_mut());
static RECORD_LEN: AtomicUsize = AtomicUsize::new(0);
static RECORD_COUNT: AtomicUsize = AtomicUsize::new(0);

/// The system-call handler while the ring-3 loops run: `exit`, `ping` as at boot, plus `record`.
fn user_call(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if !ctx.from_user {
        return Disposition::Unhandled;
    }
    match f.rax {
        sys::EXIT => Disposition::ExitUser(f.rdi),
        sys::PING => {
            f.rax = f.rdi.wrapping_add(1);
            Disposition::Resume
        }
        USER_SYS_RECORD => {
            let i = RECORD_COUNT.fetch_add(1, Ordering::Relaxed);
            let buf = RECORD_BUF.load(Ordering::Acquire);
            if !buf.is_null() && i < RECORD_LEN.load(Ordering::Relaxed) {
                // SAFETY: `buf` is a live buffer of RECORD_LEN u64s set by `run_loop`, which clears it
                // before the buffer's borrow ends; `i` is in bounds; one vCPU, so no other writer.
                unsafe { buf.add(i).write(f.rdi) };
            }
            Disposition::Resume
        }
        _ => {
            f.rax = Errno::ENOSYS.as_ret() as u64;
            Disposition::Resume
        }
    }
}

/// Run the ring-3 loop at `entry` for `buf.len()` iterations, its samples into `buf`.
fn run_loop(us: &mut UserSpace, entry: u64, buf: &mut [u64]) -> Result<(), String> {
    RECORD_COUNT.store(0, Ordering::Relaxed);
    RECORD_LEN.store(buf.len(), Ordering::Relaxed);
    RECORD_BUF.store(buf.as_mut_ptr(), Ordering::Release);
    let enabled = platform().irq_disable();
    let r = us.run_with(entry, buf.len() as u64);
    platform().irq_restore(enabled);
    RECORD_BUF.store(core::ptr::null_mut(), Ordering::Release);
    let count = RECORD_COUNT.load(Ordering::Relaxed);
    match r {
        Ok(v) if v == buf.len() as u64 && count == buf.len() => Ok(()),
        other => Err(format!(
            "the ring-3 loop ended with {other:?} after {count} of {} samples",
            buf.len()
        )),
    }
}

/// `syscall_int80_direct` and `syscall_bounce`: the ring-3 program times each call itself; its empty
/// loop (the same TSC pair around only the `mov` both pings also execute) gives the overhead.
pub fn syscalls(b: &mut Bench<'_>) {
    const OPS: [&str; 2] = ["syscall_int80_direct", "syscall_bounce"];
    if !OPS.iter().any(|n| b.selected(n)) {
        return;
    }
    if !dispatch::user_ready() || !dispatch::callbacks_ready() {
        for name in OPS {
            b.fail(
                name,
                format_args!("ring 3 cannot trap into the kernel (see the traps: line at boot)"),
            );
        }
        return;
    }
    let blob = probes::user_blob();
    let mut us = match UserSpace::new(blob.bytes) {
        Ok(u) => u,
        Err(e) => {
            for name in OPS {
                b.fail(
                    name,
                    format_args!("cannot build the user address space: {e}"),
                );
            }
            return;
        }
    };
    let _int80 = HANDLERS.scoped(VECTOR_INT80, user_call);
    let _syscall = HANDLERS.scoped(VECTOR_SYSCALL, user_call);
    let n = b.opts.iterations;
    for (name, entry) in [(OPS[0], blob.bench_int80), (OPS[1], blob.bench_syscall)] {
        b.measure_external(name, n, |buf| {
            run_loop(&mut us, blob.bench_empty, buf)?;
            let overhead = abi::bench::summarize(buf).map_or(0, |s| s.median);
            let warm = WARMUP.min(buf.len());
            run_loop(&mut us, entry, &mut buf[..warm])?;
            run_loop(&mut us, entry, buf)?;
            Ok(overhead)
        });
    }
}
