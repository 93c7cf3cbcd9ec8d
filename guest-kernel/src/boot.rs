//! From the first instruction to the command line: read start_info (PV) or the multiboot information
//! (native), select the platform backend, print the banner, run what the command line asks, shut down.

use abi::xen::StartInfo;

use crate::cmdline::{self, Command};
use crate::platform::{Halt, ops};
use crate::println;

/// The PV backend itself, for the PV scenarios and hypercall benchmarks (the kernel uses `ops()`).
pub use crate::platform::xen_pv::platform;

/// What the kernel learned from start_info at boot.
#[derive(Clone, Copy)]
pub struct BootFacts {
    /// Virtual address of the start_info page.
    pub start_info: &'static StartInfo,
    /// This domain's id (abi deviation h).
    pub domid: u32,
}

static FACTS: spin::Once<BootFacts> = spin::Once::new();

/// The boot facts (PV only: valid after `kernel_main` started).
pub fn facts() -> BootFacts {
    *FACTS.get().expect("boot facts read before boot")
}

/// The domain id after a restore into another domain (`u32::MAX`: the boot one still holds).
static DOMID_NOW: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(u32::MAX);

/// This machine's domain id: the PV domain's, 0 natively (the only machine there is).
pub fn domid() -> u32 {
    match DOMID_NOW.load(core::sync::atomic::Ordering::Relaxed) {
        u32::MAX => FACTS.get().map_or(0, |f| f.domid),
        d => d,
    }
}

/// Read the domain id from start info again (it changes when the domain is restored as another) and
/// return it.
pub fn refresh_domid() -> u32 {
    let Some(f) = FACTS.get() else { return 0 };
    let at = f.start_info as *const StartInfo as usize + abi::xen::START_INFO_DOMID_OFFSET;
    // SAFETY: the domain id word lies inside the start_info page (abi deviation h), mapped for the
    // domain's lifetime; the hypervisor rewrote it on restore.
    let d = unsafe { (at as *const u32).read_volatile() };
    DOMID_NOW.store(d, core::sync::atomic::Ordering::Relaxed);
    d
}

/// Called by `_start` with the address of start_info and the initial stack pointer (the top of the
/// start-of-day stack, which is also the end of the start-of-day region).
pub extern "C" fn kernel_main(start_info: u64, stack_top: u64) -> ! {
    // SAFETY: the hypervisor passes the virtual address of this domain's start_info page in RSI; it stays
    // mapped (writable, but only this kernel writes it) for the domain's lifetime.
    let si: &'static StartInfo = unsafe { &*(start_info as *const StartInfo) };
    // This entry point is the PV one (the domain builder's): the PV backend serves this boot.
    let domid = crate::platform::xen_pv::enter(start_info);
    FACTS.call_once(|| BootFacts {
        start_info: si,
        domid,
    });

    let cmd_bytes = si.cmd_line_bytes();
    let cmdline = core::str::from_utf8(cmd_bytes).unwrap_or("<invalid utf-8>");
    if !si.has_valid_magic() {
        println!("start_info has a bad magic; continuing anyway");
    }
    let ring = ops().kernel_ring();
    println!(
        "guest kernel running in ring {ring} (CS={:#x}) on {}; domain {domid}, {} MiB ({} pages), command line '{cmdline}'",
        crate::arch::read_cs(),
        ops().name(),
        si.nr_pages / 256,
        si.nr_pages,
    );

    match crate::mm::kernel::init(si, stack_top) {
        Ok(s) => println!(
            "mm: physmap of {} pages at {:#x} ({} tables), {} slack pages unmapped, heap {} KiB, {} pages free{}",
            s.physmap_pages,
            crate::mm::PHYSMAP_BASE,
            s.physmap_tables,
            s.slack_pages,
            s.heap_bytes / 1024,
            s.free_pages,
            if s.kernel_l4_pinned_here {
                ", boot L4 pinned"
            } else {
                ""
            },
        ),
        // The error itself was reported where it happened.
        Err(_) => println!("mm: memory management unavailable; continuing without it"),
    }

    // Trap table, callbacks, the trap stack and the timer VIRQ; then events on.
    crate::trap::dispatch::boot();

    let code = run_command(cmdline);
    ops().shutdown(Halt::Poweroff, code)
}

/// Run what the command line asks (both entries); returns the poweroff code.
fn run_command(cmdline: &str) -> u32 {
    let native = crate::platform::backend() == crate::platform::Backend::Native;
    // The hvm kind's hostile probes (an unmodified ring-0 kernel's view: native boot only).
    if native && let Some(code) = crate::platform::native::svm_probe::run(cmdline) {
        return code;
    }
    match cmdline::parse(cmdline) {
        // The scenarios, the hypercall benchmarks, the demo and the ping server exercise the hypervisor.
        Command::Demo | Command::Test(_) | Command::Bench(_) | Command::PingServer if native => {
            println!("'{cmdline}' exercises the hypervisor: not available natively (try 'shell')");
            2
        }
        Command::Demo => crate::demo::run(),
        Command::Test(name) => crate::scenarios::run(name, cmdline),
        Command::Bench(role) => crate::bench::run(role, cmdline),
        Command::Shell => crate::proc::run_init("sh"),
        Command::PingServer => crate::proc::ping::serve(),
        // Runs in whatever ring the kernel is in: native, PV, emulate and hvm alike.
        Command::Sensitive => crate::sensitive::probe::run(),
        Command::Unknown(word) => {
            println!("unknown command '{word}' (try 'demo' or 'test=NAME')");
            2
        }
    }
}

/// Longest native command line kept (the rest is cut).
const NATIVE_CMDLINE_MAX: usize = 1024;

/// The native command line, copied out of the loader's memory at boot.
static NATIVE_CMDLINE: spin::Once<heapless::Vec<u8, NATIVE_CMDLINE_MAX>> = spin::Once::new();

/// Called by `_start64` (the native 64-bit entry, see `arch::x86_64::entry`) with the multiboot magic, the
/// physical address of the multiboot information and the top of the native boot stack.
pub extern "C" fn native_main(magic: u32, info_phys: u64, _stack_top: u64) -> ! {
    use crate::arch::x86_64::entry::MULTIBOOT_MAGIC;
    use crate::platform::native::{backend::NATIVE, multiboot};

    // This entry point is the native one: the native backend serves this boot.
    crate::platform::select(crate::platform::Backend::Native);
    let words = if magic == MULTIBOOT_MAGIC {
        read_phys_words::<{ multiboot::WORDS }>(info_phys)
    } else {
        None
    };
    let info = multiboot::Info::parse(words.unwrap_or([0; multiboot::WORDS]));
    NATIVE.enter(info);
    let cmd = NATIVE_CMDLINE.call_once(|| {
        let mut v = heapless::Vec::new();
        if let Some(pa) = info.cmdline {
            let mut at = u64::from(pa);
            while let Some([w]) = read_phys_words::<1>(at & !3) {
                let b = w.to_le_bytes()[(at & 3) as usize];
                if b == 0 || v.push(b).is_err() {
                    break;
                }
                at += 1;
            }
        }
        v
    });
    // A multiboot command line starts with the image's own name (QEMU and GRUB put it there): drop it.
    let cmdline = core::str::from_utf8(cmd).unwrap_or("<invalid utf-8>");
    let cmdline = cmdline
        .trim_start()
        .split_once(char::is_whitespace)
        .map_or("", |(_image, rest)| rest.trim_start());
    if magic != MULTIBOOT_MAGIC {
        println!(
            "native entry without the multiboot magic ({magic:#x}); continuing without boot information"
        );
    }
    let pages = ops().memory_pages().unwrap_or(0);
    println!(
        "guest kernel running in ring {} (CS={:#x}) on {}; {} MiB ({} pages), command line '{cmdline}'",
        ops().kernel_ring(),
        crate::arch::read_cs(),
        ops().name(),
        pages / 256,
        pages,
    );
    println!(
        "native: TSC {}.{:03} MHz (calibrated against the PIT), wall clock {}",
        NATIVE.tsc_hz() / 1_000_000,
        NATIVE.tsc_hz() / 1000 % 1000,
        match ops().wallclock_base() {
            Some((s, _)) => s,
            None => 0,
        },
    );

    unsafe extern "C" {
        /// The end of the image's .bss (linker script).
        static __kernel_end: u8;
    }
    let image_end =
        (&raw const __kernel_end) as u64 - crate::arch::x86_64::entry::NATIVE_PHYS_OFFSET;
    let first_free = image_end.div_ceil(abi::types::PAGE_SIZE) as usize;
    let kernel_l4 =
        abi::types::Pfn(crate::arch::x86_64::native::read_cr3() >> abi::types::PAGE_SHIFT);
    match crate::mm::kernel::init_native(pages as usize, first_free, kernel_l4) {
        Ok(s) => println!(
            "mm: physmap of {} pages at {:#x} ({} tables), identity P2M, heap {} KiB, {} pages free",
            s.physmap_pages,
            crate::mm::PHYSMAP_BASE,
            s.physmap_tables,
            s.heap_bytes / 1024,
            s.free_pages,
        ),
        Err(_) => println!("mm: memory management unavailable; continuing without it"),
    }
    use crate::mm::MmEnv;
    let image = crate::mm::kernel::env()
        .and_then(|env| env.alloc_page())
        .ok_or(abi::errno::Errno::ENOMEM)
        .and_then(|l1| NATIVE.protect_image(l1.0 << abi::types::PAGE_SHIFT));
    match image {
        Ok(size) => println!(
            "native: kernel image ({} KiB) mapped with 4 KiB pages: text read-only, rodata and data no-execute",
            size / 1024
        ),
        Err(e) => println!("native: kernel image left on its boot mapping ({e})"),
    }
    crate::trap::dispatch::boot();
    crate::platform::native::hostile::run(cmdline);
    let code = run_command(cmdline);
    ops().shutdown(Halt::Poweroff, code)
}

/// `N` little-endian words at physical address `pa` (4-byte aligned, below the 1 GiB the native boot
/// tables map at the physmap), or `None` outside it.
fn read_phys_words<const N: usize>(pa: u64) -> Option<[u32; N]> {
    if !pa.is_multiple_of(4) || pa.checked_add(4 * N as u64)? > 1 << 30 {
        return None;
    }
    let mut out = [0u32; N];
    for (i, w) in out.iter_mut().enumerate() {
        let a = pa + 4 * i as u64;
        let va = crate::mm::physmap_va(abi::types::Pfn(a >> 12)) + (a & 0xfff);
        // SAFETY: natively the boot tables map physical 0..1 GiB at the physmap (checked above), readable;
        // the loader's information and command line are ordinary RAM there.
        *w = unsafe { (va as *const u32).read_volatile() };
    }
    Some(out)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(l) => println!(
            "guest kernel panic at {}:{}: {}",
            l.file(),
            l.line(),
            info.message()
        ),
        None => println!("guest kernel panic: {}", info.message()),
    }
    ops().shutdown(Halt::Crash, 1)
}
