//! Under the patched QEMU of `cargo xtask qemu` (a null SS keeps CPL), the hypervisor's boot-time CPU fidelity
//! probe passes and a ring-1 guest that loads a null SS still takes #GP at its next privileged instruction.
//! Without that QEMU in the cache each test prints SKIP with the reason and returns (CI does not build it).

use std::path::PathBuf;

use tests::{Scenario, TestResult, expect, run_scenario};
use xtask::qemu_build;

/// The word on the hypervisor's probe lines (WARN when the CPU lets a null SS reach CPL 0, INFO when not).
const PROBE_MARKER: &str = abi::exit::CPU_FIDELITY_MARKER;
/// What the INFO probe line says on a faithful CPU.
const PROBE_PASSED: &str = "passed";
/// The hostile guest: `mov $1,%ecx; mov %ecx,%ss` in ring 1, then a privileged instruction; it reports
/// `Test result: SUCCESS` when that instruction faulted with #GP.
const NULL_SS_SCENARIO: &str = "test=null-ss via=priv";
/// A neighbour domain that must finish normally.
const NEIGHBOUR: &str = "demo";

/// The fixed QEMU, or `None` after printing why the test is skipped.
fn fixed_qemu() -> Option<PathBuf> {
    let found = qemu_build::cached_binary();
    if found.is_none() {
        println!(
            "SKIP: fixed QEMU not built (run cargo xtask qemu; expected {})",
            qemu_build::binary_path_hint()
        );
    }
    found
}

fn under(qemu: PathBuf, domains: &[&str]) -> tests::Outcome {
    let mut scenario = Scenario::new(domains);
    scenario.qemu = Some(qemu);
    run_scenario(&scenario)
}

#[test]
fn the_cpu_fidelity_probe_passes_under_the_fixed_qemu() {
    let Some(qemu) = fixed_qemu() else { return };
    let outcome = under(qemu, &[NEIGHBOUR]);
    expect(&outcome)
        .line("an INFO line saying the cpu-fidelity probe passed", |l| {
            l.starts_with("[hv] INFO") && l.contains(PROBE_MARKER) && l.contains(PROBE_PASSED)
        })
        .poweroff(0)
        .hypervisor_alive_at_end();
    let warned = xtask::runcmd::fidelity_warnings(&outcome.output);
    assert!(
        warned.is_empty(),
        "the probe warned under the fixed QEMU: {warned:?}\n{outcome}"
    );
}

#[test]
fn a_null_ss_does_not_reach_cpl0_under_the_fixed_qemu() {
    let Some(qemu) = fixed_qemu() else { return };
    let outcome = under(qemu, &[NULL_SS_SCENARIO, NEIGHBOUR]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .poweroff(1)
        .hypervisor_alive_at_end();
}
