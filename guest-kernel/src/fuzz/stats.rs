//! What the fuzzer counts: calls per hypercall family and, per family, a histogram of the results
//! (0, positive values, each Xen errno, anything else negative), printed one line per family.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

use abi::errno::Errno;
use abi::hypercall::NR_HYPERCALLS;

/// Families: one per hypercall number below [`NR_HYPERCALLS`], plus one for every number at or above it.
pub const FAMILIES: usize = NR_HYPERCALLS as usize + 1;

/// Result buckets: 0, positive, errno 1..=[`MAX_ERRNO`], other negative.
const MAX_ERRNO: usize = 133;
const BUCKETS: usize = MAX_ERRNO + 3;
const POSITIVE: usize = 1;
const OTHER: usize = BUCKETS - 1;

/// Per-family call counts and result histograms.
pub struct Stats {
    calls: Vec<u64>,
    results: Vec<[u32; BUCKETS]>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

fn bucket(ret: i64) -> usize {
    match ret {
        0 => 0,
        r if r > 0 => POSITIVE,
        r => match usize::try_from(r.unsigned_abs()) {
            Ok(e) if e <= MAX_ERRNO => 1 + e,
            _ => OTHER,
        },
    }
}

/// The family of hypercall number `nr`.
pub fn family(nr: u64) -> usize {
    (nr.min(NR_HYPERCALLS)) as usize
}

impl Stats {
    /// Nothing counted.
    pub fn new() -> Stats {
        Stats {
            calls: vec![0; FAMILIES],
            results: vec![[0; BUCKETS]; FAMILIES],
        }
    }

    /// Count one call of hypercall `nr` that returned `ret`.
    pub fn record(&mut self, nr: u64, ret: i64) {
        let f = family(nr);
        self.calls[f] += 1;
        let b = &mut self.results[f][bucket(ret)];
        *b = b.saturating_add(1);
    }

    /// Calls of family `f`.
    pub fn calls(&self, f: usize) -> u64 {
        self.calls.get(f).copied().unwrap_or(0)
    }

    /// All calls.
    pub fn total(&self) -> u64 {
        self.calls.iter().sum()
    }

    /// How many calls of family `f` returned `ret` (by bucket: every positive value counts as one).
    pub fn returned(&self, f: usize, ret: i64) -> u32 {
        self.results.get(f).map_or(0, |h| h[bucket(ret)])
    }

    /// How many families saw at least one call.
    pub fn families_called(&self) -> usize {
        self.calls.iter().filter(|&&c| c > 0).count()
    }

    /// One line per family with calls: `name (nr): N calls: 0 x a, EINVAL x b, ...`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (f, &n) in self.calls.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let mut s = String::new();
            let name = if f as u64 == NR_HYPERCALLS {
                "(beyond the table)"
            } else {
                abi::hypercall::name(f as u64).unwrap_or("(unassigned)")
            };
            let _ = write!(s, "{name} ({f}): {n} calls:");
            for (b, &c) in self.results[f].iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let _ = match b {
                    0 => write!(s, " 0x{c}"),
                    POSITIVE => write!(s, " >0x{c}"),
                    OTHER => write!(s, " other<0x{c}"),
                    e => match Errno::from_ret(-((e - 1) as i64)) {
                        Some(err) => write!(s, " {}x{c}", err.name()),
                        None => write!(s, " -{}x{c}", e - 1),
                    },
                };
            }
            out.push(s);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_lines() {
        let mut s = Stats::new();
        s.record(1, 0);
        s.record(1, -22);
        s.record(1, -22);
        s.record(1, 5);
        s.record(99, -38);
        s.record(u64::MAX, -38);
        s.record(17, -1000);
        assert_eq!(s.total(), 7);
        assert_eq!(s.calls(1), 4);
        assert_eq!(s.calls(family(u64::MAX)), 2);
        assert_eq!(s.returned(1, -22), 2);
        assert_eq!(s.returned(1, 7), 1);
        assert_eq!(s.families_called(), 3);
        let lines = s.lines();
        assert_eq!(lines[0], "mmu_update (1): 4 calls: 0x1 >0x1 EINVALx2");
        assert_eq!(lines[1], "xen_version (17): 1 calls: other<0x1");
        assert_eq!(lines[2], "(beyond the table) (64): 2 calls: ENOSYSx2");
    }
}
