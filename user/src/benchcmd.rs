//! The shell's `bench` command (pure part): `bench [ITERATIONS] [FILTER]` — the first word is the
//! iteration count if it is a number, so `bench null` filters — and which of the kernel's operations run,
//! which are skipped and why. The program runs them one system call each, so Ctrl-C stops it between two.
#![forbid(unsafe_code)]

use core::fmt;

use uapi::{BENCH_OPERATIONS, BENCH_PARTNER_OPERATIONS};

/// Iterations when none are given.
pub const DEFAULT_ITERATIONS: u64 = 100;
/// Most iterations (the kernel's sample buffer).
pub const MAX_ITERATIONS: u64 = 16384;

/// What `bench` was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub iterations: u64,
    pub filter: Option<&'a str>,
}

/// Why the arguments were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchError<'a> {
    Usage,
    Iterations,
    NoMatch(&'a str),
}

impl fmt::Display for BenchError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage => f.write_str("usage: bench [ITERATIONS] [FILTER]"),
            BenchError::Iterations => {
                write!(f, "bench: iterations must be 1..={MAX_ITERATIONS}")
            }
            BenchError::NoMatch(w) => write!(
                f,
                "bench: no operation name contains '{w}' (operations: {})",
                List(BENCH_OPERATIONS)
            ),
        }
    }
}

/// Names separated by `, `.
pub struct List<'a>(pub &'a [&'a str]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

/// Parse the arguments.
pub fn parse(args: &str) -> Result<Request<'_>, BenchError<'_>> {
    let mut words = args.split_ascii_whitespace().peekable();
    let mut iterations = DEFAULT_ITERATIONS;
    if let Some(n) = words.peek().and_then(|w| crate::num::parse_u64(w)) {
        words.next();
        if n == 0 || n > MAX_ITERATIONS {
            return Err(BenchError::Iterations);
        }
        iterations = n;
    }
    let filter = words.next();
    if words.next().is_some() {
        return Err(BenchError::Usage);
    }
    if let Some(f) = filter
        && !BENCH_OPERATIONS.iter().any(|o| o.contains(f))
    {
        return Err(BenchError::NoMatch(f));
    }
    Ok(Request { iterations, filter })
}

impl Request<'_> {
    /// The selected operations, in suite order.
    pub fn selected(&self) -> impl Iterator<Item = &'static str> + '_ {
        BENCH_OPERATIONS
            .iter()
            .copied()
            .filter(|o| self.filter.is_none_or(|f| o.contains(f)))
    }

    /// The selected operations that run from the shell.
    pub fn runnable(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.selected()
            .filter(|o| !BENCH_PARTNER_OPERATIONS.contains(o))
    }

    /// The selected operations skipped: they need the partner domain.
    pub fn skipped(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.selected()
            .filter(|o| BENCH_PARTNER_OPERATIONS.contains(o))
    }
}

/// Why [`Request::skipped`] operations do not run from the shell.
pub const SKIP_REASON: &str =
    "they need the bench-partner domain, which `cargo xtask bench` boots beside this one";

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    #[test]
    fn the_first_word_is_a_count_only_if_it_is_a_number() {
        assert_eq!(
            parse("").unwrap(),
            Request {
                iterations: DEFAULT_ITERATIONS,
                filter: None
            }
        );
        let r = parse("null").unwrap();
        assert_eq!((r.iterations, r.filter), (DEFAULT_ITERATIONS, Some("null")));
        assert_eq!(r.selected().collect::<Vec<_>>(), ["null_hypercall"]);
        let r = parse("20 mmu").unwrap();
        assert_eq!(r.iterations, 20);
        assert_eq!(r.runnable().count(), 2);
        assert_eq!(parse("0"), Err(BenchError::Iterations));
        assert_eq!(parse("16385"), Err(BenchError::Iterations));
        assert_eq!(parse("1 a b"), Err(BenchError::Usage));
        assert_eq!(parse("zzz"), Err(BenchError::NoMatch("zzz")));
        assert!(
            BenchError::NoMatch("zzz")
                .to_string()
                .contains("null_hypercall, xen_version")
        );
    }

    #[test]
    fn partner_operations_are_skipped_and_named() {
        let all = parse("").unwrap();
        assert_eq!(
            all.skipped().collect::<Vec<_>>(),
            ["evtchn_pingpong_interdomain", "yield_domain_switch"]
        );
        assert_eq!(all.runnable().count() + 2, BENCH_OPERATIONS.len());
        assert_eq!(parse("yield").unwrap().runnable().count(), 0);
        assert_eq!(parse("null").unwrap().skipped().count(), 0);
        assert_eq!(List(&["a", "b"]).to_string(), "a, b");
    }
}
