//! `cargo xtask`: the project's only build/run entry point (`build`, `run`, `test`, `bench`, `fuzz`, `gdb`).
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use xtask::mode::Domains;
use xtask::qemu::{self, Accel, DEFAULT_MEMORY_MIB, Exit, Input};
use xtask::runcmd::{self, Console, Mode};
use xtask::scenario::{RunOptions, Scenario, run_scenario_with};
use xtask::{Profile, Symbolizer, build_images, ensure_qemu, testcmd, workspace_root};
use xtask::{qemu_choice, shell};

/// Exit status of xtask's own failures (build error, QEMU missing or failing, machine reset, ...), kept apart
/// from the hypervisor's exit values (0..=3, 0x3d) that `run` passes through.
const XTASK_FAILURE: u8 = 125;

/// Build, boot and test the hypervisor and its PV guest kernel.
#[derive(Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// The QEMU that boots the machine (run, gdb, test, bench): a path, `system` (the distribution's on
    /// PATH), `fixed` (built by `cargo xtask qemu`) or `auto` (the fixed one if built, else the system one)
    /// [default: $RING1PV_QEMU, else auto].
    #[arg(long, global = true, value_name = "PATH|system|fixed|auto")]
    qemu: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the user programs, the hypervisor, the guest kernel (which embeds the programs) and the mini
    /// test kernel (testkernels/mini) and print their paths.
    Build {
        /// Build the debug profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Build, then boot the guest OS under the hypervisor in QEMU, streaming the serial output. Exits with
    /// the hypervisor's exit value (0 when every domain powered off with code 0).
    ///
    /// Domains: domain 0 runs the shell (guest command line `shell`), domain 1 the ping server that answers
    /// `evtchn-ping` (`ping-server`); `--domains N` adds the kernel's `demo` as domains 2.. (`--domains 1`:
    /// the shell alone). Guest words after `--` replace all of that: every domain gets them (one domain
    /// unless `--domains` says otherwise), e.g. `cargo xtask run -- test=console-hostile`.
    ///
    /// Stdin a terminal: interactive. Type commands at the `pvsh$` prompt (`help` lists them); Ctrl-C
    /// interrupts the running program; quit with `poweroff` in the shell, or Ctrl-A then X (QEMU's escape,
    /// which Ctrl-A H explains).
    ///
    /// Stdin not a terminal (CI, pipes, `</dev/null`): the scripted demo. xtask types each line of the
    /// script (`xtask/demo.script`, or `--script FILE`: one command per line, `#` comments) at a prompt,
    /// then Ctrl-D; the shell prints `logout` and exits with its last command's status, domain 0 powers off
    /// with it, and the run ends by itself. A prompt that does not come within `--timeout` seconds ends it.
    Run(RunArgs),
    /// Run every check: fmt, clippy (host and bare metal), image build, cargo test (with QEMU scenarios).
    Test {
        /// Skip the QEMU scenarios (`cargo test --workspace --exclude tests`).
        #[arg(long)]
        quick: bool,
    },
    /// Build, then measure hypercall latency under QEMU: an icount pass (instruction counts, deterministic)
    /// and a wall-clock pass; print a table, optionally write JSON and an SVG chart.
    Bench(xtask::bench::BenchArgs),
    /// Build, then boot the guest kernel in each mode (pv: under the hypervisor; native: on the bare
    /// machine; emulate and hvm: unmodified under the hypervisor's full virtualization), run `osbench` at
    /// its shell, and print one lmbench-style table of the modes side by side (icount and wall medians,
    /// ratio to native, hypercalls and bounces per operation), then per mode its exits by reason (emulate,
    /// hvm) beside PV's hypercalls, or why its runs failed; optionally JSON and an SVG chart. See
    /// docs/COMPARISON.md.
    Compare(xtask::compare::CompareArgs),
    /// Build, then run the hypercall fuzzer (`test=fuzz`) next to a neighbour domain, one boot per seed,
    /// until the call count or time budget is spent; report calls per family, crashed fuzzer domains, and
    /// any hypervisor fault (panic, hang, integrity, teardown recount/audit). Exits 1 on a fault.
    Fuzz(xtask::fuzz::FuzzArgs),
    /// Build, then boot QEMU paused with the gdb stub on tcp::1234 and print the gdb command to attach.
    Gdb(MachineArgs),
    /// Build qemu-system-x86_64 from the distribution's QEMU source package with xtask/qemu/null-ss-cpl.patch
    /// (a null SS keeps CPL under TCG) into ~/.cache/ring1pv; installs what it needs with apt-get (root).
    /// Once built, run, test and bench use it (see --qemu).
    Qemu(xtask::qemu_build::QemuArgs),
    /// Build, then boot the shell, start a shell domain, type commands in it, save it (`xl save`) and
    /// stream the image over the serial line into a host file (`xl image-dump`; see docs/ARCHITECTURE.md,
    /// "Save, restore, snapshot and clone"). `cargo xtask run --restore FILE` boots it back.
    Save(xtask::savecmd::SaveArgs),
    /// Build, then boot two machines joined by a socket on their second serial ports, run `count` in a
    /// shell domain on the first and live-migrate it to the second (`xl migrate`; see docs/ARCHITECTURE.md,
    /// "Live migration"); prints rounds, pages per round and the downtime.
    Migrate(xtask::migratecmd::MigrateArgs),
}

/// Hypervisor log levels (`loglevel=` on its command line).
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Args)]
struct MachineArgs {
    /// Build and boot the debug profile instead of release.
    #[arg(long)]
    debug: bool,
    /// QEMU accelerator.
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// Number of domains to boot [default: 2, the shell and the ping server (emulate, hvm: 1, the shell);
    /// with GUEST_ARGS: 1], or one kind per domain, comma-separated: `--domains pv,emulate,hvm` boots a
    /// PV domain 0 running the shell, then an emulate and an hvm domain (side by side under one
    /// scheduler). In a kind list domain 0 runs the shell, a pv domain 1 the ping server (if domain 0 is
    /// pv), other pv domains the demo, and emulate/hvm domains after the first `sensitive` (the demo and
    /// the ping server need hypercalls, which an unmodified kernel never makes); GUEST_ARGS replace all
    /// of that. At most abi::domctl::MAX_DOMAINS (128), the limit the hypervisor and `xl` share; memory
    /// bounds it further (each boot domain gets dom_mem, 16 MiB unless --hv-cmdline says otherwise).
    #[arg(long, value_name = "N|KIND,...")]
    domains: Option<xtask::mode::Domains>,
    /// Machine memory in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_MIB, value_parser = clap::value_parser!(u32).range(16..))]
    memory: u32,
    /// Hypervisor log level.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    loglevel: LogLevel,
    /// Extra words for the hypervisor command line (e.g. "dom_mem=32M").
    #[arg(long, value_name = "STR")]
    hv_cmdline: Option<String>,
    /// Guest command line words for every domain; given, they replace the default domains (`shell`,
    /// `ping-server`), e.g. `cargo xtask run -- test=unknown-hypercall`.
    #[arg(last = true, value_name = "GUEST_ARGS")]
    guest_args: Vec<String>,
    /// Where the guest kernel runs: `pv` (a ring-1 PV domain under the hypervisor), `native` (QEMU boots the
    /// same guest-kernel image alone, in ring 0; one machine, command line GUEST_ARGS or `shell`), `emulate`
    /// (the unmodified kernel deprivileged to ring 1, trap-and-emulate; module command line `guest-kernel
    /// kind=emulate GUEST_ARGS`) or `hvm` (the unmodified kernel in its own ring 0 under AMD SVM, entered
    /// at its 32-bit multiboot entry; `kind=hvm`). For mixed kinds use `--domains pv,emulate,...`.
    #[arg(long, default_value_t = xtask::Mode::Pv)]
    mode: xtask::Mode,
    /// Boot this kernel instead of ring1pv's guest kernel: any multiboot v1 kernel for native, emulate and
    /// hvm (e.g. the mini test kernel, target/mini/x86_64-unknown-linux-gnu/release/mini, or `mini` for
    /// it); for pv it must be a PV ELF (a multiboot-only kernel is refused).
    #[arg(long, value_name = "FILE|mini")]
    kernel: Option<PathBuf>,
    /// A save image (`cargo xtask save --out FILE`) to restore at boot as a new domain (a module
    /// `restore=NAME`, NAME from the file name); may be given more than once.
    #[arg(long, value_name = "FILE")]
    restore: Vec<PathBuf>,
}

/// `cargo xtask run`: the machine plus how to script the shell.
#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    machine: MachineArgs,
    /// Type this script's command lines at the shell's prompts (one per line, `#` comments), then Ctrl-D;
    /// used even when stdin is a terminal [default when stdin is not a terminal: xtask/demo.script].
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// Scripted runs: seconds to wait for each prompt (and, after the last line, for QEMU to exit) before
    /// killing QEMU.
    #[arg(long, value_name = "SECS", default_value_t = shell::DEFAULT_STEP_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

impl MachineArgs {
    fn profile(&self) -> Profile {
        Profile::from_debug_flag(self.debug)
    }

    /// One command line per domain (see `cargo xtask run --help`).
    fn domain_cmdlines(&self) -> Vec<String> {
        if self.kernel.is_some() && self.guest_args.is_empty() {
            // Another kernel knows nothing of ring1pv's commands: empty command lines (plus kinds).
            return match &self.domains {
                Some(Domains::Kinds(kinds)) => kinds.iter().map(|k| k.module_cmdline("")).collect(),
                other => vec![String::new(); other.as_ref().map_or(1, Domains::count)],
            };
        }
        if self.mode == xtask::Mode::Native {
            // The kernel alone on the machine: one command line.
            return vec![if self.guest_args.is_empty() {
                shell::SHELL.to_string()
            } else {
                self.guest_args.join(" ")
            }];
        }
        let full_virt = matches!(self.mode, xtask::Mode::Emulate | xtask::Mode::Hvm);
        match (&self.domains, self.guest_args.is_empty()) {
            (Some(Domains::Kinds(kinds)), true) => shell::default_domains_of_kinds(kinds),
            (Some(Domains::Kinds(kinds)), false) => kinds
                .iter()
                .map(|k| k.module_cmdline(&self.guest_args.join(" ")))
                .collect(),
            (Some(Domains::Count(n)), true) if full_virt => {
                let mut d = vec![shell::FULLVIRT_DEFAULT.to_string(); *n as usize];
                d[0] = shell::SHELL.to_string();
                d
            }
            (Some(Domains::Count(n)), true) => shell::default_domains(*n as usize),
            (None, true) => shell::default_domains(if full_virt { 1 } else { 2 }),
            (count, false) => {
                vec![self.guest_args.join(" "); count.as_ref().map_or(1, Domains::count)]
            }
        }
    }

    /// The `--kernel` file: `mini` names the built mini test kernel of this profile.
    fn kernel_file(&self) -> Option<PathBuf> {
        self.kernel.as_ref().map(|k| {
            if k.as_os_str() == "mini" {
                xtask::Images::paths(&workspace_root(), self.profile()).mini
            } else {
                k.clone()
            }
        })
    }

    /// The refusals that need no build: options that contradict each other, `--accel kvm` where KVM
    /// cannot run.
    fn check(&self) -> Result<(), String> {
        let kinds = match &self.domains {
            Some(Domains::Kinds(kinds)) => Some(kinds),
            _ => None,
        };
        if self.mode == xtask::Mode::Native && self.domains.as_ref().is_some_and(|d| d.count() > 1)
        {
            return Err("--mode native boots the kernel alone: --domains must be 1".into());
        }
        if kinds.is_some() && self.mode != xtask::Mode::Pv {
            return Err(format!(
                "--domains with kinds chooses each domain's kind; leave out --mode {}",
                self.mode
            ));
        }
        if self.accel == Accel::Kvm {
            xtask::kvm::check_host()?;
        }
        Ok(())
    }

    /// Checks the `--kernel` file (once it exists) for every kind of domain this run boots.
    fn check_kernel(&self) -> Result<(), String> {
        let Some(path) = self.kernel_file() else {
            return Ok(());
        };
        let modes = match &self.domains {
            Some(Domains::Kinds(kinds)) => kinds.clone(),
            _ => vec![self.mode],
        };
        for mode in modes {
            xtask::kernel_file::check_path(mode, &path)?;
        }
        Ok(())
    }

    fn scenario(&self) -> Scenario {
        let domains = self.domain_cmdlines();
        let mut scenario = Scenario::new(&domains);
        let level = self
            .loglevel
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        scenario.hv_cmdline = format!("loglevel={level}");
        if domains.first().is_some_and(|d| shell::runs_shell(d)) {
            // The shell's prompt and echo must reach the terminal without waiting for a newline.
            scenario.hv_cmdline.push(' ');
            scenario.hv_cmdline.push_str(shell::DOM0_CONSOLE_DIRECT);
            // `xl create` builds domains from this image.
            scenario.images.push(shell::XL_IMAGE.to_string());
        }
        if let Some(extra) = self
            .hv_cmdline
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            scenario.hv_cmdline.push(' ');
            scenario.hv_cmdline.push_str(extra);
        }
        scenario.memory_mib = self.memory;
        scenario.restores = self
            .restore
            .iter()
            .map(|f| (xtask::savecmd::image_name(f), f.clone()))
            .collect();
        scenario.accel = self.accel;
        scenario.mode = self.mode;
        scenario.kernel = self.kernel_file();
        scenario
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(request) = &cli.qemu {
        qemu_choice::set_request(qemu_choice::Request::parse(request));
    }
    let result = match cli.command {
        Cmd::Build { debug } => build_images(Profile::from_debug_flag(debug)).map(|images| {
            println!("user programs: {}", images.programs.display());
            println!("hypervisor:    {}", images.hypervisor.display());
            println!("guest kernel:  {}", images.guest.display());
            println!("mini kernel:   {}", images.mini.display());
            0
        }),
        Cmd::Run(args) => run(&args),
        Cmd::Gdb(args) => gdb(&args),
        Cmd::Test { quick } => Ok(if testcmd::run(quick) { 0 } else { 1 }),
        Cmd::Bench(args) => xtask::bench::run(&args),
        Cmd::Compare(args) => xtask::compare::run(&args),
        Cmd::Qemu(args) => xtask::qemu_build::run(&args),
        Cmd::Fuzz(args) => xtask::fuzz::run(&args),
        Cmd::Save(args) => xtask::savecmd::run(&args),
        Cmd::Migrate(args) => xtask::migratecmd::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(XTASK_FAILURE)
        }
    }
}

/// `run`: pick the input mode (terminal, script, none), tell the user, boot.
fn run(args: &RunArgs) -> Result<u8, String> {
    let domains = args.machine.domain_cmdlines();
    let domain0 = domains.first().map(String::as_str).unwrap_or_default();
    let mode = Mode::choose(
        domain0,
        args.script.as_deref(),
        std::io::stdin().is_terminal(),
        &workspace_root(),
    )?;
    let step_timeout = Duration::from_secs(args.timeout);
    let notice = mode.notice(shell::runs_shell(domain0), step_timeout);
    boot_with_notice(&args.machine, mode.input(step_timeout), false, &notice)
}

/// `gdb`: boot paused with the gdb stub; the terminal (if stdin is one) drives the serial line.
fn gdb(args: &MachineArgs) -> Result<u8, String> {
    let (input, notice) = if std::io::stdin().is_terminal() {
        (
            Input::Terminal,
            "xtask: what you type goes to domain 0's console; quit QEMU with Ctrl-A then X",
        )
    } else {
        (Input::Null, "")
    };
    boot_with_notice(args, input, true, notice)
}

/// Build, make sure QEMU exists, print `notice`, boot, stream the symbolized output, map the exit status.
fn boot_with_notice(
    args: &MachineArgs,
    input: Input,
    gdb: bool,
    notice: &str,
) -> Result<u8, String> {
    args.check()?;
    let images = build_images(args.profile())?;
    args.check_kernel()?;
    let qemu = ensure_qemu()?;
    eprintln!("{}", qemu.describe());
    let scenario = args.scenario();
    let symbolizer = Symbolizer::new(&images, &workspace_root());
    if !symbolizer.is_active() {
        eprintln!(
            "xtask: note: cannot read the images' debug info; addresses will not be symbolized"
        );
    }
    let terminal = input == Input::Terminal;
    let options = RunOptions {
        input,
        enforce_timeout: false,
        gdb,
        echo_stderr: true,
    };
    if scenario.mode == xtask::Mode::Native {
        eprintln!(
            "xtask: booting {} natively (ring 0, no hypervisor) with command line \"{}\" ({} MiB, {})",
            scenario
                .kernel
                .as_ref()
                .map_or("the guest kernel".to_string(), |k| k.display().to_string()),
            scenario.domains.join(" "),
            scenario.memory_mib,
            scenario.accel.name()
        );
    } else {
        eprintln!(
            "xtask: booting {} domain(s) [{}] with hypervisor command line \"{}\" ({} MiB, {})",
            scenario.domains.len(),
            scenario.domains.join(" | "),
            scenario.hv_cmdline,
            scenario.memory_mib,
            scenario.accel.name()
        );
    }
    if gdb {
        eprintln!("xtask: QEMU starts paused with the gdb stub on tcp::1234; attach with:\n");
        if scenario.mode == xtask::Mode::Native {
            eprintln!(
                "    gdb {} -ex 'target remote :1234'\n",
                qemu::shell_quote(&scenario.kernel_image(&images).to_string_lossy())
            );
        } else {
            eprintln!(
                "    gdb {} -ex 'target remote :1234' -ex 'add-symbol-file {}'\n",
                qemu::shell_quote(&images.hypervisor.to_string_lossy()),
                images.guest.display()
            );
        }
        if terminal {
            eprintln!("xtask: waiting for QEMU to exit (Ctrl-A then X stops it)");
        } else {
            eprintln!("xtask: waiting for QEMU to exit (Ctrl-C to stop it)");
        }
    }
    if !notice.is_empty() {
        eprintln!("{notice}");
    }
    let mut console = Console::new(std::io::stdout(), Some(&symbolizer));
    let outcome = run_scenario_with(&images, &scenario, options, &mut console)?;
    if scenario.accel == Accel::Kvm
        && let Some(why) = xtask::kvm::explain_failure(&outcome.stderr)
    {
        return Err(why);
    }
    // A hypervisor that cannot build emulate or hvm domains yet says so (or ignores the kind): tell the user.
    let kind0 = match scenario.mode {
        xtask::Mode::Pv => scenario.domains.first().and_then(|d| {
            xtask::Mode::DOMAIN_KINDS.into_iter().find(|k| {
                k.kind_word()
                    .is_some_and(|w| d.split_whitespace().any(|x| x == w))
            })
        }),
        mode => Some(mode),
    };
    if let Some(why) = kind0.and_then(|k| xtask::mode::unsupported(k, &outcome)) {
        eprintln!("xtask: note: domain 0's kind did not run: {why}");
    }
    for line in runcmd::fidelity_warnings(&outcome.output) {
        eprintln!("xtask: repeated from the hypervisor: {line}");
        if !qemu.is_fixed() {
            eprintln!(
                "xtask: `cargo xtask qemu` builds a QEMU without this defect; run, test and bench then use it"
            );
        }
    }
    let script = outcome
        .script
        .as_deref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    match outcome.exit {
        Exit::Hypervisor(v) if scenario.mode == xtask::Mode::Native => {
            // Natively the kernel itself wrote the value, mapped like a one-domain PV run's.
            eprintln!("xtask: kernel exit {v:#x} ({})", qemu::exit_name(v));
            Ok(v)
        }
        Exit::Hypervisor(v) => {
            eprintln!("xtask: {}", outcome.exit);
            Ok(v)
        }
        Exit::Reset if terminal => Err(
            "QEMU quit without the hypervisor reporting an exit status (Ctrl-A X, or a machine reset)"
                .to_string(),
        ),
        Exit::Timeout => Err(format!(
            "{}{script}",
            if script.is_empty() {
                "QEMU timed out and was killed"
            } else {
                "a prompt did not come in time; QEMU was killed"
            }
        )),
        other => Err(format!("{other}{script}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied())).expect("parses")
    }

    fn run_args(args: &[&str]) -> RunArgs {
        let Cmd::Run(run) = parse(args).command else {
            panic!("not run")
        };
        run
    }

    #[test]
    fn run_defaults_to_the_shell_and_the_ping_server() {
        let run = run_args(&["run"]);
        let s = run.machine.scenario();
        assert_eq!(s.domains, ["shell", "ping-server"]);
        assert_eq!(s.hv_cmdline, "loglevel=info dom0_console=direct");
        assert_eq!(s.memory_mib, 512);
        assert_eq!(s.accel, Accel::Tcg);
        assert_eq!(run.machine.profile(), Profile::Release);
        assert_eq!(run.script, None);
        assert_eq!(run.timeout, 60);
    }

    #[test]
    fn domains_adds_demo_domains_or_boots_the_shell_alone() {
        let s = run_args(&["run", "--domains", "4"]).machine.scenario();
        assert_eq!(s.domains, ["shell", "ping-server", "demo", "demo"]);
        let s = run_args(&["run", "--domains", "1"]).machine.scenario();
        assert_eq!(s.domains, ["shell"]);
        assert!(s.hv_cmdline.contains("dom0_console=direct"));
    }

    #[test]
    fn guest_words_replace_the_default_domains() {
        let run = run_args(&[
            "run",
            "--debug",
            "--accel",
            "kvm",
            "--domains",
            "2",
            "--memory",
            "256",
            "--loglevel",
            "trace",
            "--hv-cmdline",
            "dom_mem=32M",
            "--",
            "test=unknown-hypercall",
            "verbose",
        ]);
        let s = run.machine.scenario();
        assert_eq!(
            s.domains,
            [
                "test=unknown-hypercall verbose",
                "test=unknown-hypercall verbose"
            ]
        );
        assert_eq!(s.hv_cmdline, "loglevel=trace dom_mem=32M");
        assert_eq!(s.memory_mib, 256);
        assert_eq!(s.accel, Accel::Kvm);
        assert_eq!(run.machine.profile(), Profile::Debug);
        let one = run_args(&["run", "--", "test=console-hostile"])
            .machine
            .scenario();
        assert_eq!(one.domains, ["test=console-hostile"]);
        assert_eq!(one.hv_cmdline, "loglevel=info");
    }

    #[test]
    fn a_shell_given_as_guest_words_gets_the_direct_console_and_hv_words_come_last() {
        let s = run_args(&["run", "--hv-cmdline", "dom0_console=lines", "--", "shell"])
            .machine
            .scenario();
        assert_eq!(s.domains, ["shell"]);
        // The user's words come last, so they can override ours.
        assert_eq!(
            s.hv_cmdline,
            "loglevel=info dom0_console=direct dom0_console=lines"
        );
    }

    #[test]
    fn script_and_timeout_options() {
        let run = run_args(&[
            "run",
            "--script",
            "my.script",
            "--timeout",
            "5",
            "--",
            "shell",
        ]);
        assert_eq!(run.script, Some(PathBuf::from("my.script")));
        assert_eq!(run.timeout, 5);
        assert!(Cli::try_parse_from(["xtask", "run", "--timeout", "0"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "gdb", "--script", "x"]).is_err());
    }

    #[test]
    fn other_subcommands_parse() {
        assert!(matches!(
            parse(&["build", "--debug"]).command,
            Cmd::Build { debug: true }
        ));
        assert!(matches!(
            parse(&["test", "--quick"]).command,
            Cmd::Test { quick: true }
        ));
        assert!(matches!(parse(&["bench"]).command, Cmd::Bench(_)));
        let Cmd::Bench(b) = parse(&["bench", "--mode", "icount", "--iterations", "200"]).command
        else {
            panic!("not bench")
        };
        assert_eq!((b.mode, b.iterations), (xtask::bench::ModeArg::Icount, 200));
        assert!(Cli::try_parse_from(["xtask", "bench", "--iterations", "0"]).is_err());
        assert!(matches!(parse(&["gdb"]).command, Cmd::Gdb(_)));
        assert!(Cli::try_parse_from(["xtask", "run", "--domains", "0"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "run", "--accel", "hvf"]).is_err());
        let Cmd::Fuzz(f) = parse(&["fuzz", "--seconds", "60", "--seed", "9", "--debug"]).command
        else {
            panic!("not fuzz")
        };
        assert_eq!(
            (f.seconds, f.count, f.seed, f.debug),
            (Some(60), None, 9, true)
        );
        assert!(Cli::try_parse_from(["xtask", "fuzz", "--seconds", "1", "--count", "2"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "fuzz", "--per-run", "0"]).is_err());
    }

    #[test]
    fn full_virtualization_modes_boot_the_shell_alone_with_their_kind_word() {
        let images = xtask::Images::paths(std::path::Path::new("/ws"), Profile::Release);
        for (mode, word) in [("emulate", "kind=emulate"), ("hvm", "kind=hvm")] {
            let s = run_args(&["run", "--mode", mode]).machine.scenario();
            assert_eq!(s.domains, ["shell"]);
            assert_eq!(s.mode.name(), mode);
            assert!(s.hv_cmdline.contains("dom0_console=direct"));
            let modules = s.modules(&images);
            assert_eq!(modules[0].cmdline, format!("{word} shell"));
            assert_eq!(modules[0].image, images.guest);
            let s = run_args(&["run", "--mode", mode, "--domains", "3"])
                .machine
                .scenario();
            assert_eq!(s.domains, ["shell", "sensitive", "sensitive"]);
            let s = run_args(&["run", "--mode", mode, "--", "test=x"])
                .machine
                .scenario();
            assert_eq!(s.modules(&images)[0].cmdline, format!("{word} test=x"));
        }
    }

    #[test]
    fn a_kind_list_gives_each_domain_its_kind_and_a_sensible_default() {
        let s = run_args(&["run", "--domains", "pv,emulate,hvm"])
            .machine
            .scenario();
        assert_eq!(
            s.domains,
            ["shell", "kind=emulate sensitive", "kind=hvm sensitive"]
        );
        assert_eq!(s.mode, xtask::Mode::Pv);
        let s = run_args(&["run", "--domains", "pv,pv,emulate,pv"])
            .machine
            .scenario();
        assert_eq!(
            s.domains,
            ["shell", "ping-server", "kind=emulate sensitive", "demo"]
        );
        let s = run_args(&["run", "--domains", "emulate,pv"])
            .machine
            .scenario();
        assert_eq!(s.domains, ["kind=emulate shell", "demo"]);
        assert!(s.hv_cmdline.contains("dom0_console=direct"));
        let s = run_args(&["run", "--domains", "hvm,pv", "--", "test=x"])
            .machine
            .scenario();
        assert_eq!(s.domains, ["kind=hvm test=x", "test=x"]);
        assert!(Cli::try_parse_from(["xtask", "run", "--domains", "pv,native"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "run", "--domains", "pv,,hvm"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "run", "--domains", "xen"]).is_err());
        let both = run_args(&["run", "--mode", "hvm", "--domains", "pv,hvm"]);
        let err = both.machine.check().unwrap_err();
        assert!(err.contains("leave out --mode hvm"), "{err}");
        let native = run_args(&["run", "--mode", "native", "--domains", "2"]);
        assert!(native.machine.check().is_err());
        assert!(
            run_args(&["run", "--domains", "pv,emulate"])
                .machine
                .check()
                .is_ok()
        );
    }

    #[test]
    fn another_kernel_gets_empty_command_lines_and_mini_names_the_built_one() {
        let images = xtask::Images::paths(&workspace_root(), Profile::Release);
        let run = run_args(&["run", "--mode", "hvm", "--kernel", "mini"]);
        let s = run.machine.scenario();
        assert_eq!(s.domains, [""]);
        assert_eq!(s.kernel.as_deref(), Some(images.mini.as_path()));
        let modules = s.modules(&images);
        assert_eq!(modules[0].cmdline, "kind=hvm");
        assert_eq!(modules[0].image, images.mini);
        assert!(s.images.is_empty(), "no shell, no xl image");
        let s = run_args(&["run", "--mode", "native", "--kernel", "/k", "--", "a=1"])
            .machine
            .scenario();
        assert_eq!(
            (s.domains.as_slice(), s.kernel_image(&images)),
            (["a=1".to_string()].as_slice(), std::path::Path::new("/k"))
        );
        let s = run_args(&["run", "--kernel", "/k", "--domains", "pv,emulate"])
            .machine
            .scenario();
        assert_eq!(s.domains, ["", "kind=emulate"]);
        let s = run_args(&["run", "--mode", "native", "--kernel", "/k"])
            .machine
            .scenario();
        assert_eq!(s.domains, [""]);
    }

    #[test]
    fn the_domain_limit_is_the_abis() {
        let max = abi::domctl::MAX_DOMAINS.to_string();
        let over = (abi::domctl::MAX_DOMAINS + 1).to_string();
        assert!(Cli::try_parse_from(["xtask", "run", "--domains", max.as_str()]).is_ok());
        let err = Cli::try_parse_from(["xtask", "run", "--domains", over.as_str()])
            .err()
            .expect("past the limit");
        assert!(err.to_string().contains("128"), "{err}");
        // The shell run keeps the guest kernel as image `guest` for `xl create`.
        let s = run_args(&["run"]).machine.scenario();
        assert_eq!(s.images, [shell::XL_IMAGE]);
        assert!(
            run_args(&["run", "--", "demo"])
                .machine
                .scenario()
                .images
                .is_empty()
        );
    }
}
