//! `exitcode N`: exits with status N (0..255) and prints nothing; `spawnloop` and the tests use it to
//! check that statuses travel from `exit` to the parent's `wait`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::{eprintln, num};

user::main!(main);

fn main(args: &str) -> i32 {
    let mut words = args.split_ascii_whitespace();
    match (words.next().and_then(num::parse_status), words.next()) {
        (Some(code), None) => code as i32,
        _ => {
            eprintln!("usage: exitcode N (0..255)");
            2
        }
    }
}
