//! Traps (issue 4): exceptions in the guest kernel and in its ring-3 code reach the guest's own handlers
//! with correct frames; a fault on a bad kernel stack, an `iret` to an unusable RIP and `int 0x80` with no
//! trap table crash only that domain; hostile trap tables, callbacks, stacks and `iret` frames are refused
//! or sanitized; the hypervisor never panics.

use abi::exit::{EXIT_DOMAIN_CRASHED, EXIT_OK};
use tests::{TestResult, crashes_next_to_demo, expect, run};

/// Boots `test=NAME` alone and expects SUCCESS and a clean power-off.
#[track_caller]
fn succeeds_alone(name: &str) {
    let outcome = run(&[&format!("test={name}")]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}

#[test]
fn kernel_exceptions_reach_the_guest_handlers() {
    let outcome = run(&["test=trap-kernel"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .contains("(d0)   ok   page fault (read, not present): CR2 0xdeadb0ef")
        .contains("(d0)   ok   breakpoint: XMM0-15 survive a handler that clobbers them")
        .contains("(d0)   ok   breakpoint with events masked: the handler saw it")
        .contains("(d0)   ok   breakpoint with events enabled: the handler saw it")
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}

#[test]
fn user_exceptions_and_system_calls_reach_the_guest_kernel() {
    let outcome = run(&["test=trap-user"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .contains("(d0)   ok   page fault (user read, not present): CR2 0x66666008")
        .contains("(d0)   ok   SYSCALL bounced to the syscall callback")
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}

#[test]
fn a_fault_on_a_bad_kernel_stack_crashes_only_that_domain() {
    crashes_next_to_demo("test=trap-bad-stack", "fault while delivering page fault");
}

#[test]
fn int80_without_a_gate_is_a_general_protection_fault_for_the_guest() {
    let outcome = run(&["test=int80-early", "demo"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}

#[test]
fn int80_with_no_trap_table_crashes_only_that_domain() {
    crashes_next_to_demo("test=int80-early mode=no-table", "general protection");
}

#[test]
fn hostile_trap_hypercalls_are_refused_or_sanitized() {
    succeeds_alone("hostile-traps");
}

#[test]
fn iret_to_a_non_canonical_rip_crashes_only_that_domain() {
    crashes_next_to_demo("test=iret-noncanonical", "iret");
}

#[test]
fn iret_into_the_hypervisor_crashes_only_that_domain() {
    crashes_next_to_demo(
        &format!(
            "test=iret-noncanonical rip={:#x}",
            abi::layout::ENTRY_REGION_VA
        ),
        "iret",
    );
}

#[test]
fn isolation_faults_still_end_in_the_hypervisor_crash_report() {
    // With a guest trap table installed, an unexpected fault in the kernel is handed back: the guest
    // reports it, clears its trap table and re-executes, so the hypervisor crashes it with its own report.
    let outcome = run(&["test=hv-read", "demo"]);
    expect(&outcome)
        .contains("(d0) trap: unhandled page fault (vector 0xe) in ring 1")
        .crashed(0, "page fault (read, not present) at 0x200000")
        .poweroff(1)
        .exit(EXIT_DOMAIN_CRASHED)
        .no_panic();
}
