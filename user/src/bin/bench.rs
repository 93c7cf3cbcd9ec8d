//! `bench [ITERATIONS] [FILTER]`: runs the guest kernel's hypercall benchmark suite (default 100
//! iterations per operation), one operation per system call so that Ctrl-C stops it between two; names
//! the operations it skips and why. The kernel prints each result line (`unit=ticks/op`).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::benchcmd::{self, List, SKIP_REASON};
use user::{eprintln, println, sys};

user::main!(main);

fn main(args: &str) -> i32 {
    let req = match benchcmd::parse(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let mut skipped = [""; uapi::BENCH_PARTNER_OPERATIONS.len()];
    let mut n = 0;
    for s in req.skipped() {
        skipped[n] = s;
        n += 1;
    }
    if n > 0 {
        println!("bench: skipping {}: {SKIP_REASON}", List(&skipped[..n]));
    }
    println!(
        "bench: {} iterations per operation; each line: TSC ticks per operation (executed instructions \
         under icount), timer overhead subtracted; Ctrl-C stops between operations",
        req.iterations
    );
    let mut failed = 0;
    for op in req.runnable() {
        match sys::bench(req.iterations, op, uapi::BENCH_QUIET) {
            Ok(0) => {}
            Ok(_) => failed += 1,
            Err(e) => {
                println!("bench: {op}: {}", e.name());
                failed += 1;
            }
        }
    }
    i32::from(failed > 0)
}
