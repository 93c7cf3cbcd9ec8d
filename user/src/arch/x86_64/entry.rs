//! The first instruction of every program.
//!
//! The guest kernel enters `_start` in ring 3 with RDI pointing at the argument string it copied to the
//! top of the stack and RSI holding its length. The stack pointer is wherever the kernel left it below
//! that copy, so `_start` clears the frame-pointer chain, clears the direction flag (the `rt` string
//! routines rely on it) and aligns RSP to 16 bytes before calling [`crate::runtime::start`] with the two
//! registers untouched, which the SysV calling convention reads as its two arguments.

use core::arch::naked_asm;

/// The ELF entry point (named by the linker script's `ENTRY`).
///
/// # Safety
/// Only the kernel may jump here, once, at process start, with RDI/RSI describing a readable argument
/// string.
// SAFETY: `no_mangle` is needed so the linker script can name the entry point; no other item is called
// `_start` (the programs are linked with `-nostartfiles`).
#[unsafe(no_mangle)]
#[unsafe(naked)]
#[unsafe(link_section = ".text.start")]
pub unsafe extern "C" fn _start() -> ! {
    // SAFETY (naked body): nothing is on the stack yet that we must preserve; the call never returns
    // (`start` ends the process), and `ud2` traps should it ever do so.
    naked_asm!(
        "xor ebp, ebp",
        "cld",
        "and rsp, -16",
        "call {start}",
        "ud2",
        start = sym crate::runtime::start,
    )
}
