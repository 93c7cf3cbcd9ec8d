//! Icount ceilings per operation (`xtask/bench-budgets.toml`), checked by `cargo xtask test` and by
//! `cargo xtask bench --check-budgets`; rewritten by `cargo xtask bench --write-budgets`.
//!
//! Under `-icount shift=0` a measured median is an exact instruction count, the same on every host for the
//! same images, so a ceiling is a regression check, not a timing test. The file is a small TOML subset:
//! `iterations = N` (the iterations the check runs) and one `name = ceiling` line per operation; `#` starts
//! a comment. A ceiling is the median it was written from plus [`MARGIN_PERCENT`] (at least
//! [`MARGIN_MIN`]), so small unrelated additions (one counter increment) do not trip it.

use std::fmt::Write as _;

use super::{FLOOR_RING0, Mode, Record};

/// The file, relative to the workspace root.
pub const FILE: &str = "xtask/bench-budgets.toml";
/// Headroom a written ceiling gets above the measured median, in percent.
pub const MARGIN_PERCENT: u64 = 3;
/// Least headroom of a written ceiling, in instructions.
pub const MARGIN_MIN: u64 = 4;
/// What `floor_ring0_int_iret` must measure under icount: `int` + `iretq`, one tick each. Anything else
/// means the TSC does not count one tick per instruction (an `-icount shift` other than 0).
pub const RING0_FLOOR_INSTRUCTIONS: u64 = 2;

/// The parsed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budgets {
    /// Iterations per operation of the checking run.
    pub iterations: u32,
    /// `(operation, ceiling)` in file order.
    pub ceilings: Vec<(String, u64)>,
}

/// Parse the file's text.
pub fn parse(text: &str) -> Result<Budgets, String> {
    let mut iterations = None;
    let mut ceilings: Vec<(String, u64)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let bad = || format!("{FILE}:{}: expected `name = integer`, found `{raw}`", i + 1);
        let (key, value) = line.split_once('=').ok_or_else(bad)?;
        let (key, value) = (key.trim(), value.trim().replace('_', ""));
        let value: u64 = value.parse().map_err(|_| bad())?;
        if key == "iterations" {
            iterations = Some(u32::try_from(value).map_err(|_| bad())?);
        } else if ceilings.iter().any(|(k, _)| k == key) {
            return Err(format!("{FILE}:{}: `{key}` appears twice", i + 1));
        } else {
            ceilings.push((key.to_string(), value));
        }
    }
    Ok(Budgets {
        iterations: iterations.ok_or_else(|| format!("{FILE}: no `iterations = N` line"))?,
        ceilings,
    })
}

/// Every breach of `budgets` by the icount `records`, one readable line each (empty: all within budget).
/// An operation with a ceiling that was not measured is a breach too, and so is an icount pass whose
/// ring-0 floor is not [`RING0_FLOOR_INSTRUCTIONS`] (ticks are not instructions).
pub fn check(budgets: &Budgets, records: &[Record]) -> Vec<String> {
    let mut out = Vec::new();
    let median = |name: &str| {
        records
            .iter()
            .find(|r| r.mode == Mode::Icount && r.name == name)
            .map(|r| r.stats.median)
    };
    if let Some(f) = median(FLOOR_RING0).filter(|&f| f != RING0_FLOOR_INSTRUCTIONS) {
        out.push(format!(
            "{FLOOR_RING0} measured {f} ticks, not {RING0_FLOOR_INSTRUCTIONS}: the TSC does not count one \
             tick per instruction (QEMU must run with -icount shift=0)"
        ));
    }
    for (name, ceiling) in &budgets.ceilings {
        match median(name) {
            Some(m) if m > *ceiling => out.push(format!(
                "{name}: measured {m} instructions (median), ceiling {ceiling} ({FILE}): {} over",
                m - ceiling
            )),
            Some(_) => {}
            None => out.push(format!(
                "{name}: has a ceiling ({ceiling}) but was not measured"
            )),
        }
    }
    out
}

/// The ceiling written for a measured median.
pub fn ceiling_for(median: u64) -> u64 {
    median + (median * MARGIN_PERCENT).div_ceil(100).max(MARGIN_MIN)
}

/// The file's text for the icount `records` of a run with `iterations`.
pub fn render(records: &[Record], iterations: u32) -> String {
    let mut out = String::new();
    out.push_str(
        "# Icount ceilings per operation (instructions, median under -icount shift=0), checked by\n\
         # `cargo xtask test` and `cargo xtask bench --check-budgets` (xtask/src/bench/budget.rs).\n\
         # Written by `cargo xtask bench --write-budgets`: each ceiling is the measured median plus 3 %\n\
         # (at least 4). When a change legitimately costs instructions, rerun that command, review the diff\n\
         # and say in the commit message which operation got dearer and why (docs/PERFORMANCE.md, \"Budgets\").\n",
    );
    let _ = writeln!(out, "iterations = {iterations}\n");
    for r in records.iter().filter(|r| r.mode == Mode::Icount) {
        let _ = writeln!(
            out,
            "{} = {}  # median {}",
            r.name,
            ceiling_for(r.stats.median),
            r.stats.median
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::bench::Stats;

    fn rec(name: &str, median: u64) -> Record {
        Record {
            name: name.into(),
            mode: Mode::Icount,
            iterations: 20,
            stats: Stats {
                min: median,
                median,
                p90: median,
                p99: median,
                max: median,
            },
        }
    }

    #[test]
    fn parse_and_check() {
        let b =
            parse("# c\niterations = 20\nnull_hypercall = 450 # median 440\nxen_version=1_000\n")
                .unwrap();
        assert_eq!(b.iterations, 20);
        assert_eq!(
            b.ceilings,
            vec![("null_hypercall".into(), 450), ("xen_version".into(), 1000)]
        );
        let ok = [
            rec(FLOOR_RING0, 2),
            rec("null_hypercall", 450),
            rec("xen_version", 9),
        ];
        assert!(check(&b, &ok).is_empty());
        let over = [rec(FLOOR_RING0, 2), rec("null_hypercall", 451)];
        let breaches = check(&b, &over);
        assert_eq!(breaches.len(), 2, "{breaches:?}");
        assert!(breaches[0].contains("null_hypercall") && breaches[0].contains("451"));
        assert!(breaches[0].contains("ceiling 450"));
        assert!(breaches[1].contains("xen_version") && breaches[1].contains("not measured"));
        let scaled = [
            rec(FLOOR_RING0, 16),
            rec("null_hypercall", 1),
            rec("xen_version", 1),
        ];
        assert!(check(&b, &scaled)[0].contains("shift=0"));
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(parse("null_hypercall = 3\n").is_err());
        assert!(parse("iterations = 20\nx = y\n").is_err());
        assert!(parse("iterations = 20\nx\n").is_err());
        assert!(parse("iterations = 20\nx = 1\nx = 2\n").is_err());
    }

    #[test]
    fn written_file_reads_back_with_headroom() {
        let recs = [rec("null_hypercall", 440), rec("syscall_int80_direct", 10)];
        let b = parse(&render(&recs, 20)).unwrap();
        assert_eq!(b.iterations, 20);
        assert_eq!(
            b.ceilings,
            vec![
                ("null_hypercall".into(), 454),
                ("syscall_int80_direct".into(), 14)
            ]
        );
        assert!(check(&b, &recs).is_empty());
    }
}
