//! The symbols a `no_std` Rust binary needs from its environment: `memcpy` and friends (the compiler emits
//! calls to them) and the unwinding personality and resume hook (never used: panics abort).
//!
//! They are written with string instructions so the compiler cannot turn them back into calls to
//! themselves.

use core::arch::asm;

/// Copy `n` bytes from `src` to `dst` (non-overlapping).
///
/// # Safety
/// Standard C `memcpy` contract: both ranges valid for `n` bytes and not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // Eight bytes per iteration, then the tail bytes.
    // SAFETY: the caller guarantees both ranges; DF is clear (entry code executes CLD).
    unsafe {
        asm!("rep movsq", "mov ecx, {tail:e}", "rep movsb",
             tail = in(reg) n & 7,
             inout("rcx") n / 8 => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags))
    };
    dst
}

/// Copy `n` bytes from `src` to `dst`; the ranges may overlap.
///
/// # Safety
/// Standard C `memmove` contract: both ranges valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: a forward copy is correct when dst does not start inside the source range.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: backward copy with DF set for the duration of the instruction, cleared right after.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dst.wrapping_add(n).wrapping_sub(1) => _,
             inout("rsi") src.wrapping_add(n).wrapping_sub(1) => _, options(nostack))
    };
    dst
}

/// Fill `n` bytes at `dst` with the byte `c`.
///
/// # Safety
/// Standard C `memset` contract: the range is valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let word = u64::from(c as u8) * 0x0101_0101_0101_0101;
    // SAFETY: the caller guarantees the range; DF is clear. Words first, then the tail bytes (the low byte
    // of RAX is the fill byte for `rep stosb` too).
    unsafe {
        asm!("rep stosq", "mov ecx, {tail:e}", "rep stosb",
             tail = in(reg) n & 7,
             inout("rcx") n / 8 => _, inout("rdi") dst => _, in("rax") word,
             options(nostack, preserves_flags))
    };
    dst
}

/// Compare `n` bytes; returns <0, 0 or >0 like C `memcmp`.
///
/// # Safety
/// Standard C `memcmp` contract: both ranges valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and the caller guarantees both ranges.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// Compare `n` bytes for equality (0 = equal).
///
/// # Safety
/// As for [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// Unwinding personality; never called because every panic aborts.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// Resume unwinding; never called because every panic aborts. The precompiled `alloc` (built for
/// unwinding) references it from its landing pads.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    loop {
        core::hint::spin_loop();
    }
}
