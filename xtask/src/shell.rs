//! The guest OS's shell as xtask drives it: its prompt, the default domains of `cargo xtask run`, script
//! files of command lines (the demo script), and [`Session`]s — the typing steps that run commands at
//! successive prompts and end with Ctrl-D.
//!
//! The contract with the guest (`user/src/bin/sh.rs` and the guest kernel): the shell prints [`PROMPT`]
//! (no newline) whenever it is ready for a line; the kernel's line discipline takes CR or LF as Enter,
//! Ctrl-C ([`CTRL_C`]) interrupts the foreground program, and Ctrl-D ([`CTRL_D`]) on an empty line is the
//! end of input, after which the shell prints `logout` and exits with the status of its last command; the
//! kernel then powers the domain off with that code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::input::{Input, Script, Step};

/// The shell's prompt.
pub const PROMPT: &str = "pvsh$ ";
/// Ctrl-C: interrupts the foreground program.
pub const CTRL_C: u8 = 0x03;
/// Ctrl-D: end of input on an empty line.
pub const CTRL_D: u8 = 0x04;
/// What the shell prints when its input ends.
pub const LOGOUT: &str = "logout";

/// The guest command line that starts the shell as pid 1 on the console.
pub const SHELL: &str = "shell";
/// The guest command line of the domain that answers `evtchn-ping`.
pub const PING_SERVER: &str = "ping-server";
/// The guest command line of the other domains `--domains N` adds (the kernel's non-interactive demo).
pub const DEMO: &str = "demo";

/// The guest command line of an emulate or hvm domain after the first (`--domains pv,emulate`): the
/// Popek–Goldberg table, which runs to the end without the hypervisor's PV services (the demo and the ping
/// server need hypercalls, which an unmodified kernel never makes).
pub const FULLVIRT_DEFAULT: &str = "sensitive";

/// The hypervisor option that sends domain 0's console output to the serial line as it comes (no `(d0)`
/// prefix, no waiting for a newline), so a prompt shows and typed characters echo at once.
pub const DOM0_CONSOLE_DIRECT: &str = "dom0_console=direct";

/// The name under which `cargo xtask run` (with the shell) passes the guest kernel as an available image,
/// for `xl create guest ...`.
pub const XL_IMAGE: &str = "guest";

/// The default script of `cargo xtask run` when stdin is not a terminal, relative to the workspace root.
pub const DEMO_SCRIPT: &str = "xtask/demo.script";

/// How long a scripted `cargo xtask run` waits for each prompt (and, after the last, for QEMU to exit).
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The default domains of `cargo xtask run`: domain 0 the shell, domain 1 the ping server, any further ones
/// the demo.
pub fn default_domains(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| match i {
            0 => SHELL,
            1 => PING_SERVER,
            _ => DEMO,
        })
        .map(String::from)
        .collect()
}

/// The default domains of `cargo xtask run --domains KIND,KIND,...`, each led by its kind's `kind=` word
/// (none for pv): domain 0 the shell; a pv domain 1 the ping server when domain 0 is pv too (it answers
/// domain 0's `evtchn-ping`, which needs event channels), further pv domains the demo; emulate and hvm
/// domains after the first [`FULLVIRT_DEFAULT`].
pub fn default_domains_of_kinds(kinds: &[crate::Mode]) -> Vec<String> {
    let pv0 = kinds.first() == Some(&crate::Mode::Pv);
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let cmdline = match (i, kind) {
                (0, _) => SHELL,
                (1, crate::Mode::Pv) if pv0 => PING_SERVER,
                (_, crate::Mode::Pv) => DEMO,
                _ => FULLVIRT_DEFAULT,
            };
            kind.module_cmdline(cmdline)
        })
        .collect()
}

/// True if a domain with this command line runs the shell. As in the guest's parser, the last command word
/// decides (a word without `=`, or `test=NAME`); other `key=value` words are options.
pub fn runs_shell(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .rfind(|word| !word.contains('=') || word.starts_with("test="))
        == Some(SHELL)
}

/// `<root>/xtask/demo.script`.
pub fn demo_script_path(root: &Path) -> PathBuf {
    root.join(DEMO_SCRIPT)
}

/// The command lines of a script: one command per line, surrounding whitespace removed; blank lines and
/// lines whose first non-blank character is `#` are skipped. A line with a control character (which the
/// line discipline would treat as an editing key) is refused, naming its line number.
pub fn parse_script(text: &str) -> Result<Vec<String>, String> {
    let mut commands = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(format!(
                "line {}: control character {:?} in a command line",
                i + 1,
                c
            ));
        }
        commands.push(line.to_string());
    }
    Ok(commands)
}

/// Reads and parses a script file (see [`parse_script`]).
pub fn read_script(path: &Path) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("script {}: {e}", path.display()))?;
    parse_script(&text).map_err(|e| format!("script {}: {e}", path.display()))
}

/// Typing steps for the shell, built in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    steps: Vec<Step>,
}

impl Session {
    /// No steps yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A session that runs each command at its own prompt, then logs out (Ctrl-D at the next prompt).
    pub fn of_commands<S: AsRef<str>>(commands: &[S]) -> Self {
        commands
            .iter()
            .fold(Session::new(), |s, c| s.command(c.as_ref()))
            .logout()
    }

    /// At the next prompt, type `line` and Enter (LF).
    pub fn command(self, line: &str) -> Self {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.when(PROMPT, &bytes)
    }

    /// When `trigger` appears next, type `bytes` (e.g. Ctrl-C once a program has started).
    pub fn when(mut self, trigger: &str, bytes: &[u8]) -> Self {
        self.steps.push(Step::new(trigger, bytes));
        self
    }

    /// When `trigger` appears, give the serial input back to domain 0 (Ctrl-] `c`) and resynchronise on
    /// domain 0's shell: an `echo` of its status, so that the next prompt waited for is domain 0's.
    pub fn console_to_domain_0(self, trigger: &str) -> Self {
        self.when(trigger, &[0x1d, b'c'])
            .when("[hv] console input: domain 0", b"echo resync-$?\n")
            .when("resync-0", b"")
    }

    /// At the next prompt, type Ctrl-D: the shell prints `logout` and exits with its last status.
    pub fn logout(self) -> Self {
        self.when(PROMPT, &[CTRL_D])
    }

    /// The steps so far.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The serial input that types this session, killing QEMU if a step's trigger does not come within
    /// `step_timeout` (if given).
    pub fn into_input(self, step_timeout: Option<Duration>) -> Input {
        Input::Script(Script {
            steps: self.steps,
            step_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_skip_comments_and_blank_lines() {
        let text = "# the demo\n\nhelp\n   hello  \n\t# indented comment\necho $?\nspin 2 &\n";
        assert_eq!(
            parse_script(text).unwrap(),
            ["help", "hello", "echo $?", "spin 2 &"]
        );
        assert_eq!(parse_script("").unwrap(), Vec::<String>::new());
        let err = parse_script("hello\nbad\u{4}line\n").unwrap_err();
        assert!(err.starts_with("line 2: control character"), "{err}");
        assert_eq!(parse_script("a\tb\r\n").unwrap(), ["a\tb"]);
    }

    #[test]
    fn a_session_types_one_command_per_prompt_then_ctrl_d() {
        let s = Session::of_commands(&["hello", "exitcode 3"]);
        assert_eq!(
            s.steps(),
            [
                Step::new("pvsh$ ", b"hello\n"),
                Step::new("pvsh$ ", b"exitcode 3\n"),
                Step::new("pvsh$ ", b"\x04"),
            ]
        );
        let empty = Session::of_commands::<&str>(&[]);
        assert_eq!(empty.steps(), [Step::new("pvsh$ ", b"\x04")]);
    }

    #[test]
    fn a_session_can_wait_for_program_output() {
        let s = Session::new()
            .command("spin")
            .when("spin: pid", &[CTRL_C])
            .command("hello")
            .logout();
        let input = s.clone().into_input(Some(Duration::from_secs(9)));
        assert_eq!(input.steps().len(), 4);
        assert_eq!(input.steps()[1], Step::new("spin: pid", b"\x03"));
        assert_eq!(input.step_timeout(), Some(Duration::from_secs(9)));
        assert!(input.is_scripted());
    }

    #[test]
    fn default_domains_and_the_shell_test() {
        assert_eq!(default_domains(1), ["shell"]);
        assert_eq!(default_domains(2), ["shell", "ping-server"]);
        assert_eq!(default_domains(4), ["shell", "ping-server", "demo", "demo"]);
        assert!(runs_shell("shell"));
        assert!(runs_shell("loglevel=x shell"));
        assert!(runs_shell("demo shell verbose=1"));
        assert!(!runs_shell("test=shell-free"));
        assert!(!runs_shell("shell test=boot"));
        assert!(!runs_shell("shell demo"));
        assert!(!runs_shell("demo"));
        assert!(!runs_shell(""));
    }

    #[test]
    fn the_demo_script_exists_and_ends_cleanly() {
        let root = crate::workspace_root();
        let commands = read_script(&demo_script_path(&root)).expect("the demo script parses");
        for wanted in [
            "help",
            "hello",
            "ring",
            "ps",
            "mem",
            "uptime",
            "domains",
            "sleep 1",
            "spin 2 &",
            "fault",
            "exitcode 3",
            "echo $?",
        ] {
            assert!(
                commands.iter().any(|c| c == wanted),
                "the demo script lacks `{wanted}`: {commands:?}"
            );
        }
        assert!(commands.iter().any(|c| c.starts_with("evtchn-ping")));
        // `spin 2 &` is followed by a `ps` that shows it running.
        let spin = commands.iter().position(|c| c == "spin 2 &").unwrap();
        assert_eq!(commands.get(spin + 1).map(String::as_str), Some("ps"));
        // The last command must succeed: the shell exits with its status, which becomes the domain's
        // poweroff code and so the exit status of `cargo xtask run`.
        assert_eq!(commands.last().map(String::as_str), Some("hello"));
    }
}
