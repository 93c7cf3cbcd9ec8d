//! Host tests of `cargo xtask bench`'s pure parts: line collection, table, JSON, arguments, metadata parsing,
//! and the chart writer.

use super::*;
use clap::Parser;

const LOG: &str = "\
[hv] INFO  ring-1 PV hypervisor starting
BENCH name=floor_ring0_int_iret iterations=20 min=1 median=1 p90=1 p99=1 max=1
(d0) bench: 20 iterations per operation
(d0) BENCH name=floor_ring1_int_fastpath iterations=20 min=2 median=2 p90=2 p99=2 max=2
(d0) BENCH name=null_hypercall iterations=20 min=400 median=410 p90=420 p99=430 max=440
(d0) console_write_16console_write_16
(d0) BENCH name=mmu_update_single iterations=20 min=900 median=1000 p90=1100 p99=1200 max=1300
(d1) BENCH name=yield_domain_switch iterations=1 min=1 median=1 p90=1 p99=1 max=1
(d0) BENCH error name=new_baseptr: returned EINVAL
(d0) BENCH name=broken iterations=x
(d0) BENCH name=future_op iterations=20 min=5 median=5 p90=5 p99=5 max=5
(d0) BENCH done
";

fn stats(v: u64) -> Stats {
    Stats {
        min: v,
        median: v,
        p90: v,
        p99: v + 1,
        max: v + 2,
    }
}

fn rec(name: &str, mode: Mode, v: u64) -> Record {
    Record {
        name: name.into(),
        mode,
        iterations: 20,
        stats: stats(v),
    }
}

#[test]
fn collects_hypervisor_and_domain0_lines() {
    let c = collect(LOG, Mode::Icount, None);
    let names: Vec<&str> = c.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "floor_ring0_int_iret",
            "floor_ring1_int_fastpath",
            "null_hypercall",
            "mmu_update_single",
            "future_op"
        ],
        "domain 1's and malformed lines are not results"
    );
    assert_eq!(c.records[2].stats.median, 410);
    assert_eq!(c.records[2].mode, Mode::Icount);
    assert_eq!(c.errors, ["error name=new_baseptr: returned EINVAL"]);
    assert!(c.done);
    let filtered = collect(LOG, Mode::Wall, Some("mmu"));
    assert_eq!(filtered.records.len(), 1);
    assert_eq!(filtered.records[0].mode, Mode::Wall);
    assert!(
        !collect(
            "(d0) BENCH name=x iterations=1 min=1 median=1 p90=1 p99=1 max=1",
            Mode::Wall,
            None
        )
        .done
    );
}

#[test]
fn table_has_both_modes_and_the_ratio_to_the_floor() {
    let records = [
        rec("null_hypercall", Mode::Icount, 410),
        rec("floor_ring1_int_fastpath", Mode::Icount, 2),
        rec("floor_ring1_int_fastpath", Mode::Wall, 100),
        rec("null_hypercall", Mode::Wall, 1250),
        rec("future_op", Mode::Wall, 7),
    ];
    let t = format_table(&records);
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].starts_with("operation") && lines[0].contains("icount instr"));
    assert!(
        lines[0].contains("wall median")
            && lines[0].contains("wall p99")
            && lines[0].ends_with("x floor")
    );
    assert_eq!(
        lines[2],
        format!(
            "{:<30} {:>14} {:>12} {:>12} {:>9}",
            FLOOR, 2, 100, 101, "1.0"
        )
    );
    assert_eq!(
        lines[3],
        format!(
            "{:<30} {:>14} {:>12} {:>12} {:>9}",
            "null_hypercall", 410, 1250, 1251, "12.5"
        )
    );
    assert_eq!(
        lines[4],
        format!(
            "{:<30} {:>14} {:>12} {:>12} {:>9}",
            "future_op", "-", 7, 8, "0.1"
        ),
        "unknown names come last"
    );
    assert!(t.contains("(wall pass)"));
    assert!(
        !t.contains("not measured yet"),
        "every operation of issue 6 is measured"
    );
    // icount only: the ratio uses icount medians.
    let t = format_table(&records[..2]);
    assert!(t.contains("205.0") && t.contains("(icount pass)"));
    // No floor: no ratio.
    let t = format_table(&records[..1]);
    assert!(t.lines().nth(2).unwrap().trim_end().ends_with('-'));
}

#[test]
fn json_has_one_object_per_operation_and_mode_and_metadata() {
    let records = [
        rec("null_hypercall", Mode::Wall, 1250),
        rec("null_hypercall", Mode::Icount, 410),
        rec("floor_ring0_int_iret", Mode::Icount, 1),
    ];
    let meta = Metadata {
        cpu_model: "AMD EPYC".into(),
        cores: 2,
        qemu_version: "7.2.22".into(),
        accelerators: vec![(Mode::Icount, Accel::Tcg), (Mode::Wall, Accel::Kvm)],
        date: "2024-01-02T03:04:05Z".into(),
        iterations: 20,
        filter: None,
    };
    let v = to_json(&records, &meta);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0],
        serde_json::json!({"name": "floor_ring0_int_iret", "mode": "icount", "iterations": 20,
            "min": 1, "median": 1, "p90": 1, "p99": 2, "max": 3})
    );
    assert_eq!(
        (results[1]["mode"].as_str(), results[2]["mode"].as_str()),
        (Some("icount"), Some("wall"))
    );
    let keys: Vec<&str> = results[2]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = [
        "name",
        "mode",
        "iterations",
        "min",
        "median",
        "p90",
        "p99",
        "max",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want);
    let m = &v["metadata"];
    assert_eq!(m["machine"]["cpu_model"], "AMD EPYC");
    assert_eq!(m["machine"]["cores"], 2);
    assert_eq!(m["qemu_version"], "7.2.22");
    assert_eq!(m["accelerator"]["icount"], "tcg");
    assert_eq!(m["accelerator"]["wall"], "kvm");
    assert_eq!(m["date"], "2024-01-02T03:04:05Z");
    assert_eq!(m["icount_args"], "-icount shift=0,sleep=off");
    assert!(m["filter"].is_null());
    // And it round-trips through text.
    let text = serde_json::to_string_pretty(&v).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), v);
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
}

#[test]
fn arguments() {
    let d = parse(&[]).unwrap();
    assert_eq!(d.mode, ModeArg::Both);
    assert_eq!(d.mode.passes(), [Mode::Icount, Mode::Wall]);
    assert_eq!((d.iterations, d.accel), (1000, Accel::Tcg));
    assert_eq!((d.json, d.svg, d.filter), (None, None, None));
    let a = parse(&[
        "--mode",
        "icount",
        "--iterations",
        "200",
        "--json",
        "out.json",
        "--svg",
        "out.svg",
        "--filter",
        "mmu_update",
        "--accel",
        "kvm",
    ])
    .unwrap();
    assert_eq!(a.mode.passes(), [Mode::Icount]);
    assert_eq!(a.iterations, 200);
    assert_eq!(a.json.as_deref(), Some(Path::new("out.json")));
    assert_eq!(a.svg.as_deref(), Some(Path::new("out.svg")));
    assert_eq!(a.filter.as_deref(), Some("mmu_update"));
    assert_eq!(a.accel, Accel::Kvm);
    assert_eq!(
        parse(&["--mode", "wall"]).unwrap().mode.passes(),
        [Mode::Wall]
    );
    for bad in [
        &["--iterations", "0"][..],
        &["--iterations", "16385"],
        &["--mode", "fast"],
        &["--filter", "a b"],
        &["--filter", "x,y"],
        &["--filter", ""],
        &["--accel", "hvf"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn scenarios_per_mode() {
    let s = scenario(Mode::Icount, 20, Some("null"), Accel::Kvm);
    assert_eq!(
        s.domains,
        [
            "bench iterations=20 filter=null",
            "bench-partner iterations=20 filter=null"
        ]
    );
    assert_eq!(
        s.hv_cmdline,
        "loglevel=info bench=floor bench_iterations=20"
    );
    assert!(s.icount);
    assert_eq!(s.accel, Accel::Tcg, "icount is TCG only");
    let w = scenario(Mode::Wall, 1000, None, Accel::Kvm);
    assert_eq!(w.domains[0], "bench iterations=1000");
    assert!(!w.icount);
    assert_eq!(w.accel, Accel::Kvm);
    assert!(w.timeout > s.timeout);
}

#[test]
fn operation_list() {
    assert_eq!(OPERATIONS.len(), 19);
    let available: Vec<&str> = available_operations().collect();
    assert_eq!(available.len(), 19);
    assert!(available.contains(&"floor_ring0_int_iret") && available.contains(&FLOOR));
    assert!(available.contains(&"evtchn_send_self") && available.contains(&"syscall_bounce"));
    assert_eq!(
        partner_cmdline(20, Some("evtchn")),
        "bench-partner iterations=20 filter=evtchn"
    );
}

#[test]
fn machine_facts() {
    let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
    assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
    assert_eq!(cpu_count(cpuinfo), 2);
    assert_eq!(cpu_model(""), None);
    assert_eq!(
        qemu_version(
            "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright ..."
        )
        .as_deref(),
        Some("7.2.22")
    );
    assert_eq!(qemu_version("nothing"), None);
    assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
    assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(utc_timestamp(4_107_542_399), "2100-02-28T23:59:59Z");
}

#[test]
fn svg_chart_names_every_operation() {
    let dir = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("chart.svg");
    let records = [
        rec("null_hypercall", Mode::Icount, 410),
        rec("floor_ring1_int_fastpath", Mode::Icount, 0),
        rec("null_hypercall", Mode::Wall, 1250),
    ];
    render_svg(&records, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"));
    for needle in [
        "null_hypercall",
        "floor_ring1_int_fastpath",
        "icount",
        "wall",
        "410",
        "1250",
    ] {
        assert!(svg.contains(needle), "{needle} missing");
    }
    assert!(render_svg(&[], &path).is_err());
    render_svg(&records[..1], &path).unwrap();
    assert_eq!(
        [1.0, 10.0, 1000.0, 20_000.0, 1e6, 0.5].map(compact),
        ["1", "10", "1k", "20k", "1M", ""]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
