//! The Popek–Goldberg demonstration (`sensitive`): the kernel runs the sensitive-but-unprivileged
//! instructions in its own ring and prints a verdict per instruction. Natively (ring 0) everything is as
//! in ring 0 (CPUID aside: QEMU's TCG sets the hypervisor bit); as a PV domain (ring 1) the selectors and
//! descriptors reveal ring 1, POPF silently drops IF and IOPL changes, and the descriptor-table reads show
//! the hypervisor's tables (or trap, with UMIP). Under emulate and hvm the same body checks what those
//! modes must give; they report SKIP while the hypervisor cannot run them.

use std::collections::BTreeMap;

use abi::exit::EXIT_OK;
use tests::{Outcome, expect, images};
use xtask::mode::{self, Mode};

/// The instructions of the table, in order.
const INSNS: [&str; 15] = [
    "pushf",
    "popf IF",
    "popf IOPL",
    "mov cs",
    "mov ss",
    "sgdt",
    "sidt",
    "smsw",
    "str",
    "sldt",
    "lar cs",
    "lsl cs",
    "verr cs",
    "cpuid",
    "rdtsc",
];

/// Domain 0's table as instruction → (what it saw, verdict): its `(d0) ` lines, or its direct console
/// (unprefixed lines, as in shell runs and natively).
fn table(o: &Outcome) -> BTreeMap<String, (String, String)> {
    o.output
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("(d0) ").unwrap_or(l);
            let rest = l.strip_prefix("sensitive: ")?;
            let mut cols = rest.split(" | ");
            let (insn, seen, verdict) = (cols.next()?, cols.next()?, cols.next()?);
            Some((
                insn.trim().to_string(),
                (seen.trim().to_string(), verdict.trim().to_string()),
            ))
        })
        .collect()
}

/// Boots `sensitive` in `mode` and checks the table's shape; returns it.
fn run(mode: Mode) -> (Outcome, BTreeMap<String, (String, String)>) {
    let o = match mode::run(images(), mode, "sensitive") {
        Ok(o) => o,
        Err(e) => panic!("cannot boot in mode {mode}: {e}"),
    };
    let t = table(&o);
    let names: Vec<&str> = INSNS
        .iter()
        .copied()
        .filter(|i| t.contains_key(*i))
        .collect();
    assert_eq!(names, INSNS, "one row per instruction in mode {mode}\n{o}");
    expect(&o).contains("sensitive: summary: ").exit(EXIT_OK);
    assert_eq!(o.shutdowns(), [(0, "poweroff".to_string(), 0)], "\n{o}");
    (o, t)
}

/// Asserts the verdict of `insn` is one of `allowed`.
#[track_caller]
fn verdict(o: &Outcome, t: &BTreeMap<String, (String, String)>, insn: &str, allowed: &[&str]) {
    let (seen, v) = &t[insn];
    assert!(
        allowed.contains(&v.as_str()),
        "{insn}: verdict {v:?} (saw {seen:?}), expected one of {allowed:?}\n{o}"
    );
}

#[test]
fn natively_everything_is_as_in_ring_0() {
    let (o, t) = run(Mode::Native);
    for insn in INSNS.iter().filter(|i| **i != "cpuid") {
        verdict(&o, &t, insn, &["as in ring 0"]);
    }
    assert!(t["mov cs"].0.ends_with("(RPL 0)"), "\n{o}");
    assert!(
        t["popf IF"].0.starts_with("asked IF 1->0, got IF=0")
            || t["popf IF"].0.starts_with("asked IF 0->1, got IF=1"),
        "\n{o}"
    );
    assert!(t["popf IOPL"].0.ends_with("got IOPL=3"), "\n{o}");
    // CPUID does not trap anywhere; TCG's hypervisor bit reveals QEMU itself, or it is as in ring 0.
    verdict(&o, &t, "cpuid", &["REVEALS", "as in ring 0"]);
}

#[test]
fn under_pv_ring_1_shows_and_popf_is_silently_ignored() {
    let (o, t) = run(Mode::Pv);
    // The selectors and the code descriptor carry ring 1; PUSHF shows the real flags.
    for insn in ["pushf", "mov cs", "mov ss", "lar cs"] {
        verdict(&o, &t, insn, &["REVEALS"]);
    }
    assert!(t["mov cs"].0.ends_with("(RPL 1)"), "\n{o}");
    assert!(t["lar cs"].0.ends_with("(DPL 1)"), "\n{o}");
    // POPF at CPL 1 > IOPL 0: the IF and IOPL changes are dropped without a fault.
    verdict(&o, &t, "popf IF", &["SILENT"]);
    verdict(&o, &t, "popf IOPL", &["SILENT"]);
    assert!(t["popf IOPL"].0.ends_with("got IOPL=0"), "\n{o}");
    // The descriptor tables are the hypervisor's: shown without UMIP, trapped with it — never ring 0's.
    for insn in ["sgdt", "sidt", "smsw", "str"] {
        verdict(&o, &t, insn, &["REVEALS", "TRAPS"]);
    }
    for insn in ["lsl cs", "verr cs", "rdtsc"] {
        verdict(&o, &t, insn, &["no trap"]);
    }
}

#[test]
fn the_shell_program_asks_the_kernel_for_the_same_table() {
    // `sensitive` at the shell: a ring-3 program whose system call runs the probes in the kernel.
    for mode in [Mode::Native, Mode::Pv] {
        let o = match mode::run_shell(
            images(),
            mode,
            &["sensitive"],
            std::time::Duration::from_secs(30),
        ) {
            Ok(o) => o,
            Err(e) => panic!("cannot boot the shell in mode {mode}: {e}"),
        };
        let t = table(&o);
        let (seen, v) = &t["mov cs"];
        let rpl = format!("(RPL {})", mode.kernel_ring());
        assert!(seen.ends_with(&rpl), "mode {mode}: {seen}\n{o}");
        let want = if mode == Mode::Native {
            "as in ring 0"
        } else {
            "REVEALS"
        };
        assert_eq!(v, want, "mode {mode}\n{o}");
        assert_eq!(
            t["popf IF"].1,
            if mode == Mode::Native {
                "as in ring 0"
            } else {
                "SILENT"
            },
            "mode {mode}\n{o}"
        );
        expect(&o)
            .contains("sensitive: summary: ")
            .poweroff(0)
            .exit(EXIT_OK);
    }
}

#[test]
fn under_emulate_umip_hides_the_tables_but_not_the_ring_or_popf() {
    if tests::skip_if_unavailable(Mode::Emulate) {
        return;
    }
    let (o, t) = run(Mode::Emulate);
    // Trap-and-emulate cannot hide what never traps: CS/SS RPL, LAR's DPL, PUSHF, POPF.
    for insn in ["pushf", "mov cs", "mov ss", "lar cs"] {
        verdict(&o, &t, insn, &["REVEALS"]);
    }
    verdict(&o, &t, "popf IF", &["SILENT"]);
    verdict(&o, &t, "popf IOPL", &["SILENT"]);
    // With UMIP the table reads trap to the VMM, which returns the kernel's own (virtual) values.
    for insn in ["sgdt", "sidt", "smsw", "str", "sldt"] {
        verdict(&o, &t, insn, &["as in ring 0"]);
    }
}

#[test]
fn under_hvm_the_kernel_is_in_its_own_ring_0() {
    if tests::skip_if_unavailable(Mode::Hvm) {
        return;
    }
    let (o, t) = run(Mode::Hvm);
    for insn in INSNS.iter().filter(|i| **i != "cpuid") {
        verdict(&o, &t, insn, &["as in ring 0"]);
    }
    // The hypervisor announces itself through CPUID's hypervisor leaf.
    verdict(&o, &t, "cpuid", &["REVEALS"]);
}
