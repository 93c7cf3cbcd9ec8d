//! Boot scenarios: the demo guest comes up in ring 1 and every domain powers off cleanly.

use abi::exit::EXIT_OK;
use tests::{expect, run};

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
    // A yield lets the other domain run first: between two consecutive rounds of one domain, the other
    // domain prints something. (Timer preemption may interleave them further; that is fine.)
    let outcome = run(&["demo", "demo"]);
    expect(&outcome).exit(EXIT_OK);
    for (me, other) in [(0, 1), (1, 0)] {
        for round in 1..3 {
            let from = format!("(d{me}) domain {me}: round {round},");
            let to = format!("(d{me}) domain {me}: round {},", round + 1);
            let lines: Vec<&str> = outcome.output.lines().collect();
            let a = lines
                .iter()
                .position(|l| l.starts_with(&from))
                .unwrap_or_else(|| panic!("{from} missing"));
            let b = lines
                .iter()
                .position(|l| l.starts_with(&to))
                .unwrap_or_else(|| panic!("{to} missing"));
            assert!(
                lines[a..b]
                    .iter()
                    .any(|l| l.starts_with(&format!("(d{other})"))),
                "domain {other} did not run between rounds {round} and {} of domain {me}:\n{}",
                round + 1,
                outcome.output
            );
        }
    }
}
