//! What turns a Rust function into a program: [`start`] (called by the entry assembly) hands the argument
//! string to the program's `main` and exits with its result; the [`main!`](crate::main) macro names that
//! `main`; the panic handler prints the panic and exits with status 101.

use crate::sys;

/// Exit status of a program that panicked.
pub const PANIC_STATUS: i32 = 101;

// SAFETY: the only definition of `__user_main` is the one `main!` generates in each program, with exactly
// this signature; a program without `main!` fails to link instead of calling something else.
unsafe extern "Rust" {
    safe fn __user_main(args: &str) -> i32;
}

/// Run the program: build its argument string from the registers the kernel set, call its `main`, and
/// exit with the status `main` returns.
///
/// # Safety
/// Called once, from `_start`, with `args`/`len` as the kernel set them: `len` readable bytes at `args`
/// (or `len == 0`) that stay untouched for the life of the process (they sit above the initial stack).
pub unsafe extern "C" fn start(args: *const u8, len: usize) -> ! {
    let bytes: &[u8] = if args.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the kernel copied `len` bytes (at most MAX_ARGS) to `args` and never reuses them; the
        // clamp only guards against a kernel that broke that promise.
        unsafe { core::slice::from_raw_parts(args, len.min(uapi::MAX_ARGS)) }
    };
    // Keep the longest valid UTF-8 prefix: the shell only ever passes text.
    let text = match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    };
    sys::exit(__user_main(text))
}

/// Declares a program's entry point: `user::main!(main);` with `fn main(args: &str) -> i32`, where `args`
/// is the rest of the shell's command line after the program name and the result is the exit status.
#[macro_export]
macro_rules! main {
    ($main:path) => {
        /// The program's `main`, called by the runtime's `start`.
        // SAFETY: the runtime declares `__user_main` with exactly this signature; one program, one
        // definition.
        #[unsafe(no_mangle)]
        pub fn __user_main(args: &str) -> i32 {
            let main: fn(&str) -> i32 = $main;
            main(args)
        }

        /// A reference to the runtime's entry point, so the linker pulls it out of the library.
        #[used]
        static __USER_ENTRY: unsafe extern "C" fn() -> ! = $crate::arch::x86_64::entry::_start;
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(l) => crate::eprintln!("panic at {}:{}: {}", l.file(), l.line(), info.message()),
        None => crate::eprintln!("panic: {}", info.message()),
    }
    sys::exit(PANIC_STATUS)
}
