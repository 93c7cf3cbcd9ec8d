//! Save, restore, snapshot and clone of PV domains, and the image store (see docs/ARCHITECTURE.md,
//! "Save images").
//!
//! The protocol is Xen's: the toolstack asks the guest to suspend ([`request`]: `VIRQ_SUSPEND`), the guest
//! calls `SHUTDOWN_suspend` naming its start-info frame ([`suspended`]: paused, memory kept), the toolstack
//! saves it ([`save`]: an image in the store, in pfns only) and then destroys it (save) or resumes it in
//! place ([`resume`]: the suspend call returns 1; snapshot). [`restore`] builds a new domain from an image
//! (through `save_restore`, the core live migration's destination shares) the way `createdomain` builds
//! one from a kernel: fresh frames, page tables rewritten pfn → new frame and validated by pinning and
//! installing the base exactly as the guest's own requests would be, the isolation audit, then the start
//! info, the P2M and the vCPU; the suspend call returns 0 there. Every failure returns the new domain's
//! frames (nothing half-restored is left) and leaves the image and the source untouched.

use abi::domctl::VIRQ_SUSPEND;
use abi::errno::Errno;
use abi::event_channel::{
    EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_IPI, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ,
};
use abi::save::{
    DomainRecord, Encoder, HEADER_LEN, PT_PINNED, PortRecord, RecordKind, VCPU_LEN, decode,
};
use abi::types::Mfn;
use abi::xen::StartInfo;
use zerocopy::{FromBytes, IntoBytes};

use super::save_canon::{ENTRIES, canonicalize};
use super::save_store::{Store, Stored};
use super::state::{Domain, Suspend};
use crate::arch::paging::IdentityMem;
use crate::event::PortState;
use crate::hypercall::vcpu_context;
use crate::mm::machine::Machine;
use crate::setup::{DOMAINS, EVENTS, MACHINE, MAX_DOMAIN_PAGES, SCHED, TIME, TimeBase};

/// The stored images. Taken after every other lock.
pub(super) static STORE: spin::Mutex<Store> = spin::Mutex::new(Store::new());
/// pfn → mfn of the domain being saved or restored (0: none; frame 0 is never a domain's).
pub(super) static P2M: spin::Mutex<[u64; MAX_DOMAIN_PAGES]> =
    spin::Mutex::new([0; MAX_DOMAIN_PAGES]);
/// When the last suspend request was made (for the log line of the suspend).
static REQUESTED_AT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// One page-table page being rewritten.
pub(super) static TABLE: spin::Mutex<[u64; ENTRIES]> = spin::Mutex::new([0; ENTRIES]);

pub(super) fn now() -> u64 {
    TIME.get().map_or(0, TimeBase::now_ns)
}

/// The bytes of `frames` contiguous frames from `first` (a run the store owns).
pub(super) fn run_mut(first: Mfn, frames: u64) -> &'static mut [u8] {
    // SAFETY: the run was allocated for the store (contiguous, identity mapped, owned by no domain) and is
    // only touched under the store's protocol: one domctl at a time, one CPU, no interrupt uses it.
    unsafe {
        core::slice::from_raw_parts_mut(IdentityMem::frame_ptr(first), (frames * 4096) as usize)
    }
}

pub(super) fn frame(mfn: Mfn) -> &'static mut [u8; 4096] {
    // SAFETY: `mfn` is a frame of the domain being saved or restored (checked by the caller through the
    // frame table), identity mapped; that domain does not run during the operation.
    unsafe { &mut *(IdentityMem::frame_ptr(mfn) as *mut [u8; 4096]) }
}

pub(super) fn free_run(m: &mut Machine<'_>, first: Mfn, frames: u64) {
    for f in first.0..first.0 + frames {
        IdentityMem::zero(Mfn(f));
        if let Err(e) = m.frames.free(Mfn(f)) {
            log::error!("image store: freeing {f:#x}: {e}");
        }
    }
}

/// `XEN_DOMCTL_SUSPEND_REQUEST`: raise `VIRQ_SUSPEND` in domain `id`.
pub fn request(id: u16) -> Result<(), Errno> {
    let mut table = DOMAINS.lock();
    let d = table.live_mut(id)?;
    if d.suspend != Suspend::No {
        return Err(Errno::EBUSY);
    }
    // Only a PV kernel can suspend itself (an emulate or hvm kernel is unmodified: it has no suspend
    // protocol, and its memory is guest-physical, not canonicalised through a frame table).
    if d.kind() != crate::domain::kind::DomainKind::Pv {
        log::warn!(
            "domain {id}: save refused: a {} domain cannot be saved (PV only)",
            d.kind()
        );
        return Err(Errno::EOPNOTSUPP);
    }
    if EVENTS.lock().virq_port(id, VIRQ_SUSPEND).is_none() {
        return Err(Errno::EOPNOTSUPP);
    }
    d.suspend = Suspend::Requested;
    REQUESTED_AT.store(now(), core::sync::atomic::Ordering::Relaxed);
    crate::sched::raise(&table, usize::from(id), VIRQ_SUSPEND);
    log::info!("domain {id}: asked to suspend");
    Ok(())
}

/// The guest's `SHUTDOWN_suspend` (from the trap path; `start_info` is checked to be its own frame): keep
/// everything, pause it, and make the call return 1 if it is resumed in place.
pub fn suspended(dom: &mut Domain, start_info: Mfn) {
    dom.suspend = Suspend::Suspended(start_info);
    dom.vcpu.regs.rax = 1;
    let _ = SCHED.lock().0.set_paused(usize::from(dom.id), true);
    let asked = REQUESTED_AT.load(core::sync::atomic::Ordering::Relaxed);
    log::info!(
        "domain {} suspended ({} us after the request)",
        dom.id,
        now().saturating_sub(asked) / 1000
    );
}

/// `XEN_DOMCTL_RESUMEDOMAIN`: a suspended domain continues in place (its suspend call returns 1); a
/// request not yet answered is withdrawn. `-EINVAL` for a domain in neither state.
pub fn resume(id: u16) -> Result<(), Errno> {
    let mut table = DOMAINS.lock();
    let d = table.live_mut(id)?;
    match d.suspend {
        Suspend::No => return Err(Errno::EINVAL),
        Suspend::Requested => {}
        Suspend::Suspended(_) => {
            d.vcpu.regs.rax = 1;
            SCHED.lock().0.set_paused(usize::from(id), false)?;
            log::info!("domain {id} resumed");
        }
    }
    d.suspend = Suspend::No;
    Ok(())
}

/// True if the page is all zeros. A word-wise OR without an early exit, which the compiler vectorizes: a
/// byte loop with an early exit over the 4096 pages of a 16 MiB domain cost a migration's stop-and-copy
/// about 60 ms of downtime under TCG (measured), most of its source side.
pub(super) fn is_zero_page(p: &[u8; 4096]) -> bool {
    p.chunks_exact(8).fold(0u64, |acc, w| {
        acc | u64::from_le_bytes(w.try_into().unwrap_or([1; 8]))
    }) == 0
}

/// Bytes the image of domain `id` can take at most: its frames as the encoder will write them (an
/// all-zero data page is a `ZeroPage` record), the other records at their largest. `data(pfn)`: whether
/// the data page at `pfn` goes in (the encoder's `keep`; a page left out costs nothing). Reads every frame
/// kept once, so that an idle large domain fits the store.
pub(super) fn image_bound(
    m: &Machine<'_>,
    id: u16,
    shared: Mfn,
    data: impl Fn(u64) -> bool,
) -> u64 {
    let rec = |len: u64| 8 + len.next_multiple_of(8);
    let mut pages = 0;
    for f in 0..m.ft.len() as u64 {
        let mfn = Mfn(f);
        if m.ft.owner(mfn) != Some(id) || mfn == shared {
            continue;
        }
        let table = m.ft.info(mfn).is_some_and(|i| i.ty.level().is_some());
        pages += if table {
            rec(16 + 4096)
        } else if !m.m2p.get(mfn).is_none_or(|p| data(p.0)) {
            0
        } else if is_zero_page(frame(mfn)) {
            rec(8)
        } else {
            rec(8 + 4096)
        };
    }
    HEADER_LEN as u64
        + rec(abi::save::DOMAIN_LEN as u64)
        + rec(VCPU_LEN as u64)
        + rec(4096)
        + rec(16 * crate::event::MAX_PORTS as u64)
        + pages
        + 8
}

/// `XEN_DOMCTL_SAVE`: write suspended domain `id` into the store as `name`. Returns the image's bytes.
pub fn save(id: u16, name: &str) -> Result<usize, Errno> {
    let t0 = now();
    let table = DOMAINS.lock();
    let d = table.live(id)?;
    let Suspend::Suspended(si) = d.suspend else {
        return Err(Errno::EINVAL);
    };
    // Its tables are write-protected for log-dirty: the image would hold read-only entries.
    if crate::mm::logdirty::STATE.lock().domain() == Some(id) {
        return Err(Errno::EBUSY);
    }
    let mut machine = MACHINE.lock();
    let m = machine.as_mut().ok_or(Errno::EIO)?;
    let frames = image_bound(m, id, d.mm.shared_info, |_| true).div_ceil(4096);
    let mut store = STORE.lock();
    store.check_room(name, frames)?;
    let first = m.frames.alloc_run(frames).ok_or(Errno::ENOMEM)?;
    let (result, pages, tables) = encode(d, si, m, run_mut(first, frames), &mut |_, _| true);
    let len = match result {
        Ok(len) => len,
        Err(e) => {
            free_run(m, first, frames);
            log::warn!("domain {id}: save as '{name}' failed: {e:?}");
            return Err(e);
        }
    };
    // Give back the frames past the image's end.
    let used = (len as u64).div_ceil(4096);
    free_run(m, Mfn(first.0 + used), frames - used);
    store.insert(Stored {
        name: heapless::String::try_from(name).map_err(|_| Errno::EINVAL)?,
        first,
        frames: used,
        len,
        pages,
        source: id,
    })?;
    log::info!(
        "domain {id} saved as '{name}': {pages} pages ({tables} page tables canonicalized), {len} bytes, {} us",
        (now() - t0) / 1000
    );
    Ok(len)
}

/// Write the image of `d` (suspended, start info in `si`) into `buf`: (length, pages, page tables). A data
/// page goes in only if `keep(pfn, contents)` (a live migration's tail leaves out the pages the destination
/// already has; page tables always go in).
pub(super) fn encode(
    d: &Domain,
    si: Mfn,
    m: &Machine<'_>,
    buf: &mut [u8],
    keep: &mut dyn FnMut(u64, &[u8; 4096]) -> bool,
) -> (Result<usize, Errno>, u64, u64) {
    let id = d.id;
    let shared = d.mm.shared_info;
    let start = StartInfo::read_from_prefix(&frame(si)[..]).map(|(s, _)| s);
    let Ok(start) = start else {
        return (Err(Errno::EINVAL), 0, 0);
    };
    let nr = start.nr_pages;
    if nr == 0 || nr > MAX_DOMAIN_PAGES as u64 {
        return (Err(Errno::EINVAL), 0, 0);
    }
    // The domain's P2M from the frame table and the M2P: every frame of it has one pfn below `nr`.
    let mut p2m = P2M.lock();
    let p2m = &mut p2m[..nr as usize];
    p2m.fill(0);
    let mut pages = 0;
    for f in 0..m.ft.len() as u64 {
        let mfn = Mfn(f);
        if m.ft.owner(mfn) != Some(id) || mfn == shared {
            continue;
        }
        match m.m2p.get(mfn).map(|p| p.0) {
            Some(p) if p < nr && p2m[p as usize] == 0 => p2m[p as usize] = f,
            _ => {
                log::warn!("domain {id}: frame {f:#x} has no pfn of its own (M2P); cannot save");
                return (Err(Errno::EINVAL), 0, 0);
            }
        }
        pages += 1;
    }
    let pfn_of = |mfn: Mfn| {
        let p = m.m2p.get(mfn)?.0;
        (m.ft.owner(mfn) == Some(id) && p < nr && p2m[p as usize] == mfn.0).then_some(p)
    };
    let (Some(base_pfn), Some(si_pfn)) = (pfn_of(d.mm.base), pfn_of(si)) else {
        return (Err(Errno::EINVAL), 0, 0);
    };
    let record = DomainRecord {
        nr_pages: nr,
        max_pages: d.mm.max_pages,
        start_info_pfn: si_pfn,
        base_pfn,
        source: u64::from(id),
        // In the domain's own time (its clock may run ahead of this boot's: `time_offset_ns`).
        saved_at_ns: now().wrapping_add(d.mm.time_offset_ns),
    };
    let mut ctx = vcpu_context::to_context(&d.vcpu, d.mm.base);
    ctx.ctrlreg[3] = base_pfn << 12;
    let mut ports: heapless::Vec<u8, { 16 * crate::event::MAX_PORTS }> = heapless::Vec::new();
    if let Some(t) = EVENTS.lock().table(id) {
        for (port, st) in t.bound() {
            let (state, a, b) = match st {
                PortState::Free => continue,
                PortState::Unbound { remote } => (EVTCHNSTAT_UNBOUND, u32::from(remote), 0),
                PortState::Interdomain {
                    remote,
                    remote_port,
                } => (EVTCHNSTAT_INTERDOMAIN, u32::from(remote), remote_port),
                PortState::Virq { virq } => (EVTCHNSTAT_VIRQ, virq, 0),
                PortState::Ipi => (EVTCHNSTAT_IPI, 0, 0),
            };
            let r = PortRecord { port, state, a, b };
            let _ = ports.extend_from_slice(&r.encode());
        }
    }
    let mut tables = 0;
    let r = (|| {
        let mut e = Encoder::new(buf).map_err(|_| Errno::ENOMEM)?;
        let nospace = |_| Errno::ENOMEM;
        e.record(RecordKind::Domain, &[&record.encode()])
            .map_err(nospace)?;
        e.record(RecordKind::Vcpu, &[ctx.as_bytes()])
            .map_err(nospace)?;
        e.record(RecordKind::SharedInfo, &[&frame(shared)[..]])
            .map_err(nospace)?;
        e.record(RecordKind::EventChannels, &[&ports])
            .map_err(nospace)?;
        let mut t = TABLE.lock();
        for (pfn, &f) in p2m.iter().enumerate() {
            if f == 0 {
                continue;
            }
            let mfn = Mfn(f);
            let info = m.ft.info(mfn).ok_or(Errno::EINVAL)?;
            let pfn_bytes = (pfn as u64).to_le_bytes();
            match info.ty.level() {
                Some(level) if info.type_count > 0 && info.is_validated() => {
                    for (i, w) in frame(mfn).chunks_exact(8).enumerate() {
                        t[i] = u64::from_le_bytes(w.try_into().unwrap_or_default());
                    }
                    canonicalize(level, &mut t, pfn_of, shared).map_err(|err| {
                        log::warn!("domain {id}: page table at pfn {pfn:#x}: {err}");
                        Errno::EINVAL
                    })?;
                    let word = u64::from(level) | if info.is_pinned() { PT_PINNED } else { 0 };
                    e.record(
                        RecordKind::PageTable,
                        &[&pfn_bytes, &word.to_le_bytes(), t.as_bytes()],
                    )
                    .map_err(nospace)?;
                    tables += 1;
                }
                _ if !keep(pfn as u64, frame(mfn)) => {}
                _ if is_zero_page(frame(mfn)) => e
                    .record(RecordKind::ZeroPage, &[&pfn_bytes])
                    .map_err(nospace)?,
                _ => e
                    .record(RecordKind::Page, &[&pfn_bytes, &frame(mfn)[..]])
                    .map_err(nospace)?,
            }
        }
        e.finish().map_err(nospace)
    })();
    (r, pages, tables)
}

/// `XEN_DOMCTL_RESTORE`: build a new domain from the stored image `name` (every frame fresh,
/// `save_restore`'s checks); its id.
pub fn restore(name: &str, paused: bool) -> Result<u16, Errno> {
    let (first, len) = {
        let store = STORE.lock();
        let s = store.find(name).ok_or(Errno::ENOENT)?;
        (s.first, s.len)
    };
    let bytes: &[u8] = &run_mut(first, (len as u64).div_ceil(4096))[..len];
    let Ok(img) = decode(bytes) else {
        log::warn!("restore of image '{name}' refused: not a valid image (codec) (EINVAL)");
        return Err(Errno::EINVAL);
    };
    let fresh = &mut super::save_restore::Fresh;
    let r = super::save_restore::restore(&img, fresh, paused, &format_args!("image '{name}'"))?;
    r.log(&format_args!("image '{name}'"));
    Ok(r.id)
}
