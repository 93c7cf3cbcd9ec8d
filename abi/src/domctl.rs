//! `domctl` (hypercall 36): domain control for the privileged domain (the toolstack's hypercall).
//!
//! The argument is a pointer to a [`XenDomctl`] envelope (Xen's `xen_domctl`, 144 bytes): a command, the
//! interface version, the target domain and a 128-byte union with the command's argument. Xen's command
//! numbers are used for the commands implemented here:
//!
//! | cmd | name | argument in `u` | result |
//! |---|---|---|---|
//! | 1 | [`XEN_DOMCTL_CREATEDOMAIN`] | [`DomctlCreate`] (ours, deviation n) | the new id in [`XenDomctl::domain`] |
//! | 2 | [`XEN_DOMCTL_DESTROYDOMAIN`] | — | 0 |
//! | 3 | [`XEN_DOMCTL_PAUSEDOMAIN`] | — | 0 |
//! | 4 | [`XEN_DOMCTL_UNPAUSEDOMAIN`] | — | 0 |
//! | 5 | [`XEN_DOMCTL_GETDOMAININFO`] | out: [`XenDomctlGetdomaininfo`] | 0 |
//! | 11 | [`XEN_DOMCTL_MAX_MEM`] | [`XenDomctlMaxMem`] | 0 |
//! | 12 | [`XEN_DOMCTL_SETVCPUCONTEXT`] | [`XenDomctlVcpucontext`] → [`VcpuGuestContext`] | 0 |
//! | 13 | [`XEN_DOMCTL_GETVCPUCONTEXT`] | [`XenDomctlVcpucontext`] → [`VcpuGuestContext`] | 0 |
//! | 0x8000 | [`XEN_DOMCTL_CONSOLE_INPUT`] (ours) | — | 0 |
//! | 27 | [`XEN_DOMCTL_RESUMEDOMAIN`] | — | 0 |
//! | 0x8001..=0x8007 | suspend request, save, restore, image put/delete/list/dump (ours, deviation o) | [`DomctlImage`] | 0 (restore: the id in `domain`) |
//!
//! Errors, checked in this order: a wrong interface version `-EACCES`; an unprivileged caller `-EPERM`; an
//! unknown command `-ENOSYS`; an envelope or buffer the caller cannot read or write `-EFAULT`; a domain
//! that does not exist (or `DOMID_SELF`-style reserved ids) `-ESRCH`; a request the domain's state does
//! not allow (destroying or pausing oneself, destroying domain 0, setting the context of a domain that is
//! not paused, a vCPU other than 0) `-EINVAL`; the domain limit [`MAX_DOMAINS`] reached `-ENOSPC`; not
//! enough free memory `-ENOMEM`; an image name that names no available image `-ENOENT`; a memory size above
//! [`MAX_DOMAIN_MEM_KB`] or below [`MIN_DOMAIN_MEM_KB`] `-EINVAL`.
//!
//! # Deviations from Xen (abi deviation n)
//!
//! - **`createdomain` builds the domain.** Xen's `createdomain` makes an empty domain and the toolstack
//!   fills it (libxc's domain builder, with foreign mappings). There are no foreign mappings here (abi
//!   deviation j), so the argument names a kernel image the hypervisor keeps (an *available image*: a boot
//!   module whose command line is `image=NAME`, kept instead of being started), the memory size and the
//!   guest command line, and the hypervisor builds, validates and audits the domain exactly as at boot. The
//!   new domain is started at once unless [`DOMCTL_CREATE_PAUSED`] is given. The id is always chosen by
//!   the hypervisor: the first free one after the last id it gave, wrapping around, never 0 (so a freed
//!   id is not reused at once); the `domain` field is ignored on input and holds the id on return.
//! - **`destroydomain` finishes at once** (no `-ERESTART` continuations): the domain's memory is zeroed
//!   and freed and its slot is free when the call returns.
//! - **`max_mem` only lowers or raises the ceiling** (`max_pages`); it never takes memory away from a
//!   domain that holds more (as in Xen) and is bounded by [`MAX_DOMAIN_MEM_KB`].
//! - **vCPU context.** One vCPU per domain. `getvcpucontext` fills the general registers, flags, the
//!   FXSAVE image, the virtual trap table, the callbacks, the kernel stack, the segment bases and
//!   `ctrlreg[3]` (the page-table base, as Xen's `xen_pfn_to_cr3`). `setvcpucontext` needs a paused domain
//!   and sets the registers, the FPU image, the trap table, the callbacks, the kernel stack and the segment
//!   bases; the page-table base (`ctrlreg[3]`) must be the domain's current one (`-EINVAL` otherwise: a
//!   new base would have to be validated and typed, which `mmuext_op` does for the domain itself), LDT and
//!   GDT frames must be empty, and the registers go through the same sanitizing as every return to a guest
//!   (a bad frame crashes the target domain when it is next resumed, never the hypervisor).
//! - **Console input** has no domctl in Xen (its `xl console` talks to a console daemon in domain 0);
//!   here the hypervisor owns the serial line, so [`XEN_DOMCTL_CONSOLE_INPUT`] (outside Xen's numbers)
//!   switches its input to a domain, and the debug key Ctrl-] `c` switches it back.
//! - **Domain ids** are below [`MAX_DOMAINS`]; larger ids are `-ESRCH`.
//! - **Stopped domains are reaped.** A domain that shut down or was crashed has already released its
//!   memory (abi deviation i); it disappears from the domain list the next time the scheduler runs, and
//!   its id becomes free.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use crate::sysctl::XenDomctlGetdomaininfo;
use crate::xen::{DomId, TrapInfo};

/// Most domains the hypervisor runs at once (boot modules and domains created at run time together).
/// Every layer uses this one number: the hypervisor's domain table, its boot-module limit, `cargo xtask
/// run --domains` and the guest's `xl`. Domain ids are `0..MAX_DOMAINS`.
pub const MAX_DOMAINS: usize = 128;
/// Most available images (boot modules with `image=NAME`) the hypervisor keeps.
pub const MAX_IMAGES: usize = 4;
/// Most boot modules: one per domain plus the available images.
pub const MAX_BOOT_MODULES: usize = MAX_DOMAINS + MAX_IMAGES;
/// Smallest domain `createdomain` builds: 2 MiB (the guest kernel, its tables, stack and heap).
pub const MIN_DOMAIN_MEM_KB: u64 = 2048;
/// Largest domain: 256 MiB (the builder's scratch P2M).
pub const MAX_DOMAIN_MEM_KB: u64 = 256 * 1024;
/// Longest available-image name, in bytes.
pub const IMAGE_NAME_MAX: usize = 16;
/// Longest guest command line `createdomain` takes, in bytes.
pub const CREATE_CMDLINE_MAX: usize = 96;

/// The interface version this hypervisor implements (Xen 4.17's), for [`XenDomctl::interface_version`].
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x0000_0015;

/// Build and start a domain. Argument: [`DomctlCreate`].
pub const XEN_DOMCTL_CREATEDOMAIN: u32 = 1;
/// Destroy a domain: stop it and free its memory.
pub const XEN_DOMCTL_DESTROYDOMAIN: u32 = 2;
/// Stop scheduling a domain until it is unpaused.
pub const XEN_DOMCTL_PAUSEDOMAIN: u32 = 3;
/// Schedule a paused domain again.
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// One domain's [`XenDomctlGetdomaininfo`].
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
/// Log-dirty control of a PV domain (Xen's `XEN_DOMCTL_shadow_op`, only its log-dirty operations).
/// Argument: [`XenDomctlShadowOp`]; see [`SHADOW_OP_CLEAN`]. On the caller itself `-EINVAL`; every operation on
/// a domain a live migration is moving is `-EBUSY` (the migration owns its bitmap); an unknown operation
/// `-EINVAL`. Deviation p in the crate documentation says what the guest can observe meanwhile.
pub const XEN_DOMCTL_SHADOW_OP: u32 = 10;
/// [`XenDomctlShadowOp::op`]: log-dirty off (every protected entry writable again, the bitmap dropped);
/// 0 also when it was off.
pub const SHADOW_OP_OFF: u32 = 0;
/// [`XenDomctlShadowOp::op`]: log-dirty on for the domain: from now on every frame it writes (and every frame
/// the hypervisor writes for it) is marked. `-EINVAL` if on for it already (Xen's answer), `-EBUSY` if on
/// for another domain (one at a time here), `-EOPNOTSUPP` for a domain that is not PV.
pub const SHADOW_OP_ENABLE_LOGDIRTY: u32 = 2;
/// [`XenDomctlShadowOp::op`]: copy the dirty bitmap (bit `pfn` of byte `pfn / 8`, the domain's pfns
/// below [`XenDomctlShadowOp::pages`], which comes back clamped to [`LOGDIRTY_MAX_PAGES`]) to
/// [`XenDomctlShadowOp::dirty_bitmap`] (0: no copy), then clear it and write-protect the domain again.
/// [`XenDomctlShadowOp::dirty_count`] gets the number of dirty pages, `fault_count` the write faults since the
/// last `CLEAN`. `-EINVAL` while log-dirty is off for the domain or with a non-zero `mode`; `-EFAULT` for a
/// bitmap the caller cannot write (checked before anything is cleared).
pub const SHADOW_OP_CLEAN: u32 = 11;
/// [`XenDomctlShadowOp::op`]: as [`SHADOW_OP_CLEAN`] without clearing.
pub const SHADOW_OP_PEEK: u32 = 12;
/// Most pfns a log-dirty bitmap covers (the largest domain, 256 MiB).
pub const LOGDIRTY_MAX_PAGES: u64 = 65536;
/// Set the most memory a domain may hold. Argument: [`XenDomctlMaxMem`].
pub const XEN_DOMCTL_MAX_MEM: u32 = 11;
/// Set a paused domain's vCPU state. Argument: [`XenDomctlVcpucontext`].
pub const XEN_DOMCTL_SETVCPUCONTEXT: u32 = 12;
/// Read a domain's vCPU state. Argument: [`XenDomctlVcpucontext`].
pub const XEN_DOMCTL_GETVCPUCONTEXT: u32 = 13;
/// Ours (deviation n): give the serial console's input to the domain (`xl console`); the debug key
/// Ctrl-] `c`, or the domain's end, gives it back to domain 0. Outside Xen's numbers.
pub const XEN_DOMCTL_CONSOLE_INPUT: u32 = 0x8000;

/// Xen's `resumedomain`: a domain that suspended itself (`SHUTDOWN_suspend`) continues in place; its
/// suspend hypercall returns 1 ("cancelled", as after a Xen checkpoint). `-EINVAL` if it is not suspended.
pub const XEN_DOMCTL_RESUMEDOMAIN: u32 = 27;
/// Ours (deviation o): ask a domain to suspend itself: [`VIRQ_SUSPEND`] is raised in it. `-EOPNOTSUPP` if
/// it has not bound [`VIRQ_SUSPEND`], `-EBUSY` if a request is already pending or it is suspended.
pub const XEN_DOMCTL_SUSPEND_REQUEST: u32 = 0x8001;
/// Ours: save a suspended domain into the hypervisor's image store as [`DomctlImage::name`]. The domain
/// stays suspended (destroy it to finish a save, resume it for a snapshot).
pub const XEN_DOMCTL_SAVE: u32 = 0x8002;
/// Ours: build a new domain from the stored image [`DomctlImage::name`]; its id in [`XenDomctl::domain`].
pub const XEN_DOMCTL_RESTORE: u32 = 0x8003;
/// Ours: store the image of [`DomctlImage::len`] bytes at [`DomctlImage::buf`] (the caller's memory) as
/// [`DomctlImage::name`]; the codec checks it first (`-EINVAL` for any defect).
pub const XEN_DOMCTL_IMAGE_PUT: u32 = 0x8004;
/// Ours: drop the stored image [`DomctlImage::name`] and free its frames.
pub const XEN_DOMCTL_IMAGE_DELETE: u32 = 0x8005;
/// Ours: write up to [`DomctlImage::len`] [`SavedImageInfo`] records to [`DomctlImage::buf`]; their
/// number is returned in [`DomctlImage::len`].
pub const XEN_DOMCTL_IMAGE_LIST: u32 = 0x8006;
/// Ours: write the stored image [`DomctlImage::name`] to the serial console in its wire form
/// (`abi::save::wire`), for `cargo xtask save` to turn into a host file.
pub const XEN_DOMCTL_IMAGE_DUMP: u32 = 0x8007;
/// Ours: live migration of domain [`XenDomctl::domain`] over the second serial line (COM2), one phase per
/// call in [`DomctlImage::flags`] ([`MIGRATE_START`] ... [`MIGRATE_CANCEL`]); the pages sent in
/// [`DomctlImage::bytes`] (for [`MIGRATE_FINAL`] also the destination's domain id in [`DomctlImage::len`]).
/// `-EBUSY` while another migration is under way, `-EIO` when the destination does not answer (the
/// migration is abandoned; the source keeps its domain), `-EINVAL` when the destination refused the image.
pub const XEN_DOMCTL_MIGRATE: u32 = 0x8008;
/// Ours: receive one live migration on COM2 (blocks until it ends); the new domain's id in
/// [`XenDomctl::domain`], the pages received in [`DomctlImage::bytes`].
pub const XEN_DOMCTL_MIGRATE_RECEIVE: u32 = 0x8009;
/// [`XEN_DOMCTL_MIGRATE`] phases: start (and send every page: round 0), another pre-copy round (the pages
/// changed since the last), the stop-and-copy tail of a suspended domain (waits for the destination's
/// answer), and giving up.
pub const MIGRATE_START: u32 = 0;
/// See [`MIGRATE_START`].
pub const MIGRATE_ROUND: u32 = 1;
/// See [`MIGRATE_START`].
pub const MIGRATE_FINAL: u32 = 2;
/// See [`MIGRATE_START`].
pub const MIGRATE_CANCEL: u32 = 3;
/// Or'ed into [`MIGRATE_FINAL`]: the tail also carries a digest of every data page and the destination
/// refuses the image if the pages it joined differ (`xl migrate --verify`: a lost write fails the migration).
pub const MIGRATE_VERIFY: u32 = 0x100;
/// The VIRQ a suspend-aware guest binds: the toolstack's "please suspend" (Xen asks through xenstore's
/// `control/shutdown`; here the first architecture VIRQ, `VIRQ_ARCH_0`, global).
pub const VIRQ_SUSPEND: u32 = crate::event_channel::VIRQ_ARCH_0;
/// Most images the store holds at once.
pub const MAX_SAVED_IMAGES: usize = 8;
/// Most frames all stored images take together (128 MiB).
pub const SAVED_IMAGES_MAX_FRAMES: u64 = 32768;
/// Longest saved-image name, in bytes.
pub const SAVED_NAME_MAX: usize = 16;
/// [`DomctlImage::flags`] for [`XEN_DOMCTL_RESTORE`]: leave the new domain paused.
pub const DOMCTL_RESTORE_PAUSED: u32 = 1;

/// Argument of the image commands (ours), 48 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DomctlImage {
    /// The image's name, NUL-padded.
    pub name: [u8; SAVED_NAME_MAX],
    /// [`DOMCTL_RESTORE_PAUSED`] or 0.
    pub flags: u32,
    pub _pad: u32,
    /// Guest pointer (put, list).
    pub buf: u64,
    /// Bytes (put) or records (list, in and out).
    pub len: u64,
    /// Out: bytes of the image made (save); the machine's free memory in bytes (list), so a toolstack can
    /// tell whether a restore fits and a test that a refused restore left nothing behind.
    pub bytes: u64,
}

impl DomctlImage {
    /// An argument naming `name`; `None` if it is empty or too long.
    pub fn named(name: &str) -> Option<DomctlImage> {
        let mut a = DomctlImage::default();
        if name.is_empty() {
            return None;
        }
        a.name
            .get_mut(..name.len())?
            .copy_from_slice(name.as_bytes());
        Some(a)
    }

    /// The name (up to the first NUL).
    pub fn name_bytes(&self) -> &[u8] {
        let n = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(SAVED_NAME_MAX);
        &self.name[..n]
    }
}

/// One stored image, as [`XEN_DOMCTL_IMAGE_LIST`] reports it, 40 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SavedImageInfo {
    /// The name, NUL-padded.
    pub name: [u8; SAVED_NAME_MAX],
    /// Bytes of the image.
    pub bytes: u64,
    /// Pages of the saved domain.
    pub pages: u64,
    /// The domain it was saved from.
    pub source: u32,
    pub _pad: u32,
}

/// [`DomctlCreate::flags`]: leave the new domain paused (unpause it with [`XEN_DOMCTL_UNPAUSEDOMAIN`]).
pub const DOMCTL_CREATE_PAUSED: u32 = 1;

/// The `domctl` envelope (`xen_domctl`), 144 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(8))]
pub struct XenDomctl {
    /// `XEN_DOMCTL_*`.
    pub cmd: u32,
    /// Must be [`XEN_DOMCTL_INTERFACE_VERSION`].
    pub interface_version: u32,
    /// The target domain (in/out for `createdomain`).
    pub domain: DomId,
    pub _pad: [u16; 3],
    /// The command's argument (Xen's union `u`, padded to 128 bytes).
    pub u: [u8; 128],
}

impl XenDomctl {
    /// Command `cmd` on `domain` at this interface version, with an all-zero argument.
    pub const fn new(cmd: u32, domain: DomId) -> XenDomctl {
        XenDomctl {
            cmd,
            interface_version: XEN_DOMCTL_INTERFACE_VERSION,
            domain,
            _pad: [0; 3],
            u: [0; 128],
        }
    }

    /// The union read as a `T` (zero-extended if the union were shorter, which the asserts below rule out).
    pub fn arg<T: FromBytes + Default>(&self) -> T {
        T::read_from_prefix(&self.u)
            .map(|(v, _)| v)
            .unwrap_or_default()
    }

    /// Store `v` at the start of the union (the rest is kept).
    pub fn set_arg<T: IntoBytes + Immutable>(&mut self, v: &T) {
        let b = v.as_bytes();
        self.u[..b.len()].copy_from_slice(b);
    }
}

/// Argument of [`XEN_DOMCTL_CREATEDOMAIN`] (ours; Xen's `xen_domctl_createdomain` describes an empty
/// domain, see deviation n), 128 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct DomctlCreate {
    /// Name of an available image, NUL-padded.
    pub image: [u8; IMAGE_NAME_MAX],
    /// Memory of the new domain, KiB ([`MIN_DOMAIN_MEM_KB`]..=[`MAX_DOMAIN_MEM_KB`], a multiple of 4).
    pub max_memkb: u64,
    /// [`DOMCTL_CREATE_PAUSED`] or 0.
    pub flags: u32,
    /// Bytes of `cmdline` used (at most [`CREATE_CMDLINE_MAX`]).
    pub cmdline_len: u32,
    /// The guest command line (UTF-8).
    pub cmdline: [u8; CREATE_CMDLINE_MAX],
}

impl Default for DomctlCreate {
    fn default() -> Self {
        DomctlCreate {
            image: [0; IMAGE_NAME_MAX],
            max_memkb: 0,
            flags: 0,
            cmdline_len: 0,
            cmdline: [0; CREATE_CMDLINE_MAX],
        }
    }
}

impl DomctlCreate {
    /// A request for `image` with `max_memkb` KiB and `cmdline`; `None` if a name or the command line is
    /// too long.
    pub fn new(image: &str, max_memkb: u64, cmdline: &str, flags: u32) -> Option<DomctlCreate> {
        let mut c = DomctlCreate {
            max_memkb,
            flags,
            cmdline_len: u32::try_from(cmdline.len()).ok()?,
            ..DomctlCreate::default()
        };
        c.image
            .get_mut(..image.len())?
            .copy_from_slice(image.as_bytes());
        c.cmdline
            .get_mut(..cmdline.len())?
            .copy_from_slice(cmdline.as_bytes());
        Some(c)
    }

    /// The image name (up to the first NUL).
    pub fn image_name(&self) -> &[u8] {
        let n = self
            .image
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(IMAGE_NAME_MAX);
        &self.image[..n]
    }
}

/// Argument of [`XEN_DOMCTL_MAX_MEM`] (`xen_domctl_max_mem`), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlMaxMem {
    /// The ceiling in KiB.
    pub max_memkb: u64,
}

/// Argument of [`XEN_DOMCTL_SHADOW_OP`] (`xen_domctl_shadow_op`, its layout), 40 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlShadowOp {
    /// [`SHADOW_OP_OFF`], [`SHADOW_OP_ENABLE_LOGDIRTY`], [`SHADOW_OP_CLEAN`] or [`SHADOW_OP_PEEK`].
    pub op: u32,
    /// 0 (Xen's mode bits for its other enable operations).
    pub mode: u32,
    /// Unused (Xen's shadow allocation in MiB).
    pub mb: u32,
    pub _pad: u32,
    /// Guest pointer to the bitmap (`CLEAN`, `PEEK`).
    pub dirty_bitmap: u64,
    /// In: bits the bitmap holds; out: bits written.
    pub pages: u64,
    /// Out: write faults fixed since the last `CLEAN`.
    pub fault_count: u32,
    /// Out: dirty pages reported.
    pub dirty_count: u32,
}
layout!(XenDomctlShadowOp, 40; dirty_bitmap @ 16, pages @ 24, fault_count @ 32, dirty_count @ 36);

/// Argument of [`XEN_DOMCTL_SETVCPUCONTEXT`] and [`XEN_DOMCTL_GETVCPUCONTEXT`] (`xen_domctl_vcpucontext`),
/// 16 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct XenDomctlVcpucontext {
    /// The vCPU (only 0 exists).
    pub vcpu: u32,
    pub _pad: u32,
    /// Guest pointer to a [`VcpuGuestContext`].
    pub ctxt: u64,
}

pub use crate::xen::CpuUserRegs;

/// A vCPU's state as Xen's x86_64 `vcpu_guest_context` lays it out, 5168 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VcpuGuestContext {
    /// The FXSAVE image.
    pub fpu_ctxt: [u8; 512],
    /// `VGCF_*` (reported 0 here: kernel mode is read from `user_regs.cs`).
    pub flags: u64,
    pub user_regs: CpuUserRegs,
    /// The virtual IDT: entry `n` describes vector `n` (address 0: none).
    pub trap_ctxt: [TrapInfo; 256],
    pub ldt_base: u64,
    pub ldt_ents: u64,
    pub gdt_frames: [u64; 16],
    pub gdt_ents: u64,
    /// Ring-1 stack selector for traps from ring 3.
    pub kernel_ss: u64,
    /// Ring-1 stack pointer for traps from ring 3 (`stack_switch`).
    pub kernel_sp: u64,
    /// `ctrlreg[3]`: the page-table base (`mfn << 12`); the others 0.
    pub ctrlreg: [u64; 8],
    pub debugreg: [u64; 8],
    pub event_callback_eip: u64,
    pub failsafe_callback_eip: u64,
    pub syscall_callback_eip: u64,
    pub vm_assist: u64,
    pub fs_base: u64,
    pub gs_base_kernel: u64,
    pub gs_base_user: u64,
}

layout!(XenDomctl, 144; interface_version @ 4, domain @ 8, u @ 16);
layout!(DomctlCreate, 128; max_memkb @ 16, flags @ 24, cmdline_len @ 28, cmdline @ 32);
layout!(XenDomctlMaxMem, 8);
layout!(DomctlImage, 48; flags @ 16, buf @ 24, len @ 32, bytes @ 40);
layout!(SavedImageInfo, 40; bytes @ 16, pages @ 24, source @ 32);
layout!(XenDomctlVcpucontext, 16; ctxt @ 8);
layout!(
    VcpuGuestContext, 5168;
    flags @ 512, user_regs @ 520, trap_ctxt @ 720, ldt_base @ 4816, gdt_frames @ 4832, gdt_ents @ 4960,
    kernel_ss @ 4968, kernel_sp @ 4976, ctrlreg @ 4984, debugreg @ 5048, event_callback_eip @ 5112,
    failsafe_callback_eip @ 5120, syscall_callback_eip @ 5128, vm_assist @ 5136, fs_base @ 5144,
    gs_base_kernel @ 5152, gs_base_user @ 5160,
);
static_assertions::const_assert_eq!(core::mem::align_of::<XenDomctl>(), 8);
static_assertions::const_assert!(core::mem::size_of::<XenDomctlGetdomaininfo>() <= 128);
static_assertions::const_assert!(MAX_DOMAINS <= crate::xen::DOMID_FIRST_RESERVED as usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_xens() {
        assert_eq!(XEN_DOMCTL_INTERFACE_VERSION, 0x15);
        assert_eq!(
            [
                XEN_DOMCTL_CREATEDOMAIN,
                XEN_DOMCTL_DESTROYDOMAIN,
                XEN_DOMCTL_PAUSEDOMAIN,
                XEN_DOMCTL_UNPAUSEDOMAIN,
                XEN_DOMCTL_GETDOMAININFO,
                XEN_DOMCTL_SHADOW_OP,
                XEN_DOMCTL_MAX_MEM,
                XEN_DOMCTL_SETVCPUCONTEXT,
                XEN_DOMCTL_GETVCPUCONTEXT,
            ],
            [1, 2, 3, 4, 5, 10, 11, 12, 13]
        );
        assert_eq!(
            [
                SHADOW_OP_OFF,
                SHADOW_OP_ENABLE_LOGDIRTY,
                SHADOW_OP_CLEAN,
                SHADOW_OP_PEEK
            ],
            [0, 2, 11, 12]
        );
        assert_eq!(crate::hypercall::nr::DOMCTL, 36);
    }

    #[test]
    fn the_envelope_carries_domain_and_argument() {
        let mut op = XenDomctl::new(XEN_DOMCTL_MAX_MEM, 7);
        op.set_arg(&XenDomctlMaxMem { max_memkb: 0x1234 });
        let b = op.as_bytes();
        assert_eq!(&b[0..4], &11u32.to_le_bytes());
        assert_eq!(&b[4..8], &0x15u32.to_le_bytes());
        assert_eq!(&b[8..10], &7u16.to_le_bytes());
        assert_eq!(&b[16..24], &0x1234u64.to_le_bytes());
        assert_eq!(op.arg::<XenDomctlMaxMem>().max_memkb, 0x1234);
    }

    #[test]
    fn create_requests_bound_their_strings() {
        let c = DomctlCreate::new("guest", 4096, "ticker", 0).unwrap();
        assert_eq!(c.image_name(), b"guest");
        assert_eq!(&c.cmdline[..c.cmdline_len as usize], b"ticker");
        assert!(DomctlCreate::new("a-name-longer-than-16", 4096, "", 0).is_none());
        assert!(DomctlCreate::new("g", 4096, &"x".repeat(97), 0).is_none());
        let full = DomctlCreate::new("exactly-16-bytes", 4096, &"y".repeat(96), 0).unwrap();
        assert_eq!(full.image_name().len(), 16);
    }
}
