//! Creating a domain from a boot module, and tearing one down (shutdown or crash).
//!
//! Creation: a shared_info frame (held writable for the domain's life: `ptval::Mm::hold_hv_writable`), the
//! start-of-day layout (`builder`), ownership and M2P entries for every frame, the domain id in start_info
//! (abi deviation h), then *adoption* of the builder's page tables exactly as a guest's own would be
//! treated: the L4 is installed as the base, which validates the whole tree (types and reference counts;
//! the hypervisor's L4 slots are filled in), and the isolation audit checks the result. Teardown reverses
//! it: every pin, the shared_info hold and the base are dropped, which brings every count back to zero,
//! then every frame is zeroed and freed.

use abi::types::{Maddr, Mfn};
use abi::xen::{SIF_INITDOMAIN, SIF_PRIVILEGED, SharedInfo};
use zerocopy::{FromZeros, IntoBytes};

use super::builder::{self, BuildParams};
use super::state::{Domain, DomainState, FxArea, Vcpu};
use crate::arch::paging::IdentityMem;
use crate::hypercall::DomainMm;
use crate::mm::audit;
use crate::mm::machine::Machine;
use crate::mm::ptval::{Mm, Policy};
use crate::regs::{EntryFrame, rflags};
use crate::setup::{DOMAINS, HvInfo, MACHINE, MANAGED_LIMIT, MAX_DOMAIN_PAGES};

/// Initial stack of a domain, in pages.
const STACK_PAGES: u64 = 8;

static P2M_SCRATCH: spin::Mutex<[Mfn; MAX_DOMAIN_PAGES]> =
    spin::Mutex::new([Mfn(0); MAX_DOMAIN_PAGES]);

/// Error text for a domain that could not be built.
pub struct BuildFailure(heapless::String<112>);

impl core::fmt::Display for BuildFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn failure(args: core::fmt::Arguments<'_>) -> BuildFailure {
    let mut s = heapless::String::new();
    let _ = core::fmt::write(&mut s, args);
    BuildFailure(s)
}

/// The validation policy: the hypervisor's own L4 entries go into every validated L4.
pub fn policy(hv: &HvInfo) -> Policy<'_> {
    Policy {
        maxphyaddr: hv.maxphyaddr,
        hv_l4: &hv.hv_l4,
    }
}

/// Give every frame of `domid` back: drop pins and the base (all counts return to zero), then zero and
/// free the frames and forget their M2P entries. Returns the number of frames freed.
pub(crate) fn release_frames(
    m: &mut Machine<'_>,
    hv: &HvInfo,
    domid: u16,
    base: Option<Mfn>,
) -> u64 {
    let mut mem = IdentityMem;
    let (frames, m2p) = (&mut m.frames, &mut m.m2p);
    Mm::new(&mut m.ft, &mut mem, policy(hv)).teardown(domid, base, |mfn| {
        IdentityMem::zero(mfn);
        m2p.invalidate(mfn);
        if let Err(e) = frames.free(mfn) {
            log::error!("domain {domid}: freeing {mfn:?}: {e:?}");
        }
    })
}

/// Release every frame an emulate domain owns (it has no validated base, pins or holds).
pub fn release_domain_frames(m: &mut Machine<'_>, hv: &HvInfo, domid: u16) -> u64 {
    release_frames(m, hv, domid, None)
}

/// Build domain `domid` from the kernel image at `image` (a boot module, or a kept image) with this guest
/// command line. Domain 0 is the privileged one.
pub fn create_domain(
    domid: u16,
    image: (Maddr, Maddr),
    guest_cmdline: &str,
    nr_pages: u64,
    hv: &HvInfo,
    weight: u16,
) -> Result<(), BuildFailure> {
    let len = image.1.0.saturating_sub(image.0.0);
    if image.1.0 > MANAGED_LIMIT || len == 0 {
        return Err(failure(format_args!(
            "module {:#x}..{:#x} unusable",
            image.0.0, image.1.0
        )));
    }
    if nr_pages as usize > MAX_DOMAIN_PAGES {
        return Err(failure(format_args!(
            "{nr_pages} pages: more than the largest domain ({MAX_DOMAIN_PAGES})"
        )));
    }
    // SAFETY: the image's frames are reserved (boot modules until every boot domain is built, kept images
    // for good) and lie in the identity map; the slice is only read.
    let image = unsafe { core::slice::from_raw_parts(image.0.0 as *const u8, len as usize) };
    let flags = if domid == 0 {
        SIF_PRIVILEGED | SIF_INITDOMAIN
    } else {
        0
    };

    let mut machine = MACHINE.lock();
    let m = machine.as_mut().expect("machine initialised");
    if m.frames.free_count() < nr_pages + 1 {
        return Err(failure(format_args!(
            "not enough memory: {} pages wanted, {} free",
            nr_pages + 1,
            m.frames.free_count()
        )));
    }
    let shared = m
        .frames
        .alloc()
        .ok_or_else(|| failure(format_args!("out of memory")))?;
    IdentityMem::zero(shared);
    let mut si = SharedInfo::new_zeroed();
    si.vcpu_info[0].evtchn_upcall_mask = 1;
    si.arch.max_pfn = nr_pages;
    // SAFETY: the frame was just allocated and zeroed; SharedInfo fits in a page.
    unsafe {
        core::ptr::copy_nonoverlapping(
            si.as_bytes().as_ptr(),
            IdentityMem::frame_ptr(shared),
            si.as_bytes().len(),
        )
    };

    let mut p2m = P2M_SCRATCH.lock();
    let p2m = &mut p2m[..nr_pages as usize];
    let params = BuildParams {
        domid,
        nr_pages,
        image,
        cmdline: guest_cmdline,
        shared_info: shared,
        flags,
        hypervisor_l4: &hv.hv_l4,
        stack_pages: STACK_PAGES,
    };
    // Frame 0 is never allocatable (the first MiB is reserved), so 0 marks "not allocated" below.
    p2m.fill(Mfn(0));
    let built = match builder::build(&mut IdentityMem, &mut m.frames, &params, p2m) {
        Ok(b) => b,
        Err(e) => {
            // Give back every frame this attempt took (all of them went into the P2M).
            for &f in p2m.iter().filter(|f| f.0 != 0) {
                let _ = m.frames.free(f);
            }
            let _ = m.frames.free(shared);
            return Err(failure(format_args!("{e}")));
        }
    };
    for (pfn, &f) in p2m.iter().enumerate() {
        if let Err(e) = m.ft.assign(f, domid) {
            log::error!("domain {domid}: frame bookkeeping: {e:?}");
        }
        m.m2p.set(f, abi::types::Pfn(pfn as u64));
    }
    if let Err(e) = m.ft.assign(shared, domid) {
        log::error!("domain {domid}: frame bookkeeping: {e:?}");
    }
    let undo = |m: &mut Machine<'_>, base| release_frames(m, hv, domid, base);
    // The hypervisor writes shared_info for the domain's whole life: typed writable for good, so the domain
    // can never make it a page table (it may still remap it read-only; the pin or link is refused).
    let mut mem = IdentityMem;
    if let Err(e) = Mm::new(&mut m.ft, &mut mem, policy(hv)).hold_hv_writable(shared, domid) {
        undo(m, None);
        return Err(failure(format_args!("shared_info frame: {e}")));
    }
    if built.shared_info_va.0 != abi::layout::boot_shared_info_va(built.start_info.0) {
        undo(m, None);
        return Err(failure(format_args!(
            "builder placed shared_info away from its documented address"
        )));
    }
    // Our start_info extension (abi deviation h): the domain id after Xen's structure.
    let si_frame =
        IdentityMem::frame_ptr(p2m[((built.start_info.0 - built.virt_base.0) / 4096) as usize]);
    // SAFETY: the start_info frame belongs to the domain just built; the offset lies inside the page.
    unsafe {
        (si_frame.add(abi::xen::START_INFO_DOMID_OFFSET) as *mut u32)
            .write_unaligned(u32::from(domid))
    };

    // Adopt the start-of-day tables as the domain's base: full validation, as for any guest L4.
    if let Err(e) = Mm::new(&mut m.ft, &mut mem, policy(hv)).set_base(None, built.l4, domid) {
        undo(m, None);
        return Err(failure(format_args!(
            "start-of-day page tables failed validation: {e}"
        )));
    }
    // The hard rule, checked on the real tables: nothing of the hypervisor but the read-only entry region,
    // the entry stacks and the read-only M2P; no foreign frame; no writable page table.
    let hvm = hv.mappings();
    match audit::audit(&IdentityMem, built.l4, domid, |f| m.ft.owner(f), &hvm) {
        Ok(r) => log::info!(
            "isolation audit: domain {domid}: {} own pages ({} page tables, read-only), {} entry-region pages (read-only), {} entry-stack pages, {} M2P pages (read-only), cpu-fidelity: {}, 0 violations",
            r.guest_pages,
            r.page_table_pages,
            r.entry_pages,
            r.stack_pages,
            r.m2p_pages,
            crate::arch::fidelity::status().audit_word()
        ),
        Err(v) => {
            undo(m, Some(built.l4));
            return Err(failure(format_args!("isolation audit failed: {v}")));
        }
    }
    drop(machine);
    log::info!(
        "domain {domid}: {} MiB, image {:#x}..{:#x}, entry {:#x}, start_info {:#x}, {} page-table frames, cmdline '{guest_cmdline}'",
        nr_pages / 256,
        built.virt_base.0,
        built.region_end.0,
        built.entry.0,
        built.start_info.0,
        built.nr_pt_frames
    );
    let regs = EntryFrame {
        rip: built.entry.0,
        rsp: built.stack_top.0,
        rsi: built.start_info.0,
        cs: u64::from(abi::layout::GUEST_KERNEL_CS),
        ss: u64::from(abi::layout::GUEST_KERNEL_SS),
        rflags: rflags::IF | rflags::FIXED1,
        ..EntryFrame::default()
    };
    // The wall clock (the pvclock is published each time the vCPU is switched in).
    if let Some(t) = crate::setup::TIME.get() {
        // SAFETY: the shared_info frame was just created for this domain and is identity mapped.
        let page = unsafe { &mut *(IdentityMem::frame_ptr(shared) as *mut [u8; 4096]) };
        crate::time::pvclock::write_wallclock(page.as_mut_slice(), t.wallclock.0, t.wallclock.1);
    }
    {
        let (sched, polls) = &mut *crate::setup::SCHED.lock();
        if let Err(e) = sched.start(usize::from(domid), weight) {
            log::warn!("domain {domid}: weight {weight} refused ({e:?}); using the default");
            let _ = sched.start(usize::from(domid), crate::sched_policy::DEFAULT_WEIGHT);
        }
        polls.clear(domid);
    }
    let mut table = DOMAINS.lock();
    table.insert(Domain {
        id: domid,
        state: DomainState::Runnable,
        vcpu: Vcpu {
            regs,
            fx: FxArea::initial(),
            pv: Default::default(),
        },
        mm: DomainMm {
            base: built.l4,
            tot_pages: nr_pages,
            max_pages: nr_pages,
            shared_info: shared,
            flush_tlb: true,
            preemptions: 0,
            time_offset_ns: 0,
        },
        privileged: flags & SIF_PRIVILEGED != 0,
        console: crate::console::LineBuffer::new(),
        emu: None,
        hvm: None,
        suspend: Default::default(),
    });
    table.refresh_shared_info();
    Ok(())
}

/// Mark the domain stopped, flush its console and give its memory back.
pub fn stop_domain(dom: &mut Domain, state: DomainState) {
    dom.state = state;
    let id = dom.id;
    dom.console
        .flush(|line| crate::console::guest_line(id, line));
    let hv = crate::setup::HV.get().expect("boot facts recorded");
    crate::setup::EVENTS.lock().reset_domain(id);
    {
        let (sched, polls) = &mut *crate::setup::SCHED.lock();
        sched.stop(usize::from(id));
        polls.clear(id);
    }
    let mut machine = MACHINE.lock();
    if dom.emu.is_some() {
        // An emulate domain: no validated base; its shadow pool and P2M go back first.
        let m = machine.as_mut().expect("machine initialised");
        crate::emulate::machine::release(dom, m);
        release_domain_frames(m, hv, id);
        return;
    }
    if dom.hvm.is_some() {
        crate::hvm::run::teardown_check(dom, machine.as_ref().expect("machine initialised"));
        crate::hvm::run::teardown(dom, machine.as_mut().expect("machine initialised"));
    } else {
        super::logdirty_ctl::end_locked(id, machine.as_ref().expect("machine initialised"));
        super::teardown_check::check(
            machine.as_ref().expect("machine initialised"),
            hv,
            id,
            dom.mm.base,
        );
    }
    let released = release_frames(
        machine.as_mut().expect("machine initialised"),
        hv,
        id,
        Some(dom.mm.base),
    );
    log::debug!(
        "domain {id}: {released} frames released ({} continuations)",
        dom.mm.preemptions
    );
}
