//! The benchmark mode of the guest kernel (issue 6): command line `bench [iterations=N] [filter=SUBSTRING]`
//! measures each operation `N` times and prints one result line per operation in the `abi::bench` format,
//! then `BENCH done`; `bench-partner [iterations=N]` is the second domain the `yield_domain_switch`
//! operation switches to. `cargo xtask bench` boots both and collects the lines.
//!
//! | module | what |
//! |---|---|
//! | this file | options, operation names, bounds (pure, host-tested) |
//! | `runner` | (bare metal) the measuring loop: events masked, serialized TSC reads, overhead subtracted |
//! | `ops` | (bare metal) every operation and its setup/teardown |
//! | `traps_events` | (bare metal) the event, timer, page-fault and ring-3 system-call operations |
//! | `partner` | (bare metal) the partner domain: the ping-pong's echo, then the yield loop |
//!
//! Every number is in TSC ticks per operation after subtracting the median cost of an empty
//! `tsc_start`/`tsc_end` pair (`crate::arch::timing`); under QEMU's `-icount shift=0` a tick is one
//! executed instruction (guest and hypervisor together).

#[cfg(feature = "baremetal")]
mod ops;
#[cfg(feature = "baremetal")]
mod partner;
#[cfg(feature = "baremetal")]
pub mod runner;
#[cfg(feature = "baremetal")]
mod traps_events;

/// Iterations per operation unless `iterations=` says otherwise.
pub const DEFAULT_ITERATIONS: usize = 1000;
/// Most iterations per operation (the sample buffer is taken from the 512 KiB kernel heap).
pub const MAX_ITERATIONS: usize = 16384;
/// Unmeasured runs of each operation before its measured loop (first-use paths, the partner's boot).
pub const WARMUP: usize = 8;
/// Most measured iterations of `console_write_16`: each call prints 16 bytes, and the console output
/// must stay bounded (200 calls are 20 full 160-character console lines).
pub const CONSOLE_MAX_ITERATIONS: usize = 200;
/// Extra yields of the partner beyond twice the measuring domain's, so it never runs out first (a timer
/// preemption of the measuring domain also runs the partner, which then spends a yield).
pub const PARTNER_SLACK: usize = 256;

/// The operations this kernel measures, in the order it runs them (stable snake_case names, issue 6;
/// the list lives in `uapi` so that the shell's `bench` can name them). `floor_ring0_int_iret` is
/// measured by the hypervisor itself (`bench=floor` on its command line).
pub const OPERATIONS: &[&str] = uapi::BENCH_OPERATIONS;

/// The bench options of a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    /// Measured iterations per operation (1..=[`MAX_ITERATIONS`]).
    pub iterations: usize,
    /// Only operations whose name contains this.
    pub filter: Option<&'a str>,
    /// No partner domain runs (the suite started from a process by the `bench` system call): skip the
    /// operations that need one.
    pub solo: bool,
    /// Print only the result lines (the `bench` system call with `BENCH_QUIET`).
    pub quiet: bool,
}

/// The operations that need the `bench-partner` domain.
pub const PARTNER_OPERATIONS: [&str; 2] = uapi::BENCH_PARTNER_OPERATIONS;

impl Options<'_> {
    /// True if operation `name` is selected by the filter.
    pub fn selected(&self, name: &str) -> bool {
        self.filter.is_none_or(|f| name.contains(f))
            && !(self.solo && PARTNER_OPERATIONS.contains(&name))
    }

    /// Measured iterations of `console_write_16` (bounded console output).
    pub fn console_iterations(&self) -> usize {
        self.iterations.min(CONSOLE_MAX_ITERATIONS)
    }

    /// How many times the partner domain yields: twice the measuring domain's warm-up and measured
    /// yields, plus [`PARTNER_SLACK`]. Yields left over after the measuring domain has finished return at
    /// once (nobody else is runnable), so the surplus costs little.
    pub fn partner_yields(&self) -> usize {
        2 * (WARMUP + self.iterations) + PARTNER_SLACK
    }
}

/// Parse `iterations=N` and `filter=SUBSTRING` from a command line (other words are ignored).
pub fn parse_options(cmdline: &str) -> Result<Options<'_>, &'static str> {
    let iterations = match crate::cmdline::option(cmdline, "iterations") {
        None => DEFAULT_ITERATIONS,
        Some(v) => match crate::cmdline::parse_u64(v) {
            Some(n) if n >= 1 && n <= MAX_ITERATIONS as u64 => n as usize,
            _ => return Err("iterations= must be a number from 1 to 16384"),
        },
    };
    let filter = crate::cmdline::option(cmdline, "filter").filter(|f| !f.is_empty());
    Ok(Options {
        iterations,
        filter,
        solo: false,
        quiet: false,
    })
}

/// Run the benchmark role the command line chose; returns the exit code (0: every selected operation was
/// measured).
#[cfg(feature = "baremetal")]
pub fn run(role: crate::cmdline::BenchRole, cmdline: &str) -> u32 {
    let opts = match parse_options(cmdline) {
        Ok(o) => o,
        Err(e) => {
            crate::println!("bench: {e}");
            return 2;
        }
    };
    match role {
        crate::cmdline::BenchRole::Measure => runner::run(&opts),
        crate::cmdline::BenchRole::Partner => partner::run(&opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse_options("bench").unwrap();
        assert_eq!(
            o,
            Options {
                iterations: DEFAULT_ITERATIONS,
                filter: None,
                solo: false,
                quiet: false,
            }
        );
        assert!(o.selected("null_hypercall"));
        assert_eq!(o.console_iterations(), CONSOLE_MAX_ITERATIONS);
        let o = parse_options("bench iterations=20 filter=mmu").unwrap();
        assert_eq!(o.iterations, 20);
        assert!(o.selected("mmu_update_single") && !o.selected("null_hypercall"));
        assert_eq!(o.console_iterations(), 20);
        assert_eq!(o.partner_yields(), 2 * (20 + WARMUP) + PARTNER_SLACK);
        assert_eq!(parse_options("bench filter=").unwrap().filter, None);
        assert_eq!(
            parse_options("bench iterations=0x10").unwrap().iterations,
            16
        );
        for bad in ["iterations=0", "iterations=16385", "iterations=x"] {
            assert!(parse_options(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_stable_snake_case_and_unique() {
        for (i, n) in OPERATIONS.iter().enumerate() {
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{n}"
            );
            assert!(!OPERATIONS[..i].contains(n), "{n} twice");
        }
    }
}
