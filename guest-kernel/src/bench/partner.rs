//! `bench-partner`: the second domain of `yield_domain_switch`. It yields a bounded number of times
//! ([`Options::partner_yields`]: twice the measuring domain's warm-up and measured yields, plus slack), so
//! each yield of the measuring domain switches to this domain and straight back, then powers off.
//!
//! It first runs when the measuring domain yields for the first time (its boot happens during a warm-up
//! yield); while the measuring domain runs its other operations it never yields, so this domain waits.

use abi::hypercall::nr;
use abi::sched::SCHEDOP_YIELD;

use super::Options;
use super::runner::errno_name;
use crate::platform::xen_pv::raw;
use crate::println;

/// Yield `opts.partner_yields()` times; returns the exit code.
pub fn run(opts: &Options<'_>) -> u32 {
    let n = opts.partner_yields();
    println!("bench-partner: yielding {n} times");
    for i in 0..n {
        let r = raw(nr::SCHED_OP, [SCHEDOP_YIELD, 0, 0, 0, 0]);
        if r < 0 {
            println!("bench-partner: yield {i} returned {}", errno_name(r));
            return 1;
        }
    }
    println!("bench-partner: done");
    0
}
