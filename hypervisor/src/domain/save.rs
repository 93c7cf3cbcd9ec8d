//! Save, restore, snapshot and clone of PV domains, and the image store (see docs/ARCHITECTURE.md,
//! "Save images").
//!
//! The protocol is Xen's: the toolstack asks the guest to suspend ([`request`]: `VIRQ_SUSPEND`), the guest
//! calls `SHUTDOWN_suspend` naming its start-info frame ([`suspended`]: paused, memory kept), the toolstack
//! saves it ([`save`]: an image in the store, in pfns only) and then destroys it (save) or resumes it in
//! place ([`resume`]: the suspend call returns 1; snapshot). [`restore`] builds a new domain from an image
//! the way `createdomain` builds one from a kernel: fresh frames, page tables rewritten pfn → new frame and
//! validated by pinning and installing the base exactly as the guest's own requests would be, the isolation
//! audit, then the start info, the P2M and the vCPU; the suspend call returns 0 there. Every failure
//! returns the new domain's frames (nothing half-restored is left) and leaves the image and the source
//! untouched.

use abi::domctl::{MAX_DOMAIN_MEM_KB, VIRQ_SUSPEND, VcpuGuestContext};
use abi::errno::Errno;
use abi::event_channel::{
    EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_IPI, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ,
};
use abi::save::{
    DomainRecord, Encoder, HEADER_LEN, PT_PINNED, PortRecord, RecordKind, VCPU_LEN, decode,
};
use abi::types::{Gva, Mfn};
use abi::xen::{SharedInfo, StartInfo};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use super::lifecycle::{policy, release_frames};
use super::save_canon::{ENTRIES, canonicalize, uncanonicalize};
use super::save_store::{Store, Stored};
use super::state::{Domain, DomainState, FxArea, Suspend, Vcpu};
use crate::arch::paging::{ENTRY_L4_SLOT, IdentityMem};
use crate::event::PortState;
use crate::hypercall::{DomainMm, vcpu_context};
use crate::mm::audit::{self, HvMappings};
use crate::mm::guest_mem::GuestView;
use crate::mm::machine::Machine;
use crate::mm::ptval::Mm;
use crate::setup::{DOMAINS, EVENTS, HV, HvInfo, MACHINE, MAX_DOMAIN_PAGES, SCHED, TIME, TimeBase};

/// The stored images. Taken after every other lock.
pub(super) static STORE: spin::Mutex<Store> = spin::Mutex::new(Store::new());
/// pfn → mfn of the domain being saved or restored (0: none; frame 0 is never a domain's).
static P2M: spin::Mutex<[u64; MAX_DOMAIN_PAGES]> = spin::Mutex::new([0; MAX_DOMAIN_PAGES]);
/// One page-table page being rewritten.
static TABLE: spin::Mutex<[u64; ENTRIES]> = spin::Mutex::new([0; ENTRIES]);

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
    log::info!("domain {} suspended", dom.id);
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

/// Bytes the image of domain `id` can take at most: its frames as the encoder will write them (an
/// all-zero data page is a `ZeroPage` record), the other records at their largest. Reads every frame once,
/// so that an idle large domain fits the store.
pub(super) fn image_bound(m: &Machine<'_>, id: u16, shared: Mfn) -> u64 {
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
        } else if frame(mfn).iter().all(|&b| b == 0) {
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
    let frames = image_bound(m, id, d.mm.shared_info).div_ceil(4096);
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
                _ if frame(mfn).iter().all(|&b| b == 0) => e
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

/// What a restore did (for the log line).
struct Restored {
    pages: u64,
    tables: u64,
    pinned: u64,
    kept: u64,
    closed: u64,
}

/// `XEN_DOMCTL_RESTORE`: build a new domain from the stored image `name`; its id.
pub fn restore(name: &str, paused: bool) -> Result<u16, Errno> {
    let t0 = now();
    let (first, len, source) = {
        let store = STORE.lock();
        let s = store.find(name).ok_or(Errno::ENOENT)?;
        (s.first, s.len, s.source)
    };
    let bytes: &[u8] = &run_mut(first, (len as u64).div_ceil(4096))[..len];
    let id = DOMAINS.lock().free_id().ok_or(Errno::ENOSPC)?;
    let hv = HV.get().ok_or(Errno::EIO)?;
    match build(id, bytes, hv) {
        Ok((dom, r)) => {
            {
                let (sched, polls) = &mut *SCHED.lock();
                if sched
                    .start(usize::from(id), crate::sched_policy::DEFAULT_WEIGHT)
                    .is_err()
                {
                    log::error!("domain {id}: scheduler refused the restored domain");
                }
                polls.clear(id);
                if paused {
                    let _ = sched.set_paused(usize::from(id), true);
                }
            }
            let mut table = DOMAINS.lock();
            table.insert(dom);
            table.refresh_shared_info();
            table.last_created = id;
            log::info!(
                "domain {id} restored from image '{name}' (saved from domain {source}): {} pages, {} page tables ({} pinned) revalidated, {} event channels kept, {} interdomain closed, {} us{}",
                r.pages,
                r.tables,
                r.pinned,
                r.kept,
                r.closed,
                (now() - t0) / 1000,
                if paused { ", paused" } else { "" }
            );
            Ok(id)
        }
        Err((e, why)) => {
            log::warn!("restore of image '{name}' refused: {why} ({e:?})");
            Err(e)
        }
    }
}

type Refusal = (Errno, &'static str);

/// Give back everything a failed restore of `id` took (frames, pins, holds, base, ports).
fn undo(m: &mut Machine<'_>, hv: &HvInfo, id: u16, base: Option<Mfn>) {
    EVENTS.lock().reset_domain(id);
    release_frames(m, hv, id, base);
}

/// Check image `bytes` and build domain `id` from it (not yet scheduled or in the table).
fn build(id: u16, bytes: &[u8], hv: &HvInfo) -> Result<(Domain, Restored), Refusal> {
    let bad = |why| (Errno::EINVAL, why);
    let img = decode(bytes).map_err(|_| bad("not a valid image (codec)"))?;
    let dr = img
        .single(RecordKind::Domain)
        .and_then(DomainRecord::decode)
        .ok_or(bad("bad domain record"))?;
    let nr = dr.nr_pages;
    let max_pages = MAX_DOMAIN_MEM_KB / 4;
    if nr == 0 || nr > MAX_DOMAIN_PAGES as u64 || dr.max_pages > max_pages {
        return Err(bad("page counts out of range"));
    }
    let n = img
        .records()
        .filter(|(k, _)| {
            matches!(
                k,
                RecordKind::Page | RecordKind::ZeroPage | RecordKind::PageTable
            )
        })
        .count() as u64;
    if n == 0 || n > nr {
        return Err(bad("more pages than the P2M holds"));
    }
    let ctx = img
        .single(RecordKind::Vcpu)
        .and_then(|b| VcpuGuestContext::read_from_bytes(b).ok())
        .ok_or(bad("bad vCPU record"))?;
    if ctx.ctrlreg[3] != dr.base_pfn << 12 {
        return Err(bad("vCPU base is not the domain's base"));
    }
    let mut machine = MACHINE.lock();
    let m = machine.as_mut().ok_or((Errno::EIO, "no machine"))?;
    if m.frames.free_count() < n + 1 {
        return Err((Errno::ENOMEM, "not enough free memory"));
    }
    let shared = m.frames.alloc().ok_or((Errno::ENOMEM, "out of memory"))?;
    IdentityMem::zero(shared);
    if m.ft.assign(shared, id).is_err() {
        let _ = m.frames.free(shared);
        return Err((Errno::EIO, "frame bookkeeping"));
    }
    let mut p2m = P2M.lock();
    let p2m = &mut p2m[..nr as usize];
    p2m.fill(0);
    let r = fill(id, &img, &dr, p2m, shared, m, hv, ctx);
    match r {
        Ok((mut dom, stats)) => {
            drop(machine);
            dom.mm.shared_info = shared;
            match restore_ports(id, &img) {
                Ok((kept, closed)) => Ok((
                    dom,
                    Restored {
                        kept,
                        closed,
                        ..stats
                    },
                )),
                Err(e) => {
                    let mut machine = MACHINE.lock();
                    let m = machine.as_mut().ok_or((Errno::EIO, "no machine"))?;
                    undo(m, hv, id, Some(dom.mm.base));
                    Err(e)
                }
            }
        }
        Err((e, base)) => {
            undo(m, hv, id, base);
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fill(
    id: u16,
    img: &abi::save::Image<'_>,
    dr: &DomainRecord,
    p2m: &mut [u64],
    shared: Mfn,
    m: &mut Machine<'_>,
    hv: &HvInfo,
    mut ctx: VcpuGuestContext,
) -> Result<(Domain, Restored), (Refusal, Option<Mfn>)> {
    let bad = |why| ((Errno::EINVAL, why), None);
    let nr = dr.nr_pages;
    let pfn_at = |p: &[u8]| u64::from_le_bytes(p[..8].try_into().unwrap_or_default());
    // Pass 1: a fresh frame for every pfn, owned by the new domain, in the M2P.
    let mut pages = 0;
    for (k, p) in img.records() {
        if !matches!(
            k,
            RecordKind::Page | RecordKind::ZeroPage | RecordKind::PageTable
        ) {
            continue;
        }
        let pfn = pfn_at(p);
        if pfn >= nr || p2m[pfn as usize] != 0 {
            return Err(bad("a pfn beyond the P2M or twice"));
        }
        let mfn = m
            .frames
            .alloc()
            .ok_or(((Errno::ENOMEM, "out of memory"), None))?;
        if m.ft.assign(mfn, id).is_err() {
            let _ = m.frames.free(mfn);
            return Err(((Errno::EIO, "frame bookkeeping"), None));
        }
        m.m2p.set(mfn, abi::types::Pfn(pfn));
        p2m[pfn as usize] = mfn.0;
        pages += 1;
    }
    // Pass 2: contents; page tables rewritten pfn → new frame.
    let (mut tables, mut pinned) = (0, 0);
    {
        let mut t = TABLE.lock();
        for (k, p) in img.records() {
            match k {
                RecordKind::Page => {
                    frame(Mfn(p2m[pfn_at(p) as usize])).copy_from_slice(&p[8..]);
                }
                RecordKind::ZeroPage => IdentityMem::zero(Mfn(p2m[pfn_at(p) as usize])),
                RecordKind::PageTable => {
                    let word = pfn_at(&p[8..]);
                    let level = (word & 0xff) as u32;
                    if !(1..=4).contains(&level) || word & !(0xff | PT_PINNED) != 0 {
                        return Err(bad("bad page-table level"));
                    }
                    for (i, w) in p[16..].chunks_exact(8).enumerate() {
                        t[i] = u64::from_le_bytes(w.try_into().unwrap_or_default());
                    }
                    let mfn_of =
                        |pfn: u64| p2m.get(pfn as usize).filter(|&&f| f != 0).map(|&f| Mfn(f));
                    if uncanonicalize(level, &mut t, mfn_of, shared).is_err() {
                        return Err(bad("a page table names a pfn the image lacks"));
                    }
                    frame(Mfn(p2m[pfn_at(p) as usize])).copy_from_slice(t.as_bytes());
                    tables += 1;
                }
                _ => {}
            }
        }
    }
    // The shared-info page: its saved contents (event bits, vcpu_info, wall clock), held for the
    // hypervisor's writes as at creation.
    match img.single(RecordKind::SharedInfo) {
        Some(s) => frame(shared).copy_from_slice(s),
        None => {
            let mut si = SharedInfo::new_zeroed();
            si.vcpu_info[0].evtchn_upcall_mask = 1;
            si.arch.max_pfn = nr;
            frame(shared)[..core::mem::size_of::<SharedInfo>()].copy_from_slice(si.as_bytes());
        }
    }
    let mut mem = IdentityMem;
    if Mm::new(&mut m.ft, &mut mem, policy(hv))
        .hold_hv_writable(shared, id)
        .is_err()
    {
        return Err(bad("shared-info frame"));
    }
    // Start info: the new shared-info address and domain id.
    let si_mfn = p2m
        .get(dr.start_info_pfn as usize)
        .filter(|&&f| f != 0)
        .map(|&f| Mfn(f))
        .ok_or(bad("no start-info page"))?;
    let mut start = StartInfo::read_from_prefix(&frame(si_mfn)[..])
        .map(|(s, _)| s)
        .map_err(|_| bad("start info"))?;
    if start.nr_pages != nr {
        return Err(bad("start info disagrees with the image"));
    }
    start.shared_info = shared.addr().0;
    frame(si_mfn)[..core::mem::size_of::<StartInfo>()].copy_from_slice(start.as_bytes());
    frame(si_mfn)[abi::xen::START_INFO_DOMID_OFFSET..abi::xen::START_INFO_DOMID_OFFSET + 4]
        .copy_from_slice(&u32::from(id).to_le_bytes());
    // Validation: every pinned table pinned again, then the base installed — the guest's own requests.
    for (k, p) in img.records() {
        if k != RecordKind::PageTable || pfn_at(&p[8..]) & PT_PINNED == 0 {
            continue;
        }
        let mfn = Mfn(p2m[pfn_at(p) as usize]);
        let level = (pfn_at(&p[8..]) & 0xff) as u32;
        if let Err(e) = Mm::new(&mut m.ft, &mut mem, policy(hv)).pin(mfn, level, id) {
            log::warn!(
                "domain {id}: restored table at pfn {:#x} refused: {e}",
                pfn_at(p)
            );
            return Err(bad("a pinned page table failed validation"));
        }
        pinned += 1;
    }
    let base = p2m
        .get(dr.base_pfn as usize)
        .filter(|&&f| f != 0)
        .map(|&f| Mfn(f))
        .ok_or(bad("no base page"))?;
    if let Err(e) = Mm::new(&mut m.ft, &mut mem, policy(hv)).set_base(None, base, id) {
        log::warn!("domain {id}: restored base refused: {e}");
        return Err(bad("the base failed validation"));
    }
    let fail = |why| ((Errno::EINVAL, why), Some(base));
    let hvm = HvMappings {
        entry_slot: ENTRY_L4_SLOT,
        entry_frames: &hv.space.entry_frames,
        stack_frames: &hv.space.stack_frames,
        m2p_slot: crate::arch::paging::M2P_L4_SLOT,
        m2p_frames: hv.m2p_frames,
    };
    match audit::audit(&IdentityMem, base, id, |f| m.ft.owner(f), &hvm) {
        Ok(r) => log::info!(
            "isolation audit: domain {id}: {} own pages ({} page tables, read-only), 0 violations",
            r.guest_pages,
            r.page_table_pages
        ),
        Err(v) => {
            log::warn!("domain {id}: restored tables fail the isolation audit: {v}");
            return Err(fail("isolation audit"));
        }
    }
    // The P2M the guest keeps at start info's `mfn_list`: rewritten for the new frames.
    {
        let mut view = GuestView::new(&mut mem, base, false);
        for (i, chunk) in p2m.chunks(512).enumerate() {
            let mut out = [0u8; 512 * 8];
            for (j, &f) in chunk.iter().enumerate() {
                let v = if f == 0 { u64::MAX } else { f }; // Xen's INVALID_MFN
                out[j * 8..j * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
            let at = start.mfn_list.wrapping_add(i as u64 * 4096);
            if view.write(Gva(at), &out[..chunk.len() * 8]).is_err() {
                return Err(fail("the P2M at start info's mfn_list is not writable"));
            }
        }
    }
    // The vCPU, checked as setvcpucontext checks it; the suspend call returns 0 ("resumed elsewhere").
    ctx.ctrlreg[3] = base.0 << 12;
    let mut vcpu = Vcpu {
        regs: Default::default(),
        fx: FxArea::initial(),
        pv: Default::default(),
    };
    if vcpu_context::from_context(&mut vcpu, base, &ctx).is_err() {
        return Err(fail("the vCPU context is refused"));
    }
    vcpu.regs.rax = 0;
    vcpu.pv.segments_dirty = true;
    vcpu.pv.gates_dirty = true;
    let dom = Domain {
        id,
        state: DomainState::Runnable,
        vcpu,
        mm: DomainMm {
            base,
            tot_pages: pages,
            max_pages: dr.max_pages.max(pages),
            shared_info: shared,
            flush_tlb: true,
            preemptions: 0,
            // Saved at a later system time (another boot): the domain's clock continues from there.
            time_offset_ns: dr.saved_at_ns.saturating_sub(now()).min(1 << 62),
        },
        privileged: false,
        console: crate::console::LineBuffer::new(),
        suspend: Suspend::No,
        emu: None,
        hvm: None,
    };
    Ok((
        dom,
        Restored {
            pages,
            tables,
            pinned,
            kept: 0,
            closed: 0,
        },
    ))
}

/// Bind the image's VIRQ and IPI ports again at their numbers; interdomain and unbound ones stay closed.
fn restore_ports(id: u16, img: &abi::save::Image<'_>) -> Result<(u64, u64), Refusal> {
    let (mut kept, mut closed) = (0, 0);
    let Some(payload) = img.single(RecordKind::EventChannels) else {
        return Ok((0, 0));
    };
    let mut events = EVENTS.lock();
    for r in PortRecord::all(payload) {
        let st = match r.state {
            EVTCHNSTAT_VIRQ => PortState::Virq { virq: r.a },
            EVTCHNSTAT_IPI => PortState::Ipi,
            EVTCHNSTAT_UNBOUND | EVTCHNSTAT_INTERDOMAIN => {
                closed += 1;
                continue;
            }
            _ => return Err((Errno::EINVAL, "an unknown event-channel state")),
        };
        events
            .restore_local(id, r.port, st)
            .map_err(|_| (Errno::EINVAL, "an event channel cannot be bound again"))?;
        kept += 1;
    }
    Ok((kept, closed))
}
