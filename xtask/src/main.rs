//! `cargo xtask`: the project's only build/run entry point (`build`, `run`, `test`, `bench`, `gdb`).
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use xtask::qemu::{self, Accel, DEFAULT_MEMORY_MIB, Exit, Input};
use xtask::scenario::{RunOptions, Scenario, run_scenario_with};
use xtask::{Profile, Symbolizer, build_images, ensure_qemu, testcmd, workspace_root};

/// Exit status of xtask's own failures (build error, QEMU missing or failing, machine reset, ...), kept apart
/// from the hypervisor's exit values (0..=3, 0x3d) that `run` passes through.
const XTASK_FAILURE: u8 = 125;

/// Build, boot and test the hypervisor and its PV guest kernel.
#[derive(Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the hypervisor and guest kernel images and print their paths.
    Build {
        /// Build the debug profile instead of release.
        #[arg(long)]
        debug: bool,
    },
    /// Build, then boot the hypervisor with N domains in QEMU, streaming the serial output. Exits with the
    /// hypervisor's exit value (0 when every domain powered off cleanly).
    Run(MachineArgs),
    /// Run every check: fmt, clippy (host and bare metal), image build, cargo test (with QEMU scenarios).
    Test {
        /// Skip the QEMU scenarios (`cargo test --workspace --exclude tests`).
        #[arg(long)]
        quick: bool,
    },
    /// Build, then measure hypercall latency under QEMU: an icount pass (instruction counts, deterministic)
    /// and a wall-clock pass; print a table, optionally write JSON and an SVG chart.
    Bench(xtask::bench::BenchArgs),
    /// Build, then boot QEMU paused with the gdb stub on tcp::1234 and print the gdb command to attach.
    Gdb(MachineArgs),
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
    /// Number of domains to boot (each runs the guest kernel).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    domains: u32,
    /// Machine memory in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_MIB, value_parser = clap::value_parser!(u32).range(16..))]
    memory: u32,
    /// Hypervisor log level.
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    loglevel: LogLevel,
    /// Extra words for the hypervisor command line (e.g. "dom_mem=32M").
    #[arg(long, value_name = "STR")]
    hv_cmdline: Option<String>,
    /// Guest command line words for every domain; given, they replace the default `demo`
    /// (e.g. `cargo xtask run -- test=unknown-hypercall`).
    #[arg(last = true, value_name = "GUEST_ARGS")]
    guest_args: Vec<String>,
}

impl MachineArgs {
    fn profile(&self) -> Profile {
        Profile::from_debug_flag(self.debug)
    }

    fn scenario(&self) -> Scenario {
        let guest = if self.guest_args.is_empty() {
            "demo".to_string()
        } else {
            self.guest_args.join(" ")
        };
        let domains = vec![guest; self.domains as usize];
        let mut scenario = Scenario::new(&domains);
        let level = self
            .loglevel
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        scenario.hv_cmdline = format!("loglevel={level}");
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
        scenario.accel = self.accel;
        scenario
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Build { debug } => build_images(Profile::from_debug_flag(debug)).map(|images| {
            println!("hypervisor:   {}", images.hypervisor.display());
            println!("guest kernel: {}", images.guest.display());
            0
        }),
        Cmd::Run(args) => boot(&args, false),
        Cmd::Gdb(args) => boot(&args, true),
        Cmd::Test { quick } => Ok(if testcmd::run(quick) { 0 } else { 1 }),
        Cmd::Bench(args) => xtask::bench::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(XTASK_FAILURE)
        }
    }
}

/// `run` and `gdb`: build, make sure QEMU exists, boot, stream symbolized output, map the exit status.
fn boot(args: &MachineArgs, gdb: bool) -> Result<u8, String> {
    let images = build_images(args.profile())?;
    ensure_qemu()?;
    let scenario = args.scenario();
    let symbolizer = Symbolizer::new(&images, &workspace_root());
    if !symbolizer.is_active() {
        eprintln!(
            "xtask: note: cannot read the images' debug info; addresses will not be symbolized"
        );
    }
    let input = if std::io::stdin().is_terminal() {
        Input::Inherit
    } else {
        Input::Null
    };
    let options = RunOptions {
        input,
        enforce_timeout: false,
        gdb,
        echo_stderr: true,
    };
    eprintln!(
        "xtask: booting {} domain(s) [{}] with hypervisor command line \"{}\" ({} MiB, {})",
        scenario.domains.len(),
        scenario.domains.join(" | "),
        scenario.hv_cmdline,
        scenario.memory_mib,
        scenario.accel.name()
    );
    if gdb {
        eprintln!("xtask: QEMU starts paused with the gdb stub on tcp::1234; attach with:\n");
        eprintln!(
            "    gdb {} -ex 'target remote :1234' -ex 'add-symbol-file {}'\n",
            qemu::shell_quote(&images.hypervisor.to_string_lossy()),
            images.guest.display()
        );
        eprintln!("xtask: waiting for QEMU to exit (Ctrl-C to stop it)");
    }
    let mut stdout = std::io::stdout();
    let outcome = run_scenario_with(&images, &scenario, options, &mut |line| {
        let _ = writeln!(stdout, "{}", symbolizer.annotate(line));
        let _ = stdout.flush();
    })?;
    match outcome.exit {
        Exit::Hypervisor(v) => {
            eprintln!("xtask: {}", outcome.exit);
            Ok(v)
        }
        other => Err(format!("{other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied())).expect("parses")
    }

    #[test]
    fn run_defaults_to_one_demo_domain() {
        let Cmd::Run(args) = parse(&["run"]).command else {
            panic!("not run")
        };
        let s = args.scenario();
        assert_eq!(s.domains, ["demo"]);
        assert_eq!(s.hv_cmdline, "loglevel=info");
        assert_eq!(s.memory_mib, 512);
        assert_eq!(s.accel, Accel::Tcg);
        assert_eq!(args.profile(), Profile::Release);
    }

    #[test]
    fn guest_words_replace_demo() {
        let Cmd::Run(args) = parse(&[
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
        ])
        .command
        else {
            panic!("not run")
        };
        let s = args.scenario();
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
        assert_eq!(args.profile(), Profile::Debug);
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
    }
}
