//! `bench-partner`: the second domain of `evtchn_pingpong_interdomain` and `yield_domain_switch`. It
//! boots during the measuring domain's first yield, finds the port domain 0 offered it (the convention
//! of `scenarios/events.rs`: the first port of domain 0 that `bind_interdomain` accepts), says hello and
//! echoes every ping (`bench::traps_events::partner_pingpong`, blocked in `SCHEDOP_poll` between pings).
//! Then, for `yield_domain_switch`, it yields a bounded number of times ([`Options::partner_yields`]:
//! twice the measuring domain's warm-up and measured yields, plus slack), so each yield of the measuring
//! domain switches to this domain and straight back, then powers off. While the measuring domain runs
//! its other operations it never yields or blocks, so this domain waits (or spends a yield on a
//! preemption).

use abi::hypercall::nr;
use abi::sched::SCHEDOP_YIELD;

use super::Options;
use super::runner::errno_name;
use crate::platform::xen_pv::raw;
use crate::println;

/// The ping-pong's echo (if selected), then yield `opts.partner_yields()` times; returns the exit code.
pub fn run(opts: &Options<'_>) -> u32 {
    let code = if opts.selected(super::traps_events::PINGPONG) {
        super::traps_events::partner_pingpong(opts)
    } else {
        0
    };
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
    code
}
