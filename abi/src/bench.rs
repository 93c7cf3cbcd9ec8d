//! The benchmark result protocol: how the guest kernel (and the hypervisor, for its own floor) report a
//! measured operation on the console, and the statistics behind each line. `cargo xtask bench` parses these
//! lines; keeping format and statistics here means one definition for all three programs.
//!
//! A result line looks like
//! `BENCH name=null_hypercall iterations=1000 min=41 median=41 p90=41 p99=41 max=77 unit=ticks/op`
//! where every number is in TSC ticks per operation after subtracting the measurement's own overhead (under
//! QEMU's `-icount shift=0`, one tick is one executed instruction).

/// Percentile summary of a set of samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Smallest sample.
    pub min: u64,
    /// Median (lower median for an even count).
    pub median: u64,
    /// 90th percentile (nearest rank).
    pub p90: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Largest sample.
    pub max: u64,
}

/// Sort `samples` in place and summarize them; `None` for no samples.
pub fn summarize(samples: &mut [u64]) -> Option<Stats> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = |p: usize| {
        // Nearest-rank percentile: the smallest sample with at least p% of the samples at or below it.
        let n = samples.len();
        let k = (p * n).div_ceil(100).clamp(1, n);
        samples[k - 1]
    };
    Some(Stats {
        min: samples[0],
        median: samples[(samples.len() - 1) / 2],
        p90: rank(90),
        p99: rank(99),
        max: samples[samples.len() - 1],
    })
}

/// Subtract the measurement overhead from every sample (never below zero).
pub fn subtract_overhead(samples: &mut [u64], overhead: u64) {
    for s in samples {
        *s = s.saturating_sub(overhead);
    }
}

/// Divide every sample by `per` (a batch measured as one sample, reported per operation).
pub fn per_operation(samples: &mut [u64], per: u64) {
    if per > 1 {
        for s in samples {
            *s /= per;
        }
    }
}

/// The unit every result line states (`unit=`): TSC ticks per operation, which under QEMU's
/// `-icount shift=0` are executed instructions.
pub const UNIT: &str = "ticks/op";

/// The marker that starts a result line.
pub const LINE_PREFIX: &str = "BENCH ";

/// Write a result line (without newline) to `w`.
pub fn write_line(
    w: &mut impl core::fmt::Write,
    name: &str,
    iterations: u64,
    s: &Stats,
) -> core::fmt::Result {
    write!(
        w,
        "{LINE_PREFIX}name={name} iterations={iterations} min={} median={} p90={} p99={} max={} unit={UNIT}",
        s.min, s.median, s.p90, s.p99, s.max
    )
}

/// A parsed result line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// Operation name (stable snake_case).
    pub name: &'a str,
    /// Iterations measured.
    pub iterations: u64,
    /// Statistics.
    pub stats: Stats,
}

/// Parse a result line; the text may carry a prefix before [`LINE_PREFIX`] (e.g. `(d0) `).
pub fn parse_line(line: &str) -> Option<Line<'_>> {
    let rest = &line[line.find(LINE_PREFIX)? + LINE_PREFIX.len()..];
    let mut name = None;
    let mut vals = [None::<u64>; 6];
    for word in rest.split_whitespace() {
        let (k, v) = word.split_once('=')?;
        let slot = match k {
            "name" => {
                name = Some(v);
                continue;
            }
            "iterations" => 0,
            "min" => 1,
            "median" => 2,
            "p90" => 3,
            "p99" => 4,
            "max" => 5,
            _ => continue,
        };
        vals[slot] = Some(v.parse().ok()?);
    }
    let [it, min, median, p90, p99, max] = vals;
    Some(Line {
        name: name.filter(|n| !n.is_empty())?,
        iterations: it?,
        stats: Stats {
            min: min?,
            median: median?,
            p90: p90?,
            p99: p99?,
            max: max?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: [u64; 100] = core::array::from_fn(|i| 100 - i as u64);
        let s = summarize(&mut v).unwrap();
        assert_eq!(
            s,
            Stats {
                min: 1,
                median: 50,
                p90: 90,
                p99: 99,
                max: 100
            }
        );
        assert_eq!(summarize(&mut []), None);
        let mut one = [7];
        assert_eq!(
            summarize(&mut one).unwrap(),
            Stats {
                min: 7,
                median: 7,
                p90: 7,
                p99: 7,
                max: 7
            }
        );
        let mut two = [9, 3];
        assert_eq!(
            summarize(&mut two).unwrap(),
            Stats {
                min: 3,
                median: 3,
                p90: 9,
                p99: 9,
                max: 9
            }
        );
    }

    #[test]
    fn overhead_and_batches() {
        let mut v = [10, 5, 3];
        subtract_overhead(&mut v, 4);
        assert_eq!(v, [6, 1, 0]);
        let mut b = [640, 64];
        per_operation(&mut b, 64);
        assert_eq!(b, [10, 1]);
    }

    #[test]
    fn line_round_trip() {
        struct S([u8; 128], usize);
        impl core::fmt::Write for S {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                self.0[self.1..self.1 + s.len()].copy_from_slice(s.as_bytes());
                self.1 += s.len();
                Ok(())
            }
        }
        let stats = Stats {
            min: 1,
            median: 2,
            p90: 3,
            p99: 4,
            max: 5,
        };
        let mut s = S([0; 128], 0);
        write_line(&mut s, "null_hypercall", 10, &stats).unwrap();
        let text = core::str::from_utf8(&s.0[..s.1]).unwrap();
        assert!(text.ends_with(" unit=ticks/op"), "{text}");
        let l = parse_line(text).unwrap();
        assert_eq!(
            (l.name, l.iterations, l.stats),
            ("null_hypercall", 10, stats)
        );
        assert_eq!(
            parse_line("(d0) BENCH name=x iterations=1 min=1 median=1 p90=1 p99=1 max=1")
                .unwrap()
                .name,
            "x"
        );
        assert!(parse_line("BENCH name=x iterations=1 min=1").is_none());
        assert!(parse_line("BENCH name=x iterations=a min=1 median=1 p90=1 p99=1 max=1").is_none());
        assert!(parse_line("nothing here").is_none());
    }
}
