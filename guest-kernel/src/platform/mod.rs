//! The platform interface: every privileged operation of the guest kernel goes through here (pv-ops style).
//!
//! The kernel never executes a privileged instruction itself; it asks its [`Platform`]. Today there is one
//! backend, [`xen_pv::XenPv`], which turns each operation into a hypercall. The interface is shaped so that a
//! native backend (the same kernel in ring 0 on bare QEMU, executing the instructions directly) and a
//! trap-and-emulate backend can be added beside it to compare paravirtualization with full virtualization,
//! without touching the kernel above this line.
//!
//! Operations whose hypervisor side does not exist yet still issue their real hypercall and report the
//! hypervisor's answer (`-ENOSYS`): nothing here pretends to succeed.

#[cfg(feature = "baremetal")]
pub mod xen_ops;
#[cfg(feature = "baremetal")]
pub mod xen_pv;

use abi::errno::Errno;
use abi::mm::XenMachphysMapping;
use abi::sched::ShutdownReason;
use abi::types::{Gva, Mfn};
use abi::xen::{MmuUpdate, MulticallEntry, TrapInfo};

use crate::mm::pte::Level;

/// Which TLB entries a flush covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Every non-global entry of this address space.
    All,
    /// The translation of one page.
    Page(Gva),
}

/// What `update_va_mapping` flushes after changing the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingFlush {
    /// Nothing: the caller flushes later.
    None,
    /// The translation of the updated address.
    Page,
    /// This vCPU's whole TLB.
    All,
}

/// The privileged operations a kernel needs, whatever it runs on.
///
/// The memory-management operations follow Xen's PV interface because that is the richest of the
/// backends; a native backend implements them with instructions (a checked write is a plain store into a
/// page table, pinning and reservations are bookkeeping, a multicall runs its entries one after the other).
pub trait Platform: Sync {
    /// Short name of the backend ("xen-pv", ...).
    fn name(&self) -> &'static str;
    /// The privilege level the kernel runs at on this platform.
    fn kernel_ring(&self) -> u8;

    /// Write bytes to the console.
    fn console_write(&self, bytes: &[u8]) -> Result<(), Errno>;
    /// Read console input into `buf`; returns the number of bytes read.
    fn console_read(&self, buf: &mut [u8]) -> Result<usize, Errno>;

    /// Apply a batch of checked page-table (and M2P) updates in order. Returns how many were applied and
    /// the result: on a refusal, the entries before the bad one are applied and none after it.
    fn update_page_tables(&self, updates: &[MmuUpdate]) -> (usize, Result<(), Errno>);
    /// Change the entry that maps `va` (its L1 must exist in the current address space), then flush.
    fn update_va_mapping(&self, va: Gva, pte: u64, flush: MappingFlush) -> Result<(), Errno>;
    /// Validate the frame `mfn` as a page table of `level` and pin it (it stays a table until unpinned).
    fn pin_table(&self, level: Level, mfn: Mfn) -> Result<(), Errno>;
    /// Drop the pin on the table `mfn`.
    fn unpin_table(&self, mfn: Mfn) -> Result<(), Errno>;
    /// Flush TLB entries.
    fn flush_tlb(&self, what: Flush) -> Result<(), Errno>;
    /// Switch to the address space whose top-level table is at `root_mfn`.
    fn switch_address_space(&self, root_mfn: u64) -> Result<(), Errno>;
    /// Run several operations with one transition; each entry's result is written into it.
    fn multicall(&self, calls: &mut [MulticallEntry]) -> Result<(), Errno>;

    /// Pages this domain holds now.
    fn current_reservation(&self) -> Result<u64, Errno>;
    /// Pages this domain may hold at most.
    fn maximum_reservation(&self) -> Result<u64, Errno>;
    /// Give the machine frames `mfns` (unused: unmapped, not page tables) back; returns how many were
    /// released (fewer than asked if one could not be).
    fn decrease_reservation(&self, mfns: &[u64]) -> Result<usize, Errno>;
    /// Ask for `mfns.len()` new (zeroed) machine frames, written into `mfns`; returns how many were given.
    fn increase_reservation(&self, mfns: &mut [u64]) -> Result<usize, Errno>;
    /// Where the read-only machine-to-physical table is mapped and how far it reaches.
    fn machphys_mapping(&self) -> Result<XenMachphysMapping, Errno>;

    /// Mask event delivery (the virtual interrupt flag); returns whether it was enabled before.
    fn irq_disable(&self) -> bool;
    /// Re-enable event delivery if `enabled`.
    fn irq_restore(&self, enabled: bool);

    /// Arm the one-shot timer for `deadline_ns` of system time (0 cancels).
    fn set_timer(&self, deadline_ns: u64) -> Result<(), Errno>;
    /// Sleep until an event arrives.
    fn block(&self) -> Result<(), Errno>;
    /// Give the CPU to someone else for a while.
    fn yield_cpu(&self) -> Result<(), Errno>;

    /// Install the virtual trap table.
    fn set_trap_table(&self, table: &[TrapInfo]) -> Result<(), Errno>;
    /// Set the kernel stack used when user code traps.
    fn stack_switch(&self, ss: u16, rsp: u64) -> Result<(), Errno>;

    /// Stop this kernel for good.
    fn shutdown(&self, reason: ShutdownReason, code: u32) -> !;
}

/// Builders of [`MulticallEntry`]s for the operations above (the entry's `args` are the hypercall's
/// registers; the arrays they point to must stay alive until the multicall returns).
pub mod multicall {
    use abi::hypercall::nr;
    use abi::xen::{DOMID_SELF, MmuUpdate, MmuextOp, MulticallEntry};

    /// `update_va_mapping(va, pte, flags)`.
    pub fn update_va_mapping(va: u64, pte: u64, flags: u64) -> MulticallEntry {
        MulticallEntry {
            op: nr::UPDATE_VA_MAPPING,
            result: 0,
            args: [va, pte, flags, 0, 0, 0],
        }
    }

    /// `mmu_update(reqs, reqs.len(), done, DOMID_SELF)`.
    pub fn mmu_update(reqs: &[MmuUpdate], done: *mut u32) -> MulticallEntry {
        MulticallEntry {
            op: nr::MMU_UPDATE,
            result: 0,
            args: [
                reqs.as_ptr() as u64,
                reqs.len() as u64,
                done as u64,
                u64::from(DOMID_SELF),
                0,
                0,
            ],
        }
    }

    /// `mmuext_op(ops, ops.len(), NULL, DOMID_SELF)`.
    pub fn mmuext_op(ops: &[MmuextOp]) -> MulticallEntry {
        MulticallEntry {
            op: nr::MMUEXT_OP,
            result: 0,
            args: [
                ops.as_ptr() as u64,
                ops.len() as u64,
                0,
                u64::from(DOMID_SELF),
                0,
                0,
            ],
        }
    }

    /// The result of an entry as the hypercall would have returned it.
    pub fn result(e: &MulticallEntry) -> i64 {
        e.result as i64
    }
}
