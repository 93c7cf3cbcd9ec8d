//! Time and scheduling scenarios (issue 4): a measured 10 ms sleep and the vCPU timers (`sleep-10ms`),
//! pvclock monotonicity over 10⁶ reads (`clock-monotonic`), and three domains sharing the CPU by
//! weight (`sched-spin`, `sched-block`, `sched-compute`); segment bases across domain switches
//! (`segments-switch`).
//!
//! # The scheduling window
//!
//! The three scheduling scenarios measure over the same window of system time (the pvclock is the
//! hypervisor's, common to all domains): from `start_ms` (default 3000) to `start_ms + window_ms`
//! (default 2000) after the hypervisor booted. Each sleeps until the window opens, so booting domains
//! and waiting ones cost the others nothing, and counts what it does inside it. The spinner and the
//! computer run the same work unit, so their counts compare CPU shares directly.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::errno::Errno;
use abi::vcpu::VCPU_SSHOTTMR_FUTURE;

use crate::boot::platform;
use crate::cmdline::{option, parse_u64};
use crate::platform::xen_pv::XEN_PV;
use crate::println;
use crate::time::{self, NS_PER_MS, NS_PER_SEC, now, wait_until};
use crate::xtf::{Outcome, Results};

use super::memory::{check, expect};

fn require_clock(r: &mut Results) -> bool {
    let ok = time::available() && time::timer_port().is_some();
    if !ok {
        println!(
            "no pvclock ({}) or no VIRQ_TIMER port ({:?})",
            time::available(),
            time::timer_port()
        );
        r.report(Outcome::Failure);
    }
    ok
}

/// Sleep 10 ms, measured with the pvclock; then the single-shot and periodic vCPU timers.
pub fn sleep_10ms(_: &str, r: &mut Results) {
    if !require_clock(r) {
        return;
    }
    if let Some((sec, ns)) = time::wallclock() {
        println!("wall clock: {sec}.{ns:09} s since 1970");
    }
    for i in 1..=3 {
        let t0 = now();
        let res = time::sleep(10 * NS_PER_MS);
        let dt = now() - t0;
        expect(r, &alloc::format!("sleep {i}"), res, Ok(()));
        check(
            r,
            &alloc::format!(
                "sleep {i}: 10 ms requested, {}.{:03} ms measured (>= 10 ms, < 500 ms)",
                dt / NS_PER_MS,
                (dt % NS_PER_MS) / 1000
            ),
            (10 * NS_PER_MS..500 * NS_PER_MS).contains(&dt),
        );
    }

    // VCPUOP_set_singleshot_timer: the same VIRQ.
    let before = time::timer_events();
    let t0 = now();
    let set = XEN_PV.set_singleshot_timer(t0 + 5 * NS_PER_MS, 0);
    expect(r, "VCPUOP_set_singleshot_timer(now + 5 ms)", set, Ok(()));
    if set.is_ok() {
        let fired = wait_until(|| time::timer_events() > before, None);
        let dt = now() - t0;
        check(
            r,
            &alloc::format!("single-shot timer fired after {} us (>= 5 ms)", dt / 1000),
            matches!(fired, Ok(true)) && dt >= 5 * NS_PER_MS,
        );
    }
    expect(
        r,
        "VCPUOP_set_singleshot_timer in the past with VCPU_SSHOTTMR_future",
        XEN_PV.set_singleshot_timer(now() - NS_PER_MS, VCPU_SSHOTTMR_FUTURE),
        Err(Errno::ETIME),
    );
    expect(
        r,
        "VCPUOP_stop_singleshot_timer",
        XEN_PV.stop_singleshot_timer(),
        Ok(()),
    );

    // VCPUOP_set_periodic_timer: five ticks of 10 ms, counted by a tick hook.
    TICKS.store(0, Ordering::SeqCst);
    time::set_tick_hook(Some(tick));
    let t0 = now();
    let set = time::start_periodic(10 * NS_PER_MS);
    expect(r, "VCPUOP_set_periodic_timer(10 ms)", set, Ok(()));
    if set.is_ok() {
        let ticked = wait_until(|| TICKS.load(Ordering::SeqCst) >= 5, None);
        time::set_tick_hook(None);
        let dt = now() - t0;
        expect(
            r,
            "VCPUOP_stop_periodic_timer",
            time::stop_periodic(),
            Ok(()),
        );
        check(
            r,
            &alloc::format!(
                "five periodic ticks took {} ms (>= 40 ms, < 1000 ms)",
                dt / NS_PER_MS
            ),
            matches!(ticked, Ok(true)) && (40 * NS_PER_MS..NS_PER_SEC).contains(&dt),
        );
        let after_stop = time::timer_events();
        let _ = time::sleep(50 * NS_PER_MS);
        let extra = time::timer_events() - after_stop;
        check(
            r,
            &alloc::format!(
                "stopped: 50 ms later only the sleep's own timer event came ({extra} events)"
            ),
            extra <= 2,
        );
    }
}

static TICKS: AtomicU64 = AtomicU64::new(0);

fn tick(_: u64) {
    TICKS.fetch_add(1, Ordering::SeqCst);
}

/// 10⁶ pvclock reads (`reads=` to change) never go backwards while the hypervisor updates the record; the
/// kernel's clock never does at all.
pub fn clock_monotonic(cmdline: &str, r: &mut Results) {
    if !require_clock(r) {
        return;
    }
    let n = option(cmdline, "reads")
        .and_then(parse_u64)
        .unwrap_or(1_000_000);
    let Some(first) = time::read_raw() else {
        check(r, "a first pvclock read", false);
        return;
    };
    let (mut prev, mut version) = (first.ns, first.version);
    let (mut backwards, mut max_back, mut versions, mut retries) = (0u64, 0u64, 0u64, 0u64);
    let mut last_now = now();
    let mut now_backwards = 0u64;
    for i in 1..=n {
        let Some(rd) = time::read_raw() else {
            check(r, &alloc::format!("pvclock read {i}"), false);
            return;
        };
        if rd.ns < prev {
            backwards += 1;
            max_back = max_back.max(prev - rd.ns);
        }
        if rd.version != version {
            versions += 1;
            version = rd.version;
        }
        retries += u64::from(rd.retries);
        prev = rd.ns;
        if i % 16 == 0 {
            let t = now();
            if t < last_now {
                now_backwards += 1;
            }
            last_now = t;
        }
        if i % 100_000 == 0 {
            // Give the hypervisor occasions to update the record: block for a moment.
            let _ = time::sleep(NS_PER_MS);
        }
    }
    let span = prev.saturating_sub(first.ns);
    println!(
        "clock-monotonic: {n} reads over {} ms; {versions} record updates seen, {retries} retried reads",
        span / NS_PER_MS
    );
    check(
        r,
        &alloc::format!(
            "raw pvclock: {backwards} backward steps (largest {max_back} ns; tolerated up to 1000 ns of rounding)"
        ),
        max_back <= 1000,
    );
    check(
        r,
        &alloc::format!("the kernel clock never went backwards ({now_backwards} times)"),
        now_backwards == 0,
    );
    check(r, "the pvclock advanced", span > 0);
}

/// The common work unit of the spinner and the computer.
#[inline(never)]
fn work(mut x: u64) -> u64 {
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    core::hint::black_box(x)
}

/// `(start, end)` of the measuring window in system time.
fn window(cmdline: &str) -> (u64, u64) {
    let start = option(cmdline, "start_ms")
        .and_then(parse_u64)
        .unwrap_or(3000)
        * NS_PER_MS;
    let len = option(cmdline, "window_ms")
        .and_then(parse_u64)
        .unwrap_or(2000)
        * NS_PER_MS;
    (start, start + len)
}

/// Sleep until the window opens; false (and ERROR) if it already has.
fn await_window(name: &str, start: u64, r: &mut Results) -> bool {
    let t = now();
    if t >= start {
        println!(
            "{name}: started at {} ms, after the window opened at {} ms",
            t / NS_PER_MS,
            start / NS_PER_MS
        );
        r.report(Outcome::Error);
        return false;
    }
    if let Err(e) = time::sleep_until(start) {
        println!("{name}: cannot sleep until the window: {e}");
        r.report(Outcome::Failure);
        return false;
    }
    true
}

/// Run `work` until `end`; returns the iterations. Not inlined: the spinner and the computer must run
/// the very same machine code for their counts to compare CPU time (under TCG, two differently compiled
/// copies of this loop differ by about 10% in speed).
#[inline(never)]
fn count_work(end: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut n = 0;
    while now() < end {
        x = work(x);
        n += 1;
    }
    core::hint::black_box(x);
    n
}

fn report_count(r: &mut Results, name: &str, what: &str, n: u64, start: u64, end: u64) {
    println!("{name}: {what}={n} window_ms={}", (end - start) / NS_PER_MS);
    check(r, &alloc::format!("{name} made progress"), n > 0);
}

/// Spin with events masked through the window, counting work units.
pub fn sched_spin(cmdline: &str, r: &mut Results) {
    if !require_clock(r) {
        return;
    }
    let (start, end) = window(cmdline);
    if !await_window("sched-spin", start, r) {
        return;
    }
    let enabled = platform().irq_disable();
    let n = count_work(end);
    platform().irq_restore(enabled);
    report_count(r, "sched-spin", "iterations", n, start, end);
}

/// Compute with events enabled through the window, counting work units.
pub fn sched_compute(cmdline: &str, r: &mut Results) {
    if !require_clock(r) {
        return;
    }
    let (start, end) = window(cmdline);
    if !await_window("sched-compute", start, r) {
        return;
    }
    let n = count_work(end);
    report_count(r, "sched-compute", "iterations", n, start, end);
}

static LATE_NS: AtomicU64 = AtomicU64::new(0);

/// Sleep 10 ms at a time through the window, counting wake-ups (and how late they were).
pub fn sched_block(cmdline: &str, r: &mut Results) {
    if !require_clock(r) {
        return;
    }
    let (start, end) = window(cmdline);
    if !await_window("sched-block", start, r) {
        return;
    }
    let mut n = 0;
    let mut max_late = 0;
    while now() < end {
        let deadline = now() + 10 * NS_PER_MS;
        if let Err(e) = time::sleep_until(deadline) {
            check(r, &alloc::format!("sleep: {e}"), false);
            return;
        }
        let late = now().saturating_sub(deadline);
        max_late = max_late.max(late);
        LATE_NS.fetch_add(late, Ordering::Relaxed);
        n += 1;
    }
    println!(
        "sched-block: average lateness {} us, worst {} us",
        LATE_NS.load(Ordering::Relaxed) / n.max(1) / 1000,
        max_late / 1000
    );
    report_count(r, "sched-block", "wakeups", n, start, end);
}

/// The values `segments-switch` points its FS and GS bases at (one u64 each).
static SEG_MARKS: [u64; 4] = [
    0x5e65_0000_0000_0000,
    0x5e65_0000_0000_0001,
    0x5e65_0000_0000_0002,
    0x5e65_0000_0000_0003,
];

/// Run alongside another domain doing the same (`slot=` 0 or 1 tells them apart): `rounds=` times
/// (default 2000) set this vCPU's FS and user GS bases through `set_segment_base` (in a pattern that
/// makes them sometimes equal to the other domain's, sometimes not, and sometimes leaves them as they
/// were), yield, and read both through FS:0 and GS:0. The hypervisor writes only the segment state that
/// differs between the vCPUs on a switch; every read must still see this vCPU's own mark.
pub fn segments_switch(cmdline: &str, r: &mut Results) {
    use crate::arch::x86_64::trap_probes::{guest_read_fs, guest_read_gs};
    use abi::xen::{SEGBASE_FS, SEGBASE_GS_USER};
    let slot = option(cmdline, "slot").and_then(parse_u64).unwrap_or(0) as usize;
    let rounds = option(cmdline, "rounds")
        .and_then(parse_u64)
        .unwrap_or(2000);
    let base = |i: usize| &raw const SEG_MARKS[i % SEG_MARKS.len()] as u64;
    let (mut fs, mut gs) = (slot, slot + 2);
    let mut set = u64::from(XEN_PV.set_segment_base(SEGBASE_FS, base(fs)).is_ok())
        + u64::from(XEN_PV.set_segment_base(SEGBASE_GS_USER, base(gs)).is_ok());
    let mut wrong = 0u64;
    for i in 0..rounds as usize {
        // Change FS on two rounds of three, GS on one of two, each to one of the four marks.
        if i % 3 != 0 {
            fs = (i + slot) % SEG_MARKS.len();
            set += u64::from(XEN_PV.set_segment_base(SEGBASE_FS, base(fs)).is_ok());
        }
        if i % 2 == 0 {
            gs = (i / 2 + 3 * slot) % SEG_MARKS.len();
            set += u64::from(XEN_PV.set_segment_base(SEGBASE_GS_USER, base(gs)).is_ok());
        }
        let _ = platform().yield_cpu();
        // SAFETY: both bases point at this kernel's own statics (set just above or in an earlier round).
        let seen = unsafe { [guest_read_fs(0), guest_read_gs(0)] };
        if seen != [SEG_MARKS[fs], SEG_MARKS[gs]] {
            if wrong == 0 {
                println!(
                    "round {i}: FS:0 {:#x} GS:0 {:#x}, expected {:#x} {:#x}",
                    seen[0], seen[1], SEG_MARKS[fs], SEG_MARKS[gs]
                );
            }
            wrong += 1;
        }
    }
    let _ = XEN_PV.set_segment_base(SEGBASE_FS, 0);
    let _ = XEN_PV.set_segment_base(SEGBASE_GS_USER, 0);
    println!("segments-switch: {rounds} rounds, {set} bases set, {wrong} wrong reads");
    check(
        r,
        &alloc::format!("FS and GS kept this vCPU's bases across {rounds} yields ({wrong} wrong)"),
        wrong == 0,
    );
}
