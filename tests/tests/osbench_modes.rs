//! osbench in every mode: the same workloads, in the same order, with the same binary, natively, as a PV
//! domain, and unmodified under the hypervisor's full virtualization (emulate, hvm), where the kernel
//! believes it is native (no hypervisor counts on its lines) and the hypervisor reports the domain's exits
//! when it stops. Emulate and hvm report SKIP while the hypervisor cannot run them.

use std::time::Duration;

use abi::exit::EXIT_OK;
use tests::{Outcome, expect, run_scenario};
use xtask::Mode;
use xtask::compare::{Row, exits, parse_row};

/// osbench 3 at the shell alone in `mode`, then the rows (domain 0's direct console or `(d0) ` lines).
fn osbench(mode: Mode) -> (Outcome, Vec<Row>) {
    let s = xtask::mode::shell_scenario(mode, &["osbench 3"], Duration::from_secs(60));
    let o = run_scenario(&s);
    let rows = o
        .output
        .lines()
        .filter_map(|l| parse_row(l.strip_prefix("(d0) ").unwrap_or(l)))
        .collect();
    (o, rows)
}

fn names(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.workload.as_str()).collect()
}

#[test]
fn osbench_runs_the_same_workloads_in_every_mode() {
    let (native, native_rows) = osbench(Mode::Native);
    assert!(!native_rows.is_empty(), "osbench natively\n{native}");
    expect(&native).contains("osbench: done").exit(EXIT_OK);
    for mode in [Mode::Pv, Mode::Emulate, Mode::Hvm] {
        if tests::skip_if_unavailable(mode) {
            continue;
        }
        let (o, rows) = osbench(mode);
        assert_eq!(
            names(&rows),
            names(&native_rows),
            "the same workloads in mode {mode}\n{o}"
        );
        expect(&o)
            .contains("osbench: done")
            .poweroff(0)
            .exit(EXIT_OK);
        for r in &rows {
            assert!(r.stats.median > 0, "{mode}: {r:?}\n{o}");
            // Only the PV kernel knows its hypervisor and asks it for counts.
            assert_eq!(r.hv.is_some(), mode == Mode::Pv, "{mode}: {r:?}\n{o}");
        }
        if mode != Mode::Pv {
            let e = exits::of_domain(&o.output, 0);
            assert!(
                e.as_ref()
                    .is_some_and(|e| e.kind == mode.name() && e.total > 0),
                "{mode}: the hypervisor's exits line for domain 0: {e:?}\n{o}"
            );
        }
    }
}
