//! The guest kernel's memory manager (Xen PV model: the guest's page tables are real ones, read-only to it,
//! and every change goes through a validating hypercall).
//!
//! | module | what |
//! |---|---|
//! | [`pte`] | entry flags, composition, walk arithmetic |
//! | [`frame_alloc`] | the page allocator over the domain's pfns (a bitmap) |
//! | [`batch`] | queued page-table writes, handed to the platform at a threshold or on demand, exact failing write |
//! | [`physmap`] | the physmap: every guest pfn at [`PHYSMAP_BASE`] + pfn × 4 KiB; layout and entry composition |
//! | [`address_space`] | `AddressSpace`: a fresh L4 sharing the kernel half, map/unmap/protect, switch, destroy |
//! | [`fault`] | [`MmError`], [`fault::report`], the pure page-fault classifier |
//! | `kernel` | (bare metal) boot: bootstrap walk, physmap build, the kernel's [`MmEnv`], reservations |
//! | `heap` | (bare metal) the kernel heap (`linked_list_allocator` over physmap pages) |
//!
//! # Virtual layout (kernel half)
//!
//! ```text
//!  0x0000_0000_0000_0000 .. 0x0000_7fff_ffff_ffff  user half: per address space (L4 slots 0..=255)
//!  0xffff_8000_0000_0000 .. 0xffff_87ff_ffff_ffff  hypervisor (slots 256..=271): M2P at slot 256, entry region
//!  0xffff_8880_0000_0000 .. +1 GiB                 physmap (slot 273): pfn k at PHYSMAP_BASE + k * 4 KiB,
//!                                                  writable, NX; read-only for frames that are page tables
//!  0xffff_ffff_8000_0000 ..                        kernel image and start-of-day region (slot 511)
//! ```
//!
//! The kernel-half L4 entries (slots 272..=511) are fixed at boot and copied into every address space, so
//! every address space shares the kernel's L3 tables (and everything below them).
//!
//! # The page-table recipe
//!
//! A frame becomes a page table only while no writable mapping of it exists, and a page-table frame is never
//! mapped writable. So a new table is (1) filled through its writable physmap mapping, (2) made read-only in
//! the physmap (an `mmu_update` on the physmap's L1), (3) linked into its validated parent (`mmu_update`) or
//! pinned (`mmuext_op`); the hypervisor validates it at that point. Tearing down reverses it: unlink or unpin
//! (the hypervisor drops the table's type when the last reference goes), then make the physmap mapping
//! writable again, then free the frame. Updates go through [`batch::Batch`] in order, so one hypercall can
//! carry "make read-only" and "link" for several tables.

pub mod address_space;
pub mod batch;
pub mod fault;
pub mod frame_alloc;
pub mod physmap;
pub mod pte;

#[cfg(feature = "baremetal")]
pub mod heap;
#[cfg(feature = "baremetal")]
pub mod kernel;

#[cfg(test)]
mod mock;

use abi::types::{Maddr, Mfn, Pfn};

use crate::platform::Mmu;

pub use address_space::{AddressSpace, Prot};
pub use batch::Batch;
pub use fault::{MmError, report};
pub use pte::{Level, Pte, PteFlags};

/// Where the kernel image and the start-of-day region begin (guest pfn 0 is mapped here at boot).
pub const KERNEL_VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
/// The L4 slot of the physmap (Linux's direct-map slot, just above the hypervisor's 256..=271).
pub const PHYSMAP_SLOT: usize = 273;
/// Guest pfn `k` is mapped at `PHYSMAP_BASE + k * 4096`.
pub const PHYSMAP_BASE: u64 = pte::l4_slot_va(PHYSMAP_SLOT);
/// End of the physmap's L4 slot.
pub const PHYSMAP_END: u64 = pte::l4_slot_va(PHYSMAP_SLOT + 1);
/// The most pfns the kernel manages (1 GiB: one physmap L2, a 32 KiB allocator bitmap). Pages of a bigger
/// domain beyond this are left unused.
pub const MAX_PFNS: usize = 512 * 512;
/// End of the user half.
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// The L4 slots every address space shares with the kernel (the kernel half outside the hypervisor's).
pub const KERNEL_SLOTS: core::ops::RangeInclusive<usize> = 272..=511;
/// Where Xen maps the read-only M2P table (`RO_MPT_VIRT_START`); `XENMEM_machphys_mapping` confirms it.
pub const M2P_DEFAULT_VA: u64 = abi::layout::RESERVED_VA_START;

/// The virtual address of guest pfn `pfn` in the physmap.
pub const fn physmap_va(pfn: Pfn) -> u64 {
    PHYSMAP_BASE + (pfn.0 << abi::types::PAGE_SHIFT)
}

/// What the memory-management code above the allocator needs: the platform's page-table operations
/// ([`Mmu`], the memory part of the one platform interface) plus the kernel's own bookkeeping — access to
/// frames (through the physmap), the P2M, the current and kernel roots, and the page allocator. The
/// kernel implements it with the platform and its physmap (`kernel::KernelEnv`); host tests implement it
/// with a model of the hypervisor's validation rules (`mock::MockHv`).
pub trait MmEnv: Mmu {
    /// The L4 the CPU runs on now (recorded by the kernel's [`Mmu::switch_address_space`]).
    fn current_base(&self) -> Mfn;
    /// The kernel's own L4 (the boot one): its frame, and where it is readable.
    fn kernel_base(&self) -> (Pfn, Mfn);

    /// The machine frame behind guest frame `pfn` (the P2M).
    fn pfn_to_mfn(&self, pfn: Pfn) -> Mfn;
    /// The machine address of the physmap entry that maps `pfn`.
    fn physmap_entry(&self, pfn: Pfn) -> Maddr;
    /// Read entry `idx` of frame `pfn`.
    fn read_entry(&self, pfn: Pfn, idx: usize) -> u64;
    /// Write entry `idx` of frame `pfn` directly (the frame must be mapped writable: not a table yet).
    fn write_entry(&self, pfn: Pfn, idx: usize, val: u64);
    /// Zero frame `pfn` (mapped writable).
    fn zero_frame(&self, pfn: Pfn);

    /// A free page.
    fn alloc_page(&self) -> Option<Pfn>;
    /// Give a page back.
    fn free_page(&self, pfn: Pfn);
}
