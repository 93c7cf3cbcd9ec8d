//! The kernel's [`Platform`] trait on the Xen-style PV backend: each operation in the kernel's terms turned
//! into the hypercall (or shared-info access) of `xen_pv.rs` / `xen_ops.rs` that does it.

use abi::callback::{
    CALLBACKF_MASK_EVENTS, CALLBACKTYPE_EVENT, CALLBACKTYPE_FAILSAFE, CALLBACKTYPE_SYSCALL,
};
use abi::errno::Errno;
use abi::event_channel::{
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_IPI, EVTCHNOP_BIND_VIRQ,
    EVTCHNOP_CLOSE, EVTCHNOP_SEND, EVTCHNOP_UNMASK, EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN,
    EVTCHNSTAT_IPI, EVTCHNSTAT_UNBOUND, EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi,
    EvtchnBindVirq, EvtchnClose, EvtchnSend, EvtchnUnmask, VIRQ_CONSOLE, VIRQ_TIMER,
};
use abi::hypercall::nr;
use abi::sched::ShutdownReason;
use abi::types::{Gva, Mfn};
use abi::version::{XENVER_CAPABILITIES, XENVER_GET_FEATURES, XENVER_VERSION};
use abi::xen::{DOMID_SELF, SEGBASE_FS, SEGBASE_GS_USER, VcpuTimeInfo};

use super::xen_pv::{MappingFlush, XenPv, as_mmu_updates, raw, trap_table_of};
use super::xen_pvclock::{self as pvclock, PvclockSource, Reading};
use super::{
    EntryPoints, Flush, Halt, HypervisorInfo, Irq, IrqSource, IrqState, Mmu, Platform, PtWrite,
    TrapGates,
};
use crate::arch::x86_64::tsc::rdtsc_ordered;
use crate::mm::pte::{Level, Pte};

/// vCPU 0's pvclock record in shared_info.
struct SharedClock(*const VcpuTimeInfo);

impl PvclockSource for SharedClock {
    fn version(&self) -> u32 {
        // SAFETY: the record is in the shared-info page, mapped for the domain's lifetime.
        unsafe { (&raw const (*self.0).version).read_volatile() }
    }
    fn fields(&self) -> VcpuTimeInfo {
        // SAFETY: as above; a torn read is detected by the version check around it.
        unsafe { self.0.read_volatile() }
    }
    fn tsc(&self) -> u64 {
        rdtsc_ordered()
    }
}

impl Mmu for XenPv {
    fn write_ptes(&self, writes: &[PtWrite]) -> (usize, Result<(), Errno>) {
        self.update_page_tables(as_mmu_updates(writes))
    }

    fn pin_table(&self, level: Level, mfn: Mfn) -> Result<(), Errno> {
        XenPv::pin_table(self, level, mfn)
    }

    fn unpin_table(&self, mfn: Mfn) -> Result<(), Errno> {
        XenPv::unpin_table(self, mfn)
    }

    fn switch_address_space(&self, root: Mfn) -> Result<(), Errno> {
        XenPv::switch_address_space(self, root.0)
    }

    fn flush_tlb(&self, what: Flush) -> Result<(), Errno> {
        XenPv::flush_tlb(self, what)
    }
}

impl Platform for XenPv {
    fn name(&self) -> &'static str {
        XenPv::name(self)
    }

    fn kernel_ring(&self) -> u8 {
        XenPv::kernel_ring(self)
    }

    fn hypervisor_info(&self) -> Option<HypervisorInfo> {
        let version = raw(nr::XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0]);
        let mut features = [0u32; 2];
        let fr = raw(
            nr::XEN_VERSION,
            [XENVER_GET_FEATURES, features.as_mut_ptr() as u64, 0, 0, 0],
        );
        let mut caps = [0u8; 1024];
        let cr = raw(
            nr::XEN_VERSION,
            [XENVER_CAPABILITIES, caps.as_mut_ptr() as u64, 0, 0, 0],
        );
        let mut info = HypervisorInfo {
            version: version.max(0) as u32,
            features: if fr >= 0 { features[1] } else { 0 },
            caps: [0; 32],
        };
        if cr >= 0 {
            let len = caps.iter().position(|&b| b == 0).unwrap_or(0).min(31);
            info.caps[..len].copy_from_slice(&caps[..len]);
        }
        Some(info)
    }

    fn entry_counters(&self) -> Option<uapi::HvCounters> {
        let mut c = abi::counters::DomainCounters::default();
        let r = raw(
            nr::COUNTERS,
            [abi::counters::COUNTERSOP_READ, &raw mut c as u64, 0, 0, 0],
        );
        (r == 0).then_some(uapi::HvCounters {
            virtualised: 1,
            _pad: 0,
            hypercalls: c.hypercalls,
            exceptions: c.exceptions,
            syscalls: c.syscalls,
            upcalls: c.upcalls,
        })
    }

    fn machines(&self, first: u16, out: &mut [uapi::DomInfo]) -> Result<usize, Errno> {
        let mut raw_infos =
            [<abi::sysctl::XenDomctlGetdomaininfo as zerocopy::FromZeros>::new_zeroed(); 16];
        let want = out.len().min(raw_infos.len());
        let n = self.domain_info_list(first, &mut raw_infos[..want])?;
        for (o, d) in out.iter_mut().zip(&raw_infos[..n]) {
            *o = uapi::DomInfo {
                domid: u32::from(d.domain),
                flags: d.flags,
                tot_pages: d.tot_pages,
                max_pages: d.max_pages,
                cpu_time_ns: d.cpu_time,
                nr_vcpus: d.nr_online_vcpus,
                weight: 0,
            };
        }
        Ok(n)
    }

    fn machine_create(&self, req: &uapi::domctl::DomCreate) -> Result<u16, Errno> {
        self.create_domain(req)
    }

    fn machine_control(&self, id: u16, op: super::MachineOp) -> Result<(), Errno> {
        self.control_domain(id, op)
    }

    fn machine_image(&self, op: super::ImageOp<'_>) -> Result<u64, Errno> {
        self.image_op(op)
    }

    fn suspend(&self, start_info: Mfn) -> Result<bool, Errno> {
        XenPv::suspend(self, start_info)
    }

    fn console_write(&self, bytes: &[u8]) -> Result<(), Errno> {
        XenPv::console_write(self, bytes)
    }

    fn console_read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        XenPv::console_read(self, buf)
    }

    fn remap_page(&self, va: Gva, pte: Pte) -> Result<(), Errno> {
        self.update_va_mapping(va, pte.0, MappingFlush::Page)
    }

    fn frame_table(&self) -> Result<(u64, u64), Errno> {
        let m = self.machphys_mapping()?;
        Ok((m.v_start, m.max_mfn.saturating_add(1)))
    }

    fn memory_pages(&self) -> Result<u64, Errno> {
        self.current_reservation()
    }

    fn memory_limit(&self) -> Result<u64, Errno> {
        self.maximum_reservation()
    }

    fn release_frames(&self, mfns: &[u64]) -> Result<usize, Errno> {
        self.decrease_reservation(mfns)
    }

    fn claim_frames(&self, mfns: &mut [u64]) -> Result<usize, Errno> {
        self.increase_reservation(mfns)
    }

    #[inline]
    fn irq_disable(&self) -> bool {
        XenPv::irq_disable(self)
    }

    #[inline]
    fn irq_restore(&self, enabled: bool) {
        XenPv::irq_restore(self, enabled)
    }

    #[inline]
    fn irqs_enabled(&self) -> bool {
        self.event_state().is_some_and(|e| !e.events_masked())
    }

    #[inline]
    fn irq_pending(&self) -> bool {
        self.event_state().is_some_and(|e| e.upcall_is_pending())
    }

    #[inline]
    fn irq_set_flag(&self, enabled: bool) {
        if let Some(e) = self.event_state() {
            e.upcall_mask
                .store(u8::from(!enabled), core::sync::atomic::Ordering::SeqCst);
        }
    }

    fn irq_bind(&self, what: IrqSource) -> Result<Irq, Errno> {
        let virq = |virq| {
            let mut b = EvtchnBindVirq {
                virq,
                vcpu: 0,
                port: 0,
            };
            self.event_channel_op(EVTCHNOP_BIND_VIRQ, &mut b)
                .map(|()| b.port)
        };
        match what {
            IrqSource::Timer => virq(VIRQ_TIMER),
            IrqSource::Console => virq(VIRQ_CONSOLE),
            IrqSource::Suspend => virq(abi::domctl::VIRQ_SUSPEND),
            IrqSource::SelfIpi => {
                let mut b = EvtchnBindIpi { vcpu: 0, port: 0 };
                self.event_channel_op(EVTCHNOP_BIND_IPI, &mut b)?;
                Ok(b.port)
            }
            IrqSource::PeerOffer { peer } => {
                let mut a = EvtchnAllocUnbound {
                    dom: DOMID_SELF,
                    remote_dom: peer,
                    port: 0,
                };
                self.event_channel_op(EVTCHNOP_ALLOC_UNBOUND, &mut a)?;
                Ok(a.port)
            }
            IrqSource::PeerConnect { peer, remote } => {
                let mut b = EvtchnBindInterdomain {
                    remote_dom: peer,
                    _pad0: 0,
                    remote_port: remote,
                    local_port: 0,
                };
                self.event_channel_op(EVTCHNOP_BIND_INTERDOMAIN, &mut b)?;
                Ok(b.local_port)
            }
        }
    }

    fn irq_close(&self, irq: Irq) -> Result<(), Errno> {
        self.event_channel_op(EVTCHNOP_CLOSE, &mut EvtchnClose { port: irq })
    }

    fn irq_send(&self, irq: Irq) -> Result<(), Errno> {
        self.event_channel_op(EVTCHNOP_SEND, &mut EvtchnSend { port: irq })
    }

    fn irq_unmask(&self, irq: Irq) -> Result<(), Errno> {
        self.event_channel_op(EVTCHNOP_UNMASK, &mut EvtchnUnmask { port: irq })
    }

    fn irq_mask(&self, irq: Irq) {
        if let Some(ev) = self.event_state() {
            ev.mask_port(irq);
        }
    }

    fn irq_is_pending(&self, irq: Irq) -> bool {
        self.event_state().is_some_and(|e| e.is_pending(irq))
    }

    fn irq_is_masked(&self, irq: Irq) -> bool {
        self.event_state().is_some_and(|e| e.is_masked(irq))
    }

    fn irq_take_pending(&self, irq: Irq) -> bool {
        self.event_state()
            .is_some_and(|e| e.test_and_clear_pending(irq))
    }

    fn irq_state(&self, irq: Irq) -> Result<IrqState, Errno> {
        Ok(match self.evtchn_status(DOMID_SELF, irq)?.status {
            EVTCHNSTAT_CLOSED => IrqState::Free,
            EVTCHNSTAT_UNBOUND => IrqState::Offered,
            EVTCHNSTAT_INTERDOMAIN => IrqState::Peer,
            EVTCHNSTAT_IPI => IrqState::SelfIpi,
            _ => IrqState::Line,
        })
    }

    fn irq_dispatch(&self, handler: &mut dyn FnMut(Irq)) {
        if let Some(ev) = self.event_state() {
            ev.scan(handler);
        }
    }

    fn clock_read(&self) -> Option<Reading> {
        let p = self.vcpu_time();
        if p.is_null() {
            return None;
        }
        let s = SharedClock(p);
        if !pvclock::present(&s.fields()) {
            return None;
        }
        pvclock::read(&s)
    }

    fn wallclock_base(&self) -> Option<(u64, u32)> {
        for _ in 0..1000 {
            let (v1, sec, ns) = self.wallclock_raw()?;
            let (v2, _, _) = self.wallclock_raw()?;
            if v1 == v2 && v1 & 1 == 0 {
                return (v1 != 0 || sec != 0).then_some((sec, ns));
            }
        }
        None
    }

    fn set_timer(&self, deadline_ns: u64) -> Result<(), Errno> {
        XenPv::set_timer(self, deadline_ns)
    }

    fn set_periodic_timer(&self, period_ns: u64) -> Result<(), Errno> {
        XenPv::set_periodic_timer(self, period_ns)
    }

    fn stop_periodic_timer(&self) -> Result<(), Errno> {
        XenPv::stop_periodic_timer(self)
    }

    fn block(&self) -> Result<(), Errno> {
        XenPv::block(self)
    }

    fn yield_cpu(&self) -> Result<(), Errno> {
        XenPv::yield_cpu(self)
    }

    fn poll(&self, irqs: &[Irq], deadline_ns: u64) -> Result<(), Errno> {
        self.sched_poll(irqs, deadline_ns)
    }

    fn set_trap_gates(&self, gates: &TrapGates) -> Result<(), Errno> {
        self.set_trap_table(&trap_table_of(gates))
    }

    fn clear_trap_gates(&self) -> Result<(), Errno> {
        self.clear_trap_table()
    }

    fn set_entry_points(&self, e: &EntryPoints) -> Result<(), Errno> {
        // `callback_op`, or `set_callbacks` on a hypervisor without it.
        let r = self
            .register_callback(CALLBACKTYPE_EVENT, e.interrupt, 0)
            .and_then(|()| self.register_callback(CALLBACKTYPE_FAILSAFE, e.failsafe, 0))
            .and_then(|()| {
                self.register_callback(CALLBACKTYPE_SYSCALL, e.syscall, CALLBACKF_MASK_EVENTS)
            });
        match r {
            Err(Errno::ENOSYS) => self.set_callbacks(e.interrupt, e.failsafe, e.syscall),
            other => other,
        }
    }

    fn set_kernel_stack(&self, rsp: u64) -> Result<(), Errno> {
        self.stack_switch(abi::layout::GUEST_KERNEL_SS, rsp)
    }

    #[inline]
    fn fault_address(&self) -> u64 {
        XenPv::fault_address(self)
    }

    fn set_user_fs_base(&self, base: u64) -> Result<(), Errno> {
        self.set_segment_base(SEGBASE_FS, base)
    }

    fn set_user_gs_base(&self, base: u64) -> Result<(), Errno> {
        self.set_segment_base(SEGBASE_GS_USER, base)
    }

    fn shutdown(&self, how: Halt, code: u32) -> ! {
        let reason = match how {
            Halt::Poweroff => ShutdownReason::Poweroff,
            Halt::Crash => ShutdownReason::Crash,
        };
        XenPv::shutdown(self, reason, code)
    }
}
