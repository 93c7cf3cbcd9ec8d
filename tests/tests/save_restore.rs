//! Save, restore, snapshot and clone of PV domains (issue 15) from domain 0's `xl`: a shell domain saved in
//! the middle of a session and restored keeps its state (the last status `$?`, a background job) and runs
//! commands; a snapshot lets the domain continue in place; a clone runs beside its original; garbage
//! images fed to the restore path are refused with nothing left behind (`test=save-hostile`).

use std::time::Duration;

use abi::exit::EXIT_OK;
use tests::{Outcome, Scenario, TestResult, expect, line_at, run_scenario, xl_shell};
use xtask::scenario::DEFAULT_HV_CMDLINE;
use xtask::shell::{DOM0_CONSOLE_DIRECT, SHELL, Session, XL_IMAGE};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);

fn run(session: Session) -> Outcome {
    xl_shell(session, STEP_TIMEOUT)
}

#[test]
fn a_shell_saved_mid_session_and_restored_keeps_its_state_and_runs_commands() {
    let session = Session::new()
        .command("xl create -m 4 guest shell")
        .command("sleep 3")
        .command("xl console 1")
        .when("has the console input now", b"sleep 2 &\n")
        .when("started", b"exitcode 42\n")
        .when("[exit 42]", b"")
        // Its prompt first: printed later, it would pass for domain 0's.
        .console_to_domain_0("pvsh$ ")
        .command("xl save 1 mid-session")
        .command("xl images")
        .command("xl list")
        .command("xl restore mid-session")
        .command("sleep 1")
        .command("xl console 2")
        .when("has the console input now", b"echo status-was $?\n")
        .when("status-was 42", b"ps\n")
        .when("PID", b"uptime\n")
        .when("up ", b"sleep 1\n")
        .when("pvsh$", b"echo still-running $?\n")
        .when("still-running 0", b"")
        .console_to_domain_0("pvsh$ ")
        .command("xl destroy 2")
        .command("xl image-rm mid-session")
        .command("xl images")
        .command("xl create -p -m 2 guest test=idle-forever")
        .command("xl save 3 never")
        .command("xl destroy 3")
        .logout();
    let o = run(session);
    expect(&o)
        .contains("(d1) kernel: suspending for the toolstack")
        .contains("[hv] INFO  domain 1 suspended")
        .line("saved with its page tables canonicalized", |l| {
            l.contains("INFO  domain 1 saved as 'mid-session'")
                && l.contains("page tables canonicalized")
        })
        .line("xl reports the save", |l| {
            l.starts_with("xl: domain 1 saved as 'mid-session' (") && l.ends_with("and destroyed")
        })
        .line("the image is listed", |l| {
            l.starts_with("mid-session ") && l.ends_with(" 1")
        })
        .line("restored into a new domain, tables revalidated", |l| {
            l.contains("INFO  domain 2 restored from image 'mid-session' (saved from domain 1)")
                && l.contains("revalidated")
        })
        .contains("kernel: resumed in a restored domain: domain 2 (saved from domain 1)")
        .line("the restored shell kept $?", |l| l == "status-was 42")
        .line("and its background job", |l| l.ends_with("done, status 0"))
        .line("its background job still sleeps", |l| {
            l.trim_start().starts_with("2     1 sleeping sleep")
        })
        .line("and runs commands (a timer-driven sleep too)", |l| {
            l.ends_with("still-running 0")
        })
        .contains("teardown check: domain 2: frame-table recount matches")
        .contains("xl: image 'mid-session' removed")
        .contains("0 image(s)")
        .contains(
            "xl: the domain's kernel does not take suspend requests (VIRQ_SUSPEND unbound) (EOPNOTSUPP)",
        )
        .contains("[hv] INFO  domain 3 destroyed by the control domain")
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    // Nothing of domain 1 runs after the save: its last output line comes before the restore.
    let saved = line_at(&o, 0, "xl: domain 1 saved as");
    assert!(
        !o.output.lines().skip(saved).any(|l| l.starts_with("(d1) ")),
        "domain 1 is gone after the save\n{o}"
    );
}

/// Domain 1 runs a shell with `spin` in the background (a report a second), typed through `xl console`.
fn spinning_domain() -> Session {
    Session::new()
        .command("xl create -m 4 guest shell")
        .command("sleep 3")
        .command("xl console 1")
        .when("has the console input now", b"spin 40 &\n")
        .when("started", b"")
        .console_to_domain_0("pvsh$ ")
}

/// The `spin` reports of domain `d` after output line `from`.
fn spins(o: &Outcome, from: usize, d: u16) -> usize {
    let prefix = format!("(d{d}) spin: pid 2, ");
    o.output
        .lines()
        .skip(from)
        .filter(|l| l.starts_with(&prefix))
        .count()
}

#[test]
fn a_snapshot_lets_the_domain_continue_and_restores_beside_it() {
    let session = spinning_domain()
        .command("sleep 1")
        .command("xl snapshot 1 snap")
        .command("sleep 2")
        .command("xl list")
        .command("xl restore snap")
        .command("sleep 3")
        .command("xl list")
        .command("xl destroy 1-2")
        .command("xl images")
        .logout();
    let o = run(session);
    expect(&o)
        .contains("[hv] INFO  domain 1 suspended")
        .contains("[hv] INFO  domain 1 resumed")
        .contains("(d1) kernel: resumed in place")
        .line("xl reports the snapshot", |l| {
            l.starts_with("xl: snapshot of domain 1 saved as 'snap' (")
                && l.ends_with("domain 1 continues")
        })
        .contains("(d2) kernel: resumed in a restored domain: domain 2 (saved from domain 1)")
        .line("the image stays in the store", |l| l.starts_with("snap "))
        .contains("teardown check: domain 1: frame-table recount matches")
        .contains("teardown check: domain 2: frame-table recount matches")
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    let snap = line_at(&o, 0, "xl: snapshot of domain 1 saved as");
    let restored = line_at(&o, snap, "INFO  domain 2 restored from image 'snap'");
    let end = line_at(&o, restored, "xl destroy 1-2");
    assert!(
        spins(&o, 0, 1) > spins(&o, snap, 1),
        "domain 1 spun before the snapshot\n{o}"
    );
    assert!(spins(&o, snap, 1) >= 2, "and after it\n{o}");
    let d2: usize = o
        .output
        .lines()
        .take(end)
        .skip(restored)
        .filter(|l| l.starts_with("(d2) spin: pid 2, "))
        .count();
    assert!(d2 >= 1, "the restored copy's spin continues\n{o}");
    assert_eq!(
        spins(&o, 0, 2),
        d2,
        "domain 2 spins only after the restore\n{o}"
    );
}

#[test]
fn a_clone_runs_beside_its_original() {
    let session = spinning_domain()
        .command("xl clone 1")
        .command("sleep 3")
        .command("xl list")
        .command("xl images")
        .command("xl destroy 1")
        .command("sleep 1")
        .command("xl destroy 2")
        .logout();
    let o = run(session);
    expect(&o)
        .contains("(d1) kernel: resumed in place")
        .contains("xl: domain 1 cloned as domain 2")
        .contains("(d2) kernel: resumed in a restored domain: domain 2 (saved from domain 1)")
        .line("both listed", |l| {
            l.starts_with("   2 ") && l.ends_with("pv")
        })
        .contains("0 image(s)")
        .contains("teardown check: domain 1: frame-table recount matches")
        .contains("teardown check: domain 2: frame-table recount matches")
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    let cloned = line_at(&o, 0, "xl: domain 1 cloned as domain 2");
    let destroyed = line_at(&o, cloned, "domain 1 destroyed by the control domain");
    assert!(spins(&o, cloned, 1) >= 1, "the original spins on\n{o}");
    assert!(spins(&o, cloned, 2) >= 1, "so does the clone\n{o}");
    assert!(
        spins(&o, destroyed, 2) >= 1,
        "the clone outlives the original\n{o}"
    );
}

#[test]
fn protocol_errors_and_hostile_images_are_refused_with_nothing_left_behind() {
    let mut s = Scenario::new(&["test=save-hostile"]);
    s.images = vec![XL_IMAGE.to_string()];
    // Less memory to fill for the out-of-memory case.
    s.memory_mib = 128;
    let o = run_scenario(&s);
    expect(&o)
        .result(0, TestResult::Success)
        .contains("(d0)   ok   SHUTDOWN_suspend naming frame 0: Some(EINVAL)")
        .contains("(d0)   ok   suspend request to a domain that cannot suspend: Some(EOPNOTSUPP)")
        .contains("(d0)   ok   a second request at once: the same domain saved twice: Some(EBUSY)")
        .contains(
            "(d0)   ok   unpause of a suspended domain (only resumedomain continues it): Some(EINVAL)",
        )
        .contains("(d0)   ok   save as 'real': None")
        .contains("(d0)   ok   restore the real image (paused): None")
        .contains("(d0)   ok   restore it (paused): validated, audited: None")
        .line("its VIRQ is kept, its interdomain channel closed", |l| {
            l.contains("restored from image 'small' (saved from domain 77): 8 pages, 4 page tables (1 pinned) revalidated, 1 event channels kept, 1 interdomain closed")
        })
        .contains("(d0)   ok   one bit flipped: Some(EINVAL)")
        .contains("(d0)   ok   an L1 mapping a page table writable: Some(EINVAL)")
        .contains("(d0)   ok   a P2M that is not mapped: Some(EINVAL)")
        .contains("(d0)   ok   restore without enough memory: Some(ENOMEM)")
        .contains("(d0)   ok   with the memory back, the restore fits: None")
        .line("one log line per refused restore", |l| {
            l.contains(
                "WARN  restore of image 'hostile' refused: a pinned page table failed validation",
            )
        })
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    // Every domain restored from the synthetic or the real image passed the teardown recount.
    assert!(
        !o.output.contains("MISMATCH") && !o.output.contains("violation:"),
        "teardown checks pass\n{o}"
    );
}

#[test]
fn an_image_streamed_to_a_host_file_boots_back_in_a_fresh_hypervisor() {
    // `cargo xtask save`: the domain's shell ran `uptime` and `exitcode 42`, then the image went over the
    // serial line.
    let saved = run_scenario(&xtask::savecmd::save_scenario(
        4,
        &["uptime".to_string(), "exitcode 42".to_string()],
    ));
    let image =
        xtask::savecmd::decode_console(&saved.output).unwrap_or_else(|e| panic!("{e}\n{saved}"));
    let file = std::env::temp_dir().join(format!("ring1pv-save-{}.img", std::process::id()));
    std::fs::write(&file, &image).unwrap();
    // `cargo xtask run --restore FILE`: a new boot, the image as module `restore=disk`.
    let session = Session::new()
        .command("xl list")
        .command("xl console 1")
        .when("has the console input now", b"echo status-was $?\n")
        .when("status-was 42", b"uptime\n")
        .when("up ", b"")
        .console_to_domain_0("pvsh$ ")
        .command("xl destroy 1")
        .logout();
    let mut s = Scenario::new(&[SHELL]);
    s.hv_cmdline = format!("{DEFAULT_HV_CMDLINE} {DOM0_CONSOLE_DIRECT}");
    s.images = vec![XL_IMAGE.to_string()];
    s.restores = vec![("disk".to_string(), file.clone())];
    s.input = session.into_input(Some(STEP_TIMEOUT));
    let o = run_scenario(&s);
    let _ = std::fs::remove_file(&file);
    expect(&o)
        .contains("[hv] INFO  module 2: image 'disk' restored as domain 1")
        .contains("(d1) kernel: resumed in a restored domain: domain 1 (saved from domain 1)")
        .line("the shell kept its state across the boot", |l| {
            l == "status-was 42"
        })
        .contains("teardown check: domain 1: frame-table recount matches")
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    // The guest's clock continues: its uptime after the restore is past its uptime before the save.
    let up = |out: &str| -> Vec<f64> {
        out.lines()
            .filter_map(|l| l.split("up ").nth(1)?.strip_suffix(" s")?.parse().ok())
            .collect()
    };
    let before = up(&saved.output);
    let after = up(&o.output);
    assert!(
        !before.is_empty() && !after.is_empty(),
        "uptimes\n{saved}\n{o}"
    );
    assert!(
        after[0] > before[0],
        "the restored guest's clock went back: {after:?} after {before:?}\n{o}"
    );
}
