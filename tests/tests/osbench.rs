//! `osbench` (issue 11) under PV (and natively, once): every workload prints a sane `BENCH` line with the hypervisor's counts
//! beside it, and the mechanisms it leans on — `notify`/`await_notify`, the ring-3 fault handler, the
//! `hvcounters` call — answer hostile arguments with errors, never with a crash. Also the shell's rough
//! edges the same issue lists (Ctrl-D during a program, orphans reported as jobs, errors in words, `bench`).

use std::time::Duration;

use abi::exit::EXIT_OK;
use tests::{Outcome, Scenario, expect, run_scenario};
use xtask::compare::{Row, parse_row};
use xtask::scenario::DEFAULT_HV_CMDLINE;
use xtask::serial::{Line, parse_line};
use xtask::shell::{CTRL_C, CTRL_D, DOM0_CONSOLE_DIRECT, PING_SERVER, SHELL, Session};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);

fn boot(domains: &[&str], session: Session) -> Outcome {
    let mut s = Scenario::new(domains);
    s.hv_cmdline = format!("{DEFAULT_HV_CMDLINE} {DOM0_CONSOLE_DIRECT}");
    s.input = session.into_input(Some(STEP_TIMEOUT));
    run_scenario(&s)
}

/// Domain 0's console lines (direct output and `(d0) ` lines).
fn dom0(o: &Outcome) -> Vec<&str> {
    o.output
        .lines()
        .filter_map(|l| match parse_line(l) {
            Line::Guest { domid: 0, text } | Line::Other(text) => Some(text),
            _ => None,
        })
        .collect()
}

#[track_caller]
fn has(o: &Outcome, what: &str, pred: impl Fn(&str) -> bool) -> usize {
    dom0(o)
        .iter()
        .position(|l| pred(l))
        .unwrap_or_else(|| panic!("expected {what}\n{o}"))
}

#[track_caller]
fn ends_cleanly(o: &Outcome) {
    has(o, "`logout`", |l| l.contains("logout"));
    expect(o)
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    assert!(o.crashed_domains().is_empty(), "no domain crashed\n{o}");
}

const WORKLOADS: [&str; 11] = [
    "null_syscall_int80",
    "null_syscall_syscall",
    "write_1b",
    "write_1k",
    "spawn_exit_wait",
    "spawn_image",
    "ctxsw_pingpong",
    "page_fault_zero",
    "prot_fault",
    "mmap_unmap_64",
    "compute_loop",
];

#[test]
fn osbench_smoke_under_pv() {
    let o = boot(
        &[SHELL],
        Session::of_commands(&["osbench 4", "echo after $?"]),
    );
    let rows: Vec<Row> = dom0(&o).iter().filter_map(|l| parse_row(l)).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    assert_eq!(names, WORKLOADS, "every workload once, in order\n{o}");
    for r in &rows {
        assert_eq!(r.iterations, 4, "{r:?}");
        let s = r.stats;
        assert!(
            s.min <= s.median && s.median <= s.p90 && s.p90 <= s.max,
            "{r:?}"
        );
        assert!(s.median > 0, "an operation costs something: {r:?}\n{o}");
        let hv =
            r.hv.unwrap_or_else(|| panic!("PV: counts beside {r:?}\n{o}"));
        let per = |n: u64| n as f64 / hv.ops as f64;
        match r.workload.as_str() {
            // The direct gate never enters the hypervisor; syscall is bounced once per call.
            "null_syscall_int80" => assert_eq!((hv.syscalls, hv.exceptions), (0, 0), "{r:?}"),
            "null_syscall_syscall" => assert_eq!(hv.syscalls, hv.ops, "{r:?}"),
            // Each console write is at least one console_io hypercall.
            "write_1b" | "write_1k" => assert!(per(hv.hypercalls) >= 1.0, "{r:?}"),
            // Every demand-zero and protection fault from ring 3 is bounced by the hypervisor.
            "page_fault_zero" | "prot_fault" => assert!(hv.exceptions >= hv.ops, "{r:?}"),
            "mmap_unmap_64" => assert!(hv.exceptions >= 64 * hv.ops, "{r:?}"),
            "ctxsw_pingpong" => assert_eq!(hv.ops, 8, "two switches per round trip: {r:?}"),
            _ => {}
        }
    }
    has(&o, "`osbench: done`", |l| l.trim() == "osbench: done");
    has(&o, "osbench's status 0", |l| l.trim() == "after 0");
    // The protection fault was handled in ring 3: no process was killed.
    assert!(!o.output.contains("killed"), "{o}");
    ends_cleanly(&o);
}

#[test]
fn osbench_refuses_bad_arguments_and_badptr_covers_hvcounters() {
    let o = boot(
        &[SHELL],
        Session::of_commands(&[
            "osbench 0",
            "osbench 1001",
            "osbench 2 nosuchworkload",
            "osbench 2 compute",
            "badptr",
            "osbench --hostile",
            "osbench --fault-in-handler",
            "echo status $?",
        ]),
    );
    has(&o, "the iteration limit", |l| {
        l.contains("osbench: iterations must be 1..=1000")
    });
    has(&o, "the filter refusal", |l| {
        l.contains("osbench: the filter matches no workload")
    });
    let rows: Vec<Row> = dom0(&o).iter().filter_map(|l| parse_row(l)).collect();
    assert_eq!(rows.len(), 1, "only compute_loop ran\n{o}");
    // compute_loop enters no kernel: at most a timer interrupt's worth of hypervisor work.
    assert!(rows[0].hv.unwrap().hypercalls <= 4, "{o}");
    has(&o, "badptr's verdict", |l| {
        l.ends_with(" bad-pointer calls, every one -EFAULT")
    });
    has(&o, "the hostile calls refused", |l| {
        l.starts_with("osbench: hostile: ") && l.ends_with(" bad calls refused")
    });
    let killed = has(&o, "the process killed for a fault in its handler", |l| {
        l.contains("(osbench) killed: page fault")
    });
    assert!(killed > has(&o, "the fault", |l| l.contains("a handler that faults")));
    has(&o, "status 139", |l| l.trim() == "status 139");
    // No check of the programs failed (the hypervisor's own lines may say FAILED: the cpu-fidelity
    // verdict on a defective CPU model).
    assert!(!dom0(&o).iter().any(|l| l.contains("FAILED")), "{o}");
    expect(&o).exit(EXIT_OK).hypervisor_alive_at_end();
}

#[test]
fn ctrl_d_during_a_program_does_not_log_the_shell_out() {
    let session = Session::new()
        .command("spin 3")
        .when("spin: pid", &[CTRL_D])
        .command("echo still here")
        .logout();
    let o = boot(&[SHELL], session);
    let spin = has(&o, "spin's report", |l| l.contains("spin: pid"));
    let still = has(&o, "the shell still reading after spin", |l| {
        l.trim() == "still here"
    });
    assert!(still > spin, "{o}");
    ends_cleanly(&o);
}

#[test]
fn orphans_of_an_interrupted_program_are_not_reported_as_jobs() {
    // A nested shell starts a background job, then is ended with Ctrl-C: its job becomes the outer
    // shell's child, which must reap it without reporting a job it never started.
    let session = Session::new()
        .command("sh")
        .command("sleep 1 &")
        .when("] started", &[CTRL_C])
        .command("sleep 2")
        .command("echo marker")
        .command("spin 1 &")
        .command("sleep 2")
        .command("echo end")
        .logout();
    let o = boot(&[SHELL], session);
    has(&o, "the nested shell ended by Ctrl-C", |l| {
        l.trim() == "[exit 130]"
    });
    // Typed-ahead lines may share a line with the prompt (`pvsh$ marker`).
    let alone = |word: &'static str| move |l: &str| l.ends_with(word) && !l.contains("echo");
    has(&o, "the marker", alone("marker"));
    let done: Vec<&str> = dom0(&o)
        .into_iter()
        .filter(|l| l.contains("done, status"))
        .collect();
    // Only the outer shell's own job (spin) is reported.
    assert_eq!(done.len(), 1, "{done:?}\n{o}");
    has(&o, "the end", alone("end"));
    ends_cleanly(&o);
}

#[test]
fn errors_explain_themselves() {
    let mut session = Session::new()
        .command("evtchn-ping 100000")
        .command("bench 3 null")
        .command("bench 2 yield");
    // 63 sleepers + the shell fill the table's 64 slots: the next spawn is refused in words.
    for _ in 0..63 {
        session = session.command("sleep 30 &");
    }
    let session = session.command("hello").command("echo ok");
    let o = boot(&[SHELL, PING_SERVER], session.logout());
    has(&o, "the process limit in words", |l| {
        l.contains("hello: cannot run: too many processes (limit 64)")
    });
    assert!(!o.output.contains("EAGAIN"), "{o}");
    has(&o, "evtchn-ping's limit", |l| {
        l.contains("evtchn-ping: at most 10000 round trips per run (asked for 100000)")
    });
    let null = has(&o, "bench null's line with its unit", |l| {
        l.starts_with("BENCH name=null_hypercall iterations=3 ") && l.ends_with(" unit=ticks/op")
    });
    assert!(
        dom0(&o)[null..]
            .iter()
            .all(|l| !l.starts_with("BENCH name=xen_version")),
        "`bench 3 null` ran only null_hypercall\n{o}"
    );
    has(&o, "bench naming what it skips and why", |l| {
        l.starts_with("bench: skipping yield_domain_switch: they need the bench-partner domain")
    });
    has(&o, "echo", |l| l.ends_with("ok") && !l.contains("echo"));
}

#[test]
fn bench_stops_between_operations_on_ctrl_c() {
    // The whole suite at 2000 iterations takes many seconds under TCG; Ctrl-C after the second line must
    // end it at the next operation boundary, not after the last operation.
    let session = Session::new()
        .command("bench 2000")
        .when("BENCH name=null_hypercall", &[CTRL_C])
        .command("echo after")
        .logout();
    let o = boot(&[SHELL], session);
    has(&o, "bench ended by Ctrl-C", |l| l.trim() == "[exit 130]");
    assert!(
        !o.output.contains("BENCH name=syscall_bounce"),
        "the suite stopped early\n{o}"
    );
    has(&o, "the shell after bench", |l| {
        l.ends_with("after") && !l.contains("echo")
    });
    ends_cleanly(&o);
}

/// The same osbench binary natively (ring 0, no hypervisor): every workload runs, and the entry counters
/// say there is nothing to count.
#[test]
fn osbench_smoke_natively() {
    let s = xtask::mode::shell_scenario(
        xtask::Mode::Native,
        &["osbench 4", "echo after $?"],
        STEP_TIMEOUT,
    );
    let o = run_scenario(&s);
    let rows: Vec<Row> = dom0(&o).iter().filter_map(|l| parse_row(l)).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    assert_eq!(names, WORKLOADS, "every workload once, in order\n{o}");
    for r in &rows {
        assert_eq!(r.iterations, 4, "{r:?}");
        assert!(
            r.stats.median > 0,
            "an operation costs something: {r:?}\n{o}"
        );
        assert!(r.hv.is_none(), "no hypervisor counts natively: {r:?}\n{o}");
    }
    has(&o, "`osbench: done`", |l| l.trim() == "osbench: done");
    has(&o, "osbench's status 0", |l| l.trim() == "after 0");
    assert!(!o.output.contains("killed"), "{o}");
    expect(&o).exit(EXIT_OK);
}
