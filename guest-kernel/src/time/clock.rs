//! The kernel's clock and timers on the Xen PV platform.

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use abi::errno::Errno;
use abi::event_channel::{EvtchnPort, VIRQ_TIMER};
use abi::xen::VcpuTimeInfo;

use super::pvclock::{self, Monotonic, PvclockSource, Reading};
use crate::arch::x86_64::tsc::rdtsc_ordered;
use crate::boot::platform;
use crate::platform::xen_pv::XEN_PV;

/// vCPU 0's pvclock record in shared_info.
struct SharedClock(*const VcpuTimeInfo);

impl PvclockSource for SharedClock {
    fn version(&self) -> u32 {
        // SAFETY: the record is in the shared-info page, mapped for the domain's lifetime.
        unsafe { (&raw const (*self.0).version).read_volatile() }
    }
    fn fields(&self) -> VcpuTimeInfo {
        // SAFETY: as above; a torn read is detected by the version check around it.
        unsafe { self.0.read_volatile() }
    }
    fn tsc(&self) -> u64 {
        rdtsc_ordered()
    }
}

fn source() -> Option<SharedClock> {
    let p = XEN_PV.vcpu_time();
    (!p.is_null()).then_some(SharedClock(p))
}

static MONOTONIC: Monotonic = Monotonic::new();
/// The VIRQ_TIMER port (0: not bound).
static TIMER_PORT: AtomicU32 = AtomicU32::new(0);
/// Timer events received.
static TIMER_EVENTS: AtomicU64 = AtomicU64::new(0);

/// An optional function run on every timer event (the periodic tick of a guest scheduler).
static TICK_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

fn timer_event(_port: EvtchnPort) {
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

/// Bind VIRQ_TIMER to a port whose handler counts timer events. Returns the port.
pub fn init() -> Result<EvtchnPort, Errno> {
    let port = crate::event::bind_virq(VIRQ_TIMER, Some(timer_event))?;
    TIMER_PORT.store(port, Ordering::Release);
    Ok(port)
}

/// The VIRQ_TIMER port, if bound.
pub fn timer_port() -> Option<EvtchnPort> {
    match TIMER_PORT.load(Ordering::Acquire) {
        0 => None,
        p => Some(p),
    }
}

/// Timer events (one-shot or periodic) received so far.
pub fn timer_events() -> u64 {
    TIMER_EVENTS.load(Ordering::Acquire)
}

/// True if the hypervisor maintains a pvclock for this vCPU.
pub fn available() -> bool {
    source().is_some_and(|s| pvclock::present(&s.fields()))
}

/// One raw pvclock reading (not clamped), or `None` without a usable pvclock.
pub fn read_raw() -> Option<Reading> {
    let s = source()?;
    if !pvclock::present(&s.fields()) {
        return None;
    }
    pvclock::read(&s)
}

/// System time in ns since the hypervisor booted; never less than a value returned before (0 without a
/// pvclock).
pub fn now() -> u64 {
    MONOTONIC.observe(read_raw().map_or(0, |r| r.ns))
}

/// The wall clock now: `(seconds, nanoseconds)` since the Unix epoch, or `None` if the hypervisor does not
/// provide one (or it is being updated for too long).
pub fn wallclock() -> Option<(u64, u32)> {
    for _ in 0..1000 {
        let (v1, sec, ns) = XEN_PV.wallclock_raw()?;
        let (v2, _, _) = XEN_PV.wallclock_raw()?;
        if v1 == v2 && v1 & 1 == 0 {
            if v1 == 0 && sec == 0 {
                return None;
            }
            let t = now();
            let total = u64::from(ns) + t % super::NS_PER_SEC;
            return Some((
                sec + t / super::NS_PER_SEC + total / super::NS_PER_SEC,
                (total % super::NS_PER_SEC) as u32,
            ));
        }
    }
    None
}

/// Wait with events masked until `cond()` holds (checked with events masked) or, if given, system time
/// `deadline` has passed. Between checks the vCPU blocks (`SCHEDOP_block`, which unmasks events
/// atomically; the upcall runs before it returns). Returns whether `cond` held. The event mask is the
/// caller's again afterwards. With a deadline, the one-shot timer is armed for it (replacing any other
/// `set_timer_op` deadline).
pub fn wait_until(mut cond: impl FnMut() -> bool, deadline: Option<u64>) -> Result<bool, Errno> {
    let p = platform();
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

/// Start the periodic tick: VIRQ_TIMER every `period_ns` (`VCPUOP_set_periodic_timer`).
pub fn start_periodic(period_ns: u64) -> Result<(), Errno> {
    XEN_PV.set_periodic_timer(period_ns)
}

/// Stop the periodic tick.
pub fn stop_periodic() -> Result<(), Errno> {
    XEN_PV.stop_periodic_timer()
}
