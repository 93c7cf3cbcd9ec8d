//! How the guest kernel runs: as a PV domain under the hypervisor (`Pv`, the default) or directly on the
//! emulated PC (`Native`: QEMU loads the guest-kernel ELF itself through its multiboot entry). The same
//! image serves both; the kernel picks its platform backend from the entry it came in by.
//!
//! A native run has no hypervisor: no `[hv]` lines, no `(dN) ` prefixes, and the kernel itself writes the
//! exit value to `isa-debug-exit` (the same `abi::exit` values a one-domain PV run ends with). The
//! [`Outcome`] of a native run reads its unprefixed lines as domain 0's console and the kernel's
//! [`NATIVE_SHUTDOWN_PREFIX`] line as domain 0's shutdown, so queries and tests work on both.

use std::fmt;
use std::str::FromStr;

use crate::images::Images;
use crate::qemu::Exit;
use crate::scenario::{Outcome, Scenario, run_scenario};

/// Where the kernel runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Ring 0 on the bare (emulated) PC: `qemu -kernel guest-kernel -append CMDLINE`.
    Native,
    /// A ring-1 PV domain under the ring1pv hypervisor.
    #[default]
    Pv,
}

impl Mode {
    /// Every mode, in table order.
    pub const ALL: [Mode; 2] = [Mode::Native, Mode::Pv];

    /// The mode's name on command lines and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Pv => "pv",
        }
    }

    /// The platform backend the kernel reports in its banner in this mode (`on <name>;`).
    pub fn backend_name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Pv => "xen-pv",
        }
    }

    /// The privilege level the kernel runs at (what `ring` prints).
    pub fn kernel_ring(self) -> u8 {
        match self {
            Mode::Native => 0,
            Mode::Pv => 1,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s.trim())
            .ok_or_else(|| format!("unknown mode {s:?} (expected native or pv)"))
    }
}

/// Parses a comma-separated list of modes (`native,pv`); duplicates and empty lists are refused.
pub fn parse_modes(list: &str) -> Result<Vec<Mode>, String> {
    let mut modes = Vec::new();
    for word in list.split(',') {
        let m: Mode = word.parse()?;
        if modes.contains(&m) {
            return Err(format!("mode {m} given twice in {list:?}"));
        }
        modes.push(m);
    }
    Ok(modes)
}

/// What the native kernel prints as its last line before writing the exit value:
/// `native: shut down: <poweroff|crash> code <C>` (the guest kernel's `platform::native` prints it).
pub const NATIVE_SHUTDOWN_PREFIX: &str = "native: shut down: ";

/// Parses the native kernel's shutdown line into `(reason, code)`.
pub fn parse_native_shutdown(line: &str) -> Option<(String, u32)> {
    let rest = line
        .trim_end_matches('\r')
        .strip_prefix(NATIVE_SHUTDOWN_PREFIX)?;
    let (reason, code) = rest.rsplit_once(" code ")?;
    Some((reason.to_string(), code.trim().parse().ok()?))
}

/// Fixes up the exit of a native run: QEMU's status 1 is both "value 0 written to isa-debug-exit" and
/// QEMU's own failure; the runner counts it as the former only if the hypervisor spoke, which natively it
/// never does. Natively, the kernel having printed its shutdown line decides instead.
pub fn native_exit(exit: Exit, output: &str) -> Exit {
    let kernel_shut_down = output.lines().any(|l| parse_native_shutdown(l).is_some());
    match exit {
        Exit::QemuFailed(1) if kernel_shut_down => Exit::Hypervisor(abi::exit::EXIT_OK),
        other => other,
    }
}

/// The scenario that boots the guest kernel once in `mode` with command line `cmdline` (PV: one domain
/// under the default hypervisor command line; native: the kernel alone). Adjust its fields (input,
/// timeout, icount, ...) before running it.
pub fn scenario(mode: Mode, cmdline: &str) -> Scenario {
    let mut s = Scenario::new(&[cmdline]);
    s.mode = mode;
    s
}

/// Boots `cmdline` in `mode` non-interactively and returns the outcome.
pub fn run(images: &Images, mode: Mode, cmdline: &str) -> Result<Outcome, String> {
    run_scenario(images, &scenario(mode, cmdline))
}

/// The scenario that boots the shell alone in `mode` and types `commands` at its prompts, then Ctrl-D
/// (each prompt must come within `step_timeout`): the shell logs out with its last status, which becomes
/// the poweroff code. Under PV domain 0's console is direct, as in `cargo xtask run`, so prompts are
/// seen before a newline.
pub fn shell_scenario<S: AsRef<str>>(
    mode: Mode,
    commands: &[S],
    step_timeout: std::time::Duration,
) -> Scenario {
    let mut s = scenario(mode, crate::shell::SHELL);
    s.hv_cmdline = format!(
        "{} {}",
        crate::scenario::DEFAULT_HV_CMDLINE,
        crate::shell::DOM0_CONSOLE_DIRECT
    );
    s.input = crate::shell::Session::of_commands(commands).into_input(Some(step_timeout));
    s
}

/// Boots the shell alone in `mode`, types `commands` (see [`shell_scenario`]) and returns the outcome.
pub fn run_shell<S: AsRef<str>>(
    images: &Images,
    mode: Mode,
    commands: &[S],
    step_timeout: std::time::Duration,
) -> Result<Outcome, String> {
    run_scenario(images, &shell_scenario(mode, commands, step_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Mode::ALL {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
        }
        assert_eq!(Mode::default(), Mode::Pv);
        assert!("hvm".parse::<Mode>().is_err());
        assert_eq!(Mode::Native.kernel_ring(), 0);
        assert_eq!(Mode::Pv.kernel_ring(), 1);
    }

    #[test]
    fn mode_lists() {
        assert_eq!(parse_modes("native,pv"), Ok(vec![Mode::Native, Mode::Pv]));
        assert_eq!(parse_modes("pv"), Ok(vec![Mode::Pv]));
        assert!(parse_modes("pv,pv").is_err());
        assert!(parse_modes("").is_err());
        assert!(parse_modes("native,").is_err());
    }

    #[test]
    fn native_shutdown_lines_and_exit() {
        assert_eq!(
            parse_native_shutdown("native: shut down: poweroff code 3\r"),
            Some(("poweroff".to_string(), 3))
        );
        assert_eq!(parse_native_shutdown("native: shut down: poweroff"), None);
        assert_eq!(
            parse_native_shutdown("(d0) native: shut down: crash code 1"),
            None
        );
        let said = "banner\nnative: shut down: poweroff code 0\n";
        assert_eq!(native_exit(Exit::QemuFailed(1), said), Exit::Hypervisor(0));
        assert_eq!(
            native_exit(Exit::QemuFailed(1), "banner\n"),
            Exit::QemuFailed(1)
        );
        assert_eq!(native_exit(Exit::Hypervisor(1), said), Exit::Hypervisor(1));
        assert_eq!(native_exit(Exit::Timeout, said), Exit::Timeout);
    }

    #[test]
    fn scenarios_carry_the_mode() {
        let s = scenario(Mode::Native, "shell");
        assert_eq!(s.mode, Mode::Native);
        assert_eq!(s.domains, ["shell"]);
        assert_eq!(scenario(Mode::Pv, "demo").mode, Mode::Pv);
        let sh = shell_scenario(Mode::Native, &["hello"], std::time::Duration::from_secs(5));
        assert_eq!(
            (sh.mode, sh.domains.as_slice()),
            (Mode::Native, ["shell".to_string()].as_slice())
        );
        assert!(sh.hv_cmdline.contains("dom0_console=direct"));
        assert_ne!(sh.input, crate::qemu::Input::Null, "the commands are typed");
    }
}
