//! Log-dirty control over the live machine: `XEN_DOMCTL_SHADOW_OP` for domain 0's toolstack, the calls the
//! migration makes, the end of log-dirty when its domain stops, and the write-fault hook of the trap code.
//! The mechanism itself is `mm::logdirty` (pure, host-tested).

use abi::domctl::{
    LOGDIRTY_MAX_PAGES, SHADOW_OP_CLEAN, SHADOW_OP_ENABLE_LOGDIRTY, SHADOW_OP_OFF, SHADOW_OP_PEEK,
    XenDomctlShadowOp,
};
use abi::errno::Errno;
use abi::types::Mfn;
use core::sync::atomic::{AtomicU32, Ordering};

use super::kind::DomainKind;
use super::state::Domain;
use crate::arch::paging::IdentityMem;
use crate::mm::frame_table::PageType;
use crate::mm::logdirty::{self, Frames};
use crate::mm::machine::Machine;
use crate::mm::phys::PhysRead;
use crate::setup::{DOMAINS, MACHINE, MAX_DOMAIN_PAGES};

/// The live frame table, M2P and memory, for the harvest.
struct Live<'a, 'm>(&'a Machine<'m>);

impl Frames for Live<'_, '_> {
    fn read(&self, table: Mfn, slot: usize) -> u64 {
        IdentityMem::read_entry(table, slot)
    }
    fn write(&mut self, table: Mfn, slot: usize, v: u64) {
        IdentityMem::write_entry(table, slot, v);
    }
    fn frames(&self) -> u64 {
        self.0.ft.len() as u64
    }
    fn owner(&self, mfn: Mfn) -> Option<u16> {
        self.0.ft.owner(mfn)
    }
    fn is_l1(&self, mfn: Mfn) -> bool {
        self.0
            .ft
            .info(mfn)
            .is_some_and(|p| p.ty == PageType::L1 && p.type_count > 0 && p.is_validated())
    }
    fn hv_written(&self, mfn: Mfn) -> bool {
        self.0.ft.info(mfn).is_some_and(|p| p.is_hv_written())
    }
    fn pfn(&self, mfn: Mfn) -> Option<u64> {
        self.0.m2p.get(mfn).map(|p| p.0)
    }
}

/// Page-table reads of the fault fixup, which runs with only the domain table locked.
struct Tables;

impl Frames for Tables {
    fn read(&self, table: Mfn, slot: usize) -> u64 {
        IdentityMem.read_u64(abi::types::Maddr(table.addr().0 + slot as u64 * 8))
    }
    fn write(&mut self, table: Mfn, slot: usize, v: u64) {
        IdentityMem::write_entry(table, slot, v);
    }
    fn frames(&self) -> u64 {
        0
    }
    fn owner(&self, _: Mfn) -> Option<u16> {
        None
    }
    fn is_l1(&self, _: Mfn) -> bool {
        false
    }
    fn hv_written(&self, _: Mfn) -> bool {
        false
    }
    fn pfn(&self, _: Mfn) -> Option<u64> {
        None
    }
}

/// Trap hook: a page fault of PV domain `dom` with `error_code`; true if it was a write on an entry
/// log-dirty protected, now writable again (the guest retries; nothing is bounced).
#[inline(always)]
pub fn write_fault(dom: &mut Domain, vector: u64, error_code: u64) -> bool {
    logdirty::on() && write_fault_slow(dom, vector, error_code)
}

#[cold]
#[inline(never)]
fn write_fault_slow(dom: &mut Domain, vector: u64, error_code: u64) -> bool {
    // Present (bit 0) and write (bit 1).
    if vector != 14 || error_code & 3 != 3 {
        return false;
    }
    let va = crate::arch::read_cr2();
    let (id, root) = (dom.id, dom.mm.base);
    logdirty::with(|s| s.fault(&mut Tables, id, root, va))
}

/// The domain whose log-dirty a migration holds (`u32::MAX`: none): the toolstack's `SHADOW_OP` on it is
/// `-EBUSY`, so nobody can reset the bitmap behind the migration's back.
static HELD: AtomicU32 = AtomicU32::new(u32::MAX);

/// Log-dirty on for `id` on behalf of a migration, which holds it until [`disable`].
pub fn enable_for_migration(id: u16) -> Result<(), Errno> {
    enable(id)?;
    HELD.store(u32::from(id), Ordering::Relaxed);
    Ok(())
}

/// Log-dirty on for `id` (a live PV domain): its writable entries are write-protected.
pub fn enable(id: u16) -> Result<(), Errno> {
    let mut table = DOMAINS.lock();
    let d = table.live_mut(id)?;
    if d.kind() != DomainKind::Pv {
        return Err(Errno::EOPNOTSUPP);
    }
    let machine = MACHINE.lock();
    let m = machine.as_ref().ok_or(Errno::EIO)?;
    logdirty::with(|s| s.enable(&mut Live(m), id))?;
    d.mm.flush_tlb = true;
    log::info!(
        "log-dirty: on for domain {id} ({} L1 tables protected)",
        logdirty::STATE.lock().protected_tables()
    );
    Ok(())
}

/// Log-dirty off if it is on for `id`: every protected entry is writable again. With the machine locked.
pub fn end_locked(id: u16, m: &Machine<'_>) -> bool {
    let _ = HELD.compare_exchange(
        u32::from(id),
        u32::MAX,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    logdirty::with(|s| {
        if s.domain() == Some(id) {
            s.disable(&mut Live(m));
            true
        } else {
            false
        }
    })
}

/// Log-dirty off for `id` (nothing if it is not on for it).
pub fn disable(id: u16) {
    let _ = HELD.compare_exchange(
        u32::from(id),
        u32::MAX,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let mut table = DOMAINS.lock();
    let machine = MACHINE.lock();
    if let Some(m) = machine.as_ref()
        && end_locked(id, m)
    {
        // Stale read-only translations would fault spuriously once the fixup is gone.
        if let Ok(d) = table.any_mut(id) {
            d.mm.flush_tlb = true;
        }
        log::info!("log-dirty: off for domain {id}");
    }
}

/// `CLEAN` (or `PEEK`) for `id`: `out(pfn)` for each dirty pfn; (dirty pages, faults since the last clean).
pub fn clean(id: u16, peek: bool, mut out: impl FnMut(u64)) -> Result<(u32, u32), Errno> {
    let mut table = DOMAINS.lock();
    let d = table.any_mut(id)?;
    let machine = MACHINE.lock();
    let m = machine.as_ref().ok_or(Errno::EIO)?;
    let r = logdirty::with(|s| {
        if s.domain() != Some(id) {
            return Err(Errno::EINVAL);
        }
        let faults = s.stats().faults;
        s.clean(&mut Live(m), peek, &mut out).map(|n| (n, faults))
    })?;
    if !peek {
        d.mm.flush_tlb = true;
    }
    Ok(r)
}

/// The bitmap `XEN_DOMCTL_SHADOW_OP` copies out.
static BITMAP: spin::Mutex<[u8; MAX_DOMAIN_PAGES / 8]> =
    spin::Mutex::new([0; MAX_DOMAIN_PAGES / 8]);

/// `XEN_DOMCTL_SHADOW_OP` on domain `id`; `write(at, bytes)` writes into the caller (`-EFAULT` if it
/// cannot). `op` comes back with its outputs.
pub fn shadow_op(
    id: u16,
    op: &mut XenDomctlShadowOp,
    mut write: impl FnMut(u64, &[u8]) -> Result<(), Errno>,
) -> Result<(), Errno> {
    if HELD.load(Ordering::Relaxed) == u32::from(id) {
        return Err(Errno::EBUSY);
    }
    match op.op {
        SHADOW_OP_ENABLE_LOGDIRTY => enable(id),
        SHADOW_OP_OFF => {
            disable(id);
            Ok(())
        }
        SHADOW_OP_CLEAN | SHADOW_OP_PEEK => {
            if op.mode != 0 {
                return Err(Errno::EINVAL);
            }
            let pages = op.pages.min(LOGDIRTY_MAX_PAGES);
            let bytes = pages.div_ceil(8) as usize;
            let mut map = BITMAP.lock();
            map[..bytes].fill(0);
            // Prove the bitmap writable before anything is cleared.
            if op.dirty_bitmap != 0 {
                write(op.dirty_bitmap, &map[..bytes])?;
            }
            let (n, faults) = clean(id, op.op == SHADOW_OP_PEEK, |pfn| {
                if pfn < pages {
                    map[(pfn / 8) as usize] |= 1 << (pfn % 8);
                }
            })?;
            if op.dirty_bitmap != 0 {
                write(op.dirty_bitmap, &map[..bytes])?;
            }
            op.pages = pages;
            op.dirty_count = n;
            op.fault_count = faults;
            Ok(())
        }
        _ => Err(Errno::EINVAL),
    }
}
