//! Structures and flags passed to individual hypercalls (`xen.h`, `arch-x86/xen.h`, `arch-x86/xen-x86_64.h`):
//! `trap_info`, `mmu_update`, `mmuext_op`, `multicall_entry`, `cpu_user_regs`, `iret_context`,
//! `sched_shutdown`, `xen_feature_info`. Re-exported from [`crate::xen`].

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::types::Maddr;

/// [`TrapInfo::flags`]: the DPL from which a software interrupt may reach this vector.
pub const TI_DPL_MASK: u8 = 3;
/// [`TrapInfo::flags`]: mask events (set `evtchn_upcall_mask`) on entry, like an interrupt gate clearing IF.
pub const TI_IF: u8 = 1 << 2;

/// One virtual-IDT entry for `set_trap_table` (`trap_info`), 16 bytes. A table ends with `address == 0`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct TrapInfo {
    pub vector: u8,
    /// Bits 0-1: DPL ([`TI_DPL_MASK`]); bit 2: [`TI_IF`].
    pub flags: u8,
    /// Code selector of the handler.
    pub cs: u16,
    pub _pad0: [u8; 4],
    /// Handler address.
    pub address: u64,
}

impl TrapInfo {
    /// The DPL field of `flags`.
    pub const fn dpl(&self) -> u8 {
        self.flags & TI_DPL_MASK
    }
    /// True if entry through this vector masks events.
    pub const fn masks_events(&self) -> bool {
        self.flags & TI_IF != 0
    }
}

/// One request to `mmu_update` (`mmu_update`), 16 bytes. The low two bits of `ptr` are the `MMU_*` command,
/// the rest the machine address of the entry to write.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MmuUpdate {
    pub ptr: u64,
    pub val: u64,
}

impl MmuUpdate {
    /// The `MMU_*` command in `ptr[1:0]`.
    pub const fn command(&self) -> u64 {
        self.ptr & crate::mm::MMU_CMD_MASK
    }
    /// The machine address in `ptr` with the command bits cleared.
    pub const fn maddr(&self) -> Maddr {
        Maddr(self.ptr & !crate::mm::MMU_CMD_MASK)
    }
}

/// One request to `mmuext_op` (`mmuext_op`), 24 bytes.
///
/// `arg1` is an MFN (pin/unpin, new base pointers, clear/copy page) or a linear address (INVLPG, SET_LDT);
/// `arg2` is an entry count (SET_LDT), a pointer to a vCPU bitmap (the `_MULTI` flushes) or the source MFN
/// (COPY_PAGE).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MmuextOp {
    /// `MMUEXT_*`.
    pub cmd: u32,
    pub _pad0: u32,
    pub arg1: u64,
    pub arg2: u64,
}

/// One entry of a `multicall` batch (`multicall_entry`), 64 bytes. The hypervisor writes `result`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MulticallEntry {
    pub op: u64,
    pub result: u64,
    /// Arguments; only the first [`MAX_ARGS`](crate::hypercall::MAX_ARGS) are used.
    pub args: [u64; 6],
}

/// The guest register frame (`cpu_user_regs`), 200 bytes, in Xen's x86_64 field order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CpuUserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// Hypervisor-private.
    pub error_code: u32,
    /// Hypervisor-private.
    pub entry_vector: u32,
    pub rip: u64,
    pub cs: u16,
    pub _pad0: [u16; 1],
    /// The guest's event mask at the time of the frame (stands in for RFLAGS.IF: IF == !mask).
    pub saved_upcall_mask: u8,
    pub _pad1: [u8; 3],
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u16,
    pub _pad2: [u16; 3],
    pub es: u16,
    pub _pad3: [u16; 3],
    pub ds: u16,
    pub _pad4: [u16; 3],
    pub fs: u16,
    pub _pad5: [u16; 3],
    pub gs: u16,
    pub _pad6: [u16; 3],
}

/// [`IretContext::flags`]: the guest was entered through its SYSCALL path (Xen's `VGCF_in_syscall`).
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

/// The frame the `iret` hypercall pops from the guest kernel stack (`iret_context`), lowest address first,
/// 72 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct IretContext {
    pub rax: u64,
    pub r11: u64,
    pub rcx: u64,
    /// `VGCF_*` flags.
    pub flags: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// `set_segment_base`: set the FS base.
pub const SEGBASE_FS: u64 = 0;
/// `set_segment_base`: set the user GS base (the one active in guest user mode).
pub const SEGBASE_GS_USER: u64 = 1;
/// `set_segment_base`: set the kernel GS base.
pub const SEGBASE_GS_KERNEL: u64 = 2;
/// `set_segment_base`: load the user GS selector given in `base[15:0]`. **Refused with `-ENOSYS`**
/// (deviation k in the crate docs): a ring-1 kernel loads selectors itself (`mov %ax, %gs`; every GDT
/// descriptor is pre-accessed), and there is no separate kernel GS context for the hypervisor to preserve
/// around the load.
pub const SEGBASE_GS_USER_SEL: u64 = 3;

/// Argument of `SCHEDOP_shutdown` and `SCHEDOP_shutdown_code` (`sched_shutdown`), 4 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*` (see [`crate::sched`]).
    pub reason: u32,
}

/// Argument of `XENVER_get_features` (`xen_feature_info`), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenFeatureInfo {
    /// In: which 32-bit word of feature bits to return (`XENFEAT_*` / 32).
    pub submap_idx: u32,
    /// Out: the feature bits.
    pub submap: u32,
}

// Xen's x86_64 sizes and offsets, checked at compile time.
layout!(TrapInfo, 16; vector @ 0, flags @ 1, cs @ 2, address @ 8);
layout!(MmuUpdate, 16; ptr @ 0, val @ 8);
layout!(MmuextOp, 24; cmd @ 0, arg1 @ 8, arg2 @ 16);
layout!(MulticallEntry, 64; op @ 0, result @ 8, args @ 16);
layout!(CpuUserRegs, 200;
    r15 @ 0, r14 @ 8, r13 @ 16, r12 @ 24, rbp @ 32, rbx @ 40, r11 @ 48, r10 @ 56, r9 @ 64, r8 @ 72,
    rax @ 80, rcx @ 88, rdx @ 96, rsi @ 104, rdi @ 112,
    error_code @ 120, entry_vector @ 124, rip @ 128, cs @ 136, saved_upcall_mask @ 140, rflags @ 144,
    rsp @ 152, ss @ 160, es @ 168, ds @ 176, fs @ 184, gs @ 192
);
layout!(IretContext, 72;
    rax @ 0, r11 @ 8, rcx @ 16, flags @ 24, rip @ 32, cs @ 40, rflags @ 48, rsp @ 56, ss @ 64
);
layout!(SchedShutdown, 4);
layout!(XenFeatureInfo, 8; submap @ 4);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_xens() {
        assert_eq!((TI_DPL_MASK, TI_IF), (3, 4));
        assert_eq!(VGCF_IN_SYSCALL, 256);
        assert_eq!(SEGBASE_FS, 0);
        assert_eq!(SEGBASE_GS_USER, 1);
        assert_eq!(SEGBASE_GS_KERNEL, 2);
        assert_eq!(SEGBASE_GS_USER_SEL, 3);
    }

    #[test]
    fn helpers() {
        let u = MmuUpdate {
            ptr: 0x5008 | 2,
            val: 0,
        };
        assert_eq!(u.command(), crate::mm::MMU_PT_UPDATE_PRESERVE_AD);
        assert_eq!(u.maddr(), Maddr(0x5008));
        let t = TrapInfo {
            vector: 0x80,
            flags: 3 | TI_IF,
            cs: 0x19,
            address: 1,
            ..Default::default()
        };
        assert_eq!(t.dpl(), 3);
        assert!(t.masks_events());
    }
}
