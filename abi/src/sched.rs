//! Scheduler operations (`sched.h`): the `SCHED_OP` sub-commands and shutdown reasons.
//!
//! `sched_op(cmd, arg)`: `RDI` = `SCHEDOP_*`, `RSI` = pointer to the command's argument structure (or 0).
//!
//! # Our extension: an exit code for `SCHEDOP_shutdown`
//!
//! For [`SCHEDOP_SHUTDOWN`] the third argument register, `RDX`, carries a guest exit code (a `u32`; the
//! upper 32 bits are ignored). The hypervisor reports it with the shutdown reason; a non-zero code counts as a
//! failed domain ([`EXIT_DOMAIN_FAILED`](crate::exit::EXIT_DOMAIN_FAILED)). Xen ignores argument registers a sub-command does not use, so a guest
//! written for Xen is unaffected and a guest written for us still shuts down correctly under Xen (the code is
//! simply lost). The one collision is [`SHUTDOWN_SUSPEND`], for which Xen defines `RDX` as the MFN of the
//! guest's start-info page; suspend is not supported here, so the value is never read as an exit code.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::xen::DomId;

/// Give up the CPU to another runnable vCPU. Argument: none.
pub const SCHEDOP_YIELD: u64 = 0;
/// Block until an event is pending. If called with events masked it atomically unmasks them first, so a
/// wake-up cannot be missed. Argument: none.
pub const SCHEDOP_BLOCK: u64 = 1;
/// Stop the whole domain. Argument: [`SchedShutdown`](crate::xen::SchedShutdown); `RDX`: exit code (our
/// extension, see the module docs).
pub const SCHEDOP_SHUTDOWN: u64 = 2;
/// Wait for one of a set of ports to become pending, with an optional timeout. Argument: [`SchedPoll`].
pub const SCHEDOP_POLL: u64 = 3;
/// Shut down another domain (privileged). Argument: [`SchedRemoteShutdown`].
pub const SCHEDOP_REMOTE_SHUTDOWN: u64 = 4;
/// Record the reason to report when the domain later shuts down. Argument:
/// [`SchedShutdown`](crate::xen::SchedShutdown).
pub const SCHEDOP_SHUTDOWN_CODE: u64 = 5;
/// Create, poke or destroy a domain watchdog. Argument: [`SchedWatchdog`].
pub const SCHEDOP_WATCHDOG: u64 = 6;
/// Pin the current vCPU to a physical CPU (hardware domain only).
pub const SCHEDOP_PIN_OVERRIDE: u64 = 7;

/// Exited normally.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Wants to be restarted.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// Suspending (save state, then stop).
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// Crashed.
pub const SHUTDOWN_CRASH: u32 = 3;
/// Its watchdog expired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// Asks for a soft reset (Xen state reset, memory kept).
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
/// The largest valid reason.
pub const SHUTDOWN_MAX: u32 = 5;

/// A shutdown reason (`SHUTDOWN_*`) as an enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ShutdownReason {
    Poweroff = SHUTDOWN_POWEROFF,
    Reboot = SHUTDOWN_REBOOT,
    Suspend = SHUTDOWN_SUSPEND,
    Crash = SHUTDOWN_CRASH,
    Watchdog = SHUTDOWN_WATCHDOG,
    SoftReset = SHUTDOWN_SOFT_RESET,
}

impl ShutdownReason {
    /// The reason with value `reason`, or `None` if it is above [`SHUTDOWN_MAX`].
    pub const fn from_u32(reason: u32) -> Option<ShutdownReason> {
        Some(match reason {
            SHUTDOWN_POWEROFF => ShutdownReason::Poweroff,
            SHUTDOWN_REBOOT => ShutdownReason::Reboot,
            SHUTDOWN_SUSPEND => ShutdownReason::Suspend,
            SHUTDOWN_CRASH => ShutdownReason::Crash,
            SHUTDOWN_WATCHDOG => ShutdownReason::Watchdog,
            SHUTDOWN_SOFT_RESET => ShutdownReason::SoftReset,
            _ => return None,
        })
    }

    /// The `SHUTDOWN_*` value.
    pub const fn as_u32(self) -> u32 {
        self as u32
    }

    /// Xen's name without the prefix, e.g. `"poweroff"`.
    pub const fn name(self) -> &'static str {
        match self {
            ShutdownReason::Poweroff => "poweroff",
            ShutdownReason::Reboot => "reboot",
            ShutdownReason::Suspend => "suspend",
            ShutdownReason::Crash => "crash",
            ShutdownReason::Watchdog => "watchdog",
            ShutdownReason::SoftReset => "soft_reset",
        }
    }
}

impl core::fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Argument of [`SCHEDOP_POLL`] (`sched_poll`), 24 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedPoll {
    /// Guest pointer to an array of `u32` ports.
    pub ports: u64,
    pub nr_ports: u32,
    pub _pad0: u32,
    /// Absolute system time (ns) at which to give up; 0 for no timeout.
    pub timeout: u64,
}

/// Argument of [`SCHEDOP_REMOTE_SHUTDOWN`] (`sched_remote_shutdown`), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedRemoteShutdown {
    pub domain_id: DomId,
    pub _pad0: u16,
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// Argument of [`SCHEDOP_WATCHDOG`] (`sched_watchdog`), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedWatchdog {
    /// 0 creates a watchdog (its id is returned); otherwise the watchdog to poke (or destroy, if `timeout`
    /// is 0).
    pub id: u32,
    /// Seconds.
    pub timeout: u32,
}

layout!(SchedPoll, 24; nr_ports @ 8, timeout @ 16);
layout!(SchedRemoteShutdown, 8; reason @ 4);
layout!(SchedWatchdog, 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_xens() {
        assert_eq!(
            [
                SCHEDOP_YIELD,
                SCHEDOP_BLOCK,
                SCHEDOP_SHUTDOWN,
                SCHEDOP_POLL,
                SCHEDOP_REMOTE_SHUTDOWN,
                SCHEDOP_SHUTDOWN_CODE,
                SCHEDOP_WATCHDOG,
                SCHEDOP_PIN_OVERRIDE
            ],
            [0, 1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(
            [
                SHUTDOWN_POWEROFF,
                SHUTDOWN_REBOOT,
                SHUTDOWN_SUSPEND,
                SHUTDOWN_CRASH,
                SHUTDOWN_WATCHDOG,
                SHUTDOWN_SOFT_RESET
            ],
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(SHUTDOWN_MAX, 5);
    }

    #[test]
    fn reasons() {
        for v in 0..=SHUTDOWN_MAX {
            let r = ShutdownReason::from_u32(v).unwrap();
            assert_eq!(r.as_u32(), v);
        }
        assert_eq!(ShutdownReason::from_u32(SHUTDOWN_MAX + 1), None);
        assert_eq!(ShutdownReason::from_u32(u32::MAX), None);
        assert_eq!(ShutdownReason::Poweroff.name(), "poweroff");
        assert_eq!(
            ShutdownReason::from_u32(3).map(ShutdownReason::name),
            Some("crash")
        );
        assert_eq!(ShutdownReason::SoftReset.name(), "soft_reset");
    }
}
