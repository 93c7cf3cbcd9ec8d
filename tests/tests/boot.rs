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
    // Round-robin: domain 1 prints its first round before domain 0 prints its second.
    let outcome = run(&["demo", "demo"]);
    let pos = |needle: &str| {
        outcome
            .output
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{}", outcome.output))
    };
    assert!(pos("(d1) domain 1: round 1") < pos("(d0) domain 0: round 2"));
    assert!(pos("(d0) domain 0: round 2") < pos("(d1) domain 1: round 2"));
}

#[test]
fn two_demo_domains_both_power_off() {
    let outcome = run(&["demo", "demo"]);
    expect(&outcome)
        .exit(EXIT_OK)
        .no_panic()
        .poweroff(0)
        .poweroff(1)
        .line("a (d1) line", |l| l.starts_with("(d1)"));
}
