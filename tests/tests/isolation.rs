//! Isolation: a guest touching hypervisor memory, the read-only entry region or its own (read-only) page
//! tables is crashed with a page fault; a second domain is unaffected and the hypervisor's text and rodata
//! are intact.

use abi::exit::EXIT_DOMAIN_CRASHED;
use tests::{INTEGRITY_LINE, expect, images, run};

/// Boots `test` as domain 0 next to a `demo` domain 1 and checks the isolation expectations.
#[track_caller]
fn crashed_by_page_fault_while_neighbour_survives(test: &str) {
    let outcome = run(&[test, "demo"]);
    expect(&outcome)
        .crashed(0, "page fault")
        .poweroff(1)
        .exit(EXIT_DOMAIN_CRASHED)
        .no_panic()
        .contains(INTEGRITY_LINE);
}

#[test]
fn reading_hypervisor_memory_crashes_the_domain() {
    crashed_by_page_fault_while_neighbour_survives("test=hv-read");
}

#[test]
fn writing_hypervisor_memory_crashes_the_domain() {
    crashed_by_page_fault_while_neighbour_survives("test=hv-write");
}

/// The hypervisor's `HV_CANARY` word (in its `.data`), whose value the hypervisor checks at power-off.
fn canary() -> String {
    let a = xtask::symbol_address(&images().hypervisor, "HV_CANARY")
        .expect("HV_CANARY in the hypervisor ELF");
    format!("{a:#x}")
}

#[test]
fn reading_the_hypervisor_canary_crashes_the_domain() {
    let addr = canary();
    let outcome = run(&[&format!("test=hv-read addr={addr}"), "demo"]);
    expect(&outcome)
        .crashed(0, &format!("page fault (read, not present) at {addr}"))
        .poweroff(1)
        .exit(EXIT_DOMAIN_CRASHED)
        .contains(INTEGRITY_LINE);
}

#[test]
fn writing_the_hypervisor_canary_crashes_the_domain_and_changes_nothing() {
    let addr = canary();
    let outcome = run(&[&format!("test=hv-write addr={addr}"), "demo"]);
    // INTEGRITY_LINE covers the canary's value as well as text and rodata.
    expect(&outcome)
        .crashed(0, &format!("page fault (write, not present) at {addr}"))
        .poweroff(1)
        .exit(EXIT_DOMAIN_CRASHED)
        .contains(INTEGRITY_LINE);
}

#[test]
fn writing_the_entry_region_crashes_the_domain() {
    crashed_by_page_fault_while_neighbour_survives("test=entry-write");
}

#[test]
fn writing_own_page_tables_crashes_the_domain() {
    crashed_by_page_fault_while_neighbour_survives("test=pt-write");
}
