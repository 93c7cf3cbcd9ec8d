//! A ring-1 guest executing privileged instructions takes a general protection fault and is crashed; its
//! neighbour powers off normally.

use abi::exit::EXIT_DOMAIN_CRASHED;
use tests::{expect, run};

#[test]
fn privileged_instruction_crashes_only_that_domain() {
    let outcome = run(&["test=privileged", "demo"]);
    expect(&outcome)
        .crashed(0, "general protection")
        .poweroff(1)
        .exit(EXIT_DOMAIN_CRASHED)
        .no_panic();
}
