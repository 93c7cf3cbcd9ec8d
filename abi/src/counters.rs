//! The per-domain entry counters and the `counters` hypercall that reads them (our extension, deviation m
//! in the crate docs).
//!
//! `counters(cmd, buf)`: RDI = [`COUNTERSOP_READ`], RSI = guest address of a [`DomainCounters`] that the
//! hypervisor fills with the *calling* domain's counters; returns 0. `-EINVAL` for another command,
//! `-EFAULT` if the buffer is not entirely writable guest memory (nothing is written then). The counters
//! only ever grow (wrapping at 2^64); a reader subtracts two readings to get what happened in between.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `counters` command: read the caller's counters.
pub const COUNTERSOP_READ: u64 = 0;

/// How often the hypervisor was entered on a domain's behalf, by kind.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomainCounters {
    /// Hypercalls the domain made (`int 0x82`; a multicall counts once; a preempted one each time it
    /// restarts).
    pub hypercalls: u64,
    /// Exceptions the hypervisor bounced to the domain's handlers (page faults, #GP, ..., and `int n` it
    /// emulated for a vector the guest opened to user code).
    pub exceptions: u64,
    /// `syscall` instructions from its user code bounced to its syscall callback.
    pub syscalls: u64,
    /// Event upcalls delivered.
    pub upcalls: u64,
}

impl DomainCounters {
    /// What happened between `earlier` and `self` (field by field, wrapping).
    pub fn since(&self, earlier: &DomainCounters) -> DomainCounters {
        DomainCounters {
            hypercalls: self.hypercalls.wrapping_sub(earlier.hypercalls),
            exceptions: self.exceptions.wrapping_sub(earlier.exceptions),
            syscalls: self.syscalls.wrapping_sub(earlier.syscalls),
            upcalls: self.upcalls.wrapping_sub(earlier.upcalls),
        }
    }
}

layout!(DomainCounters, 32; hypercalls @ 0, exceptions @ 8, syscalls @ 16, upcalls @ 24);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_wrap() {
        let a = DomainCounters {
            hypercalls: u64::MAX,
            exceptions: 3,
            syscalls: 0,
            upcalls: 9,
        };
        let b = DomainCounters {
            hypercalls: 1,
            exceptions: 5,
            syscalls: 7,
            upcalls: 9,
        };
        assert_eq!(
            b.since(&a),
            DomainCounters {
                hypercalls: 2,
                exceptions: 2,
                syscalls: 7,
                upcalls: 0
            }
        );
    }
}
