//! Memory management (`xen.h`, `memory.h`): `mmu_update` commands, `MMUEXT_*`, `UVMF_*`, `XENMEM_*` and
//! `VMASST_*` values and the memory-op argument structures.
//!
//! - `mmu_update(reqs, count, done_out, foreigndom)`: `RDI` = array of [`MmuUpdate`](crate::xen::MmuUpdate),
//!   `RSI` = count, `RDX` = pointer to a `u32` that receives the number applied (or 0), `R10` = foreign
//!   domain. The low two bits of each request's `ptr` select an `MMU_*` command. In `foreigndom`, bits 15:0
//!   name the owner of mapped data frames (`DOMID_SELF` for the caller) and bits 31:16, if non-zero, hold
//!   one plus the owner of the page tables being written. **Refused:** any `foreigndom` other than
//!   `DOMID_SELF` or the caller's own id gets `-EPERM`, for every domain including the privileged one
//!   (deviation j in the crate docs): nothing here maps another domain's memory yet.
//! - `mmuext_op(ops, count, done_out, foreigndom)`: as above with [`MmuextOp`](crate::xen::MmuextOp)s.
//! - `update_va_mapping(va, pte, flags)`: `RDI` = virtual address, `RSI` = new L1 entry, `RDX` = `UVMF_*`.
//! - `memory_op(cmd, arg)`: `RDI` = `XENMEM_*`, `RSI` = guest pointer to the command's structure.
//! - `vm_assist(cmd, type)`: `RDI` = `VMASST_CMD_*`, `RSI` = `VMASST_TYPE_*`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::xen::DomId;

/// A checked write `*ptr = val` of a page-table entry; `ptr` is its machine address.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// Set the M2P entry of the frame containing machine address `ptr` to `val`.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// As `NORMAL_PT_UPDATE`, but the entry's current accessed/dirty bits are ORed into `val`.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;
/// As `NORMAL_PT_UPDATE`, but `val` is not translated through the foreign domain.
pub const MMU_PT_UPDATE_NO_TRANSLATE: u64 = 3;
/// The command bits of `MmuUpdate::ptr`.
pub const MMU_CMD_MASK: u64 = 3;

/// Validate and pin a frame as an L1 table (`arg1` = MFN).
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// Validate and pin a frame as an L2 table.
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
/// Validate and pin a frame as an L3 table.
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
/// Validate and pin a frame as an L4 table.
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// Drop the pin on a page-table frame.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// Switch to the L4 table `arg1` (the kernel page table).
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// Flush this vCPU's TLB.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// Flush the linear address `arg1` from this vCPU's TLB.
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// Flush the TLBs of the vCPUs in the bitmap at `arg2`.
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
/// Flush `arg1` from the TLBs of the vCPUs in the bitmap at `arg2`.
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
/// Flush every vCPU's TLB.
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
/// Flush `arg1` from every vCPU's TLB.
pub const MMUEXT_INVLPG_ALL: u32 = 11;
/// Write back and invalidate caches.
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
/// Install an LDT at linear address `arg1` with `arg2` entries.
pub const MMUEXT_SET_LDT: u32 = 13;
/// Set the L4 table used in guest user mode (`arg1` = MFN).
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
/// Zero the frame `arg1`.
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
/// Copy the frame `arg2` to the frame `arg1`.
pub const MMUEXT_COPY_PAGE: u32 = 17;
/// Write back and invalidate caches on every physical CPU.
pub const MMUEXT_FLUSH_CACHE_GLOBAL: u32 = 18;
/// Mark a superpage.
pub const MMUEXT_MARK_SUPER: u32 = 19;
/// Unmark a superpage.
pub const MMUEXT_UNMARK_SUPER: u32 = 20;

/// `update_va_mapping` flush type: none.
pub const UVMF_NONE: u64 = 0;
/// `update_va_mapping` flush type: the whole TLB.
pub const UVMF_TLB_FLUSH: u64 = 1;
/// `update_va_mapping` flush type: only the updated address.
pub const UVMF_INVLPG: u64 = 2;
/// The flush-type bits.
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// Flush scope: the vCPUs in a bitmap whose address is ORed into the flags (with a null bitmap: local).
pub const UVMF_MULTI: u64 = 0;
/// Flush scope: this vCPU only.
pub const UVMF_LOCAL: u64 = 0;
/// Flush scope: every vCPU of the domain.
pub const UVMF_ALL: u64 = 1 << 2;

/// Set in the `count` argument of a restarted `mmu_update`/`mmuext_op` (a continuation created when the
/// hypervisor preempted a long batch): the call resumes and adds to the `done` count already in the guest's
/// `pdone` (Xen's `MMU_UPDATE_PREEMPTED`).
pub const MMU_UPDATE_PREEMPTED: u64 = 1 << 31;

/// `memory_op` continuations (Xen's `MEMOP_EXTENT_SHIFT`/`MEMOP_CMD_MASK`): a preempted reservation call is
/// restarted with the number of extents already done in the command's upper bits.
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
/// Mask of the command proper in `memory_op`'s first argument.
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;

/// Where the read-only machine-to-physical table is mapped in every guest (Xen's `RO_MPT_VIRT_START`,
/// L4 slot 256): `m2p[mfn]` is the pfn of machine frame `mfn` in its owner's pseudo-physical space.
pub const RO_MPT_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// The M2P value of a frame that belongs to no domain (Xen's `INVALID_M2P_ENTRY`).
pub const INVALID_M2P_ENTRY: u64 = !0;

/// Allocate extents (returns the number allocated). Argument: [`XenMemoryReservation`].
pub const XENMEM_INCREASE_RESERVATION: u64 = 0;
/// Free extents (returns the number freed). Argument: [`XenMemoryReservation`].
pub const XENMEM_DECREASE_RESERVATION: u64 = 1;
/// Returns the highest machine frame of RAM. Argument: none.
pub const XENMEM_MAXIMUM_RAM_PAGE: u64 = 2;
/// Returns the domain's current reservation in pages. Argument: [`XenMemoryDomain`].
pub const XENMEM_CURRENT_RESERVATION: u64 = 3;
/// Returns the domain's maximum reservation in pages. Argument: [`XenMemoryDomain`].
pub const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
/// Lists the frames of the M2P table.
pub const XENMEM_MACHPHYS_MFN_LIST: u64 = 5;
/// Populate pseudo-physical frames with memory. Argument: [`XenMemoryReservation`].
pub const XENMEM_POPULATE_PHYSMAP: u64 = 6;
/// Place a special page in the physmap (translated guests). Argument: [`XenAddToPhysmap`].
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// The domain's pseudo-physical memory map (E820 format). Argument: [`XenMemoryMap`].
pub const XENMEM_MEMORY_MAP: u64 = 9;
/// The machine memory map (privileged). Argument: [`XenMemoryMap`].
pub const XENMEM_MACHINE_MEMORY_MAP: u64 = 10;
/// Exchange extents atomically.
pub const XENMEM_EXCHANGE: u64 = 11;
/// Where the M2P table is mapped. Argument: [`XenMachphysMapping`].
pub const XENMEM_MACHPHYS_MAPPING: u64 = 12;
/// Set a domain's memory map (toolstack).
pub const XENMEM_SET_MEMORY_MAP: u64 = 13;
/// Returns the highest GFN in use. Argument: [`XenMemoryDomain`].
pub const XENMEM_MAXIMUM_GPFN: u64 = 14;
/// Remove a page from the physmap (translated guests).
pub const XENMEM_REMOVE_FROM_PHYSMAP: u64 = 15;
/// Batched `ADD_TO_PHYSMAP`.
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u64 = 23;

/// [`XenAddToPhysmap::space`]: the shared-info page.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// [`XenAddToPhysmap::space`]: a grant-table frame.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// [`XenAddToPhysmap::space`]: a GMFN.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// [`XenAddToPhysmap::space`]: a range of GMFNs.
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// [`XenAddToPhysmap::space`]: a GMFN of another domain (batch form only).
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// [`XenAddToPhysmap::space`]: device MMIO (Arm only).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;

/// `vm_assist` command: enable an assist.
pub const VMASST_CMD_ENABLE: u64 = 0;
/// `vm_assist` command: disable an assist.
pub const VMASST_CMD_DISABLE: u64 = 1;
/// x86-32: emulate 4 GiB segment limits.
pub const VMASST_TYPE_4GB_SEGMENTS: u64 = 0;
/// x86-32: trap when the 4 GiB-segment emulation is used.
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u64 = 1;
/// The guest may write L1 entries directly; the hypervisor traps the write, validates and emulates it.
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u64 = 2;
/// x86-PAE: page directories above 4 GiB.
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u64 = 3;
/// Architectural virtual IOPL semantics.
pub const VMASST_TYPE_ARCHITECTURAL_IOPL: u64 = 4;
/// Flag runstate-area updates with `XEN_RUNSTATE_UPDATE`.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u64 = 5;
/// x86-64: hide the M2P from guest user mode.
pub const VMASST_TYPE_M2P_STRICT: u64 = 32;

/// Argument of the reservation commands (`xen_memory_reservation`), 32 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenMemoryReservation {
    /// Guest pointer to an array of frame numbers (IN and/or OUT depending on the command).
    pub extent_start: u64,
    pub nr_extents: u64,
    /// Each extent is `2^extent_order` pages.
    pub extent_order: u32,
    /// `XENMEMF_*` flags (address bits, NUMA node).
    pub mem_flags: u32,
    pub domid: DomId,
    pub _pad0: [u8; 6],
}

/// Argument of the per-domain queries (`xen_memory_domain`), 2 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenMemoryDomain {
    pub domid: DomId,
}

/// Argument of [`XENMEM_MEMORY_MAP`] (`xen_memory_map`), 16 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenMemoryMap {
    /// In: capacity of `buffer` in entries; out: entries written.
    pub nr_entries: u32,
    pub _pad0: u32,
    /// Guest pointer to an array of 20-byte E820 entries (`addr: u64, size: u64, type: u32`, packed).
    pub buffer: u64,
}

/// Argument of [`XENMEM_ADD_TO_PHYSMAP`] (`xen_add_to_physmap`), 24 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenAddToPhysmap {
    pub domid: DomId,
    /// Number of pages for `XENMAPSPACE_GMFN_RANGE`.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space.
    pub idx: u64,
    /// Where the page should appear.
    pub gpfn: u64,
}

/// Argument of [`XENMEM_MACHPHYS_MAPPING`] (`xen_machphys_mapping`), 24 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenMachphysMapping {
    pub v_start: u64,
    pub v_end: u64,
    /// Highest MFN that can be looked up.
    pub max_mfn: u64,
}

layout!(XenMemoryReservation, 32; nr_extents @ 8, extent_order @ 16, mem_flags @ 20, domid @ 24);
layout!(XenMemoryDomain, 2);
layout!(XenMemoryMap, 16; buffer @ 8);
layout!(XenAddToPhysmap, 24; space @ 4, idx @ 8, gpfn @ 16);
layout!(XenMachphysMapping, 24);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmu_numbers_are_xens() {
        assert_eq!(
            [
                MMU_NORMAL_PT_UPDATE,
                MMU_MACHPHYS_UPDATE,
                MMU_PT_UPDATE_PRESERVE_AD,
                MMU_PT_UPDATE_NO_TRANSLATE
            ],
            [0, 1, 2, 3]
        );
        let ext = [
            MMUEXT_PIN_L1_TABLE,
            MMUEXT_PIN_L2_TABLE,
            MMUEXT_PIN_L3_TABLE,
            MMUEXT_PIN_L4_TABLE,
            MMUEXT_UNPIN_TABLE,
            MMUEXT_NEW_BASEPTR,
            MMUEXT_TLB_FLUSH_LOCAL,
            MMUEXT_INVLPG_LOCAL,
            MMUEXT_TLB_FLUSH_MULTI,
            MMUEXT_INVLPG_MULTI,
            MMUEXT_TLB_FLUSH_ALL,
            MMUEXT_INVLPG_ALL,
            MMUEXT_FLUSH_CACHE,
            MMUEXT_SET_LDT,
        ];
        for (i, c) in ext.into_iter().enumerate() {
            assert_eq!(c, i as u32);
        }
        assert_eq!(MMUEXT_NEW_USER_BASEPTR, 15);
        assert_eq!(
            (
                MMUEXT_CLEAR_PAGE,
                MMUEXT_COPY_PAGE,
                MMUEXT_FLUSH_CACHE_GLOBAL
            ),
            (16, 17, 18)
        );
        assert_eq!((MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER), (19, 20));
        assert_eq!(
            (UVMF_NONE, UVMF_TLB_FLUSH, UVMF_INVLPG, UVMF_FLUSHTYPE_MASK),
            (0, 1, 2, 3)
        );
        assert_eq!((UVMF_MULTI, UVMF_LOCAL, UVMF_ALL), (0, 0, 4));
    }

    #[test]
    fn memory_numbers_are_xens() {
        let ops = [
            XENMEM_INCREASE_RESERVATION,
            XENMEM_DECREASE_RESERVATION,
            XENMEM_MAXIMUM_RAM_PAGE,
            XENMEM_CURRENT_RESERVATION,
            XENMEM_MAXIMUM_RESERVATION,
            XENMEM_MACHPHYS_MFN_LIST,
            XENMEM_POPULATE_PHYSMAP,
            XENMEM_ADD_TO_PHYSMAP,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(op, i as u64);
        }
        assert_eq!(
            (
                XENMEM_MEMORY_MAP,
                XENMEM_MACHINE_MEMORY_MAP,
                XENMEM_EXCHANGE
            ),
            (9, 10, 11)
        );
        assert_eq!(
            (
                XENMEM_MACHPHYS_MAPPING,
                XENMEM_SET_MEMORY_MAP,
                XENMEM_MAXIMUM_GPFN
            ),
            (12, 13, 14)
        );
        assert_eq!(
            (XENMEM_REMOVE_FROM_PHYSMAP, XENMEM_ADD_TO_PHYSMAP_BATCH),
            (15, 23)
        );
        assert_eq!(
            (
                XENMAPSPACE_SHARED_INFO,
                XENMAPSPACE_GRANT_TABLE,
                XENMAPSPACE_GMFN
            ),
            (0, 1, 2)
        );
        assert_eq!(
            (
                XENMAPSPACE_GMFN_RANGE,
                XENMAPSPACE_GMFN_FOREIGN,
                XENMAPSPACE_DEV_MMIO
            ),
            (3, 4, 5)
        );
    }

    #[test]
    fn vm_assist_numbers_are_xens() {
        assert_eq!((VMASST_CMD_ENABLE, VMASST_CMD_DISABLE), (0, 1));
        assert_eq!(
            (VMASST_TYPE_4GB_SEGMENTS, VMASST_TYPE_4GB_SEGMENTS_NOTIFY),
            (0, 1)
        );
        assert_eq!(VMASST_TYPE_WRITABLE_PAGETABLES, 2);
        assert_eq!(VMASST_TYPE_PAE_EXTENDED_CR3, 3);
        assert_eq!(VMASST_TYPE_ARCHITECTURAL_IOPL, 4);
        assert_eq!(VMASST_TYPE_RUNSTATE_UPDATE_FLAG, 5);
        assert_eq!(VMASST_TYPE_M2P_STRICT, 32);
    }
}
