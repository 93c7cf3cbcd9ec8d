//! Isolation: a guest touching hypervisor memory, the read-only entry region or its own (read-only) page
//! tables is crashed with a page fault; a second domain is unaffected and the hypervisor's text and rodata
//! are intact.

use abi::exit::EXIT_DOMAIN_CRASHED;
use tests::{INTEGRITY_LINE, expect, run};

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

#[test]
fn writing_the_entry_region_crashes_the_domain() {
    crashed_by_page_fault_while_neighbour_survives("test=entry-write");
}

#[test]
fn writing_own_page_tables_crashes_the_domain() {
    crashed_by_page_fault_while_neighbour_survives("test=pt-write");
}
