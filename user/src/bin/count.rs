//! `count [MS]`: print `count N` every MS milliseconds (default 100), N from 1 on, forever (Ctrl-C ends
//! it): a workload whose output shows a gap or a repeat at once (live migration).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::{eprintln, println, sys};

user::main!(main);

fn main(args: &str) -> i32 {
    let ms = match args.trim() {
        "" => 100,
        a => match a.parse::<u64>() {
            Ok(ms) if ms > 0 => ms,
            _ => {
                eprintln!("usage: count [MS]");
                return 2;
            }
        },
    };
    let mut n = 0u64;
    loop {
        n += 1;
        println!("count {n}");
        if let Err(e) = sys::sleep_ns(ms * 1_000_000) {
            eprintln!("count: {e}");
            return 1;
        }
    }
}
