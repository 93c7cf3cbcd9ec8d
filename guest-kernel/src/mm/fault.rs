//! Memory-management errors and page faults: [`MmError`] (what failed, with the hypervisor's errno and,
//! for a batch, the exact entry), [`report`] (every mapping error is printed, never dropped), and
//! [`classify_fault`], the pure decision the page-fault handler of the traps work will take.

use core::sync::atomic::{AtomicUsize, Ordering};

use abi::errno::Errno;

use super::{PHYSMAP_BASE, PHYSMAP_END, USER_END, pte::is_canonical};
use crate::platform::PtWrite;

/// Why a memory-management operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// A hypercall (named) refused; `arg` is its main argument (MFN, VA...).
    Hypercall {
        op: &'static str,
        arg: u64,
        errno: Errno,
    },
    /// Write `index` of a page-table batch of `len` was refused; writes before it were applied and
    /// none after it.
    Batch {
        index: usize,
        len: usize,
        entry: PtWrite,
        errno: Errno,
    },
    /// No free page.
    OutOfMemory,
    /// The address is not one this operation may touch (kernel half, reserved, non-canonical, unaligned).
    BadAddress(u64),
    /// Nothing is mapped there.
    NotMapped(u64),
    /// Something is mapped there already.
    AlreadyMapped(u64),
    /// The memory manager is not initialised (its boot hypercalls failed).
    NotReady,
    /// An internal consistency check failed.
    Internal(&'static str),
}

impl MmError {
    /// The hypervisor's error number, if the hypervisor refused.
    pub fn errno(&self) -> Option<Errno> {
        match *self {
            MmError::Hypercall { errno, .. } | MmError::Batch { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

impl core::fmt::Display for MmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            MmError::Hypercall { op, arg, errno } => {
                write!(
                    f,
                    "{op}({arg:#x}) failed: {} ({})",
                    errno.as_ret(),
                    errno.name()
                )
            }
            MmError::Batch {
                index,
                len,
                entry,
                errno,
            } => write!(
                f,
                "page-table write: entry {index} of {len} (target {:#x}, val {:#x}) failed: {} ({}); {index} applied",
                entry.raw().0,
                entry.value(),
                errno.as_ret(),
                errno.name()
            ),
            MmError::OutOfMemory => f.write_str("out of memory"),
            MmError::BadAddress(a) => write!(f, "address {a:#x} not allowed here"),
            MmError::NotMapped(a) => write!(f, "nothing mapped at {a:#x}"),
            MmError::AlreadyMapped(a) => write!(f, "{a:#x} is mapped already"),
            MmError::NotReady => f.write_str("memory manager not initialised"),
            MmError::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}

static REPORTED: AtomicUsize = AtomicUsize::new(0);

/// Report a memory-management error (printed on the console with its errno in the kernel) and hand it
/// back, so callers write `return Err(report(e))`: no mapping error goes unseen.
pub fn report(e: MmError) -> MmError {
    REPORTED.fetch_add(1, Ordering::Relaxed);
    #[cfg(feature = "baremetal")]
    crate::println!("mm: {e}");
    e
}

/// How many errors [`report`] has seen (scenarios and tests use it to check that an expected refusal was
/// reported).
pub fn reported() -> usize {
    REPORTED.load(Ordering::Relaxed)
}

/// Page-fault error-code bits (the CPU's, passed through by the hypervisor).
pub mod error_code {
    /// The page was present: a protection violation (clear: not present).
    pub const PRESENT: u64 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u64 = 1 << 1;
    /// The access came from ring 3.
    pub const USER: u64 = 1 << 2;
    /// A reserved bit was set in a paging-structure entry.
    pub const RESERVED: u64 = 1 << 3;
    /// The access was an instruction fetch.
    pub const FETCH: u64 = 1 << 4;
}

/// What kind of access faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
}

/// Where the faulting address lies in this kernel's address-space layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// The user half, inside a region the faulting address space has mapped (or reserved for mapping).
    UserMapped,
    /// The user half, outside every mapped region.
    UserUnmapped,
    /// The physmap (every guest frame at a fixed offset).
    Physmap,
    /// The hypervisor's reserved L4 slots (M2P, entry region).
    Hypervisor,
    /// The rest of the kernel half (kernel image, start-of-day region).
    Kernel,
    /// Not a canonical address.
    NonCanonical,
}

/// The decision for one page fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// User access to a not-present page of a mapped region: the kernel may populate it (demand paging).
    UserDemand,
    /// User access that violates a mapping's protection (write to read-only, execute of NX): a candidate for
    /// copy-on-write if the region allows writes, else a signal.
    UserProtection { access: Access },
    /// User access outside any mapped region, or to the kernel half: a segmentation fault for the process.
    UserBadAddress { region: Region },
    /// Kernel access to user memory (copying from or to a user buffer): the copy must fail with -EFAULT.
    KernelUserAccess,
    /// Kernel access to its own half that faulted: a kernel bug (oops).
    KernelBug {
        access: Access,
        present: bool,
        region: Region,
    },
    /// A reserved bit was set in a page-table entry: the page tables are corrupt (fatal, whoever accessed).
    ReservedBit,
}

/// The region of `addr` given whether the user half has a mapping region there.
pub fn region_of(addr: u64, user_region_mapped: bool) -> Region {
    if !is_canonical(addr) {
        Region::NonCanonical
    } else if addr < USER_END {
        if user_region_mapped {
            Region::UserMapped
        } else {
            Region::UserUnmapped
        }
    } else if (abi::layout::RESERVED_VA_START..abi::layout::RESERVED_VA_END).contains(&addr) {
        Region::Hypervisor
    } else if (PHYSMAP_BASE..PHYSMAP_END).contains(&addr) {
        Region::Physmap
    } else {
        Region::Kernel
    }
}

/// Classify a page fault at `addr` with the CPU's `error_code`; `user_region_mapped` says whether the
/// faulting address space has a mapped (or reserved) region containing `addr`. Pure: the trap handler acts
/// on the answer.
pub fn classify_fault(addr: u64, error_code: u64, user_region_mapped: bool) -> FaultKind {
    use error_code::*;
    if error_code & RESERVED != 0 {
        return FaultKind::ReservedBit;
    }
    let access = if error_code & FETCH != 0 {
        Access::Execute
    } else if error_code & WRITE != 0 {
        Access::Write
    } else {
        Access::Read
    };
    let present = error_code & PRESENT != 0;
    let region = region_of(addr, user_region_mapped);
    if error_code & USER != 0 {
        return match region {
            Region::UserMapped if !present => FaultKind::UserDemand,
            Region::UserMapped => FaultKind::UserProtection { access },
            _ => FaultKind::UserBadAddress { region },
        };
    }
    match region {
        // The kernel never executes user pages; a fetch there is a bug, like any kernel-half fault.
        Region::UserMapped | Region::UserUnmapped if access != Access::Execute => {
            FaultKind::KernelUserAccess
        }
        _ => FaultKind::KernelBug {
            access,
            present,
            region,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::error_code::*;
    use super::*;

    #[test]
    fn user_faults() {
        assert_eq!(classify_fault(0x40_0000, USER, true), FaultKind::UserDemand);
        assert_eq!(
            classify_fault(0x40_0000, USER | WRITE, true),
            FaultKind::UserDemand
        );
        assert_eq!(
            classify_fault(0x40_0000, USER | WRITE | PRESENT, true),
            FaultKind::UserProtection {
                access: Access::Write
            }
        );
        assert_eq!(
            classify_fault(0x40_0000, USER | FETCH | PRESENT, true),
            FaultKind::UserProtection {
                access: Access::Execute
            }
        );
        assert_eq!(
            classify_fault(0x40_0000, USER, false),
            FaultKind::UserBadAddress {
                region: Region::UserUnmapped
            }
        );
        assert_eq!(
            classify_fault(PHYSMAP_BASE + 0x1000, USER | PRESENT, false),
            FaultKind::UserBadAddress {
                region: Region::Physmap
            }
        );
        assert_eq!(
            classify_fault(abi::layout::ENTRY_REGION_VA, USER | PRESENT | WRITE, false),
            FaultKind::UserBadAddress {
                region: Region::Hypervisor
            }
        );
    }

    #[test]
    fn kernel_faults() {
        assert_eq!(
            classify_fault(0x1000, WRITE, false),
            FaultKind::KernelUserAccess
        );
        assert_eq!(
            classify_fault(0x1000, FETCH | PRESENT, true),
            FaultKind::KernelBug {
                access: Access::Execute,
                present: true,
                region: Region::UserMapped
            }
        );
        assert_eq!(
            classify_fault(0xffff_ffff_8000_0000, WRITE | PRESENT, false),
            FaultKind::KernelBug {
                access: Access::Write,
                present: true,
                region: Region::Kernel
            }
        );
        assert_eq!(
            classify_fault(PHYSMAP_END, 0, false),
            FaultKind::KernelBug {
                access: Access::Read,
                present: false,
                region: Region::Kernel
            }
        );
        assert_eq!(
            classify_fault(0x0000_8000_0000_0000, 0, false),
            FaultKind::KernelBug {
                access: Access::Read,
                present: false,
                region: Region::NonCanonical
            }
        );
        assert_eq!(
            classify_fault(0x1000, RESERVED | PRESENT | USER, true),
            FaultKind::ReservedBit
        );
    }

    #[test]
    fn errors_are_reported_and_printable() {
        let before = reported();
        let e = report(MmError::Batch {
            index: 4,
            len: 8,
            entry: PtWrite::from_raw(0x1000, 0x200001),
            errno: Errno::EPERM,
        });
        assert!(reported() > before);
        assert_eq!(e.errno(), Some(Errno::EPERM));
        let s = format!("{e}");
        assert!(s.contains("entry 4 of 8"), "{s}");
        assert!(s.contains("-1 (EPERM)"), "{s}");
        assert!(format!("{}", MmError::OutOfMemory).contains("out of memory"));
        assert_eq!(MmError::NotReady.errno(), None);
    }
}
