//! Domains and their vCPU state, the domain table, and the round-robin choice of the next vCPU.

use abi::sched::ShutdownReason;

use crate::console::LineBuffer;
use crate::hypercall::DomainMm;
use crate::regs::EntryFrame;
use crate::vcpu::VcpuState;

/// Most domains the hypervisor runs at once: the one limit every layer shares ([`abi::domctl::MAX_DOMAINS`]).
pub const MAX_DOMAINS: usize = abi::domctl::MAX_DOMAINS;

/// Life cycle of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    /// Has a vCPU that may run.
    Runnable,
    /// Asked to stop (`SCHEDOP_shutdown`).
    Shutdown {
        /// Xen shutdown reason.
        reason: ShutdownReason,
        /// Exit code passed in RDX (our extension).
        code: u32,
    },
    /// Stopped by the hypervisor (`crash_domain`).
    Crashed,
}

/// A 512-byte FXSAVE image, 16-byte aligned as FXSAVE/FXRSTOR require.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FxArea(pub [u8; 512]);

impl FxArea {
    /// The state after FNINIT with all SSE exceptions masked: FCW = 0x37f, MXCSR = 0x1f80.
    pub const fn initial() -> FxArea {
        let mut a = [0u8; 512];
        a[0] = 0x7f;
        a[1] = 0x03;
        a[24] = 0x80;
        a[25] = 0x1f;
        FxArea(a)
    }
}

/// The (single) virtual CPU of a domain.
#[derive(Clone, Copy)]
pub struct Vcpu {
    /// Saved registers while not running (the frame of the last entry, or the start-of-day state).
    pub regs: EntryFrame,
    /// Saved FPU/SSE state.
    pub fx: FxArea,
    /// Trap table, callbacks, kernel stack, segment state.
    pub pv: VcpuState,
}

/// A domain.
pub struct Domain {
    /// Domain id (0 is the privileged initial domain).
    pub id: u16,
    /// Life-cycle state.
    pub state: DomainState,
    /// The vCPU.
    pub vcpu: Vcpu,
    /// Page-table base, reservation, TLB-flush request (the state the memory hypercalls change). The
    /// base's L4 is what the vCPU's CR3 holds; `flush_tlb` is set at creation (the domain's PCID may hold
    /// entries of an earlier domain with the same id) and whenever its page tables change.
    pub mm: DomainMm,
    /// `SIF_PRIVILEGED`: may use privileged hypercalls.
    pub privileged: bool,
    /// Console output not yet terminated by a newline.
    pub console: LineBuffer,
    /// The trap-and-emulate state of an emulate domain (`None`: a PV domain).
    pub emu: Option<crate::emulate::dispatch::EmuSlot>,
    /// The hvm vCPU (`kind=hvm`: SVM with nested paging); `None` for a PV domain.
    pub hvm: Option<crate::hvm::HvmVcpu>,
    /// Where the domain is in the save protocol (`domain::save`).
    pub suspend: Suspend,
}

/// A domain's part in the save protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Suspend {
    /// Running normally.
    #[default]
    No,
    /// The toolstack raised `VIRQ_SUSPEND`; the guest has not suspended yet.
    Requested,
    /// The guest called `SHUTDOWN_suspend` naming this start-info frame: it is paused, memory kept, until
    /// it is saved, resumed or destroyed.
    Suspended(abi::types::Mfn),
}

impl Domain {
    /// How the domain's kernel runs.
    pub fn kind(&self) -> super::kind::DomainKind {
        if self.hvm.is_some() {
            super::kind::DomainKind::Hvm
        } else if self.emu.is_some() {
            super::kind::DomainKind::Emulate
        } else {
            super::kind::DomainKind::Pv
        }
    }

    /// True if the vCPU may be scheduled.
    pub fn runnable(&self) -> bool {
        self.state == DomainState::Runnable
    }
}

/// All domains, and which one's vCPU is on the CPU.
pub struct DomainTable {
    /// Slots, indexed by domain id.
    pub slots: [Option<Domain>; MAX_DOMAINS],
    /// The domain whose vCPU runs (or ran last).
    pub current: Option<usize>,
    /// The domain whose segment state (selectors, FS/GS bases) is in the CPU.
    pub segments_loaded: Option<usize>,
    /// Every live domain's shared_info frame, indexed by domain id (kept up to date by
    /// [`DomainTable::refresh_shared_info`] when a domain starts or stops).
    pub shared_info: [Option<abi::types::Mfn>; MAX_DOMAINS],
    /// The most severe [`exit_status`] of the domains already reaped.
    pub reaped_status: u8,
    /// The id given to the last domain created at run time ([`DomainTable::free_id`] continues after it).
    pub last_created: u16,
    /// Slots from here on have never held a domain: the scans stop here ([`DomainTable::insert`]).
    used: usize,
    /// The fast hypercall return's state, valid while [`crate::pending::DISARMED`] is clear (set by
    /// `sched::resume_live`, used by `trap::fast_hypercall`).
    pub armed: crate::pending::Armed,
}

impl DomainTable {
    /// Domain `id` if it exists and may still run (`-ESRCH` otherwise), to read.
    pub fn live(&self, id: u16) -> Result<&Domain, abi::errno::Errno> {
        self.slots
            .get(usize::from(id))
            .and_then(Option::as_ref)
            .filter(|d| d.runnable())
            .ok_or(abi::errno::Errno::ESRCH)
    }

    /// Domain `id` if it exists and may still run (`-ESRCH` otherwise): what a control operation on
    /// another domain acts on.
    pub fn live_mut(&mut self, id: u16) -> Result<&mut Domain, abi::errno::Errno> {
        self.slots
            .get_mut(usize::from(id))
            .and_then(Option::as_mut)
            .filter(|d| d.runnable())
            .ok_or(abi::errno::Errno::ESRCH)
    }

    /// Domain `id` in whatever state (`-ESRCH` if there is none): control operations that also apply to a
    /// dying domain.
    pub fn any_mut(&mut self, id: u16) -> Result<&mut Domain, abi::errno::Errno> {
        self.slots
            .get_mut(usize::from(id))
            .and_then(Option::as_mut)
            .ok_or(abi::errno::Errno::ESRCH)
    }

    /// An empty table.
    pub const fn new() -> DomainTable {
        DomainTable {
            slots: [const { None }; MAX_DOMAINS],
            current: None,
            segments_loaded: None,
            shared_info: [None; MAX_DOMAINS],
            reaped_status: abi::exit::EXIT_OK,
            last_created: 0,
            used: 0,
            armed: crate::pending::Armed::NONE,
        }
    }

    /// Put `d` in slot `d.id` (replacing whatever was there), with its entry in the shared_info list (the
    /// scheduler rebuilds that list only after a reap).
    pub fn insert(&mut self, d: Domain) {
        let i = usize::from(d.id);
        self.used = self.used.max(i + 1);
        self.shared_info[i] = d.runnable().then_some(d.mm.shared_info);
        self.slots[i] = Some(d);
    }

    /// Remove every stopped domain (shut down or crashed: its memory is already released) from the table,
    /// folding its result into [`DomainTable::reaped_status`], so it leaves the domain list and its id can
    /// be used again. Returns how many were reaped.
    pub fn reap(&mut self) -> usize {
        let mut n = 0;
        for i in 0..self.used {
            let Some(d) = self.slots[i].as_ref().filter(|d| !d.runnable()) else {
                continue;
            };
            self.reaped_status = self.reaped_status.max(exit_status(core::iter::once(d)));
            self.slots[i] = None;
            self.shared_info[i] = None;
            if self.current == Some(i) {
                self.current = None;
            }
            if self.segments_loaded == Some(i) {
                self.segments_loaded = None;
            }
            n += 1;
        }
        n
    }

    /// The id for a domain created at run time: the first free one after [`DomainTable::last_created`],
    /// wrapping around (as Xen's toolstack does, so a just-freed id — and a channel offered to it — is
    /// not handed to the next domain at once), never 0 (the initial domain's). `None` at the limit.
    pub fn free_id(&self) -> Option<u16> {
        (1..MAX_DOMAINS)
            .map(|k| (usize::from(self.last_created) + k) % MAX_DOMAINS)
            .find(|&i| i != 0 && self.slots[i].is_none())
            .map(|i| i as u16)
    }

    /// The overall result so far: the live domains' and the reaped ones' ([`exit_status`]).
    pub fn status(&self) -> u8 {
        exit_status(self.iter()).max(self.reaped_status)
    }

    /// The next runnable domain after `after` in round-robin order (possibly `after` itself, last).
    pub fn next_runnable(&self, after: Option<usize>) -> Option<usize> {
        let start = after.map_or(0, |a| a + 1);
        (0..MAX_DOMAINS)
            .map(|k| (start + k) % MAX_DOMAINS)
            .find(|&i| self.slots[i].as_ref().is_some_and(Domain::runnable))
    }

    /// The current domain, if any.
    pub fn current_mut(&mut self) -> Option<&mut Domain> {
        self.slots[self.current?].as_mut()
    }

    /// Recompute [`DomainTable::shared_info`] (after a domain started or stopped).
    pub fn refresh_shared_info(&mut self) {
        for i in 0..self.used {
            self.shared_info[i] = self.slots[i]
                .as_ref()
                .filter(|d| d.runnable())
                .map(|d| d.mm.shared_info);
        }
    }

    /// Iterate over existing domains.
    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.slots.iter().flatten()
    }
}

impl Default for DomainTable {
    fn default() -> Self {
        Self::new()
    }
}

/// The overall result the hypervisor reports when no domain is left (see `abi::exit`).
pub fn exit_status<'a>(domains: impl Iterator<Item = &'a Domain>) -> u8 {
    let mut status = abi::exit::EXIT_OK;
    for d in domains {
        let s = match d.state {
            DomainState::Crashed => abi::exit::EXIT_DOMAIN_CRASHED,
            DomainState::Shutdown {
                reason: ShutdownReason::Poweroff,
                code: 0,
            } => abi::exit::EXIT_OK,
            DomainState::Shutdown { .. } | DomainState::Runnable => abi::exit::EXIT_DOMAIN_FAILED,
        };
        status = status.max(s);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::types::Mfn;

    fn dom(id: u16, state: DomainState) -> Domain {
        Domain {
            id,
            state,
            vcpu: Vcpu {
                regs: EntryFrame::default(),
                fx: FxArea::initial(),
                pv: VcpuState::default(),
            },
            mm: DomainMm {
                base: Mfn(1),
                tot_pages: 1,
                max_pages: 1,
                shared_info: Mfn(2),
                flush_tlb: true,
                preemptions: 0,
                time_offset_ns: 0,
            },
            privileged: false,
            console: LineBuffer::new(),
            emu: None,
            hvm: None,
            suspend: Suspend::No,
        }
    }

    #[test]
    fn round_robin() {
        let mut t = DomainTable::new();
        assert_eq!(t.next_runnable(None), None);
        t.slots[0] = Some(dom(0, DomainState::Runnable));
        t.slots[2] = Some(dom(2, DomainState::Runnable));
        t.slots[3] = Some(dom(3, DomainState::Crashed));
        assert_eq!(t.next_runnable(None), Some(0));
        assert_eq!(t.next_runnable(Some(0)), Some(2));
        assert_eq!(t.next_runnable(Some(2)), Some(0));
        t.slots[0].as_mut().unwrap().state = DomainState::Crashed;
        assert_eq!(t.next_runnable(Some(2)), Some(2));
    }

    #[test]
    fn stopped_domains_are_reaped_and_their_ids_reused() {
        let mut t = DomainTable::new();
        let off = |code| DomainState::Shutdown {
            reason: ShutdownReason::Poweroff,
            code,
        };
        t.insert(dom(0, DomainState::Runnable));
        t.insert(dom(1, off(0)));
        t.insert(dom(2, DomainState::Crashed));
        t.insert(dom(3, DomainState::Runnable));
        t.current = Some(2);
        t.segments_loaded = Some(1);
        assert_eq!(t.free_id(), Some(4));
        assert_eq!(t.reap(), 2);
        assert_eq!(t.iter().map(|d| d.id).collect::<Vec<_>>(), [0, 3]);
        assert_eq!((t.current, t.segments_loaded), (None, None));
        // Ids continue after the last one created, wrap around, and skip 0.
        t.last_created = 3;
        assert_eq!(t.free_id(), Some(4));
        t.last_created = MAX_DOMAINS as u16 - 1;
        assert_eq!(t.free_id(), Some(1));
        t.slots[0] = None;
        assert_eq!(t.free_id(), Some(1), "never the initial domain's id");
        assert_eq!(t.reaped_status, abi::exit::EXIT_DOMAIN_CRASHED);
        assert_eq!(t.reap(), 0, "nothing left to reap");
        // A reaped crash keeps the overall status.
        assert_eq!(t.status(), abi::exit::EXIT_DOMAIN_CRASHED);
        for i in 1..MAX_DOMAINS {
            t.insert(dom(i as u16, DomainState::Runnable));
        }
        assert_eq!(
            t.free_id(),
            None,
            "the table is full at MAX_DOMAINS (0 is never handed out)"
        );
    }

    #[test]
    fn exit_status_is_most_severe() {
        let off = |code| DomainState::Shutdown {
            reason: ShutdownReason::Poweroff,
            code,
        };
        let ok = [dom(0, off(0)), dom(1, off(0))];
        assert_eq!(exit_status(ok.iter()), abi::exit::EXIT_OK);
        let failed = [dom(0, off(0)), dom(1, off(3))];
        assert_eq!(exit_status(failed.iter()), abi::exit::EXIT_DOMAIN_FAILED);
        let reboot = [dom(
            0,
            DomainState::Shutdown {
                reason: ShutdownReason::Reboot,
                code: 0,
            },
        )];
        assert_eq!(exit_status(reboot.iter()), abi::exit::EXIT_DOMAIN_FAILED);
        let crashed = [dom(0, DomainState::Crashed), dom(1, off(5))];
        assert_eq!(exit_status(crashed.iter()), abi::exit::EXIT_DOMAIN_CRASHED);
    }

    #[test]
    fn initial_fpu_state() {
        let a = FxArea::initial();
        assert_eq!(u16::from_le_bytes([a.0[0], a.0[1]]), 0x37f);
        assert_eq!(
            u32::from_le_bytes([a.0[24], a.0[25], a.0[26], a.0[27]]),
            0x1f80
        );
    }
}
