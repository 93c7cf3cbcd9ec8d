//! `sleep SECONDS`: blocks for SECONDS (decimals allowed, e.g. `0.5`; or milliseconds with `ms`).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::{eprintln, num, sys};

user::main!(main);

fn main(args: &str) -> i32 {
    let mut words = args.split_ascii_whitespace();
    let (Some(ns), None) = (words.next().and_then(num::parse_duration_ns), words.next()) else {
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
