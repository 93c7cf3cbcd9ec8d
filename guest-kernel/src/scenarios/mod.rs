//! Scenario tests run by `test=NAME` on the command line, XTF style: each prints `Test: NAME`, checks what
//! it must, prints `Test result: SUCCESS|SKIP|ERROR|FAILURE` and shuts down with XTF's exit code.
//!
//! Tests that expect the hypervisor to *crash* this domain (touching hypervisor memory, privileged
//! instructions) cannot report their own success: if they get as far as printing a result, that result is
//! FAILURE, and the QEMU harness checks the hypervisor's crash report instead.

mod hypercall_abi;
mod isolation;

use crate::println;
use crate::xtf::{Outcome, Results};

/// A scenario: name, one-line description, body.
struct Scenario {
    name: &'static str,
    about: &'static str,
    run: fn(cmdline: &str, r: &mut Results),
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "unknown-hypercall",
        about: "unknown hypercall numbers return -ENOSYS",
        run: hypercall_abi::unknown_hypercall,
    },
    Scenario {
        name: "console-hostile",
        about: "console_io and friends refuse hostile buffers",
        run: hypercall_abi::console_hostile,
    },
    Scenario {
        name: "hv-read",
        about: "reading hypervisor memory stops this domain",
        run: isolation::hv_read,
    },
    Scenario {
        name: "hv-write",
        about: "writing hypervisor memory stops this domain",
        run: isolation::hv_write,
    },
    Scenario {
        name: "entry-write",
        about: "the entry region is readable but not writable",
        run: isolation::entry_write,
    },
    Scenario {
        name: "pt-write",
        about: "the domain's own page tables are read-only to it",
        run: isolation::pt_write,
    },
    Scenario {
        name: "privileged",
        about: "a privileged instruction stops this domain only",
        run: isolation::privileged,
    },
    Scenario {
        name: "selftest-fail",
        about: "harness self-test: must be reported as FAILURE",
        run: selftest_fail,
    },
];

/// Run scenario `name`; returns the exit code.
pub fn run(name: &str, cmdline: &str) -> u32 {
    let Some(s) = SCENARIOS.iter().find(|s| s.name == name) else {
        println!("Test: {name}");
        println!("no such test; known tests:");
        for s in SCENARIOS {
            println!("  {:<18} {}", s.name, s.about);
        }
        println!("Test result: ERROR: unknown test '{name}'");
        return Outcome::Error.exit_code();
    };
    println!("Test: {} ({})", s.name, s.about);
    let mut results = Results::new();
    (s.run)(cmdline, &mut results);
    let o = results.outcome();
    println!("Test result: {}", o.as_str());
    o.exit_code()
}

fn selftest_fail(_: &str, r: &mut Results) {
    println!("reporting a deliberate failure so the harness proves it can see one");
    r.report(Outcome::Failure);
}
