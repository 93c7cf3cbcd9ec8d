//! `sensitive`: asks the kernel to run the Popek–Goldberg probes — the sensitive but unprivileged x86
//! instructions — in its own ring (0 natively and under hvm, 1 under PV and emulate) and print what each
//! showed, with a verdict (see `guest-kernel/src/sensitive`).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::{println, sys};

user::main!(main);

fn main(_args: &str) -> i32 {
    match sys::sensitive() {
        Ok(0) => 0,
        Ok(code) => code as i32,
        Err(e) => {
            println!("sensitive: {}", e.name());
            1
        }
    }
}
