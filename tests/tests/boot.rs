//! Boot scenarios: the demo guest comes up in ring 1 and every domain powers off cleanly.

use abi::exit::EXIT_OK;
use tests::{Scenario, expect, run, run_scenario};

#[test]
fn one_demo_domain_boots_in_ring_1_and_powers_off() {
    let outcome = run(&["demo"]);
    expect(&outcome)
        .exit(EXIT_OK)
        .no_panic()
        .line("a (d0) banner line containing `ring 1`", |l| {
            l.starts_with("(d0)") && l.contains("ring 1")
        })
        .contains("[hv] INFO  domain 0 shut down: poweroff code 0");
}

#[test]
fn every_domain_passes_the_isolation_audit() {
    // The hypervisor walks each guest's real page tables before running it: nothing of the hypervisor but
    // the read-only entry region and the entry stacks, no foreign frame, no writable page table.
    let outcome = run(&["demo", "test=unknown-hypercall"]);
    for d in 0..2 {
        expect(&outcome).line(&format!("the isolation audit of domain {d}"), |l| {
            l.starts_with(&format!("[hv] INFO  isolation audit: domain {d}: "))
                && l.contains("page tables, read-only")
                && l.contains("entry-region pages (read-only)")
                && l.ends_with("0 violations")
        });
    }
}

#[test]
fn domains_take_turns_when_they_yield() {
    // A yield lets the other domain run first: after domain X's round r (which ends in a yield), if the
    // other domain Y is still alive, the hypervisor switches to Y before X prints round r + 1. (Timer
    // preemption may add more switches; a Y that already powered off cannot be switched to.)
    let mut s = Scenario::new(&["demo", "demo"]);
    s.hv_cmdline = "loglevel=debug".into();
    let outcome = run_scenario(&s);
    expect(&outcome).exit(EXIT_OK);
    let lines: Vec<&str> = outcome.output.lines().collect();
    let find = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix:?} missing:\n{}", outcome.output))
    };
    let mut checked = 0;
    for (me, other) in [(0, 1), (1, 0)] {
        let other_gone = find(&format!("[hv] INFO  domain {other} shut down"));
        for round in 1..3 {
            let a = find(&format!("(d{me}) domain {me}: round {round},"));
            let b = find(&format!("(d{me}) domain {me}: round {},", round + 1));
            if other_gone < b {
                continue;
            }
            checked += 1;
            let switch = format!("[hv] DEBUG switching to domain {other}");
            assert!(
                lines[a..b].iter().any(|l| l.starts_with(&switch)),
                "no switch to domain {other} between rounds {round} and {} of domain {me}:\n{}",
                round + 1,
                outcome.output
            );
        }
    }
    assert!(
        checked > 0,
        "the domains never overlapped:\n{}",
        outcome.output
    );
}
