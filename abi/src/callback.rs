//! Guest callbacks (`callback.h`): `CALLBACKOP_*`, `CALLBACKTYPE_*` and the registration structures.
//!
//! `callback_op(cmd, arg)`: `RDI` = `CALLBACKOP_*`, `RSI` = guest pointer to a [`CallbackRegister`] or
//! [`CallbackUnregister`].

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Register a callback. Argument: [`CallbackRegister`].
pub const CALLBACKOP_REGISTER: u64 = 0;
/// Unregister a callback (not every type can be). Argument: [`CallbackUnregister`].
pub const CALLBACKOP_UNREGISTER: u64 = 1;

/// Event upcall: entered when an event is pending and events are unmasked.
pub const CALLBACKTYPE_EVENT: u16 = 0;
/// Failsafe: entered when the hypervisor cannot restore the guest's segment state on return.
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
/// `SYSCALL` from 64-bit guest user mode.
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
/// Deprecated 32-bit `SYSENTER` slot.
pub const CALLBACKTYPE_SYSENTER_DEPRECATED: u16 = 3;
/// NMI delivery.
pub const CALLBACKTYPE_NMI: u16 = 4;
/// `SYSENTER` from guest user mode.
pub const CALLBACKTYPE_SYSENTER: u16 = 5;
/// `SYSCALL` from 32-bit guest user mode.
pub const CALLBACKTYPE_SYSCALL32: u16 = 7;

/// [`CallbackRegister::flags`]: mask events while the callback runs (always the case for event and NMI).
pub const CALLBACKF_MASK_EVENTS: u16 = 1 << 0;

/// `callback_register`, 16 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CallbackRegister {
    /// `CALLBACKTYPE_*`.
    pub r#type: u16,
    /// `CALLBACKF_*`.
    pub flags: u16,
    pub _pad0: u32,
    /// Entry point (guest virtual address).
    pub address: u64,
}

/// `callback_unregister`, 4 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CallbackUnregister {
    /// `CALLBACKTYPE_*`.
    pub r#type: u16,
    pub _unused: u16,
}

layout!(CallbackRegister, 16; flags @ 2, address @ 8);
layout!(CallbackUnregister, 4);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_xens() {
        assert_eq!((CALLBACKOP_REGISTER, CALLBACKOP_UNREGISTER), (0, 1));
        assert_eq!(
            (
                CALLBACKTYPE_EVENT,
                CALLBACKTYPE_FAILSAFE,
                CALLBACKTYPE_SYSCALL
            ),
            (0, 1, 2)
        );
        assert_eq!((CALLBACKTYPE_SYSENTER_DEPRECATED, CALLBACKTYPE_NMI), (3, 4));
        assert_eq!((CALLBACKTYPE_SYSENTER, CALLBACKTYPE_SYSCALL32), (5, 7));
        assert_eq!(CALLBACKF_MASK_EVENTS, 1);
    }
}
