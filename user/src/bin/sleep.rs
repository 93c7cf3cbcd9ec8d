//! `sleep SECONDS`: blocks for SECONDS (decimals allowed, e.g. `0.5`; or milliseconds with `ms`).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::{eprintln, num, sys};

user::main!(main);

fn main(args: &str) -> i32 {
    let Some(ns) = num::single_arg(args, num::parse_duration_ns) else {
        eprintln!("usage: sleep SECONDS");
        return 2;
    };
    match sys::sleep_ns(ns) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("sleep: {e}");
            1
        }
    }
}
