//! The `emulate` domain kind (issue 12): the unmodified native kernel image entered at `_start64` in ring 1,
//! its privileged instructions trapped and emulated, shadow page tables, the device board. It runs the
//! shell beside a PV domain, its exits are counted and its shadow tables audited at the end; hostile
//! privileged operations (`hostile=` on the native kernel's command line) crash that domain only.

use std::time::Duration;

use abi::exit::{EXIT_DOMAIN_CRASHED, EXIT_DOMAIN_FAILED, EXIT_OK};
use tests::{INTEGRITY_LINE, Outcome, Scenario, expect, run, run_scenario};
use xtask::scenario::DEFAULT_HV_CMDLINE;
use xtask::shell::{CTRL_C, DOM0_CONSOLE_DIRECT, Session};

/// An emulate domain's module command line for the guest command line `args`.
fn emulate(args: &str) -> String {
    format!("kind=emulate {args}")
}

#[test]
fn the_native_kernel_runs_its_shell_under_emulate_beside_a_pv_domain() {
    let shell = emulate("shell");
    let mut s = Scenario::new(&[shell.as_str(), "demo"]);
    s.hv_cmdline = format!("{DEFAULT_HV_CMDLINE} {DOM0_CONSOLE_DIRECT}");
    // Ctrl-] x: the debug key printing the exit counts so far; Ctrl-C reaches the program through the
    // emulated UART's receive interrupt.
    s.input = Session::new()
        .command("hello")
        .when("Hello from ring 3", &[0x1d, b'x'])
        .command("exitcode 7")
        .command("echo $?")
        .command("fault kernel")
        .command("spin")
        .when("spin: pid", &[CTRL_C])
        .command("hello")
        .logout()
        .into_input(Some(Duration::from_secs(30)));
    let o = run_scenario(&s);
    // The banner is the native backend's, in ring 1: `mov %cs` is not privileged (Popek–Goldberg).
    expect(&o)
        .contains("guest kernel running in ring 1 (CS=0x19) on native;")
        .contains("domain 0 (emulate): 16 MiB guest-physical")
        .line("a ring-3 program", |l| {
            l.contains("Hello from ring 3! I am pid ")
        })
        .line("`[exit 7]`", |l| l.trim() == "[exit 7]")
        .line("a user page fault ends only the program", |l| {
            l.contains("killed: page fault")
        })
        .line("the debug key's exit counts", |l| {
            l.starts_with("[hv] exits: domain 0 (emulate): total=")
        })
        .line("Ctrl-C ended spin", |l| l.trim() == "[exit 130]")
        .line("the exit counts", |l| {
            l.contains("exits: domain 0 (emulate): total=")
                && l.contains(" hidden-pf=")
                && l.contains(" io=")
        })
        .line("the shadow audit", |l| {
            l.contains("isolation audit: domain 0 (emulate):") && l.ends_with("0 violations")
        })
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .contains(INTEGRITY_LINE)
        .hypervisor_alive_at_end();
    assert!(o.crashed_domains().is_empty(), "no domain crashed\n{o}");
}

#[test]
fn the_shells_programs_behave_as_natively_and_under_pv() {
    // The programs tests/tests/shell.rs drives in the other modes, with their expected reports.
    let shell = emulate("shell");
    let mut s = Scenario::new(&[shell.as_str()]);
    s.hv_cmdline = format!("{DEFAULT_HV_CMDLINE} {DOM0_CONSOLE_DIRECT}");
    s.input = Session::of_commands(&[
        "ring",
        "mem",
        "spawnloop 100",
        "mem",
        "syscheck",
        "badptr",
        "mmaptest",
        "fault irq",
        "fault popf",
        // Longer than the UART's 16-byte receive FIFO: the hypervisor feeds only what it has room for.
        "echo a-line-longer-than-the-16-byte-uart-fifo",
    ])
    .into_input(Some(Duration::from_secs(30)));
    let o = run_scenario(&s);
    expect(&o)
        .line("the kernel's CPL as it reads it", |l| {
            l.starts_with("guest kernel: CS=0x19 -> CPL 1")
        })
        .contains("spawnloop: 100 children spawned and reaped, every exit status right")
        .contains("syscheck: 13 calls, int 0x80 and syscall agree")
        .line("badptr", |l| {
            l.starts_with("badptr: ") && l.ends_with("every one -EFAULT")
        })
        .line("mmaptest", |l| l.starts_with("mmaptest: ok"))
        .contains("killed: general protection fault")
        .line("popf", |l| {
            l.starts_with("fault: popf with IF clear in ring 3")
                && l.contains("IF 1 before, 1 after, no fault")
        })
        .line("a typed line longer than the FIFO arrives whole", |l| {
            l == "a-line-longer-than-the-16-byte-uart-fifo"
        })
        .poweroff(0)
        .exit(EXIT_OK);
    let free: Vec<&str> = o
        .output
        .lines()
        .filter(|l| l.trim_start().starts_with("free pages: "))
        .collect();
    assert_eq!(free.len(), 2, "two `free pages:` lines\n{o}");
    assert_eq!(free[0], free[1], "100 processes leak no frame\n{o}");
}

/// Domain 0 runs `hostile=WHAT` under emulate next to a PV `demo`; it is crashed with `reason`, the other
/// domain finishes, the hypervisor survives intact.
#[track_caller]
fn crashes_alone(what: &str, reason: &str) -> Outcome {
    let d0 = emulate(&format!("hostile={what} nosuchword"));
    let o = run(&[d0.as_str(), "demo"]);
    expect(&o)
        .contains(&format!("hostile: {what}"))
        .crashed(0, reason)
        .poweroff(1)
        .exit(EXIT_DOMAIN_CRASHED)
        .contains(INTEGRITY_LINE)
        .hypervisor_alive_at_end();
    assert!(
        !o.contains_line(&format!("hostile: {what} survived")),
        "the probe must not be survived\n{o}"
    );
    o
}

/// Domain 0 survives `hostile=WHAT` and goes on to its command line (an unknown word: the kernel powers
/// off with code 2 and writes what a one-domain PV run would end with, `EXIT_DOMAIN_FAILED`, to
/// isa-debug-exit, which is the emulate domain's shutdown code).
#[track_caller]
fn survives(what: &str) -> Outcome {
    let d0 = emulate(&format!("hostile={what} nosuchword"));
    let o = run(&[d0.as_str(), "demo"]);
    expect(&o)
        .contains(&format!("hostile: {what} survived"))
        .contains("unknown command 'nosuchword'")
        .poweroff(1)
        .exit(EXIT_DOMAIN_FAILED)
        .contains(INTEGRITY_LINE)
        .hypervisor_alive_at_end();
    assert_eq!(
        o.shutdowns().iter().find(|s| s.0 == 0),
        Some(&(0, "poweroff".to_string(), u32::from(EXIT_DOMAIN_FAILED))),
        "domain 0 powers off through isa-debug-exit\n{o}"
    );
    assert!(o.crashed_domains().is_empty(), "no domain crashed\n{o}");
    o
}

#[test]
fn cr3_outside_the_domain_crashes_it() {
    crashes_alone("cr3-outside", "CR3 outside the domain's memory");
}

#[test]
fn cr3_at_the_hypervisor_image_address_sees_only_the_domains_own_frame() {
    // Guest-physical 2 MiB is the domain's own kernel text, not the hypervisor: as page tables its bytes
    // name frames outside the domain or nothing at all, and the domain dies of it alone.
    crashes_alone("cr3-hv", "emulate: ");
}

#[test]
fn an_idt_at_the_hypervisors_entry_region_is_a_triple_fault() {
    crashes_alone("idt-hv", "triple fault: the guest's IDT is not mapped");
}

#[test]
fn a_garbage_gdt_ends_in_a_triple_fault() {
    crashes_alone("gdt-garbage", "triple fault");
}

#[test]
fn an_instruction_the_emulator_does_not_know_crashes_with_its_bytes() {
    let o = crashes_alone("unknown-insn", "does not handle");
    assert!(
        o.crashed_domains()
            .iter()
            .any(|(_, r)| r.contains("bytes [0f, 01, c8")),
        "the report shows the instruction bytes\n{o}"
    );
}

#[test]
fn iretq_to_ring_1_is_refused() {
    crashes_alone("iretq-ring1", "iretq to guest ring 1 or 2");
}

#[test]
fn iretq_to_the_kernels_own_ring_0_selector_is_emulated() {
    survives("iretq-ring0");
}

#[test]
fn a_pic_storm_does_not_starve_the_pv_domain() {
    // Domain 0 programs the PIT at ~600 kHz with interrupts on and never stops; domain 1 yields 200 times
    // and must still finish, with domain 0 neither crashed nor stopping the machine (the run ends by the
    // timeout).
    let d0 = emulate("hostile=pic-storm");
    let mut s = Scenario::new(&[d0.as_str(), "test=ticker"]);
    s.timeout = Duration::from_secs(25);
    let o = run_scenario(&s);
    expect(&o)
        .contains("hostile: pic-storm")
        .poweroff(1)
        .no_panic();
    assert!(o.crashed_domains().is_empty(), "no domain crashed\n{o}");
    assert!(
        !o.contains_line("hostile: pic-storm survived"),
        "the storm never ends\n{o}"
    );
}
