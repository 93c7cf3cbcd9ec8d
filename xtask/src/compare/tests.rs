//! Host tests of `cargo xtask compare`'s pure parts: line parsing, collection, the table, JSON, panels.

use super::*;

const PV_ICOUNT: &str = "\
pvsh$ osbench 5
osbench: 5 iterations; ticks per operation (TSC; instructions under icount), timer overhead 40 subtracted; hypervisor counts beside each line
BENCH name=null_syscall_int80 iterations=5 min=200 median=210 p90=220 p99=230 max=240 hv=1 ops=5 hypercalls=0 exceptions=0 syscalls=0 upcalls=0
BENCH name=null_syscall_syscall iterations=5 min=900 median=1000 p90=1100 p99=1200 max=1300 hv=1 ops=5 hypercalls=0 exceptions=0 syscalls=5 upcalls=1
        \rBENCH name=write_1k iterations=5 min=9 median=10 p90=11 p99=12 max=13 hv=1 ops=5 hypercalls=20 exceptions=0 syscalls=0 upcalls=0
osbench: done
pvsh$ poweroff
";

fn measured(mode: &str, pass: Pass, text: &str) -> Measured {
    Measured {
        mode: mode.into(),
        pass,
        run: collect(text),
    }
}

#[test]
fn rows_parse_with_and_without_counts() {
    let r = parse_row(
        "BENCH name=prot_fault iterations=7 min=1 median=2 p90=3 p99=4 max=5 hv=1 ops=7 hypercalls=3 \
         exceptions=14 syscalls=0 upcalls=1",
    )
    .unwrap();
    assert_eq!(r.workload, "prot_fault");
    assert_eq!(r.stats.median, 2);
    let hv = r.hv.unwrap();
    assert_eq!((hv.ops, hv.exceptions, hv.upcalls), (7, 14, 1));
    assert!((hv.bounces_per_op() - 2.0).abs() < 1e-9);
    // Natively: hv=0, no counts.
    let n = parse_row(
        "(d0) BENCH name=x iterations=1 min=1 median=1 p90=1 p99=1 max=1 hv=0 ops=1 hypercalls=0 \
         exceptions=0 syscalls=0 upcalls=0",
    );
    assert_eq!(n.unwrap().hv, None);
    // A bench line without the counts (the kernel's own suite) is a row without counts.
    assert_eq!(
        parse_row("BENCH name=x iterations=1 min=1 median=1 p90=1 p99=1 max=1")
            .unwrap()
            .hv,
        None
    );
    // hv=1 with a count missing or malformed: refused rather than half-read.
    assert!(
        parse_row("BENCH name=x iterations=1 min=1 median=1 p90=1 p99=1 max=1 hv=1 ops=1")
            .is_none()
    );
    assert!(
        parse_row(
            "BENCH name=x iterations=1 min=1 median=1 p90=1 p99=1 max=1 hv=1 ops=1 hypercalls=z \
             exceptions=0 syscalls=0 upcalls=0"
        )
        .is_none()
    );
    assert!(parse_row("osbench: done").is_none());
    // Zero operations do not divide by zero.
    assert_eq!(HvCounts::default().hypercalls_per_op(), 0.0);
}

#[test]
fn collection_finds_rows_done_and_errors() {
    let run = collect(PV_ICOUNT);
    assert!(run.done);
    assert!(run.errors.is_empty());
    let names: Vec<&str> = run.rows.iter().map(|r| r.workload.as_str()).collect();
    assert_eq!(
        names,
        ["null_syscall_int80", "null_syscall_syscall", "write_1k"]
    );
    let bad = collect(
        "osbench: spawn_image failed: ENOMEM\nosbench: iterations must be 1..=1000\nusage: osbench [..]\n",
    );
    assert!(!bad.done);
    assert_eq!(bad.errors.len(), 3);
    assert_eq!(collect(""), Run::default());
}

#[test]
fn table_with_one_mode_has_no_ratio_but_counts() {
    let results = [
        measured("pv", Pass::Icount, PV_ICOUNT),
        measured(
            "pv",
            Pass::Wall,
            &PV_ICOUNT.replace("median=1000", "median=7777"),
        ),
    ];
    assert_eq!(baseline(&results), Some("pv"));
    let t = format_table(&results);
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].starts_with("workload") && lines[0].contains("pv"),
        "{t}"
    );
    assert!(
        lines[1].contains("hcall/op") && !lines[1].contains("xpv"),
        "{t}"
    );
    let sys = lines
        .iter()
        .find(|l| l.starts_with("null_syscall_syscall"))
        .unwrap();
    assert!(sys.contains(" 1000 ") && sys.contains(" 7777 "), "{sys}");
    assert!(sys.ends_with("      0.00      1.00"), "{sys}");
    let w = lines.iter().find(|l| l.starts_with("write_1k")).unwrap();
    assert!(w.contains("4.00"), "{w}");
}

#[test]
fn ratios_are_to_native_whatever_the_column_order() {
    let native = PV_ICOUNT
        .replace(" hv=1", " hv=0")
        .replace("median=210", "median=100")
        .replace("median=1000", "median=500");
    let results = [
        measured("pv", Pass::Icount, PV_ICOUNT),
        measured("native", Pass::Icount, &native),
        measured(
            "emulate",
            Pass::Icount,
            "BENCH name=null_syscall_int80 iterations=5 min=1 median=1000 p90=1 p99=1 max=1\n",
        ),
    ];
    assert_eq!(modes(&results), ["pv", "native", "emulate"]);
    assert_eq!(baseline(&results), Some("native"));
    let t = format_table(&results);
    let int80 = t
        .lines()
        .find(|l| l.starts_with("null_syscall_int80"))
        .unwrap();
    // pv 210 / native 100, then native (no ratio, no counts), then emulate 1000 / 100.
    assert!(int80.contains("2.10"), "{int80}");
    assert!(int80.contains("10.00"), "{int80}");
    let sys = t
        .lines()
        .find(|l| l.starts_with("null_syscall_syscall"))
        .unwrap();
    assert!(sys.contains("2.00"), "{sys}");
    // emulate has no row for it: dashes, not a crash.
    assert!(sys.trim_end().ends_with('-'), "{sys}");
    assert!(t.lines().nth(1).unwrap().contains("xnative"), "{t}");
}

#[test]
fn json_has_metadata_and_every_cell() {
    let results = [measured("pv", Pass::Icount, PV_ICOUNT)];
    let meta = Metadata {
        commit: "abc123".into(),
        qemu_version: "7.2.22".into(),
        date: "2026-12-02T00:00:00Z".into(),
        iterations: 5,
        cpu_model: "cpu".into(),
        filter: vec![],
    };
    let j = to_json(&results, &meta);
    assert_eq!(j["metadata"]["commit"], "abc123");
    assert_eq!(j["metadata"]["qemu_version"], "7.2.22");
    assert_eq!(j["metadata"]["iterations"], 5);
    assert_eq!(j["metadata"]["baseline"], "pv");
    assert_eq!(j["metadata"]["modes"][0], "pv");
    let r = j["results"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[1]["workload"], "null_syscall_syscall");
    assert_eq!(r[1]["pass"], "icount");
    assert_eq!(r[1]["median"], 1000);
    assert_eq!(r[1]["hv"]["syscalls"], 5);
}

#[test]
fn panels_one_per_mode_and_pass() {
    let results = [
        measured("native", Pass::Icount, PV_ICOUNT),
        measured("pv", Pass::Icount, PV_ICOUNT),
        measured("pv", Pass::Wall, PV_ICOUNT),
    ];
    let p = panels(&results);
    let captions: Vec<&str> = p.iter().map(|p| p.caption.as_str()).collect();
    assert_eq!(captions, ["native: icount", "pv: icount", "pv: wall"]);
    assert_eq!(p[1].values, [Some(210), Some(1000), Some(10)]);
    let svg = std::env::temp_dir().join(format!("xtask-compare-{}.svg", std::process::id()));
    crate::bench::render_bars(&svg, "t", &workloads(&results), &p).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains("null_syscall_int80"));
    std::fs::remove_file(&svg).unwrap();
}

#[test]
fn commands_modes_and_timeouts() {
    assert_eq!(commands(10, &[]), ["osbench 10", "poweroff"]);
    assert_eq!(
        commands(3, &["null".into(), "fault".into()]),
        ["osbench 3 null fault", "poweroff"]
    );
    for m in ["native", "pv", "emulate", "hvm"] {
        assert_eq!(parse_mode(m).as_deref(), Ok(m));
    }
    assert!(
        parse_mode("xen")
            .unwrap_err()
            .contains("expected native, pv, emulate or hvm")
    );
    assert!(parse_filter("null").is_ok() && parse_filter("Null").is_err());
    assert!(timeout(1000) > timeout(1));
}

#[test]
fn the_docs_section_names_its_command_and_holds_the_table() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: CompareArgs,
    }
    let cli = <Cli as clap::Parser>::try_parse_from(["compare", "--iterations", "7"]).unwrap();
    assert_eq!(cli.args.modes, ["native", "pv"]);
    assert!(!cli.args.write_docs);
    let meta = Metadata {
        commit: "abc".into(),
        qemu_version: "7.2.22".into(),
        date: "2026-12-02T00:00:00Z".into(),
        iterations: 7,
        cpu_model: "cpu".into(),
        filter: vec![],
    };
    let body = docs_section(&cli.args, &meta, "TABLE\n");
    assert!(body.starts_with(
        "Generated by `cargo xtask compare --modes native,pv --iterations 7 --write-docs` at commit abc"
    ));
    assert!(body.contains("```text\nTABLE\n```"));
    let doc = "x\n<!-- BEGIN generated:table -->\nold\n<!-- END generated:table -->\ny\n";
    let new = crate::bench::perfdoc::replace_section(doc, "table", &body).unwrap();
    assert!(new.contains("TABLE") && !new.contains("old"));
}

#[test]
fn the_exits_section_names_the_full_command_or_says_it_was_not_measured() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: CompareArgs,
    }
    let parse = |a: &[&str]| <Cli as clap::Parser>::try_parse_from(a).unwrap().args;
    let args = parse(&[
        "compare",
        "--modes",
        "native,pv,emulate,hvm",
        "--iterations",
        "20",
        "--passes",
        "icount",
        "--filter",
        "fault,mmap",
        "--exits-per-workload",
    ]);
    assert_eq!(
        command_line(&args),
        "cargo xtask compare --modes native,pv,emulate,hvm --iterations 20 --passes icount \
         --filter fault,mmap --exits-per-workload --write-docs"
    );
    let meta = Metadata {
        commit: "abc".into(),
        ..Metadata::default()
    };
    let rows = [exits::per_op(
        "emulate",
        "prot_fault",
        &exits::parse_line("exits: domain 0 (emulate): total=10 io=10").unwrap(),
        &exits::parse_line("exits: domain 0 (emulate): total=50 io=10 hidden-pf=40").unwrap(),
        20,
    )];
    let text = exits::format_per_workload(&[], &rows);
    let body = exits_section(&args, &meta, &text);
    assert!(body.starts_with("Generated by the same run (`cargo xtask compare --modes"));
    assert!(
        body.contains(
            "```text\nexits per operation (one boot per workload, minus a boot of the control workload \
             compute_loop alone):\nprot_fault"
        ) && body.contains("emulate 2.00 exits/op (hidden-pf=2.00)")
            && body.ends_with("\n```\n"),
        "{body}"
    );
    // Without per-workload exits the section says so instead of keeping an older run's numbers.
    let plain = parse(&["compare"]);
    assert_eq!(
        command_line(&plain),
        "cargo xtask compare --modes native,pv --iterations 100 --write-docs"
    );
    let body = exits_section(&plain, &meta, "");
    assert!(body.starts_with("Not measured by the run") && body.contains("abc"));
    let doc = "<!-- BEGIN generated:table -->\nT\n<!-- END generated:table -->\n\
               <!-- BEGIN generated:exits -->\nold\n<!-- END generated:exits -->\n";
    let new = crate::bench::perfdoc::replace_section(doc, "exits", &body).unwrap();
    assert!(new.contains("Not measured") && !new.contains("old") && new.contains("\nT\n"));
}

#[test]
fn notes_report_failed_modes_and_exits_beside_pv_hypercalls() {
    let results = [
        measured("native", Pass::Icount, &PV_ICOUNT.replace("hv=1", "hv=0")),
        measured("pv", Pass::Icount, PV_ICOUNT),
        measured("hvm", Pass::Icount, &PV_ICOUNT.replace("hv=1", "hv=0")),
    ];
    let exits = exits::parse_line("[hv] INFO  exits: domain 0 (hvm): total=42 ioio=40 hlt=2");
    let notes = [
        exits::ModeNote {
            mode: "native".into(),
            ..Default::default()
        },
        exits::ModeNote {
            mode: "pv".into(),
            ..Default::default()
        },
        exits::ModeNote {
            mode: "emulate".into(),
            failed: Some("not available: this hypervisor does not know kind=emulate".into()),
            exits: None,
        },
        exits::ModeNote {
            mode: "hvm".into(),
            failed: None,
            exits,
        },
    ];
    let text = exits::format_notes(&results, &notes);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("per mode"), "{text}");
    assert_eq!(
        &lines[2..],
        [
            "pv: hypercalls over the workloads: 20, bounces: 5 (the PV counterpart of the exits)",
            "emulate: FAILED: not available: this hypervisor does not know kind=emulate",
            "hvm: exits over the run (domain 0, hvm): total=42 ioio=40 hlt=2",
        ]
    );
    // The failed mode still gets its (empty) column; the others keep theirs.
    let table = format_table(&results);
    assert!(table.contains("null_syscall_int80"));
    assert_eq!(exits::format_notes(&results[..1], &notes[..1]), "");
}

#[test]
fn each_command_is_typed_at_its_prompt() {
    use crate::input::Step;
    let cmds = commands(20, &["null_syscall_int80".to_string()]);
    assert_eq!(
        session(&cmds).steps(),
        [
            Step::new("pvsh$ ", b"osbench 20 null_syscall_int80\n"),
            Step::new("pvsh$ ", b"poweroff\n"),
        ]
    );
}
