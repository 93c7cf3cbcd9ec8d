//! `cargo xtask test`: formatting, clippy (host and bare metal), the image build, then `cargo test --workspace`
//! (which boots the QEMU scenarios of the `tests` crate unless `--quick`).
//!
//! The bare-metal clippy run of the guest kernel comes after the image build: the guest embeds the user
//! programs of the release build (`GUEST_USER_PROGRAMS`), so they must exist when it is checked.
//!
//! Every check step counts as one pass or failure, every test as counted from libtest's `test result:` lines;
//! the run ends with one line `summary: <P> passed, <F> failed`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::images::{CargoInvocation, Component, Profile, build_images, cargo};
use crate::qemu::for_each_line;
use crate::workspace_root;

/// The outcome of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What ran.
    pub name: String,
    /// Passes it counts for (1 for a check step, the test count for `cargo test`).
    pub passed: u32,
    /// Failures it counts for.
    pub failed: u32,
    /// A note for the step's summary line.
    pub note: String,
}

impl Step {
    fn check(name: &str, ok: bool, note: impl Into<String>) -> Self {
        Step {
            name: name.to_string(),
            passed: u32::from(ok),
            failed: u32::from(!ok),
            note: note.into(),
        }
    }

    /// `ok` or `FAILED`.
    pub fn status(&self) -> &'static str {
        if self.failed == 0 { "ok" } else { "FAILED" }
    }
}

/// Test counts from one libtest line `test result: ok. 3 passed; 1 failed; 0 ignored; ...`.
pub fn parse_test_result_line(line: &str) -> Option<(u32, u32)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut passed = None;
    let mut failed = None;
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        match what {
            "passed" => passed = n.parse().ok(),
            "failed" => failed = n.parse().ok(),
            _ => {}
        }
    }
    Some((passed?, failed?))
}

/// Sums the counts of every `test result:` line of a `cargo test` run.
pub fn sum_test_results<'a>(lines: impl IntoIterator<Item = &'a str>) -> (u32, u32) {
    lines
        .into_iter()
        .filter_map(parse_test_result_line)
        .fold((0, 0), |(p, f), (lp, lf)| (p + lp, f + lf))
}

/// The closing line: `summary: <P> passed, <F> failed`.
pub fn summary_line(steps: &[Step]) -> String {
    let passed: u32 = steps.iter().map(|s| s.passed).sum();
    let failed: u32 = steps.iter().map(|s| s.failed).sum();
    format!("summary: {passed} passed, {failed} failed")
}

/// The components whose bare-metal clippy run comes before the image build.
pub const CLIPPY_BEFORE_BUILD: [Component; 3] =
    [Component::User, Component::Hypervisor, Component::Mini];
/// The components whose bare-metal clippy run needs the image build first (the guest embeds the programs).
pub const CLIPPY_AFTER_BUILD: [Component; 1] = [Component::GuestKernel];

/// Runs every step, prints each outcome and the summary line; true if nothing failed.
pub fn run(quick: bool) -> bool {
    let root = workspace_root();
    let mut steps = Vec::new();

    let plain = |steps: &mut Vec<Step>, name: &str, mut cmd: Command| {
        banner(name, &cmd);
        let ok = cmd
            .current_dir(&root)
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        steps.push(Step::check(name, ok, ""));
    };
    let bare_metal_clippy = |steps: &mut Vec<Step>, component: Component| {
        let invocation = CargoInvocation::clippy(&root, component);
        let name = format!("clippy ({}, bare metal)", component.package());
        plain(steps, &name, invocation.command(&root));
    };
    let mut fmt = Command::new(cargo());
    fmt.args(["fmt", "--all", "--", "--check"]);
    plain(&mut steps, "cargo fmt --check", fmt);
    let mut clippy = Command::new(cargo());
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    plain(&mut steps, "clippy (workspace, host)", clippy);
    for component in CLIPPY_BEFORE_BUILD {
        bare_metal_clippy(&mut steps, component);
    }

    println!("\n==> xtask test: build images (release)");
    let images_ok = match build_images(Profile::Release) {
        Ok(images) => {
            println!(
                "    {}\n    {}\n    {}",
                images.programs.display(),
                images.hypervisor.display(),
                images.guest.display()
            );
            steps.push(Step::check("build images (release)", true, ""));
            true
        }
        Err(e) => {
            eprintln!("xtask: {e}");
            steps.push(Step::check(
                "build images (release)",
                false,
                e.lines().next().unwrap_or_default(),
            ));
            false
        }
    };
    for component in CLIPPY_AFTER_BUILD {
        bare_metal_clippy(&mut steps, component);
    }
    // The icount ceilings (xtask/bench-budgets.toml): one deterministic benchmark pass, a few seconds.
    if !quick && images_ok {
        println!("\n==> xtask test: icount budgets (cargo xtask bench --check-budgets)");
        let ok = crate::bench::check_budgets_step();
        steps.push(Step::check(
            "icount budgets",
            ok,
            if ok { "" } else { "see the budget lines above" },
        ));
    }

    let mut test = Command::new(cargo());
    test.args(["test", "--workspace"]);
    // The QEMU scenarios boot the QEMU chosen here (`--qemu`, else $RING1PV_QEMU, else the fixed one when
    // `cargo xtask qemu` has built it); this never builds QEMU.
    if let Some(request) = crate::qemu_choice::explicit_request() {
        test.env(crate::qemu_choice::QEMU_ENV, request.to_value());
    }
    if !quick && images_ok {
        match crate::qemu_choice::chosen() {
            Ok(qemu) => println!("\n{}", qemu.describe()),
            Err(e) => println!("\nxtask: QEMU: {e}"),
        }
    }
    let mut note = String::new();
    if quick {
        test.args(["--exclude", "tests"]);
        note.push_str("QEMU scenarios skipped (--quick)");
    } else if !images_ok {
        test.args(["--exclude", "tests"]);
        note.push_str("QEMU scenarios not run: the images did not build");
    }
    steps.push(cargo_test(test, note));

    println!("\n==> xtask test: results");
    for step in &steps {
        let counts = if step.name == "cargo test" {
            format!(": {} passed, {} failed", step.passed, step.failed)
        } else {
            String::new()
        };
        let note = if step.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", step.note)
        };
        println!("    {:<6} {}{counts}{note}", step.status(), step.name);
    }
    println!("{}", summary_line(&steps));
    let _ = std::io::stdout().flush();
    steps.iter().all(|s| s.failed == 0)
}

fn banner(name: &str, cmd: &Command) {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    println!(
        "\n==> xtask test: {name}\n    {} {}",
        cmd.get_program().to_string_lossy(),
        args.join(" ")
    );
    let _ = std::io::stdout().flush();
}

/// Runs `cargo test`, copying its stdout through while counting the `test result:` lines. A failing run
/// without any failed test (a build error, a crashed test binary) counts as one failure.
fn cargo_test(mut cmd: Command, note: String) -> Step {
    banner("cargo test", &cmd);
    let root = workspace_root();
    let mut child = match cmd
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            return Step {
                name: "cargo test".into(),
                passed: 0,
                failed: 1,
                note: format!("cannot run cargo: {e}"),
            };
        }
    };
    let (mut passed, mut failed) = (0, 0);
    if let Some(stdout) = child.stdout.take() {
        for_each_line(stdout, |line| {
            println!("{line}");
            if let Some((p, f)) = parse_test_result_line(&line) {
                passed += p;
                failed += f;
            }
            true
        });
    }
    let ok = child.wait().is_ok_and(|s| s.success());
    let mut note = note;
    if !ok && failed == 0 {
        failed = 1;
        if !note.is_empty() {
            note.push_str("; ");
        }
        note.push_str("cargo test failed outside any test (build error or crashed test binary)");
    }
    Step {
        name: "cargo test".into(),
        passed,
        failed,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_result_lines_are_counted() {
        assert_eq!(
            parse_test_result_line(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some((12, 0))
        );
        assert_eq!(
            parse_test_result_line(
                "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out"
            ),
            Some((3, 2))
        );
        assert_eq!(parse_test_result_line("running 3 tests"), None);
        assert_eq!(parse_test_result_line("(d0) Test result: SUCCESS"), None);
        let out = "running 2 tests\ntest a ... ok\ntest result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\
                   test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n";
        assert_eq!(sum_test_results(out.lines()), (3, 1));
    }

    #[test]
    fn every_component_gets_one_bare_metal_clippy_run() {
        let mut all: Vec<Component> = CLIPPY_BEFORE_BUILD
            .iter()
            .chain(CLIPPY_AFTER_BUILD.iter())
            .copied()
            .collect();
        assert_eq!(all.len(), Component::ALL.len());
        for c in Component::ALL {
            assert!(all.contains(&c), "{c:?} has no bare-metal clippy run");
        }
        all.dedup();
        assert_eq!(all.len(), Component::ALL.len());
        assert_eq!(CLIPPY_AFTER_BUILD, [Component::GuestKernel]);
    }

    #[test]
    fn summary_counts_steps_and_tests() {
        let steps = [
            Step::check("fmt", true, ""),
            Step::check("clippy", false, ""),
            Step {
                name: "cargo test".into(),
                passed: 40,
                failed: 2,
                note: String::new(),
            },
        ];
        assert_eq!(summary_line(&steps), "summary: 41 passed, 3 failed");
        assert_eq!(steps[0].status(), "ok");
        assert_eq!(steps[1].status(), "FAILED");
    }
}
