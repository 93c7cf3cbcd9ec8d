//! Console input: domain 0 owns the serial line's input (VIRQ_CONSOLE + `console_io` read), other domains
//! are refused it, and the debug key (Ctrl-] then a letter) makes the hypervisor dump its state.

use abi::exit::EXIT_OK;
use tests::{Scenario, TestResult, expect, run_scenario};
use xtask::qemu::Input;

#[test]
fn domain_0_reads_a_typed_line_and_the_debug_keys_dump_state() {
    let mut s = Scenario::new(&["test=console-input", "test=console-input"]);
    // Ctrl-] d (domains), Ctrl-] e (event channels), then the line for domain 0.
    s.input = Input::Expect(&[("console: ready for input", b"\x1dd\x1deping\n")]);
    let outcome = run_scenario(&s);
    expect(&outcome)
        .result(0, TestResult::Success)
        .result(1, TestResult::Success)
        .line("domain 0 got the line through VIRQ_CONSOLE", |l| {
            l.starts_with("(d0) console: got 'ping'")
        })
        .line("the domain dump", |l| {
            l.starts_with("[hv] domain 0: ") && l.contains("weight")
        })
        .line("the event-channel dump", |l| {
            l.starts_with("[hv] domain 0 event channels:") && l.contains("Virq")
        })
        .exit(EXIT_OK)
        .no_panic();
}
