//! `cargo xtask run`'s decisions and display: how the serial line is driven ([`Mode`]: the user's terminal,
//! a script typed at the shell's prompts, or nothing), what the user is told before booting, and the
//! [`Console`] that shows the serial output as it comes (prompts included) with hypervisor addresses
//! symbolized.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::input::Input;
use crate::runner::SerialSink;
use crate::shell::{self, Session};
use crate::symbolize::Symbolizer;

/// How `cargo xtask run` drives the serial line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Stdin is a terminal: the user types (QEMU's multiplexed stdio chardev, Ctrl-A X quits).
    Interactive,
    /// A script's command lines are typed at the shell's prompts, then Ctrl-D.
    Scripted {
        /// The script file.
        path: PathBuf,
        /// Its command lines.
        commands: Vec<String>,
    },
    /// No input (stdin is not a terminal and domain 0 does not run the shell).
    Plain,
}

impl Mode {
    /// Picks the mode: `--script` wins (and needs domain 0 to run the shell), then a terminal on stdin, then
    /// the demo script if domain 0 runs the shell, else no input.
    pub fn choose(
        domain0: &str,
        script: Option<&Path>,
        stdin_is_terminal: bool,
        root: &Path,
    ) -> Result<Mode, String> {
        let shell = shell::runs_shell(domain0);
        if let Some(path) = script {
            if !shell {
                return Err(format!(
                    "--script types at the shell's prompt, but domain 0 runs `{domain0}`, not `{}`",
                    shell::SHELL
                ));
            }
            return Self::scripted(path.to_path_buf());
        }
        if stdin_is_terminal {
            Ok(Mode::Interactive)
        } else if shell {
            Self::scripted(shell::demo_script_path(root))
        } else {
            Ok(Mode::Plain)
        }
    }

    fn scripted(path: PathBuf) -> Result<Mode, String> {
        let commands = shell::read_script(&path)?;
        Ok(Mode::Scripted { path, commands })
    }

    /// QEMU's serial input for this mode; a script waits at most `step_timeout` for each prompt.
    pub fn input(&self, step_timeout: Duration) -> Input {
        match self {
            Mode::Interactive => Input::Terminal,
            Mode::Scripted { commands, .. } => {
                Session::of_commands(commands).into_input(Some(step_timeout))
            }
            Mode::Plain => Input::Null,
        }
    }

    /// What to tell the user before booting (empty for [`Mode::Plain`]).
    pub fn notice(&self, shell: bool, step_timeout: Duration) -> String {
        match self {
            Mode::Interactive if shell => format!(
                "xtask: interactive: type commands at the `{}` prompt (`help` lists them); Ctrl-C interrupts \
                 the running program\nxtask: to quit, type `poweroff` in the shell, or press Ctrl-A then X \
                 (QEMU's escape: Ctrl-A C toggles its monitor, Ctrl-A H lists the rest)",
                shell::PROMPT.trim_end()
            ),
            Mode::Interactive => "xtask: interactive: what you type goes to domain 0's console; to quit, \
                 press Ctrl-A then X (QEMU's escape: Ctrl-A C toggles its monitor, Ctrl-A H lists the rest)"
                .to_string(),
            Mode::Scripted { path, commands } => format!(
                "xtask: scripted: typing the {} command line(s) of {} at the shell's prompts, then Ctrl-D \
                 (each prompt must come within {} s, see --timeout); run with a terminal on stdin to type \
                 yourself",
                commands.len(),
                path.display(),
                step_timeout.as_secs()
            ),
            Mode::Plain => String::new(),
        }
    }
}

/// The word that marks the hypervisor's boot-time CPU fidelity probe lines.
pub const FIDELITY_MARKER: &str = abi::exit::CPU_FIDELITY_MARKER;

/// The hypervisor's WARN lines about CPU fidelity in `output` (`[hv] WARN ... cpu-fidelity ...`), which `run`
/// repeats after QEMU exits so that they are the last thing the user sees.
pub fn fidelity_warnings(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|l| {
            matches!(crate::serial::parse_line(l), crate::serial::Line::Hypervisor { tag: "WARN", message }
                if message.contains(FIDELITY_MARKER))
        })
        .collect()
}

/// Shows the serial output: complete lines with hypervisor report addresses symbolized, and an unfinished
/// line (a prompt, an echo) as soon as it stops growing, continued in place when more of it comes.
pub struct Console<'a, W: Write> {
    out: W,
    symbolizer: Option<&'a Symbolizer>,
    /// Bytes of the current line already shown as a partial line.
    shown: usize,
}

impl<'a, W: Write> Console<'a, W> {
    /// A console writing to `out`, annotating with `symbolizer` if given.
    pub fn new(out: W, symbolizer: Option<&'a Symbolizer>) -> Self {
        Console {
            out,
            symbolizer,
            shown: 0,
        }
    }

    /// The writer (for tests).
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// The part of `text` after its first `shown` bytes (from the next character boundary if `shown` falls
/// inside a character; empty if `text` is not longer).
fn unshown(text: &str, shown: usize) -> &str {
    (shown..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .map_or("", |i| &text[i..])
}

impl<W: Write> SerialSink for Console<'_, W> {
    fn line(&mut self, line: &str) {
        let text = match self.symbolizer {
            Some(s) => s.annotate(line),
            None => line.to_string(),
        };
        let _ = writeln!(self.out, "{}", unshown(&text, self.shown));
        let _ = self.out.flush();
        self.shown = 0;
    }

    fn partial(&mut self, text: &str) {
        let _ = write!(self.out, "{}", unshown(text, self.shown));
        let _ = self.out.flush();
        self.shown = self.shown.max(text.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("xtask-runcmd-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_mode_follows_stdin_and_the_script_option() {
        let root = crate::workspace_root();
        assert_eq!(
            Mode::choose("shell", None, true, &root).unwrap(),
            Mode::Interactive
        );
        let Mode::Scripted { path, commands } = Mode::choose("shell", None, false, &root).unwrap()
        else {
            panic!("not scripted")
        };
        assert_eq!(path, root.join("xtask/demo.script"));
        assert!(commands.contains(&"hello".to_string()));
        assert_eq!(
            Mode::choose("test=console-hostile", None, false, &root).unwrap(),
            Mode::Plain
        );
        assert_eq!(
            Mode::choose("demo", None, true, &root).unwrap(),
            Mode::Interactive
        );

        let mine = scratch("mine", "# mine\nhello\n\nexitcode 0\n");
        for tty in [false, true] {
            assert_eq!(
                Mode::choose("shell", Some(&mine), tty, &root).unwrap(),
                Mode::Scripted {
                    path: mine.clone(),
                    commands: vec!["hello".into(), "exitcode 0".into()]
                }
            );
        }
        let err = Mode::choose("demo", Some(&mine), false, &root).unwrap_err();
        assert!(err.contains("domain 0 runs `demo`"), "{err}");
        std::fs::remove_file(&mine).unwrap();
        let err = Mode::choose("shell", Some(&mine), false, &root).unwrap_err();
        assert!(err.contains("script "), "{err}");
    }

    #[test]
    fn each_mode_has_its_input_and_notice() {
        let t = Duration::from_secs(60);
        assert_eq!(Mode::Interactive.input(t), Input::Terminal);
        assert_eq!(Mode::Plain.input(t), Input::Null);
        let scripted = Mode::Scripted {
            path: "demo.script".into(),
            commands: vec!["hello".into()],
        };
        let input = scripted.input(t);
        assert_eq!(input.steps().len(), 2);
        assert_eq!(input.steps()[1].bytes, [shell::CTRL_D]);
        assert_eq!(input.step_timeout(), Some(t));

        let notice = Mode::Interactive.notice(true, t);
        for needed in ["poweroff", "Ctrl-A then X", "Ctrl-C interrupts"] {
            assert!(notice.contains(needed), "{notice}");
        }
        let other = Mode::Interactive.notice(false, t);
        assert!(other.contains("Ctrl-A then X") && !other.contains("poweroff"));
        assert!(
            scripted
                .notice(true, t)
                .contains("1 command line(s) of demo.script")
        );
        assert!(Mode::Plain.notice(false, t).is_empty());
    }

    #[test]
    fn the_console_continues_a_partial_line_in_place() {
        let mut c = Console::new(Vec::new(), None);
        c.line("[hv] INFO  booting");
        c.partial("pvsh$ ");
        c.partial("pvsh$ hel");
        c.line("pvsh$ hello");
        c.line("Hello from ring 3!");
        c.partial("pvsh$ ");
        c.line("pvsh$ ");
        let out = String::from_utf8(c.into_inner()).unwrap();
        assert_eq!(
            out,
            "[hv] INFO  booting\npvsh$ hello\nHello from ring 3!\npvsh$ \n"
        );
    }

    #[test]
    fn fidelity_warnings_are_the_hypervisor_warn_lines_of_the_probe() {
        let output = "[hv] INFO  cpu-fidelity: passed\n\
                      [hv] WARN  cpu-fidelity: a null SS ran a privileged instruction at CPL 0\n\
                      (d0) [hv] WARN  cpu-fidelity: forged by a guest\n\
                      [hv] WARN  something else\n";
        assert_eq!(
            fidelity_warnings(output),
            ["[hv] WARN  cpu-fidelity: a null SS ran a privileged instruction at CPL 0"]
        );
        assert!(fidelity_warnings("[hv] INFO  cpu-fidelity: passed\n").is_empty());
    }

    #[test]
    fn unshown_text_respects_character_boundaries() {
        assert_eq!(unshown("abc", 0), "abc");
        assert_eq!(unshown("abc", 2), "c");
        assert_eq!(unshown("abc", 3), "");
        assert_eq!(unshown("abc", 9), "");
        assert_eq!(unshown("aé!", 2), "!");
    }
}
