//! The shared structures of the Xen x86_64 PV ABI (`xen.h`, `arch-x86/xen.h`, `arch-x86/xen-x86_64.h`).
//!
//! Every structure is `#[repr(C)]` with Xen's x86_64 layout and field names; C's implicit padding is spelled
//! out as `_pad*` fields so that the structures can derive [`IntoBytes`]. Sizes and offsets are pinned at
//! compile time. Structures too large for `Default` are created with zerocopy's `FromZeros::new_zeroed()`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::types::Maddr;

mod calls;

pub use calls::{
    CpuUserRegs, IretContext, MmuUpdate, MmuextOp, MulticallEntry, SEGBASE_FS, SEGBASE_GS_KERNEL,
    SEGBASE_GS_USER, SEGBASE_GS_USER_SEL, SchedShutdown, TI_DPL_MASK, TI_IF, TrapInfo,
    VGCF_IN_SYSCALL, XenFeatureInfo,
};

/// A domain id (`domid_t`).
pub type DomId = u16;
/// Domain ids at and above this are reserved for the special values below.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// The calling domain.
pub const DOMID_SELF: DomId = 0x7FF0;
/// As a foreign domain: restrict mappings to I/O memory.
pub const DOMID_IO: DomId = 0x7FF1;
/// As a foreign domain: the hypervisor's own memory (privileged callers only).
pub const DOMID_XEN: DomId = 0x7FF2;
/// The owner of shared (copy-on-write) pages.
pub const DOMID_COW: DomId = 0x7FF3;
/// An unknown or invalid owner.
pub const DOMID_INVALID: DomId = 0x7FF4;
/// No particular domain requested.
pub const DOMID_ANY: DomId = 0x7FF5;
/// The idle domain.
pub const DOMID_IDLE: DomId = 0x7FFF;
/// Mask of the bits a domain id may use.
pub const DOMID_MASK: DomId = 0x7FFF;

/// Number of `vcpu_info` slots in [`SharedInfo`] (Xen's `XEN_LEGACY_MAX_VCPUS` on x86).
pub const MAX_VIRT_CPUS_SHARED: usize = 32;
/// Xen's name for [`MAX_VIRT_CPUS_SHARED`].
pub const XEN_LEGACY_MAX_VCPUS: usize = MAX_VIRT_CPUS_SHARED;

/// [`VcpuTimeInfo::flags`]: the TSC is synchronised across vCPUs (Xen's `XEN_PVCLOCK_TSC_STABLE_BIT`).
pub const VCPU_TIME_TSC_STABLE: u8 = 1 << 0;
/// [`VcpuTimeInfo::flags`]: the vCPU was paused by the host (Xen's `XEN_PVCLOCK_GUEST_STOPPED`).
pub const VCPU_TIME_GUEST_STOPPED: u8 = 1 << 1;

/// Per-vCPU system time (`vcpu_time_info`), 32 bytes.
///
/// Updated under a sequence lock: `version` is odd while an update is in progress; a reader reads `version`,
/// the fields, then `version` again, and retries if the two differ or are odd. System time in ns since boot is
/// [`system_time_at`](Self::system_time_at)`(tsc)`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuTimeInfo {
    pub version: u32,
    pub pad0: u32,
    /// TSC value when the fields were last updated.
    pub tsc_timestamp: u64,
    /// System time (ns since boot) at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-to-nanoseconds multiplier, a 32.32 fixed-point fraction applied after the shift.
    pub tsc_to_system_mul: u32,
    /// Shift applied to a TSC delta before the multiplication (left if positive, right if negative).
    pub tsc_shift: i8,
    /// `VCPU_TIME_*` flags.
    pub flags: u8,
    pub pad1: [u8; 2],
}

impl VcpuTimeInfo {
    /// True while the writer is in the middle of an update.
    pub const fn update_in_progress(&self) -> bool {
        self.version & 1 != 0
    }

    /// System time in ns at TSC value `tsc`: `system_time + scale_delta(tsc - tsc_timestamp)`.
    pub const fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp);
        self.system_time
            .wrapping_add(scale_delta(delta, self.tsc_to_system_mul, self.tsc_shift))
    }
}

/// Xen's TSC scaling: shift `delta` by `shift` (left if positive, right if negative), then multiply by the
/// 32.32 fixed-point fraction `mul` and drop the fraction.
pub const fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let amount = shift.unsigned_abs() as u32;
    let shifted = if shift >= 0 {
        match delta.checked_shl(amount) {
            Some(v) => v,
            None => 0,
        }
    } else {
        match delta.checked_shr(amount) {
            Some(v) => v,
            None => 0,
        }
    };
    ((shifted as u128 * mul as u128) >> 32) as u64
}

/// Architecture part of [`VcpuInfo`] (`arch_vcpu_info`), 16 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ArchVcpuInfo {
    /// The faulting address of the last page fault delivered to the guest (the guest cannot read CR2).
    pub cr2: u64,
    pub pad: u64,
}

/// Per-vCPU event and time state (`vcpu_info`), 64 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuInfo {
    /// Set non-zero by the hypervisor when an event is pending; the guest clears it before scanning.
    pub evtchn_upcall_pending: u8,
    /// Non-zero: no upcall is delivered (the guest's virtual interrupt flag, inverted).
    pub evtchn_upcall_mask: u8,
    pub _pad0: [u8; 6],
    /// Bit `i` set: word `i` of [`SharedInfo::evtchn_pending`] may hold pending unmasked ports.
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}

/// Architecture part of [`SharedInfo`] (`arch_shared_info`), 48 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ArchSharedInfo {
    /// Number of valid entries in the guest's P2M.
    pub max_pfn: u64,
    /// Frame of the list of frames of the list of P2M frames (0: not set up).
    pub pfn_to_mfn_frame_list_list: u64,
    pub nmi_reason: u64,
    /// CR3 of the address space in which `p2m_vaddr` is valid (0: the fields below are unused).
    pub p2m_cr3: u64,
    /// Virtual address of the guest's linear P2M list.
    pub p2m_vaddr: u64,
    /// Incremented by the guest before and after changing the P2M mappings.
    pub p2m_generation: u64,
}

/// The page shared between the hypervisor and a domain (`shared_info`), 3136 bytes.
///
/// Its machine address is [`StartInfo::shared_info`]. Word `w`, bit `b` of `evtchn_pending` / `evtchn_mask`
/// is event-channel port `64 * w + b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; MAX_VIRT_CPUS_SHARED],
    /// Pending bit per port; set by the hypervisor, cleared by the guest.
    pub evtchn_pending: [u64; 64],
    /// Mask bit per port; written only by the guest.
    pub evtchn_mask: [u64; 64],
    /// Wall-clock version counter (sequence lock, as [`VcpuTimeInfo::version`]).
    pub wc_version: u32,
    /// Wall-clock seconds since the epoch at system time 0 (low 32 bits).
    pub wc_sec: u32,
    pub wc_nsec: u32,
    /// High 32 bits of the wall-clock seconds.
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}

/// The magic string a Xen x86_64 PV [`StartInfo`] begins with (`"xen-<version>-<platform>"`; the rest of
/// the 32-byte field is NUL).
pub const START_INFO_MAGIC: &[u8] = b"xen-3.0-x86_64";
/// [`START_INFO_MAGIC`] padded with NULs to the size of [`StartInfo::magic`].
pub const START_INFO_MAGIC_FIELD: [u8; 32] = {
    let mut field = [0u8; 32];
    let mut i = 0;
    while i < START_INFO_MAGIC.len() {
        field[i] = START_INFO_MAGIC[i];
        i += 1;
    }
    field
};
/// Size of [`StartInfo::cmd_line`] (Xen's `MAX_GUEST_CMDLINE`).
pub const MAX_GUEST_CMDLINE: usize = 1024;

/// [`StartInfo::flags`]: the domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// [`StartInfo::flags`]: the domain is the initial control domain.
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// [`StartInfo::flags`]: the module at `mod_start` is a multiboot module package.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// [`StartInfo::flags`]: `mod_start` is a PFN rather than a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// [`StartInfo::flags`]: the tools understand a virtually mapped P2M.
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// [`StartInfo::flags`]: bits reserved for power-management options.
pub const SIF_PM_MASK: u32 = 0xFF << 8;

/// The console part of [`StartInfo`] (the `domU` arm of Xen's `console` union), 16 bytes.
///
/// For the initial domain Xen reuses these bytes as `{ info_off: u32, info_size: u32 }` (the low and high
/// halves of `mfn`) locating a `dom0_vga_console_info` inside the start-info page.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct StartInfoConsole {
    /// Machine frame of the console ring page.
    pub mfn: u64,
    /// Event channel of the console ring.
    pub evtchn: u32,
    pub _pad0: u32,
}

/// The start-of-day information page (`start_info`), 1168 bytes. `RSI` points to it at guest entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StartInfo {
    /// [`START_INFO_MAGIC_FIELD`].
    pub magic: [u8; 32],
    /// Total pages allocated to the domain (the length of the P2M list).
    pub nr_pages: u64,
    /// Machine address of the [`SharedInfo`] page.
    pub shared_info: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    pub _pad0: u32,
    /// Machine frame of the xenstore ring page.
    pub store_mfn: u64,
    /// Event channel of the xenstore ring.
    pub store_evtchn: u32,
    pub _pad1: u32,
    pub console: StartInfoConsole,
    /// Virtual address of the bootstrap top-level page table.
    pub pt_base: u64,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the P2M list (`nr_pages` machine frame numbers).
    pub mfn_list: u64,
    /// Virtual address of the pre-loaded module (its PFN if `SIF_MOD_START_PFN`); 0 if none.
    pub mod_start: u64,
    /// Size of the module in bytes.
    pub mod_len: u64,
    /// NUL-terminated command line.
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First PFN of the initial P2M table frames.
    pub first_p2m_pfn: u64,
    /// Number of initial P2M table frames.
    pub nr_p2m_frames: u64,
}

impl StartInfo {
    /// True if `magic` begins with [`START_INFO_MAGIC`].
    pub fn has_valid_magic(&self) -> bool {
        self.magic.starts_with(START_INFO_MAGIC)
    }

    /// The command line up to (not including) its first NUL.
    pub fn cmd_line_bytes(&self) -> &[u8] {
        let end = self
            .cmd_line
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MAX_GUEST_CMDLINE);
        &self.cmd_line[..end]
    }

    /// The shared-info page's machine address.
    pub const fn shared_info_maddr(&self) -> Maddr {
        Maddr(self.shared_info)
    }
}

// Xen's x86_64 sizes and offsets, checked at compile time.
layout!(VcpuTimeInfo, 32;
    version @ 0, pad0 @ 4, tsc_timestamp @ 8, system_time @ 16, tsc_to_system_mul @ 24, tsc_shift @ 28,
    flags @ 29, pad1 @ 30
);
layout!(ArchVcpuInfo, 16; cr2 @ 0, pad @ 8);
layout!(VcpuInfo, 64;
    evtchn_upcall_pending @ 0, evtchn_upcall_mask @ 1, evtchn_pending_sel @ 8, arch @ 16, time @ 32
);
layout!(ArchSharedInfo, 48;
    max_pfn @ 0, pfn_to_mfn_frame_list_list @ 8, nmi_reason @ 16, p2m_cr3 @ 24, p2m_vaddr @ 32,
    p2m_generation @ 40
);
layout!(SharedInfo, 3136;
    vcpu_info @ 0, evtchn_pending @ 0x800, evtchn_mask @ 0xA00, wc_version @ 0xC00, wc_sec @ 0xC04,
    wc_nsec @ 0xC08, wc_sec_hi @ 0xC0C, arch @ 0xC10
);
/// Our extension (deviation h): the byte offset, within the start_info page, of a `u32` holding the
/// domain's id. Xen's `start_info` ends at byte 1168 and has no domain id (Xen guests learn it from
/// xenstore, which this hypervisor does not have); the builder writes it right after Xen's structure, where
/// a Xen guest never looks.
pub const START_INFO_DOMID_OFFSET: usize = 1168;

layout!(StartInfoConsole, 16; mfn @ 0, evtchn @ 8);
layout!(StartInfo, 1168;
    magic @ 0, nr_pages @ 32, shared_info @ 40, flags @ 48, store_mfn @ 56, store_evtchn @ 64, console @ 72,
    pt_base @ 88, nr_pt_frames @ 96, mfn_list @ 104, mod_start @ 112, mod_len @ 120, cmd_line @ 128,
    first_p2m_pfn @ 1152, nr_p2m_frames @ 1160
);

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn constants_are_xens() {
        assert_eq!(DOMID_SELF, 0x7FF0);
        assert_eq!(DOMID_IO, 0x7FF1);
        assert_eq!(DOMID_XEN, 0x7FF2);
        assert_eq!(DOMID_COW, 0x7FF3);
        assert_eq!(DOMID_INVALID, 0x7FF4);
        assert_eq!(DOMID_ANY, 0x7FF5);
        assert_eq!(DOMID_IDLE, 0x7FFF);
        assert_eq!((SIF_PRIVILEGED, SIF_INITDOMAIN), (1, 2));
        assert_eq!(
            (SIF_MULTIBOOT_MOD, SIF_MOD_START_PFN, SIF_VIRT_P2M_4TOOLS),
            (4, 8, 16)
        );
        assert_eq!(SIF_PM_MASK, 0xFF00);
        assert_eq!(MAX_VIRT_CPUS_SHARED, 32);
        assert_eq!((VCPU_TIME_TSC_STABLE, VCPU_TIME_GUEST_STOPPED), (1, 2));
    }

    #[test]
    fn start_info_magic_and_cmdline() {
        assert_eq!(&START_INFO_MAGIC_FIELD[..14], b"xen-3.0-x86_64");
        assert!(START_INFO_MAGIC_FIELD[14..].iter().all(|&b| b == 0));
        let mut si = StartInfo::new_zeroed();
        assert!(!si.has_valid_magic());
        si.magic = START_INFO_MAGIC_FIELD;
        assert!(si.has_valid_magic());
        assert_eq!(si.cmd_line_bytes(), b"");
        si.cmd_line[..5].copy_from_slice(b"quiet");
        assert_eq!(si.cmd_line_bytes(), b"quiet");
        si.cmd_line = [b'x'; MAX_GUEST_CMDLINE];
        assert_eq!(si.cmd_line_bytes().len(), MAX_GUEST_CMDLINE);
        si.shared_info = 0x1234_5000;
        assert_eq!(si.shared_info_maddr(), Maddr(0x1234_5000));
        // The raw bytes are at Xen's offsets.
        si.flags = SIF_INITDOMAIN;
        assert_eq!(si.as_bytes()[48], 2);
        assert_eq!(&si.as_bytes()[40..48], &0x1234_5000u64.to_le_bytes());
    }

    #[test]
    fn shared_info_bytes() {
        let mut sh = SharedInfo::new_zeroed();
        sh.vcpu_info[1].evtchn_upcall_pending = 1;
        sh.evtchn_pending[0] = 1;
        sh.wc_sec = 7;
        let bytes = sh.as_bytes();
        assert_eq!(bytes.len(), 3136);
        assert_eq!(bytes[64], 1);
        assert_eq!(bytes[0x800], 1);
        assert_eq!(bytes[0xC04], 7);
    }

    #[test]
    fn time_scaling() {
        // mul = 2^31 halves, shift = 1 doubles: the identity.
        assert_eq!(scale_delta(1000, 1 << 31, 1), 1000);
        assert_eq!(scale_delta(1000, 1 << 31, 0), 500);
        assert_eq!(scale_delta(1000, 1 << 31, -1), 250);
        assert_eq!(scale_delta(1000, u32::MAX, -64), 0);
        assert_eq!(scale_delta(u64::MAX, u32::MAX, 0), u64::MAX - (1 << 32));
        let t = VcpuTimeInfo {
            version: 2,
            tsc_timestamp: 10_000,
            system_time: 5_000_000,
            tsc_to_system_mul: 1 << 31,
            tsc_shift: 0,
            ..Default::default()
        };
        assert!(!t.update_in_progress());
        assert_eq!(t.system_time_at(12_000), 5_001_000);
    }
}
