//! A bitmap allocator for machine frames (one bit per 4 KiB frame, set = free), lowest frame first.

use crate::mm::phys::FrameSource;
use abi::types::{Maddr, Mfn, PAGE_SIZE};

/// Why [`FrameAllocator::free`] refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The frame is beyond the bitmap.
    OutOfRange(Mfn),
    /// The frame is already free.
    DoubleFree(Mfn),
}

impl core::fmt::Display for FreeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FreeError::OutOfRange(m) => write!(f, "frame {m:?} is outside the allocator's range"),
            FreeError::DoubleFree(m) => write!(f, "frame {m:?} is already free"),
        }
    }
}

/// Bitmap frame allocator over the caller's storage: frame `n` is bit `n % 64` of word `n / 64`.
///
/// It covers frames `0..bits.len() * 64`; anything beyond is ignored. It cannot tell an allocated frame from
/// one that was never free (reserved or a hole), so [`FrameAllocator::free`] trusts its caller on that point.
pub struct FrameAllocator<'a> {
    bits: &'a mut [u64],
    free: u64,
    /// No word below this index has a free bit.
    hint: usize,
}

impl<'a> FrameAllocator<'a> {
    /// An allocator over `bits` with every frame in use.
    pub fn new(bits: &'a mut [u64]) -> Self {
        bits.fill(0);
        let hint = bits.len();
        FrameAllocator {
            bits,
            free: 0,
            hint,
        }
    }

    /// Number of frames the bitmap covers.
    pub fn total_frames(&self) -> u64 {
        (self.bits.len() as u64).saturating_mul(64)
    }

    /// Number of free frames.
    pub fn free_count(&self) -> u64 {
        self.free
    }

    /// Marks the whole frames inside `[start, end)` free (start rounded up, end rounded down).
    pub fn add_free_range(&mut self, start: Maddr, end: Maddr) {
        let first = start.0.div_ceil(PAGE_SIZE);
        let last = end.0 / PAGE_SIZE;
        self.set_range(first, last, true);
    }

    /// Marks every frame touching `[start, end)` used (start rounded down, end rounded up).
    pub fn reserve_range(&mut self, start: Maddr, end: Maddr) {
        if start.0 >= end.0 {
            return;
        }
        let first = start.0 / PAGE_SIZE;
        let last = end.0.div_ceil(PAGE_SIZE);
        self.set_range(first, last, false);
    }

    /// Takes the lowest free frame.
    pub fn alloc(&mut self) -> Option<Mfn> {
        self.alloc_below(Mfn(u64::MAX))
    }

    /// Takes the lowest free frame if it is below `limit`.
    pub fn alloc_below(&mut self, limit: Mfn) -> Option<Mfn> {
        let mut w = self.hint;
        while w < self.bits.len() && self.bits[w] == 0 {
            w += 1;
        }
        self.hint = w;
        let word = *self.bits.get(w)?;
        let bit = word.trailing_zeros();
        let frame = (w as u64) * 64 + u64::from(bit);
        if frame >= limit.0 {
            return None;
        }
        self.bits[w] = word & !(1u64 << bit);
        self.free -= 1;
        Some(Mfn(frame))
    }

    /// Takes `n` (> 0) contiguous free frames, the highest such run (away from the domains' frames, which are
    /// taken lowest first); returns the first. Linear in the frames covered.
    pub fn alloc_run(&mut self, n: u64) -> Option<Mfn> {
        if n == 0 {
            return None;
        }
        let mut run = 0;
        for f in (0..self.total_frames()).rev() {
            if self.is_free(Mfn(f)) {
                run += 1;
                if run == n {
                    self.set_range(f, f + n, false);
                    return Some(Mfn(f));
                }
            } else {
                run = 0;
            }
        }
        None
    }

    /// Returns `mfn` to the free pool.
    pub fn free(&mut self, mfn: Mfn) -> Result<(), FreeError> {
        if mfn.0 >= self.total_frames() {
            return Err(FreeError::OutOfRange(mfn));
        }
        let (w, bit) = ((mfn.0 / 64) as usize, mfn.0 % 64);
        if self.bits[w] & (1 << bit) != 0 {
            return Err(FreeError::DoubleFree(mfn));
        }
        self.bits[w] |= 1 << bit;
        self.free += 1;
        self.hint = self.hint.min(w);
        Ok(())
    }

    /// True if `mfn` is inside the bitmap and free.
    pub fn is_free(&self, mfn: Mfn) -> bool {
        mfn.0 < self.total_frames() && self.bits[(mfn.0 / 64) as usize] & (1 << (mfn.0 % 64)) != 0
    }

    /// Sets (free) or clears (used) frames `[first, last)`, clipped to the bitmap, keeping the count right.
    fn set_range(&mut self, first: u64, last: u64, free: bool) {
        let last = last.min(self.total_frames());
        if first >= last {
            return;
        }
        let mut f = first;
        while f < last {
            let w = (f / 64) as usize;
            let lo = f % 64;
            let hi = (last - (f - lo)).min(64); // exclusive bit bound within this word
            let mask = if hi - lo == 64 {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            let old = self.bits[w];
            if free {
                self.bits[w] = old | mask;
                self.free += u64::from((mask & !old).count_ones());
                self.hint = self.hint.min(w);
            } else {
                self.bits[w] = old & !mask;
                self.free -= u64::from((mask & old).count_ones());
            }
            f = f - lo + hi;
        }
    }
}

impl FrameSource for FrameAllocator<'_> {
    fn alloc_frame(&mut self) -> Option<Mfn> {
        self.alloc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_come_from_the_top_and_skip_used_frames() {
        let mut bits = [0u64; 4];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free_range(Maddr(0), Maddr(256 * PAGE_SIZE));
        // Punch a hole so the top run is 250..256 (6 frames).
        for f in [249u64, 100] {
            a.reserve_range(Maddr(f * PAGE_SIZE), Maddr((f + 1) * PAGE_SIZE));
        }
        assert_eq!(a.alloc_run(6), Some(Mfn(250)));
        assert_eq!(a.free_count(), 254 - 6);
        assert_eq!(a.alloc_run(10), Some(Mfn(239)), "below the used frame");
        assert_eq!(a.alloc_run(200), None, "no run that long");
        assert_eq!(a.alloc_run(0), None);
        assert_eq!(a.free_count(), 254 - 16);
        assert!(!a.is_free(Mfn(239)) && !a.is_free(Mfn(248)) && a.is_free(Mfn(238)));
    }

    fn count_bits(bits: &[u64]) -> u64 {
        bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    #[test]
    fn starts_empty() {
        let mut bits = [u64::MAX; 4];
        let mut a = FrameAllocator::new(&mut bits);
        assert_eq!(a.total_frames(), 256);
        assert_eq!(a.free_count(), 0);
        assert_eq!(a.alloc(), None);
    }

    #[test]
    fn add_free_range_rounds_inward() {
        let mut bits = [0u64; 4];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free_range(Maddr(0x1001), Maddr(0x4fff));
        // Frames 2 and 3 are wholly inside.
        assert_eq!(a.free_count(), 2);
        assert!(!a.is_free(Mfn(1)) && a.is_free(Mfn(2)) && a.is_free(Mfn(3)) && !a.is_free(Mfn(4)));
        // A range smaller than a frame frees nothing; an inverted one neither.
        a.add_free_range(Maddr(0x10_0001), Maddr(0x10_0fff));
        a.add_free_range(Maddr(0x9000), Maddr(0x5000));
        assert_eq!(a.free_count(), 2);
        // Adding again does not double count.
        a.add_free_range(Maddr(0), Maddr(0x5000));
        assert_eq!(a.free_count(), 5);
    }

    #[test]
    fn reserve_range_rounds_outward() {
        let mut bits = [0u64; 4];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free_range(Maddr(0), Maddr(256 * 4096));
        assert_eq!(a.free_count(), 256);
        a.reserve_range(Maddr(0x1fff), Maddr(0x3001));
        // Frames 1, 2, 3 touched.
        assert_eq!(a.free_count(), 253);
        assert!(a.is_free(Mfn(0)) && !a.is_free(Mfn(1)) && !a.is_free(Mfn(3)) && a.is_free(Mfn(4)));
        a.reserve_range(Maddr(0x1000), Maddr(0x1000)); // empty
        a.reserve_range(Maddr(0x1000), Maddr(0x4000)); // already used: no change
        assert_eq!(a.free_count(), 253);
        a.reserve_range(Maddr(0), Maddr(u64::MAX));
        assert_eq!(a.free_count(), 0);
    }

    #[test]
    fn ranges_spanning_words_and_clipping() {
        let mut bits = [0u64; 3];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free_range(Maddr(60 * 4096), Maddr(1000 * 4096)); // clipped at 192
        assert_eq!(a.free_count(), 192 - 60);
        a.reserve_range(Maddr(63 * 4096), Maddr(129 * 4096));
        assert_eq!(a.free_count(), 3 + 63);
        a.add_free_range(Maddr(u64::MAX - 0x5000), Maddr(u64::MAX));
        a.reserve_range(Maddr(u64::MAX - 1), Maddr(u64::MAX));
        assert_eq!(a.free_count(), 66);
        assert_eq!(count_bits(&bits), 66);
    }

    #[test]
    fn alloc_lowest_first_and_free() {
        let mut bits = [0u64; 2];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free_range(Maddr(5 * 4096), Maddr(70 * 4096));
        assert_eq!(a.alloc(), Some(Mfn(5)));
        assert_eq!(a.alloc(), Some(Mfn(6)));
        assert_eq!(a.free(Mfn(5)), Ok(()));
        assert_eq!(a.alloc(), Some(Mfn(5)));
        for n in 7..70 {
            assert_eq!(a.alloc(), Some(Mfn(n)));
        }
        assert_eq!(a.alloc(), None);
        assert_eq!(a.free_count(), 0);
        assert_eq!(a.free(Mfn(64)), Ok(()));
        assert_eq!(a.alloc(), Some(Mfn(64)));
    }

    #[test]
    fn alloc_below_limit() {
        let mut bits = [0u64; 2];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free_range(Maddr(10 * 4096), Maddr(20 * 4096));
        assert_eq!(a.alloc_below(Mfn(10)), None);
        assert_eq!(a.free_count(), 10);
        assert_eq!(a.alloc_below(Mfn(11)), Some(Mfn(10)));
        assert_eq!(a.alloc_below(Mfn(11)), None);
        assert_eq!(a.alloc_below(Mfn(0)), None);
        assert_eq!(a.alloc(), Some(Mfn(11)));
    }

    #[test]
    fn free_errors() {
        let mut bits = [0u64; 1];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free_range(Maddr(0), Maddr(2 * 4096));
        assert_eq!(a.free(Mfn(1)), Err(FreeError::DoubleFree(Mfn(1))));
        assert_eq!(a.free(Mfn(64)), Err(FreeError::OutOfRange(Mfn(64))));
        assert_eq!(
            a.free(Mfn(u64::MAX)),
            Err(FreeError::OutOfRange(Mfn(u64::MAX)))
        );
        assert_eq!(a.free_count(), 2);
        let m = a.alloc().unwrap();
        assert_eq!(a.free(m), Ok(()));
        assert_eq!(a.free(m), Err(FreeError::DoubleFree(m)));
        assert!(format!("{}", FreeError::DoubleFree(m)).contains("already free"));
        assert!(format!("{}", FreeError::OutOfRange(m)).contains("outside"));
    }

    #[test]
    fn empty_bitmap() {
        let mut bits: [u64; 0] = [];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free_range(Maddr(0), Maddr(1 << 30));
        assert_eq!(a.total_frames(), 0);
        assert_eq!(a.alloc(), None);
        assert_eq!(a.free(Mfn(0)), Err(FreeError::OutOfRange(Mfn(0))));
    }

    #[test]
    fn frame_source() {
        let mut bits = [0u64; 1];
        let mut a = FrameAllocator::new(&mut bits);
        a.add_free_range(Maddr(0x3000), Maddr(0x4000));
        let src: &mut dyn FrameSource = &mut a;
        assert_eq!(src.alloc_frame(), Some(Mfn(3)));
        assert_eq!(src.alloc_frame(), None);
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    #[test]
    fn randomized_consistency() {
        const WORDS: usize = 16;
        const FRAMES: u64 = WORDS as u64 * 64;
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut bits = [0u64; WORDS];
        let mut a = FrameAllocator::new(&mut bits);
        // Model: which frames are free.
        let mut model = vec![false; FRAMES as usize];
        let mut held: Vec<Mfn> = Vec::new();
        let mut allocs = 0u32;
        for step in 0..20_000 {
            match rng.next() % 8 {
                0 => {
                    let s = rng.next() % (FRAMES * 4096 + 8192);
                    let e = s + rng.next() % (64 * 4096);
                    a.add_free_range(Maddr(s), Maddr(e));
                    for f in s.div_ceil(4096)..(e / 4096).min(FRAMES) {
                        model[f as usize] = true;
                    }
                    // Frames we hold that became "free" again are no longer ours.
                    held.retain(|m| !model[m.0 as usize]);
                }
                1 => {
                    let s = rng.next() % (FRAMES * 4096);
                    let e = s + rng.next() % (16 * 4096);
                    a.reserve_range(Maddr(s), Maddr(e));
                    if s < e {
                        for f in s / 4096..e.div_ceil(4096).min(FRAMES) {
                            model[f as usize] = false;
                        }
                    }
                }
                2..=4 => {
                    let limit = if rng.next().is_multiple_of(2) {
                        u64::MAX
                    } else {
                        rng.next() % FRAMES
                    };
                    let lowest = model.iter().position(|&f| f).map(|p| p as u64);
                    match a.alloc_below(Mfn(limit)) {
                        Some(m) => {
                            assert_eq!(Some(m.0), lowest, "step {step}: not the lowest free");
                            assert!(m.0 < limit);
                            assert!(model[m.0 as usize], "step {step}: handed out a used frame");
                            assert!(!held.contains(&m), "step {step}: handed out twice");
                            model[m.0 as usize] = false;
                            held.push(m);
                            allocs += 1;
                        }
                        None => assert!(lowest.is_none_or(|l| l >= limit)),
                    }
                }
                _ => {
                    if !held.is_empty() {
                        let i = (rng.next() % held.len() as u64) as usize;
                        let m = held.swap_remove(i);
                        assert_eq!(a.free(m), Ok(()));
                        model[m.0 as usize] = true;
                        assert_eq!(a.free(m), Err(FreeError::DoubleFree(m)));
                    }
                }
            }
            let expect = model.iter().filter(|&&f| f).count() as u64;
            assert_eq!(a.free_count(), expect, "step {step}");
        }
        assert!(allocs > 1000, "only {allocs} allocations");
        let expect = model.iter().filter(|&&f| f).count() as u64;
        assert_eq!(count_bits(&bits), expect);
    }
}
