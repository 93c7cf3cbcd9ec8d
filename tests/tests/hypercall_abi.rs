//! Hypercall ABI scenarios: unknown hypercall numbers fail cleanly with -ENOSYS instead of crashing anything.

use abi::exit::EXIT_OK;
use tests::{TestResult, expect, run};

#[test]
fn unknown_hypercall_returns_an_error() {
    let outcome = run(&["test=unknown-hypercall"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .exit(EXIT_OK)
        .no_panic()
        .poweroff(0);
}
