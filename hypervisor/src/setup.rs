//! Boot: from the multiboot hand-over to the first guest instruction.
//!
//! Order: console and log level; parse the multiboot information (copied, so its memory can be reused);
//! frame allocator over available RAM minus the first MiB, the hypervisor image and the modules; the
//! hypervisor's address space and descriptor tables; a checksum of the hypervisor's code and read-only data
//! (verified again at power-off); one domain per module; then the scheduler runs the first vCPU.

use abi::types::{Maddr, Mfn};

use crate::arch::apic;
use crate::arch::paging::{self, HvSpace, IdentityMem};
use crate::arch::{self, serial};
use crate::bootinfo::multiboot::{self, BootInfo};
use crate::domain::images;
use crate::domain::lifecycle::create_domain;
use crate::domain::state::{DomainTable, MAX_DOMAINS};
use crate::event::channel::EventSystem;
use crate::hypercall::sched_op::PollTable;
use crate::mm::frame_alloc::FrameAllocator;
use crate::mm::frame_table::{FrameTable, PageInfo};
use crate::mm::machine::{M2p, Machine};
use crate::sched_policy::SchedPolicy;
use crate::time::pvclock::Clock;

/// RAM the hypervisor manages: the first GiB (frame table and M2P are sized for it; RAM above is unused).
pub const MANAGED_LIMIT: u64 = 1 << 30;
/// Frames the hypervisor can manage.
const MAX_FRAMES: usize = (MANAGED_LIMIT / 4096) as usize;
/// Largest domain (in pages) the builder's scratch P2M can describe: 256 MiB.
pub const MAX_DOMAIN_PAGES: usize = 65536;
/// Default memory per domain.
const DEFAULT_DOM_MEM: u64 = 16 << 20;
/// The value of `HV_CANARY`; the isolation tests check it is intact at power-off.
const CANARY: u64 = 0x5afe_c0de_1501_a7ed;

/// A word in `.data` that no guest should ever be able to change.
#[unsafe(no_mangle)]
pub static HV_CANARY: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(CANARY);

// The hypervisor's global state, one lock each. Lock order (never take an earlier one while holding a later
// one): DOMAINS, MACHINE, EVENTS, SCHED. Interrupt handlers take none of them (see `irq`).

/// The boot loader's information (parsed once at boot, in place).
static BOOT_INFO: spin::Mutex<BootInfo> = spin::Mutex::new(BootInfo::EMPTY);
/// All domains.
pub static DOMAINS: DomainsLock = DomainsLock(spin::Mutex::new(DomainTable::new()));
/// Free frames, frame table and M2P: one lock, one consistent picture.
pub static MACHINE: spin::Mutex<Option<Machine<'static>>> = spin::Mutex::new(None);
/// Every domain's event channels.
pub static EVENTS: spin::Mutex<EventSystem> = spin::Mutex::new(EventSystem::new());
/// The scheduling policy and the poll sets.
pub static SCHED: SchedLock = SchedLock(spin::Mutex::new((SchedPolicy::new(), PollTable::new())));

/// The lock around the scheduling policy: every [`SchedLock::lock`] raises [`crate::pending::SCHED`], so
/// the same-vCPU return knows the policy may have changed (the `pending` module's contract).
pub struct SchedLock(spin::Mutex<(SchedPolicy, PollTable)>);

impl SchedLock {
    /// Lock the policy, marking it possibly changed.
    pub fn lock(&self) -> spin::MutexGuard<'_, (SchedPolicy, PollTable)> {
        crate::pending::raise(crate::pending::SCHED);
        self.0.lock()
    }

    /// The mutex itself, for code that raises [`crate::pending::SCHED`] on its own terms: the hypercall
    /// context's lazy lock (raised when it releases the lock, if the handler marked the policy changed)
    /// and the return's check (which clears the bit).
    pub fn unraised(&self) -> &spin::Mutex<(SchedPolicy, PollTable)> {
        &self.0
    }
}
/// The lock around the domain table: every [`DomainsLock::lock`] raises [`crate::pending::DISARMED`], so
/// the fast hypercall path knows the state the last return recorded may be stale (the `pending` module's
/// contract). It is the only way to the table: so while `DISARMED` is clear, no guard of the table exists
/// (the same-vCPU return clears it while it holds one, and releases that before it returns to the guest),
/// which the fast hypercall path (`arch::entry`, `hypercall_entry`) relies on to use the recorded domain
/// without the lock.
pub struct DomainsLock(spin::Mutex<DomainTable>);

impl DomainsLock {
    /// Lock the domain table, marking the fast return's recorded state stale.
    #[inline(always)]
    pub fn lock(&self) -> spin::MutexGuard<'_, DomainTable> {
        crate::pending::raise(crate::pending::DISARMED);
        self.0.lock()
    }
}

/// Facts fixed at boot.
pub static HV: spin::Once<HvInfo> = spin::Once::new();
/// The time base: TSC frequency and the pvclock scale, and the hardware timer.
pub static TIME: spin::Once<TimeBase> = spin::Once::new();

/// The time base fixed at boot.
pub struct TimeBase {
    /// TSC to system time, for publications (`Clock::publish` keeps the last one).
    pub clock: spin::Mutex<Clock>,
    /// The same clock as made at boot, for reading without the lock: its time base and scale never
    /// change (only a publication's floor does), so `now_ns` and `tsc_at` give what the locked clock
    /// would.
    pub scale: Clock,
    /// The one-shot timer.
    pub timer: apic::Timer,
    /// Wall-clock time at system time 0 (seconds, nanoseconds).
    pub wallclock: (u64, u32),
}

impl TimeBase {
    /// System time now (ns since boot).
    pub fn now_ns(&self) -> u64 {
        self.scale.now_ns(arch::cpu::rdtsc())
    }
}

/// Facts fixed at boot.
pub struct HvInfo {
    /// The hypervisor command line (without the image path).
    pub cmdline: heapless::String<256>,
    /// Checksum of code and read-only data at boot.
    pub integrity: u64,
    /// Some boot module could not be turned into a domain.
    pub boot_errors: core::sync::atomic::AtomicBool,
    /// The hypervisor's address space and the mappings it shares with guests.
    pub space: HvSpace,
    /// The L4 entries installed in every validated guest L4: (slot, entry) for the M2P and the entry region.
    pub hv_l4: [(usize, u64); 2],
    /// The M2P table's frames (first, count), for the isolation audit.
    pub m2p_frames: (Mfn, u64),
    /// The CPU's physical-address width (CPUID 0x80000008).
    pub maxphyaddr: u32,
}

impl HvInfo {
    /// What a domain may see of the hypervisor, for the isolation audit.
    pub fn mappings(&self) -> crate::mm::audit::HvMappings<'_> {
        crate::mm::audit::HvMappings {
            entry_slot: crate::arch::paging::ENTRY_L4_SLOT,
            entry_frames: &self.space.entry_frames,
            stack_frames: &self.space.stack_frames,
            m2p_slot: crate::arch::paging::M2P_L4_SLOT,
            m2p_frames: self.m2p_frames,
        }
    }
}

static mut FREE_BITMAP: [u64; MAX_FRAMES / 64] = [0; MAX_FRAMES / 64];
static mut PAGE_INFO: [PageInfo; MAX_FRAMES] = [PageInfo::EMPTY; MAX_FRAMES];

#[repr(C, align(4096))]
struct M2pTable([u64; MAX_FRAMES]);
static mut M2P_TABLE: M2pTable = M2pTable([0; MAX_FRAMES]);

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
    // Parsed in place: with one module per domain the structure is too large for the stack.
    let mut boot = BOOT_INFO.lock();
    if let Err(e) = multiboot::parse_into(&IdentityMem, Maddr(info), &mut boot) {
        log::error!("bad multiboot information: {e}");
        serial::debug_exit(abi::exit::EXIT_BOOT_ERROR);
    }
    let boot = &*boot;
    let cmdline = multiboot::cmdline_args(&boot.cmdline);
    let mut dom_mem = DEFAULT_DOM_MEM;
    let mut selftest = None;
    let mut bench_floor = false;
    let mut weights = [crate::sched_policy::DEFAULT_WEIGHT; MAX_DOMAINS];
    let mut bench_iterations = 1000;
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
            Some(("bench", "floor")) => bench_floor = true,
            Some(("dom0_console", "direct")) => crate::console::set_dom0_direct(true),
            Some(("dom0_console", "lines")) => crate::console::set_dom0_direct(false),
            Some(("dom_weight", v)) => {
                for item in v.split(',') {
                    match item
                        .split_once(':')
                        .map(|(d, w)| (d.parse::<usize>(), w.parse::<u16>()))
                    {
                        Some((Ok(d), Ok(w))) if d < MAX_DOMAINS && w > 0 => weights[d] = w,
                        _ => log::warn!(
                            "dom_weight item '{item}' ignored (want domid:weight, weight 1..65535)"
                        ),
                    }
                }
            }
            Some(("bench_iterations", v)) => match v.parse() {
                Ok(n) if n > 0 => bench_iterations = n,
                _ => log::warn!("bench_iterations={v} ignored"),
            },
            // Test hooks for the failure reporting itself (set by the operator, never reachable by a guest).
            Some(("hv_selftest", v @ ("panic" | "fault" | "ring0-db"))) => selftest = Some(v),
            _ => log::warn!("unknown option '{word}'"),
        }
    }
    log::info!(
        "ring-1 PV hypervisor {}.{}{} starting; command line '{cmdline}'",
        abi::version::VERSION_MAJOR,
        abi::version::VERSION_MINOR,
        abi::version::EXTRAVERSION
    );

    init_machine(boot);
    let m2p_first = Maddr(&raw const M2P_TABLE as u64).mfn();
    let m2p_count = (MAX_FRAMES * 8 / 4096) as u64;
    let (space, m2p_l4e) = {
        let mut machine = MACHINE.lock();
        let frames = &mut machine.as_mut().expect("machine initialised").frames;
        (
            paging::build(frames),
            paging::build_m2p_mapping(frames, m2p_first, m2p_count),
        )
    };
    let features = arch::init_cpu(&space);
    arch::enable_syscall();
    init_time();
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
    let warning = abi::exit::CPU_FIDELITY_WARNING;
    match arch::fidelity::run() {
        arch::fidelity::Fidelity::Passed => log::info!(
            "cpu-fidelity: passed (ring-1 code with a null SS still faults on a privileged instruction)"
        ),
        arch::fidelity::Fidelity::NullSsGivesCpl0 => log::warn!(
            "{warning}: ring-1 code that loads a null SS runs at CPL 0 here, so a guest can take over the machine (see docs/ARCHITECTURE.md, \"Threat model\")"
        ),
        f => log::warn!(
            "{warning}: the null-SS probe ended unexpectedly ({f:?}) (see docs/ARCHITECTURE.md, \"Threat model\")"
        ),
    }
    let hv = HV.call_once(|| HvInfo {
        cmdline: heapless::String::try_from(cmdline).unwrap_or_default(),
        integrity: integrity_checksum(),
        boot_errors: core::sync::atomic::AtomicBool::new(false),
        hv_l4: [
            (paging::M2P_L4_SLOT, m2p_l4e),
            (paging::ENTRY_L4_SLOT, space.entry_l4e),
        ],
        m2p_frames: (m2p_first, m2p_count),
        maxphyaddr: features.maxphyaddr,
        space,
    });
    crate::trap::init_policy(hv);

    if bench_floor {
        crate::bench::ring0_floor(bench_iterations);
    }
    match selftest {
        Some("panic") => panic!("hv_selftest=panic: a deliberate hypervisor panic"),
        Some("ring0-db") => {
            if arch::ring0_debug_selftest() {
                log::info!(
                    "hv_selftest=ring0-db: a #DB in ring 0 was dropped, its IST frame zeroed"
                );
            } else {
                log::error!("hv_selftest=ring0-db: the #DB IST frame was left behind");
            }
        }
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
    // Modules with `image=NAME` are kept as available images; the others become domains 0, 1, ...
    let mut built = 0;
    let mut domid = 0usize;
    let mut kept = [false; multiboot::MAX_MODULES];
    let mut restores = [false; multiboot::MAX_MODULES];
    for (i, module) in boot.modules.iter().enumerate() {
        let args = multiboot::cmdline_args(&module.cmdline);
        // `restore=NAME`: a save image, restored once the boot domains exist (`domain::save`).
        if crate::domain::save_store::restore_word(args).is_some() {
            restores[i] = true;
            continue;
        }
        if let Some(word) = images::image_word(args) {
            match word.and_then(|name| images::IMAGES.lock().add(name, module.start, module.end)) {
                Ok(()) => {
                    kept[i] = true;
                    log::info!(
                        "module {i}: kept as available image '{}' ({} KiB)",
                        images::image_word(args)
                            .and_then(Result::ok)
                            .unwrap_or_default(),
                        (module.end.0 - module.start.0) / 1024
                    );
                }
                Err(e) => {
                    log::error!("module {i} ('{args}'): not kept: {e}");
                    hv.boot_errors
                        .store(true, core::sync::atomic::Ordering::Relaxed);
                }
            }
            continue;
        }
        if domid >= MAX_DOMAINS {
            log::error!(
                "module {i}: not started: the domain limit is {MAX_DOMAINS} (abi::domctl::MAX_DOMAINS)"
            );
            hv.boot_errors
                .store(true, core::sync::atomic::Ordering::Relaxed);
            continue;
        }
        let id = domid as u16;
        domid += 1;
        let made = match crate::domain::kind::kind_of(args) {
            Ok(crate::domain::kind::DomainKind::Emulate) => crate::emulate::machine::create(
                id,
                (module.start, module.end),
                module.cmdline.split_whitespace().next().unwrap_or(""),
                args,
                dom_mem / 4096,
                hv,
                weights[usize::from(id)],
            )
            .map_err(|e| {
                log::error!("domain {id} (emulate): not created: {e}");
            }),
            Ok(crate::domain::kind::DomainKind::Hvm) => {
                let mut cmd: heapless::String<1024> = heapless::String::new();
                let image_name = module.cmdline.split_whitespace().next().unwrap_or("kernel");
                let name = image_name.rsplit('/').next().unwrap_or(image_name);
                let _ = cmd.push_str(name);
                for w in crate::domain::kind::without_kind(args) {
                    let _ = cmd.push(' ');
                    let _ = cmd.push_str(w);
                }
                crate::hvm::build::create(
                    id,
                    (module.start, module.end),
                    &cmd,
                    dom_mem / 4096,
                    hv,
                    weights[usize::from(id)],
                )
                .map_err(|e| log::error!("domain {id}: not created: {e}"))
            }
            Err(e) => {
                log::error!(
                    "domain {id}: not created: kind= word refused ({e:?}): kind=pv|emulate|hvm, at most once"
                );
                Err(())
            }
            _ => create_domain(
                id,
                (module.start, module.end),
                args,
                dom_mem / 4096,
                hv,
                weights[usize::from(id)],
            )
            .map_err(|e| log::error!("domain {id}: not created: {e}")),
        };
        match made {
            Ok(()) => built += 1,
            Err(()) => {
                hv.boot_errors
                    .store(true, core::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    for (i, module) in boot
        .modules
        .iter()
        .enumerate()
        .filter(|(i, _)| restores[*i])
    {
        let args = multiboot::cmdline_args(&module.cmdline);
        let name = crate::domain::save_store::restore_word(args).unwrap_or_default();
        match crate::domain::save_images::restore_boot_module(name, module.start, module.end) {
            Ok(id) => {
                built += 1;
                log::info!("module {i}: image '{name}' restored as domain {id}");
            }
            Err(e) => {
                log::error!("module {i}: image '{name}' not restored: {e:?}");
                hv.boot_errors
                    .store(true, core::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    // The module images have been copied into domain memory: their frames are free now.
    {
        let mut machine = MACHINE.lock();
        let frames = &mut machine.as_mut().expect("machine initialised").frames;
        for (m, _) in boot.modules.iter().zip(kept).filter(|(_, k)| !k) {
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
    crate::sched::schedule(false, None)
}

/// Calibrate the TSC, start the APIC timer, read the wall clock, and let serial input interrupt.
fn init_time() {
    let timer = apic::init();
    let clock = Clock::new(timer.tsc_hz, arch::cpu::rdtsc());
    let cmos = |reg: u8| {
        arch::cpu::outb(0x70, reg | 0x80);
        arch::cpu::inb(0x71)
    };
    let unix = crate::time::rtc::read_unix_seconds(cmos).unwrap_or_else(|e| {
        log::warn!("CMOS clock unreadable ({e:?}); wall clock starts at 1970");
        0
    });
    let wallclock = crate::time::pvclock::wallclock_base(unix, clock.now_ns(arch::cpu::rdtsc()));
    log::info!(
        "time: TSC {}.{:03} MHz ({}), timer {:?}, wall clock {} s since 1970",
        timer.tsc_hz / 1_000_000,
        timer.tsc_hz / 1000 % 1000,
        if apic::tsc_hz_from_cpuid().is_some() {
            "from CPUID"
        } else {
            "calibrated against the PIT"
        },
        timer.mode,
        unix
    );
    TIME.call_once(|| TimeBase {
        clock: spin::Mutex::new(clock),
        scale: clock,
        timer,
        wallclock,
    });
    serial::enable_rx_interrupt();
    apic::unmask_serial_irq();
}

fn init_machine(boot: &BootInfo) {
    let (bits, info, m2p) = (&raw mut FREE_BITMAP, &raw mut PAGE_INFO, &raw mut M2P_TABLE);
    // SAFETY: runs once, before anything else can reach these statics; these are the only references ever
    // made to them, owned by MACHINE for the rest of the hypervisor's life.
    let (bits, info, m2p) = unsafe { (&mut *bits, &mut *info, &mut (*m2p).0) };
    let mut frames = FrameAllocator::new(bits);
    let mut above = 0;
    for r in boot.memory.iter().filter(|r| r.is_available()) {
        frames.add_free_range(Maddr(r.start), Maddr(r.end().min(MANAGED_LIMIT)));
        above += r.end().saturating_sub(r.start.max(MANAGED_LIMIT));
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
    if above > 0 {
        log::warn!(
            "{} MiB of RAM above {} MiB left unused",
            above >> 20,
            MANAGED_LIMIT >> 20
        );
    }
    *MACHINE.lock() = Some(Machine {
        frames,
        ft: FrameTable::new(info),
        m2p: M2p::new(m2p),
    });
}
