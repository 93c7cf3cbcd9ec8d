//! The kernel's clock and timers over the platform seam (on PV: the pvclock and the timer VIRQ).

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use abi::errno::Errno;

use super::{Monotonic, Reading};
use crate::platform::{Irq, IrqSource, ops};

static MONOTONIC: Monotonic = Monotonic::new();
/// The timer's interrupt source (0: not bound).
static TIMER_PORT: AtomicU32 = AtomicU32::new(0);
/// Timer events received.
static TIMER_EVENTS: AtomicU64 = AtomicU64::new(0);

/// An optional function run on every timer event (the periodic tick of a guest scheduler).
static TICK_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

fn timer_event(_port: Irq) {
    let n = TIMER_EVENTS.fetch_add(1, Ordering::AcqRel) + 1;
    let hook = TICK_HOOK.load(Ordering::Acquire);
    if !hook.is_null() {
        // SAFETY: only `fn(u64)` pointers are stored in TICK_HOOK (by `set_tick_hook`).
        let f = unsafe { core::mem::transmute::<*mut (), fn(u64)>(hook) };
        f(n);
    }
}

/// Run `hook(timer events so far)` on every timer event, in the upcall (events masked); `None` removes it.
/// With [`start_periodic`] this is a periodic tick.
pub fn set_tick_hook(hook: Option<fn(u64)>) {
    TICK_HOOK.store(
        hook.map_or(core::ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
}

/// Bind the timer's interrupt source (PV: VIRQ_TIMER) to a handler that counts timer events. Returns
/// the port.
pub fn init() -> Result<Irq, Errno> {
    let port = crate::event::bind(IrqSource::Timer, Some(timer_event))?;
    TIMER_PORT.store(port, Ordering::Release);
    Ok(port)
}

/// The timer's port, if bound.
pub fn timer_port() -> Option<Irq> {
    match TIMER_PORT.load(Ordering::Acquire) {
        0 => None,
        p => Some(p),
    }
}

/// Timer events (one-shot or periodic) received so far.
pub fn timer_events() -> u64 {
    TIMER_EVENTS.load(Ordering::Acquire)
}

/// True if the platform has a clock (on PV: the hypervisor maintains a pvclock for this vCPU).
pub fn available() -> bool {
    read_raw().is_some()
}

/// One raw clock reading (not clamped), or `None` without a usable clock.
pub fn read_raw() -> Option<Reading> {
    ops().clock_read()
}

/// System time in ns since the hypervisor booted; never less than a value returned before (0 without a
/// pvclock).
pub fn now() -> u64 {
    MONOTONIC.observe(read_raw().map_or(0, |r| r.ns))
}

/// The wall clock now: `(seconds, nanoseconds)` since the Unix epoch, or `None` if the platform does not
/// provide one (or it is being updated for too long).
pub fn wallclock() -> Option<(u64, u32)> {
    let (sec, ns) = ops().wallclock_base()?;
    let t = now();
    let total = u64::from(ns) + t % super::NS_PER_SEC;
    Some((
        sec + t / super::NS_PER_SEC + total / super::NS_PER_SEC,
        (total % super::NS_PER_SEC) as u32,
    ))
}

/// Wait with events masked until `cond()` holds (checked with events masked) or, if given, system time
/// `deadline` has passed. Between checks the vCPU blocks (`SCHEDOP_block`, which unmasks events
/// atomically; the upcall runs before it returns). Returns whether `cond` held. The event mask is the
/// caller's again afterwards. With a deadline, the one-shot timer is armed for it (replacing any other
/// `set_timer_op` deadline).
pub fn wait_until(mut cond: impl FnMut() -> bool, deadline: Option<u64>) -> Result<bool, Errno> {
    let p = ops();
    let enabled = p.irq_disable();
    let mut armed_at = None;
    let r = loop {
        if cond() {
            break Ok(true);
        }
        if let Some(d) = deadline {
            if now() >= d {
                break Ok(false);
            }
            if timer_port().is_none() {
                break Err(Errno::ENODEV);
            }
            // (Re-)arm if not armed yet or a timer event came (and went) without the deadline passing.
            let events = timer_events();
            if armed_at != Some(events) {
                if let Err(e) = p.set_timer(d) {
                    break Err(e);
                }
                armed_at = Some(events);
            }
        }
        if let Err(e) = p.block() {
            break Err(e);
        }
        p.irq_disable();
    };
    p.irq_restore(enabled);
    r
}

/// Sleep until system time `deadline` (ns).
pub fn sleep_until(deadline: u64) -> Result<(), Errno> {
    if !available() {
        return Err(Errno::ENOSYS);
    }
    wait_until(|| false, Some(deadline)).map(|_| ())
}

/// Sleep for `ns` nanoseconds.
pub fn sleep(ns: u64) -> Result<(), Errno> {
    sleep_until(now().saturating_add(ns))
}

/// Start the periodic tick: a timer event every `period_ns` (PV: `VCPUOP_set_periodic_timer`).
pub fn start_periodic(period_ns: u64) -> Result<(), Errno> {
    ops().set_periodic_timer(period_ns)
}

/// Stop the periodic tick.
pub fn stop_periodic() -> Result<(), Errno> {
    ops().stop_periodic_timer()
}
