//! Boot: from the multiboot hand-over to the first guest instruction.
//!
//! Order: console and log level; parse the multiboot information (copied, so its memory can be reused);
//! frame allocator over available RAM minus the first MiB, the hypervisor image and the modules; the
//! hypervisor's address space and descriptor tables; a checksum of the hypervisor's code and read-only data
//! (verified again at power-off); one domain per module; then the scheduler runs the first vCPU.

use abi::types::{Maddr, Mfn};
use abi::xen::{SIF_INITDOMAIN, SIF_PRIVILEGED, SharedInfo};
use zerocopy::{FromZeros, IntoBytes};

use crate::arch::paging::{self, ENTRY_L4_SLOT, HvSpace, IDENTITY_LIMIT, IdentityMem};
use crate::arch::{self, serial};
use crate::bootinfo::multiboot::{self, BootInfo, Module};
use crate::domain::builder::{self, BuildParams};
use crate::domain::state::{Domain, DomainState, DomainTable, FxArea, MAX_DOMAINS, Vcpu};
use crate::mm::audit::{self, HvMappings};
use crate::mm::frame_alloc::FrameAllocator;
use crate::mm::frame_table::FrameTable;
use crate::regs::{EntryFrame, rflags};

/// Frames the hypervisor can manage (the identity-mapped 4 GiB).
const MAX_FRAMES: usize = (IDENTITY_LIMIT / 4096) as usize;
/// Largest domain (in pages) the builder's scratch P2M can describe: 256 MiB.
pub const MAX_DOMAIN_PAGES: usize = 65536;
/// Default memory per domain.
const DEFAULT_DOM_MEM: u64 = 16 << 20;
/// Initial stack of a domain, in pages.
const STACK_PAGES: u64 = 8;
/// The value of `HV_CANARY`; the isolation tests check it is intact at power-off.
const CANARY: u64 = 0x5afe_c0de_1501_a7ed;

/// A word in `.data` that no guest should ever be able to change.
#[unsafe(no_mangle)]
pub static HV_CANARY: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(CANARY);

/// All domains.
pub static DOMAINS: spin::Mutex<DomainTable> = spin::Mutex::new(DomainTable::new());
/// Free machine frames.
pub static FRAMES: spin::Mutex<Option<FrameAllocator<'static>>> = spin::Mutex::new(None);
/// Frame ownership.
pub static FRAME_TABLE: spin::Mutex<Option<FrameTable<'static>>> = spin::Mutex::new(None);
/// Facts fixed at boot.
pub static HV: spin::Once<HvInfo> = spin::Once::new();

/// Facts fixed at boot.
pub struct HvInfo {
    /// The hypervisor command line (without the image path).
    pub cmdline: heapless::String<256>,
    /// Checksum of code and read-only data at boot.
    pub integrity: u64,
    /// Some boot module could not be turned into a domain.
    pub boot_errors: core::sync::atomic::AtomicBool,
}

static mut FREE_BITMAP: [u64; MAX_FRAMES / 64] = [0; MAX_FRAMES / 64];
static mut OWNERS: [u16; MAX_FRAMES] = [0; MAX_FRAMES];
static P2M_SCRATCH: spin::Mutex<[Mfn; MAX_DOMAIN_PAGES]> =
    spin::Mutex::new([Mfn(0); MAX_DOMAIN_PAGES]);

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __entry_text_start: u8;
    static __entry_text_end: u8;
    static __text_start: u8;
    static __rodata_end: u8;
}

fn sym(p: *const u8) -> u64 {
    p as u64
}

/// FNV-1a over the hypervisor's code (entry text and main text) and read-only data, plus the canary.
pub fn integrity_checksum() -> u64 {
    let ranges = [
        (
            sym(&raw const __entry_text_start),
            sym(&raw const __entry_text_end),
        ),
        (sym(&raw const __text_start), sym(&raw const __rodata_end)),
    ];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (start, end) in ranges {
        // SAFETY: the ranges are part of the loaded image, mapped in the hypervisor's address space.
        let bytes =
            unsafe { core::slice::from_raw_parts(start as *const u8, (end - start) as usize) };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h ^ HV_CANARY.load(core::sync::atomic::Ordering::Relaxed)
}

/// Entry from `arch::boot_main`.
pub fn start(magic: u32, info: u64) -> ! {
    crate::console::init_logger(log::LevelFilter::Info);
    if magic != 0x2bad_b002 {
        log::error!("not started by a multiboot loader (magic {magic:#x})");
        serial::debug_exit(abi::exit::EXIT_BOOT_ERROR);
    }
    let boot = match multiboot::parse(&IdentityMem, Maddr(info)) {
        Ok(b) => b,
        Err(e) => {
            log::error!("bad multiboot information: {e}");
            serial::debug_exit(abi::exit::EXIT_BOOT_ERROR);
        }
    };
    let cmdline = multiboot::cmdline_args(&boot.cmdline);
    let mut dom_mem = DEFAULT_DOM_MEM;
    let mut selftest = None;
    for word in cmdline.split_whitespace() {
        match word.split_once('=') {
            Some(("loglevel", v)) => match crate::console::parse_level(v) {
                Some(l) => log::set_max_level(l),
                None => log::warn!("unknown log level '{v}'"),
            },
            Some(("dom_mem", v)) => match multiboot::parse_size(v) {
                Some(s) if s >= 1 << 20 && s <= (MAX_DOMAIN_PAGES as u64) * 4096 => dom_mem = s,
                _ => log::warn!("dom_mem={v} ignored (1M..{}M)", MAX_DOMAIN_PAGES / 256),
            },
            // Test hooks for the failure reporting itself (set by the operator, never reachable by a guest).
            Some(("hv_selftest", v @ ("panic" | "fault"))) => selftest = Some(v),
            _ => log::warn!("unknown option '{word}'"),
        }
    }
    log::info!(
        "ring-1 PV hypervisor {}.{}{} starting; command line '{cmdline}'",
        abi::version::VERSION_MAJOR,
        abi::version::VERSION_MINOR,
        abi::version::EXTRAVERSION
    );

    init_frames(&boot);
    let space = {
        let mut frames = FRAMES.lock();
        paging::build(frames.as_mut().expect("frame allocator initialised"))
    };
    let features = arch::init_cpu(&space);
    log::info!(
        "address spaces: hypervisor root {:#x}, entry region at {:#x} (read-only) shared with guests; SMEP {}, PCID {}",
        space.root.addr().0,
        abi::layout::ENTRY_REGION_VA,
        if features.smep { "on" } else { "absent" },
        if features.pcid {
            "on"
        } else {
            "absent (every CR3 switch flushes the TLB)"
        },
    );
    let hv = HV.call_once(|| HvInfo {
        cmdline: heapless::String::try_from(cmdline).unwrap_or_default(),
        integrity: integrity_checksum(),
        boot_errors: core::sync::atomic::AtomicBool::new(false),
    });

    match selftest {
        Some("panic") => panic!("hv_selftest=panic: a deliberate hypervisor panic"),
        Some(_) => {
            log::warn!("hv_selftest=fault: touching an unmapped address in ring 0");
            // SAFETY: deliberately faults (the address is not mapped in the hypervisor's address space); the
            // fault path reports and stops the machine.
            unsafe { core::ptr::read_volatile(0x0000_7fff_dead_0000 as *const u64) };
        }
        None => {}
    }
    if boot.modules.is_empty() {
        log::error!("no guest modules: nothing to run (pass guest images as multiboot modules)");
        serial::debug_exit(abi::exit::EXIT_BOOT_ERROR);
    }
    let mut built = 0;
    for (i, module) in boot.modules.iter().enumerate().take(MAX_DOMAINS) {
        let domid = i as u16;
        match create_domain(domid, module, dom_mem / 4096, &space) {
            Ok(()) => built += 1,
            Err(e) => {
                log::error!("domain {domid}: not created: {e}");
                hv.boot_errors
                    .store(true, core::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    if boot.modules.len() > MAX_DOMAINS {
        log::error!(
            "{} modules given; only {MAX_DOMAINS} domains are supported",
            boot.modules.len()
        );
        hv.boot_errors
            .store(true, core::sync::atomic::Ordering::Relaxed);
    }
    // The module images have been copied into domain memory: their frames are free now.
    {
        let mut frames = FRAMES.lock();
        let frames = frames.as_mut().expect("frame allocator initialised");
        for m in &boot.modules {
            frames.add_free_range(m.start, m.end);
        }
        log::info!(
            "{built} domain(s) built; {} frames free",
            frames.free_count()
        );
    }
    if built == 0 {
        serial::debug_exit(abi::exit::EXIT_BOOT_ERROR);
    }
    crate::sched::schedule(false)
}

fn init_frames(boot: &BootInfo) {
    // SAFETY: runs once, before anything else can reach these statics; they become owned by the allocator
    // and the frame table for the rest of the hypervisor's life.
    let (bits, owners) = (&raw mut FREE_BITMAP, &raw mut OWNERS);
    // SAFETY: (as above) the only references ever made to these two statics.
    let (bits, owners) = unsafe { (&mut *bits, &mut *owners) };
    let mut frames = FrameAllocator::new(bits);
    for r in boot.memory.iter().filter(|r| r.is_available()) {
        frames.add_free_range(Maddr(r.start), Maddr(r.end().min(IDENTITY_LIMIT)));
    }
    frames.reserve_range(Maddr(0), Maddr(1 << 20));
    let image = (sym(&raw const __image_start), sym(&raw const __image_end));
    frames.reserve_range(Maddr(image.0), Maddr(image.1));
    for m in &boot.modules {
        frames.reserve_range(m.start, m.end);
    }
    log::info!(
        "memory: {} MiB usable, hypervisor image {:#x}..{:#x}, {} module(s)",
        frames.free_count() / 256,
        image.0,
        image.1,
        boot.modules.len()
    );
    *FRAMES.lock() = Some(frames);
    *FRAME_TABLE.lock() = Some(FrameTable::new(owners));
}

/// Error text for a domain that could not be built.
struct BuildFailure(heapless::String<112>);

impl core::fmt::Display for BuildFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

fn failure(args: core::fmt::Arguments<'_>) -> BuildFailure {
    let mut s = heapless::String::new();
    let _ = core::fmt::write(&mut s, args);
    BuildFailure(s)
}

/// Build domain `domid` from a boot module: memory, image, page tables, start_info, shared_info, vCPU.
fn create_domain(
    domid: u16,
    module: &Module,
    nr_pages: u64,
    space: &HvSpace,
) -> Result<(), BuildFailure> {
    let len = module.end.0.saturating_sub(module.start.0);
    if module.end.0 > IDENTITY_LIMIT || len == 0 {
        return Err(failure(format_args!(
            "module {:#x}..{:#x} unusable",
            module.start.0, module.end.0
        )));
    }
    // SAFETY: the module's frames are reserved (not handed out) until every domain is built, and lie in the
    // identity map; the slice is only read.
    let image = unsafe { core::slice::from_raw_parts(module.start.0 as *const u8, len as usize) };
    let guest_cmdline = multiboot::cmdline_args(&module.cmdline);
    let flags = if domid == 0 {
        SIF_PRIVILEGED | SIF_INITDOMAIN
    } else {
        0
    };

    let mut frames_guard = FRAMES.lock();
    let frames = frames_guard.as_mut().expect("frame allocator initialised");
    if frames.free_count() < nr_pages + 1 {
        return Err(failure(format_args!(
            "not enough memory: {} pages wanted, {} free",
            nr_pages + 1,
            frames.free_count()
        )));
    }
    let shared = frames
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
        hypervisor_l4: &[(ENTRY_L4_SLOT, space.entry_l4e)],
        stack_pages: STACK_PAGES,
    };
    // Frame 0 is never allocatable (the first MiB is reserved), so 0 marks "not allocated" below.
    p2m.fill(Mfn(0));
    let built = match builder::build(&mut IdentityMem, frames, &params, p2m) {
        Ok(b) => b,
        Err(e) => {
            // Give back every frame this attempt took (all of them went into the P2M).
            for &m in p2m.iter().filter(|m| m.0 != 0) {
                let _ = frames.free(m);
            }
            let _ = frames.free(shared);
            return Err(failure(format_args!("{e}")));
        }
    };
    if built.shared_info_va.0 != abi::layout::boot_shared_info_va(built.start_info.0) {
        return Err(failure(format_args!(
            "builder placed shared_info away from its documented address"
        )));
    }
    // Our start_info extension (abi deviation h): the domain id after Xen's structure.
    let si_pfn = (built.start_info.0 - built.virt_base.0) / 4096;
    let si_frame = IdentityMem::frame_ptr(p2m[si_pfn as usize]);
    // SAFETY: the start_info frame belongs to the domain just built; the offset lies inside the page.
    unsafe {
        (si_frame.add(abi::xen::START_INFO_DOMID_OFFSET) as *mut u32)
            .write_unaligned(u32::from(domid))
    };
    let mut table = FRAME_TABLE.lock();
    let table = table.as_mut().expect("frame table initialised");
    for &m in p2m.iter().chain(core::iter::once(&shared)) {
        if let Err(e) = table.assign(m, domid) {
            log::error!("domain {domid}: frame bookkeeping: {e:?}");
        }
    }
    // The hard rule, checked on the real tables: nothing of the hypervisor but the read-only entry region and
    // the entry stacks, no foreign frame, no writable page table.
    let hv = HvMappings {
        entry_slot: ENTRY_L4_SLOT,
        entry_frames: &space.entry_frames,
        stack_frames: &space.stack_frames,
    };
    match audit::audit(&IdentityMem, built.l4, domid, |m| table.owner(m), &hv) {
        Ok(r) => log::info!(
            "isolation audit: domain {domid}: {} own pages ({} page tables, read-only), {} entry-region pages (read-only), {} entry-stack pages, 0 violations",
            r.guest_pages,
            r.page_table_pages,
            r.entry_pages,
            r.stack_pages
        ),
        Err(v) => {
            table.release_all(domid, |m| {
                let _ = frames.free(m);
            });
            return Err(failure(format_args!("isolation audit failed: {v}")));
        }
    }
    let regs = EntryFrame {
        rip: built.entry.0,
        rsp: built.stack_top.0,
        rsi: built.start_info.0,
        cs: u64::from(abi::layout::GUEST_KERNEL_CS),
        ss: u64::from(abi::layout::GUEST_KERNEL_SS),
        rflags: rflags::IF | rflags::FIXED1,
        ..EntryFrame::default()
    };
    log::info!(
        "domain {domid}: {} MiB, image {:#x}..{:#x}, entry {:#x}, start_info {:#x}, {} page-table frames, cmdline '{guest_cmdline}'",
        nr_pages / 256,
        built.virt_base.0,
        built.region_end.0,
        built.entry.0,
        built.start_info.0,
        built.nr_pt_frames
    );
    DOMAINS.lock().slots[domid as usize] = Some(Domain {
        id: domid,
        state: DomainState::Runnable,
        vcpu: Vcpu {
            regs,
            cr3: built.l4.addr().0,
            fx: FxArea::initial(),
            flush_tlb: true,
        },
        shared_info: shared,
        nr_pages,
        privileged: flags & SIF_PRIVILEGED != 0,
        console: crate::console::LineBuffer::new(),
    });
    Ok(())
}
