//! How the guest kernel runs: as a PV domain under the hypervisor (`Pv`, the default), directly on the
//! emulated PC (`Native`: QEMU loads the guest-kernel ELF itself through its multiboot entry), or as an
//! unmodified kernel under the hypervisor's full virtualization: deprivileged to ring 1 by trap-and-emulate
//! (`Emulate`) or in its own ring 0 under AMD SVM (`Hvm`). The same image serves all four; the kernel picks
//! its platform backend from the entry it came in by (under emulate and hvm it believes it is native).
//!
//! Emulate and hvm runs boot the hypervisor with the kernel as a module whose command line starts with
//! `kind=emulate` (resp. `kind=hvm`, see [`Mode::kind_word`]); their [`Outcome`]s read like PV runs
//! (`[hv]` lines, `(dN) ` prefixes). [`unsupported`] recognizes a run whose hypervisor cannot (yet) build
//! that kind, so tests can report SKIP there instead of failing.
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
    /// The unmodified (native-entry) kernel deprivileged to ring 1 under the hypervisor: privileged
    /// instructions trap and are emulated, shadow page tables (`kind=emulate`).
    Emulate,
    /// The unmodified kernel in its own ring 0 under AMD SVM with nested paging, entered at its 32-bit
    /// multiboot entry (`kind=hvm`).
    Hvm,
}

impl Mode {
    /// Every mode, in table order.
    pub const ALL: [Mode; 4] = [Mode::Native, Mode::Pv, Mode::Emulate, Mode::Hvm];

    /// The modes a domain of the hypervisor can run in (the `--domains` kind words).
    pub const DOMAIN_KINDS: [Mode; 3] = [Mode::Pv, Mode::Emulate, Mode::Hvm];

    /// The mode's name on command lines and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Pv => "pv",
            Mode::Emulate => "emulate",
            Mode::Hvm => "hvm",
        }
    }

    /// The platform backend the kernel reports in its banner in this mode (`on <name>;`). Under emulate
    /// and hvm the kernel is unmodified and entered on its native path: it believes it is native.
    pub fn backend_name(self) -> &'static str {
        match self {
            Mode::Native | Mode::Emulate | Mode::Hvm => "native",
            Mode::Pv => "xen-pv",
        }
    }

    /// The privilege level the kernel runs at (the RPL of CS, which its banner prints). Under emulate the
    /// kernel believes it is in ring 0 but runs in ring 1, and reading CS (unprivileged, never trapped)
    /// shows it; under hvm it really is in (the guest's) ring 0.
    pub fn kernel_ring(self) -> u8 {
        match self {
            Mode::Native | Mode::Hvm => 0,
            Mode::Pv | Mode::Emulate => 1,
        }
    }

    /// True if the kernel runs under the ring1pv hypervisor (every mode but native).
    pub fn under_hypervisor(self) -> bool {
        self != Mode::Native
    }

    /// The word a domain's module command line starts with to ask the hypervisor for this kind
    /// (`kind=emulate`, `kind=hvm`); none for PV (the hypervisor's default) and native (no hypervisor).
    pub fn kind_word(self) -> Option<&'static str> {
        match self {
            Mode::Emulate => Some("kind=emulate"),
            Mode::Hvm => Some("kind=hvm"),
            Mode::Native | Mode::Pv => None,
        }
    }

    /// `cmdline` as a module command line of this kind: the kind word first, unless the command line
    /// already has a `kind=` word of its own.
    pub fn module_cmdline(self, cmdline: &str) -> String {
        match self.kind_word() {
            Some(word) if !cmdline.split_whitespace().any(|w| w.starts_with("kind=")) => {
                if cmdline.trim().is_empty() {
                    word.to_string()
                } else {
                    format!("{word} {}", cmdline.trim())
                }
            }
            _ => cmdline.to_string(),
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
            .ok_or_else(|| format!("unknown mode {s:?} (expected native, pv, emulate or hvm)"))
    }
}

/// `--domains`: a number of domains, or one kind per domain (`pv,emulate,hvm`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Domains {
    /// This many domains of the run's mode.
    Count(u32),
    /// One domain per entry, of that kind (pv, emulate or hvm).
    Kinds(Vec<Mode>),
}

impl Domains {
    /// How many domains.
    pub fn count(&self) -> usize {
        match self {
            Domains::Count(n) => *n as usize,
            Domains::Kinds(k) => k.len(),
        }
    }
}

impl FromStr for Domains {
    type Err = String;

    /// A number in 1..=`abi::domctl::MAX_DOMAINS`, or a comma-separated list of kinds (pv, emulate, hvm;
    /// repeats allowed) of at most that many entries.
    fn from_str(s: &str) -> Result<Self, String> {
        let max = abi::domctl::MAX_DOMAINS;
        let s = s.trim();
        if let Ok(n) = s.parse::<u64>() {
            return if (1..=max as u64).contains(&n) {
                Ok(Domains::Count(n as u32))
            } else {
                Err(format!("{n} is not in 1..={max}"))
            };
        }
        let mut kinds = Vec::new();
        for word in s.split(',') {
            match word.trim().parse::<Mode>() {
                Ok(m) if Mode::DOMAIN_KINDS.contains(&m) => kinds.push(m),
                Ok(m) => {
                    return Err(format!(
                        "a domain cannot be `{m}`: the kinds are pv, emulate and hvm (or give a number)"
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "{word:?} is neither a number of domains nor a kind (pv, emulate, hvm)"
                    ));
                }
            }
        }
        if kinds.len() > max {
            return Err(format!("{} domains given, at most {max}", kinds.len()));
        }
        Ok(Domains::Kinds(kinds))
    }
}

/// The hypervisor words that show it refused to build a domain of some kind.
const REFUSAL_WORDS: [&str; 6] = [
    "unsupported",
    "not supported",
    "unknown kind",
    "not available",
    "cannot",
    "no svm",
];

/// Why `outcome` (a run in `mode`) shows that its hypervisor cannot run `mode`'s kind of domain yet, or
/// `None` if it ran it (or the mode needs nothing from the hypervisor: native, pv). Two signs: a
/// hypervisor ERROR or WARN line naming the kind and refusing it (`... hvm ... not supported ...`), or a
/// hypervisor that never names the kind at all (one that predates it ignores the `kind=` word and builds
/// a PV domain; an implementation of the kind names it at least in its `exits:` line).
pub fn unsupported(mode: Mode, outcome: &Outcome) -> Option<String> {
    let kind = match mode {
        Mode::Emulate | Mode::Hvm => mode.name(),
        Mode::Native | Mode::Pv => return None,
    };
    let kind_word = format!("kind={kind}");
    let names_kind = |message: &str| {
        message
            .replace(&kind_word, "")
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w.eq_ignore_ascii_case(kind))
    };
    let mut named = false;
    for line in outcome.lines() {
        if let crate::serial::Line::Hypervisor { tag, message } = line
            && names_kind(message)
        {
            named = true;
            let lower = message.to_ascii_lowercase();
            if matches!(tag, "ERROR" | "WARN") && REFUSAL_WORDS.iter().any(|w| lower.contains(w)) {
                return Some(format!("the hypervisor refused it: {message}"));
            }
        }
    }
    (!named)
        .then(|| format!("this hypervisor does not know kind={kind} (no hypervisor line names it)"))
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
        assert_eq!(
            Mode::ALL.map(Mode::name),
            ["native", "pv", "emulate", "hvm"]
        );
        assert!("xen".parse::<Mode>().is_err());
        assert_eq!(Mode::ALL.map(Mode::kernel_ring), [0, 1, 1, 0]);
        assert_eq!(
            Mode::ALL.map(Mode::backend_name),
            ["native", "xen-pv", "native", "native"]
        );
        assert!(!Mode::Native.under_hypervisor() && Mode::Hvm.under_hypervisor());
    }

    #[test]
    fn module_command_lines_lead_with_the_kind_word() {
        assert_eq!(Mode::Emulate.module_cmdline("shell"), "kind=emulate shell");
        assert_eq!(Mode::Hvm.module_cmdline(""), "kind=hvm");
        assert_eq!(Mode::Hvm.module_cmdline("kind=pv shell"), "kind=pv shell");
        assert_eq!(Mode::Pv.module_cmdline("shell"), "shell");
        assert_eq!(Mode::Native.module_cmdline("a b"), "a b");
        let s = scenario(Mode::Emulate, "test=x");
        let images = Images::paths(std::path::Path::new("/ws"), crate::Profile::Release);
        assert_eq!(s.modules(&images)[0].cmdline, "kind=emulate test=x");
        assert_eq!(
            scenario(Mode::Pv, "test=x").modules(&images)[0].cmdline,
            "test=x"
        );
    }

    #[test]
    fn domains_are_a_number_or_a_kind_list() {
        assert_eq!("3".parse::<Domains>(), Ok(Domains::Count(3)));
        assert_eq!(
            "pv,emulate,hvm,pv".parse::<Domains>(),
            Ok(Domains::Kinds(vec![
                Mode::Pv,
                Mode::Emulate,
                Mode::Hvm,
                Mode::Pv
            ]))
        );
        assert_eq!("hvm".parse::<Domains>().map(|d| d.count()), Ok(1));
        for bad in ["0", "129", "native", "pv,native", "pv,", "", "pv;hvm", "-1"] {
            assert!(bad.parse::<Domains>().is_err(), "{bad:?}");
        }
        assert!("129".parse::<Domains>().unwrap_err().contains("128"));
        let many = vec!["pv"; 129].join(",");
        assert!(many.parse::<Domains>().is_err());
    }

    #[test]
    fn unsupported_kinds_are_recognized() {
        let out = |text: &str| Outcome::from_output(text, Exit::Hypervisor(2));
        // A hypervisor that predates the kinds: the kind appears only in the echoed command line.
        let old = out(
            "[hv] INFO  domain 0: 16 MiB, image 0x100000..0x1a2000, cmdline 'kind=hvm shell'
             [hv] ERROR domain 0 crashed: general protection fault
",
        );
        assert!(
            unsupported(Mode::Hvm, &old)
                .unwrap()
                .contains("does not know kind=hvm")
        );
        // A refusal naming the kind.
        let refused = out(
            "[hv] ERROR domain 0: cannot build an hvm domain: SVM not supported by this CPU
",
        );
        assert!(
            unsupported(Mode::Hvm, &refused)
                .unwrap()
                .contains("refused")
        );
        // An implementation: it names the kind (at least in its exits line); a crash is not a refusal.
        let ran = out("[hv] INFO  domain 0 (hvm): entered at 0x100040
(d0) mini: hello
             [hv] ERROR domain 0 crashed: triple fault
             [hv] INFO  exits: domain 0 (hvm): total=120 ioio=100 hlt=20
");
        assert_eq!(unsupported(Mode::Hvm, &ran), None);
        assert!(
            unsupported(Mode::Emulate, &ran).is_some(),
            "emulate is not named"
        );
        // Native and PV need nothing from the hypervisor.
        assert_eq!(unsupported(Mode::Pv, &old), None);
        assert_eq!(unsupported(Mode::Native, &old), None);
        // A guest printing the refusal words does not count.
        let guest = out("(d0) hvm not supported
[hv] INFO  exits: domain 0 (hvm): total=1 hlt=1
");
        assert_eq!(unsupported(Mode::Hvm, &guest), None);
    }

    #[test]
    fn mode_lists() {
        assert_eq!(parse_modes("native,pv"), Ok(vec![Mode::Native, Mode::Pv]));
        assert_eq!(parse_modes("native,pv,emulate,hvm"), Ok(Mode::ALL.to_vec()));
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
