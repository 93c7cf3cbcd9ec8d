//! The harness can fail: a guest test that reports FAILURE must come out as FAILURE (and exit value 1).

use abi::exit::EXIT_DOMAIN_FAILED;
use tests::{TestResult, expect, run};

#[test]
fn a_failing_guest_test_is_reported_as_failure() {
    let outcome = run(&["test=selftest-fail"]);
    let outcome = expect(&outcome)
        .result(0, TestResult::Failure)
        .exit(EXIT_DOMAIN_FAILED)
        .no_panic()
        .outcome();
    assert!(
        outcome.results().contains(&(0, TestResult::Failure)),
        "results() must list domain 0's FAILURE\n{outcome}"
    );
}
