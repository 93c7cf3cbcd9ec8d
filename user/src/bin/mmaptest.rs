//! `mmaptest`: exercises the address space: a 16-page anonymous region reads as zeros (demand-zero) and
//! keeps a pattern; unmapping its middle 4 pages splits it, leaving the rest intact and the hole
//! unreachable (-EFAULT); bad `mmap`/`munmap` arguments are refused with -EINVAL; ~128 KiB of recursion
//! grows the stack on demand within its limit and computes the right value.
#![no_std]
#![no_main]

use core::fmt;
use core::hint::black_box;

use uapi::{Errno, MMAP_MAX, PROT_WRITE};
use user::{println, sys};

user::main!(main);

const PAGE: u64 = 4096;
const PAGES: u64 = 16;
/// The hole punched into the region: pages `HOLE..HOLE + HOLE_PAGES`.
const HOLE: u64 = 6;
const HOLE_PAGES: u64 = 4;
/// Recursion depth and bytes of locals per level for the stack test (128 KiB in all).
const DEPTH: u64 = 128;
const WORDS_PER_LEVEL: usize = 128;

fn main(_args: &str) -> i32 {
    match run() {
        Ok(grown) => {
            println!(
                "mmaptest: ok ({PAGES} pages demand-zero and patterned, {HOLE_PAGES}-page hole split the \
                 region, bad mmap/munmap arguments refused, stack grew {} KiB)",
                grown / 1024
            );
            0
        }
        Err(detail) => {
            println!("mmaptest: FAILED {detail}");
            1
        }
    }
}

/// What went wrong.
enum Failure {
    Call(&'static str, Result<u64, Errno>),
    Word(&'static str, u64, u64),
    Stack(u64, u64),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Call(what, got) => write!(f, "{what}: got {got:?}"),
            Failure::Word(what, addr, v) => write!(f, "{what}: word at {addr:#x} is {v:#x}"),
            Failure::Stack(got, want) => {
                write!(f, "stack recursion computed {got}, expected {want}")
            }
        }
    }
}

/// The pattern word for address `addr`.
fn pattern(addr: u64) -> u64 {
    addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xa5a5_a5a5_a5a5_a5a5
}

/// Check `call` gave `want`.
fn expect(
    what: &'static str,
    got: Result<u64, Errno>,
    want: Result<u64, Errno>,
) -> Result<(), Failure> {
    if got == want {
        Ok(())
    } else {
        Err(Failure::Call(what, got))
    }
}

/// Every word of pages `[from, to)` of the region at `base` must be `want(addr)`.
fn check(
    base: u64,
    from: u64,
    to: u64,
    what: &'static str,
    want: fn(u64) -> u64,
) -> Result<(), Failure> {
    for addr in (base + from * PAGE..base + to * PAGE).step_by(8) {
        // SAFETY: the caller passes pages of the region that are mapped now; nothing else refers to them.
        let v = unsafe { (addr as *const u64).read_volatile() };
        if v != want(addr) {
            return Err(Failure::Word(what, addr, v));
        }
    }
    Ok(())
}

fn run() -> Result<u64, Failure> {
    let base = sys::mmap(0, PAGES * PAGE, PROT_WRITE).map_err(|e| Failure::Call("mmap", Err(e)))?;
    check(base, 0, PAGES, "demand-zero", |_| 0)?;
    for addr in (base..base + PAGES * PAGE).step_by(8) {
        // SAFETY: inside the fresh writable region, which only this function reaches (by address).
        unsafe { (addr as *mut u64).write_volatile(pattern(addr)) };
    }
    check(base, 0, PAGES, "pattern", pattern)?;

    let hole = base + HOLE * PAGE;
    // SAFETY: the region is reached by raw address only; the hole is never touched again.
    let r = unsafe { sys::munmap(hole, HOLE_PAGES * PAGE) };
    expect("munmap of the middle", r, Ok(0))?;
    check(base, 0, HOLE, "pattern below the hole", pattern)?;
    check(
        base,
        HOLE + HOLE_PAGES,
        PAGES,
        "pattern above the hole",
        pattern,
    )?;
    // The hole is gone: the kernel must refuse to read from it (a fault would kill us; a call cannot).
    // SAFETY: a pointer the kernel must refuse; nothing is written to memory.
    let r = uapi::decode(unsafe { sys::call_on(sys::path(), uapi::nr::WRITE, [1, hole, 8, 0, 0]) });
    expect("write from the hole", r, Err(Errno::EFAULT))?;

    expect(
        "mmap of 0 bytes",
        sys::mmap(0, 0, PROT_WRITE),
        Err(Errno::EINVAL),
    )?;
    expect(
        "mmap at a fixed address",
        sys::mmap(0x5000_0000, PAGE, PROT_WRITE),
        Err(Errno::EINVAL),
    )?;
    expect(
        "mmap over MMAP_MAX",
        sys::mmap(0, MMAP_MAX + PAGE, PROT_WRITE),
        Err(Errno::EINVAL),
    )?;
    // SAFETY: this and the next two calls must be refused, so nothing is unmapped.
    let r = unsafe { sys::munmap(hole, PAGE) };
    expect("munmap of the hole again", r, Err(Errno::EINVAL))?;
    // SAFETY: as above.
    let r = unsafe { sys::munmap(base + 8, PAGE) };
    expect("munmap of an unaligned address", r, Err(Errno::EINVAL))?;
    // SAFETY: as above.
    let r = unsafe { sys::munmap(uapi::USER_IMAGE_BASE, PAGE) };
    expect("munmap of the program text", r, Err(Errno::EINVAL))?;

    let top = black_box(0u64);
    let top = &raw const top as u64;
    let mut lowest = top;
    let got = recurse(DEPTH, &mut lowest);
    let want: u64 = (1..=DEPTH)
        .map(|d| (0..WORDS_PER_LEVEL as u64).map(|i| d * i).sum::<u64>())
        .sum();
    if got != want {
        return Err(Failure::Stack(got, want));
    }

    // SAFETY: the rest of the region is no longer used.
    let r = unsafe { sys::munmap(base, HOLE * PAGE) };
    expect("munmap below the hole", r, Ok(0))?;
    let above = base + (HOLE + HOLE_PAGES) * PAGE;
    // SAFETY: as above.
    let r = unsafe { sys::munmap(above, (PAGES - HOLE - HOLE_PAGES) * PAGE) };
    expect("munmap above the hole", r, Ok(0))?;
    Ok(top - lowest)
}

/// Sum of `depth * i` over this level's words plus the levels below; `lowest` tracks the deepest frame.
fn recurse(depth: u64, lowest: &mut u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    let mut words = [0u64; WORDS_PER_LEVEL];
    for (i, w) in words.iter_mut().enumerate() {
        *w = depth * i as u64;
    }
    let words = black_box(&words);
    *lowest = (*lowest).min(words.as_ptr() as u64);
    let below = recurse(depth - 1, lowest);
    black_box(below + words.iter().sum::<u64>())
}
