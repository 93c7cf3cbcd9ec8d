//! A guest that feeds the console hypercall hostile input (bad pointers, huge counts, control bytes) gets
//! errors back, and the hypervisor survives to print its closing summary.

use abi::exit::EXIT_OK;
use tests::{TestResult, expect, run};

#[test]
fn hostile_console_input_is_refused_and_the_hypervisor_survives() {
    let outcome = run(&["test=console-hostile"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .exit(EXIT_OK)
        .poweroff(0)
        .hypervisor_alive_at_end();
}
