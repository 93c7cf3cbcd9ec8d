//! `cargo xtask fuzz`: boot the hypercall fuzzer (`test=fuzz`) as domain 0 next to a neighbour domain, one
//! QEMU boot per seed (seed, seed+1, ...), until a call count or a time budget is spent; check each run for
//! hypervisor faults and report the totals.
//!
//! A run is **bad** (exit status 1) if the hypervisor panicked or exited with anything but a domain's
//! verdict, QEMU hung (killed at the timeout) or reset, the integrity line is missing or says CHANGED, a
//! domain's teardown check (frame-table recount and isolation audit) failed or is missing, or the neighbour
//! did not power off with code 0. A crash of the fuzzer's own domain is not bad (with `--wild` it is
//! expected); it is counted and the next seed runs. Nor is a timeout after such a crash when a domain the
//! fuzzer created was left running (a `test=idle-forever` domain never ends; the other domains keep running,
//! as they must) and domain 0 was torn down cleanly: that run is reported as stopped at the timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;

use crate::images::{Profile, build_images};
use crate::qemu::{Exit, ensure_qemu};
use crate::scenario::{Outcome, Scenario, run_scenario};

/// The arguments of `cargo xtask fuzz`.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct FuzzArgs {
    /// Fuzz for about this many seconds (whole runs; the last one is cut to fit).
    #[arg(long, value_name = "N", conflicts_with = "count")]
    pub seconds: Option<u64>,
    /// Make this many fuzzer calls in all [default: 100000 when --seconds is not given].
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// The first seed; run k uses seed + k.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Calls per boot.
    #[arg(long, value_name = "N", default_value_t = 200_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub per_run: u64,
    /// Calls per million aimed at the fuzzer's real page tables (may crash its domain).
    #[arg(long, value_name = "PPM", default_value_t = 0)]
    pub wild: u64,
    /// Build and boot the debug profile: the hypervisor's reference-count assertions are on.
    #[arg(long)]
    pub debug: bool,
    /// The neighbour domain's command line.
    #[arg(long, value_name = "CMDLINE", default_value = "test=ticker")]
    pub neighbour: String,
}

/// What one boot showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Fuzzer calls made (its closing count, or its last progress line if it was crashed).
    pub calls: u64,
    /// Calls per family name, from the closing statistics.
    pub families: BTreeMap<String, u64>,
    /// The fuzzer's domain was crashed by the hypervisor (reason).
    pub crashed: Option<String>,
    /// The fuzzer printed `Test result: SUCCESS`.
    pub survived: bool,
    /// Anomaly lines the fuzzer printed.
    pub anomalies: Vec<String>,
    /// Hypervisor-level failures (panic, hang, integrity, teardown check, neighbour): empty if healthy.
    pub faults: Vec<String>,
    /// The fuzzer was crashed and domains it had created ran on (a `test=idle-forever` domain never
    /// ends), so the machine was stopped at the timeout: not a hang (the other domains keep running, as
    /// they must); their ids.
    pub outlived: Vec<u32>,
}

/// The domains the control domain created that were still there at the end of `o` (created, and not
/// destroyed, shut down or crashed since).
fn created_and_left(o: &Outcome) -> Vec<u32> {
    let mut left = std::collections::BTreeSet::new();
    for l in o.hypervisor_lines() {
        let Some(rest) = l.split_once("domain ").map(|(_, r)| r) else {
            continue;
        };
        let Some(id) = number_after(rest, "") else {
            continue;
        };
        let what = &rest[id.to_string().len()..];
        if what.starts_with(" created by the control domain") {
            left.insert(id as u32);
        } else if what.starts_with(" destroyed")
            || what.starts_with(" shut down")
            || what.starts_with(" crashed")
        {
            left.remove(&(id as u32));
        }
    }
    left.into_iter().collect()
}

/// The number after `prefix` at the start of `s` (digits only).
fn number_after(s: &str, prefix: &str) -> Option<u64> {
    let rest = s.strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Read a run's output: the fuzzer's counts and every sign of a hypervisor fault.
pub fn analyze(o: &Outcome, domains: usize) -> RunReport {
    let mut r = RunReport::default();
    for line in o.output.lines() {
        let Some(msg) = line.strip_prefix("(d0) fuzz: ") else {
            continue;
        };
        if let Some(a) = msg.strip_prefix("ANOMALY: ") {
            r.anomalies.push(a.to_string());
        } else if let Some(n) = number_after(msg, "") {
            // "N calls" (progress) or "N hypercalls (...)" (closing).
            if msg.contains(" calls") && !msg.contains(':') || msg.contains(" hypercalls (") {
                r.calls = r.calls.max(n);
            }
        } else if let Some((name, rest)) = msg.split_once(" (")
            && let Some((_, rest)) = rest.split_once("): ")
            && let Some(n) = number_after(rest, "")
            && rest[n.to_string().len()..].starts_with(" calls:")
        {
            *r.families.entry(name.to_string()).or_default() += n;
        }
    }
    r.survived = o
        .result_lines()
        .iter()
        .any(|(d, res, _)| *d == 0 && *res == crate::serial::TestResult::Success);
    r.crashed = o
        .crashed_domains()
        .into_iter()
        .find(|(d, _)| *d == 0)
        .map(|(_, why)| why);
    if o.hypervisor_panicked() {
        r.faults.push("hypervisor PANIC".into());
    }
    match o.exit {
        Exit::Hypervisor(v) if v <= abi::exit::EXIT_DOMAIN_CRASHED => {}
        Exit::Timeout => {
            // After the fuzzer's crash (torn down cleanly: checked below) a domain it created may run
            // on forever; that is the rule working, not a hang.
            let left = created_and_left(o);
            let torn_down =
                o.contains_line("teardown check: domain 0: frame-table recount matches");
            if r.crashed.is_some() && torn_down && !left.is_empty() {
                r.outlived = left;
            } else {
                r.faults.push("hang: killed at the timeout".into());
            }
        }
        e => r.faults.push(format!("hypervisor exit: {e}")),
    }
    let reached_power_off = o.contains_line("all domains finished");
    if reached_power_off && !o.contains_line("integrity: hypervisor text and rodata unchanged") {
        r.faults
            .push("integrity: hypervisor text, rodata or canary CHANGED".into());
    }
    for d in 0..domains {
        let ok = format!("teardown check: domain {d}: frame-table recount matches");
        if o.contains_line(&format!("teardown check: domain {d}: ")) && !o.contains_line(&ok) {
            r.faults.push(format!(
                "domain {d}: teardown check failed (recount or audit)"
            ));
        } else if reached_power_off && !o.contains_line(&ok) {
            r.faults.push(format!("domain {d}: no teardown check line"));
        }
    }
    for l in o.hypervisor_lines() {
        if l.contains("MISMATCH") || l.contains("VIOLATION") {
            r.faults.push(l.to_string());
        }
    }
    if domains > 1
        && !o
            .shutdowns()
            .iter()
            .any(|(d, reason, code)| *d == 1 && reason == "poweroff" && *code == 0)
    {
        r.faults
            .push("the neighbour (domain 1) did not power off with code 0".into());
    }
    r
}

/// The scenario of one run.
pub fn scenario(args: &FuzzArgs, seed: u64, count: u64) -> Scenario {
    let mut s = Scenario::new(&[
        format!("test=fuzz seed={seed} count={count} wild={}", args.wild),
        args.neighbour.clone(),
    ]);
    // The guest kernel kept as image `guest`: the fuzzer's domctls create, save and restore domains of it.
    s.images = vec![crate::shell::XL_IMAGE.to_string()];
    // TCG makes at least a few thousand calls per second; leave ample room before calling it a hang.
    let per_sec = if args.debug { 300 } else { 1500 };
    s.timeout = Duration::from_secs(60 + count / per_sec);
    s
}

/// `cargo xtask fuzz`.
pub fn run(args: &FuzzArgs) -> Result<u8, String> {
    ensure_qemu()?;
    let images = build_images(Profile::from_debug_flag(args.debug))?;
    let start = Instant::now();
    let budget = args
        .seconds
        .map(Duration::from_secs)
        .filter(|_| args.count.is_none());
    let target = args
        .count
        .unwrap_or(if budget.is_some() { u64::MAX } else { 100_000 });
    let (mut total, mut attempted, mut runs, mut crashed, mut bad) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut families: BTreeMap<String, u64> = BTreeMap::new();
    let mut anomalies: BTreeMap<String, u64> = BTreeMap::new();
    let mut seed = args.seed;
    println!(
        "fuzz: {} hypervisor, {} calls per boot, wild {} per million, neighbour `{}`",
        if args.debug { "debug" } else { "release" },
        args.per_run,
        args.wild,
        args.neighbour
    );
    while attempted < target && budget.is_none_or(|b| start.elapsed() < b) {
        let count = args.per_run.min(target - attempted);
        let s = scenario(args, seed, count);
        let t0 = Instant::now();
        let o = run_scenario(&images, &s)?;
        let rep = analyze(&o, 2);
        runs += 1;
        total += rep.calls;
        // A run that made no progress still uses up its share (so a broken build cannot loop forever).
        attempted += count;
        for (k, v) in &rep.families {
            *families.entry(k.clone()).or_default() += v;
        }
        for a in &rep.anomalies {
            *anomalies.entry(a.clone()).or_default() += 1;
        }
        let status = if !rep.faults.is_empty() {
            bad += 1;
            "HYPERVISOR FAULT"
        } else if let Some(why) = &rep.crashed {
            crashed += 1;
            println!("fuzz:   seed {seed}: fuzzer domain crashed: {why}");
            if !rep.outlived.is_empty() {
                println!(
                    "fuzz:   seed {seed}: domains it created ran on ({:?}): stopped at the timeout",
                    rep.outlived
                );
            }
            "domain crashed"
        } else if rep.survived {
            "ok"
        } else {
            "no result line"
        };
        println!(
            "fuzz: seed {seed}: {} calls in {:.1} s, {} anomalies: {status}",
            rep.calls,
            t0.elapsed().as_secs_f64(),
            rep.anomalies.len()
        );
        if !rep.faults.is_empty() {
            for f in &rep.faults {
                println!("fuzz:   seed {seed}: {f}");
            }
            println!(
                "fuzz:   reproduce: cargo xtask run {}-- test=fuzz seed={seed} count={count} wild={} (and `{}` as domain 1)",
                if args.debug { "--debug " } else { "" },
                args.wild,
                args.neighbour
            );
        }
        if status != "ok" {
            let log = std::env::temp_dir().join(format!("ring1pv-fuzz-seed{seed}.log"));
            if std::fs::write(&log, o.to_string()).is_ok() {
                println!("fuzz:   whole run: {}", log.display());
            }
        }
        seed += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("fuzz: calls per family:");
    for (name, n) in &families {
        println!("fuzz:   {name:<26} {n}");
    }
    for (a, n) in &anomalies {
        println!("fuzz: anomaly ({n} times): {a}");
    }
    println!(
        "fuzz: {total} calls in {runs} runs ({secs:.0} s, {:.0} calls/s), seeds {}..{}, {crashed} fuzzer domains crashed, {bad} runs with hypervisor faults",
        total as f64 / secs.max(1e-9),
        args.seed,
        seed.saturating_sub(1)
    );
    Ok(u8::from(bad > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
(d0) fuzz: seed 1 count 10 wild 0 per million
(d1) tick 1
(d0) fuzz: 20000 calls
(d0) fuzz: ANOMALY: shared_info frame 0x1234 pinned as an L1 table
(d0) fuzz: mmu_update (1): 120 calls: 0x3 EINVALx117
(d0) fuzz: (beyond the table) (64): 4 calls: ENOSYSx4
(d0) fuzz: 25000 hypercalls (20 families) in 1000 ms (25000 per second), 5 housekeeping calls
(d0) Test result: SUCCESS
[hv] INFO  teardown check: domain 1: frame-table recount matches (1 frames, 0 page tables, 0 pins, 0 references); isolation audit: 0 violations
[hv] INFO  domain 1 shut down: poweroff code 0
[hv] INFO  teardown check: domain 0: frame-table recount matches (1 frames, 0 page tables, 0 pins, 0 references); isolation audit: 0 violations
[hv] INFO  domain 0 shut down: poweroff code 0
[hv] INFO  integrity: hypervisor text and rodata unchanged
[hv] INFO  all domains finished: exit status 0
";

    #[test]
    fn a_healthy_run() {
        let r = analyze(&Outcome::from_output(GOOD, Exit::Hypervisor(0)), 2);
        assert_eq!(r.calls, 25000);
        assert_eq!(r.families.get("mmu_update"), Some(&120));
        assert_eq!(r.families.get("(beyond the table)"), Some(&4));
        assert!(r.survived && r.crashed.is_none());
        assert_eq!(r.anomalies.len(), 1);
        assert!(r.faults.is_empty(), "{:?}", r.faults);
    }

    #[test]
    fn faults_are_found() {
        let bad = GOOD
            .replace("integrity: hypervisor text and rodata unchanged", "integrity: CHANGED")
            .replace(
                "teardown check: domain 0: frame-table recount matches (1 frames, 0 page tables, 0 pins, 0 references); isolation audit: 0 violations",
                "teardown check: domain 0: frame-table recount MISMATCH: x",
            )
            .replace("domain 1 shut down: poweroff code 0", "domain 1 shut down: crash code 0");
        let r = analyze(&Outcome::from_output(&bad, Exit::Hypervisor(0)), 2);
        assert_eq!(r.faults.len(), 4, "{:?}", r.faults);
        let hung = analyze(
            &Outcome::from_output("(d0) fuzz: 20000 calls\n", Exit::Timeout),
            2,
        );
        assert_eq!(hung.calls, 20000);
        assert!(hung.faults.iter().any(|f| f.starts_with("hang")));
        let panicked = analyze(&Outcome::from_output(GOOD, Exit::Hypervisor(0x3d)), 2);
        assert!(panicked.faults.iter().any(|f| f.contains("exit")));
    }

    /// The fuzzer crashed after creating a domain that never ends: the timeout is not a hang then, but
    /// it still is when nothing it created is left, or when domain 0 was not torn down.
    #[test]
    fn domains_outliving_a_crashed_fuzzer_are_not_a_hang() {
        let run = "\
(d0) fuzz: 20000 calls
[hv] INFO  domain 3 created by the control domain from image 'guest'
[hv] INFO  domain 4 created by the control domain from image 'guest', paused
[hv] INFO  domain 4 destroyed by the control domain
[hv] INFO  domain 1 shut down: poweroff code 0
[hv] ERROR domain 0 crashed: fault while delivering page fault: unusable guest stack 0x1000
[hv] INFO  teardown check: domain 0: frame-table recount matches (1 frames, 0 page tables, 0 pins, 0 references); isolation audit: 0 violations
";
        let r = analyze(&Outcome::from_output(run, Exit::Timeout), 2);
        assert!(r.crashed.is_some());
        assert_eq!(r.outlived, [3]);
        assert!(r.faults.is_empty(), "{:?}", r.faults);
        let gone = run.replace("domain 3 created", "domain 4 created");
        let r = analyze(&Outcome::from_output(&gone, Exit::Timeout), 2);
        assert!(
            r.faults.iter().any(|f| f.starts_with("hang")),
            "{:?}",
            r.faults
        );
        let no_teardown = run.replace("teardown check: domain 0", "nothing");
        let r = analyze(&Outcome::from_output(&no_teardown, Exit::Timeout), 2);
        assert!(
            r.faults.iter().any(|f| f.starts_with("hang")),
            "{:?}",
            r.faults
        );
    }

    #[test]
    fn scenarios_carry_the_seed() {
        let a = FuzzArgs {
            seconds: None,
            count: Some(10),
            seed: 7,
            per_run: 5,
            wild: 3,
            debug: false,
            neighbour: "test=ticker".into(),
        };
        let s = scenario(&a, 9, 5);
        assert_eq!(
            s.domains,
            ["test=fuzz seed=9 count=5 wild=3", "test=ticker"]
        );
    }
}
