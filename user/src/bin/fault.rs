//! `fault [kernel|null|other|exec|gp|irq|stack|popf]`: misbehaves on purpose so the guest kernel must end
//! it (with status 139) and carry on: a write to the guest kernel's text (the default), to address 0, to
//! another process's mapping (pid 1's first anonymous region, not mapped here), a jump into a writable,
//! non-executable page, a privileged instruction, `int 0x20` (an interrupt vector whose gate user code may
//! not use), or recursion past the stack limit. If it survives it says so and exits 1. `popf` is the
//! exception: POPF with IF clear does not fault in ring 3, it is silently ignored (the instruction that
//! defeats pure trap-and-emulate); it reports what happened and exits 0.
#![no_std]
#![no_main]

use core::hint::black_box;

use user::arch::x86_64::cpu;
use user::{eprintln, println, sys};

user::main!(main);

/// The guest kernel's text (it is linked at the start of the top 2 GiB).
const KERNEL_TEXT: u64 = 0xffff_ffff_8000_0000;
/// Bytes each recursion level of `stack` puts on the stack.
const FRAME: usize = 4096;

fn main(args: &str) -> i32 {
    match args.split_ascii_whitespace().next().unwrap_or("kernel") {
        "kernel" => write_to(KERNEL_TEXT),
        "null" => write_to(0),
        "other" => {
            let lo = sys::proc_info(1).map_or(0, |p| p.mmap_lo);
            if lo == 0 {
                println!("fault: pid 1 has no mapping");
                return 1;
            }
            write_to(lo)
        }
        "exec" => {
            let Ok(page) = sys::mmap_rw(4096) else {
                println!("fault: mmap failed");
                return 1;
            };
            // A lone RET: if the page were executable, the call would simply come back.
            page[0] = 0xc3;
            let addr = page.as_ptr() as u64;
            println!("fault: jumping to {addr:#x} (writable, not executable)");
            // SAFETY: the page holds a single RET, a valid function body, should it execute at all.
            unsafe { cpu::call_at(addr) };
        }
        "gp" => {
            println!("fault: executing cli in ring 3");
            cpu::cli();
            println!("fault: cli did not fault; executing hlt");
            cpu::hlt();
        }
        "irq" => {
            println!("fault: raising the interrupt vector 0x20 with int in ring 3");
            cpu::int_0x20();
        }
        "popf" => {
            let (before, after) = cpu::popf_clear_if();
            println!(
                "fault: popf with IF clear in ring 3: IF {} before, {} after, no fault (popf is \
                 sensitive but not privileged)",
                u8::from(before),
                u8::from(after)
            );
            return 0;
        }
        "stack" => {
            let limit = uapi::USER_STACK_TOP - uapi::USER_STACK_LIMIT;
            println!("fault: writing to {limit:#x} and below (recursing past the stack limit)");
            let levels = 2 * uapi::USER_STACK_LIMIT as usize / FRAME;
            black_box(recurse(0, levels));
        }
        _ => {
            eprintln!("usage: fault [kernel|null|other|exec|gp|irq|stack|popf]");
            return 2;
        }
    }
    println!("fault: still alive?!");
    1
}

/// Store to `addr`, which this process may not write.
fn write_to(addr: u64) {
    println!("fault: writing to {addr:#x}");
    // SAFETY: the store is meant to fault; if it did not, it hit memory no Rust reference of this
    // program covers (kernel text, page 0 or another process's window).
    unsafe { cpu::store_u64(addr, 0xdead_beef) };
}

/// Recurse `levels` deep with a page-sized frame each (twice the stack limit in all).
fn recurse(depth: usize, levels: usize) -> u64 {
    let mut frame = [0u8; FRAME];
    frame[0] = depth as u8;
    let frame = black_box(&mut frame);
    if depth >= levels {
        return u64::from(frame[0]);
    }
    black_box(recurse(depth + 1, levels)) + u64::from(frame[FRAME - 1])
}
