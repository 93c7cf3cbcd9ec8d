//! The hvm domain kind (issue 13): ring1pv's own guest kernel, unmodified, booted through its 32-bit
//! multiboot entry in its own ring 0 under AMD SVM with nested paging (QEMU's TCG, `-cpu max`), side by side
//! with PV domains under the one scheduler — and what a hostile kernel in that position can try: the SVM
//! instructions (each refused with #UD), guest-physical memory beyond its RAM (nested page fault: that
//! domain crashed), a triple fault (shutdown intercept: that domain crashed). The other domain finishes
//! normally every time and the hypervisor stays intact.

use std::time::Duration;

use abi::exit::{EXIT_DOMAIN_CRASHED, EXIT_OK};
use tests::{INTEGRITY_LINE, Outcome, Scenario, crashes_next_to_demo, expect, run, run_scenario};
use xtask::scenario::DEFAULT_HV_CMDLINE;
use xtask::shell::{DEMO, DOM0_CONSOLE_DIRECT, PROMPT, Session};

/// The counts of the last `exits:` line of `domid` (reason → count), if there is one.
fn exits(o: &Outcome, domid: u32) -> Option<Vec<(String, u64)>> {
    let head = format!("exits: domain {domid} (hvm): ");
    let line = o
        .output
        .lines()
        .rev()
        .find_map(|l| l.split_once(&head).map(|(_, r)| r))?;
    Some(
        line.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect(),
    )
}

fn count(e: &[(String, u64)], reason: &str) -> u64 {
    e.iter().find(|(k, _)| k == reason).map_or(0, |(_, v)| *v)
}

/// The teardown check of an hvm domain passed: every nested leaf one of its frames, none beyond its memory.
#[track_caller]
fn torn_down_cleanly(o: &Outcome, domid: u32) {
    expect(o).line("the hvm teardown check with 0 violations", |l| {
        l.contains(&format!("teardown check: domain {domid} (hvm): "))
            && l.ends_with("isolation audit: 0 violations")
    });
    assert!(
        !o.output.contains("VIOLATION") && !o.output.contains("MISMATCH"),
        "no teardown error\n{o}"
    );
}

#[test]
fn shell_under_hvm_next_to_a_pv_domain() {
    let mut s = Scenario::new(&["kind=hvm shell", DEMO]);
    s.hv_cmdline = format!("{DEFAULT_HV_CMDLINE} {DOM0_CONSOLE_DIRECT}");
    // Ctrl-] x before `ring`: the hypervisor prints the exit counts so far (the debug key).
    s.input = Session::new()
        .command("hello")
        .when(PROMPT, b"\x1dxring\n")
        .command("exitcode 3")
        .command("echo $?")
        .logout()
        .into_input(Some(Duration::from_secs(30)));
    let o = run_scenario(&s);
    expect(&o)
        .contains("domain 0: hvm (SVM, nested paging)")
        .contains("entry 0x20002f (32-bit multiboot)")
        .contains("isolation audit: domain 0 (hvm): 4096 guest pages behind")
        // The unmodified kernel finds itself in ring 0 on what it takes for a bare PC.
        .contains("guest kernel running in ring 0 (CS=0x8) on native; 16 MiB (4096 pages), command line 'shell'")
        .contains("native: TSC ")
        .line("a ring-3 program ran under the hvm kernel", |l| {
            l.starts_with("Hello from ring 3! I am pid ")
        })
        .contains("guest kernel: CS=0x8 -> CPL 0")
        .line("exit status 3 seen by the shell", |l| l.trim() == "3")
        .contains("logout")
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .no_panic()
        .contains(INTEGRITY_LINE)
        .hypervisor_alive_at_end();
    assert!(o.crashed_domains().is_empty(), "nothing crashed\n{o}");
    torn_down_cleanly(&o, 0);
    let e = exits(&o, 0).unwrap_or_else(|| panic!("an exits: line for domain 0\n{o}"));
    // Port I/O (UART, PIT, PIC) dominates; the timer interrupts are injected; HLT sleeps.
    assert!(count(&e, "ioio") > 100, "port I/O exits {e:?}\n{o}");
    assert!(
        count(&e, "cpuid") >= 1 && count(&e, "msr") >= 1,
        "{e:?}\n{o}"
    );
    assert!(count(&e, "hlt") >= 1, "the idle shell halts {e:?}\n{o}");
    let total = e.iter().find(|(k, _)| k == "total").map_or(0, |(_, v)| *v);
    let sum: u64 = e.iter().filter(|(k, _)| k != "total").map(|(_, v)| v).sum();
    assert_eq!(total, sum, "total is the sum of the reasons\n{o}");
    assert!(
        exits(&o, 1).is_none(),
        "a PV domain has no exits: line\n{o}"
    );
    let lines = o
        .output
        .lines()
        .filter(|l| l.contains("exits: domain 0 (hvm): total="))
        .count();
    assert_eq!(lines, 2, "the debug key's line and the final one\n{o}");
}

#[test]
fn svm_instructions_are_refused_with_ud_and_cpuid_hides_svm() {
    // The hvm domain is domain 1: its console lines carry the (d1) prefix; domain 0 is a PV demo.
    let o = run(&[DEMO, "kind=hvm svm-probe=insns"]);
    for insn in [
        "vmrun", "vmmcall", "vmload", "vmsave", "stgi", "clgi", "skinit", "invlpga",
    ] {
        expect(&o).contains(&format!("(d1) svm-probe: {insn}: #UD at the instruction"));
    }
    expect(&o)
        .contains("(d1) svm-probe: cpuid: hypervisor bit 1, leaf 0x40000000 signature 'ring1pvring1', SVM bit 0")
        .contains("(d1) svm-probe: 8 of 8 SVM instructions refused with #UD")
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .no_panic()
        .contains(INTEGRITY_LINE)
        .hypervisor_alive_at_end();
    torn_down_cleanly(&o, 1);
    let e = exits(&o, 1).unwrap_or_else(|| panic!("an exits: line for domain 1\n{o}"));
    for reason in [
        "vmrun", "vmmcall", "vmload", "vmsave", "stgi", "clgi", "skinit", "invlpga",
    ] {
        assert_eq!(count(&e, reason), 1, "one {reason} exit: {e:?}\n{o}");
    }
}

#[test]
fn guest_physical_access_beyond_ram_crashes_only_that_domain() {
    let o = crashes_next_to_demo(
        "kind=hvm svm-probe=npf",
        "nested page fault at guest-physical 0x3ff00000",
    );
    expect(&o).exit(EXIT_DOMAIN_CRASHED);
    torn_down_cleanly(&o, 0);
    assert_eq!(exits(&o, 0).map(|e| count(&e, "npf")), Some(1), "{o}");
}

#[test]
fn triple_fault_crashes_only_that_domain() {
    let o = crashes_next_to_demo(
        "kind=hvm svm-probe=triple",
        "triple fault (shutdown intercept)",
    );
    torn_down_cleanly(&o, 0);
    assert_eq!(exits(&o, 0).map(|e| count(&e, "shutdown")), Some(1), "{o}");
}

/// QEMU as a CPU without SVM: a wrapper that boots the same machine with `-cpu max,-svm`.
fn qemu_without_svm() -> std::path::PathBuf {
    let _ = tests::images();
    let real = xtask::qemu_choice::chosen()
        .unwrap_or_else(|e| panic!("no QEMU: {e}"))
        .program
        .clone();
    let dir = std::env::temp_dir().join(format!("ring1pv-hvm-nosvm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("qemu-no-svm");
    let script = format!(
        "#!/bin/sh\nfor a; do shift; [ \"$a\" = max ] && a=max,-svm; set -- \"$@\" \"$a\"; done\nexec '{}' \"$@\"\n",
        real.display()
    );
    std::fs::write(&path, script).expect("write the wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn a_cpu_without_svm_refuses_hvm_domains_and_runs_the_rest() {
    let mut s = Scenario::new(&[DEMO, "kind=hvm svm-probe=insns"]);
    s.qemu = Some(qemu_without_svm());
    let o = run_scenario(&s);
    expect(&o)
        .contains(
            "domain 1: not created: hvm needs AMD SVM with nested paging; this CPU has none (try -cpu max under TCG)",
        )
        .poweroff(0)
        .exit(abi::exit::EXIT_BOOT_ERROR)
        .no_panic()
        .contains(INTEGRITY_LINE)
        .hypervisor_alive_at_end();
    assert!(
        o.output.contains("-svm") || o.command.contains("qemu-no-svm"),
        "the run used the wrapper\n{o}"
    );
    assert!(!o.output.contains("(d1)"), "no hvm domain ran\n{o}");
}

#[test]
fn garbage_device_programming_stays_in_the_domain() {
    let o = run(&[DEMO, "kind=hvm svm-probe=devices"]);
    expect(&o)
        .contains("(d1) svm-probe: 20000 garbage port accesses survived; devices programmed again")
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .no_panic()
        .contains(INTEGRITY_LINE)
        .hypervisor_alive_at_end();
    torn_down_cleanly(&o, 1);
    let e = exits(&o, 1).unwrap_or_else(|| panic!("an exits: line for domain 1\n{o}"));
    assert!(count(&e, "ioio") > 20_000, "{e:?}\n{o}");
}

#[test]
fn two_hvm_domains_and_a_pv_domain_share_the_machine() {
    let o = run(&[
        "kind=hvm svm-probe=insns",
        DEMO,
        "kind=hvm svm-probe=devices",
    ]);
    expect(&o)
        .contains("domain 0: hvm (SVM, nested paging)")
        .contains("ASID 1,")
        .contains("domain 2: hvm (SVM, nested paging)")
        .contains("ASID 3,")
        .contains("(d0) svm-probe: 8 of 8 SVM instructions refused with #UD")
        .contains("(d2) svm-probe: 20000 garbage port accesses survived; devices programmed again")
        .poweroff(0)
        .poweroff(1)
        .poweroff(2)
        .exit(EXIT_OK)
        .no_panic()
        .contains(INTEGRITY_LINE)
        .hypervisor_alive_at_end();
    torn_down_cleanly(&o, 0);
    torn_down_cleanly(&o, 2);
}

#[test]
fn an_unknown_kind_is_refused_and_the_rest_run() {
    let o = run(&[DEMO, "kind=vmx shell"]);
    expect(&o)
        .contains("domain 1: not created: kind= word refused (Unknown)")
        .poweroff(0)
        .exit(abi::exit::EXIT_BOOT_ERROR)
        .no_panic();
    assert!(!o.output.contains("(d1)"), "nothing ran as domain 1\n{o}");
}

#[test]
fn xl_destroy_tears_an_hvm_domain_down() {
    // Domain 0 (PV, the shell) destroys the running hvm domain 1 (its shell waits for input it never gets).
    let mut s = Scenario::new(&["shell", "kind=hvm shell"]);
    s.hv_cmdline = format!("{DEFAULT_HV_CMDLINE} {DOM0_CONSOLE_DIRECT}");
    s.input = Session::new()
        .when("(d1) pvsh: type 'help' for commands", b"xl list\n")
        .command("xl destroy 1")
        // (Domain 1's unfinished prompt line is flushed at its teardown: wait past it.)
        .when("xl: domain 1 destroyed", b"")
        .command("xl list")
        .logout()
        .into_input(Some(Duration::from_secs(30)));
    let o = run_scenario(&s);
    expect(&o)
        .contains("domain 1 destroyed by the control domain")
        .poweroff(0)
        .exit(EXIT_OK)
        .no_panic()
        .contains(INTEGRITY_LINE)
        .hypervisor_alive_at_end();
    torn_down_cleanly(&o, 1);
    assert!(
        exits(&o, 1).is_some(),
        "the exits: line at the destroy\n{o}"
    );
    expect(&o)
        .line("xl list shows domain 1 as hvm", |l| {
            l.trim_start().starts_with("1 ") && l.trim_end().ends_with(" hvm")
        })
        .contains("1 domain(s)");
}

#[test]
fn turning_avx_on_behind_cpuids_back_crashes_only_that_domain() {
    // XSAVE-managed state is not switched between domains: CPUID hides it, and a guest that turns
    // CR4.OSXSAVE on anyway is stopped at its next exit (and the state it left is scrubbed).
    let o = crashes_next_to_demo("kind=hvm svm-probe=xsave", "CR4.OSXSAVE turned on");
    torn_down_cleanly(&o, 0);
    assert!(!o.output.contains("not stopped"), "{o}");
}

#[test]
fn turning_protection_keys_on_crashes_only_that_domain() {
    // PKRU is not switched either: CR4.PKE seen at an exit stops the guest, PKRU is scrubbed.
    let o = crashes_next_to_demo("kind=hvm svm-probe=pke", "CR4.PKE turned on");
    torn_down_cleanly(&o, 0);
    assert!(!o.output.contains("not stopped"), "{o}");
}
