//! The hypercall return path (issue 14's fast path): an event made deliverable inside a hypercall is
//! delivered on that hypercall's own return, on the full path and on the light table's path (the fast
//! path among them); and a light hypercall after an address-space switch returns into the new one.

use abi::exit::EXIT_OK;
use tests::{TestResult, expect, run};

#[test]
fn events_raised_in_a_hypercall_are_delivered_on_its_return() {
    let outcome = run(&["test=evtchn-prompt"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .contains("(d0)   ok   an event sent to itself is delivered on the send's own return")
        .contains("(d0)   ok   unmasking delivers it on the return of xen_version (light table)")
        .contains(
            "(d0)   ok   light hypercalls after NEW_BASEPTR return into the new address space",
        )
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}
