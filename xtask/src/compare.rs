//! `cargo xtask compare`: boot the guest kernel in each mode (how it is run: `pv` under the hypervisor,
//! `native` on the bare machine, later `emulate` and `hvm`), type `osbench N` at its shell, then
//! `poweroff`, and put the `BENCH` lines side by side in one table shaped like the lmbench table of the
//! Xen paper (SOSP'03): rows are workloads, columns are modes, each with the icount median (executed
//! instructions, deterministic) and the wall median, the ratio to native (or to the first mode), and,
//! for a mode under a hypervisor that counts, how many hypercalls and bounces each operation caused.
//!
//! A mode is one arm of [`boot_mode`]; everything else (parsing, table, JSON, chart) knows modes only by
//! name, so a new mode adds a column without changing the tool. Everything but [`run`] and [`boot_mode`]
//! is pure and unit-tested.
//!
//! Below the table, [`exits::format_notes`] says per mode what the table cannot: a mode whose runs failed
//! (e.g. emulate or hvm before the hypervisor runs them) and why — the other columns are still measured
//! — and, for emulate and hvm, the exits by reason the hypervisor counted over the run, beside PV's
//! hypercalls over the same workloads.

pub mod exits;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use abi::bench::{Stats, parse_line};
use clap::Args;

use crate::bench::{Mode as Pass, ModeArg, Panel};
use crate::images::{Images, Profile, build_images};
use crate::qemu::{Accel, Exit, ICOUNT_ARGS, ensure_qemu};
use crate::scenario::{DEFAULT_HV_CMDLINE, Outcome, RunOptions, run_scenario_with};
use crate::shell::{DOM0_CONSOLE_DIRECT, SHELL, Session};

/// The baseline of the ratio column when it is measured.
pub const BASELINE: &str = "native";
/// The line osbench ends with.
pub const DONE_LINE: &str = "osbench: done";

/// The arguments of `cargo xtask compare`.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct CompareArgs {
    /// The modes to boot, comma-separated, in column order: native, pv, emulate, hvm. A mode whose runs
    /// fail (or that the hypervisor cannot run yet) is reported below the table; the others still run.
    #[arg(long, value_delimiter = ',', default_value = "native,pv", value_parser = parse_mode)]
    pub modes: Vec<String>,
    /// Iterations of each osbench workload (osbench takes at most 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub iterations: u32,
    /// Which passes to run per mode: icount (instructions), wall (time), or both.
    #[arg(long, value_enum, default_value_t = ModeArg::Both)]
    pub passes: ModeArg,
    /// Only workloads whose name contains one of these words (osbench's filter), comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_filter)]
    pub filter: Vec<String>,
    /// For emulate and hvm: also boot once per workload (osbench filtered to it, icount), and print each
    /// workload's exits per operation by reason, less those of a boot of the control workload
    /// (compute_loop) alone (the `exits:` line is per boot).
    #[arg(long)]
    pub exits_per_workload: bool,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw a bar chart of the medians to this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Rewrite the generated sections of docs/COMPARISON.md from this run, with the run's metadata: the
    /// table (`generated:table` markers) and the per-workload exits (`generated:exits`).
    #[arg(long)]
    pub write_docs: bool,
}

/// A mode name `crate::mode::Mode` knows (the column keeps the name).
fn parse_mode(s: &str) -> Result<String, String> {
    s.parse::<crate::mode::Mode>().map(|m| m.name().to_string())
}

fn parse_filter(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(s.to_string())
    } else {
        Err("workload names are snake_case: use lowercase letters, digits and '_'".into())
    }
}

/// What the hypervisor counted during one workload (totals over `ops` operations).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvCounts {
    pub ops: u64,
    pub hypercalls: u64,
    pub exceptions: u64,
    pub syscalls: u64,
    pub upcalls: u64,
}

impl HvCounts {
    /// Hypercalls per operation.
    pub fn hypercalls_per_op(&self) -> f64 {
        self.hypercalls as f64 / self.ops.max(1) as f64
    }

    /// Bounces (exceptions and system calls the hypervisor reflected to the kernel) per operation.
    pub fn bounces_per_op(&self) -> f64 {
        (self.exceptions + self.syscalls) as f64 / self.ops.max(1) as f64
    }
}

/// One osbench result line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub workload: String,
    pub iterations: u64,
    /// Ticks per operation (instructions under icount).
    pub stats: Stats,
    /// The hypervisor's counts (`None` when osbench ran without one: `hv=0`).
    pub hv: Option<HvCounts>,
}

/// Parse one osbench line (`abi::bench` line plus `hv=... ops=... hypercalls=...`).
pub fn parse_row(line: &str) -> Option<Row> {
    let l = parse_line(line)?;
    let rest = &line[line.find(abi::bench::LINE_PREFIX)?..];
    let field = |key: &str| {
        rest.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
    };
    let hv = match field("hv") {
        Some(1) => Some(HvCounts {
            ops: field("ops")?,
            hypercalls: field("hypercalls")?,
            exceptions: field("exceptions")?,
            syscalls: field("syscalls")?,
            upcalls: field("upcalls")?,
        }),
        _ => None,
    };
    Some(Row {
        workload: l.name.to_string(),
        iterations: l.iterations,
        stats: l.stats,
        hv,
    })
}

/// What one boot of one mode printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Run {
    pub rows: Vec<Row>,
    /// osbench printed [`DONE_LINE`].
    pub done: bool,
    /// Its `osbench: ... failed: ...` and usage lines.
    pub errors: Vec<String>,
}

/// Collect osbench's lines from a boot's serial output (domain 0 writes directly or with `(d0) `).
pub fn collect(output: &str) -> Run {
    let mut run = Run::default();
    for line in output.lines() {
        let text = line.strip_prefix("(d0) ").unwrap_or(line).trim();
        if let Some(row) = parse_row(text) {
            run.rows.push(row);
        } else if text == DONE_LINE {
            run.done = true;
        } else if text.starts_with("osbench: ")
            && (text.contains("failed") || text.contains("must"))
            || text.starts_with("usage: osbench")
        {
            run.errors.push(text.to_string());
        }
    }
    run
}

/// One measured cell source: a mode's pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measured {
    pub mode: String,
    pub pass: Pass,
    pub run: Run,
}

/// The workloads in order of first appearance (osbench prints them in its own order).
pub fn workloads(results: &[Measured]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for m in results {
        for r in &m.run.rows {
            if !names.contains(&r.workload.as_str()) {
                names.push(&r.workload);
            }
        }
    }
    names
}

/// The modes in column order (first appearance).
pub fn modes(results: &[Measured]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for m in results {
        if !names.contains(&m.mode.as_str()) {
            names.push(&m.mode);
        }
    }
    names
}

fn find<'a>(results: &'a [Measured], mode: &str, pass: Pass, workload: &str) -> Option<&'a Row> {
    results
        .iter()
        .filter(|m| m.mode == mode && m.pass == pass)
        .flat_map(|m| &m.run.rows)
        .find(|r| r.workload == workload)
}

/// The pass the ratios use: icount if measured (deterministic), else wall.
fn ratio_pass(results: &[Measured]) -> Pass {
    if results.iter().any(|m| m.pass == Pass::Icount) {
        Pass::Icount
    } else {
        Pass::Wall
    }
}

/// The baseline mode of the ratio columns: native when measured, else the first mode.
pub fn baseline(results: &[Measured]) -> Option<&str> {
    let modes = modes(results);
    modes
        .iter()
        .copied()
        .find(|m| *m == BASELINE)
        .or(modes.first().copied())
}

/// True if some row of `mode` carries hypervisor counts (the mode gets the hypercall/bounce columns).
fn counted(results: &[Measured], mode: &str) -> bool {
    results
        .iter()
        .filter(|m| m.mode == mode)
        .flat_map(|m| &m.run.rows)
        .any(|r| r.hv.is_some())
}

/// The table: one row per workload; per mode its icount median, wall median, ratio to the baseline
/// (not for the baseline itself), and hypercalls and bounces per operation where counted.
pub fn format_table(results: &[Measured]) -> String {
    let modes = modes(results);
    let base = baseline(results);
    let rp = ratio_pass(results);
    let mut header = format!("{:<22}", "workload");
    let mut sub = format!("{:<22}", "");
    for m in &modes {
        header += &format!(" | {m:<12}");
        sub += &format!(" | {:>12} {:>12}", "icount", "wall");
        let mut width: usize = 25;
        if Some(*m) != base {
            sub += &format!(" {:>7}", format!("x{}", base.unwrap_or("?")));
            width += 8;
        }
        if counted(results, m) {
            sub += &format!(" {:>9} {:>9}", "hcall/op", "bounce/op");
            width += 20;
        }
        header += &" ".repeat(width.saturating_sub(12));
    }
    let mut out = String::new();
    let _ = writeln!(out, "{}", header.trim_end());
    let _ = writeln!(out, "{sub}");
    let _ = writeln!(out, "{}", "-".repeat(sub.len()));
    for w in workloads(results) {
        let mut line = format!("{w:<22}");
        for m in &modes {
            let ic = find(results, m, Pass::Icount, w);
            let wall = find(results, m, Pass::Wall, w);
            let cell = |r: Option<&Row>| r.map_or("-".to_string(), |r| r.stats.median.to_string());
            line += &format!(" | {:>12} {:>12}", cell(ic), cell(wall));
            if Some(*m) != base {
                let mine = find(results, m, rp, w).map(|r| r.stats.median);
                let theirs = base
                    .and_then(|b| find(results, b, rp, w))
                    .map(|r| r.stats.median);
                let ratio = match (mine, theirs) {
                    (Some(a), Some(b)) if b > 0 => format!("{:.2}", a as f64 / b as f64),
                    _ => "-".to_string(),
                };
                line += &format!(" {ratio:>7}");
            }
            if counted(results, m) {
                // Counts from the icount pass when there is one (fewer timer interrupts per operation).
                let hv = ic.or(wall).and_then(|r| r.hv);
                let (h, b) = hv.map_or(("-".into(), "-".into()), |c| {
                    (
                        format!("{:.2}", c.hypercalls_per_op()),
                        format!("{:.2}", c.bounces_per_op()),
                    )
                });
                line += &format!(" {h:>9} {b:>9}");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = write!(
        out,
        "\nicount: executed instructions per operation (median, -icount shift=0,sleep=off); wall: TSC ticks \
         (TCG: host ticks spent emulating)"
    );
    if modes.len() > 1 {
        let b = base.unwrap_or("?");
        let _ = write!(out, "; x{b}: median / {b}'s median ({} pass)", rp.name());
    }
    let _ = writeln!(
        out,
        "; hcall/op, bounce/op: hypercalls, and exceptions plus system calls the hypervisor bounced to the \
         kernel, per operation (icount pass)."
    );
    out
}

/// Facts about the run for the JSON document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub commit: String,
    pub qemu_version: String,
    pub date: String,
    pub iterations: u32,
    pub cpu_model: String,
    pub filter: Vec<String>,
}

/// `{ "metadata": {...}, "results": [ {workload, mode, pass, iterations, min, median, p90, p99, max,
/// hv: {ops, hypercalls, exceptions, syscalls, upcalls} | null}, ... ] }` in table order.
pub fn to_json(results: &[Measured], meta: &Metadata) -> serde_json::Value {
    use serde_json::json;
    let mut out = Vec::new();
    for w in workloads(results) {
        for m in modes(results) {
            for pass in [Pass::Icount, Pass::Wall] {
                if let Some(r) = find(results, m, pass, w) {
                    out.push(json!({
                        "workload": w,
                        "mode": m,
                        "pass": pass.name(),
                        "iterations": r.iterations,
                        "min": r.stats.min,
                        "median": r.stats.median,
                        "p90": r.stats.p90,
                        "p99": r.stats.p99,
                        "max": r.stats.max,
                        "hv": r.hv.map(|c| json!({
                            "ops": c.ops,
                            "hypercalls": c.hypercalls,
                            "exceptions": c.exceptions,
                            "syscalls": c.syscalls,
                            "upcalls": c.upcalls,
                        })),
                    }));
                }
            }
        }
    }
    json!({
        "metadata": {
            "tool": "cargo xtask compare",
            "commit": meta.commit,
            "qemu_version": meta.qemu_version,
            "date": meta.date,
            "iterations": meta.iterations,
            "filter": meta.filter,
            "cpu_model": meta.cpu_model,
            "modes": modes(results),
            "baseline": baseline(results),
            "icount_args": ICOUNT_ARGS.join(" "),
            "units": "TSC ticks per operation (osbench, timer overhead subtracted); icount: executed instructions",
        },
        "results": out,
    })
}

/// The chart's panels: one per (mode, pass), icount passes first.
pub fn panels(results: &[Measured]) -> Vec<Panel> {
    const COLORS: [(u8, u8, u8); 4] = [
        (0x33, 0x66, 0xcc),
        (0xcc, 0x55, 0x22),
        (0x22, 0x99, 0x55),
        (0x88, 0x44, 0xaa),
    ];
    let names = workloads(results);
    let mut out = Vec::new();
    for pass in [Pass::Icount, Pass::Wall] {
        for (i, m) in modes(results).into_iter().enumerate() {
            if !results.iter().any(|r| r.mode == m && r.pass == pass) {
                continue;
            }
            out.push(Panel {
                caption: format!("{m}: {}", pass.name()),
                unit: match pass {
                    Pass::Icount => "executed instructions".into(),
                    Pass::Wall => "TSC ticks".into(),
                },
                color: COLORS[i % COLORS.len()],
                values: names
                    .iter()
                    .map(|w| find(results, m, pass, w).map(|r| r.stats.median))
                    .collect(),
            });
        }
    }
    out
}

/// The shell commands each boot types: osbench, then poweroff (with osbench's status).
pub fn commands(iterations: u32, filter: &[String]) -> Vec<String> {
    let mut osbench = format!("osbench {iterations}");
    for f in filter {
        osbench += " ";
        osbench += f;
    }
    vec![osbench, "poweroff".into()]
}

/// How long one boot may take: osbench's slowest workloads (process creation, 64-page mappings) cost a
/// few hundred ms per iteration under TCG.
pub fn timeout(iterations: u32) -> Duration {
    Duration::from_secs(90) + Duration::from_millis(800) * iterations
}

/// The typing of `commands`, each at its own prompt.
pub fn session(commands: &[String]) -> Session {
    commands.iter().fold(Session::new(), |s, c| s.command(c))
}

/// Boot the guest kernel in `mode`, type `commands` at its shell (each at its own prompt), and return
/// what happened. One arm per mode.
pub fn boot_mode(
    images: &Images,
    mode: &str,
    commands: &[String],
    icount: bool,
    timeout: Duration,
) -> Result<Outcome, String> {
    let mode: crate::mode::Mode = mode.parse()?;
    // The shell alone, in `mode` (under PV domain 0's console is direct, as in `cargo xtask run`).
    let mut s = crate::mode::scenario(mode, SHELL);
    s.hv_cmdline = format!("{DEFAULT_HV_CMDLINE} {DOM0_CONSOLE_DIRECT}");
    s.icount = icount;
    s.accel = Accel::Tcg;
    s.timeout = timeout;
    let session = session(commands);
    let options = RunOptions {
        input: session.into_input(Some(timeout)),
        ..RunOptions::default()
    };
    let mut progress = |line: &str| {
        if let Some(r) = parse_row(line.strip_prefix("(d0) ").unwrap_or(line)) {
            eprintln!(
                "xtask: compare: [{mode} {}] {:<22} median {}",
                if icount { "icount" } else { "wall" },
                r.workload,
                r.stats.median
            );
        }
    };
    run_scenario_with(images, &s, options, &mut progress)
}

/// The control workload: its operations enter neither kernel nor hypervisor, so a boot that runs only it
/// has every exit of a per-workload boot but the workload's own (boot, shell, typing, spawning osbench,
/// its output line, poweroff). `--exits-per-workload` subtracts it.
pub const CONTROL: &str = "compute_loop";

/// `--exits-per-workload`: for each emulate/hvm mode that ran, one boot running only [`CONTROL`] and one
/// boot per other workload (icount), each giving domain 0's `exits:` line; the differences per operation.
fn exits_per_workload(
    images: &Images,
    args: &CompareArgs,
    results: &[Measured],
    notes: &[exits::ModeNote],
) -> Vec<exits::WorkloadExits> {
    let mut out = Vec::new();
    let names: Vec<String> = workloads(results).into_iter().map(String::from).collect();
    for note in notes {
        if !matches!(note.mode.as_str(), "emulate" | "hvm") || note.failed.is_some() {
            continue;
        }
        let boot = |w: &str| {
            let cmds = commands(args.iterations, &[w.to_string()]);
            boot_mode(images, &note.mode, &cmds, true, timeout(args.iterations)).and_then(|o| {
                exits::of_domain(&o.output, 0).ok_or_else(|| format!("no exits line\n{o}"))
            })
        };
        eprintln!(
            "xtask: compare: {}: a boot of {CONTROL} alone for the exits baseline",
            note.mode
        );
        let base = match boot(CONTROL) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("xtask: compare: {}: baseline boot: {e}", note.mode);
                continue;
            }
        };
        for w in names.iter().filter(|w| w.as_str() != CONTROL) {
            eprintln!("xtask: compare: {}: exits of {w}", note.mode);
            match boot(w) {
                Ok(with) => out.push(exits::per_op(
                    &note.mode,
                    w,
                    &base,
                    &with,
                    u64::from(args.iterations),
                )),
                Err(e) => eprintln!("xtask: compare: {}: {w}: {e}", note.mode),
            }
        }
    }
    out
}

fn git_commit() -> String {
    let out = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(crate::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match out(&["rev-parse", "HEAD"]) {
        Some(c)
            if out(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()) =>
        {
            format!("{c}-dirty")
        }
        Some(c) => c,
        None => "unknown".into(),
    }
}

/// `cargo xtask compare`: build, boot each mode once per pass, print the table, write the files asked
/// for. Returns 0 if every mode ran osbench to the end, 1 otherwise (the table shows what was measured).
pub fn run(args: &CompareArgs) -> Result<u8, String> {
    let images = build_images(Profile::Release)?;
    eprintln!("{}", ensure_qemu()?.describe());
    let cmds = commands(args.iterations, &args.filter);
    let mut results = Vec::new();
    let mut notes = Vec::new();
    let mut ok = true;
    for mode in &args.modes {
        let mut note = exits::ModeNote {
            mode: mode.clone(),
            ..exits::ModeNote::default()
        };
        for pass in args.passes.passes() {
            eprintln!(
                "xtask: compare: {mode}, {} pass: typing `{}`",
                pass.name(),
                cmds.join("`, `")
            );
            let outcome = match boot_mode(
                &images,
                mode,
                &cmds,
                pass == Pass::Icount,
                timeout(args.iterations),
            ) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("xtask: compare: {mode}: {e}");
                    note.failed.get_or_insert(e);
                    ok = false;
                    // Its column stays, empty ("-"), so the table shows which mode did not run.
                    results.push(Measured {
                        mode: mode.clone(),
                        pass,
                        run: Run::default(),
                    });
                    break;
                }
            };
            let kind: crate::mode::Mode = mode.parse()?;
            if let Some(why) = crate::mode::unsupported(kind, &outcome) {
                eprintln!("xtask: compare: {mode}: not available: {why}; the other modes go on");
                note.failed = Some(format!("not available: {why}"));
                ok = false;
                results.push(Measured {
                    mode: mode.clone(),
                    pass,
                    run: Run::default(),
                });
                break;
            }
            if note.exits.is_none() {
                note.exits = exits::of_domain(&outcome.output, 0);
            }
            let run = collect(&outcome.output);
            let mut problems = run.errors.clone();
            if !run.done {
                problems.push(format!("osbench did not print `{DONE_LINE}`"));
            }
            if outcome.exit != Exit::Hypervisor(abi::exit::EXIT_OK) && mode != BASELINE {
                problems.push(format!("the run ended with {}", outcome.exit));
            }
            if !problems.is_empty() {
                note.failed.get_or_insert_with(|| problems.join("; "));
                eprintln!("{outcome}");
                for p in &problems {
                    eprintln!("xtask: compare: {mode}, {} pass: {p}", pass.name());
                }
                ok = false;
            }
            eprintln!(
                "xtask: compare: {mode}, {} pass took {:.1?}",
                pass.name(),
                outcome.elapsed
            );
            results.push(Measured {
                mode: mode.clone(),
                pass,
                run,
            });
        }
        notes.push(note);
    }
    let per_workload = if args.exits_per_workload {
        exits_per_workload(&images, args, &results, &notes)
    } else {
        Vec::new()
    };
    println!();
    let mut table = format_table(&results);
    table += &exits::format_notes(&results, &notes);
    let exits_table = exits::format_per_workload(&results, &per_workload);
    print!("{table}{exits_table}");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meta = Metadata {
        commit: git_commit(),
        qemu_version: crate::bench::chosen_qemu_version(),
        date: crate::bench::now_utc(),
        iterations: args.iterations,
        cpu_model: crate::bench::cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
        filter: args.filter.clone(),
    };
    if args.write_docs {
        if !ok {
            return Err("not rewriting docs/COMPARISON.md from a run with errors".into());
        }
        write_docs(args, &meta, &table, &exits_table)?;
    }
    if let Some(path) = &args.json {
        let text =
            serde_json::to_string_pretty(&to_json(&results, &meta)).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("xtask: compare: wrote {}", path.display());
    }
    if let Some(path) = &args.svg {
        let names = workloads(&results);
        crate::bench::render_bars(
            path,
            "ring1pv osbench: median cost per operation by mode (log scale)",
            &names,
            &panels(&results),
        )?;
        eprintln!("xtask: compare: wrote {}", path.display());
    }
    Ok(if ok { 0 } else { 1 })
}

/// The document whose `generated:table` and `generated:exits` sections `--write-docs` rewrites.
pub const DOC: &str = "docs/COMPARISON.md";

/// The command line that reproduces a run (every option that changes what is measured).
pub fn command_line(args: &CompareArgs) -> String {
    let mut c = format!(
        "cargo xtask compare --modes {} --iterations {}",
        args.modes.join(","),
        args.iterations
    );
    if args.passes != ModeArg::Both {
        let pass = match args.passes {
            ModeArg::Icount => "icount",
            _ => "wall",
        };
        let _ = write!(c, " --passes {pass}");
    }
    if !args.filter.is_empty() {
        let _ = write!(c, " --filter {}", args.filter.join(","));
    }
    if args.exits_per_workload {
        c += " --exits-per-workload";
    }
    c + " --write-docs"
}

/// The generated `table` section of [`DOC`]: the command line, the run's metadata and the table (with
/// the per-mode notes below it).
pub fn docs_section(args: &CompareArgs, meta: &Metadata, table: &str) -> String {
    format!(
        "Generated by `{}` at commit {} ({}; QEMU {}, TCG; CPU: {}).\n\n```text\n{table}```\n",
        command_line(args),
        meta.commit,
        meta.date,
        meta.qemu_version,
        meta.cpu_model,
    )
}

/// The generated `exits` section of [`DOC`]: the per-workload exits of the same run, or, for a run
/// without `--exits-per-workload`, a line saying so (stale exits never sit beside a new table).
pub fn exits_section(args: &CompareArgs, meta: &Metadata, exits_table: &str) -> String {
    if exits_table.trim().is_empty() {
        return format!(
            "Not measured by the run that generated the table above (commit {}): `--exits-per-workload` \
             was not given, or no emulate or hvm mode ran.\n",
            meta.commit
        );
    }
    format!(
        "Generated by the same run (`{}`, commit {}).\n\n```text\n{}\n```\n",
        command_line(args),
        meta.commit,
        exits_table.trim(),
    )
}

fn write_docs(
    args: &CompareArgs,
    meta: &Metadata,
    table: &str,
    exits_table: &str,
) -> Result<(), String> {
    let path = crate::workspace_root().join(DOC);
    let doc = std::fs::read_to_string(&path).map_err(|e| format!("{DOC}: {e}"))?;
    let doc =
        crate::bench::perfdoc::replace_section(&doc, "table", &docs_section(args, meta, table))?;
    let doc = crate::bench::perfdoc::replace_section(
        &doc,
        "exits",
        &exits_section(args, meta, exits_table),
    )?;
    std::fs::write(&path, doc).map_err(|e| format!("{DOC}: {e}"))?;
    eprintln!("xtask: compare: rewrote the generated table and exits sections of {DOC}");
    Ok(())
}

#[cfg(test)]
mod tests;
