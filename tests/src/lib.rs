//! Harness for the QEMU scenario tests in `tests/tests/`: builds the release images once per test process,
//! makes sure QEMU is installed, boots scenarios with a 60 s kill timeout, and offers assertions that print the
//! whole serial output when they fail.
//!
//! The QEMU is the patched one built by `cargo xtask qemu` when it is in the cache, else the distribution's;
//! `RING1PV_QEMU=system|fixed|auto|<path>` chooses (`cargo xtask test --qemu X` sets it).
//!
//! ```no_run
//! use tests::{expect, run};
//! let outcome = run(&["test=unknown-hypercall"]);
//! expect(&outcome).exit(abi::exit::EXIT_OK).result(0, tests::TestResult::Success);
//! ```
#![forbid(unsafe_code)]

use std::sync::OnceLock;

pub mod migpeer;

pub use xtask::{Exit, Images, Outcome, Scenario, TestResult};

/// The start of the hypervisor's closing summary line, its last words before it reports the exit status.
pub const SUMMARY_LINE_PREFIX: &str = "[hv] INFO  all domains finished";

/// The line the hypervisor prints after checking that guests did not modify its text and rodata.
pub const INTEGRITY_LINE: &str = "[hv] INFO  integrity: hypervisor text and rodata unchanged";

/// The release images, built (and QEMU ensured) once per test process. Panics with the build output if the
/// build fails or QEMU cannot be had.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
    let result = IMAGES.get_or_init(|| {
        eprintln!("{}", xtask::ensure_qemu()?.describe());
        xtask::build_images_quiet(xtask::Profile::Release)
    });
    match result {
        Ok(images) => images,
        Err(e) => panic!("cannot prepare the QEMU scenario: {e}"),
    }
}

/// Why `mode` cannot run in this tree's hypervisor (emulate and hvm before their implementations land,
/// or on a CPU without SVM), found once per test process by booting the guest kernel in that mode with
/// an unknown command; `None` if the mode runs. Tests in such a mode print `Test result: SKIP` and return
/// (see [`skip_if_unavailable`]), so they pass by themselves once the mode exists.
pub fn mode_unavailable(mode: xtask::Mode) -> Option<String> {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    static SEEN: Mutex<BTreeMap<xtask::Mode, Option<String>>> = Mutex::new(BTreeMap::new());
    if !matches!(mode, xtask::Mode::Emulate | xtask::Mode::Hvm) {
        return None;
    }
    if let Some(known) = SEEN.lock().unwrap_or_else(|e| e.into_inner()).get(&mode) {
        return known.clone();
    }
    let outcome = match xtask::mode::run(images(), mode, "nosuchword") {
        Ok(o) => o,
        Err(e) => panic!("cannot boot the guest kernel in mode {mode}: {e}"),
    };
    let why = xtask::mode::unsupported(mode, &outcome);
    SEEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(mode, why.clone());
    why
}

/// True (after printing `Test result: SKIP` and why) if `mode` cannot run here ([`mode_unavailable`]).
pub fn skip_if_unavailable(mode: xtask::Mode) -> bool {
    match mode_unavailable(mode) {
        Some(why) => {
            println!("mode {mode}: Test result: SKIP ({why})");
            true
        }
        None => false,
    }
}

/// Boots one domain per command line (domain ids in order) with the default scenario settings
/// (`loglevel=info`, 512 MiB, TCG, killed after 60 s).
pub fn run(domains: &[&str]) -> Outcome {
    run_scenario(&Scenario::new(domains))
}

/// Boots a scenario; panics only if QEMU cannot be started at all.
pub fn run_scenario(scenario: &Scenario) -> Outcome {
    match xtask::run_scenario(images(), scenario) {
        Ok(outcome) => outcome,
        Err(e) => panic!("cannot run the scenario {:?}: {e}", scenario.domains),
    }
}

/// Domain 0's shell on the direct console with the guest kernel kept as image `guest` (what `xl create`,
/// `xl restore` and friends use), typing `session` with `step` as each step's timeout.
pub fn xl_shell(session: xtask::shell::Session, step: std::time::Duration) -> Outcome {
    let mut s = Scenario::new(&[xtask::shell::SHELL]);
    s.hv_cmdline = format!(
        "{} {}",
        xtask::scenario::DEFAULT_HV_CMDLINE,
        xtask::shell::DOM0_CONSOLE_DIRECT
    );
    s.images = vec![xtask::shell::XL_IMAGE.to_string()];
    s.input = session.into_input(Some(step));
    run_scenario(&s)
}

/// The index of the first output line at or after `from` that contains `needle` (panics with the output
/// if there is none).
#[track_caller]
pub fn line_at(o: &Outcome, from: usize, needle: &str) -> usize {
    match o.output.lines().skip(from).position(|l| l.contains(needle)) {
        Some(i) => from + i,
        None => panic!("expected a line with {needle:?} after line {from}\n{o}"),
    }
}

/// Boots `cmdline` as domain 0 next to a `demo` domain 1 and checks the standard containment outcome:
/// domain 0 crashed with `reason`, domain 1 powered off normally, no hypervisor panic, the hypervisor's text
/// and rodata intact, and the hypervisor alive at the end.
#[track_caller]
pub fn crashes_next_to_demo(cmdline: &str, reason: &str) -> Outcome {
    let outcome = run(&[cmdline, "demo"]);
    expect(&outcome)
        .crashed(0, reason)
        .poweroff(1)
        .exit(abi::exit::EXIT_DOMAIN_CRASHED)
        .no_panic()
        .contains(INTEGRITY_LINE)
        .hypervisor_alive_at_end();
    outcome
}

/// Starts a chain of assertions on an outcome.
pub fn expect(outcome: &Outcome) -> Expect<'_> {
    Expect { outcome }
}

/// Assertions on an [`Outcome`]; each failure panics with what was expected and the whole run.
#[derive(Clone, Copy)]
pub struct Expect<'a> {
    outcome: &'a Outcome,
}

impl<'a> Expect<'a> {
    #[track_caller]
    fn fail(&self, what: std::fmt::Arguments<'_>) -> ! {
        panic!("expectation failed: {what}\n{}", self.outcome)
    }

    /// The hypervisor reported exit value `v` (`abi::exit::EXIT_*`).
    #[track_caller]
    pub fn exit(self, v: u8) -> Self {
        if self.outcome.exit != Exit::Hypervisor(v) {
            self.fail(format_args!(
                "hypervisor exit {v:#x} ({}), got: {}",
                xtask::qemu::exit_name(v),
                self.outcome.exit
            ));
        }
        self
    }

    /// Some output line contains `needle`.
    #[track_caller]
    pub fn contains(self, needle: &str) -> Self {
        if !self.outcome.contains_line(needle) {
            self.fail(format_args!("a line containing {needle:?}"));
        }
        self
    }

    /// Some output line satisfies `pred` (described by `what`).
    #[track_caller]
    pub fn line(self, what: &str, pred: impl Fn(&str) -> bool) -> Self {
        if !self.outcome.output.lines().any(pred) {
            self.fail(format_args!("{what}"));
        }
        self
    }

    /// Domain `domid` shut down with reason poweroff and code 0.
    #[track_caller]
    pub fn poweroff(self, domid: u32) -> Self {
        let shutdowns = self.outcome.shutdowns();
        if !shutdowns
            .iter()
            .any(|(d, reason, code)| *d == domid && reason == "poweroff" && *code == 0)
        {
            self.fail(format_args!(
                "domain {domid} shut down: poweroff code 0; shutdowns seen: {shutdowns:?}"
            ));
        }
        self
    }

    /// Domain `domid` was crashed by the hypervisor with a reason containing `reason`.
    #[track_caller]
    pub fn crashed(self, domid: u32, reason: &str) -> Self {
        let crashes = self.outcome.crashed_domains();
        if !crashes
            .iter()
            .any(|(d, r)| *d == domid && r.contains(reason))
        {
            self.fail(format_args!("domain {domid} crashed with a reason containing {reason:?}; crashes seen: {crashes:?}"));
        }
        self
    }

    /// Domain `domid`'s XTF-style verdict (most severe result; none or a crash is ERROR) is `result`.
    #[track_caller]
    pub fn result(self, domid: u32, result: TestResult) -> Self {
        let verdict = self.outcome.verdict(domid);
        if verdict.result != result {
            self.fail(format_args!(
                "domain {domid} test result {result}, got {} ({})",
                verdict.result, verdict.reason
            ));
        }
        self
    }

    /// The hypervisor did not panic.
    #[track_caller]
    pub fn no_panic(self) -> Self {
        if self.outcome.hypervisor_panicked() {
            self.fail(format_args!("no hypervisor panic"));
        }
        self
    }

    /// The hypervisor stayed alive to the end: its closing summary line ([`SUMMARY_LINE_PREFIX`]) is the last
    /// output line and comes after every domain's shutdown or crash line, and it did not panic.
    #[track_caller]
    pub fn hypervisor_alive_at_end(self) -> Self {
        let lines: Vec<&str> = self
            .outcome
            .output
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let last_domain_end = lines
            .iter()
            .rposition(|l| l.contains(" shut down: ") || l.contains(" crashed: "));
        match (lines.last(), last_domain_end) {
            (Some(last), Some(end))
                if last.starts_with(SUMMARY_LINE_PREFIX) && end < lines.len() - 1 => {}
            _ => self.fail(format_args!(
                "the closing summary line `{SUMMARY_LINE_PREFIX} ...` last, after the domains ended"
            )),
        }
        self.no_panic()
    }

    /// The outcome, for further checks.
    pub fn outcome(self) -> &'a Outcome {
        self.outcome
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    const OUTPUT: &str = "\
[hv] INFO  hypervisor starting
(d0) guest kernel running in ring 1
(d0) Test result: SUCCESS
[hv] INFO  domain 0 shut down: poweroff code 0
[hv] INFO  integrity: hypervisor text and rodata unchanged
[hv] INFO  all domains finished: exit status 0
";

    #[test]
    fn passing_expectations_chain() {
        let o = Outcome::from_output(OUTPUT, Exit::Hypervisor(0));
        expect(&o)
            .exit(0)
            .contains("ring 1")
            .line("a (d0) banner", |l| {
                l.starts_with("(d0)") && l.contains("ring 1")
            })
            .poweroff(0)
            .result(0, TestResult::Success)
            .hypervisor_alive_at_end();
    }

    #[test]
    fn failing_expectations_print_the_run() {
        let o = Outcome::from_output(OUTPUT, Exit::Reset);
        let err = std::panic::catch_unwind(|| {
            expect(&o).exit(0);
        })
        .expect_err("must fail");
        let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            message.contains("machine reset or triple fault"),
            "{message}"
        );
        assert!(
            message.contains("(d0) guest kernel running in ring 1"),
            "{message}"
        );
        assert!(std::panic::catch_unwind(|| expect(&o).crashed(0, "page fault")).is_err());
        assert!(std::panic::catch_unwind(|| expect(&o).poweroff(1)).is_err());
        assert!(std::panic::catch_unwind(|| expect(&o).result(1, TestResult::Success)).is_err());
        let cut = Outcome::from_output(
            "[hv] INFO  domain 0 shut down: poweroff code 0\n",
            Exit::Hypervisor(0),
        );
        assert!(std::panic::catch_unwind(|| expect(&cut).hypervisor_alive_at_end()).is_err());
    }
}
