//! The hypercall fuzzer's fixed-seed pass: `test=fuzz` makes about 10^5 hypercalls (random ones over every
//! family and unknown numbers, plus the structured sequences) next to a ticker domain. The hypervisor must
//! not panic, every domain's teardown check (frame-table recount and isolation audit) must pass, the
//! neighbour must power off normally and the hypervisor's text and rodata must be unchanged. Anomalies the
//! fuzzer reports (a refusal that did not come) are printed by the run but decided by the hostile scenarios
//! that own them, not here. Longer runs: `cargo xtask fuzz`.

use abi::exit::EXIT_OK;
use tests::{INTEGRITY_LINE, Scenario, TestResult, expect, run_scenario};

/// The seed and step count of the pass (about 1.3 calls per step: multicall entries count too).
const SEED: u64 = 20261202;
const STEPS: u64 = 80_000;

#[test]
fn fixed_seed_pass_leaves_the_hypervisor_sound() {
    let s = Scenario::new(&[
        format!("test=fuzz seed={SEED} count={STEPS}").as_str(),
        "test=ticker",
    ]);
    let outcome = run_scenario(&s);
    let o = expect(&outcome)
        .result(0, TestResult::Success)
        .result(1, TestResult::Success)
        .poweroff(0)
        .poweroff(1)
        .contains(&format!("(d0) fuzz: survived seed {SEED}"))
        .contains("teardown check: domain 0: frame-table recount matches")
        .contains("teardown check: domain 1: frame-table recount matches")
        .contains(INTEGRITY_LINE)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end()
        .outcome();
    let calls = o
        .output
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("(d0) fuzz: ")?;
            let (n, tail) = rest.split_once(' ')?;
            tail.starts_with("hypercalls (")
                .then(|| n.parse::<u64>().ok())?
        })
        .expect("the fuzzer's closing line");
    let families = o
        .output
        .lines()
        .filter(|l| l.starts_with("(d0) fuzz: ") && l.contains(" calls: "))
        .count();
    println!(
        "{calls} hypercalls over {families} families in {:?}",
        o.elapsed
    );
    assert!(calls >= 100_000, "only {calls} hypercalls");
    // Every implemented family plus unknown numbers.
    assert!(families >= 30, "only {families} families called");
    assert!(
        !o.output.contains("MISMATCH") && !o.output.contains("VIOLATION"),
        "a teardown check failed"
    );
}
