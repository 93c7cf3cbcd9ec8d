//! Per-vCPU operations (`vcpu.h`): `VCPUOP_*` sub-commands and their argument structures.
//!
//! `vcpu_op(cmd, vcpuid, arg)`: `RDI` = `VCPUOP_*`, `RSI` = the target vCPU id, `RDX` = guest pointer to the
//! command's structure (or 0).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Give a not-yet-initialised vCPU its initial register state (`vcpu_guest_context`).
pub const VCPUOP_INITIALISE: u64 = 0;
/// Make an initialised vCPU runnable.
pub const VCPUOP_UP: u64 = 1;
/// Make a vCPU not runnable.
pub const VCPUOP_DOWN: u64 = 2;
/// Returns 1 if the vCPU is up, 0 if not.
pub const VCPUOP_IS_UP: u64 = 3;
/// Fill a [`VcpuRunstateInfo`].
pub const VCPUOP_GET_RUNSTATE_INFO: u64 = 4;
/// Register a guest-virtual area the hypervisor keeps a [`VcpuRunstateInfo`] in.
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
/// Start the periodic timer. Argument: [`VcpuSetPeriodicTimer`].
pub const VCPUOP_SET_PERIODIC_TIMER: u64 = 6;
/// Stop the periodic timer. Argument: none.
pub const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
/// Arm the single-shot timer. Argument: [`VcpuSetSingleshotTimer`].
pub const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;
/// Disarm the single-shot timer. Argument: none.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u64 = 9;
/// Move this vCPU's `vcpu_info` out of the shared-info page. Argument: [`VcpuRegisterVcpuInfo`].
pub const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;
/// Send an NMI to the vCPU. Argument: none.
pub const VCPUOP_SEND_NMI: u64 = 11;
/// Physical CPU id of a pinned vCPU. Argument: [`VcpuGetPhysid`].
pub const VCPUOP_GET_PHYSID: u64 = 12;
/// Register a guest-virtual secondary copy of the vCPU's time info.
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u64 = 13;
/// As `REGISTER_RUNSTATE_MEMORY_AREA`, by guest-physical address.
pub const VCPUOP_REGISTER_RUNSTATE_PHYS_AREA: u64 = 14;
/// As `REGISTER_VCPU_TIME_MEMORY_AREA`, by guest-physical address.
pub const VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA: u64 = 15;

/// [`VcpuRunstateInfo::state`]: running on a physical CPU.
pub const RUNSTATE_RUNNING: i32 = 0;
/// [`VcpuRunstateInfo::state`]: runnable, waiting for a physical CPU.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// [`VcpuRunstateInfo::state`]: blocked (idle).
pub const RUNSTATE_BLOCKED: i32 = 2;
/// [`VcpuRunstateInfo::state`]: neither runnable nor blocked (paused, offline).
pub const RUNSTATE_OFFLINE: i32 = 3;
/// Set in `state_entry_time` while the hypervisor updates a registered runstate area.
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

/// [`VcpuSetSingleshotTimer::flags`]: fail with `-ETIME` if the timeout is already in the past.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// `vcpu_runstate_info`, 48 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuRunstateInfo {
    /// `RUNSTATE_*`.
    pub state: i32,
    pub _pad0: u32,
    /// System time (ns) at which `state` was entered.
    pub state_entry_time: u64,
    /// Time (ns) spent in each `RUNSTATE_*`.
    pub time: [u64; 4],
}

/// `vcpu_set_periodic_timer`, 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuSetPeriodicTimer {
    pub period_ns: u64,
}

/// `vcpu_set_singleshot_timer`, 16 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time (ns).
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
    pub _pad0: u32,
}

/// `vcpu_register_vcpu_info`, 16 bytes. The `vcpu_info` must not cross a page boundary.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuRegisterVcpuInfo {
    /// Machine frame of the page to hold the `vcpu_info`.
    pub mfn: u64,
    /// Byte offset within that page.
    pub offset: u32,
    pub rsvd: u32,
}

/// `vcpu_get_physid`, 8 bytes: on x86, bits 31:0 are the APIC id and 63:32 the ACPI id.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuGetPhysid {
    pub phys_id: u64,
}

layout!(VcpuRunstateInfo, 48; state_entry_time @ 8, time @ 16);
layout!(VcpuSetPeriodicTimer, 8);
layout!(VcpuSetSingleshotTimer, 16; flags @ 8);
layout!(VcpuRegisterVcpuInfo, 16; offset @ 8);
layout!(VcpuGetPhysid, 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_xens() {
        let ops = [
            VCPUOP_INITIALISE,
            VCPUOP_UP,
            VCPUOP_DOWN,
            VCPUOP_IS_UP,
            VCPUOP_GET_RUNSTATE_INFO,
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
            VCPUOP_SET_PERIODIC_TIMER,
            VCPUOP_STOP_PERIODIC_TIMER,
            VCPUOP_SET_SINGLESHOT_TIMER,
            VCPUOP_STOP_SINGLESHOT_TIMER,
            VCPUOP_REGISTER_VCPU_INFO,
            VCPUOP_SEND_NMI,
            VCPUOP_GET_PHYSID,
            VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA,
            VCPUOP_REGISTER_RUNSTATE_PHYS_AREA,
            VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(op, i as u64);
        }
        assert_eq!(
            (
                RUNSTATE_RUNNING,
                RUNSTATE_RUNNABLE,
                RUNSTATE_BLOCKED,
                RUNSTATE_OFFLINE
            ),
            (0, 1, 2, 3)
        );
        assert_eq!(VCPU_SSHOTTMR_FUTURE, 1);
        assert_eq!(XEN_RUNSTATE_UPDATE, 0x8000_0000_0000_0000);
    }
}
