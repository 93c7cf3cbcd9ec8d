//! `osbench`'s pure parts: the workload list, argument parsing and filtering, and the result line — the
//! `abi::bench` format (`BENCH name=... iterations=... min=... median=... p90=... p99=... max=...`, ticks
//! per operation) followed by what the hypervisor counted during the workload:
//! `hv=1 ops=N hypercalls=H exceptions=E syscalls=S upcalls=U` — totals over the `ops` operations
//! measured (`hv=0` and zeros natively). `cargo xtask compare` parses both.
#![forbid(unsafe_code)]

use core::fmt::{self, Write};

use uapi::HvCounters;
use uapi::bench::{Stats, write_line};

/// One workload: its stable name (the `name=` of its line) and what it measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    pub name: &'static str,
    pub what: &'static str,
}

/// Every workload, in the order they run (and `cargo xtask compare` prints them).
pub const WORKLOADS: [Workload; 11] = [
    Workload {
        name: "null_syscall_int80",
        what: "getpid through the int 0x80 gate",
    },
    Workload {
        name: "null_syscall_syscall",
        what: "getpid through the syscall instruction",
    },
    Workload {
        name: "write_1b",
        what: "console write of 1 byte",
    },
    Workload {
        name: "write_1k",
        what: "console write of 1 KiB",
    },
    Workload {
        name: "spawn_exit_wait",
        what: "spawn this program, it exits, wait for it",
    },
    Workload {
        name: "spawn_image",
        what: "spawn a second program image (exitcode), wait",
    },
    Workload {
        name: "ctxsw_pingpong",
        what: "context switch: notify/await_notify ping-pong, per switch",
    },
    Workload {
        name: "page_fault_zero",
        what: "demand-zero page fault, per page",
    },
    Workload {
        name: "prot_fault",
        what: "write to a read-only page, handled in ring 3 and resumed",
    },
    Workload {
        name: "mmap_unmap_64",
        what: "mmap 64 pages, touch each, munmap",
    },
    Workload {
        name: "compute_loop",
        what: "1000 rounds of integer arithmetic (no kernel)",
    },
];

/// Iterations when none are given.
pub const DEFAULT_ITERATIONS: u64 = 100;
/// Most iterations (one sample each, kept on the stack).
pub const MAX_ITERATIONS: u64 = 1000;
/// Most filter words.
pub const MAX_FILTERS: usize = 8;

/// What the command line asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    pub iterations: u64,
    /// Substrings; a workload runs if its name contains one of them (none: all).
    pub filters: [&'a str; MAX_FILTERS],
    pub nfilters: usize,
}

impl<'a> Options<'a> {
    /// The filter words.
    pub fn filters(&self) -> &[&'a str] {
        &self.filters[..self.nfilters]
    }

    /// Does workload `name` run?
    pub fn selected(&self, name: &str) -> bool {
        self.nfilters == 0 || self.filters().iter().any(|f| name.contains(f))
    }
}

/// Why the arguments were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgError {
    /// Iterations of 0 or above [`MAX_ITERATIONS`].
    Iterations,
    /// More than [`MAX_FILTERS`] words.
    TooManyFilters,
    /// A filter that matches no workload.
    NoMatch,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Iterations => write!(f, "iterations must be 1..={MAX_ITERATIONS}"),
            ArgError::TooManyFilters => write!(f, "at most {MAX_FILTERS} filter words"),
            ArgError::NoMatch => f.write_str("the filter matches no workload"),
        }
    }
}

/// `[ITERATIONS] [FILTER...]`: the first word is the iteration count if it is a number.
pub fn parse_args(args: &str) -> Result<Options<'_>, ArgError> {
    let mut o = Options {
        iterations: DEFAULT_ITERATIONS,
        filters: [""; MAX_FILTERS],
        nfilters: 0,
    };
    let mut words = args.split_ascii_whitespace().peekable();
    if let Some(n) = words.peek().and_then(|w| crate::num::parse_u64(w)) {
        words.next();
        if n == 0 || n > MAX_ITERATIONS {
            return Err(ArgError::Iterations);
        }
        o.iterations = n;
    }
    for w in words {
        if o.nfilters == MAX_FILTERS {
            return Err(ArgError::TooManyFilters);
        }
        o.filters[o.nfilters] = w;
        o.nfilters += 1;
    }
    if !WORKLOADS.iter().any(|w| o.selected(w.name)) {
        return Err(ArgError::NoMatch);
    }
    Ok(o)
}

/// Write one result line (no newline): the `abi::bench` line, then the hypervisor's counts `hv` over
/// `ops` operations.
pub fn write_result(
    w: &mut impl Write,
    name: &str,
    iterations: u64,
    stats: &Stats,
    ops: u64,
    hv: &HvCounters,
) -> fmt::Result {
    write_line(w, name, iterations, stats)?;
    write!(
        w,
        " hv={} ops={ops} hypercalls={} exceptions={} syscalls={} upcalls={}",
        hv.virtualised, hv.hypercalls, hv.exceptions, hv.syscalls, hv.upcalls
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StrBuf;

    #[test]
    fn arguments() {
        let o = parse_args("").unwrap();
        assert_eq!((o.iterations, o.filters()), (DEFAULT_ITERATIONS, &[][..]));
        assert!(WORKLOADS.iter().all(|w| o.selected(w.name)));
        let o = parse_args("  5 null  fault ").unwrap();
        assert_eq!((o.iterations, o.filters()), (5, &["null", "fault"][..]));
        assert!(o.selected("null_syscall_int80") && o.selected("prot_fault"));
        assert!(!o.selected("compute_loop"));
        let o = parse_args("spawn").unwrap();
        assert_eq!(o.iterations, DEFAULT_ITERATIONS);
        assert!(o.selected("spawn_image") && !o.selected("write_1b"));
        assert_eq!(parse_args("0"), Err(ArgError::Iterations));
        assert_eq!(parse_args("1001"), Err(ArgError::Iterations));
        assert_eq!(parse_args("99999999999999999999"), Err(ArgError::NoMatch));
        assert_eq!(parse_args("3 nothing-like-this"), Err(ArgError::NoMatch));
        assert_eq!(
            parse_args("1 a b c d e f g h i"),
            Err(ArgError::TooManyFilters)
        );
        assert_eq!(parse_args("1000").unwrap().iterations, 1000);
    }

    #[test]
    fn names_are_unique_snake_case() {
        for (i, w) in WORKLOADS.iter().enumerate() {
            assert!(
                w.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
            assert!(WORKLOADS[i + 1..].iter().all(|o| o.name != w.name));
        }
    }

    #[test]
    fn result_line_parses_as_a_bench_line() {
        let mut s = StrBuf::<320>::new();
        let stats = Stats {
            min: 1,
            median: 2,
            p90: 3,
            p99: 4,
            max: 5,
        };
        let hv = HvCounters {
            virtualised: 1,
            hypercalls: 10,
            exceptions: 20,
            syscalls: 30,
            upcalls: 2,
            ..HvCounters::default()
        };
        write_result(&mut s, "prot_fault", 7, &stats, 7, &hv).unwrap();
        assert_eq!(
            s.as_str(),
            "BENCH name=prot_fault iterations=7 min=1 median=2 p90=3 p99=4 max=5 unit=ticks/op hv=1 \
             ops=7 hypercalls=10 exceptions=20 syscalls=30 upcalls=2"
        );
        let l = uapi::bench::parse_line(s.as_str()).unwrap();
        assert_eq!((l.name, l.iterations, l.stats), ("prot_fault", 7, stats));
    }
}
