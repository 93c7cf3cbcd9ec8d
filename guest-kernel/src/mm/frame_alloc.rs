//! The physical page allocator: one bit per guest pfn (1 = free), lowest pfn first.
//!
//! Why a bitmap and not a buddy allocator: a PV domain's pseudo-physical space is small and dense (4096
//! pfns for 16 MiB, 16384 for 64 MiB), so the bitmap costs 1 bit per page (512 bytes for 16 MiB) and is
//! trivially correct. It answers the questions this kernel asks: any single page (the common case: page
//! tables and user pages), a contiguous run (the heap, big request arrays), one *specific* pfn (giving
//! pages back to the hypervisor and taking new ones, where the pfn matters), and "is this pfn free?", which
//! catches double frees. Allocation scans from a hint at the lowest word that may hold a free bit, so
//! single pages cost O(1) amortised; runs cost a linear scan, which is rare (boot, scenario setup). A buddy
//! allocator would make runs O(log n) but only for power-of-two sizes and at the price of splitting and
//! coalescing code that nothing here needs.
//!
//! The storage is generic (`[u64; N]` in a static for the kernel, a `Vec` in tests).

use abi::types::Pfn;

/// Why a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The pfn is outside the pfns this allocator manages (beyond the limit, or below the lowest pfn ever
    /// given to it).
    OutOfRange(Pfn),
    /// The pfn is already free.
    DoubleFree(Pfn),
}

impl core::fmt::Display for FreeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FreeError::OutOfRange(p) => write!(f, "free of pfn {:#x} beyond the allocator", p.0),
            FreeError::DoubleFree(p) => write!(f, "double free of pfn {:#x}", p.0),
        }
    }
}

/// A bitmap page allocator over pfns `0..limit`.
pub struct FrameAllocator<S> {
    bits: S,
    /// Pfns at or above this are never handed out.
    limit: usize,
    /// Pfns below this were never given to the allocator (the kernel's own bootstrap region).
    base: usize,
    /// Pages given to the allocator (by [`add_free`](Self::add_free)), free or not.
    total: usize,
    free: usize,
    /// No word below this index has a free bit.
    hint: usize,
}

impl<S: AsRef<[u64]> + AsMut<[u64]>> FrameAllocator<S> {
    /// An allocator over `storage` with nothing free. It can manage `64 * storage.len()` pfns.
    pub const fn new(storage: S) -> Self {
        FrameAllocator {
            bits: storage,
            limit: 0,
            base: usize::MAX,
            total: 0,
            free: 0,
            hint: 0,
        }
    }

    /// Forget everything and manage pfns `0..limit` (capped to the storage), all in use. Returns the limit.
    pub fn reset(&mut self, limit: usize) -> usize {
        let words = self.bits.as_mut();
        words.fill(0);
        self.limit = limit.min(words.len() * 64);
        self.base = usize::MAX;
        self.total = 0;
        self.free = 0;
        self.hint = 0;
        self.limit
    }

    /// The number of pfns this allocator can address (`0..capacity`).
    pub fn capacity(&self) -> usize {
        self.bits.as_ref().len() * 64
    }

    /// Pfns `0..limit` are managed.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Pages handed to the allocator with [`add_free`](Self::add_free).
    pub fn total(&self) -> usize {
        self.total
    }

    /// Pages free now.
    pub fn free_count(&self) -> usize {
        self.free
    }

    /// Give the pfns `start..end` (clipped to the limit) to the allocator as free pages. Pfns already free
    /// are skipped. Returns how many were added.
    pub fn add_free(&mut self, start: usize, end: usize) -> usize {
        let end = end.min(self.limit);
        if start < end {
            self.base = self.base.min(start);
        }
        let mut added = 0;
        for pfn in start..end {
            if !self.is_free(Pfn(pfn as u64)) {
                self.set(pfn, true);
                added += 1;
            }
        }
        self.total += added;
        self.free += added;
        self.hint = self.hint.min(start / 64);
        added
    }

    /// True if `pfn` is managed and free.
    pub fn is_free(&self, pfn: Pfn) -> bool {
        let p = pfn.0 as usize;
        p < self.limit && self.bits.as_ref()[p / 64] & (1 << (p % 64)) != 0
    }

    fn set(&mut self, pfn: usize, free: bool) {
        let w = &mut self.bits.as_mut()[pfn / 64];
        if free {
            *w |= 1 << (pfn % 64);
        } else {
            *w &= !(1 << (pfn % 64));
        }
    }

    /// The lowest free page.
    pub fn alloc(&mut self) -> Option<Pfn> {
        let words = self.bits.as_ref();
        let nwords = self.limit.div_ceil(64);
        let mut i = self.hint;
        while i < nwords {
            let w = words[i];
            if w != 0 {
                let pfn = i * 64 + w.trailing_zeros() as usize;
                if pfn >= self.limit {
                    break;
                }
                self.hint = i;
                self.set(pfn, false);
                self.free -= 1;
                return Some(Pfn(pfn as u64));
            }
            i += 1;
        }
        self.hint = nwords;
        None
    }

    /// The lowest run of `n` contiguous free pages; returns its first pfn.
    pub fn alloc_contiguous(&mut self, n: usize) -> Option<Pfn> {
        if n == 0 {
            return None;
        }
        let mut run_start = 0;
        let mut run = 0;
        let mut pfn = self.hint * 64;
        while pfn < self.limit {
            if self.is_free(Pfn(pfn as u64)) {
                if run == 0 {
                    run_start = pfn;
                }
                run += 1;
                if run == n {
                    for p in run_start..run_start + n {
                        self.set(p, false);
                    }
                    self.free -= n;
                    return Some(Pfn(run_start as u64));
                }
            } else {
                run = 0;
            }
            pfn += 1;
        }
        None
    }

    /// Take the specific page `pfn` if it is free.
    pub fn alloc_specific(&mut self, pfn: Pfn) -> bool {
        if !self.is_free(pfn) {
            return false;
        }
        self.set(pfn.0 as usize, false);
        self.free -= 1;
        true
    }

    /// Return a page.
    pub fn free(&mut self, pfn: Pfn) -> Result<(), FreeError> {
        let p = pfn.0 as usize;
        if p >= self.limit || p < self.base {
            return Err(FreeError::OutOfRange(pfn));
        }
        if self.is_free(pfn) {
            return Err(FreeError::DoubleFree(pfn));
        }
        self.set(p, true);
        self.free += 1;
        self.hint = self.hint.min(p / 64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(limit: usize) -> FrameAllocator<Vec<u64>> {
        let mut a = FrameAllocator::new(vec![0u64; 64]);
        assert_eq!(a.reset(limit), limit.min(4096));
        a
    }

    #[test]
    fn lowest_first_and_counts() {
        let mut a = alloc(1000);
        assert_eq!(a.alloc(), None);
        assert_eq!(a.add_free(100, 200), 100);
        assert_eq!(
            a.add_free(150, 210),
            10,
            "already free pfns are not counted twice"
        );
        a.add_free(7, 8);
        assert_eq!((a.total(), a.free_count()), (111, 111));
        assert_eq!(a.alloc(), Some(Pfn(7)));
        assert_eq!(a.alloc(), Some(Pfn(100)));
        assert_eq!(a.alloc(), Some(Pfn(101)));
        assert_eq!(a.free_count(), 108);
        a.free(Pfn(7)).unwrap();
        assert_eq!(a.alloc(), Some(Pfn(7)), "a freed low page is found again");
        assert_eq!(
            a.free(Pfn(5)),
            Err(FreeError::OutOfRange(Pfn(5))),
            "below every managed pfn"
        );
    }

    #[test]
    fn frees_are_checked() {
        let mut a = alloc(100);
        a.add_free(0, 100);
        assert_eq!(a.free(Pfn(3)), Err(FreeError::DoubleFree(Pfn(3))));
        assert_eq!(a.free(Pfn(100)), Err(FreeError::OutOfRange(Pfn(100))));
        assert_eq!(a.free_count(), 100);
        let p = a.alloc().unwrap();
        a.free(p).unwrap();
        assert_eq!(a.free(p), Err(FreeError::DoubleFree(p)));
        assert_eq!(a.free_count(), 100);
    }

    #[test]
    fn exhaustion_and_limit() {
        let mut a = alloc(130);
        a.add_free(0, 1000);
        assert_eq!(a.total(), 130, "clipped to the limit");
        let got: Vec<u64> = core::iter::from_fn(|| a.alloc()).map(|p| p.0).collect();
        assert_eq!(got, (0..130).collect::<Vec<_>>());
        assert_eq!(a.free_count(), 0);
        assert_eq!(a.alloc(), None);
        a.free(Pfn(64)).unwrap();
        assert_eq!(a.alloc(), Some(Pfn(64)));
        // The storage caps the limit.
        let mut small = FrameAllocator::new([0u64; 2]);
        assert_eq!(small.reset(1000), 128);
        assert_eq!(small.capacity(), 128);
    }

    #[test]
    fn contiguous_runs() {
        let mut a = alloc(300);
        a.add_free(10, 300);
        for p in [12u64, 40, 41] {
            assert!(a.alloc_specific(Pfn(p)));
        }
        assert!(!a.alloc_specific(Pfn(12)), "taken already");
        assert!(!a.alloc_specific(Pfn(5)), "never free");
        assert_eq!(a.alloc_contiguous(2), Some(Pfn(10)));
        assert_eq!(a.alloc_contiguous(20), Some(Pfn(13)));
        assert_eq!(a.alloc_contiguous(7), Some(Pfn(33)));
        assert_eq!(a.alloc_contiguous(100), Some(Pfn(42)));
        assert_eq!(a.alloc_contiguous(200), None);
        assert_eq!(a.alloc_contiguous(0), None);
        assert_eq!(a.free_count(), 290 - 3 - 2 - 20 - 7 - 100);
        for p in 42..142 {
            a.free(Pfn(p)).unwrap();
        }
        assert_eq!(
            a.alloc_contiguous(258),
            Some(Pfn(42)),
            "freed pages join the free tail"
        );
        assert_eq!(a.free_count(), 0);
    }

    #[test]
    fn random_alloc_free_keeps_counts() {
        // A deterministic pseudo-random workload against a simple model.
        let mut a = alloc(2000);
        a.add_free(50, 2000);
        let mut held: Vec<Pfn> = Vec::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if !x.is_multiple_of(3) || held.is_empty() {
                if let Some(p) = a.alloc() {
                    assert!(!held.contains(&p), "handed out twice: {p:?}");
                    assert!((50..2000).contains(&p.0));
                    held.push(p);
                }
            } else {
                let p = held.swap_remove((x as usize / 3) % held.len());
                a.free(p).unwrap();
            }
            assert_eq!(a.free_count() + held.len(), a.total());
        }
    }
}
