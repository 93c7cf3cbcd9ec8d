//! A monotonic view of a clock (the platform's raw clock may step back by a few ns across an update of its
//! parameters). Pure: host-tested in `platform::xen_pvclock`.

use core::sync::atomic::{AtomicU64, Ordering};

/// A monotonic view of a clock: never returns less than it returned before.
pub struct Monotonic {
    last: AtomicU64,
}

impl Monotonic {
    /// Nothing observed yet.
    pub const fn new() -> Monotonic {
        Monotonic {
            last: AtomicU64::new(0),
        }
    }

    /// Record `t` and return the larger of `t` and everything returned before.
    pub fn observe(&self, t: u64) -> u64 {
        let prev = self.last.fetch_max(t, Ordering::AcqRel);
        prev.max(t)
    }

    /// The largest value seen.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }
}

impl Default for Monotonic {
    fn default() -> Self {
        Self::new()
    }
}
