//! The toolstack's system calls: domain 0's `xl` asks the guest kernel, which forwards to the hypervisor's
//! `domctl`/`sysctl` through its platform seam. Other domains get `-EPERM` (from the hypervisor); a kernel
//! that runs natively (no hypervisor) answers `-EOPNOTSUPP` ("not virtualised").
//!
//! Same register convention as every system call (see the crate documentation).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The domain limit every layer shares (`abi::domctl::MAX_DOMAINS`): ids are `0..MAX_DOMAINS`.
pub const MAX_DOMAINS: usize = abi::domctl::MAX_DOMAINS;
/// Smallest domain `dom_create` builds, KiB.
pub const MIN_DOMAIN_MEM_KB: u64 = abi::domctl::MIN_DOMAIN_MEM_KB;
/// Largest domain, KiB.
pub const MAX_DOMAIN_MEM_KB: u64 = abi::domctl::MAX_DOMAIN_MEM_KB;
/// Longest image name.
pub const IMAGE_NAME_MAX: usize = abi::domctl::IMAGE_NAME_MAX;
/// Longest guest command line.
pub const CMDLINE_MAX: usize = abi::domctl::CREATE_CMDLINE_MAX;

/// System-call numbers.
pub mod nr {
    /// `dom_create(req) -> domid`: build and start a domain from the [`super::DomCreate`] at `req`.
    /// `-ENOSPC` at the domain limit, `-ENOMEM` without enough free memory, `-ENOENT` for an unknown image,
    /// `-EINVAL` for sizes out of range or a bad command line.
    pub const DOM_CREATE: u64 = 32;
    /// `dom_control(op, domid, arg) -> 0`: one of [`super::op`] on domain `domid`. `-ESRCH` for a domain
    /// that does not exist, `-EINVAL` for acting on oneself (or unpausing a domain that is not paused).
    pub const DOM_CONTROL: u64 = 33;
    /// `dom_list(first, buf, max) -> n`: up to `max` `DomInfo` records (see the crate root), domains with
    /// id `first` and above, ascending.
    pub const DOM_LIST: u64 = 34;
    /// `dom_image(op, domid, name, name_len, arg) -> u64`: one of [`super::image`] on the hypervisor's
    /// saved-image store.
    pub const DOM_IMAGE: u64 = 35;
}

/// `dom_control` operations.
pub mod op {
    /// Destroy the domain (its memory is freed, its id free again).
    pub const DESTROY: u64 = 1;
    /// Stop scheduling it.
    pub const PAUSE: u64 = 2;
    /// Schedule it again.
    pub const UNPAUSE: u64 = 3;
    /// Set its memory ceiling to `arg` KiB.
    pub const MAX_MEM: u64 = 4;
    /// Give it the serial console's input (the debug key Ctrl-] `c` gives it back to domain 0).
    pub const CONSOLE: u64 = 5;
    /// Ask it to suspend itself (the first step of a save); `-EOPNOTSUPP` if its kernel cannot,
    /// `-EBUSY` if it was asked already.
    pub const SUSPEND: u64 = 6;
    /// Let a suspended domain continue in place (or withdraw the request).
    pub const RESUME: u64 = 7;
}

/// `dom_image` operations (the hypervisor's saved-image store).
pub mod image {
    /// Save suspended domain `domid` as `name`; returns the image's bytes. `-EINVAL` if it has not
    /// suspended, `-EEXIST` for a name in use, `-ENOSPC` when the store is full, `-ENOMEM`.
    pub const SAVE: u64 = 1;
    /// Restore `name` as a new domain (`arg` 1: paused); returns its id.
    pub const RESTORE: u64 = 2;
    /// Drop `name`.
    pub const DELETE: u64 = 3;
    /// Write up to `arg` [`super::ImageInfo`] records to the buffer at `name` (its length in bytes:
    /// `name_len`); returns how many.
    pub const LIST: u64 = 4;
    /// Write `name` to the serial console in its wire form (`abi::save::wire`; `cargo xtask save`).
    pub const DUMP: u64 = 5;
    /// Live migration of domain `domid` over the second serial line, phase `arg` (`abi::domctl`'s
    /// `MIGRATE_START` ... `MIGRATE_CANCEL`); returns the pages sent, and after the final phase the
    /// destination's domain id in bits 32..48. The name is not used.
    pub const MIGRATE: u64 = 6;
    /// Receive one live migration on the second serial line (blocks); returns the new domain's id and the
    /// pages received in bits 32.. . The name is not used.
    pub const MIGRATE_RECEIVE: u64 = 7;
    /// [`MIGRATE`] phases (`abi::domctl`'s).
    pub const MIGRATE_START: u32 = abi::domctl::MIGRATE_START;
    /// See [`MIGRATE_START`].
    pub const MIGRATE_ROUND: u32 = abi::domctl::MIGRATE_ROUND;
    /// See [`MIGRATE_START`].
    pub const MIGRATE_FINAL: u32 = abi::domctl::MIGRATE_FINAL;
    /// See [`MIGRATE_START`].
    pub const MIGRATE_CANCEL: u32 = abi::domctl::MIGRATE_CANCEL;
    /// Or'ed into [`MIGRATE_FINAL`]: the destination verifies every data page (`xl migrate --verify`).
    pub const MIGRATE_VERIFY: u32 = abi::domctl::MIGRATE_VERIFY;
}

/// Longest saved-image name.
pub const SAVED_NAME_MAX: usize = abi::domctl::SAVED_NAME_MAX;
/// Most images the store holds.
pub const MAX_SAVED_IMAGES: usize = abi::domctl::MAX_SAVED_IMAGES;
/// One stored image (the hypervisor's `SavedImageInfo`, 40 bytes).
pub type ImageInfo = abi::domctl::SavedImageInfo;

/// [`DomCreate::flags`]: leave the new domain paused.
pub const CREATE_PAUSED: u32 = 1;

/// The argument of `dom_create`, 128 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct DomCreate {
    /// Name of an image the hypervisor keeps, NUL-padded.
    pub image: [u8; IMAGE_NAME_MAX],
    /// Memory, KiB.
    pub mem_kb: u64,
    /// [`CREATE_PAUSED`] or 0.
    pub flags: u32,
    /// Bytes of `cmdline` used.
    pub cmdline_len: u32,
    /// The new domain's command line.
    pub cmdline: [u8; CMDLINE_MAX],
}

impl DomCreate {
    /// A request; `None` if the name or the command line is too long.
    pub fn new(image: &str, mem_kb: u64, cmdline: &str, flags: u32) -> Option<DomCreate> {
        let mut c = DomCreate {
            image: [0; IMAGE_NAME_MAX],
            mem_kb,
            flags,
            cmdline_len: u32::try_from(cmdline.len()).ok()?,
            cmdline: [0; CMDLINE_MAX],
        };
        c.image
            .get_mut(..image.len())?
            .copy_from_slice(image.as_bytes());
        c.cmdline
            .get_mut(..cmdline.len())?
            .copy_from_slice(cmdline.as_bytes());
        Some(c)
    }
}

static_assertions::const_assert_eq!(core::mem::size_of::<DomCreate>(), 128);
static_assertions::const_assert_eq!(
    core::mem::size_of::<DomCreate>(),
    core::mem::size_of::<abi::domctl::DomctlCreate>()
);
