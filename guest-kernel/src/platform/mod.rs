//! The platform seam (pv-ops style): every privileged operation of the guest kernel goes through the one
//! [`Platform`] trait, in the kernel's own terms; backends turn them into whatever their machine needs.
//!
//! Today there is one backend, the Xen-style PV one ([`xen_pv::XenPv`], in `xen_pv.rs`, `xen_ops.rs` and
//! `xen_seam.rs`), which turns each operation into a hypercall or a store into the shared-info page. It is
//! the only code of the kernel that knows Xen's structures (`MmuUpdate`, `TrapInfo`, event-channel
//! commands, ...). A native ring-0 backend implements the same trait with instructions: a batch of
//! [`PtWrite`]s is a run of stores into page tables, a [`Flush`] is `invlpg` or a CR3 reload, pinning is
//! a no-op, [`TrapGates`] become IDT gates, interrupt sources are PIC lines, the clock is the TSC
//! calibrated against the PIT, the kernel stack is `TSS.rsp0`.
//!
//! # Which backend
//!
//! The same image must choose its backend at boot from how it was entered, so the choice is data, not a
//! build option: [`select`] records it once, [`ops`] returns it. [`ops`] is a `match` over the
//! recorded [`Backend`] returning a `&'static dyn Platform`; inlined at each call site, each arm is a
//! concrete type, so the compiler calls the backend's methods directly (with one backend, the match and
//! the load disappear altogether). This is the enum form of Linux's pv-ops table, without patching.
//!
//! The PV scenarios and the hypercall benchmarks test the hypervisor itself: they call the PV backend
//! directly (`crate::boot::platform()` is that backend), with Xen's own structures.

pub mod native;
#[cfg(feature = "baremetal")]
mod xen_domctl;
pub mod xen_event_scan;
#[cfg(feature = "baremetal")]
pub mod xen_events;
#[cfg(feature = "baremetal")]
pub mod xen_ops;
#[cfg(feature = "baremetal")]
pub mod xen_pv;
pub mod xen_pvclock;
#[cfg(feature = "baremetal")]
mod xen_seam;

use abi::errno::Errno;
use abi::types::{Gva, Maddr, Mfn, PAGE_SHIFT, Pfn};

use crate::mm::pte::{Level, Pte};

/// What the toolstack asks of another machine ([`Platform::machine_control`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineOp {
    /// Stop it for good and free its memory.
    Destroy,
    /// Stop scheduling it.
    Pause,
    /// Schedule it again.
    Unpause,
    /// Set its memory ceiling, KiB.
    MaxMemKb(u64),
    /// Give it the console's input.
    ConsoleInput,
    /// Ask it to suspend itself (for a save).
    Suspend,
    /// Let a suspended machine continue in place (or withdraw the request).
    Resume,
}

/// A toolstack operation on the hypervisor's saved-image store.
#[derive(Debug, PartialEq, Eq)]
pub enum ImageOp<'a> {
    /// Save suspended machine `id` as `name`; the image's bytes.
    Save { id: u16, name: &'a str },
    /// Restore `name` as a new machine (paused if asked); its id.
    Restore { name: &'a str, paused: bool },
    /// Drop `name`.
    Delete { name: &'a str },
    /// Write `name` to the serial console (wire form) for the host.
    Dump { name: &'a str },
    /// Live-migrate machine `id`, phase `phase`: pages sent (and the destination's id in bits 32..).
    Migrate { id: u16, phase: u32 },
    /// Receive one live migration: the new machine's id, pages received in bits 32.. .
    MigrateReceive,
    /// Fill `out` with the stored images; how many.
    List {
        out: &'a mut [uapi::domctl::ImageInfo],
    },
}

/// Which TLB entries a flush covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Every non-global entry of this address space.
    All,
    /// The translation of one page.
    Page(Gva),
}

/// One queued page-table write: an entry store, or a record of which guest frame a machine frame backs.
///
/// The kernel builds batches of these and hands them to [`Mmu::write_ptes`]; natively each is a store
/// (the frame-owner record is a no-op when guest and machine frames are the same), on PV the batch is one
/// validating hypercall. The layout (two words, the kind in the low bits of the first) is the kernel's; it
/// happens to be what the PV backend's hypercall reads, so that backend passes the batch without copying.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PtWrite {
    /// Target address | kind (low 2 bits).
    target: u64,
    /// The value written.
    val: u64,
}

/// What a [`PtWrite`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtTarget {
    /// Store the value into the page-table entry at this machine address.
    Entry(Maddr),
    /// Record that machine frame `Mfn` now backs guest frame `value`.
    FrameOwner(Mfn),
    /// A kind this kernel does not make (from a raw request).
    Other(u64),
}

impl PtWrite {
    /// Kind of an entry store (low bits of `target`).
    pub const KIND_ENTRY: u64 = 0;
    /// Kind of a frame-owner record.
    pub const KIND_FRAME_OWNER: u64 = 1;
    const KIND_MASK: u64 = 3;

    /// Store `pte` into the page-table entry at machine address `at` (8-byte aligned).
    pub const fn entry(at: Maddr, pte: Pte) -> PtWrite {
        PtWrite {
            target: at.0 | Self::KIND_ENTRY,
            val: pte.0,
        }
    }

    /// Record that machine frame `mfn` backs guest frame `pfn`.
    pub const fn frame_owner(mfn: Mfn, pfn: Pfn) -> PtWrite {
        PtWrite {
            target: (mfn.0 << PAGE_SHIFT) | Self::KIND_FRAME_OWNER,
            val: pfn.0,
        }
    }

    /// A write from its two raw words (what a backend or a test got from elsewhere).
    pub const fn from_raw(target: u64, val: u64) -> PtWrite {
        PtWrite { target, val }
    }

    /// What the write does.
    pub const fn target(&self) -> PtTarget {
        match self.target & Self::KIND_MASK {
            Self::KIND_ENTRY => PtTarget::Entry(Maddr(self.target & !Self::KIND_MASK)),
            Self::KIND_FRAME_OWNER => PtTarget::FrameOwner(Mfn(self.target >> PAGE_SHIFT)),
            _ => PtTarget::Other(self.target),
        }
    }

    /// The value written.
    pub const fn value(&self) -> u64 {
        self.val
    }

    /// The two raw words `(target | kind, value)`.
    pub const fn raw(&self) -> (u64, u64) {
        (self.target, self.val)
    }
}

/// The page-table part of the platform: what the memory manager needs to change translations. The
/// memory manager is generic over it (host tests implement it with a model of the hypervisor's
/// validation rules, `mm::mock`); every [`Platform`] provides it.
pub trait Mmu {
    /// Apply `writes` in order. Returns how many were applied and the result: on a refusal, the writes
    /// before the bad one are applied and none after it.
    fn write_ptes(&self, writes: &[PtWrite]) -> (usize, Result<(), Errno>);
    /// Make frame `mfn` a page table of `level` that stays one until unpinned (natively: nothing to do).
    fn pin_table(&self, level: Level, mfn: Mfn) -> Result<(), Errno>;
    /// Drop the pin on the table `mfn`.
    fn unpin_table(&self, mfn: Mfn) -> Result<(), Errno>;
    /// Switch to the address space whose top-level table is `root`.
    fn switch_address_space(&self, root: Mfn) -> Result<(), Errno>;
    /// Flush TLB entries of the current address space.
    fn flush_tlb(&self, what: Flush) -> Result<(), Errno>;
}

/// An interrupt source as the kernel numbers it (PV: an event-channel port; natively: an IRQ line). The
/// backend assigns the numbers; 0 is never a bound source.
pub type Irq = u32;

/// What the kernel wants an interrupt source for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqSource {
    /// The timer of [`Platform::set_timer`] / [`Platform::set_periodic_timer`].
    Timer,
    /// Console input is available.
    Console,
    /// A source this CPU raises itself with [`Platform::irq_send`].
    SelfIpi,
    /// A channel offered to the peer machine `peer` (it connects with [`IrqSource::PeerConnect`]).
    PeerOffer { peer: u16 },
    /// Connect to the source `remote` that the peer `peer` offered to this machine.
    PeerConnect { peer: u16, remote: Irq },
    /// The toolstack asks this machine to suspend itself (PV: `VIRQ_SUSPEND`).
    Suspend,
}

/// What an interrupt source is connected to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqState {
    /// Not bound.
    Free,
    /// Offered to a peer, not connected yet.
    Offered,
    /// Connected to a peer.
    Peer,
    /// A device line (timer, console).
    Line,
    /// Raised by this CPU.
    SelfIpi,
}

/// One gate of the trap table: the handler's address and whether user code may invoke it with `int`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    /// Entry address (in the kernel's code segment).
    pub handler: u64,
    /// User code may raise the vector itself (`int3`, `into`, `int 0x80`: DPL 3).
    pub user: bool,
}

/// The kernel's trap gates: the 32 exception vectors and the optional `int 0x80` system-call gate. No gate
/// masks interrupts on entry: exceptions run with the interrupted context's interrupt flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapGates {
    /// Vectors 0..32.
    pub exceptions: [Gate; 32],
    /// Vector 0x80, if installed.
    pub int80: Option<Gate>,
}

/// The kernel's other entry points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryPoints {
    /// Interrupts (PV: the event upcall; natively: the IRQ vectors' common entry).
    pub interrupt: u64,
    /// A return to a context the platform could not restore (PV: the failsafe callback).
    pub failsafe: u64,
    /// The SYSCALL instruction from user mode (entered with interrupts masked).
    pub syscall: u64,
}

/// One raw reading of the platform's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockReading {
    /// System time in ns since the platform started.
    pub ns: u64,
    /// Which set of scaling parameters it used (PV: the pvclock record's version).
    pub version: u32,
    /// Retries caused by concurrent updates of the parameters.
    pub retries: u32,
}

/// What the platform underneath says about itself (for the `ring` program); `None` natively.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypervisorInfo {
    /// Version, major << 16 | minor.
    pub version: u32,
    /// Feature bits (submap 0).
    pub features: u32,
    /// Capabilities string, NUL-terminated and padded.
    pub caps: [u8; 32],
}

/// How the machine stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halt {
    /// A clean power-off with an exit code.
    Poweroff,
    /// The kernel could not go on.
    Crash,
}

/// The privileged operations a kernel needs, whatever it runs on.
pub trait Platform: Mmu + Sync {
    /// Short name of the backend ("xen-pv", ...).
    fn name(&self) -> &'static str;
    /// The privilege level the kernel runs at on this platform.
    fn kernel_ring(&self) -> u8;
    /// What the hypervisor underneath says about itself, if there is one.
    fn hypervisor_info(&self) -> Option<HypervisorInfo>;
    /// How often the hypervisor underneath was entered on this machine's behalf, by kind; `None` without
    /// one (natively) or if it does not count. The default is `None`.
    fn entry_counters(&self) -> Option<uapi::HvCounters> {
        None
    }
    /// The virtual machines beside this one, from id `first` on, as many as fit in `out`; returns how many
    /// were written (`-ENOSYS` without a hypervisor, `-EPERM` unless this is the control machine).
    fn machines(&self, first: u16, out: &mut [uapi::DomInfo]) -> Result<usize, Errno>;
    /// Toolstack (the control machine only): build and start a machine from an image the hypervisor
    /// keeps; returns its id. Without a hypervisor: `-EOPNOTSUPP` ("not virtualised").
    fn machine_create(&self, req: &uapi::domctl::DomCreate) -> Result<u16, Errno> {
        let _ = req;
        Err(Errno::EOPNOTSUPP)
    }
    /// Toolstack: destroy, pause or unpause another machine, or set its memory ceiling. Without a
    /// hypervisor: `-EOPNOTSUPP`.
    fn machine_control(&self, id: u16, op: MachineOp) -> Result<(), Errno> {
        let _ = (id, op);
        Err(Errno::EOPNOTSUPP)
    }
    /// Toolstack: the saved-image store (save, restore, delete, list). Without a hypervisor:
    /// `-EOPNOTSUPP`.
    fn machine_image(&self, op: ImageOp<'_>) -> Result<u64, Errno> {
        let _ = op;
        Err(Errno::EOPNOTSUPP)
    }
    /// Suspend this machine for the toolstack (PV: `SHUTDOWN_suspend` naming the start-info frame
    /// `start_info`): `Ok(true)` when it continues in a restored machine (new frames, maybe a new id),
    /// `Ok(false)` when it continues in place (a snapshot, or the request withdrawn). `-EOPNOTSUPP` without
    /// a hypervisor.
    fn suspend(&self, start_info: Mfn) -> Result<bool, Errno> {
        let _ = start_info;
        Err(Errno::EOPNOTSUPP)
    }

    // Console.
    /// Write bytes to the console.
    fn console_write(&self, bytes: &[u8]) -> Result<(), Errno>;
    /// Read available console input into `buf`; returns the number of bytes read.
    fn console_read(&self, buf: &mut [u8]) -> Result<usize, Errno>;

    // Memory beyond the page tables.
    /// Change the entry that maps `va` in the current address space (its L1 must exist) and flush that
    /// page's translation.
    fn remap_page(&self, va: Gva, pte: Pte) -> Result<(), Errno>;
    /// The machine-to-guest frame table: `(virtual address, entries)`, readable by the kernel.
    fn frame_table(&self) -> Result<(u64, u64), Errno>;
    /// Pages this machine holds now.
    fn memory_pages(&self) -> Result<u64, Errno>;
    /// Pages this machine may hold at most.
    fn memory_limit(&self) -> Result<u64, Errno>;
    /// Give the machine frames `mfns` (unused: unmapped, not page tables) back; returns how many were
    /// released (fewer than asked if one could not be).
    fn release_frames(&self, mfns: &[u64]) -> Result<usize, Errno>;
    /// Ask for `mfns.len()` new zeroed frames, written into `mfns`; returns how many were given.
    fn claim_frames(&self, mfns: &mut [u64]) -> Result<usize, Errno>;

    // The interrupt flag.
    /// Mask interrupts; returns whether they were enabled before.
    fn irq_disable(&self) -> bool;
    /// Re-enable interrupts if `enabled` (delivering any that became pending meanwhile).
    fn irq_restore(&self, enabled: bool);
    /// True if interrupts are enabled now.
    fn irqs_enabled(&self) -> bool;
    /// True if an interrupt is waiting for delivery.
    fn irq_pending(&self) -> bool;
    /// Set the interrupt flag without delivering what is pending (the trap return path that follows
    /// delivers it).
    fn irq_set_flag(&self, enabled: bool);

    // Interrupt sources.
    /// A new source for `what` (not necessarily delivered before [`Platform::irq_unmask`]).
    fn irq_bind(&self, what: IrqSource) -> Result<Irq, Errno>;
    /// Release `irq`.
    fn irq_close(&self, irq: Irq) -> Result<(), Errno>;
    /// Raise `irq` (a self IPI) or its peer end.
    fn irq_send(&self, irq: Irq) -> Result<(), Errno>;
    /// Let `irq` be delivered (now, if it is pending).
    fn irq_unmask(&self, irq: Irq) -> Result<(), Errno>;
    /// Stop delivering `irq` (it still becomes pending).
    fn irq_mask(&self, irq: Irq);
    /// True if `irq` is pending.
    fn irq_is_pending(&self, irq: Irq) -> bool;
    /// True if `irq` is masked.
    fn irq_is_masked(&self, irq: Irq) -> bool;
    /// Clear `irq`'s pending state; returns whether it was pending.
    fn irq_take_pending(&self, irq: Irq) -> bool;
    /// What `irq` is connected to.
    fn irq_state(&self, irq: Irq) -> Result<IrqState, Errno>;
    /// Acknowledge every pending, unmasked source and call `handler` for each (interrupts masked).
    fn irq_dispatch(&self, handler: &mut dyn FnMut(Irq));

    // Time.
    /// One raw reading of system time (ns since the platform started; not clamped to be monotonic), or
    /// `None` without a clock. `version` and `retries` say which scaling parameters it used and how often
    /// it was retried while they changed (a clock whose parameters never change reports 0 for both).
    fn clock_read(&self) -> Option<ClockReading>;
    /// The wall clock at system time 0, `(seconds, nanoseconds)` since 1970, if the platform keeps one.
    fn wallclock_base(&self) -> Option<(u64, u32)>;
    /// Arm the one-shot timer for system time `deadline_ns` (0 cancels).
    fn set_timer(&self, deadline_ns: u64) -> Result<(), Errno>;
    /// A timer interrupt every `period_ns`.
    fn set_periodic_timer(&self, period_ns: u64) -> Result<(), Errno>;
    /// Stop the periodic timer.
    fn stop_periodic_timer(&self) -> Result<(), Errno>;

    // Idle.
    /// Enable interrupts and sleep until one arrives (atomically: none is lost in between).
    fn block(&self) -> Result<(), Errno>;
    /// Give the CPU to someone else for a while.
    fn yield_cpu(&self) -> Result<(), Errno>;
    /// Sleep, interrupts still masked, until one of `irqs` is pending or system time `deadline_ns`
    /// (0: none).
    fn poll(&self, irqs: &[Irq], deadline_ns: u64) -> Result<(), Errno>;

    // Traps and system calls.
    /// Install the trap gates (adding to or replacing those installed before).
    fn set_trap_gates(&self, gates: &TrapGates) -> Result<(), Errno>;
    /// Remove every trap gate (what a trap then does is the platform's business: PV, the hypervisor's
    /// default).
    fn clear_trap_gates(&self) -> Result<(), Errno>;
    /// Register the interrupt, failsafe and SYSCALL entry points.
    fn set_entry_points(&self, entries: &EntryPoints) -> Result<(), Errno>;
    /// The kernel stack a trap from user mode switches to.
    fn set_kernel_stack(&self, rsp: u64) -> Result<(), Errno>;
    /// The address of the page fault being handled (CR2).
    fn fault_address(&self) -> u64;

    // Segment state.
    /// The FS base of user mode.
    fn set_user_fs_base(&self, base: u64) -> Result<(), Errno>;
    /// The GS base of user mode.
    fn set_user_gs_base(&self, base: u64) -> Result<(), Errno>;

    /// Stop this machine for good.
    fn shutdown(&self, how: Halt, code: u32) -> !;
}

/// The backends this image contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Backend {
    /// A Xen-style PV domain (entered by the domain builder with start_info in RSI).
    XenPv = 0,
    /// The bare machine, ring 0 (entered through the multiboot entry, `_start32`/`_start64`).
    Native = 1,
}

#[cfg(feature = "baremetal")]
static BACKEND: core::sync::atomic::AtomicU8 =
    core::sync::atomic::AtomicU8::new(Backend::XenPv as u8);

/// Record the backend, once, at boot (from the entry point the kernel came in by).
#[cfg(feature = "baremetal")]
pub fn select(b: Backend) {
    BACKEND.store(b as u8, core::sync::atomic::Ordering::Relaxed);
}

/// The backend chosen at boot.
#[cfg(feature = "baremetal")]
pub fn backend() -> Backend {
    match BACKEND.load(core::sync::atomic::Ordering::Relaxed) {
        // Only `select` stores, and only variants.
        1 => Backend::Native,
        _ => Backend::XenPv,
    }
}

/// `on_backend!(p => expr)`: `expr` with `p` bound to the backend chosen at boot as its concrete type
/// (`&XenPv` or `&Native`), one copy of `expr` per backend. For hot paths (trap entries, polled waits):
/// the platform calls in `expr` are then direct calls the compiler can inline, where [`ops`] makes each
/// one a call through the backend's choice.
#[cfg(feature = "baremetal")]
macro_rules! on_backend {
    ($p:ident => $e:expr) => {
        match $crate::platform::backend() {
            $crate::platform::Backend::XenPv => {
                let $p = &$crate::platform::xen_pv::XEN_PV;
                $e
            }
            $crate::platform::Backend::Native => {
                let $p = &$crate::platform::native::backend::NATIVE;
                $e
            }
        }
    };
}
#[cfg(feature = "baremetal")]
pub(crate) use on_backend;

/// The platform this kernel runs on.
#[cfg(feature = "baremetal")]
#[inline(always)]
pub fn ops() -> &'static dyn Platform {
    match backend() {
        Backend::XenPv => &xen_pv::XEN_PV,
        Backend::Native => &native::backend::NATIVE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pt_writes_say_what_they_do() {
        let w = PtWrite::entry(Maddr(0x1234_5008), Pte(0x8000_0000_0020_0063));
        assert_eq!(w.target(), PtTarget::Entry(Maddr(0x1234_5008)));
        assert_eq!(w.value(), 0x8000_0000_0020_0063);
        assert_eq!(w.raw(), (0x1234_5008 | PtWrite::KIND_ENTRY, w.value()));

        let o = PtWrite::frame_owner(Mfn(0x42), Pfn(7));
        assert_eq!(o.target(), PtTarget::FrameOwner(Mfn(0x42)));
        assert_eq!(o.raw(), (0x42_000 | PtWrite::KIND_FRAME_OWNER, 7));

        // A raw request round-trips, and a kind the kernel does not make is reported as such.
        assert_eq!(PtWrite::from_raw(w.raw().0, w.raw().1), w);
        assert_eq!(
            PtWrite::from_raw(0x5002, 1).target(),
            PtTarget::Other(0x5002)
        );
    }

    #[test]
    fn a_pt_write_is_two_words() {
        assert_eq!(core::mem::size_of::<PtWrite>(), 16);
        assert_eq!(core::mem::align_of::<PtWrite>(), 8);
    }
}
