//! Version and feature queries (`version.h`, `features.h`): `XENVER_*` sub-commands, `XENFEAT_*` bits and
//! this hypervisor's version.
//!
//! `xen_version(cmd, arg)`: `RDI` = `XENVER_*`, `RSI` = guest pointer to the sub-command's buffer (or 0).
//! [`XENVER_VERSION`] returns [`VERSION`] = `(major << 16) | minor` and [`XENVER_PAGESIZE`] returns the page
//! size; the other sub-commands fill their buffer and return 0.
//!
//! Implemented: [`XENVER_VERSION`], [`XENVER_EXTRAVERSION`], [`XENVER_CAPABILITIES`],
//! [`XENVER_PLATFORM_PARAMETERS`] (`virt_start` = [`crate::layout::RESERVED_VA_START`], the lowest address of
//! the range refused to guests), [`XENVER_GET_FEATURES`], [`XENVER_PAGESIZE`], [`XENVER_GUEST_HANDLE`] (all
//! zeroes: no toolstack assigns handles, as `sysctl` reports) and [`XENVER_COMMANDLINE`] (privileged domains
//! only, `-EPERM` otherwise).
//!
//! Refused with `-ENOSYS`, on purpose: [`XENVER_COMPILE_INFO`], [`XENVER_CHANGESET`] and [`XENVER_BUILD_ID`]
//! (the hypervisor records no build provenance, and inventing it would be worse than saying so), and the
//! variable-length forms [`XENVER_EXTRAVERSION2`]..=[`XENVER_COMMANDLINE2`] (every string here fits the
//! fixed-size buffers, which stay the supported way to read them).

use static_assertions::const_assert;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Returns `(major << 16) | minor`. Argument: none.
pub const XENVER_VERSION: u64 = 0;
/// Fills a [`XenExtraversion`] with the NUL-terminated version suffix.
pub const XENVER_EXTRAVERSION: u64 = 1;
/// Fills a [`XenCompileInfo`].
pub const XENVER_COMPILE_INFO: u64 = 2;
/// Fills a [`XenCapabilitiesInfo`] with the space-separated guest types the host runs.
pub const XENVER_CAPABILITIES: u64 = 3;
/// Fills a [`XenChangesetInfo`] with the source revision.
pub const XENVER_CHANGESET: u64 = 4;
/// Fills a [`XenPlatformParameters`].
pub const XENVER_PLATFORM_PARAMETERS: u64 = 5;
/// Fills a [`XenFeatureInfo`](crate::xen::XenFeatureInfo) with one 32-bit word of `XENFEAT_*` bits.
pub const XENVER_GET_FEATURES: u64 = 6;
/// Returns the page size. Argument: none.
pub const XENVER_PAGESIZE: u64 = 7;
/// Fills a 16-byte domain handle (UUID).
pub const XENVER_GUEST_HANDLE: u64 = 8;
/// Fills a 1024-byte buffer with the hypervisor command line.
pub const XENVER_COMMANDLINE: u64 = 9;
/// Returns the build id (variable-length buffer).
pub const XENVER_BUILD_ID: u64 = 10;
/// Non-truncating form of `XENVER_EXTRAVERSION` (variable-length buffer).
pub const XENVER_EXTRAVERSION2: u64 = 11;
/// Non-truncating form of `XENVER_CAPABILITIES`.
pub const XENVER_CAPABILITIES2: u64 = 12;
/// Non-truncating form of `XENVER_CHANGESET`.
pub const XENVER_CHANGESET2: u64 = 13;
/// Non-truncating form of `XENVER_COMMANDLINE`.
pub const XENVER_COMMANDLINE2: u64 = 14;

/// Our major version.
pub const VERSION_MAJOR: u32 = 0;
/// Our minor version.
pub const VERSION_MINOR: u32 = 1;
/// What `XENVER_version` returns: `(VERSION_MAJOR << 16) | VERSION_MINOR`.
pub const VERSION: u32 = (VERSION_MAJOR << 16) | VERSION_MINOR;
/// What `XENVER_extraversion` returns (without its terminating NUL).
pub const EXTRAVERSION: &str = "-ring1pv";
/// What `XENVER_capabilities` returns: only 64-bit PV guests are supported.
pub const CAPABILITIES: &str = "xen-3.0-x86_64";

/// Splits a `XENVER_version` result into `(major, minor)`.
pub const fn split_version(version: u32) -> (u32, u32) {
    (version >> 16, version & 0xffff)
}

/// Size of `xen_extraversion_t`.
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// Size of `xen_capabilities_info_t`.
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// Size of `xen_changeset_info_t`.
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// Size of `xen_commandline_t`.
pub const XEN_COMMANDLINE_LEN: usize = 1024;
/// The `XENVER_extraversion` buffer (`xen_extraversion_t`).
pub type XenExtraversion = [u8; XEN_EXTRAVERSION_LEN];
/// The `XENVER_capabilities` buffer (`xen_capabilities_info_t`).
pub type XenCapabilitiesInfo = [u8; XEN_CAPABILITIES_INFO_LEN];
/// The `XENVER_changeset` buffer (`xen_changeset_info_t`).
pub type XenChangesetInfo = [u8; XEN_CHANGESET_INFO_LEN];
/// The `XENVER_commandline` buffer (`xen_commandline_t`).
pub type XenCommandline = [u8; XEN_COMMANDLINE_LEN];

// Both strings must fit their buffers with a terminating NUL.
const_assert!(EXTRAVERSION.len() < XEN_EXTRAVERSION_LEN);
const_assert!(CAPABILITIES.len() < XEN_CAPABILITIES_INFO_LEN);

/// The `XENVER_compile_info` buffer (`xen_compile_info`), 144 bytes of NUL-terminated strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct XenCompileInfo {
    pub compiler: [u8; 64],
    pub compile_by: [u8; 16],
    pub compile_domain: [u8; 32],
    pub compile_date: [u8; 32],
}

/// The `XENVER_platform_parameters` buffer (`xen_platform_parameters`), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenPlatformParameters {
    /// Lowest virtual address reserved for the hypervisor.
    pub virt_start: u64,
}

layout!(XenCompileInfo, 144);
layout!(XenPlatformParameters, 8);

/// The guest may write its page tables directly (no write protection needed).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// The guest may write its descriptor tables directly.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// The hypervisor translates pseudo-physical to machine addresses (not a PV guest's case).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// The guest kernel runs in ring 0.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// PAE page directories may lie above 4 GiB.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `MMU_PT_UPDATE_PRESERVE_AD` is supported.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// `MMUEXT_CLEAR_PAGE` and `MMUEXT_COPY_PAGE` are supported.
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// Grant mappings honour available-bit flags.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// HVM: callback-vector event delivery.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// HVM: the pvclock algorithm is safe.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// HVM: PIRQs are available.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// Running as the initial domain is supported.
pub const XENFEAT_DOM0: u32 = 11;
/// `XENMEMF_vnode` is accepted by memory operations. (12 is retired: `grant_map_identity`.)
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// Arm: SMC calling convention.
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// PVH: the ACPI RSDP may be anywhere.
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// The domain is not direct-mapped (gfn != mfn).
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// The domain is direct-mapped (gfn == mfn).
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// `VCPUOP_register_runstate_phys_area` is available.
pub const XENFEAT_RUNSTATE_PHYS_AREA: u32 = 18;
/// `VCPUOP_register_vcpu_time_phys_area` is available.
pub const XENFEAT_VCPU_TIME_PHYS_AREA: u32 = 19;
/// Number of 32-bit feature words (`XENFEAT_NR_SUBMAPS`).
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// The `submap_idx` that holds feature bit `feature`.
pub const fn feature_submap_index(feature: u32) -> u32 {
    feature / 32
}

/// The mask of feature bit `feature` within its submap.
pub const fn feature_submap_mask(feature: u32) -> u32 {
    1 << (feature % 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn numbers_are_xens() {
        let cmds = [
            XENVER_VERSION,
            XENVER_EXTRAVERSION,
            XENVER_COMPILE_INFO,
            XENVER_CAPABILITIES,
            XENVER_CHANGESET,
            XENVER_PLATFORM_PARAMETERS,
            XENVER_GET_FEATURES,
            XENVER_PAGESIZE,
            XENVER_GUEST_HANDLE,
            XENVER_COMMANDLINE,
            XENVER_BUILD_ID,
            XENVER_EXTRAVERSION2,
            XENVER_CAPABILITIES2,
            XENVER_CHANGESET2,
            XENVER_COMMANDLINE2,
        ];
        for (i, c) in cmds.into_iter().enumerate() {
            assert_eq!(c, i as u64);
        }
        let feats = [
            XENFEAT_WRITABLE_PAGE_TABLES,
            XENFEAT_WRITABLE_DESCRIPTOR_TABLES,
            XENFEAT_AUTO_TRANSLATED_PHYSMAP,
            XENFEAT_SUPERVISOR_MODE_KERNEL,
            XENFEAT_PAE_PGDIR_ABOVE_4GB,
            XENFEAT_MMU_PT_UPDATE_PRESERVE_AD,
            XENFEAT_HIGHMEM_ASSIST,
            XENFEAT_GNTTAB_MAP_AVAIL_BITS,
            XENFEAT_HVM_CALLBACK_VECTOR,
            XENFEAT_HVM_SAFE_PVCLOCK,
            XENFEAT_HVM_PIRQS,
            XENFEAT_DOM0,
        ];
        for (i, f) in feats.into_iter().enumerate() {
            assert_eq!(f, i as u32);
        }
        assert_eq!(XENFEAT_MEMORY_OP_VNODE_SUPPORTED, 13);
        assert_eq!(XENFEAT_ARM_SMCCC_SUPPORTED, 14);
        assert_eq!(XENFEAT_LINUX_RSDP_UNRESTRICTED, 15);
        assert_eq!((XENFEAT_NOT_DIRECT_MAPPED, XENFEAT_DIRECT_MAPPED), (16, 17));
        assert_eq!(
            (XENFEAT_RUNSTATE_PHYS_AREA, XENFEAT_VCPU_TIME_PHYS_AREA),
            (18, 19)
        );
        assert_eq!(XENFEAT_NR_SUBMAPS, 1);
    }

    #[test]
    fn our_version() {
        assert_eq!(VERSION, 1);
        assert_eq!(split_version(VERSION), (VERSION_MAJOR, VERSION_MINOR));
        assert_eq!(split_version(0x0004_0013), (4, 19));
        assert_eq!(EXTRAVERSION, "-ring1pv");
        assert_eq!(XEN_EXTRAVERSION_LEN, 16);
        assert_eq!(XEN_CAPABILITIES_INFO_LEN, 1024);
        assert_eq!(size_of::<XenExtraversion>(), 16);
        assert_eq!(size_of::<XenCapabilitiesInfo>(), 1024);
        assert_eq!(CAPABILITIES.as_bytes(), crate::xen::START_INFO_MAGIC);
    }

    #[test]
    fn feature_words() {
        assert_eq!(feature_submap_index(XENFEAT_DOM0), 0);
        assert_eq!(feature_submap_mask(XENFEAT_DOM0), 1 << 11);
        assert_eq!(feature_submap_index(33), 1);
        assert_eq!(feature_submap_mask(33), 2);
    }
}
