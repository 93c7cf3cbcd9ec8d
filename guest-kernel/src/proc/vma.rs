//! A process's user address ranges (pure): the program image, the stack with its growth limit, and the
//! anonymous `mmap` regions; `mmap`/`munmap` bookkeeping (regions are split as needed), and what a page
//! fault at an address means — populate a zeroed page (demand-zero, stack growth) or kill the process.
//!
//! The page tables themselves are the address space's (`mm::AddressSpace`); this module only decides.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use abi::errno::Errno;
use abi::types::PAGE_SIZE;
use uapi::{
    MMAP_MAX, MMAP_WINDOW, PROT_EXEC, PROT_WRITE, USER_STACK_LIMIT, USER_STACK_TOP, mmap_base,
};

use crate::mm::Prot;

/// What a region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `PT_LOAD` segment of the program (mapped when the program is loaded).
    Image,
    /// The stack: `[USER_STACK_TOP - USER_STACK_LIMIT, USER_STACK_TOP)`, populated on demand.
    Stack,
    /// An anonymous `mmap` region, populated on demand.
    Anon,
}

/// One region `[start, end)`, page aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub kind: Kind,
}

/// The access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// A write (else a read or fetch).
    pub write: bool,
    /// An instruction fetch.
    pub exec: bool,
    /// The page was present (a protection violation, not a missing page).
    pub present: bool,
}

impl Access {
    /// Decode a page-fault error code (bit 0 present, bit 1 write, bit 4 instruction fetch).
    pub const fn from_error_code(e: u64) -> Access {
        Access {
            present: e & 1 != 0,
            write: e & 2 != 0,
            exec: e & 0x10 != 0,
        }
    }

    fn verb(self) -> &'static str {
        if self.exec {
            "executing"
        } else if self.write {
            "writing"
        } else {
            "reading"
        }
    }
}

/// Why a fault kills the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    /// Nothing is mapped there.
    NotMapped,
    /// Mapped, but not with this access (e.g. a write to code, a fetch from data).
    Protection,
    /// An address in the kernel's half.
    KernelAddress,
    /// Just below the stack's growth limit.
    StackOverflow,
}

impl fmt::Display for KillReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KillReason::NotMapped => "not mapped",
            KillReason::Protection => "protection violation",
            KillReason::KernelAddress => "kernel address",
            KillReason::StackOverflow => "stack overflow",
        })
    }
}

/// A fault explained for the kill message: `page fault writing 0x... (not mapped)`.
pub struct FaultText {
    pub addr: u64,
    pub access: Access,
    pub reason: KillReason,
}

impl fmt::Display for FaultText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "page fault {} {:#x} ({})",
            self.access.verb(),
            self.addr,
            self.reason
        )
    }
}

/// What to do about a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Map a zeroed page at this (page) address with these rights, then retry.
    Populate(u64, Prot),
    /// Kill the process.
    Kill(KillReason),
}

/// Guard below the stack limit within which a fault is called a stack overflow.
const STACK_GUARD: u64 = 64 * 1024;

/// The lowest user address a process may map (page 0 stays unmapped).
pub const USER_LOW: u64 = PAGE_SIZE;

const fn page_down(a: u64) -> u64 {
    a & !(PAGE_SIZE - 1)
}

/// Decode `mmap` protection bits.
pub fn prot_from_bits(bits: u64) -> Result<Prot, Errno> {
    if bits & !(PROT_WRITE | PROT_EXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let mut p = Prot::empty();
    if bits & PROT_WRITE != 0 {
        p |= Prot::WRITE;
    }
    if bits & PROT_EXEC != 0 {
        p |= Prot::EXEC;
    }
    Ok(p)
}

/// A process's regions.
#[derive(Clone, Debug)]
pub struct Regions {
    map: BTreeMap<u64, Region>,
    window: (u64, u64),
}

impl Regions {
    /// The regions of a new process `pid`: just the stack.
    pub fn new(pid: u32) -> Regions {
        let mut map = BTreeMap::new();
        let start = USER_STACK_TOP - USER_STACK_LIMIT;
        map.insert(
            start,
            Region {
                start,
                end: USER_STACK_TOP,
                prot: Prot::WRITE,
                kind: Kind::Stack,
            },
        );
        let lo = mmap_base(pid);
        Regions {
            map,
            window: (lo, lo + MMAP_WINDOW),
        }
    }

    /// Move the `mmap` window to process `pid`'s (before any `mmap`).
    pub fn set_pid(&mut self, pid: u32) {
        let lo = mmap_base(pid);
        self.window = (lo, lo + MMAP_WINDOW);
    }

    /// The region containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Region> {
        self.map
            .range(..=addr)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| addr < r.end)
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.map
            .range(..end)
            .next_back()
            .is_some_and(|(_, r)| r.end > start)
    }

    /// Record a program segment `[start, end)` (page aligned by the caller). Overlaps are refused.
    pub fn add_image(&mut self, start: u64, end: u64, prot: Prot) -> Result<(), Errno> {
        if start >= end || start < USER_LOW || self.overlaps(start, end) {
            return Err(Errno::EINVAL);
        }
        self.map.insert(
            start,
            Region {
                start,
                end,
                prot,
                kind: Kind::Image,
            },
        );
        Ok(())
    }

    /// `mmap(0, len, prot)`: the lowest free range of the process's window that fits.
    pub fn mmap(&mut self, len: u64, prot: Prot) -> Result<u64, Errno> {
        if len == 0 || len > MMAP_MAX {
            return Err(Errno::EINVAL);
        }
        let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let (lo, hi) = self.window;
        let mut cand = lo;
        for r in self.map.range(lo..hi).map(|(_, r)| r) {
            if r.start >= cand + len {
                break;
            }
            cand = cand.max(r.end);
        }
        if cand + len > hi {
            return Err(Errno::ENOMEM);
        }
        self.map.insert(
            cand,
            Region {
                start: cand,
                end: cand + len,
                prot,
                kind: Kind::Anon,
            },
        );
        Ok(cand)
    }

    /// `munmap(addr, len)`: every page of the range must lie in anonymous regions. Returns the removed
    /// ranges (the caller unmaps whatever pages are populated in them). Nothing changes on error.
    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<Vec<(u64, u64)>, Errno> {
        if !addr.is_multiple_of(PAGE_SIZE) || len == 0 || len > MMAP_MAX {
            return Err(Errno::EINVAL);
        }
        let end = addr
            .checked_add(len.div_ceil(PAGE_SIZE) * PAGE_SIZE)
            .ok_or(Errno::EINVAL)?;
        // Check first: the range is covered by anonymous regions without holes.
        let mut at = addr;
        while at < end {
            match self.find(at) {
                Some(r) if r.kind == Kind::Anon => at = r.end,
                _ => return Err(Errno::EINVAL),
            }
        }
        let mut removed = Vec::new();
        let mut at = addr;
        while at < end {
            let r = *self.find(at).expect("checked above");
            self.map.remove(&r.start);
            let cut_end = r.end.min(end);
            if r.start < at {
                self.map.insert(r.start, Region { end: at, ..r });
            }
            if r.end > cut_end {
                self.map.insert(
                    cut_end,
                    Region {
                        start: cut_end,
                        ..r
                    },
                );
            }
            removed.push((at, cut_end));
            at = cut_end;
        }
        Ok(removed)
    }

    /// What a fault at `addr` with `access` means.
    pub fn classify(&self, addr: u64, access: Access) -> Verdict {
        if addr >= crate::mm::USER_END {
            return Verdict::Kill(KillReason::KernelAddress);
        }
        match self.find(addr) {
            Some(r) => {
                let allowed = (!access.write || r.prot.contains(Prot::WRITE))
                    && (!access.exec || r.prot.contains(Prot::EXEC));
                if access.present || !allowed || r.kind == Kind::Image {
                    Verdict::Kill(KillReason::Protection)
                } else {
                    Verdict::Populate(page_down(addr), r.prot)
                }
            }
            None => {
                let limit = USER_STACK_TOP - USER_STACK_LIMIT;
                if addr < limit && addr >= limit - STACK_GUARD {
                    Verdict::Kill(KillReason::StackOverflow)
                } else {
                    Verdict::Kill(KillReason::NotMapped)
                }
            }
        }
    }

    /// May the kernel touch `[page, page + PAGE_SIZE)` on the process's behalf with `write` access if it is
    /// not populated yet? Returns the rights to populate it with.
    pub fn populatable(&self, page: u64, write: bool) -> Option<Prot> {
        match self.classify(
            page,
            Access {
                write,
                exec: false,
                present: false,
            },
        ) {
            Verdict::Populate(_, prot) => Some(prot),
            Verdict::Kill(_) => None,
        }
    }

    /// Start of the first anonymous region (0: none).
    pub fn mmap_lo(&self) -> u64 {
        self.map
            .values()
            .find(|r| r.kind == Kind::Anon)
            .map_or(0, |r| r.start)
    }

    /// Every region, by address.
    pub fn iter(&self) -> impl Iterator<Item = &Region> {
        self.map.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: Prot = Prot::WRITE;
    const READ: Access = Access {
        write: false,
        exec: false,
        present: false,
    };
    const WRITE: Access = Access {
        write: true,
        exec: false,
        present: false,
    };

    #[test]
    fn stack_grows_within_its_limit() {
        let r = Regions::new(3);
        let top = USER_STACK_TOP - 8;
        assert_eq!(
            r.classify(top, WRITE),
            Verdict::Populate(USER_STACK_TOP - PAGE_SIZE, RW)
        );
        let lowest = USER_STACK_TOP - USER_STACK_LIMIT;
        assert!(matches!(r.classify(lowest, WRITE), Verdict::Populate(..)));
        assert_eq!(
            r.classify(lowest - 8, WRITE),
            Verdict::Kill(KillReason::StackOverflow)
        );
        assert_eq!(
            r.classify(top, Access::from_error_code(0x15)),
            Verdict::Kill(KillReason::Protection)
        );
    }

    #[test]
    fn mmap_finds_room_and_munmap_splits() {
        let mut r = Regions::new(5);
        let a = r.mmap(3 * PAGE_SIZE, RW).unwrap();
        assert_eq!(a, mmap_base(5));
        let b = r.mmap(1, Prot::empty()).unwrap();
        assert_eq!(b, a + 3 * PAGE_SIZE);
        assert_eq!(r.mmap_lo(), a);
        // Punch the middle page out of the first region.
        assert_eq!(
            r.munmap(a + PAGE_SIZE, PAGE_SIZE).unwrap(),
            [(a + PAGE_SIZE, a + 2 * PAGE_SIZE)]
        );
        assert_eq!(
            r.classify(a + PAGE_SIZE, READ),
            Verdict::Kill(KillReason::NotMapped)
        );
        assert!(matches!(r.classify(a, WRITE), Verdict::Populate(..)));
        assert!(matches!(
            r.classify(a + 2 * PAGE_SIZE, WRITE),
            Verdict::Populate(..)
        ));
        // The hole is reused.
        assert_eq!(r.mmap(PAGE_SIZE, RW).unwrap(), a + PAGE_SIZE);
        // A read-only region refuses writes.
        assert_eq!(r.classify(b, WRITE), Verdict::Kill(KillReason::Protection));
        // One munmap across four adjacent regions.
        let removed = r.munmap(a, 4 * PAGE_SIZE).unwrap();
        assert_eq!(removed.len(), 4);
        assert_eq!(r.mmap_lo(), 0);
    }

    #[test]
    fn hostile_arguments_change_nothing() {
        let mut r = Regions::new(1);
        assert_eq!(r.mmap(0, RW), Err(Errno::EINVAL));
        assert_eq!(r.mmap(MMAP_MAX + 1, RW), Err(Errno::EINVAL));
        let a = r.mmap(2 * PAGE_SIZE, RW).unwrap();
        let before = r.clone().map;
        for (addr, len) in [
            (a + 1, PAGE_SIZE),
            (a, 0),
            (a, 3 * PAGE_SIZE),
            (a, u64::MAX),
            (u64::MAX - PAGE_SIZE + 1, PAGE_SIZE),
            (USER_STACK_TOP - PAGE_SIZE, PAGE_SIZE),
            (0x40_0000, PAGE_SIZE),
        ] {
            assert_eq!(
                r.munmap(addr, len),
                Err(Errno::EINVAL),
                "{addr:#x}+{len:#x}"
            );
        }
        assert_eq!(r.map, before);
        assert_eq!(prot_from_bits(8), Err(Errno::EINVAL));
        assert_eq!(
            prot_from_bits(PROT_WRITE | PROT_EXEC),
            Ok(Prot::WRITE | Prot::EXEC)
        );
    }

    #[test]
    fn the_window_runs_out() {
        let mut r = Regions::new(2);
        let n = MMAP_WINDOW / MMAP_MAX;
        for _ in 0..n {
            r.mmap(MMAP_MAX, RW).unwrap();
        }
        assert_eq!(r.mmap(PAGE_SIZE, RW), Err(Errno::ENOMEM));
    }

    #[test]
    fn image_and_kernel_addresses() {
        let mut r = Regions::new(1);
        r.add_image(0x40_0000, 0x40_2000, Prot::EXEC).unwrap();
        assert_eq!(r.add_image(0x40_1000, 0x40_3000, RW), Err(Errno::EINVAL));
        assert_eq!(r.add_image(0, 0x1000, RW), Err(Errno::EINVAL));
        assert_eq!(
            r.classify(0x40_0000, Access::from_error_code(0x7)),
            Verdict::Kill(KillReason::Protection)
        );
        assert_eq!(
            r.classify(0xffff_ffff_8000_0000, WRITE),
            Verdict::Kill(KillReason::KernelAddress)
        );
        assert_eq!(r.classify(0, WRITE), Verdict::Kill(KillReason::NotMapped));
        assert_eq!(r.populatable(0x40_0000, false), None);
        let text = FaultText {
            addr: 0x10,
            access: WRITE,
            reason: KillReason::NotMapped,
        };
        assert_eq!(
            alloc::format!("{text}"),
            "page fault writing 0x10 (not mapped)"
        );
    }
}
