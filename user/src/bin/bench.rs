//! `bench [ITERATIONS] [FILTER]`: runs the guest kernel's hypercall benchmark suite (default 100
//! iterations per operation); the kernel prints the table.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::{eprintln, num, println, sys};

user::main!(main);

/// Iterations when none are given.
const DEFAULT_ITERATIONS: u64 = 100;

fn main(args: &str) -> i32 {
    let mut words = args.split_ascii_whitespace();
    let iterations = match words.next() {
        None => DEFAULT_ITERATIONS,
        Some(w) => match num::parse_u64(w) {
            Some(n) => n,
            None => {
                eprintln!("usage: bench [ITERATIONS] [FILTER]");
                return 2;
            }
        },
    };
    let filter = words.next().unwrap_or("");
    if words.next().is_some() {
        eprintln!("usage: bench [ITERATIONS] [FILTER]");
        return 2;
    }
    match sys::bench(iterations, filter) {
        Ok(_) => 0,
        Err(e) => {
            println!("bench: {}", e.name());
            1
        }
    }
}
