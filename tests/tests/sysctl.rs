//! The domain list (`sysctl(XEN_SYSCTL_getdomaininfolist)`): domain 0 sees itself and the other domain with
//! sane fields, watches it shut down and be reaped (it leaves the list), and gets -EFAULT/-EACCES/-ENOSYS for hostile calls; the other domain
//! is refused (-EPERM).

use abi::exit::EXIT_OK;
use tests::{TestResult, expect, run};

#[test]
fn domain_0_lists_the_domains_and_the_others_are_refused() {
    let outcome = run(&["test=domains expect=2", "test=domains"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .result(1, TestResult::Success)
        .contains("(d0) 2 domain(s):")
        .line("domain 0 lists itself, running", |l| {
            l.starts_with("(d0)   domain 0: flags 0x20, ")
        })
        .contains("(d0)   ok   domain 1: sane fields")
        .line("domain 0 sees domain 1 shut down and reaped", |l| {
            l.starts_with("(d0)   ok   domain 1 shut down and was reaped: no longer listed")
        })
        .contains("(d0)   ok   buffer at the hypervisor's image: Some(EFAULT), envelope untouched")
        .contains("(d1)   ok   domain 1: the domain list is refused (Err(EPERM))")
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}
