//! PV memory management: the guest's memory manager (physmap, page allocator, address spaces, batched
//! updates, reservations) against the hypervisor's validation: what must work, what must be refused with
//! which errno, and that a very long batch neither fails nor starves another domain.

use abi::exit::EXIT_OK;
use tests::{Scenario, TestResult, expect, run, run_scenario};

/// Boots `test=NAME` alone and expects SUCCESS and a clean power-off.
#[track_caller]
fn succeeds_alone(name: &str) {
    let outcome = run(&[&format!("test={name}")]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}

#[test]
fn memory_manager_comes_up_at_boot() {
    let outcome = run(&["demo"]);
    expect(&outcome)
        .line("the (d0) mm: physmap line", |l| {
            l.starts_with("(d0) mm: physmap of 4096 pages at 0xffff888000000000")
        })
        .poweroff(0)
        .exit(EXIT_OK);
}

#[test]
fn as_churn_leaks_nothing() {
    succeeds_alone("as-churn");
}

#[test]
fn pt_writable_is_refused() {
    succeeds_alone("pt-writable");
}

#[test]
fn map_foreign_is_refused() {
    // A second domain owns frames the first can find through the M2P.
    let outcome = run(&["test=map-foreign", "demo"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .contains("(d0)   ok   mmu_update: read-only mapping of another domain's frame: EPERM")
        .contains(
            "(d0)   ok   update_va_mapping: writable mapping of the hypervisor's image: EPERM",
        )
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}

#[test]
fn l1_selfref_is_refused() {
    succeeds_alone("l1-selfref");
}

#[test]
fn pin_writable_is_refused() {
    succeeds_alone("pin-writable");
}

#[test]
fn baseptr_bad_is_refused() {
    // Next to a second domain, so the foreign-frame case runs too.
    let outcome = run(&["test=baseptr-bad", "demo"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .line("a foreign NEW_BASEPTR refused", |l| {
            l.starts_with("(d0)   ok   NEW_BASEPTR to another domain's frame")
                && l.ends_with("EPERM")
        })
        .poweroff(1)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}

#[test]
fn batch_bad_middle_stops_at_the_bad_entry() {
    succeeds_alone("batch-bad-middle");
}

#[test]
fn multicall_mix_leaves_no_stale_translation() {
    succeeds_alone("multicall-mix");
}

#[test]
fn reservation_round_trips() {
    succeeds_alone("reservation");
}

#[test]
fn million_batch_completes_while_another_domain_runs() {
    let mut s = Scenario::new(&["test=million-batch", "test=ticker"]);
    s.hv_cmdline = format!("{} dom_mem=64M", s.hv_cmdline);
    let outcome = run_scenario(&s);
    expect(&outcome)
        .result(0, TestResult::Success)
        .result(1, TestResult::Success)
        .contains("(d0)   ok   done == 1,000,000")
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    let lines: Vec<&str> = outcome.output.lines().collect();
    let pos = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{}", outcome.output))
    };
    let start = pos("(d0) million-batch: start");
    let done = pos("(d0) million-batch: done");
    let ticks = lines[start..done]
        .iter()
        .filter(|l| l.starts_with("(d1) tick "))
        .count();
    println!("domain 1 printed {ticks} ticks during domain 0's batch");
    assert!(
        ticks > 0,
        "domain 1 printed no tick while domain 0's batch ran (lines {start}..{done}):\n{}",
        outcome.output
    );
}
