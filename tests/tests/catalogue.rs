//! The rest of the XTF-style hostile catalogue (issue 10 §5): far transfers and descriptor-table loads in
//! ring 1, SYSCALL from ring 1 and to the canonical hole, single-stepping across every entry
//! (`hostile-entry`); segment bases, `iret` flags, multicalls mixing page-table changes with flushes,
//! event-channel and console bounds (`hostile-calls`); and the two variants that must crash only the
//! guest that tried (`hostile-entry-crash`, twice). Four QEMU boots in all.

use abi::exit::EXIT_OK;
use tests::{INTEGRITY_LINE, TestResult, crashes_next_to_demo, expect, run};

/// Boots `test=NAME` alone: SUCCESS, a clean power-off, the integrity line, no panic.
#[track_caller]
fn succeeds_alone(name: &str) -> tests::Outcome {
    let outcome = run(&[&format!("test={name}")]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .poweroff(0)
        .exit(EXIT_OK)
        .no_panic()
        .contains(INTEGRITY_LINE)
        .hypervisor_alive_at_end();
    outcome
}

#[test]
fn hostile_entries_and_exits_are_bounced_to_the_guest() {
    let outcome = succeeds_alone("hostile-entry");
    expect(&outcome)
        .contains("(d0)   ok   ljmp to the hypervisor's code selector 0x08: 1 fault, vector 13")
        .contains("(d0)   ok   ltr of the TSS selector: 1 fault, vector 13")
        .contains("(d0)   ok   bounced to the syscall callback (1 time): CS 0x33, SS 0x2b")
        .contains("RIP = RCX = 0x800000000000")
        .contains("(d0)   ok   #DB at the SYSCALL and right after the instruction behind it");
}

#[test]
fn hostile_hypercall_arguments_are_refused_or_sanitized() {
    let outcome = succeeds_alone("hostile-calls");
    expect(&outcome)
        .contains("(d0)   ok   segment 0: base at the entry region: EINVAL")
        .contains("(d0)   ok   the hypervisor's CS 0x08 and SS 0x10: resumed with CS 0x19, SS 0x21")
        .contains("bad entries fail alone, later ones still run")
        .contains("(d0)   ok   direct update_va_mapping refusals")
        .contains("(d0)   ok   read straddling into the unmapped page: EFAULT");
}

#[test]
fn a_naive_return_to_a_non_canonical_syscall_address_crashes_only_that_domain() {
    crashes_next_to_demo(
        "test=hostile-entry-crash mode=sysret",
        "iret to a non-canonical or hypervisor address",
    );
}

#[test]
fn ltr_without_a_trap_table_crashes_only_that_domain() {
    crashes_next_to_demo(
        "test=hostile-entry-crash mode=ltr",
        "general protection fault (vector 13, error 0x0) in ring 1",
    );
}
