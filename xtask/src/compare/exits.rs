//! The `exits:` lines of emulate and hvm domains (CONTRACTS 4): `[hv] INFO  exits: domain <id> (<kind>):
//! total=<n> <reason>=<count> ...`, printed once when such a domain stops (and by a debug key), and what
//! `compare` says per mode below its table: each full-virtualization mode's exits by reason over the run,
//! beside PV's hypercalls over the same workloads, and the modes that did not run.

use std::fmt::Write as _;

use super::{Measured, Pass};

/// One `exits:` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitCounts {
    /// The domain.
    pub domid: u32,
    /// Its kind (`emulate`, `hvm`).
    pub kind: String,
    /// All exits.
    pub total: u64,
    /// Exits by reason, in the line's order (reasons with count 0 are left out by the hypervisor).
    pub reasons: Vec<(String, u64)>,
}

impl ExitCounts {
    /// The count of `reason` (0 if absent).
    pub fn get(&self, reason: &str) -> u64 {
        self.reasons
            .iter()
            .find(|(r, _)| r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// `total=N reason=n ...` with the `top` largest reasons (ties in line order).
    pub fn summary(&self, top: usize) -> String {
        let mut sorted = self.reasons.clone();
        sorted.sort_by_key(|r| std::cmp::Reverse(r.1));
        let mut s = format!("total={}", self.total);
        for (r, n) in sorted.iter().take(top) {
            let _ = write!(s, " {r}={n}");
        }
        if sorted.len() > top {
            let _ = write!(s, " (+{} more reasons)", sorted.len() - top);
        }
        s
    }
}

/// Parses one serial line holding an `exits:` record (anywhere on the line, so both the whole `[hv]`
/// line and its message parse); `None` for anything else or a malformed record.
pub fn parse_line(line: &str) -> Option<ExitCounts> {
    let rest = &line[line.find("exits: domain ")? + "exits: domain ".len()..];
    let (domid, rest) = rest.split_once(' ')?;
    let domid = domid.parse().ok()?;
    let rest = rest.strip_prefix('(')?;
    let (kind, rest) = rest.split_once("):")?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut total = None;
    let mut reasons = Vec::new();
    for word in rest.split_whitespace() {
        let (key, value) = word.split_once('=')?;
        let value: u64 = value.parse().ok()?;
        if key == "total" {
            total = Some(value);
        } else if !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            reasons.push((key.to_string(), value));
        } else {
            return None;
        }
    }
    Some(ExitCounts {
        domid,
        kind: kind.to_string(),
        total: total?,
        reasons,
    })
}

/// The last `exits:` record of domain `domid` in a run's output (the one printed when it stopped).
pub fn of_domain(output: &str, domid: u32) -> Option<ExitCounts> {
    output
        .lines()
        .rev()
        .filter(|l| l.starts_with("[hv] "))
        .filter_map(parse_line)
        .find(|e| e.domid == domid)
}

/// What became of one mode's boots, for the notes below the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModeNote {
    /// The mode.
    pub mode: String,
    /// Why its runs failed (a boot error, a hypervisor that cannot run the kind yet, osbench errors).
    pub failed: Option<String>,
    /// Domain 0's exits over its icount run (else its wall run), for emulate and hvm.
    pub exits: Option<ExitCounts>,
}

/// PV's hypercalls summed over the workloads of its icount pass (else wall), for the comparison with the
/// exits of the full-virtualization modes over the same workloads.
fn hypercalls_over_run(results: &[Measured], mode: &str) -> Option<(u64, u64)> {
    let pass = if results
        .iter()
        .any(|m| m.mode == mode && m.pass == Pass::Icount)
    {
        Pass::Icount
    } else {
        Pass::Wall
    };
    let rows: Vec<_> = results
        .iter()
        .filter(|m| m.mode == mode && m.pass == pass)
        .flat_map(|m| &m.run.rows)
        .filter_map(|r| r.hv)
        .collect();
    (!rows.is_empty()).then(|| {
        rows.iter().fold((0, 0), |(h, b), c| {
            (h + c.hypercalls, b + c.exceptions + c.syscalls)
        })
    })
}

/// The lines below the table: per mode, failed (and why), or its exits by reason over the run, or (for a
/// counting PV run) its hypercalls and bounces over the workloads. Empty if there is nothing to say.
pub fn format_notes(results: &[Measured], notes: &[ModeNote]) -> String {
    let mut out = String::new();
    for note in notes {
        if let Some(why) = &note.failed {
            let _ = writeln!(out, "{}: FAILED: {why}", note.mode);
        } else if let Some(e) = &note.exits {
            let _ = writeln!(
                out,
                "{}: exits over the run (domain {}, {}): {}",
                note.mode,
                e.domid,
                e.kind,
                e.summary(8)
            );
        } else if let Some((h, b)) = hypercalls_over_run(results, &note.mode) {
            let _ = writeln!(
                out,
                "{}: hypercalls over the workloads: {h}, bounces: {b} (the PV counterpart of the exits)",
                note.mode
            );
        }
    }
    if out.is_empty() {
        return out;
    }
    format!(
        "\nper mode (exits: the hypervisor's `exits:` line when the domain stopped, whole run including boot \
         and shell):\n{out}"
    )
}

/// One workload's exits per operation in one mode (`--exits-per-workload`): the exits of a boot that ran
/// only that workload, minus those of a boot that ran only the control workload (the same boot, shell,
/// osbench process and output, but operations that cause no exit), over its operations.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadExits {
    /// The mode (emulate, hvm).
    pub mode: String,
    /// The workload.
    pub workload: String,
    /// All exits per operation.
    pub per_op: f64,
    /// Exits per operation by reason, largest first (reasons whose difference is not positive left out).
    pub reasons: Vec<(String, f64)>,
}

/// `(with − base) / ops` for the total and each reason of `with`.
pub fn per_op(
    mode: &str,
    workload: &str,
    base: &ExitCounts,
    with: &ExitCounts,
    ops: u64,
) -> WorkloadExits {
    let ops = ops.max(1) as f64;
    let diff = |a: u64, b: u64| a.saturating_sub(b) as f64 / ops;
    let mut reasons: Vec<(String, f64)> = with
        .reasons
        .iter()
        .map(|(r, n)| (r.clone(), diff(*n, base.get(r))))
        .filter(|(_, v)| *v > 0.0)
        .collect();
    reasons.sort_by(|a, b| b.1.total_cmp(&a.1));
    WorkloadExits {
        mode: mode.to_string(),
        workload: workload.to_string(),
        per_op: diff(with.total, base.total),
        reasons,
    }
}

/// The per-workload exits table: one row per workload, per mode its exits per operation and the four
/// largest reasons, beside PV's hypercalls and bounces per operation when PV was measured.
pub fn format_per_workload(results: &[Measured], rows: &[WorkloadExits]) -> String {
    let mut modes: Vec<&str> = Vec::new();
    let mut workloads: Vec<&str> = Vec::new();
    for r in rows {
        if !modes.contains(&r.mode.as_str()) {
            modes.push(&r.mode);
        }
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let pv_counts = |w: &str| {
        results
            .iter()
            .filter(|m| m.mode == "pv")
            .flat_map(|m| &m.run.rows)
            .find(|r| r.workload == w)
            .and_then(|r| r.hv)
    };
    let mut out = String::from(
        "
exits per operation (one boot per workload, minus a boot of the control workload compute_loop alone):
",
    );
    for w in workloads {
        let mut line = format!("{w:<22}");
        if let Some(c) = pv_counts(w) {
            let _ = write!(
                line,
                " | pv {:.2} hcall/op {:.2} bounce/op",
                c.hypercalls_per_op(),
                c.bounces_per_op()
            );
        }
        for m in &modes {
            match rows.iter().find(|r| r.mode == *m && r.workload == w) {
                Some(r) => {
                    let top: Vec<String> = r
                        .reasons
                        .iter()
                        .take(4)
                        .map(|(n, v)| format!("{n}={v:.2}"))
                        .collect();
                    let _ = write!(line, " | {m} {:.2} exits/op ({})", r.per_op, top.join(" "));
                }
                None => {
                    let _ = write!(line, " | {m} -");
                }
            }
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_lines_parse() {
        let e = parse_line(
            "[hv] INFO  exits: domain 2 (emulate): total=130 io=100 hidden-pf=20 mov-cr3=10",
        )
        .unwrap();
        assert_eq!((e.domid, e.kind.as_str(), e.total), (2, "emulate", 130));
        assert_eq!(e.get("hidden-pf"), 20);
        assert_eq!(e.get("cli"), 0);
        assert_eq!(
            e.summary(2),
            "total=130 io=100 hidden-pf=20 (+1 more reasons)"
        );
        let h = parse_line("exits: domain 0 (hvm): total=0").unwrap();
        assert!(h.reasons.is_empty());
        for bad in [
            "exits: domain x (hvm): total=1",
            "exits: domain 0 hvm: total=1",
            "exits: domain 0 (hvm): io=1",
            "exits: domain 0 (hvm): total=1 io=x",
            "exits: domain 0 (hvm): total=1 IO=1",
            "exits: domain 0 (HVM): total=1",
            "(d0) hello",
        ] {
            assert_eq!(parse_line(bad), None, "{bad}");
        }
        let out = "(d0) exits: domain 0 (hvm): total=999\n\
                   [hv] INFO  exits: domain 1 (hvm): total=5 hlt=5\n\
                   [hv] INFO  exits: domain 0 (hvm): total=7 ioio=7\n";
        assert_eq!(
            of_domain(out, 0).unwrap().total,
            7,
            "a guest cannot forge it"
        );
        assert_eq!(of_domain(out, 1).unwrap().get("hlt"), 5);
        assert_eq!(of_domain(out, 3), None);
    }

    #[test]
    fn per_workload_exits_subtract_the_baseline_boot() {
        let base = parse_line("exits: domain 0 (emulate): total=100 io=60 hlt=40").unwrap();
        let with =
            parse_line("exits: domain 0 (emulate): total=1100 io=70 hlt=40 mov-cr3=990").unwrap();
        let w = per_op("emulate", "fork", &base, &with, 10);
        assert_eq!(w.per_op, 100.0);
        assert_eq!(
            w.reasons,
            [("mov-cr3".to_string(), 99.0), ("io".to_string(), 1.0)]
        );
        // A run with fewer exits than the baseline boot (noise) gives 0, not a negative count.
        let less = parse_line("exits: domain 0 (emulate): total=90 io=50").unwrap();
        assert_eq!(per_op("emulate", "x", &base, &less, 0).per_op, 0.0);
        let text = format_per_workload(&[], &[w]);
        assert!(
            text.contains(
                "fork                   | emulate 100.00 exits/op (mov-cr3=99.00 io=1.00)"
            ),
            "{text}"
        );
        assert_eq!(format_per_workload(&[], &[]), "");
    }
}
