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
use crate::mm::machine::Machine;
use crate::setup::{DOMAINS, HvInfo, MACHINE, MANAGED_LIMIT, MAX_DOMAIN_PAGES};

/// Where the multiboot information goes (guest-physical; the command line follows it).
const INFO_GPA: u32 = 0x9000;
/// Longest command line handed to the guest.
const CMDLINE_MAX: usize = 1024;

/// The message for a CPU without SVM/NPT (one ERROR line, the other domains are built).
pub const NO_SVM: &str =
    "hvm needs AMD SVM with nested paging; this CPU has none (try -cpu max under TCG)";

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

/// A multiboot v1 image with the a.out-kludge address fields: (entry, load address, the bytes to load,
/// end of bss).
fn parse_multiboot(image: &[u8]) -> Result<(u32, u32, &[u8], u32), &'static str> {
    let word = |o: usize| {
        image
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let h = (0..image.len().min(8192).saturating_sub(32))
        .step_by(4)
        .find(|&o| word(o) == Some(0x1bad_b002))
        .ok_or("no multiboot header in the first 8 KiB")?;
    let (magic, flags, sum) = (
        word(h).unwrap_or(0),
        word(h + 4).unwrap_or(0),
        word(h + 8).unwrap_or(1),
    );
    if magic.wrapping_add(flags).wrapping_add(sum) != 0 {
        return Err("bad multiboot header checksum");
    }
    if flags & (1 << 16) == 0 {
        return Err("multiboot header without load addresses (flag 16)");
    }
    let f = |i: usize| word(h + 12 + 4 * i).unwrap_or(0);
    let (header_addr, load_addr, load_end, bss_end, entry) = (f(0), f(1), f(2), f(3), f(4));
    let off = (h as u32)
        .checked_sub(header_addr.wrapping_sub(load_addr))
        .ok_or("load address after the header")? as usize;
    let end = if load_end == 0 {
        image.len()
    } else {
        off + load_end.wrapping_sub(load_addr) as usize
    };
    let bytes = image.get(off..end).ok_or("load range outside the file")?;
    Ok((entry, load_addr, bytes, bss_end))
}

/// Build hvm domain `domid` from the multiboot kernel at `image`; `cmdline` is what the guest finds in the
/// multiboot information (image name first, then its arguments without `kind=`).
pub fn create(
    domid: u16,
    image: (Maddr, Maddr),
    cmdline: &str,
    nr_pages: u64,
    hv: &HvInfo,
    weight: u16,
) -> Result<(), BuildFailure> {
    let _ = hv;
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
    let (entry, load_addr, bytes, bss_end) =
        parse_multiboot(image).map_err(|e| failure(format_args!("kernel image: {e}")))?;
    let mem_end = nr_pages * 4096;
    if u64::from(load_addr) + bytes.len() as u64 > mem_end
        || u64::from(bss_end) > mem_end
        || u64::from(load_addr) < 0x10_0000
    {
        return Err(failure(format_args!(
            "kernel image {load_addr:#x}..{bss_end:#x} does not fit above 1 MiB in {} MiB",
            nr_pages / 256
        )));
    }

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
    // The kernel, its bss, the multiboot information and the command line.
    let bss_from = u64::from(load_addr) + bytes.len() as u64;
    let zeros = [0u8; 256];
    let mut at = bss_from;
    let mut res = write_gpa(&npt, u64::from(load_addr), bytes);
    while res.is_ok() && at < u64::from(bss_end) {
        let n = (u64::from(bss_end) - at).min(256) as usize;
        res = write_gpa(&npt, at, &zeros[..n]);
        at += n as u64;
    }
    let cmd = &cmdline.as_bytes()[..cmdline.len().min(CMDLINE_MAX - 1)];
    let cmd_gpa = INFO_GPA + 0x100;
    let mut info = [0u32; 8];
    info[0] = 1 | 1 << 2; // MEM, CMDLINE
    info[1] = 640;
    info[2] = (nr_pages * 4 - 1024) as u32;
    info[4] = cmd_gpa;
    let info_bytes: [u8; 32] = zerocopy::transmute!(info);
    res = res
        .and_then(|()| write_gpa(&npt, u64::from(INFO_GPA), &info_bytes))
        .and_then(|()| write_gpa(&npt, u64::from(cmd_gpa), cmd))
        .and_then(|()| write_gpa(&npt, u64::from(cmd_gpa) + cmd.len() as u64, &[0]));
    if let Err(gpa) = res {
        undo(m);
        return Err(failure(format_args!(
            "loading: guest-physical {gpa:#x} unmapped"
        )));
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
        "domain {domid}: hvm (SVM, nested paging), {} MiB, image {load_addr:#x}..{bss_end:#x}, entry {entry:#x} (32-bit multiboot), ASID {}, cmdline '{cmdline}'",
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
        },
        privileged: false,
        console: crate::console::LineBuffer::new(),
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
