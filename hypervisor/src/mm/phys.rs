//! Hardware access traits: how the pure logic modules read machine memory, write frames and get free frames.
//!
//! The parsers, page-table walkers and the domain builder never touch memory directly; the bare-metal code
//! implements these traits over the direct map, and the tests implement them over a `Vec` ([`fake::FakeMachine`]).

use abi::types::{Maddr, Mfn};

/// Read access to machine memory (for walking page tables and parsing boot info).
///
/// Implementations must not fault on any address: memory that does not exist reads as some fixed value
/// (the fake reads zeroes). Callers treat everything read through this trait as untrusted.
pub trait PhysRead {
    /// Reads the little-endian `u64` at `addr` (which need not be aligned).
    fn read_u64(&self, addr: Maddr) -> u64;
    /// Fills `buf` with the bytes starting at `addr`.
    fn read_bytes(&self, addr: Maddr, buf: &mut [u8]);
}

/// Frame-granular write access used by the domain builder.
pub trait FrameMem: PhysRead {
    /// The 4 KiB contents of machine frame `mfn`. The caller only passes frames it owns.
    fn frame_mut(&mut self, mfn: Mfn) -> &mut [u8; 4096];
}

/// A source of free frames.
pub trait FrameSource {
    /// Takes one free frame, or `None` if none is left.
    fn alloc_frame(&mut self) -> Option<Mfn>;
}

/// A machine simulated in host memory, for the tests of the other modules.
#[cfg(test)]
pub mod fake {
    use super::{FrameMem, FrameSource, PhysRead};
    use abi::types::{Maddr, Mfn, PAGE_SIZE};

    /// `N` frames of machine memory (MFNs `0..N`) backed by a `Vec`, plus a frame source over a sub-range.
    ///
    /// Frames are handed out from the top of the allocatable range downwards so that guest P2M tables in tests
    /// are not the identity. Reads outside the backed memory return zeroes; `frame_mut` outside it panics (a
    /// test bug, not hostile input).
    pub struct FakeMachine {
        frames: Vec<[u8; 4096]>,
        alloc_lo: u64,
        alloc_next: u64,
        budget: Option<usize>,
        allocated: usize,
    }

    impl FakeMachine {
        /// A machine with `nr_frames` zeroed frames, all of them allocatable.
        pub fn new(nr_frames: usize) -> Self {
            FakeMachine {
                frames: vec![[0u8; 4096]; nr_frames],
                alloc_lo: 0,
                alloc_next: nr_frames as u64,
                budget: None,
                allocated: 0,
            }
        }

        /// Restricts `alloc_frame` to MFNs in `[lo, hi)` (it still hands them out top-down).
        pub fn set_alloc_range(&mut self, lo: u64, hi: u64) {
            assert!(lo <= hi && hi <= self.frames.len() as u64);
            self.alloc_lo = lo;
            self.alloc_next = hi;
        }

        /// Makes `alloc_frame` fail after `n` more successful allocations.
        pub fn set_budget(&mut self, n: usize) {
            self.budget = Some(n);
        }

        /// How many frames `alloc_frame` has handed out.
        pub fn allocated(&self) -> usize {
            self.allocated
        }

        /// Number of backed frames.
        pub fn nr_frames(&self) -> usize {
            self.frames.len()
        }

        /// Writes `bytes` at `addr`, possibly across frames. Panics outside the backed memory.
        pub fn write_bytes(&mut self, addr: Maddr, bytes: &[u8]) {
            for (i, b) in bytes.iter().enumerate() {
                let a = addr.0 + i as u64;
                let (f, o) = ((a / PAGE_SIZE) as usize, (a % PAGE_SIZE) as usize);
                self.frames[f][o] = *b;
            }
        }

        /// Writes a little-endian `u64` at `addr`.
        pub fn write_u64(&mut self, addr: Maddr, v: u64) {
            self.write_bytes(addr, &v.to_le_bytes());
        }

        /// Writes a little-endian `u32` at `addr`.
        pub fn write_u32(&mut self, addr: Maddr, v: u32) {
            self.write_bytes(addr, &v.to_le_bytes());
        }

        fn byte(&self, a: u64) -> u8 {
            let f = a / PAGE_SIZE;
            match self.frames.get(f as usize) {
                Some(fr) => fr[(a % PAGE_SIZE) as usize],
                None => 0,
            }
        }
    }

    impl PhysRead for FakeMachine {
        fn read_u64(&self, addr: Maddr) -> u64 {
            let mut b = [0u8; 8];
            self.read_bytes(addr, &mut b);
            u64::from_le_bytes(b)
        }

        fn read_bytes(&self, addr: Maddr, buf: &mut [u8]) {
            for (i, out) in buf.iter_mut().enumerate() {
                *out = match addr.0.checked_add(i as u64) {
                    Some(a) => self.byte(a),
                    None => 0,
                };
            }
        }
    }

    impl FrameMem for FakeMachine {
        fn frame_mut(&mut self, mfn: Mfn) -> &mut [u8; 4096] {
            &mut self.frames[mfn.0 as usize]
        }
    }

    impl FrameSource for FakeMachine {
        fn alloc_frame(&mut self) -> Option<Mfn> {
            if let Some(b) = self.budget.as_mut() {
                if *b == 0 {
                    return None;
                }
                *b -= 1;
            }
            if self.alloc_next <= self.alloc_lo {
                return None;
            }
            self.alloc_next -= 1;
            self.allocated += 1;
            Some(Mfn(self.alloc_next))
        }
    }

    mod tests {
        use super::*;

        #[test]
        fn read_write_and_alloc() {
            let mut m = FakeMachine::new(4);
            m.write_u64(Maddr(0x1ffc), 0x1122_3344_5566_7788);
            assert_eq!(m.read_u64(Maddr(0x1ffc)), 0x1122_3344_5566_7788);
            assert_eq!(m.read_u64(Maddr(0x10_0000)), 0);
            assert_eq!(m.read_u64(Maddr(u64::MAX - 3)), 0);
            assert_eq!(m.frame_mut(Mfn(1))[0xffc], 0x88);
            m.set_alloc_range(1, 3);
            assert_eq!(m.alloc_frame(), Some(Mfn(2)));
            m.set_budget(0);
            assert_eq!(m.alloc_frame(), None);
            m.set_budget(5);
            assert_eq!(m.alloc_frame(), Some(Mfn(1)));
            assert_eq!(m.alloc_frame(), None);
            assert_eq!(m.allocated(), 2);
        }
    }
}
