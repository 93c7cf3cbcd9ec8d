//! The measuring loop: for each operation, a few unmeasured warm-up runs, then `n` samples, each one
//! operation (or one batch) between serialized TSC reads with events masked; the empty pair's median cost
//! is subtracted, batches are divided into per-operation figures, and one `BENCH` line is printed.

use alloc::vec::Vec;
use core::fmt::Write;

use abi::bench::{self, Stats};
use abi::hypercall::nr;
use abi::sched::SCHEDOP_YIELD;

use super::{OPERATIONS, Options, WARMUP};
use crate::arch::timing::{tsc_end, tsc_start};
use crate::boot::platform;
use crate::platform::xen_pv::raw;
use crate::println;

/// The state of one benchmark run.
pub struct Bench<'a> {
    /// Options from the command line.
    pub opts: &'a Options<'a>,
    samples: Vec<u64>,
    /// Median ticks of an empty `tsc_start`/`tsc_end` pair, subtracted from every sample.
    overhead: u64,
    /// Operations measured and reported.
    reported: usize,
    /// Operations that failed (each printed with its reason).
    failed: usize,
}

impl<'a> Bench<'a> {
    fn new(opts: &'a Options<'a>) -> Bench<'a> {
        let mut b = Bench {
            opts,
            samples: alloc::vec![0; opts.iterations],
            overhead: 0,
            reported: 0,
            failed: 0,
        };
        // The empty pair: nothing between the two reads (its op cannot fail).
        let _ = b.sample(opts.iterations, false, || 0);
        b.overhead = bench::summarize(&mut b.samples).map_or(0, |s| s.median);
        b
    }

    /// True if operation `name` is selected by the filter.
    pub fn selected(&self, name: &str) -> bool {
        self.opts.selected(name)
    }

    /// Take `n` samples of `op` into the sample buffer, events masked (or enabled, if `events`). `op`
    /// returns a hypercall-style result; the first negative one is returned as the error (the loop still
    /// completes).
    fn sample(&mut self, n: usize, events: bool, mut op: impl FnMut() -> i64) -> Result<(), i64> {
        let enabled = platform().irq_disable();
        if events {
            platform().irq_restore(true);
        }
        let mut first_err = 0;
        for s in &mut self.samples[..n] {
            let t0 = tsc_start();
            let r = op();
            let t1 = tsc_end();
            *s = t1.wrapping_sub(t0);
            if r < 0 && first_err == 0 {
                first_err = r;
            }
        }
        if events {
            platform().irq_disable();
        }
        platform().irq_restore(enabled);
        if first_err < 0 {
            Err(first_err)
        } else {
            Ok(())
        }
    }

    /// Measure `name`: [`WARMUP`] unmeasured runs, then `n` samples of `op`, each covering `per`
    /// operations (a batch), reported per operation. `op` returns 0 or a positive value on success and a
    /// negative errno on failure.
    pub fn measure(&mut self, name: &str, n: usize, per: u64, op: impl FnMut() -> i64) {
        if let Some((n, stats)) = self.collect(name, n, per, op) {
            self.report(name, n, &stats);
        }
    }

    /// [`Bench::collect`] with events enabled during the measured loop (for an operation that needs an
    /// upcall: `evtchn_send_self`).
    pub fn collect_events(
        &mut self,
        name: &str,
        n: usize,
        op: impl FnMut() -> i64,
    ) -> Option<(u64, Stats)> {
        self.collect_with(name, n, 1, true, op)
    }

    /// Measure `name` from samples taken elsewhere (the ring-3 program times itself): `take(buf)` runs
    /// its own warm-up, fills `buf` with raw ticks per operation and returns the empty-region overhead
    /// to subtract (from the same context), or why it failed.
    pub fn measure_external(
        &mut self,
        name: &str,
        n: usize,
        take: impl FnOnce(&mut [u64]) -> Result<u64, alloc::string::String>,
    ) {
        if !self.selected(name) {
            return;
        }
        let n = n.clamp(1, self.samples.len());
        match take(&mut self.samples[..n]) {
            Ok(overhead) => {
                let samples = &mut self.samples[..n];
                bench::subtract_overhead(samples, overhead);
                let stats = bench::summarize(samples).unwrap_or_default();
                self.report(name, n as u64, &stats);
            }
            Err(why) => self.fail(name, format_args!("{why}")),
        }
    }

    /// [`Bench::measure`] without printing the result: returns the iterations and statistics, or `None`
    /// if the operation is not selected or failed (the failure is printed).
    pub fn collect(
        &mut self,
        name: &str,
        n: usize,
        per: u64,
        op: impl FnMut() -> i64,
    ) -> Option<(u64, Stats)> {
        self.collect_with(name, n, per, false, op)
    }

    fn collect_with(
        &mut self,
        name: &str,
        n: usize,
        per: u64,
        events: bool,
        mut op: impl FnMut() -> i64,
    ) -> Option<(u64, Stats)> {
        if !self.selected(name) {
            return None;
        }
        for _ in 0..WARMUP {
            let r = op();
            if r < 0 {
                self.fail(
                    name,
                    format_args!("a warm-up run returned {}", errno_name(r)),
                );
                return None;
            }
        }
        let n = n.clamp(1, self.samples.len());
        if let Err(r) = self.sample(n, events, &mut op) {
            self.fail(name, format_args!("returned {}", errno_name(r)));
            return None;
        }
        let samples = &mut self.samples[..n];
        bench::subtract_overhead(samples, self.overhead);
        bench::per_operation(samples, per);
        Some((n as u64, bench::summarize(samples).unwrap_or_default()))
    }

    /// Print the result line of `name`.
    pub fn report(&mut self, name: &str, n: u64, stats: &Stats) {
        let mut line: heapless::String<160> = heapless::String::new();
        let _ = bench::write_line(&mut line, name, n, stats);
        println!("{line}");
        self.reported += 1;
    }

    /// Record that `name` could not be measured, and why (printed as `BENCH error name=NAME: why`, which
    /// the result-line parser does not take for a result).
    pub fn fail(&mut self, name: &str, why: core::fmt::Arguments<'_>) {
        if !self.selected(name) {
            return;
        }
        let mut line: heapless::String<160> = heapless::String::new();
        let _ = write!(line, "{}error name={name}: {why}", bench::LINE_PREFIX);
        println!("{line}");
        self.failed += 1;
    }
}

/// What an operation uses as its result when the failure was not a hypercall's (and was reported where
/// it happened, e.g. by the memory manager).
pub const FAILED_ELSEWHERE: i64 = i64::MIN;

/// The name of a negative hypercall result.
pub fn errno_name(r: i64) -> &'static str {
    abi::errno::Errno::from_ret(r).map_or("a failure (reported above)", |e| e.name())
}

/// `bench`: measure every selected operation; returns the exit code.
pub fn run(opts: &Options<'_>) -> u32 {
    let selected = OPERATIONS.iter().filter(|n| opts.selected(n)).count();
    // The interdomain ping-pong's port is offered before domain 1 boots, so that it finds it at once.
    let offer = super::traps_events::offer_pingpong(opts);
    // Give the CPU away once before measuring anything: the partner domain (if any) boots the first time
    // this domain yields or is preempted, and its boot must not land inside a measured sample.
    let _ = raw(nr::SCHED_OP, [SCHEDOP_YIELD, 0, 0, 0, 0]);
    let mut b = Bench::new(opts);
    if !opts.quiet {
        println!(
            "bench: {} iterations per operation ({} for console_write_16), {selected} of {} operations selected{}; \
         empty TSC pair {} ticks (median, subtracted)",
            opts.iterations,
            opts.console_iterations(),
            OPERATIONS.len(),
            opts.filter
                .map(|f| alloc::format!(" by filter '{f}'"))
                .unwrap_or_default(),
            b.overhead
        );
    }
    super::ops::run_all(&mut b, offer);
    if !opts.quiet {
        println!("{}done", bench::LINE_PREFIX);
    }
    if b.failed > 0 {
        println!(
            "bench: {} operation(s) failed, {} measured",
            b.failed, b.reported
        );
        1
    } else {
        0
    }
}
