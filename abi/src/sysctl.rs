//! System control (`sysctl.h`, and the per-domain record `xen_domctl_getdomaininfo` from `domctl.h`): the
//! `sysctl` envelope, its command numbers, and `XEN_SYSCTL_getdomaininfolist`, which tells the control
//! domain which domains exist.
//!
//! `sysctl(op)`: `RDI` = guest pointer to a [`XenSysctl`]. The hypervisor, in Xen's order:
//!
//! 1. copies the whole [`XenSysctl`] in (`-EFAULT` if it cannot);
//! 2. compares [`XenSysctl::interface_version`] with [`XEN_SYSCTL_INTERFACE_VERSION`] (`-EACCES` if they
//!    differ);
//! 3. checks that the caller is the control domain (`SIF_PRIVILEGED`, domain 0 here; `-EPERM` otherwise);
//! 4. runs [`XenSysctl::cmd`] (`-ENOSYS` for a command it does not implement);
//! 5. on success writes the whole structure back, OUT fields filled in, and returns 0.
//!
//! [`XEN_SYSCTL_GETDOMAININFOLIST`] reads a [`XenSysctlGetdomaininfolist`] from the start of
//! [`XenSysctl::u`]: starting at domain id `first_domain`, it writes one [`XenDomctlGetdomaininfo`] per
//! existing domain, in ascending id order, to the guest array `buffer` (room for `max_domains` records) and
//! returns their number in `num_domains`. A `first_domain` past the last domain gives 0 records; so does
//! `max_domains` 0 (the buffer is then not touched, as in Xen).
//!
//! # Deviations from Xen (abi deviation i)
//!
//! - **Commands.** Only [`XEN_SYSCTL_GETDOMAININFOLIST`] is implemented; every other command (including
//!   those numbered here for reference) returns `-ENOSYS`.
//! - **All or nothing.** The hypervisor checks that the whole record array and the [`XenSysctl`] itself are
//!   writable before it writes anything, so a `-EFAULT` leaves the caller's memory untouched. Xen copies
//!   records one at a time and may leave the first ones written when a later one faults.
//! - **Stopped domains are already destroyed, then reaped.** The hypervisor gives a stopped domain's
//!   memory back at once and removes it from the domain table at the scheduler's next decision (abi
//!   deviation n), so it normally leaves the list at once. Until then it is listed, with
//!   [`XEN_DOMINF_SHUTDOWN`] and its reason (a domain the hypervisor crashed has
//!   [`SHUTDOWN_CRASH`](crate::sched::SHUTDOWN_CRASH), as in
//!   Xen), and with [`XEN_DOMINF_DYING`], `tot_pages` 0 and `shared_info_frame`
//!   [`XEN_INVALID_SHARED_INFO_FRAME`], because its memory and shared-info page are gone. Our shutdown
//!   exit code (abi deviation d) is not reported.
//! - **Fields with nothing behind them.** `outstanding_pages`, `shr_pages` and `paged_pages` are 0 (no
//!   claims, sharing or paging); `ssidref` is 0 (no XSM); `handle` is all zeroes (no toolstack sets one);
//!   `cpupool` is 0; `arch_config` is all zeroes (a PV domain here has no emulated devices and no MSR
//!   options). `gpaddr_bits` is the CPU's physical-address width, like Xen's on x86.
//!
//! Not deviations, but worth knowing: every domain has exactly one vCPU (`nr_online_vcpus` 1, `max_vcpu_id`
//! 0), and there is one physical CPU, so [`XEN_DOMINF_RUNNING`] is set for the caller only. `cpu_time` is
//! the real time (ns) the domain's vCPU has held the CPU, including the hypervisor's work on its behalf, up
//! to the moment of the call. `shared_info_frame` is the page's machine frame number, which is its GMFN for
//! a PV domain (as in Xen).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::xen::DomId;

/// The interface version this hypervisor implements, to be put in [`XenSysctl::interface_version`]: Xen
/// 4.17's (`0x15`), whose [`XenDomctlGetdomaininfo`] layout is the one below.
pub const XEN_SYSCTL_INTERFACE_VERSION: u32 = 0x0000_0015;

/// Read the hypervisor's console ring (not implemented here).
pub const XEN_SYSCTL_READCONSOLE: u32 = 1;
/// Trace-buffer control (not implemented here).
pub const XEN_SYSCTL_TBUF_OP: u32 = 2;
/// Physical machine information (not implemented here).
pub const XEN_SYSCTL_PHYSINFO: u32 = 3;
/// The scheduler's id (not implemented here).
pub const XEN_SYSCTL_SCHED_ID: u32 = 4;
/// Performance counters (not implemented here).
pub const XEN_SYSCTL_PERFC_OP: u32 = 5;
/// List domains. Argument: [`XenSysctlGetdomaininfolist`] at the start of [`XenSysctl::u`].
pub const XEN_SYSCTL_GETDOMAININFOLIST: u32 = 6;
/// Inject debug keys (not implemented here).
pub const XEN_SYSCTL_DEBUG_KEYS: u32 = 7;
/// Per-physical-CPU idle time (not implemented here).
pub const XEN_SYSCTL_GETCPUINFO: u32 = 8;
/// Free heap memory in an address range (not implemented here).
pub const XEN_SYSCTL_AVAILHEAP: u32 = 9;

/// [`XenDomctlGetdomaininfo::flags`]: the domain is being destroyed (here: stopped, its memory released).
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
/// [`XenDomctlGetdomaininfo::flags`]: an HVM guest (here: a `kind=hvm` domain).
pub const XEN_DOMINF_HVM_GUEST: u32 = 1 << 1;
/// [`XenDomctlGetdomaininfo::flags`]: the guest has shut down; the reason is in bits
/// [`XEN_DOMINF_SHUTDOWNSHIFT`].. ([`dominf_shutdown_reason`]).
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
/// [`XenDomctlGetdomaininfo::flags`]: paused by the control domain (`XEN_DOMCTL_pausedomain`).
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
/// [`XenDomctlGetdomaininfo::flags`]: every online vCPU is blocked waiting for an event.
pub const XEN_DOMINF_BLOCKED: u32 = 1 << 4;
/// [`XenDomctlGetdomaininfo::flags`]: a vCPU is on a physical CPU right now.
pub const XEN_DOMINF_RUNNING: u32 = 1 << 5;
/// [`XenDomctlGetdomaininfo::flags`]: being debugged (never set here).
pub const XEN_DOMINF_DEBUGGED: u32 = 1 << 6;
/// [`XenDomctlGetdomaininfo::flags`]: a xenstore domain (never set here).
pub const XEN_DOMINF_XS_DOMAIN: u32 = 1 << 7;
/// [`XenDomctlGetdomaininfo::flags`]: hardware-assisted paging (here: a `kind=hvm` domain's nested paging).
pub const XEN_DOMINF_HAP: u32 = 1 << 8;
/// Mask of the shutdown reason (`SHUTDOWN_*`) in [`XenDomctlGetdomaininfo::flags`], after shifting.
pub const XEN_DOMINF_SHUTDOWNMASK: u32 = 255;
/// Where the shutdown reason starts in [`XenDomctlGetdomaininfo::flags`].
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;

/// [`XenDomctlGetdomaininfo::max_vcpu_id`] of a domain with no vCPU.
pub const XEN_INVALID_MAX_VCPU_ID: u32 = !0;
/// [`XenDomctlGetdomaininfo::shared_info_frame`] when there is no frame to report.
pub const XEN_INVALID_SHARED_INFO_FRAME: u64 = !0;

/// The shutdown reason (`SHUTDOWN_*`) encoded in `flags`; meaningful when [`XEN_DOMINF_SHUTDOWN`] is set.
pub const fn dominf_shutdown_reason(flags: u32) -> u32 {
    (flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK
}

/// The `sysctl` envelope (`xen_sysctl`), 136 bytes: a command, the interface version and a 128-byte union of
/// the commands' arguments ([`XenSysctl::getdomaininfolist`] reads the one this hypervisor implements).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(8))]
pub struct XenSysctl {
    /// `XEN_SYSCTL_*`.
    pub cmd: u32,
    /// Must be [`XEN_SYSCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// The command's argument (Xen's union `u`, padded to 128 bytes).
    pub u: [u8; 128],
}

impl XenSysctl {
    /// Command `cmd` at this interface version, with an all-zero argument.
    pub const fn new(cmd: u32) -> XenSysctl {
        XenSysctl {
            cmd,
            interface_version: XEN_SYSCTL_INTERFACE_VERSION,
            u: [0; 128],
        }
    }

    /// `XEN_SYSCTL_getdomaininfolist` with these arguments (`num_domains` 0).
    pub fn getdomaininfolist_request(first_domain: DomId, max_domains: u32, buffer: u64) -> Self {
        let mut op = XenSysctl::new(XEN_SYSCTL_GETDOMAININFOLIST);
        op.set_getdomaininfolist(&XenSysctlGetdomaininfolist {
            first_domain,
            max_domains,
            buffer,
            ..Default::default()
        });
        op
    }

    /// The union read as the [`XEN_SYSCTL_GETDOMAININFOLIST`] argument.
    pub fn getdomaininfolist(&self) -> XenSysctlGetdomaininfolist {
        XenSysctlGetdomaininfolist::read_from_prefix(&self.u)
            .map(|(v, _)| v)
            .unwrap_or_default()
    }

    /// Store `v` as the union's [`XEN_SYSCTL_GETDOMAININFOLIST`] argument (the rest of the union is kept).
    pub fn set_getdomaininfolist(&mut self, v: &XenSysctlGetdomaininfolist) {
        let b = v.as_bytes();
        self.u[..b.len()].copy_from_slice(b);
    }
}

/// Argument of [`XEN_SYSCTL_GETDOMAININFOLIST`] (`xen_sysctl_getdomaininfolist`), 24 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenSysctlGetdomaininfolist {
    /// In: the lowest domain id to report.
    pub first_domain: DomId,
    pub _pad0: u16,
    /// In: room in `buffer`, in records.
    pub max_domains: u32,
    /// In: guest pointer to an array of [`XenDomctlGetdomaininfo`].
    pub buffer: u64,
    /// Out: records written.
    pub num_domains: u32,
    pub _pad1: u32,
}

/// Architecture part of a domain's configuration (x86 `xen_arch_domainconfig`), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenArchDomainconfig {
    /// `XEN_X86_EMU_*`: emulated devices (none here).
    pub emulation_flags: u32,
    /// `XEN_X86_*` options such as relaxed MSR access (none here).
    pub misc_flags: u32,
}

/// What the hypervisor reports about one domain (`xen_domctl_getdomaininfo`), 112 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlGetdomaininfo {
    /// The domain's id.
    pub domain: DomId,
    pub _pad1: u16,
    /// `XEN_DOMINF_*`, with the shutdown reason in bits 16..24.
    pub flags: u32,
    /// Frames the domain owns now.
    pub tot_pages: u64,
    /// The most frames it may own.
    pub max_pages: u64,
    /// Frames claimed but not yet allocated.
    pub outstanding_pages: u64,
    /// Frames shared with other domains.
    pub shr_pages: u64,
    /// Frames paged out.
    pub paged_pages: u64,
    /// The shared-info page's GMFN (its MFN for a PV domain), or [`XEN_INVALID_SHARED_INFO_FRAME`].
    pub shared_info_frame: u64,
    /// ns its vCPUs have run.
    pub cpu_time: u64,
    /// vCPUs online.
    pub nr_online_vcpus: u32,
    /// The highest vCPU id in use, or [`XEN_INVALID_MAX_VCPU_ID`].
    pub max_vcpu_id: u32,
    /// XSM security label.
    pub ssidref: u32,
    /// The toolstack's 16-byte handle (a UUID) for the domain.
    pub handle: [u8; 16],
    /// The CPU pool it runs in.
    pub cpupool: u32,
    /// Width of its guest-physical address space, in bits.
    pub gpaddr_bits: u8,
    pub _pad2: [u8; 7],
    /// Architecture-specific configuration.
    pub arch_config: XenArchDomainconfig,
}

impl XenDomctlGetdomaininfo {
    /// The shutdown reason (`SHUTDOWN_*`) if [`XEN_DOMINF_SHUTDOWN`] is set.
    pub const fn shutdown_reason(&self) -> Option<u32> {
        if self.flags & XEN_DOMINF_SHUTDOWN != 0 {
            Some(dominf_shutdown_reason(self.flags))
        } else {
            None
        }
    }
}

layout!(XenSysctl, 136; interface_version @ 4, u @ 8);
layout!(XenSysctlGetdomaininfolist, 24; max_domains @ 4, buffer @ 8, num_domains @ 16);
layout!(XenArchDomainconfig, 8; misc_flags @ 4);
layout!(
    XenDomctlGetdomaininfo, 112;
    flags @ 4, tot_pages @ 8, max_pages @ 16, outstanding_pages @ 24, shr_pages @ 32, paged_pages @ 40,
    shared_info_frame @ 48, cpu_time @ 56, nr_online_vcpus @ 64, max_vcpu_id @ 68, ssidref @ 72,
    handle @ 76, cpupool @ 92, gpaddr_bits @ 96, _pad2 @ 97, arch_config @ 104,
);
static_assertions::const_assert_eq!(core::mem::align_of::<XenSysctl>(), 8);
static_assertions::const_assert_eq!(core::mem::align_of::<XenDomctlGetdomaininfo>(), 8);
static_assertions::const_assert!(
    core::mem::size_of::<XenSysctlGetdomaininfolist>() <= core::mem::size_of::<[u8; 128]>()
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_xens() {
        assert_eq!(XEN_SYSCTL_INTERFACE_VERSION, 0x15);
        assert_eq!(
            [
                XEN_SYSCTL_READCONSOLE,
                XEN_SYSCTL_TBUF_OP,
                XEN_SYSCTL_PHYSINFO,
                XEN_SYSCTL_SCHED_ID,
                XEN_SYSCTL_PERFC_OP,
                XEN_SYSCTL_GETDOMAININFOLIST,
                XEN_SYSCTL_DEBUG_KEYS,
                XEN_SYSCTL_GETCPUINFO,
                XEN_SYSCTL_AVAILHEAP,
            ],
            [1, 2, 3, 4, 5, 6, 7, 8, 9]
        );
        let flags = [
            XEN_DOMINF_DYING,
            XEN_DOMINF_HVM_GUEST,
            XEN_DOMINF_SHUTDOWN,
            XEN_DOMINF_PAUSED,
            XEN_DOMINF_BLOCKED,
            XEN_DOMINF_RUNNING,
            XEN_DOMINF_DEBUGGED,
            XEN_DOMINF_XS_DOMAIN,
            XEN_DOMINF_HAP,
        ];
        for (bit, f) in flags.into_iter().enumerate() {
            assert_eq!(f, 1 << bit);
        }
        assert_eq!(
            (XEN_DOMINF_SHUTDOWNMASK, XEN_DOMINF_SHUTDOWNSHIFT),
            (255, 16)
        );
        assert_eq!(XEN_INVALID_MAX_VCPU_ID, 0xffff_ffff);
        assert_eq!(XEN_INVALID_SHARED_INFO_FRAME, u64::MAX);
    }

    #[test]
    fn shutdown_reason_lives_in_bits_16_to_23() {
        let crashed = XEN_DOMINF_SHUTDOWN | XEN_DOMINF_DYING | (crate::sched::SHUTDOWN_CRASH << 16);
        assert_eq!(dominf_shutdown_reason(crashed), 3);
        let info = XenDomctlGetdomaininfo {
            flags: crashed,
            ..Default::default()
        };
        assert_eq!(info.shutdown_reason(), Some(crate::sched::SHUTDOWN_CRASH));
        let running = XenDomctlGetdomaininfo {
            flags: XEN_DOMINF_RUNNING,
            ..Default::default()
        };
        assert_eq!(running.shutdown_reason(), None);
        // Bits above the reason's byte do not leak into it.
        assert_eq!(dominf_shutdown_reason(0xff00_0000 | (2 << 16)), 2);
    }

    #[test]
    fn the_union_carries_the_list_request() {
        let op = XenSysctl::getdomaininfolist_request(3, 7, 0xdead_b000);
        assert_eq!(op.cmd, XEN_SYSCTL_GETDOMAININFOLIST);
        assert_eq!(op.interface_version, XEN_SYSCTL_INTERFACE_VERSION);
        let bytes = op.as_bytes();
        // first_domain at 8, max_domains at 12, buffer at 16, num_domains at 24 of the envelope.
        assert_eq!(&bytes[8..10], &3u16.to_le_bytes());
        assert_eq!(&bytes[12..16], &7u32.to_le_bytes());
        assert_eq!(&bytes[16..24], &0xdead_b000u64.to_le_bytes());
        assert_eq!(&bytes[24..28], &[0; 4]);
        let mut back = XenSysctl::read_from_bytes(bytes).unwrap();
        let mut l = back.getdomaininfolist();
        assert_eq!(
            (l.first_domain, l.max_domains, l.buffer),
            (3, 7, 0xdead_b000)
        );
        l.num_domains = 2;
        back.set_getdomaininfolist(&l);
        assert_eq!(back.getdomaininfolist().num_domains, 2);
        assert_eq!(&back.as_bytes()[24..28], &2u32.to_le_bytes());
        assert!(back.u[24..].iter().all(|&b| b == 0));
    }
}
