//! From the first instruction to the command line: read start_info, set up the platform, print the
//! banner, run what the command line asks, shut down.

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

/// The boot facts (valid after `kernel_main` started).
pub fn facts() -> BootFacts {
    *FACTS.get().expect("boot facts read before boot")
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

    let code = match cmdline::parse(cmdline) {
        Command::Demo => crate::demo::run(),
        Command::Test(name) => crate::scenarios::run(name, cmdline),
        Command::Bench(role) => crate::bench::run(role, cmdline),
        Command::Shell => crate::proc::run_init("sh"),
        Command::PingServer => crate::proc::ping::serve(),
        Command::Unknown(word) => {
            println!("unknown command '{word}' (try 'demo' or 'test=NAME')");
            2
        }
    };
    ops().shutdown(Halt::Poweroff, code)
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
