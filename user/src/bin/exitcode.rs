//! `exitcode N`: exits with status N (0..255) and prints nothing; `spawnloop` and the tests use it to
//! check that statuses travel from `exit` to the parent's `wait`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::{eprintln, num};

user::main!(main);

fn main(args: &str) -> i32 {
    match num::single_arg(args, num::parse_status) {
        Some(code) => code as i32,
        None => {
            eprintln!("usage: exitcode N (0..255)");
            2
        }
    }
}
