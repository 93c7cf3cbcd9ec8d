//! Building and tearing down an hvm domain: guest-physical memory 0..N backed by the domain's frames
//! through nested tables, the multiboot kernel loaded at its physical address, the multiboot information,
//! the VMCB in the multiboot hand-over state, and the device board.
//!
//! Frames: the guest's pages (and a shared_info frame the guest never sees, kept so that the PV-side code
//! that looks at every domain's shared_info has one) are owned by the domain in the frame table, so the
//! common teardown frees them; the nested tables and the VMCB are the hypervisor's (no owner) and are freed
//! here. The I/O and MSR permission maps are shared by every hvm domain (`arch::svm`).

use abi::types::{Maddr, Mfn, Pfn};

use super::npt::{self, Npt};
use super::vmcb::{InitialState, Vmcb};
use super::{HvmVcpu, exit::ExitCounts, exits::GuestGprs};
use crate::arch::paging::IdentityMem;
use crate::arch::svm;
use crate::domain::lifecycle::{BuildFailure, failure};
use crate::domain::state::{Domain, DomainState, FxArea, Vcpu};
use crate::hypercall::DomainMm;
use crate::loader::multiboot_image::{self, GuestPhysWrite, LoadError};
use crate::mm::machine::Machine;
use crate::setup::{DOMAINS, HvInfo, MACHINE, MANAGED_LIMIT, MAX_DOMAIN_PAGES};

/// Where the multiboot information goes (guest-physical; memory map and command line follow it).
const INFO_GPA: u32 = multiboot_image::INFO_ADDR;

/// The message for a CPU without SVM/NPT (one ERROR line, the other domains are built).
pub const NO_SVM: &str =
    "hvm needs AMD SVM with nested paging; this CPU has none (try -cpu max under TCG)";

/// Guest-physical writes for the loader, through the nested tables of the domain being built.
struct NptWriter<'a>(&'a Npt);

impl GuestPhysWrite for NptWriter<'_> {
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), LoadError> {
        write_gpa(self.0, gpa, bytes).map_err(|gpa| LoadError::GuestWrite { gpa })
    }
}

/// Write `bytes` at guest-physical `gpa` through the nested tables.
fn write_gpa(npt: &Npt, gpa: u64, bytes: &[u8]) -> Result<(), u64> {
    let mut done = 0;
    while done < bytes.len() {
        let at = gpa + done as u64;
        let Some(ma) = npt.translate(&IdentityMem, at) else {
            return Err(at);
        };
        let n = (4096 - (at & 0xfff) as usize).min(bytes.len() - done);
        // SAFETY: `ma` is in a frame of the domain being built (the nested tables map nothing else), identity
        // mapped; `n` bytes stay inside that frame; no guest runs.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes[done..].as_ptr(), ma.0 as *mut u8, n);
        }
        done += n;
    }
    Ok(())
}

/// Build hvm domain `domid` from the multiboot kernel at `image`; `cmdline` is what the guest finds in the
/// multiboot information (image name first, then its arguments without `kind=`).
pub fn create(
    domid: u16,
    image: (Maddr, Maddr),
    cmdline: &str,
    nr_pages: u64,
    _hv: &HvInfo,
    weight: u16,
) -> Result<(), BuildFailure> {
    if svm::detect().is_none() {
        return Err(failure(format_args!("{NO_SVM}")));
    }
    svm::enable();
    let len = image.1.0.saturating_sub(image.0.0);
    if image.1.0 > MANAGED_LIMIT || len == 0 {
        return Err(failure(format_args!("module unusable")));
    }
    if nr_pages as usize > MAX_DOMAIN_PAGES || nr_pages < 256 {
        return Err(failure(format_args!(
            "{nr_pages} pages: hvm domains have 1 MiB to {} MiB",
            MAX_DOMAIN_PAGES / 256
        )));
    }
    // SAFETY: the module's frames are reserved until every boot domain is built, identity mapped; read only.
    let image = unsafe { core::slice::from_raw_parts(image.0.0 as *const u8, len as usize) };
    let mb = multiboot_image::parse(image)
        .and_then(|mb| mb.check_placement(nr_pages * 4096).map(|()| mb))
        .map_err(|e| failure(format_args!("kernel image: {e}")))?;
    let (entry, load_addr, image_end) = (mb.entry32, mb.load_phys, mb.end());

    let mut machine = MACHINE.lock();
    let m = machine.as_mut().expect("machine initialised");
    // Guest pages, shared_info, VMCB and about one table per 512 pages plus the upper levels.
    let need = nr_pages + 2 + nr_pages / 512 + 4;
    if m.frames.free_count() < need {
        return Err(failure(format_args!(
            "not enough memory: {need} pages wanted, {} free",
            m.frames.free_count()
        )));
    }
    let built = populate(m, domid, nr_pages);
    let (npt, shared, vmcb) = match built {
        Ok(x) => x,
        Err(e) => return Err(failure(format_args!("{e}"))),
    };
    let undo = |m: &mut Machine<'_>| release(m, domid, &npt, vmcb);
    // The kernel (its zero fill included), the multiboot information and the command line.
    let mut mem = NptWriter(&npt);
    let loaded = mb.load(&mut mem).and_then(|()| {
        multiboot_image::write_info(&mut mem, INFO_GPA, (nr_pages * 4) as u32, cmdline)
    });
    if let Err(e) = loaded {
        undo(m);
        return Err(failure(format_args!("loading the kernel: {e}")));
    }
    // The isolation audit of the nested tables (table frames are nobody's, so a leaf on one would also
    // fail the owner check).
    let audit = npt::audit(
        &IdentityMem,
        &npt,
        domid,
        nr_pages,
        |f| m.ft.owner(f),
        |_| false,
    );
    let report = match audit {
        Ok(r) => r,
        Err(v) => {
            undo(m);
            return Err(failure(format_args!("isolation audit failed: {v}")));
        }
    };
    let state = InitialState {
        entry,
        info: INFO_GPA,
        asid: u32::from(domid) % 15 + 1,
        n_cr3: npt.root.addr().0,
        iopm_pa: svm::iopm_pa(),
        msrpm_pa: svm::msrpm_pa(),
    };
    // SAFETY: the VMCB frame was just allocated for this domain, zeroed, identity mapped, 4 KiB aligned.
    unsafe { (IdentityMem::frame_ptr(vmcb) as *mut Vmcb).write(Vmcb::initial(&state)) };
    drop(machine);
    log::info!(
        "isolation audit: domain {domid} (hvm): {} guest pages behind {} nested tables, no hypervisor frame, 0 violations",
        report.leaves,
        report.tables
    );
    log::info!(
        "domain {domid}: hvm (SVM, nested paging), {} MiB, image {load_addr:#x}..{image_end:#x}, entry {entry:#x} (32-bit multiboot), ASID {}, cmdline '{cmdline}'",
        nr_pages / 256,
        state.asid
    );
    {
        let (sched, polls) = &mut *crate::setup::SCHED.lock();
        if sched.start(usize::from(domid), weight).is_err() {
            let _ = sched.start(usize::from(domid), crate::sched_policy::DEFAULT_WEIGHT);
        }
        polls.clear(domid);
    }
    let wallclock = crate::setup::TIME.get().map_or(0, |t| t.wallclock.0);
    let mut table = DOMAINS.lock();
    table.insert(Domain {
        id: domid,
        state: DomainState::Runnable,
        vcpu: Vcpu {
            regs: Default::default(),
            fx: FxArea::initial(),
            pv: Default::default(),
        },
        mm: DomainMm {
            base: Mfn(0),
            tot_pages: nr_pages,
            max_pages: nr_pages,
            shared_info: shared,
            flush_tlb: false,
            preemptions: 0,
            time_offset_ns: 0,
        },
        privileged: false,
        console: crate::console::LineBuffer::new(),
        suspend: Default::default(),
        emu: None,
        hvm: Some(HvmVcpu {
            vmcb,
            npt,
            nr_pages,
            gprs: GuestGprs {
                rbx: u64::from(INFO_GPA),
                ..GuestGprs::default()
            },
            board: crate::devices::Board::new(wallclock),
            exits: ExitCounts::new(),
            direct_out: heapless::Vec::new(),
        }),
    });
    table.refresh_shared_info();
    Ok(())
}

/// Allocate and map the guest's frames, the shared_info frame and the VMCB. On failure everything taken
/// is given back.
fn populate(
    m: &mut Machine<'_>,
    domid: u16,
    nr_pages: u64,
) -> Result<(Npt, Mfn, Mfn), &'static str> {
    let npt = Npt::new(&mut IdentityMem, &mut m.frames).map_err(|_| "out of memory")?;
    let mut fail = None;
    for gfn in 0..nr_pages {
        let Some(f) = m.frames.alloc() else {
            fail = Some("out of memory");
            break;
        };
        IdentityMem::zero(f);
        if m.ft.assign(f, domid).is_err() {
            let _ = m.frames.free(f);
            fail = Some("frame bookkeeping");
            break;
        }
        m.m2p.set(f, Pfn(gfn));
        if npt.map(&mut IdentityMem, &mut m.frames, gfn, f).is_err() {
            fail = Some("out of memory for nested tables");
            break;
        }
    }
    let extra = match fail {
        None => m.frames.alloc().zip(m.frames.alloc()),
        Some(_) => None,
    };
    let Some((shared, vmcb)) = extra else {
        release(m, domid, &npt, Mfn(0));
        return Err(fail.unwrap_or("out of memory"));
    };
    IdentityMem::zero(shared);
    IdentityMem::zero(vmcb);
    // The PV event code may look at it: upcalls masked, never delivered.
    // SAFETY: the frame was just allocated and zeroed; byte 1 of vcpu_info[0] is evtchn_upcall_mask.
    unsafe { IdentityMem::frame_ptr(shared).add(1).write(1) };
    let _ = m.ft.assign(shared, domid);
    Ok((npt, shared, vmcb))
}

/// Free the nested tables and the VMCB (hypervisor frames), and every frame the domain owns.
fn release(m: &mut Machine<'_>, domid: u16, npt: &Npt, vmcb: Mfn) {
    free_hypervisor_frames(m, npt, vmcb);
    let (frames, m2p) = (&mut m.frames, &mut m.m2p);
    m.ft.release_all(domid, |f| {
        IdentityMem::zero(f);
        m2p.invalidate(f);
        let _ = frames.free(f);
    });
}

/// Give back the nested tables and the VMCB (zeroed). The domain's own frames go with the common teardown.
pub fn free_hypervisor_frames(m: &mut Machine<'_>, npt: &Npt, vmcb: Mfn) {
    let mut tables: heapless::Vec<Mfn, 256> = heapless::Vec::new();
    let mut overflow = false;
    npt.walk(
        &IdentityMem,
        &mut |t, _| overflow |= tables.push(t).is_err(),
        &mut |_, _| {},
    );
    if overflow {
        log::error!("nested tables: more than 256 table frames; some are not freed");
    }
    for t in tables {
        IdentityMem::zero(t);
        let _ = m.frames.free(t);
    }
    if vmcb.0 != 0 {
        IdentityMem::zero(vmcb);
        let _ = m.frames.free(vmcb);
    }
}
