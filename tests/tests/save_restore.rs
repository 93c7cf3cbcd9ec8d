//! Save, restore, snapshot and clone of PV domains (issue 15) from domain 0's `xl`: a shell domain saved in
//! the middle of a session and restored keeps its state (the last status `$?`, a background job) and runs
//! commands; a snapshot lets the domain continue in place; a clone runs beside its original; garbage
//! images fed to the restore path are refused with nothing left behind (`test=save-hostile`).

use std::time::Duration;

use abi::exit::EXIT_OK;
use tests::{Outcome, Scenario, expect, run_scenario};
use xtask::scenario::DEFAULT_HV_CMDLINE;
use xtask::shell::{DOM0_CONSOLE_DIRECT, SHELL, Session, XL_IMAGE};

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const CTRL_BRACKET_C: &[u8] = &[0x1d, b'c'];

fn run(session: Session) -> Outcome {
    let mut s = Scenario::new(&[SHELL]);
    s.hv_cmdline = format!("{DEFAULT_HV_CMDLINE} {DOM0_CONSOLE_DIRECT}");
    s.images = vec![XL_IMAGE.to_string()];
    s.input = session.into_input(Some(STEP_TIMEOUT));
    run_scenario(&s)
}

/// The index of the first output line at or after `from` that contains `needle`.
#[track_caller]
fn line_at(o: &Outcome, from: usize, needle: &str) -> usize {
    match o.output.lines().skip(from).position(|l| l.contains(needle)) {
        Some(i) => from + i,
        None => panic!("expected a line with {needle:?} after line {from}\n{o}"),
    }
}

#[test]
fn a_shell_saved_mid_session_and_restored_keeps_its_state_and_runs_commands() {
    let session = Session::new()
        .command("xl create -m 4 guest shell")
        .command("sleep 3")
        .command("xl console 1")
        .when("has the console input now", b"sleep 2 &\n")
        .when("started", b"exitcode 42\n")
        .when("[exit 42]", CTRL_BRACKET_C)
        .when("[hv] console input: domain 0", b"echo resync\n")
        .when("resync", b"")
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
        .when("still-running 0", CTRL_BRACKET_C)
        .when("[hv] console input: domain 0", b"echo resync2\n")
        .when("resync2", b"")
        .command("xl destroy 2")
        .command("xl image-rm mid-session")
        .command("xl images")
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
