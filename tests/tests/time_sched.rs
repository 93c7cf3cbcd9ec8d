//! Time and scheduling (issue 4): a 10 ms sleep measured with the pvclock, pvclock monotonicity across
//! hypervisor updates, and three domains (spinning with events masked, blocking on a timer, computing)
//! sharing the CPU by weight.

use abi::exit::EXIT_OK;
use tests::{Outcome, Scenario, TestResult, expect, run, run_scenario};

#[test]
fn a_10ms_sleep_lasts_10ms() {
    let outcome = run(&["test=sleep-10ms"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}

/// The number after `key=` on domain `domid`'s line starting with `prefix`.
fn number(outcome: &Outcome, domid: u32, prefix: &str, key: &str) -> Option<u64> {
    outcome
        .domain_output(domid)
        .into_iter()
        .filter(|l| l.starts_with(prefix))
        .find_map(|l| {
            let rest = &l[l.find(key)? + key.len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
}

#[test]
fn pvclock_is_monotonic_across_updates() {
    // Two domains take turns, so the hypervisor publishes a new pvclock record at every switch.
    let outcome = run(&["test=clock-monotonic", "test=clock-monotonic"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .result(1, TestResult::Success)
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    for d in 0..2 {
        // "clock-monotonic: N reads over T ms; U record updates seen, R retried reads"
        let line = outcome
            .domain_output(d)
            .into_iter()
            .find(|l| l.starts_with("clock-monotonic: "))
            .unwrap_or_else(|| panic!("no clock-monotonic line from domain {d}\n{outcome}"));
        let seen: u64 = line
            .split("; ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("cannot parse {line:?}"));
        println!("domain {d}: {line}");
        assert!(
            seen > 0,
            "domain {d} saw no pvclock update during its reads: {line}\n{outcome}"
        );
    }
}

#[test]
fn three_domains_share_the_cpu_by_weight() {
    let mut scenario =
        Scenario::new(&["test=sched-spin", "test=sched-block", "test=sched-compute"]);
    scenario
        .hv_cmdline
        .push_str(" dom_weight=0:256,1:256,2:512");
    let outcome = run_scenario(&scenario);
    expect(&outcome)
        .result(0, TestResult::Success)
        .result(1, TestResult::Success)
        .result(2, TestResult::Success)
        .poweroff(0)
        .poweroff(1)
        .poweroff(2)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    let spin = number(&outcome, 0, "sched-spin: ", "iterations=").expect("spinner count");
    let wakeups = number(&outcome, 1, "sched-block: ", "wakeups=").expect("blocker count");
    let compute = number(&outcome, 2, "sched-compute: ", "iterations=").expect("computer count");
    assert!(
        spin > 0 && wakeups > 0 && compute > 0,
        "every domain made progress: spin {spin}, block {wakeups}, compute {compute}\n{outcome}"
    );
    // Weights 256 : 512, the spinner's events masked: the CPU must still be shared by weight.
    let ratio = spin as f64 / compute as f64;
    println!("spin {spin}, block {wakeups} wake-ups, compute {compute}: spin/compute {ratio:.3}");
    assert!(
        (0.5 * 0.75..=0.5 * 1.25).contains(&ratio),
        "spin/compute = {spin}/{compute} = {ratio:.3}, expected 0.5 within 25%\n{outcome}"
    );
    // The blocker sleeps 10 ms at a time for 2 s: it must get the CPU back promptly most of the time.
    assert!(
        wakeups >= 50,
        "the blocking domain woke only {wakeups} times in 2 s\n{outcome}"
    );
}

#[test]
fn segment_bases_survive_switches_between_domains() {
    // Two domains set their FS and GS bases (sometimes equal to the other's, sometimes not) and yield to
    // each other: the switch writes only the segment state that differs, and each must read its own.
    let outcome = run(&["test=segments-switch slot=0", "test=segments-switch slot=1"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .result(1, TestResult::Success)
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    for d in 0..2 {
        let line = outcome
            .domain_output(d)
            .into_iter()
            .find(|l| l.starts_with("segments-switch: "))
            .unwrap_or_else(|| panic!("no segments-switch line from domain {d}\n{outcome}"));
        assert!(
            line.contains(" 0 wrong reads") && !line.contains(" 0 bases set"),
            "domain {d}: {line}\n{outcome}"
        );
    }
}
