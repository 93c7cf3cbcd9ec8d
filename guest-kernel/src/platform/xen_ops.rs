//! The Xen PV operations behind traps, events and time, as methods of [`XenPv`]: callbacks, event
//! channels, the shared-info event and time state, `sched_op` poll, `vcpu_op` timers, segment bases, and
//! the control domain's `sysctl` (the domain list).
//!
//! These exist only on a paravirtualized platform (a native backend has an IDT, an interrupt controller
//! and a timer instead), so they are methods of the PV backend rather than of the
//! [`Platform`](super::Platform) trait; `crate::trap`, `crate::event` and `crate::time` build the kernel's
//! interfaces on them. Each issues its real hypercall and returns the hypervisor's answer.

use abi::callback::{CALLBACKOP_REGISTER, CallbackRegister};
use abi::errno::Errno;
use abi::event_channel::{EvtchnPort, EvtchnStatus};
use abi::hypercall::nr;
use abi::sched::{SCHEDOP_POLL, SchedPoll};
use abi::sysctl::{XenDomctlGetdomaininfo, XenSysctl};
use abi::vcpu::{
    VCPUOP_SET_PERIODIC_TIMER, VCPUOP_SET_SINGLESHOT_TIMER, VCPUOP_STOP_PERIODIC_TIMER,
    VCPUOP_STOP_SINGLESHOT_TIMER, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer,
};
use abi::xen::{SharedInfo, VcpuTimeInfo};
use zerocopy::{FromBytes, IntoBytes};

use super::xen_event_scan::{EventState, WORDS};
use super::xen_pv::{XenPv, raw};

fn ret(r: i64) -> Result<i64, Errno> {
    if r < 0 {
        Err(Errno::from_ret(r).unwrap_or(Errno::EINVAL))
    } else {
        Ok(r)
    }
}

impl XenPv {
    /// vCPU 0's event state in the shared-info page, or `None` before [`XenPv::init`].
    pub fn event_state(&self) -> Option<EventState<'static>> {
        let p = self.shared_info();
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` is the shared-info page, mapped writable for the domain's lifetime and 8-byte aligned
        // (page aligned). Atomic types have the size and alignment of the integers they wrap, so each field
        // may be viewed as its atomic; the hypervisor only changes these bytes while this vCPU is not
        // running, and this vCPU changes them only with atomic operations.
        unsafe {
            let v = &raw mut (*p).vcpu_info[0];
            Some(EventState {
                upcall_pending: core::sync::atomic::AtomicU8::from_ptr(
                    &raw mut (*v).evtchn_upcall_pending,
                ),
                upcall_mask: core::sync::atomic::AtomicU8::from_ptr(
                    &raw mut (*v).evtchn_upcall_mask,
                ),
                pending_sel: core::sync::atomic::AtomicU64::from_ptr(
                    &raw mut (*v).evtchn_pending_sel,
                ),
                pending: &*(&raw mut (*p).evtchn_pending
                    as *const [core::sync::atomic::AtomicU64; WORDS]),
                mask: &*(&raw mut (*p).evtchn_mask
                    as *const [core::sync::atomic::AtomicU64; WORDS]),
            })
        }
    }

    /// `vcpu_info[0].arch.cr2`: the address of the last page fault delivered to this guest.
    pub fn fault_address(&self) -> u64 {
        let p = self.shared_info();
        if p.is_null() {
            return 0;
        }
        // SAFETY: the shared-info page is mapped for the domain's lifetime; a volatile read of a u64 field.
        unsafe { (&raw const (*p).vcpu_info[0].arch.cr2).read_volatile() }
    }

    /// Pointer to vCPU 0's pvclock record (null before [`XenPv::init`]).
    pub fn vcpu_time(&self) -> *const VcpuTimeInfo {
        let p = self.shared_info();
        if p.is_null() {
            return core::ptr::null();
        }
        // SAFETY: in bounds of the shared-info page; only the address is computed.
        unsafe { &raw const (*p).vcpu_info[0].time }
    }

    /// The wall clock at system time 0: `(version, seconds, nanoseconds)` read once (the caller retries on
    /// an odd or changed version).
    pub fn wallclock_raw(&self) -> Option<(u32, u64, u32)> {
        let p: *const SharedInfo = self.shared_info();
        if p.is_null() {
            return None;
        }
        // SAFETY: the shared-info page is mapped for the domain's lifetime; volatile reads of u32 fields.
        unsafe {
            let version = (&raw const (*p).wc_version).read_volatile();
            let lo = (&raw const (*p).wc_sec).read_volatile();
            let hi = (&raw const (*p).wc_sec_hi).read_volatile();
            let ns = (&raw const (*p).wc_nsec).read_volatile();
            Some((version, (u64::from(hi) << 32) | u64::from(lo), ns))
        }
    }

    /// `event_channel_op(cmd, arg)`: the hypervisor reads `arg` and writes its OUT fields back.
    pub fn event_channel_op<T: IntoBytes + FromBytes>(
        &self,
        cmd: u64,
        arg: &mut T,
    ) -> Result<(), Errno> {
        ret(raw(
            nr::EVENT_CHANNEL_OP,
            [cmd, arg as *mut T as u64, 0, 0, 0],
        ))
        .map(|_| ())
    }

    /// `EVTCHNOP_status` of `port` in domain `dom`.
    pub fn evtchn_status(&self, dom: u16, port: EvtchnPort) -> Result<EvtchnStatus, Errno> {
        let mut s = EvtchnStatus {
            dom,
            port,
            ..Default::default()
        };
        self.event_channel_op(abi::event_channel::EVTCHNOP_STATUS, &mut s)?;
        Ok(s)
    }

    /// `callback_op(CALLBACKOP_register, {type, flags, address})`.
    pub fn register_callback(&self, ty: u16, address: u64, flags: u16) -> Result<(), Errno> {
        let r = CallbackRegister {
            r#type: ty,
            flags,
            _pad0: 0,
            address,
        };
        ret(raw(
            nr::CALLBACK_OP,
            [CALLBACKOP_REGISTER, &raw const r as u64, 0, 0, 0],
        ))
        .map(|_| ())
    }

    /// `set_callbacks(event, failsafe, syscall)` (the older form of the above).
    pub fn set_callbacks(&self, event: u64, failsafe: u64, syscall: u64) -> Result<(), Errno> {
        ret(raw(nr::SET_CALLBACKS, [event, failsafe, syscall, 0, 0])).map(|_| ())
    }

    /// `set_trap_table(NULL)`: remove every trap-table entry.
    pub fn clear_trap_table(&self) -> Result<(), Errno> {
        ret(raw(nr::SET_TRAP_TABLE, [0; 5])).map(|_| ())
    }

    /// `set_segment_base(which, base)` (`SEGBASE_*`).
    pub fn set_segment_base(&self, which: u64, base: u64) -> Result<(), Errno> {
        ret(raw(nr::SET_SEGMENT_BASE, [which, base, 0, 0, 0])).map(|_| ())
    }

    /// `sched_op(SCHEDOP_poll)`: wait until one of `ports` is pending or system time `timeout` (0: none).
    #[inline] // A codegen-unit shuffle had moved it out of line (+15 on evtchn_pingpong_interdomain).
    pub fn sched_poll(&self, ports: &[EvtchnPort], timeout: u64) -> Result<(), Errno> {
        let p = SchedPoll {
            ports: ports.as_ptr() as u64,
            nr_ports: ports.len() as u32,
            _pad0: 0,
            timeout,
        };
        ret(raw(
            nr::SCHED_OP,
            [SCHEDOP_POLL, &raw const p as u64, 0, 0, 0],
        ))
        .map(|_| ())
    }

    /// `vcpu_op(VCPUOP_set_singleshot_timer, 0, {timeout_abs_ns, flags})`.
    pub fn set_singleshot_timer(&self, deadline_ns: u64, flags: u32) -> Result<(), Errno> {
        let t = VcpuSetSingleshotTimer {
            timeout_abs_ns: deadline_ns,
            flags,
            _pad0: 0,
        };
        ret(raw(
            nr::VCPU_OP,
            [VCPUOP_SET_SINGLESHOT_TIMER, 0, &raw const t as u64, 0, 0],
        ))
        .map(|_| ())
    }

    /// `vcpu_op(VCPUOP_stop_singleshot_timer, 0)`.
    pub fn stop_singleshot_timer(&self) -> Result<(), Errno> {
        ret(raw(nr::VCPU_OP, [VCPUOP_STOP_SINGLESHOT_TIMER, 0, 0, 0, 0])).map(|_| ())
    }

    /// `vcpu_op(VCPUOP_set_periodic_timer, 0, {period_ns})`.
    pub fn set_periodic_timer(&self, period_ns: u64) -> Result<(), Errno> {
        let t = VcpuSetPeriodicTimer { period_ns };
        ret(raw(
            nr::VCPU_OP,
            [VCPUOP_SET_PERIODIC_TIMER, 0, &raw const t as u64, 0, 0],
        ))
        .map(|_| ())
    }

    /// `vcpu_op(VCPUOP_stop_periodic_timer, 0)`.
    pub fn stop_periodic_timer(&self) -> Result<(), Errno> {
        ret(raw(nr::VCPU_OP, [VCPUOP_STOP_PERIODIC_TIMER, 0, 0, 0, 0])).map(|_| ())
    }

    /// `sysctl(op)`: the hypervisor reads the whole envelope and, on success, writes it back with the
    /// command's OUT fields filled in. Control domain only (-EPERM otherwise).
    pub fn sysctl(&self, op: &mut XenSysctl) -> Result<(), Errno> {
        ret(raw(nr::SYSCTL, [op as *mut XenSysctl as u64, 0, 0, 0, 0])).map(|_| ())
    }

    /// `XEN_SYSCTL_getdomaininfolist`: the records of the existing domains from id `first` on, in
    /// ascending id order, as many as fit in `out`; returns how many were written (the rest of `out` is
    /// left as it was). Control domain only (-EPERM otherwise).
    pub fn domain_info_list(
        &self,
        first: u16,
        out: &mut [XenDomctlGetdomaininfo],
    ) -> Result<usize, Errno> {
        let room = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let mut op = XenSysctl::getdomaininfolist_request(first, room, out.as_mut_ptr() as u64);
        self.sysctl(&mut op)?;
        // The hypervisor never reports more than it was given room for; stay in bounds regardless.
        Ok((op.getdomaininfolist().num_domains as usize).min(out.len()))
    }
}
