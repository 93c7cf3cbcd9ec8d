//! QEMU: the command line that boots the hypervisor with one multiboot module per domain, installing QEMU,
//! running it with a kill timeout while streaming its serial output, and mapping its exit status back.

use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

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

/// Lines longer than this are cut into pieces (a hostile console must not make us buffer without bound).
const MAX_LINE: usize = 64 * 1024;
/// At most this much serial output is kept in memory; the rest is still streamed but not kept.
const MAX_KEPT_OUTPUT: usize = 64 * 1024 * 1024;

/// QEMU accelerator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Software emulation (works everywhere; the default).
    #[default]
    Tcg,
    /// Hardware virtualization (needs /dev/kvm).
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
}

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
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]
        .iter()
        .map(OsString::from)
        .collect();
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

    /// A copy-pasteable rendering of the command, for messages.
    pub fn display(&self) -> String {
        match self.args() {
            Ok(args) => {
                let quoted: Vec<String> = args
                    .iter()
                    .map(|a| shell_quote(&a.to_string_lossy()))
                    .collect();
                format!("{QEMU} {}", quoted.join(" "))
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

/// Makes sure `qemu-system-x86_64` is on `PATH`: installs it with apt-get when we are root and apt-get exists,
/// otherwise fails with the command the user should run.
pub fn ensure_qemu() -> Result<(), String> {
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

/// What a finished QEMU run produced.
#[derive(Clone, Debug)]
pub struct Captured {
    /// The serial output, one line per `\n`, `\r` removed (capped at 64 MiB).
    pub output: String,
    /// QEMU's own stderr (its error messages).
    pub stderr: String,
    /// How it ended.
    pub exit: Exit,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
}

/// Where QEMU's stdin comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// `/dev/null` (tests, non-interactive runs).
    Null,
    /// This process's stdin (an interactive terminal).
    Inherit,
    /// Scripted typing: when a serial line contains the trigger, type the bytes (each pair used once, in
    /// order). For tests of console input.
    Expect(&'static [(&'static str, &'static [u8])]),
}

/// Spawns QEMU with `args`, calls `on_line` for every serial line as it arrives, and waits for it to exit,
/// killing it after `timeout`. QEMU's stderr is collected and, if `echo_stderr`, also copied to ours.
pub fn run(
    args: &[OsString],
    input: Input,
    timeout: Option<Duration>,
    echo_stderr: bool,
    on_line: &mut dyn FnMut(&str),
) -> Result<Captured, String> {
    let mut cmd = Command::new(QEMU);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(match input {
        Input::Null => Stdio::null(),
        Input::Inherit => Stdio::inherit(),
        Input::Expect(_) => Stdio::piped(),
    });
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill(&mut child);
        return Err("QEMU's output pipes are missing".into());
    };

    let (tx, rx) = mpsc::channel::<String>();
    let reader = thread::spawn(move || {
        for_each_line(stdout, |line| tx.send(line).is_ok());
    });
    let err_reader = thread::spawn(move || collect_stderr(stderr, echo_stderr));

    let deadline = timeout.map(|t| start + t);
    let mut output = String::new();
    let mut timed_out = false;
    let mut stdin = child.stdin.take();
    let mut script = match input {
        Input::Expect(s) => s,
        _ => &[],
    };
    let mut keep = |line: &str, output: &mut String| {
        if let Some(((trigger, bytes), rest)) = script.split_first()
            && line.contains(trigger)
        {
            if let Some(w) = stdin.as_mut() {
                use std::io::Write;
                let _ = w.write_all(bytes).and_then(|()| w.flush());
            }
            script = rest;
        }
        on_line(line);
        if output.len() + line.len() < MAX_KEPT_OUTPUT {
            output.push_str(line);
            output.push('\n');
        }
    };
    // Stream until QEMU closes its stdout (it exited) or the deadline passes.
    loop {
        let wait = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(Duration::from_millis(200)),
                _ => {
                    timed_out = true;
                    break;
                }
            },
            None => Duration::from_millis(200),
        };
        match rx.recv_timeout(wait) {
            Ok(line) => keep(&line, &mut output),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // Reap QEMU (stdout closed means it is exiting; still honour the deadline).
    let status = loop {
        if timed_out {
            let _ = child.kill();
            break child.wait().ok();
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => timed_out = true,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill(&mut child);
                return Err(format!("cannot wait for QEMU: {e}"));
            }
        }
    };
    let _ = reader.join();
    for line in rx.try_iter() {
        keep(&line, &mut output);
    }
    let stderr = err_reader.join().unwrap_or_default();
    let hv_spoke = output.lines().any(|l| l.starts_with("[hv]"));
    let exit = match (timed_out, status) {
        (true, _) => Exit::Timeout,
        (false, Some(status)) => Exit::from_exit_status(status, hv_spoke),
        (false, None) => Exit::Signal(0),
    };
    Ok(Captured {
        output,
        stderr,
        exit,
        elapsed: start.elapsed(),
    })
}

/// Kills a child we started (by its handle) and reaps it; errors mean it already exited.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Splits a byte stream into lines (lossy UTF-8, `\n` and a trailing `\r` removed), cutting lines longer than
/// `MAX_LINE`. Stops when `f` returns false, at end of file or on a read error.
pub fn for_each_line(input: impl Read, mut f: impl FnMut(String) -> bool) {
    let mut reader = BufReader::new(input);
    let mut line: Vec<u8> = Vec::new();
    let emit = |line: &mut Vec<u8>, f: &mut dyn FnMut(String) -> bool| {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let text = String::from_utf8_lossy(line).into_owned();
        line.clear();
        f(text)
    };
    loop {
        let available = match reader.fill_buf() {
            Ok([]) => break,
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let room = MAX_LINE - line.len();
        let (take, newline) = match available.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len().min(room), false),
        };
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if newline {
            line.pop();
        }
        if (newline || line.len() >= MAX_LINE) && !emit(&mut line, &mut f) {
            return;
        }
    }
    if !line.is_empty() {
        emit(&mut line, &mut f);
    }
}

fn collect_stderr(mut stderr: impl Read, echo: bool) -> String {
    let mut collected = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if echo {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(&buf[..n]);
                    let _ = err.flush();
                }
                if collected.len() < MAX_LINE * 16 {
                    collected.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&collected).into_owned()
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
    fn lines_are_split_lossily_and_capped() {
        let mut lines = Vec::new();
        for_each_line(&b"one\r\ntwo\n\xffbad\nlast"[..], |l| {
            lines.push(l);
            true
        });
        assert_eq!(lines, ["one", "two", "\u{fffd}bad", "last"]);

        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let mut sizes = Vec::new();
        for_each_line(&long[..], |l| {
            sizes.push(l.len());
            true
        });
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 10]);

        let mut count = 0;
        for_each_line(&b"a\nb\nc\n"[..], |_| {
            count += 1;
            false
        });
        assert_eq!(count, 1);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("-m"), "-m");
        assert_eq!(shell_quote("/g demo"), "'/g demo'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
