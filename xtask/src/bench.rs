//! `cargo xtask bench`: boot the benchmark (domain 0 `bench`, domain 1 `bench-partner`, the hypervisor with
//! `bench=floor`) once per mode — `icount` (`-icount shift=0,sleep=off`: the TSC counts executed
//! instructions, deterministic) and `wall` (plain TCG, or KVM with `--accel kvm`) — collect the `BENCH`
//! result lines (`abi::bench`), and print a table; optionally write JSON and an SVG chart.
//!
//! Everything but [`run`] is pure and unit-tested: line collection, the table, the JSON document, the date,
//! the `/proc/cpuinfo` and `qemu --version` parsing. The chart is drawn by [`render_svg`] (plotters, SVG
//! backend only).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use abi::bench::{Stats, parse_line};
use clap::{Args, ValueEnum};

use crate::images::{Profile, build_images};
use crate::qemu::{Accel, Exit, ICOUNT_ARGS, ensure_qemu};
use crate::scenario::{RunOptions, Scenario, run_scenario_with};

/// One measuring pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// `-icount shift=0,sleep=off`: ticks are executed instructions (guest and hypervisor).
    Icount,
    /// Plain TCG (ticks are the host's TSC ticks spent emulating) or KVM (real cycles).
    Wall,
}

impl Mode {
    /// `icount` or `wall` (the JSON `mode` value).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Icount => "icount",
            Mode::Wall => "wall",
        }
    }
}

/// `--mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Instruction counts only.
    Icount,
    /// Wall-clock ticks only.
    Wall,
    /// Both passes, icount first.
    #[default]
    Both,
}

impl ModeArg {
    /// The passes to run, in order.
    pub fn passes(self) -> Vec<Mode> {
        match self {
            ModeArg::Icount => vec![Mode::Icount],
            ModeArg::Wall => vec![Mode::Wall],
            ModeArg::Both => vec![Mode::Icount, Mode::Wall],
        }
    }
}

/// The arguments of `cargo xtask bench`.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct BenchArgs {
    /// Which passes to run.
    #[arg(long, value_enum, default_value_t = ModeArg::Both)]
    pub mode: ModeArg,
    /// Measured iterations per operation (the hypervisor's floor takes at most 4096).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=16384))]
    pub iterations: u32,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw a bar chart of the medians to this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Only operations whose name contains NAME (e.g. `mmu_update`).
    #[arg(long, value_name = "NAME", value_parser = parse_filter)]
    pub filter: Option<String>,
    /// Accelerator of the wall pass (the icount pass always uses TCG).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    pub accel: Accel,
    /// Check the icount medians against the ceilings in xtask/bench-budgets.toml (icount pass only, with
    /// the file's iterations); exit 1 naming every breach.
    #[arg(long, conflicts_with_all = ["write_budgets", "filter"])]
    pub check_budgets: bool,
    /// Rewrite xtask/bench-budgets.toml from this run's icount medians (plus headroom).
    #[arg(long, conflicts_with = "filter")]
    pub write_budgets: bool,
    /// Rewrite the generated sections of docs/PERFORMANCE.md (results, before/after) from this run.
    #[arg(long, conflicts_with = "filter")]
    pub write_docs: bool,
}

fn parse_filter(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(s.to_string())
    } else {
        Err("operation names are snake_case: use lowercase letters, digits and '_'".into())
    }
}

/// One operation of issue 6, in table order.
#[derive(Clone, Copy, Debug)]
pub struct Operation {
    /// Stable snake_case name.
    pub name: &'static str,
    /// Measured today (its mechanism exists); the others arrive with later issues.
    pub available: bool,
}

const fn op(name: &'static str, available: bool) -> Operation {
    Operation { name, available }
}

/// Every operation of the issue, floors first, then the order of the guest's run.
pub const OPERATIONS: [Operation; 19] = [
    op("floor_ring0_int_iret", true),
    op("floor_ring1_int_fastpath", true),
    op("null_hypercall", true),
    op("xen_version", true),
    op("console_write_16", true),
    op("mmu_update_single", true),
    op("mmu_update_batch64_per_pte", true),
    op("update_va_mapping_invlpg", true),
    op("tlb_flush_local", true),
    op("new_baseptr", true),
    op("multicall8_per_call", true),
    op("address_space_create_destroy", true),
    op("evtchn_send_self", true),
    op("evtchn_pingpong_interdomain", true),
    op("set_timer_op", true),
    op("yield_domain_switch", true),
    op("pf_bounce", true),
    op("syscall_int80_direct", true),
    op("syscall_bounce", true),
];

/// The baseline the table's ratio column divides by.
pub const FLOOR: &str = "floor_ring1_int_fastpath";
/// The hypervisor's floor: `int` + `iretq` in ring 0, exactly 2 instructions under icount.
pub const FLOOR_RING0: &str = "floor_ring0_int_iret";

/// The names of the operations measured today.
pub fn available_operations() -> impl Iterator<Item = &'static str> {
    OPERATIONS.iter().filter(|o| o.available).map(|o| o.name)
}

/// One result line of one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Operation name.
    pub name: String,
    /// The pass.
    pub mode: Mode,
    /// Iterations measured.
    pub iterations: u64,
    /// Ticks per operation.
    pub stats: Stats,
}

/// What one pass printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Every result line, in output order.
    pub records: Vec<Record>,
    /// Every `BENCH error name=...: why` line (without the `BENCH ` prefix).
    pub errors: Vec<String>,
    /// Domain 0 printed `BENCH done`.
    pub done: bool,
}

/// Collect the `BENCH` lines of a pass's serial output: the hypervisor's (unprefixed) and domain 0's
/// (`(d0) BENCH ...`). Records whose name does not contain `filter` are dropped (the hypervisor's floor
/// line is printed whatever the filter).
pub fn collect(output: &str, mode: Mode, filter: Option<&str>) -> Collected {
    let mut c = Collected::default();
    for line in output.lines() {
        let text = line.strip_prefix("(d0) ").unwrap_or(line);
        let Some(rest) = text.strip_prefix(abi::bench::LINE_PREFIX) else {
            continue;
        };
        if rest.trim() == "done" {
            c.done = true;
        } else if rest.starts_with("error ") {
            c.errors.push(rest.to_string());
        } else if let Some(l) = parse_line(text)
            && filter.is_none_or(|f| l.name.contains(f))
        {
            c.records.push(Record {
                name: l.name.to_string(),
                mode,
                iterations: l.iterations,
                stats: l.stats,
            });
        }
    }
    c
}

/// Domain 0's command line.
pub fn guest_cmdline(iterations: u32, filter: Option<&str>) -> String {
    match filter {
        Some(f) => format!("bench iterations={iterations} filter={f}"),
        None => format!("bench iterations={iterations}"),
    }
}

/// Domain 1's command line: the same iterations and filter (it echoes the ping-pong only if that is
/// selected).
pub fn partner_cmdline(iterations: u32, filter: Option<&str>) -> String {
    match filter {
        Some(f) => format!("bench-partner iterations={iterations} filter={f}"),
        None => format!("bench-partner iterations={iterations}"),
    }
}

/// The scenario of one pass: domain 0 measures, domain 1 is the yield partner, the hypervisor measures
/// its ring-0 floor first.
pub fn scenario(mode: Mode, iterations: u32, filter: Option<&str>, accel: Accel) -> Scenario {
    let mut s = Scenario::new(&[
        guest_cmdline(iterations, filter),
        partner_cmdline(iterations, filter),
    ]);
    s.hv_cmdline = format!("loglevel=info bench=floor bench_iterations={iterations}");
    s.icount = mode == Mode::Icount;
    s.accel = if s.icount { Accel::Tcg } else { accel };
    // A thousand iterations take a few seconds; allow slow hosts plenty.
    s.timeout = Duration::from_secs(120) + Duration::from_millis(40) * iterations;
    s
}

/// The names in `records`, in [`OPERATIONS`] order, then any unknown names in order of appearance.
pub fn ordered_names(records: &[Record]) -> Vec<&str> {
    let mut names: Vec<&str> = OPERATIONS
        .iter()
        .map(|o| o.name)
        .filter(|n| records.iter().any(|r| r.name == *n))
        .collect();
    for r in records {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    names
}

fn find<'a>(records: &'a [Record], name: &str, mode: Mode) -> Option<&'a Record> {
    records.iter().find(|r| r.name == name && r.mode == mode)
}

/// The readable table: operation, icount median, wall median and p99, and the ratio of the median to
/// [`FLOOR`]'s (wall medians when the wall pass ran, else icount medians). Operations not measured yet are
/// listed below it.
pub fn format_table(records: &[Record]) -> String {
    let ratio_mode = if records.iter().any(|r| r.mode == Mode::Wall) {
        Mode::Wall
    } else {
        Mode::Icount
    };
    let floor = find(records, FLOOR, ratio_mode).map(|r| r.stats.median);
    let cell = |r: Option<&Record>, f: fn(&Stats) -> u64| {
        r.map_or_else(|| "-".to_string(), |r| f(&r.stats).to_string())
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} {:>14} {:>12} {:>12} {:>9}",
        "operation", "icount instr", "wall median", "wall p99", "x floor"
    );
    let _ = writeln!(out, "{}", "-".repeat(30 + 1 + 14 + 1 + 12 + 1 + 12 + 1 + 9));
    for name in ordered_names(records) {
        let icount = find(records, name, Mode::Icount);
        let wall = find(records, name, Mode::Wall);
        let ratio = match (find(records, name, ratio_mode), floor) {
            (Some(r), Some(f)) if f > 0 => format!("{:.1}", r.stats.median as f64 / f as f64),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{name:<30} {:>14} {:>12} {:>12} {ratio:>9}",
            cell(icount, |s| s.median),
            cell(wall, |s| s.median),
            cell(wall, |s| s.p99),
        );
    }
    let _ = writeln!(
        out,
        "\nicount: executed instructions per operation (median); wall: TSC ticks (TCG: host TSC ticks spent \
         emulating, not guest cycles; KVM: cycles); x floor: median / median of {FLOOR} ({} pass).",
        ratio_mode.name()
    );
    let pending: Vec<&str> = OPERATIONS
        .iter()
        .filter(|o| !o.available)
        .map(|o| o.name)
        .collect();
    if !pending.is_empty() {
        let _ = writeln!(out, "not measured yet: {}", pending.join(", "));
    }
    out
}

/// Facts about the machine and the run, for the JSON document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cores: usize,
    /// `qemu-system-x86_64 --version`'s version number.
    pub qemu_version: String,
    /// Accelerator of each pass that ran.
    pub accelerators: Vec<(Mode, Accel)>,
    /// UTC date and time, ISO 8601.
    pub date: String,
    /// Iterations asked for.
    pub iterations: u32,
    /// The `--filter`, if any.
    pub filter: Option<String>,
}

/// The first `model name` of a `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

/// The number of `processor` entries of a `/proc/cpuinfo` text.
pub fn cpu_count(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim() == "processor")
        })
        .count()
}

/// The version number in `qemu-system-x86_64 --version`'s first line (`QEMU emulator version 7.2.22 (...)`).
pub fn qemu_version(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    let rest = first.split("version").nth(1)?;
    rest.split_whitespace().next().map(str::to_string)
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The JSON document: `{ "metadata": {...}, "results": [ {name, mode, iterations, min, median, p90, p99,
/// max}, ... ] }`, results in table order, icount before wall.
pub fn to_json(records: &[Record], meta: &Metadata) -> serde_json::Value {
    use serde_json::json;
    let mut results = Vec::new();
    for name in ordered_names(records) {
        for mode in [Mode::Icount, Mode::Wall] {
            if let Some(r) = find(records, name, mode) {
                results.push(json!({
                    "name": r.name,
                    "mode": r.mode.name(),
                    "iterations": r.iterations,
                    "min": r.stats.min,
                    "median": r.stats.median,
                    "p90": r.stats.p90,
                    "p99": r.stats.p99,
                    "max": r.stats.max,
                }));
            }
        }
    }
    let accelerator: serde_json::Map<String, serde_json::Value> = meta
        .accelerators
        .iter()
        .map(|(m, a)| (m.name().to_string(), json!(a.name())))
        .collect();
    json!({
        "metadata": {
            "machine": { "cpu_model": meta.cpu_model, "cores": meta.cores },
            "qemu_version": meta.qemu_version,
            "accelerator": accelerator,
            "icount_args": ICOUNT_ARGS.join(" "),
            "date": meta.date,
            "iterations": meta.iterations,
            "filter": meta.filter,
            "units": "TSC ticks per operation after subtracting the empty TSC pair; icount: executed instructions",
        },
        "results": results,
    })
}

/// Draw the medians as horizontal bars (log scale), one panel per mode, to an SVG file.
pub fn render_svg(records: &[Record], path: &Path) -> Result<(), String> {
    let names = ordered_names(records);
    let panels: Vec<Panel> = [Mode::Icount, Mode::Wall]
        .into_iter()
        .filter(|m| records.iter().any(|r| r.mode == *m))
        .map(|mode| {
            let (caption, unit, color) = match mode {
                Mode::Icount => (
                    "icount (-icount shift=0)",
                    "executed instructions",
                    (0x33, 0x66, 0xcc),
                ),
                Mode::Wall => ("wall", "TSC ticks", (0xcc, 0x55, 0x22)),
            };
            Panel {
                caption: caption.to_string(),
                unit: unit.to_string(),
                color,
                values: names
                    .iter()
                    .map(|n| find(records, n, mode).map(|r| r.stats.median))
                    .collect(),
            }
        })
        .collect();
    render_bars(
        path,
        "ring1pv: median cost per operation (log scale)",
        &names,
        &panels,
    )
}

/// One panel of a bar chart: a value (or none) per row name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panel {
    /// Title above the panel.
    pub caption: String,
    /// What the x axis counts.
    pub unit: String,
    /// Bar colour (RGB).
    pub color: (u8, u8, u8),
    /// One value per row (same order as the names).
    pub values: Vec<Option<u64>>,
}

/// The project's one SVG writer: horizontal bars on a log scale, one row per name, panels side by side
/// (used by `cargo xtask bench` and `cargo xtask compare`).
pub fn render_bars(
    path: &Path,
    title: &str,
    names: &[&str],
    panels: &[Panel],
) -> Result<(), String> {
    use plotters::prelude::*;
    if names.is_empty() || panels.is_empty() {
        return Err("no results to draw".into());
    }
    let height = 110 + 26 * names.len() as u32;
    let err = |e: DrawingAreaErrorKind<std::io::Error>| format!("{}: {e}", path.display());
    let root = SVGBackend::new(path, (560 * panels.len() as u32 + 200, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
    let areas = root.split_evenly((1, panels.len()));
    let n = names.len();
    for (area, panel) in areas.iter().zip(panels) {
        let bars: Vec<(usize, u64)> = panel
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (n - 1 - i, v)))
            .collect();
        let top = bars.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64 * 4.0;
        let (r, g, b) = panel.color;
        let color = RGBColor(r, g, b);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.caption, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(210)
            // A discrete integer range includes its end: rows 0..=n-1.
            .build_cartesian_2d((0.5f64..top).log_scale(), (0..n - 1).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i < n => names[n - 1 - *i].to_string(),
                _ => String::new(),
            })
            .x_label_formatter(&|v| compact(*v))
            .x_desc(&panel.unit)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(bars.iter().map(|&(row, v)| {
                let mut bar = Rectangle::new(
                    [
                        (0.5, SegmentValue::Exact(row)),
                        ((v as f64).max(0.5), SegmentValue::Exact(row + 1)),
                    ],
                    color.filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(err)?;
        chart
            .draw_series(bars.iter().map(|&(row, v)| {
                Text::new(
                    format!(" {v}"),
                    ((v as f64).max(0.5), SegmentValue::CenterOf(row)),
                    ("sans-serif", 12),
                )
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// An axis label: `1`, `10`, `100`, `1k`, `10k`, `1M` ...
pub fn compact(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else if v >= 1.0 {
        format!("{v}")
    } else {
        String::new()
    }
}

/// What one pass produced.
struct Pass {
    collected: Collected,
    ok: bool,
}

fn run_pass(images: &crate::Images, args: &BenchArgs, mode: Mode) -> Result<(Pass, Accel), String> {
    let s = scenario(mode, args.iterations, args.filter.as_deref(), args.accel);
    eprintln!(
        "xtask: bench: {} pass ({}{}), {} iterations, domains [{}]",
        mode.name(),
        s.accel.name(),
        if s.icount {
            ", -icount shift=0,sleep=off"
        } else {
            ""
        },
        args.iterations,
        s.domains.join(" | ")
    );
    let mut on_line = |line: &str| {
        let text = line.strip_prefix("(d0) ").unwrap_or(line);
        if let Some(l) = parse_line(text) {
            eprintln!(
                "xtask: bench: [{}] {:<30} median {}",
                mode.name(),
                l.name,
                l.stats.median
            );
        }
    };
    let outcome = run_scenario_with(images, &s, RunOptions::default(), &mut on_line)?;
    if s.accel == Accel::Kvm
        && let Some(why) = crate::kvm::explain_failure(&outcome.stderr)
    {
        return Err(why);
    }
    let collected = collect(&outcome.output, mode, args.filter.as_deref());
    let mut problems = Vec::new();
    if outcome.exit != Exit::Hypervisor(abi::exit::EXIT_OK) {
        problems.push(format!("the run ended with {}", outcome.exit));
    }
    if !collected.done {
        problems.push("domain 0 did not print `BENCH done`".to_string());
    }
    problems.extend(collected.errors.iter().cloned());
    let ok = problems.is_empty();
    if !ok {
        eprintln!("{outcome}");
        for p in &problems {
            eprintln!("xtask: bench: {} pass: {p}", mode.name());
        }
    }
    eprintln!(
        "xtask: bench: {} pass took {:.1?}",
        mode.name(),
        outcome.elapsed
    );
    Ok((Pass { collected, ok }, s.accel))
}

fn metadata(args: &BenchArgs, accelerators: Vec<(Mode, Accel)>) -> Metadata {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Metadata {
        cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
        cores: cpu_count(&cpuinfo).max(1),
        qemu_version: chosen_qemu_version(),
        accelerators,
        date: now_utc(),
        iterations: args.iterations,
        filter: args.filter.clone(),
    }
}

/// The version of the QEMU that boots the machine (`unknown` if it cannot say).
pub fn chosen_qemu_version() -> String {
    std::process::Command::new(crate::qemu_choice::program_for_display())
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| qemu_version(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_else(|| "unknown".into())
}

/// Now, as [`utc_timestamp`].
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_timestamp(secs)
}

/// The `cargo xtask test` step: the icount pass with the budget file's iterations, checked against its
/// ceilings. True if every operation is within its ceiling.
pub fn check_budgets_step() -> bool {
    let args = BenchArgs {
        mode: ModeArg::Icount,
        iterations: 1,
        json: None,
        svg: None,
        filter: None,
        accel: Accel::Tcg,
        check_budgets: true,
        write_budgets: false,
        write_docs: false,
    };
    match run(&args) {
        Ok(code) => code == 0,
        Err(e) => {
            eprintln!("xtask: bench: {e}");
            false
        }
    }
}

/// `cargo xtask bench`: build, run the passes, print the table, write the files asked for. Returns the
/// exit status: 0 if every pass completed and every selected operation was measured, 1 otherwise.
pub fn run(args: &BenchArgs) -> Result<u8, String> {
    let root = crate::workspace_root();
    let mut args = args.clone();
    let budgets = if args.check_budgets {
        let path = root.join(budget::FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let b = budget::parse(&text)?;
        args.mode = ModeArg::Icount;
        args.iterations = b.iterations;
        Some(b)
    } else {
        None
    };
    let args = &args;
    // KVM only serves the wall pass; where it cannot run, say so before building or booting anything.
    if args.accel == Accel::Kvm && args.mode.passes().contains(&Mode::Wall) {
        crate::kvm::check_host()?;
    }
    let images = build_images(Profile::Release)?;
    eprintln!("{}", ensure_qemu()?.describe());
    let mut records = Vec::new();
    let mut accelerators = Vec::new();
    let mut ok = true;
    for mode in args.mode.passes() {
        let (pass, accel) = run_pass(&images, args, mode)?;
        ok &= pass.ok;
        records.extend(pass.collected.records);
        accelerators.push((mode, accel));
    }
    println!();
    print!("{}", format_table(&records));
    if let Some(path) = &args.json {
        let doc = to_json(&records, &metadata(args, accelerators.clone()));
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("xtask: bench: wrote {}", path.display());
    }
    if let Some(path) = &args.svg {
        render_svg(&records, path)?;
        eprintln!("xtask: bench: wrote {}", path.display());
    }
    if !ok {
        return Ok(1);
    }
    if args.write_budgets {
        let path = root.join(budget::FILE);
        let scale = budget::check(
            &budget::Budgets {
                iterations: args.iterations,
                ceilings: Vec::new(),
            },
            &records,
        );
        if !scale.is_empty() || !args.mode.passes().contains(&Mode::Icount) {
            return Err(format!(
                "--write-budgets needs a correct icount pass: {scale:?}"
            ));
        }
        std::fs::write(&path, budget::render(&records, args.iterations))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("xtask: bench: wrote {}", path.display());
    }
    if args.write_docs {
        write_docs(&records, &metadata(args, accelerators))?;
    }
    if let Some(b) = budgets {
        let breaches = budget::check(&b, &records);
        for line in &breaches {
            eprintln!("xtask: bench: budget exceeded: {line}");
        }
        if !breaches.is_empty() {
            return Ok(1);
        }
        eprintln!(
            "xtask: bench: all {} operations within their icount ceilings ({})",
            b.ceilings.len(),
            budget::FILE
        );
    }
    Ok(0)
}

fn write_docs(records: &[Record], meta: &Metadata) -> Result<(), String> {
    let root = crate::workspace_root();
    let read =
        |rel: &str| std::fs::read_to_string(root.join(rel)).map_err(|e| format!("{rel}: {e}"));
    let baseline: serde_json::Value = serde_json::from_str(&read(perfdoc::BASELINE)?)
        .map_err(|e| format!("{}: {e}", perfdoc::BASELINE))?;
    let qemu = crate::qemu_choice::program_for_display()
        .display()
        .to_string();
    let mut doc = read(perfdoc::DOC)?;
    doc = perfdoc::replace_section(
        &doc,
        "results",
        &perfdoc::results_section(records, meta, &qemu),
    )?;
    doc = perfdoc::replace_section(
        &doc,
        "before-after",
        &perfdoc::before_after_section(&baseline, records),
    )?;
    std::fs::write(root.join(perfdoc::DOC), doc).map_err(|e| format!("{}: {e}", perfdoc::DOC))?;
    eprintln!(
        "xtask: bench: rewrote the generated sections of {}",
        perfdoc::DOC
    );
    Ok(())
}

pub mod budget;
pub mod perfdoc;

#[cfg(test)]
mod tests;
