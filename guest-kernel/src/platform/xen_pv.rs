//! The Xen-style PV backend: each privileged operation is a hypercall, and the virtual interrupt flag is
//! `evtchn_upcall_mask` in the shared-info page. This file holds the operations in Xen's own terms (with
//! Xen's structures: what the PV scenarios and benchmarks call directly); `xen_seam.rs` implements the
//! kernel's [`Platform`](super::Platform) trait on top of them.

use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use abi::console::CONSOLEIO_WRITE;
use abi::errno::Errno;
use abi::hypercall::nr;
use abi::mm::{
    MMUEXT_PIN_L1_TABLE, MMUEXT_PIN_L2_TABLE, MMUEXT_PIN_L3_TABLE, MMUEXT_PIN_L4_TABLE,
    MMUEXT_UNPIN_TABLE, UVMF_INVLPG, UVMF_LOCAL, UVMF_NONE, UVMF_TLB_FLUSH,
    XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION, XENMEM_INCREASE_RESERVATION,
    XENMEM_MACHPHYS_MAPPING, XENMEM_MAXIMUM_RESERVATION, XenMachphysMapping, XenMemoryReservation,
};
use abi::sched::{SCHEDOP_BLOCK, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, ShutdownReason};
use abi::types::{Gva, Maddr, Mfn};
use abi::xen::{
    DOMID_SELF, DomId, MmuUpdate, MmuextOp, MulticallEntry, SchedShutdown, SharedInfo, TrapInfo,
};

use super::{Flush, PtWrite, TrapGates};
use crate::arch::hypercall::hypercall5;
use crate::mm::pte::{Level, Pte};

/// What `update_va_mapping` flushes after changing the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MappingFlush {
    /// Nothing: the caller flushes later.
    None,
    /// The translation of the updated address.
    Page,
    /// This vCPU's whole TLB.
    All,
}

// A batch of the kernel's `PtWrite`s is passed to `mmu_update` as it is: same layout, same kind codes.
static_assertions::assert_eq_size!(PtWrite, MmuUpdate);
static_assertions::const_assert_eq!(
    core::mem::align_of::<PtWrite>(),
    core::mem::align_of::<MmuUpdate>()
);
static_assertions::const_assert_eq!(PtWrite::KIND_ENTRY, abi::mm::MMU_NORMAL_PT_UPDATE);
static_assertions::const_assert_eq!(PtWrite::KIND_FRAME_OWNER, abi::mm::MMU_MACHPHYS_UPDATE);

/// The kernel's view of a raw `mmu_update` request (the PV scenarios queue raw requests in a `Batch`).
impl From<MmuUpdate> for PtWrite {
    fn from(r: MmuUpdate) -> PtWrite {
        PtWrite::from_raw(r.ptr, r.val)
    }
}

/// The `mmu_update` requests of a batch of the kernel's writes (the same bytes).
pub fn as_mmu_updates(writes: &[PtWrite]) -> &[MmuUpdate] {
    // SAFETY: both types are two u64 words, `repr(C)`, same size and alignment (asserted above), and every
    // bit pattern is valid for both; the slice keeps its length and lifetime.
    unsafe { core::slice::from_raw_parts(writes.as_ptr().cast::<MmuUpdate>(), writes.len()) }
}

/// A `MMU_NORMAL_PT_UPDATE` request writing `pte` at machine address `at`.
pub const fn normal_update(at: Maddr, pte: Pte) -> MmuUpdate {
    MmuUpdate {
        ptr: at.0 | abi::mm::MMU_NORMAL_PT_UPDATE,
        val: pte.0,
    }
}

/// Xen's trap table for the kernel's gates (see `trap::dispatch::gates`), ended by a zero entry.
pub fn trap_table_of(g: &TrapGates) -> [TrapInfo; 34] {
    let mut t = [TrapInfo::default(); 34];
    let entry = |vector: u8, gate: &super::Gate| TrapInfo {
        vector,
        flags: if gate.user { 3 } else { 0 },
        cs: abi::layout::GUEST_KERNEL_CS,
        _pad0: [0; 4],
        address: gate.handler,
    };
    for (v, gate) in g.exceptions.iter().enumerate() {
        t[v] = entry(v as u8, gate);
    }
    if let Some(gate) = &g.int80 {
        t[32] = entry(0x80, gate);
    }
    t
}

/// The kernel's trap table as Xen's structure: every exception vector, plus the direct `int 0x80` gate if
/// `with_int80` (for the trap scenarios, which hand it to `set_trap_table` themselves).
pub fn trap_table(with_int80: bool) -> [TrapInfo; 34] {
    trap_table_of(&crate::trap::dispatch::gates(with_int80))
}

/// The PV entry's platform work (the domain builder entered the kernel with start_info at `start_info`):
/// select this backend, record where shared_info is mapped; returns the domain id.
pub fn enter(start_info: u64) -> u32 {
    super::select(super::Backend::XenPv);
    XEN_PV.init(abi::layout::boot_shared_info_va(start_info) as *mut SharedInfo);
    // SAFETY: the domain id word lies inside the start_info page (abi deviation h), which the builder
    // mapped for the domain's lifetime.
    unsafe { ((start_info as usize + abi::xen::START_INFO_DOMID_OFFSET) as *const u32).read() }
}

/// The PV backend itself, with Xen's own structures: for the PV scenarios and the hypercall benchmarks,
/// which test the hypervisor (re-exported as `crate::boot::platform`). The kernel uses
/// [`ops`](super::ops).
pub fn platform() -> &'static XenPv {
    &XEN_PV
}

/// The PV backend.
pub struct XenPv {
    shared: AtomicPtr<SharedInfo>,
}

/// The one instance.
pub static XEN_PV: XenPv = XenPv {
    shared: AtomicPtr::new(core::ptr::null_mut()),
};

fn ret(r: i64) -> Result<i64, Errno> {
    if r < 0 {
        Err(Errno::from_ret(r).unwrap_or(Errno::EINVAL))
    } else {
        Ok(r)
    }
}

/// Issue a raw hypercall (exposed for the ABI scenarios, which must be able to send anything).
pub fn raw(nr: u64, args: [u64; 5]) -> i64 {
    // SAFETY: callers of `raw` pass pointers that are either valid or deliberately invalid to test the
    // hypervisor's checks; in both cases this kernel's memory is only written where a pointer is valid.
    unsafe { hypercall5(nr, args[0], args[1], args[2], args[3], args[4]) }
}

/// One `mmuext_op` with a single operation.
fn mmuext(cmd: u32, arg1: u64) -> Result<(), Errno> {
    let op = MmuextOp {
        cmd,
        arg1,
        ..Default::default()
    };
    ret(raw(
        nr::MMUEXT_OP,
        [&raw const op as u64, 1, 0, u64::from(DOMID_SELF), 0],
    ))
    .map(|_| ())
}

/// `memory_op(cmd, &reservation)` over the frame array `mfns` (in or out).
fn reservation(cmd: u64, mfns: *mut u64, len: usize) -> Result<usize, Errno> {
    let res = XenMemoryReservation {
        extent_start: mfns as u64,
        nr_extents: len as u64,
        extent_order: 0,
        mem_flags: 0,
        domid: DOMID_SELF,
        _pad0: [0; 6],
    };
    ret(raw(nr::MEMORY_OP, [cmd, &raw const res as u64, 0, 0, 0])).map(|n| n as usize)
}

/// `memory_op(cmd, &DOMID_SELF)`: the per-domain page counts.
fn domain_count(cmd: u64) -> Result<u64, Errno> {
    let domid: DomId = DOMID_SELF;
    ret(raw(nr::MEMORY_OP, [cmd, &raw const domid as u64, 0, 0, 0])).map(|n| n as u64)
}

impl XenPv {
    /// Record where the builder mapped shared_info (the page after start_info; abi deviation f).
    pub fn init(&self, shared: *mut SharedInfo) {
        self.shared.store(shared, Ordering::Release);
    }

    /// The shared-info page (null before [`XenPv::init`]).
    pub fn shared_info(&self) -> *mut SharedInfo {
        self.shared.load(Ordering::Acquire)
    }

    fn upcall_mask(&self) -> Option<&AtomicU8> {
        let p = self.shared.load(Ordering::Acquire);
        // SAFETY: `p` is the shared-info mapping set by `init` (page-aligned, mapped writable for the
        // domain's lifetime); evtchn_upcall_mask is a byte the hypervisor and this vCPU update atomically.
        (!p.is_null())
            .then(|| unsafe { AtomicU8::from_ptr(&raw mut (*p).vcpu_info[0].evtchn_upcall_mask) })
    }
}

/// The hypercalls behind the [`Platform`](super::Platform) operations, with Xen's arguments.
impl XenPv {
    pub fn name(&self) -> &'static str {
        "xen-pv"
    }

    pub fn kernel_ring(&self) -> u8 {
        (crate::arch::read_cs() & 3) as u8
    }

    pub fn console_write(&self, bytes: &[u8]) -> Result<(), Errno> {
        ret(raw(
            nr::CONSOLE_IO,
            [
                CONSOLEIO_WRITE,
                bytes.len() as u64,
                bytes.as_ptr() as u64,
                0,
                0,
            ],
        ))
        .map(|_| ())
    }

    pub fn console_read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let r = raw(
            nr::CONSOLE_IO,
            [
                abi::console::CONSOLEIO_READ,
                buf.len() as u64,
                buf.as_mut_ptr() as u64,
                0,
                0,
            ],
        );
        ret(r).map(|n| n as usize)
    }

    pub fn update_page_tables(&self, updates: &[MmuUpdate]) -> (usize, Result<(), Errno>) {
        let mut done: u32 = 0;
        let r = raw(
            nr::MMU_UPDATE,
            [
                updates.as_ptr() as u64,
                updates.len() as u64,
                &raw mut done as u64,
                u64::from(DOMID_SELF),
                0,
            ],
        );
        // `done` is written on failure too (the number applied before the bad entry). The hypercall's asm
        // block may write any memory whose address it was given, so this read sees the hypervisor's value.
        (done as usize, ret(r).map(|_| ()))
    }

    pub fn update_va_mapping(&self, va: Gva, pte: u64, flush: MappingFlush) -> Result<(), Errno> {
        let flags = match flush {
            MappingFlush::None => UVMF_NONE,
            MappingFlush::Page => UVMF_INVLPG,
            MappingFlush::All => UVMF_TLB_FLUSH,
        } | UVMF_LOCAL;
        ret(raw(nr::UPDATE_VA_MAPPING, [va.0, pte, flags, 0, 0])).map(|_| ())
    }

    pub fn pin_table(&self, level: Level, mfn: Mfn) -> Result<(), Errno> {
        let cmd = match level {
            Level::L1 => MMUEXT_PIN_L1_TABLE,
            Level::L2 => MMUEXT_PIN_L2_TABLE,
            Level::L3 => MMUEXT_PIN_L3_TABLE,
            Level::L4 => MMUEXT_PIN_L4_TABLE,
        };
        mmuext(cmd, mfn.0)
    }

    pub fn unpin_table(&self, mfn: Mfn) -> Result<(), Errno> {
        mmuext(MMUEXT_UNPIN_TABLE, mfn.0)
    }

    pub fn multicall(&self, calls: &mut [MulticallEntry]) -> Result<(), Errno> {
        ret(raw(
            nr::MULTICALL,
            [calls.as_mut_ptr() as u64, calls.len() as u64, 0, 0, 0],
        ))
        .map(|_| ())
    }

    pub fn current_reservation(&self) -> Result<u64, Errno> {
        domain_count(XENMEM_CURRENT_RESERVATION)
    }

    pub fn maximum_reservation(&self) -> Result<u64, Errno> {
        domain_count(XENMEM_MAXIMUM_RESERVATION)
    }

    pub fn decrease_reservation(&self, mfns: &[u64]) -> Result<usize, Errno> {
        // The hypervisor only reads the array for this command.
        reservation(
            XENMEM_DECREASE_RESERVATION,
            mfns.as_ptr().cast_mut(),
            mfns.len(),
        )
    }

    pub fn increase_reservation(&self, mfns: &mut [u64]) -> Result<usize, Errno> {
        reservation(XENMEM_INCREASE_RESERVATION, mfns.as_mut_ptr(), mfns.len())
    }

    pub fn machphys_mapping(&self) -> Result<XenMachphysMapping, Errno> {
        let mut m = XenMachphysMapping::default();
        ret(raw(
            nr::MEMORY_OP,
            [XENMEM_MACHPHYS_MAPPING, &raw mut m as u64, 0, 0, 0],
        ))?;
        Ok(m)
    }

    pub fn flush_tlb(&self, what: Flush) -> Result<(), Errno> {
        let op = match what {
            Flush::All => MmuextOp {
                cmd: abi::mm::MMUEXT_TLB_FLUSH_LOCAL,
                ..Default::default()
            },
            Flush::Page(va) => MmuextOp {
                cmd: abi::mm::MMUEXT_INVLPG_LOCAL,
                arg1: va.0,
                ..Default::default()
            },
        };
        let r = raw(
            nr::MMUEXT_OP,
            [&raw const op as u64, 1, 0, u64::from(DOMID_SELF), 0],
        );
        ret(r).map(|_| ())
    }

    pub fn switch_address_space(&self, root_mfn: u64) -> Result<(), Errno> {
        mmuext(abi::mm::MMUEXT_NEW_BASEPTR, root_mfn)
    }

    pub fn irq_disable(&self) -> bool {
        self.upcall_mask()
            .is_some_and(|m| m.swap(1, Ordering::AcqRel) == 0)
    }

    pub fn irq_restore(&self, enabled: bool) {
        if enabled && let Some(m) = self.upcall_mask() {
            m.store(0, Ordering::SeqCst);
            // An event that became pending while events were masked is delivered on the next return from
            // the hypervisor: make one now (Xen's `xen_force_evtchn_callback`). Events arriving after this
            // check come with an entry into the hypervisor, which delivers them itself.
            let p = self.shared.load(Ordering::Acquire);
            // SAFETY: `p` is the shared-info mapping (non-null: `upcall_mask` returned Some); the pending
            // flag is a byte the hypervisor sets and this vCPU clears.
            let pending =
                unsafe { AtomicU8::from_ptr(&raw mut (*p).vcpu_info[0].evtchn_upcall_pending) };
            if pending.load(Ordering::SeqCst) != 0 {
                raw(nr::XEN_VERSION, [abi::version::XENVER_VERSION, 0, 0, 0, 0]);
            }
        }
    }

    pub fn set_timer(&self, deadline_ns: u64) -> Result<(), Errno> {
        ret(raw(nr::SET_TIMER_OP, [deadline_ns, 0, 0, 0, 0])).map(|_| ())
    }

    pub fn block(&self) -> Result<(), Errno> {
        ret(raw(nr::SCHED_OP, [SCHEDOP_BLOCK, 0, 0, 0, 0])).map(|_| ())
    }

    pub fn yield_cpu(&self) -> Result<(), Errno> {
        ret(raw(nr::SCHED_OP, [SCHEDOP_YIELD, 0, 0, 0, 0])).map(|_| ())
    }

    pub fn set_trap_table(&self, table: &[TrapInfo]) -> Result<(), Errno> {
        // Xen's table is terminated by an entry whose address is zero; the caller includes it.
        ret(raw(nr::SET_TRAP_TABLE, [table.as_ptr() as u64, 0, 0, 0, 0])).map(|_| ())
    }

    pub fn stack_switch(&self, ss: u16, rsp: u64) -> Result<(), Errno> {
        ret(raw(nr::STACK_SWITCH, [u64::from(ss), rsp, 0, 0, 0])).map(|_| ())
    }

    pub fn shutdown(&self, reason: ShutdownReason, code: u32) -> ! {
        let s = SchedShutdown {
            reason: reason.as_u32(),
        };
        loop {
            raw(
                nr::SCHED_OP,
                [SCHEDOP_SHUTDOWN, &raw const s as u64, u64::from(code), 0, 0],
            );
        }
    }
}

/// Builders of [`MulticallEntry`]s (the entry's `args` are the hypercall's registers; the arrays they point
/// to must stay alive until the multicall returns).
pub mod multicall {
    use abi::hypercall::nr;
    use abi::xen::{DOMID_SELF, MmuUpdate, MmuextOp, MulticallEntry};

    /// `update_va_mapping(va, pte, flags)`.
    pub fn update_va_mapping(va: u64, pte: u64, flags: u64) -> MulticallEntry {
        MulticallEntry {
            op: nr::UPDATE_VA_MAPPING,
            result: 0,
            args: [va, pte, flags, 0, 0, 0],
        }
    }

    /// `mmu_update(reqs, reqs.len(), done, DOMID_SELF)`.
    pub fn mmu_update(reqs: &[MmuUpdate], done: *mut u32) -> MulticallEntry {
        MulticallEntry {
            op: nr::MMU_UPDATE,
            result: 0,
            args: [
                reqs.as_ptr() as u64,
                reqs.len() as u64,
                done as u64,
                u64::from(DOMID_SELF),
                0,
                0,
            ],
        }
    }

    /// `mmuext_op(ops, ops.len(), NULL, DOMID_SELF)`.
    pub fn mmuext_op(ops: &[MmuextOp]) -> MulticallEntry {
        MulticallEntry {
            op: nr::MMUEXT_OP,
            result: 0,
            args: [
                ops.as_ptr() as u64,
                ops.len() as u64,
                0,
                u64::from(DOMID_SELF),
                0,
                0,
            ],
        }
    }

    /// The result of an entry as the hypercall would have returned it.
    pub fn result(e: &MulticallEntry) -> i64 {
        e.result as i64
    }
}
