//! `cargo xtask bench` as a scenario: the benchmark in icount mode with 20 iterations, booted twice at the
//! same time. Every operation that exists today must report, with positive and bounded numbers, and the two
//! runs must agree on every field (under `-icount shift=0,sleep=off` the TSC counts instructions, so the
//! whole run is deterministic: timer events, the interdomain ping-pong's domain switches and the ring-3
//! system calls land at the same instruction counts every time).

use abi::exit::EXIT_OK;
use tests::{expect, run_scenario};
use xtask::bench::{self, Collected, Mode};
use xtask::qemu::Accel;

/// Iterations per operation: few, so the scenario stays well under 30 s.
const ITERATIONS: u32 = 20;

fn run_icount() -> Collected {
    let scenario = bench::scenario(Mode::Icount, ITERATIONS, None, Accel::Tcg);
    let outcome = run_scenario(&scenario);
    expect(&outcome)
        .contains("(d0) BENCH done")
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    let collected = bench::collect(&outcome.output, Mode::Icount, None);
    assert!(
        collected.errors.is_empty(),
        "operations failed: {:?}\n{outcome}",
        collected.errors
    );
    collected
}

#[test]
fn icount_bench_reports_every_operation_identically_twice() {
    tests::images();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(run_icount);
        let b = s.spawn(run_icount);
        (a.join().expect("first run"), b.join().expect("second run"))
    });
    for name in bench::available_operations() {
        let found = a.records.iter().filter(|r| r.name == name).count();
        assert_eq!(found, 1, "{name} reported {found} times: {:?}", a.records);
    }
    assert_eq!(a.records.len(), bench::available_operations().count());
    assert_eq!(
        a.records.len(),
        bench::OPERATIONS.len(),
        "every operation of issue 6 is measured (events, timer, page fault and ring-3 system calls included)"
    );
    for r in &a.records {
        let s = r.stats;
        assert!(
            s.min > 0 && s.min <= s.median && s.median <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max,
            "{}: not positive and ordered: {s:?}",
            r.name
        );
        assert!(s.max < 100_000_000, "{}: implausible maximum {s:?}", r.name);
        assert_eq!(r.iterations, u64::from(ITERATIONS), "{}", r.name);
    }
    assert_eq!(
        a.records, b.records,
        "two icount runs of the same images must agree on every field"
    );
}
