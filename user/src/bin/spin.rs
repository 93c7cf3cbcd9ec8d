//! `spin [SECONDS]`: a busy loop that never blocks, to show preemption: about once a second it prints how
//! many iterations it has done and how often the timer took the CPU away from it (its own `ps` record).
//! Without an argument it runs until Ctrl-C ends it.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::hint::black_box;

use user::{eprintln, num, println, sys};

user::main!(main);

/// Iterations between two looks at the clock.
const CHECK_EVERY: u64 = 1 << 16;
/// Nanoseconds between two reports.
const REPORT_NS: u64 = 1_000_000_000;

fn main(args: &str) -> i32 {
    let Some(run_ns) = num::optional_arg(args, num::parse_duration_ns) else {
        return usage();
    };
    let pid = sys::getpid();
    let Ok(start) = sys::uptime() else {
        eprintln!("spin: no clock");
        return 1;
    };
    let mut next_report = start + REPORT_NS;
    let mut iterations: u64 = 0;
    loop {
        for _ in 0..CHECK_EVERY {
            iterations = black_box(iterations) + 1;
        }
        let now = sys::uptime().unwrap_or(start);
        if now >= next_report {
            let preempted = sys::proc_info(pid).map_or(0, |p| p.preemptions);
            println!(
                "spin: pid {pid}, {} million iterations, preempted {preempted} times",
                iterations / 1_000_000
            );
            // One report per second even after a long stretch without the CPU.
            while next_report <= now {
                next_report += REPORT_NS;
            }
        }
        if run_ns.is_some_and(|ns| now.saturating_sub(start) >= ns) {
            return 0;
        }
    }
}

fn usage() -> i32 {
    eprintln!("usage: spin [SECONDS]");
    2
}
