//! The restore core (see docs/ARCHITECTURE.md, "Save, restore, snapshot and clone"): a new domain from a
//! save image's records, its frames from a [`Frames`] source — fresh ones for `xl restore` of an image in
//! the store ([`Fresh`]), or, on a live migration's destination, the frames the pages were received into,
//! adopted by pfn, with the tail image's records on top. Either way the same checks: records against each
//! other, page tables rewritten pfn → frame and validated by pinning and installing the base as the
//! guest's own requests would be, the isolation audit, start info and P2M rewritten, the vCPU checked as
//! `setvcpucontext` checks it, VIRQ/IPI ports bound again. Every failure gives back every frame the new
//! domain took (adopted ones too), its pins and ports: nothing half-restored is left.

use abi::domctl::{MAX_DOMAIN_MEM_KB, VcpuGuestContext};
use abi::errno::Errno;
use abi::event_channel::{
    EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_IPI, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ,
};
use abi::save::{DomainRecord, Image, PT_PINNED, PortRecord, RecordKind};
use abi::types::{Gva, Mfn, Pfn};
use abi::xen::{SharedInfo, StartInfo};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use super::lifecycle::{policy, release_frames};
use super::save::{P2M, TABLE, frame, now};
use super::save_canon::uncanonicalize;
use super::state::{Domain, DomainState, FxArea, Suspend, Vcpu};
use crate::arch::paging::IdentityMem;
use crate::event::PortState;
use crate::hypercall::{DomainMm, vcpu_context};
use crate::mm::audit;
use crate::mm::guest_mem::GuestView;
use crate::mm::machine::Machine;
use crate::mm::ptval::Mm;
use crate::setup::{DOMAINS, EVENTS, HV, HvInfo, MACHINE, MAX_DOMAIN_PAGES, SCHED};

/// Where a restored domain's frames come from: "what frame does pfn N get, and does it hold N's page
/// already?".
pub(super) trait Frames {
    /// Whether [`Frames::take`] has a frame for `pfn` (else the allocator gives a fresh one).
    fn holds(&self, pfn: u64) -> bool;
    /// Hand over the frame for `pfn`: allocated, owned by no domain; from then on the restore's (a failed
    /// restore frees it with the new domain's other frames, so the source must not free it again).
    fn take(&mut self, pfn: u64) -> Option<Mfn>;
    /// Whether this source holds `pfn`'s contents already (the image has no record for it): its frame
    /// is adopted as it is, no copy.
    fn kept(&self, pfn: u64) -> bool;
    /// One past the highest pfn [`Frames::kept`] may name.
    fn end(&self) -> u64;
}

/// Every frame fresh from the allocator: the image holds every page (`xl restore`).
pub(super) struct Fresh;

impl Frames for Fresh {
    fn holds(&self, _: u64) -> bool {
        false
    }
    fn take(&mut self, _: u64) -> Option<Mfn> {
        None
    }
    fn kept(&self, _: u64) -> bool {
        false
    }
    fn end(&self) -> u64 {
        0
    }
}

/// What a restore did: the new domain's id, and what [`Restored::log`] prints (later than the restore
/// itself if the caller likes: a migration's destination confirms first, since a log line on the serial
/// console costs up to milliseconds).
pub(super) struct Restored {
    pub id: u16,
    source: u64,
    pages: u64,
    adopted: u64,
    tables: u64,
    pinned: u64,
    kept: u64,
    closed: u64,
    /// The isolation audit: the guest's pages mapped, page tables among them.
    audited: (u64, u64),
    /// Microseconds: frames given, contents written, pins + base, audit, start info + P2M + vCPU;
    /// scheduling; in all.
    phases: [u64; 7],
    paused: bool,
}

impl Restored {
    /// The audit's and the restore's log lines; `what` names the image.
    pub fn log(&self, what: &dyn core::fmt::Display) {
        let id = self.id;
        let [fr, co, va, au, rest, sched, all] = self.phases;
        log::info!(
            "isolation audit: domain {id}: {} own pages ({} page tables, read-only), 0 violations",
            self.audited.0,
            self.audited.1
        );
        log::info!(
            "domain {id} restored from {what} (saved from domain {}): {} pages, {} page tables ({} pinned) revalidated, {} event channels kept, {} interdomain closed, {all} us ({} pages adopted in place; frames {fr}, contents {co}, pins and base {va}, audit {au}, start info/P2M/vCPU {rest}, scheduling {sched} us){}",
            self.source,
            self.pages,
            self.tables,
            self.pinned,
            self.kept,
            self.closed,
            self.adopted,
            if self.paused { ", paused" } else { "" }
        );
    }
}

type Refusal = (Errno, &'static str);

/// Restore image `img` (checked by the codec) as a new domain whose frames come from `frames`, and start
/// it (paused if `paused`). `what` names the image in the refusal's log line; the caller logs a success
/// ([`Restored::log`]).
pub(super) fn restore(
    img: &Image<'_>,
    frames: &mut dyn Frames,
    paused: bool,
    what: &dyn core::fmt::Display,
) -> Result<Restored, Errno> {
    let t0 = now();
    let id = DOMAINS.lock().free_id().ok_or(Errno::ENOSPC)?;
    let hv = HV.get().ok_or(Errno::EIO)?;
    match build(id, img, frames, hv) {
        Ok((dom, mut r)) => {
            let t_built = now();
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
            r.phases[5] = (now() - t_built) / 1000;
            r.phases[6] = (now() - t0) / 1000;
            r.paused = paused;
            Ok(r)
        }
        Err((e, why)) => {
            log::warn!("restore of {what} refused: {why} ({e:?})");
            Err(e)
        }
    }
}

/// Give back everything a failed restore of `id` took (frames, pins, holds, base, ports).
fn undo(m: &mut Machine<'_>, hv: &HvInfo, id: u16, base: Option<Mfn>) {
    EVENTS.lock().reset_domain(id);
    release_frames(m, hv, id, base);
}

fn is_page(k: RecordKind) -> bool {
    matches!(
        k,
        RecordKind::Page | RecordKind::ZeroPage | RecordKind::PageTable
    )
}

fn pfn_at(p: &[u8]) -> u64 {
    u64::from_le_bytes(p[..8].try_into().unwrap_or_default())
}

/// Check image `img` and build domain `id` from it (not yet scheduled or in the table).
fn build(
    id: u16,
    img: &Image<'_>,
    frames: &mut dyn Frames,
    hv: &HvInfo,
) -> Result<(Domain, Restored), Refusal> {
    let bad = |why| (Errno::EINVAL, why);
    let dr = img
        .single(RecordKind::Domain)
        .and_then(DomainRecord::decode)
        .ok_or(bad("bad domain record"))?;
    let nr = dr.nr_pages;
    let max_pages = MAX_DOMAIN_MEM_KB / 4;
    if nr == 0 || nr > MAX_DOMAIN_PAGES as u64 || dr.max_pages > max_pages {
        return Err(bad("page counts out of range"));
    }
    // Pages: the image's records and the source's kept pages; and how many need a fresh frame.
    let (mut n, mut fresh) = (0u64, 0u64);
    for (_, p) in img.records().filter(|(k, _)| is_page(*k)) {
        n += 1;
        fresh += u64::from(!frames.holds(pfn_at(p)));
    }
    for pfn in (0..frames.end()).filter(|&p| frames.kept(p)) {
        n += 1;
        fresh += u64::from(!frames.holds(pfn));
    }
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
    if m.frames.free_count() < fresh + 1 {
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
    let r = fill(id, img, &dr, p2m, frames, shared, m, hv, ctx);
    match r {
        Ok((mut dom, stats)) => {
            drop(machine);
            dom.mm.shared_info = shared;
            match restore_ports(id, img) {
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

/// Give pfn `pfn` (below `p2m.len()`, not yet given) its frame: the source's, else a fresh one; owned by
/// `id`, in the M2P. True if it was the source's.
fn give(
    id: u16,
    pfn: u64,
    p2m: &mut [u64],
    frames: &mut dyn Frames,
    m: &mut Machine<'_>,
) -> Result<bool, Refusal> {
    if p2m.get(pfn as usize).is_none_or(|&f| f != 0) {
        return Err((Errno::EINVAL, "a pfn beyond the P2M or twice"));
    }
    let (mfn, adopted) = match frames.take(pfn) {
        Some(f) => (f, true),
        None => (
            m.frames.alloc().ok_or((Errno::ENOMEM, "out of memory"))?,
            false,
        ),
    };
    if m.ft.assign(mfn, id).is_err() {
        IdentityMem::zero(mfn);
        let _ = m.frames.free(mfn);
        return Err((Errno::EIO, "frame bookkeeping"));
    }
    m.m2p.set(mfn, Pfn(pfn));
    p2m[pfn as usize] = mfn.0;
    Ok(adopted)
}

#[allow(clippy::too_many_arguments)]
fn fill(
    id: u16,
    img: &Image<'_>,
    dr: &DomainRecord,
    p2m: &mut [u64],
    frames: &mut dyn Frames,
    shared: Mfn,
    m: &mut Machine<'_>,
    hv: &HvInfo,
    mut ctx: VcpuGuestContext,
) -> Result<(Domain, Restored), (Refusal, Option<Mfn>)> {
    let bad = |why| ((Errno::EINVAL, why), None);
    let nr = dr.nr_pages;
    let mut clock = now();
    let mut phases = [0u64; 7];
    let mut lap = |i: usize| {
        let t = now();
        phases[i] = (t - clock) / 1000;
        clock = t;
    };
    // Pass 1: a frame for every pfn — the image's records first, then the pages the source kept —
    // owned by the new domain, in the M2P.
    let (mut pages, mut adopted) = (0, 0);
    for (_, p) in img.records().filter(|(k, _)| is_page(*k)) {
        adopted += u64::from(give(id, pfn_at(p), p2m, frames, m).map_err(|e| (e, None))?);
        pages += 1;
    }
    for pfn in 0..frames.end() {
        if frames.kept(pfn) {
            adopted += u64::from(give(id, pfn, p2m, frames, m).map_err(|e| (e, None))?);
            pages += 1;
        }
    }
    lap(0);
    // Pass 2: the records' contents; page tables rewritten pfn → new frame. Kept pages stay as they are.
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
    lap(1);
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
    lap(2);
    let fail = |why| ((Errno::EINVAL, why), Some(base));
    let hvm = hv.mappings();
    let audited = match audit::audit(&IdentityMem, base, id, |f| m.ft.owner(f), &hvm) {
        Ok(r) => (r.guest_pages, r.page_table_pages),
        Err(v) => {
            log::warn!("domain {id}: restored tables fail the isolation audit: {v}");
            return Err(fail("isolation audit"));
        }
    };
    lap(3);
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
    lap(4);
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
            id,
            audited,
            paused: false,
            source: dr.source,
            pages,
            adopted,
            tables,
            pinned,
            kept: 0,
            closed: 0,
            phases,
        },
    ))
}

/// Bind the image's VIRQ and IPI ports again at their numbers; interdomain and unbound ones stay closed.
fn restore_ports(id: u16, img: &Image<'_>) -> Result<(u64, u64), Refusal> {
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
