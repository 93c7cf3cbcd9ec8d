//! The frames the hypervisor writes for a domain (issue 10, part 0): the shared_info page cannot be made a
//! page table or a descriptor table even after its writable mapping is gone (`sharedinfo-pin`), and
//! `SCHEDOP_poll` on a masked VIRQ port wakes at the VIRQ (`poll-masked-virq`); each next to a second
//! domain that must finish normally, with the hypervisor's image unchanged.

use abi::exit::EXIT_OK;
use tests::{INTEGRITY_LINE, TestResult, expect, run};

#[test]
fn shared_info_cannot_become_a_page_table() {
    let outcome = run(&["test=sharedinfo-pin", "demo"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .contains("(d0)   ok   update_va_mapping: shared_info read-only: 0")
        .contains("(d0)   ok   mmuext_op PIN_L1_TABLE of shared_info: EBUSY")
        .contains("(d0)   ok   mmuext_op PIN_L4_TABLE of shared_info: EBUSY")
        .line("linking it as an L1 refused", |l| {
            l.starts_with("(d0)   ok   mmu_update linking shared_info as an L1")
                && l.ends_with("EBUSY")
        })
        .line("set_gdt refused", |l| {
            l.starts_with("(d0)   ok   set_gdt on the shared_info frame: refused")
        })
        .contains("(d0)   ok   update_va_mapping: shared_info writable again: 0")
        .contains("(d0)   ok   the IPI is delivered")
        .poweroff(0)
        .poweroff(1)
        .contains(INTEGRITY_LINE)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}

#[test]
fn poll_on_a_masked_virq_wakes_at_the_timer() {
    let outcome = run(&["test=poll-masked-virq", "demo"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .line("the 1 s-timeout poll woke at the timer", |l| {
            l.starts_with("(d0)   ok     woke after") && l.contains("at the timer")
        })
        .contains("(d0)   ok   SCHEDOP_poll x10, 1 ms timer, no timeout: each returned 0")
        .contains("(d0)   ok     the timer port was pending each time (the wake-up's cause)")
        .poweroff(0)
        .poweroff(1)
        .contains(INTEGRITY_LINE)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}
