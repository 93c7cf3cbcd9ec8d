//! What happens when the hypervisor itself fails: a panic, or an exception taken in ring 0.
//!
//! Both print the location, the registers (for a fault) and a list of return addresses found by following
//! frame pointers (`[hv] bt #N 0x...`; `cargo xtask run` turns them into function names and lines), then
//! stop the machine with `EXIT_HYPERVISOR_PANIC`. Printing bypasses the console lock, which the failing code
//! may hold.

use crate::arch::{self, boot, serial};
use crate::console::print_unlocked;
use crate::regs::{EntryFrame, exception_name};

/// Print `rbp`-chained return addresses while they stay on the hypervisor stack.
/// `first` (the faulting RIP, if any) is printed as entry #0.
fn backtrace(mut rbp: u64, first: Option<u64>) {
    let mut n = 0;
    if let Some(rip) = first {
        print_unlocked(format_args!("[hv] bt #0 {rip:#018x}\n"));
        n = 1;
    }
    let (lo, hi) = (
        &raw const boot::hv_stack_bottom as u64,
        &raw const boot::hv_stack_top as u64,
    );
    for i in n..n + 24 {
        if rbp < lo || rbp + 16 > hi || !rbp.is_multiple_of(8) {
            break;
        }
        // SAFETY: rbp lies inside the hypervisor stack (checked above), which is always mapped.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        print_unlocked(format_args!("[hv] bt #{i} {ret:#018x}\n"));
        if next <= rbp {
            break;
        }
        rbp = next;
    }
}

/// Print a register frame, one line per `line` call (the caller adds prefix and newline).
pub fn dump_frame(f: &EntryFrame, line: fn(core::fmt::Arguments<'_>)) {
    line(format_args!(
        "rip={:#018x} rsp={:#018x} rflags={:#010x} cs={:#x} ss={:#x}",
        f.rip, f.rsp, f.rflags, f.cs, f.ss
    ));
    line(format_args!(
        "rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}",
        f.rax, f.rbx, f.rcx, f.rdx
    ));
    line(format_args!(
        "rsi={:#018x} rdi={:#018x} rbp={:#018x} r8={:#018x}",
        f.rsi, f.rdi, f.rbp, f.r8
    ));
    line(format_args!(
        "r9={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}",
        f.r9, f.r10, f.r11, f.r12
    ));
    line(format_args!(
        "r13={:#018x} r14={:#018x} r15={:#018x}",
        f.r13, f.r14, f.r15
    ));
}

/// An exception in ring 0: report and stop.
pub fn hypervisor_fault(f: &EntryFrame) -> ! {
    crate::console::release_unlocked();
    print_unlocked(format_args!(
        "[hv] PANIC exception in the hypervisor: {} (vector {}, error {:#x}) at rip={:#018x} cr2={:#x}\n",
        exception_name(f.vector),
        f.vector,
        f.error_code,
        f.rip,
        arch::read_cr2()
    ));
    dump_frame(f, |a| print_unlocked(format_args!("[hv] PANIC   {a}\n")));
    backtrace(f.rbp, Some(f.rip));
    serial::debug_exit(abi::exit::EXIT_HYPERVISOR_PANIC)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::console::release_unlocked();
    match info.location() {
        Some(l) => print_unlocked(format_args!(
            "[hv] PANIC at {}:{}: {}\n",
            l.file(),
            l.line(),
            info.message()
        )),
        None => print_unlocked(format_args!("[hv] PANIC: {}\n", info.message())),
    }
    backtrace(arch::cpu::frame_pointer(), None);
    serial::debug_exit(abi::exit::EXIT_HYPERVISOR_PANIC)
}
