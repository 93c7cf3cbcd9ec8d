//! QEMU: the command line that boots the hypervisor with one multiboot module per domain, installing QEMU,
//! and mapping its exit status back. Running it (input, streaming, timeouts) is [`crate::runner`]; its
//! items are re-exported here.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

pub use crate::input::{Input, Script, Step};
pub use crate::qemu_choice::Qemu;
pub use crate::runner::{Captured, SerialSink, for_each_line, run, run_with};

use abi::exit::{
    EXIT_BOOT_ERROR, EXIT_DOMAIN_CRASHED, EXIT_DOMAIN_FAILED, EXIT_HYPERVISOR_PANIC, EXIT_OK,
};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// What the user should run when QEMU is missing and we cannot install it ourselves.
pub const QEMU_INSTALL_HINT: &str =
    "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-system-x86";

/// Default guest RAM in MiB (`-m`).
pub const DEFAULT_MEMORY_MIB: u32 = 512;

/// QEMU accelerator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Software emulation (works everywhere; the default).
    #[default]
    Tcg,
    /// Hardware virtualization (needs /dev/kvm and a CPU showing vmx or svm; refused with an
    /// explanation otherwise, see `xtask::kvm`).
    Kvm,
}

impl Accel {
    /// The `-accel` value.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// Doubles every comma: QEMU's multiboot module list is comma separated and `,,` stands for a literal comma.
pub fn escape_commas(s: &str) -> String {
    s.replace(',', ",,")
}

/// One multiboot module: a guest kernel image and the command line of its domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The guest kernel ELF.
    pub image: PathBuf,
    /// The domain's command line (e.g. `demo` or `test=unknown-hypercall`).
    pub cmdline: String,
}

/// The `-initrd` value: `"<image> <cmdline>,<image> <cmdline>,..."` with commas escaped; `None` for no
/// modules at all (then `-initrd` is left out, and the hypervisor reports that it has nothing to run).
///
/// QEMU splits each module at its first space into file name and command line, so an image path containing a
/// space cannot be passed and is refused.
pub fn initrd_arg(modules: &[Module]) -> Result<Option<String>, String> {
    if modules.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::with_capacity(modules.len());
    for module in modules {
        let path = module
            .image
            .to_str()
            .ok_or_else(|| format!("{} is not valid UTF-8", module.image.display()))?;
        if path.contains(char::is_whitespace) {
            return Err(format!(
                "the guest image path {path:?} contains whitespace, which QEMU's multiboot cannot pass"
            ));
        }
        let cmdline = module.cmdline.trim();
        let entry = if cmdline.is_empty() {
            path.to_string()
        } else {
            format!("{path} {cmdline}")
        };
        parts.push(escape_commas(&entry));
    }
    Ok(Some(parts.join(",")))
}

/// Everything that goes on QEMU's command line.
#[derive(Clone, Debug)]
pub struct Machine<'a> {
    /// The hypervisor ELF (`-kernel`).
    pub hypervisor: &'a Path,
    /// The hypervisor command line (`-append`).
    pub hv_cmdline: &'a str,
    /// One module per domain, in domain id order.
    pub modules: &'a [Module],
    /// `-m`, in MiB.
    pub memory_mib: u32,
    /// `-accel`.
    pub accel: Accel,
    /// Start paused with the gdb stub on tcp::1234 (`-s -S`).
    pub gdb: bool,
    /// Count instructions instead of time ([`ICOUNT_ARGS`]): the TSC advances by one per executed
    /// instruction, deterministically. TCG only.
    pub icount: bool,
    /// The user's terminal drives the serial line ([`SERIAL_INTERACTIVE`]) instead of a plain stdio serial
    /// port without a monitor ([`SERIAL_PLAIN`]).
    pub interactive: bool,
}

/// The serial line of non-interactive runs: QEMU's stdin and stdout, no monitor.
pub const SERIAL_PLAIN: [&str; 4] = ["-serial", "stdio", "-monitor", "none"];

/// The serial line of interactive runs: one stdio chardev, multiplexed (`mux=on`) between the serial port
/// and the monitor, with `signal=off` so that Ctrl-C is a byte for the guest rather than a signal for QEMU;
/// Ctrl-A is the multiplexer's escape (Ctrl-A X quits, Ctrl-A C switches to the monitor and back).
pub const SERIAL_INTERACTIVE: [&str; 6] = [
    "-chardev",
    "stdio,id=console,mux=on,signal=off",
    "-serial",
    "chardev:console",
    "-mon",
    "chardev=console",
];

/// What `icount` adds to the command line: one TSC tick per instruction, and no sleeping while the guest
/// is idle, so a run's counts do not depend on the host.
pub const ICOUNT_ARGS: [&str; 2] = ["-icount", "shift=0,sleep=off"];

impl Machine<'_> {
    /// QEMU's arguments (without the program name).
    pub fn args(&self) -> Result<Vec<OsString>, String> {
        let initrd = initrd_arg(self.modules)?;
        let memory = self.memory_mib.to_string();
        let mut args: Vec<OsString> = [
            "-machine",
            "pc",
            "-cpu",
            "max",
            "-accel",
            self.accel.name(),
            "-m",
            &memory,
            "-smp",
            "1",
            "-display",
            "none",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let serial: &[&str] = if self.interactive {
            &SERIAL_INTERACTIVE
        } else {
            &SERIAL_PLAIN
        };
        args.extend(serial.iter().map(OsString::from));
        args.extend(
            [
                "-no-reboot",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ]
            .map(OsString::from),
        );
        if self.icount {
            if self.accel != Accel::Tcg {
                return Err(format!(
                    "-icount counts instructions under TCG only, not with -accel {}",
                    self.accel.name()
                ));
            }
            args.extend(ICOUNT_ARGS.map(OsString::from));
        }
        if self.gdb {
            args.extend(["-s", "-S"].map(OsString::from));
        }
        args.extend([
            OsString::from("-kernel"),
            self.hypervisor.as_os_str().to_owned(),
        ]);
        args.extend([OsString::from("-append"), self.hv_cmdline.into()]);
        if let Some(initrd) = initrd {
            args.extend([OsString::from("-initrd"), initrd.into()]);
        }
        Ok(args)
    }

    /// A copy-pasteable rendering of the command with the chosen QEMU, for messages.
    pub fn display(&self) -> String {
        self.display_with(&crate::qemu_choice::program_for_display())
    }

    /// A copy-pasteable rendering of the command with `program` as QEMU.
    pub fn display_with(&self, program: &Path) -> String {
        let program = shell_quote(&program.to_string_lossy());
        match self.args() {
            Ok(args) => {
                let quoted: Vec<String> = args
                    .iter()
                    .map(|a| shell_quote(&a.to_string_lossy()))
                    .collect();
                format!("{program} {}", quoted.join(" "))
            }
            Err(e) => format!("<invalid QEMU command line: {e}>"),
        }
    }
}

/// Quotes a word for a POSIX shell if it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// How a QEMU run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The hypervisor wrote this value to the `isa-debug-exit` port (`abi::exit::EXIT_*`).
    Hypervisor(u8),
    /// QEMU exited with status 0: the machine reset (or triple-faulted) without the hypervisor reporting.
    Reset,
    /// Killed by us at the scenario's timeout.
    Timeout,
    /// QEMU was killed by this signal.
    Signal(i32),
    /// QEMU itself failed (bad arguments, cannot load the kernel, ...) with this exit status.
    QemuFailed(i32),
}

impl Exit {
    /// Maps QEMU's exit status back. `isa-debug-exit` turns a value `v` into status `(v << 1) | 1`, so an odd
    /// status `s` is `v = s >> 1`. Status 1 is also what QEMU uses for its own errors; it counts as the
    /// hypervisor's `EXIT_OK` only if the hypervisor printed anything (`hv_spoke`).
    pub fn from_status(code: Option<i32>, signal: Option<i32>, hv_spoke: bool) -> Exit {
        match (code, signal) {
            (Some(0), _) => Exit::Reset,
            (Some(1), _) if !hv_spoke => Exit::QemuFailed(1),
            (Some(s), _) if s > 0 && s & 1 == 1 => Exit::Hypervisor(((s >> 1) & 0xff) as u8),
            (Some(s), _) => Exit::QemuFailed(s),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Signal(0),
        }
    }

    /// Maps a finished process's status (see [`Exit::from_status`]).
    pub fn from_exit_status(status: ExitStatus, hv_spoke: bool) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        Exit::from_status(status.code(), status.signal(), hv_spoke)
    }

    /// The hypervisor's value, if it reported one.
    pub fn hypervisor_value(self) -> Option<u8> {
        match self {
            Exit::Hypervisor(v) => Some(v),
            _ => None,
        }
    }
}

/// The name of a hypervisor exit value.
pub fn exit_name(v: u8) -> &'static str {
    match v {
        EXIT_OK => "EXIT_OK: every domain powered off with code 0",
        EXIT_DOMAIN_FAILED => {
            "EXIT_DOMAIN_FAILED: a domain shut down with a non-zero code or not by poweroff"
        }
        EXIT_DOMAIN_CRASHED => "EXIT_DOMAIN_CRASHED: a domain was crashed by the hypervisor",
        EXIT_BOOT_ERROR => "EXIT_BOOT_ERROR: the hypervisor could not build the domains",
        EXIT_HYPERVISOR_PANIC => "EXIT_HYPERVISOR_PANIC: the hypervisor panicked",
        _ => "unknown exit value",
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Hypervisor(v) => write!(f, "hypervisor exit {v:#x} ({})", exit_name(v)),
            Exit::Reset => f.write_str(
                "machine reset or triple fault (QEMU exited 0 without the hypervisor reporting)",
            ),
            Exit::Timeout => f.write_str("timed out (QEMU killed)"),
            Exit::Signal(sig) => write!(f, "QEMU killed by signal {sig}"),
            Exit::QemuFailed(s) => write!(f, "QEMU failed with exit status {s}"),
        }
    }
}

/// Finds an executable on `PATH`.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The real uid from a `/proc/self/status` text (`Uid:\t<real>\t<effective>...`).
pub fn uid_from_proc_status(status: &str) -> Option<u32> {
    status.lines().find_map(|line| {
        line.strip_prefix("Uid:")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// True if we run as root (`/proc/self/status`, else `id -u`).
pub fn is_root() -> bool {
    if let Some(uid) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(uid_from_proc_status)
    {
        return uid == 0;
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure the chosen QEMU ([`crate::qemu_choice::chosen`]) can run and returns it: the distribution's
/// is installed when missing ([`ensure_system_qemu`]), any other must be an executable file.
pub fn ensure_qemu() -> Result<&'static Qemu, String> {
    let qemu = crate::qemu_choice::chosen()?;
    if qemu.kind == crate::qemu_choice::Kind::System {
        ensure_system_qemu()?;
    } else if !crate::qemu_choice::is_executable(&qemu.program) {
        return Err(format!(
            "the chosen QEMU {} is not an executable file",
            qemu.program.display()
        ));
    }
    Ok(qemu)
}

/// Makes sure `qemu-system-x86_64` is on `PATH`: installs it with apt-get when we are root and apt-get exists,
/// otherwise fails with the command the user should run.
pub fn ensure_system_qemu() -> Result<(), String> {
    if find_in_path(QEMU).is_some() {
        return Ok(());
    }
    if !is_root() || find_in_path("apt-get").is_none() {
        return Err(format!(
            "{QEMU} is not installed (not on PATH). Install it with:\n    {QEMU_INSTALL_HINT}"
        ));
    }
    eprintln!("xtask: {QEMU} not found; installing qemu-system-x86 with apt-get");
    let apt = |args: &[&str]| -> Result<(), String> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`apt-get {}` failed ({status})", args.join(" ")))
        }
    };
    apt(&["update"])?;
    apt(&["install", "-y", "qemu-system-x86"])?;
    match find_in_path(QEMU) {
        Some(_) => Ok(()),
        None => Err(format!(
            "installed qemu-system-x86 but {QEMU} is still not on PATH"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_are_doubled() {
        assert_eq!(escape_commas("a,b,,c"), "a,,b,,,,c");
        assert_eq!(escape_commas("plain"), "plain");
    }

    #[test]
    fn initrd_lists_one_module_per_domain() {
        let m = |cmdline: &str| Module {
            image: PathBuf::from("/ws/guest-kernel"),
            cmdline: cmdline.into(),
        };
        assert_eq!(
            initrd_arg(&[m("demo")]).unwrap().unwrap(),
            "/ws/guest-kernel demo"
        );
        assert_eq!(
            initrd_arg(&[m("test=hv-read"), m("demo")])
                .unwrap()
                .unwrap(),
            "/ws/guest-kernel test=hv-read,/ws/guest-kernel demo"
        );
        assert_eq!(
            initrd_arg(&[m("list=a,b")]).unwrap().unwrap(),
            "/ws/guest-kernel list=a,,b"
        );
        assert_eq!(initrd_arg(&[m("")]).unwrap().unwrap(), "/ws/guest-kernel");
        assert_eq!(initrd_arg(&[]), Ok(None));
        let spaced = Module {
            image: PathBuf::from("/my dir/guest"),
            cmdline: "demo".into(),
        };
        assert!(initrd_arg(&[spaced]).is_err());
        let comma = Module {
            image: PathBuf::from("/a,b/guest"),
            cmdline: "demo".into(),
        };
        assert_eq!(initrd_arg(&[comma]).unwrap().unwrap(), "/a,,b/guest demo");
    }

    #[test]
    fn machine_args_match_the_contract() {
        let modules = [Module {
            image: PathBuf::from("/g"),
            cmdline: "demo".into(),
        }];
        let machine = Machine {
            hypervisor: Path::new("/hv"),
            hv_cmdline: "loglevel=info",
            modules: &modules,
            memory_mib: 512,
            accel: Accel::Tcg,
            gdb: false,
            icount: false,
            interactive: false,
        };
        let args: Vec<String> = machine
            .args()
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args.join(" "),
            "-machine pc -cpu max -accel tcg -m 512 -smp 1 -display none -serial stdio -monitor none -no-reboot \
             -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel /hv -append loglevel=info -initrd /g demo"
        );
        let gdb = Machine {
            gdb: true,
            accel: Accel::Kvm,
            ..machine.clone()
        };
        let args: Vec<String> = gdb
            .args()
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.windows(2).any(|w| w == ["-s", "-S"]));
        assert!(args.windows(2).any(|w| w == ["-accel", "kvm"]));
        assert!(gdb.display().contains("-initrd '/g demo'"));
        let icount = Machine {
            icount: true,
            ..machine.clone()
        };
        let shown = icount.display();
        assert!(
            shown.contains("-no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -icount shift=0,sleep=off -kernel"),
            "{shown}"
        );
        let kvm = Machine {
            accel: Accel::Kvm,
            ..icount
        };
        assert!(kvm.args().unwrap_err().contains("TCG only"));
        let interactive = Machine {
            interactive: true,
            ..machine.clone()
        };
        let shown = interactive.display();
        assert!(
            shown.contains(
                "-display none -chardev stdio,id=console,mux=on,signal=off -serial chardev:console \
                 -mon chardev=console -no-reboot -device"
            ),
            "{shown}"
        );
        assert!(!shown.contains("-monitor none") && !shown.contains("-serial stdio"));
    }

    #[test]
    fn exit_status_maps_back_to_the_hypervisor_value() {
        assert_eq!(
            Exit::from_status(Some(1), None, true),
            Exit::Hypervisor(EXIT_OK)
        );
        assert_eq!(
            Exit::from_status(Some(3), None, true),
            Exit::Hypervisor(EXIT_DOMAIN_FAILED)
        );
        assert_eq!(
            Exit::from_status(Some(5), None, true),
            Exit::Hypervisor(EXIT_DOMAIN_CRASHED)
        );
        assert_eq!(
            Exit::from_status(Some(7), None, true),
            Exit::Hypervisor(EXIT_BOOT_ERROR)
        );
        assert_eq!(
            Exit::from_status(Some((0x3d << 1) | 1), None, true),
            Exit::Hypervisor(EXIT_HYPERVISOR_PANIC)
        );
        assert_eq!(
            Exit::from_status(Some(0xff), None, true),
            Exit::Hypervisor(0x7f)
        );
        assert_eq!(Exit::from_status(Some(0), None, true), Exit::Reset);
        assert_eq!(Exit::from_status(Some(0), None, false), Exit::Reset);
        assert_eq!(Exit::from_status(Some(1), None, false), Exit::QemuFailed(1));
        assert_eq!(
            Exit::from_status(Some(5), None, false),
            Exit::Hypervisor(EXIT_DOMAIN_CRASHED)
        );
        assert_eq!(Exit::from_status(Some(2), None, true), Exit::QemuFailed(2));
        assert_eq!(Exit::from_status(None, Some(9), true), Exit::Signal(9));
        assert_eq!(Exit::Hypervisor(2).hypervisor_value(), Some(2));
        assert_eq!(Exit::Reset.hypervisor_value(), None);
        assert!(
            Exit::Reset
                .to_string()
                .contains("machine reset or triple fault")
        );
    }

    #[test]
    fn uid_parsing() {
        assert_eq!(
            uid_from_proc_status("Name:\tx\nUid:\t0\t0\t0\t0\nGid:\t0\n"),
            Some(0)
        );
        assert_eq!(
            uid_from_proc_status("Uid:\t1000\t1000\t1000\t1000\n"),
            Some(1000)
        );
        assert_eq!(uid_from_proc_status("Name:\tx\n"), None);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("-m"), "-m");
        assert_eq!(shell_quote("/g demo"), "'/g demo'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
