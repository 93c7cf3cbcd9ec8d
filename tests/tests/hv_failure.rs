//! The failure-report path of the hypervisor itself (`hv_selftest=panic|fault` on its command line): the run
//! ends with `EXIT_HYPERVISOR_PANIC`, a `[hv] PANIC` report and a backtrace that symbolizes to source lines.
//! `hv_selftest=ring0-db` checks the one ring-0 exception that is *not* fatal (a held-back guest #DB).

use abi::exit::EXIT_HYPERVISOR_PANIC;
use tests::{Outcome, Scenario, expect, images, run_scenario};
use xtask::Symbolizer;

fn run_selftest(kind: &str) -> Outcome {
    let mut scenario = Scenario::new(&["demo"]);
    scenario
        .hv_cmdline
        .push_str(&format!(" hv_selftest={kind}"));
    run_scenario(&scenario)
}

/// Some `[hv] bt #<i>` line symbolizes to a location in `file`.
#[track_caller]
fn backtrace_points_into(outcome: &Outcome, file: &str) {
    let symbolizer = Symbolizer::new(images(), &xtask::workspace_root());
    let annotated: Vec<String> = outcome
        .output
        .lines()
        .filter(|l| l.starts_with("[hv] bt #"))
        .map(|l| symbolizer.annotate(l))
        .collect();
    assert!(
        annotated.iter().any(|l| l.contains(file)),
        "no backtrace line symbolizes into {file}:\n{}\n{outcome}",
        annotated.join("\n")
    );
}

#[test]
fn hypervisor_panic_is_reported_with_a_symbolized_backtrace() {
    let outcome = run_selftest("panic");
    let outcome = expect(&outcome)
        .exit(EXIT_HYPERVISOR_PANIC)
        .contains("[hv] PANIC ")
        .contains("[hv] bt #0 0x")
        .outcome();
    assert!(outcome.hypervisor_panicked(), "{outcome}");
    backtrace_points_into(outcome, "hypervisor/src/setup.rs:");
}

#[test]
fn hypervisor_fault_is_reported_as_a_panic() {
    let outcome = run_selftest("fault");
    let outcome = expect(&outcome)
        .exit(EXIT_HYPERVISOR_PANIC)
        .contains("page fault")
        .contains("[hv] bt #0 0x")
        .outcome();
    assert!(outcome.hypervisor_panicked(), "{outcome}");
    backtrace_points_into(outcome, "hypervisor/src/");
}

/// XSA-260: a #DB the CPU delivers in ring 0 (a guest's single-step held back across `mov %ss` lands on the
/// first instruction of an entry stub) is dropped, and the guest-visible IST stack keeps nothing of it.
#[test]
fn ring0_debug_trap_is_dropped_and_scrubbed() {
    let outcome = run_selftest("ring0-db");
    expect(&outcome)
        .exit(abi::exit::EXIT_OK)
        .contains("hv_selftest=ring0-db: a #DB in ring 0 was dropped, its IST frame zeroed")
        .poweroff(0)
        .no_panic();
}
