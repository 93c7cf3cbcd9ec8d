//! A scenario — which domains to boot with which command lines, under which hypervisor command line — and
//! the [`Outcome`] of booting it: the serial output, the exit, and queries over both.

use std::fmt;
use std::time::Duration;

use crate::images::Images;
use crate::mode::{Mode, native_exit, parse_native_shutdown};
use crate::qemu::{self, Accel, DEFAULT_MEMORY_MIB, Exit, Input, Machine, Module, SerialSink};
use crate::serial::{Line, TestResult, parse_crash, parse_line, parse_shutdown, parse_test_result};

/// The hypervisor command line used unless a scenario says otherwise.
pub const DEFAULT_HV_CMDLINE: &str = "loglevel=info";

/// The kill timeout used unless a scenario says otherwise (scenarios should finish well under 30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// One command line per domain, in domain id order (`demo`, `test=unknown-hypercall`, ...).
    pub domains: Vec<String>,
    /// The hypervisor command line (`loglevel=...`, `dom_mem=...`).
    pub hv_cmdline: String,
    /// Machine RAM in MiB.
    pub memory_mib: u32,
    /// QEMU is killed after this long.
    pub timeout: Duration,
    /// QEMU accelerator.
    pub accel: Accel,
    /// Run with QEMU's instruction counting (`-icount shift=0,sleep=off`, TCG only; see [`Machine::icount`]).
    pub icount: bool,
    /// Domains whose module is another file than the guest kernel (index into `domains` → path): for
    /// feeding the hypervisor bad boot input.
    pub custom_images: std::collections::BTreeMap<usize, std::path::PathBuf>,
    /// What QEMU's stdin provides (null unless a test types into the console).
    pub input: Input,
    /// This QEMU binary instead of the process-wide choice ([`crate::qemu_choice::chosen`]).
    pub qemu: Option<std::path::PathBuf>,
    /// Under the hypervisor (PV, the default) or the kernel alone on the machine (native: exactly one
    /// domain, whose command line becomes the kernel's; `hv_cmdline` is not used).
    pub mode: Mode,
    /// Names under which the guest kernel is also passed as an *available image* (a module with command
    /// line `image=NAME`, after the domains' modules): the hypervisor keeps it for `xl create`.
    pub images: Vec<String>,
    /// Another kernel instead of ring1pv's guest kernel (`--kernel FILE`): natively QEMU's `-kernel`,
    /// otherwise every domain's module (a multiboot kernel for emulate and hvm; a PV ELF for pv).
    pub kernel: Option<std::path::PathBuf>,
    /// Save images to restore at boot: (name, file), each a module `restore=NAME` (`cargo xtask run
    /// --restore FILE`).
    pub restores: Vec<(String, std::path::PathBuf)>,
    /// More QEMU arguments, after the others (`cargo xtask migrate`: the second serial port).
    pub extra_args: Vec<String>,
}

impl Scenario {
    /// The given domains with the defaults: `loglevel=info`, 512 MiB, 60 s timeout, TCG, no icount.
    pub fn new<S: AsRef<str>>(domains: &[S]) -> Self {
        Scenario {
            domains: domains.iter().map(|d| d.as_ref().to_string()).collect(),
            hv_cmdline: DEFAULT_HV_CMDLINE.to_string(),
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout: DEFAULT_TIMEOUT,
            accel: Accel::Tcg,
            icount: false,
            custom_images: std::collections::BTreeMap::new(),
            input: Input::Null,
            qemu: None,
            mode: Mode::Pv,
            images: Vec::new(),
            kernel: None,
            restores: Vec::new(),
            extra_args: Vec::new(),
        }
    }

    /// The kernel image the domains run (natively: the one QEMU boots): `kernel` or the guest kernel.
    pub fn kernel_image<'a>(&'a self, images: &'a Images) -> &'a std::path::Path {
        self.kernel.as_deref().unwrap_or(&images.guest)
    }

    /// The multiboot modules: the kernel image once per domain (its command line led by the mode's
    /// `kind=` word for emulate and hvm, unless it has its own), then once per available image.
    pub fn modules(&self, images: &Images) -> Vec<Module> {
        let kernel = self.kernel_image(images).to_path_buf();
        let domains = self.domains.iter().enumerate().map(|(i, cmdline)| Module {
            image: self.custom_images.get(&i).unwrap_or(&kernel).clone(),
            cmdline: self.mode.module_cmdline(cmdline),
        });
        let kept = self.images.iter().map(|name| Module {
            image: images.guest.clone(),
            cmdline: format!("image={name}"),
        });
        let restores = self.restores.iter().map(|(name, file)| Module {
            image: file.clone(),
            cmdline: format!("restore={name}"),
        });
        domains.chain(kept).chain(restores).collect()
    }
}

/// How to run a scenario beyond what it describes (used by `cargo xtask run` and `gdb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// QEMU's stdin ([`Input::Terminal`] also selects the interactive serial line, see [`Machine::interactive`]).
    pub input: Input,
    /// Kill QEMU after the scenario's timeout (`false`: wait as long as it runs).
    pub enforce_timeout: bool,
    /// Start paused with the gdb stub (`-s -S`).
    pub gdb: bool,
    /// Copy QEMU's stderr to ours as it arrives.
    pub echo_stderr: bool,
}

impl Default for RunOptions {
    /// Non-interactive: stdin null, timeout enforced, no gdb, stderr captured only.
    fn default() -> Self {
        RunOptions {
            input: Input::Null,
            enforce_timeout: true,
            gdb: false,
            echo_stderr: false,
        }
    }
}

/// Boots a scenario non-interactively (stdin null), killing QEMU at its timeout, and returns the outcome.
pub fn run_scenario(images: &Images, scenario: &Scenario) -> Result<Outcome, String> {
    let options = RunOptions {
        input: scenario.input.clone(),
        ..RunOptions::default()
    };
    run_scenario_with(images, scenario, options, &mut |_: &str| {})
}

/// Boots a scenario, passing the serial output to `sink` as it arrives (a closure `|line: &str| ...` is a
/// sink that sees complete lines only).
pub fn run_scenario_with(
    images: &Images,
    scenario: &Scenario,
    options: RunOptions,
    sink: &mut dyn SerialSink,
) -> Result<Outcome, String> {
    let native = scenario.mode == Mode::Native;
    let modules = if native {
        if scenario.domains.len() != 1 || !scenario.custom_images.is_empty() {
            return Err(format!(
                "a native run boots the kernel alone: one command line, the built image (got {:?})",
                scenario.domains
            ));
        }
        Vec::new()
    } else {
        scenario.modules(images)
    };
    // Natively QEMU loads the guest kernel itself (its multiboot entry) with the domain's command line.
    let (kernel, kernel_cmdline) = if native {
        (scenario.kernel_image(images), scenario.domains[0].as_str())
    } else {
        (images.hypervisor.as_path(), scenario.hv_cmdline.as_str())
    };
    let machine = Machine {
        hypervisor: kernel,
        hv_cmdline: kernel_cmdline,
        modules: &modules,
        memory_mib: scenario.memory_mib,
        accel: scenario.accel,
        gdb: options.gdb,
        icount: scenario.icount,
        interactive: options.input == Input::Terminal,
    };
    let mut args = machine.args()?;
    args.extend(scenario.extra_args.iter().map(std::ffi::OsString::from));
    let timeout = options.enforce_timeout.then_some(scenario.timeout);
    let program = match &scenario.qemu {
        Some(program) => program.clone(),
        None => crate::qemu_choice::chosen()?.program.clone(),
    };
    let captured = qemu::run_with(
        &program,
        &args,
        &options.input,
        timeout,
        options.echo_stderr,
        sink,
    )?;
    let exit = if native {
        native_exit(captured.exit, &captured.output)
    } else {
        captured.exit
    };
    Ok(Outcome {
        output: captured.output,
        stderr: captured.stderr,
        exit,
        elapsed: captured.elapsed,
        command: machine.display_with(&program),
        script: captured.script,
        mode: scenario.mode,
    })
}

/// A domain's overall verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The most severe result (see [`Outcome::verdict`]).
    pub result: TestResult,
    /// Why, in words.
    pub reason: String,
}

/// What a scenario run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The serial output, one line per `\n` (`\r` removed).
    pub output: String,
    /// QEMU's own stderr.
    pub stderr: String,
    /// How the run ended.
    pub exit: Exit,
    /// How long it took.
    pub elapsed: Duration,
    /// The QEMU command line, for reproducing by hand.
    pub command: String,
    /// For scripted input: where the script stood at the end (e.g. the step it was still waiting for).
    pub script: Option<String>,
    /// How the kernel ran. Natively every line that is neither `[hv]` nor `(dN)` is domain 0's console
    /// (there is nothing else on the line), and the kernel's own shutdown line stands for the
    /// hypervisor's.
    pub mode: Mode,
}

impl Outcome {
    /// An outcome from text alone (for unit tests of the queries).
    pub fn from_output(output: &str, exit: Exit) -> Self {
        Outcome {
            output: output.to_string(),
            stderr: String::new(),
            exit,
            elapsed: Duration::ZERO,
            command: String::new(),
            script: None,
            mode: Mode::Pv,
        }
    }

    /// The serial lines, classified (natively, unprefixed lines as domain 0's).
    pub fn lines(&self) -> impl Iterator<Item = Line<'_>> {
        let native = self.mode == Mode::Native;
        self.output.lines().map(move |l| match parse_line(l) {
            Line::Other(text) if native => Line::Guest { domid: 0, text },
            line => line,
        })
    }

    /// The hypervisor's exit value, if it reported one.
    pub fn exit_value(&self) -> Option<u8> {
        self.exit.hypervisor_value()
    }

    /// Every `(dN) Test result: ...` line, in order, as `(domid, result)`.
    pub fn results(&self) -> Vec<(u32, TestResult)> {
        self.result_lines()
            .into_iter()
            .map(|(domid, result, _)| (domid, result))
            .collect()
    }

    /// Every `(dN) Test result: ...` line with its detail text (maybe empty).
    pub fn result_lines(&self) -> Vec<(u32, TestResult, &str)> {
        self.lines()
            .filter_map(|line| match line {
                Line::Guest { domid, text } => {
                    parse_test_result(text).map(|(r, detail)| (domid, r, detail))
                }
                _ => None,
            })
            .collect()
    }

    /// Every `[hv] ERROR domain N crashed: reason` line as `(domid, reason)`.
    pub fn crashed_domains(&self) -> Vec<(u32, String)> {
        self.lines()
            .filter_map(|line| match line {
                Line::Hypervisor { tag, message } => parse_crash(tag, message),
                _ => None,
            })
            .collect()
    }

    /// Every `[hv] INFO  domain N shut down: reason code C` line as `(domid, reason, code)`.
    pub fn shutdowns(&self) -> Vec<(u32, String, u32)> {
        if self.mode == Mode::Native {
            return self
                .output
                .lines()
                .filter_map(parse_native_shutdown)
                .map(|(reason, code)| (0, reason, code))
                .collect();
        }
        self.lines()
            .filter_map(|line| match line {
                Line::Hypervisor { tag, message } => parse_shutdown(tag, message),
                _ => None,
            })
            .collect()
    }

    /// The console text of domain `domid` (the `(dN) ` prefix removed).
    pub fn domain_output(&self, domid: u32) -> Vec<&str> {
        self.lines()
            .filter_map(|line| match line {
                Line::Guest { domid: d, text } if d == domid => Some(text),
                _ => None,
            })
            .collect()
    }

    /// The hypervisor's lines (`[hv] ...`), whole.
    pub fn hypervisor_lines(&self) -> Vec<&str> {
        self.output
            .lines()
            .filter(|l| l.starts_with("[hv] "))
            .collect()
    }

    /// True if the hypervisor panicked (`[hv] PANIC ...`).
    pub fn hypervisor_panicked(&self) -> bool {
        self.lines()
            .any(|l| matches!(l, Line::Hypervisor { tag: "PANIC", .. }))
    }

    /// True if some output line contains `needle`.
    pub fn contains_line(&self, needle: &str) -> bool {
        self.output.lines().any(|l| l.contains(needle))
    }

    /// Domain `domid`'s XTF-style verdict: the most severe of its reported results (`FAILURE > ERROR > SKIP >
    /// SUCCESS`). A domain that reported nothing is an `ERROR` ("crash/no result"), and so is one the hypervisor
    /// crashed, whatever it reported before.
    pub fn verdict(&self, domid: u32) -> Verdict {
        let reported: Vec<(TestResult, &str)> = self
            .result_lines()
            .into_iter()
            .filter(|(d, _, _)| *d == domid)
            .map(|(_, result, detail)| (result, detail))
            .collect();
        let crash = self
            .crashed_domains()
            .into_iter()
            .find(|(d, _)| *d == domid)
            .map(|(_, reason)| reason);
        let worst = reported.iter().max_by_key(|(result, _)| *result);
        match (worst, crash) {
            (None, Some(reason)) => Verdict {
                result: TestResult::Error,
                reason: format!("crash/no result: crashed: {reason}"),
            },
            (None, None) => Verdict {
                result: TestResult::Error,
                reason: "crash/no result".to_string(),
            },
            (Some((result, _)), Some(reason)) if *result < TestResult::Error => Verdict {
                result: TestResult::Error,
                reason: format!("reported {result} but was crashed: {reason}"),
            },
            (Some((result, detail)), _) => Verdict {
                result: *result,
                reason: if detail.is_empty() {
                    result.to_string()
                } else {
                    format!("{result}: {detail}")
                },
            },
        }
    }
}

impl fmt::Display for Outcome {
    /// The whole run, for assertion messages: exit, command, serial output, QEMU's stderr.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "exit: {} after {:.1?}", self.exit, self.elapsed)?;
        if !self.command.is_empty() {
            writeln!(f, "command: {}", self.command)?;
        }
        if let Some(script) = &self.script {
            writeln!(f, "input: {script}")?;
        }
        writeln!(
            f,
            "----- serial output ({} lines) -----",
            self.output.lines().count()
        )?;
        f.write_str(&self.output)?;
        if !self.output.is_empty() && !self.output.ends_with('\n') {
            writeln!(f)?;
        }
        if !self.stderr.trim().is_empty() {
            writeln!(f, "----- QEMU stderr -----")?;
            f.write_str(&self.stderr)?;
            if !self.stderr.ends_with('\n') {
                writeln!(f)?;
            }
        }
        writeln!(f, "----- end -----")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "\
SeaBIOS noise
[hv] INFO  hypervisor starting
(d0) guest kernel in ring 1
(d0) Test result: SUCCESS
(d1) Test result: SKIP: not here
(d1) Test result: FAILURE: wrong value
[hv] ERROR domain 2 crashed: page fault at 0xffff800000000000
[hv] ERROR rip=0xffffffff80001234 rsp=0xffffffff80100000
[hv] INFO  domain 0 shut down: poweroff code 0
[hv] INFO  domain 1 shut down: poweroff code 3
(d3) Test result: SUCCESS
[hv] ERROR domain 3 crashed: general protection fault
[hv] INFO  integrity: hypervisor text and rodata unchanged
";

    fn outcome() -> Outcome {
        Outcome::from_output(RUN, Exit::Hypervisor(2))
    }

    #[test]
    fn queries_find_results_crashes_and_shutdowns() {
        let o = outcome();
        assert_eq!(
            o.results(),
            [
                (0, TestResult::Success),
                (1, TestResult::Skip),
                (1, TestResult::Failure),
                (3, TestResult::Success)
            ]
        );
        assert_eq!(
            o.crashed_domains(),
            [
                (2, "page fault at 0xffff800000000000".to_string()),
                (3, "general protection fault".to_string())
            ]
        );
        assert_eq!(
            o.shutdowns(),
            [
                (0, "poweroff".to_string(), 0),
                (1, "poweroff".to_string(), 3)
            ]
        );
        assert_eq!(
            o.domain_output(0),
            ["guest kernel in ring 1", "Test result: SUCCESS"]
        );
        assert!(o.domain_output(7).is_empty());
        assert_eq!(o.exit_value(), Some(2));
        assert!(!o.hypervisor_panicked());
        assert!(o.contains_line("[hv] INFO  integrity: hypervisor text and rodata unchanged"));
        assert_eq!(o.hypervisor_lines().len(), 7);
    }

    #[test]
    fn verdicts_take_the_most_severe_result() {
        let o = outcome();
        assert_eq!(
            o.verdict(0),
            Verdict {
                result: TestResult::Success,
                reason: "SUCCESS".into()
            }
        );
        assert_eq!(
            o.verdict(1),
            Verdict {
                result: TestResult::Failure,
                reason: "FAILURE: wrong value".into()
            }
        );
        let crashed = o.verdict(2);
        assert_eq!(crashed.result, TestResult::Error);
        assert!(
            crashed.reason.contains("crash/no result") && crashed.reason.contains("page fault")
        );
        let late_crash = o.verdict(3);
        assert_eq!(late_crash.result, TestResult::Error);
        assert!(late_crash.reason.contains("general protection"));
        assert_eq!(
            o.verdict(9),
            Verdict {
                result: TestResult::Error,
                reason: "crash/no result".into()
            }
        );
    }

    #[test]
    fn display_shows_everything() {
        let mut o = outcome();
        o.stderr = "qemu: warning".into();
        let shown = o.to_string();
        assert!(shown.contains("hypervisor exit 0x2"));
        assert!(shown.contains(RUN));
        assert!(shown.contains("qemu: warning"));
        assert!(!shown.contains("input:"));
        o.script = Some("the script was waiting for step 2 of 3".into());
        assert!(
            o.to_string()
                .contains("input: the script was waiting for step 2 of 3")
        );
    }

    #[test]
    fn native_outcomes_read_plain_lines_as_the_machine_console() {
        let text = "guest kernel running in ring 0 (CS=0x8) on native\nTest result: SUCCESS\n(d1) not us\nnative: shut down: poweroff code 4\n";
        let mut o = Outcome::from_output(text, Exit::Hypervisor(1));
        o.mode = Mode::Native;
        assert_eq!(o.results(), [(0, TestResult::Success)]);
        assert_eq!(
            o.domain_output(0)[0],
            "guest kernel running in ring 0 (CS=0x8) on native"
        );
        assert_eq!(o.domain_output(1), ["not us"]);
        assert_eq!(o.shutdowns(), [(0, "poweroff".to_string(), 4)]);
        assert!(o.hypervisor_lines().is_empty());
        // The same text read as a PV run has no domain-0 lines and no shutdown.
        o.mode = Mode::Pv;
        assert!(o.results().is_empty());
        assert!(o.shutdowns().is_empty());
    }

    #[test]
    fn scenario_defaults() {
        let s = Scenario::new(&["test=hv-read", "demo"]);
        assert_eq!(s.domains, ["test=hv-read", "demo"]);
        assert_eq!(s.hv_cmdline, "loglevel=info");
        assert_eq!(s.memory_mib, 512);
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert_eq!(s.accel, Accel::Tcg);
        assert!(!s.icount);
        let images = Images {
            hypervisor: "/hv".into(),
            guest: "/g".into(),
            programs: "/p".into(),
            mini: "/m".into(),
        };
        assert_eq!(
            s.modules(&images)[1],
            Module {
                image: "/g".into(),
                cmdline: "demo".into()
            }
        );
    }
}
