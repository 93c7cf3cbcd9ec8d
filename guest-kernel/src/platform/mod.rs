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
pub mod xen_pv;

use abi::errno::Errno;
use abi::sched::ShutdownReason;
use abi::types::Gva;
use abi::xen::{MmuUpdate, TrapInfo};

/// Which TLB entries a flush covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Every non-global entry of this address space.
    All,
    /// The translation of one page.
    Page(Gva),
}

/// The privileged operations a kernel needs, whatever it runs on.
pub trait Platform: Sync {
    /// Short name of the backend ("xen-pv", ...).
    fn name(&self) -> &'static str;
    /// The privilege level the kernel runs at on this platform.
    fn kernel_ring(&self) -> u8;

    /// Write bytes to the console.
    fn console_write(&self, bytes: &[u8]) -> Result<(), Errno>;
    /// Read console input into `buf`; returns the number of bytes read.
    fn console_read(&self, buf: &mut [u8]) -> Result<usize, Errno>;

    /// Apply a batch of page-table updates; returns how many were applied.
    fn update_page_tables(&self, updates: &[MmuUpdate]) -> Result<usize, Errno>;
    /// Flush TLB entries.
    fn flush_tlb(&self, what: Flush) -> Result<(), Errno>;
    /// Switch to the address space whose top-level table is at `root_mfn`.
    fn switch_address_space(&self, root_mfn: u64) -> Result<(), Errno>;

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
