//! Log-dirty tracking from domain 0 (`XEN_DOMCTL_SHADOW_OP`, docs/ARCHITECTURE.md "Live migration"):
//! hostile requests refused (`test=logdirty-hostile`), and the harvest of a running domain that writes
//! known pages: every page it wrote is reported, none of the pages next to them it never touched; a domain
//! that is not PV is refused (`test=logdirty-nonpv` beside an emulated shell).

use std::collections::BTreeSet;

use abi::exit::EXIT_OK;
use tests::{Scenario, TestResult, expect, run_scenario};
use xtask::Mode;
use xtask::shell::XL_IMAGE;

/// The numbers after `word` on the first line holding `prefix` (up to the next non-number).
fn numbers(out: &str, prefix: &str, word: &str) -> Option<BTreeSet<u64>> {
    let line = out.lines().find(|l| l.contains(prefix))?;
    let rest = line.split_once(word)?.1;
    Some(
        rest.split_whitespace()
            .map_while(|w| w.parse().ok())
            .collect(),
    )
}

#[test]
fn hostile_requests_are_refused_and_the_harvest_sees_exactly_the_written_pages() {
    let mut s = Scenario::new(&["test=logdirty-hostile"]);
    s.images = vec![XL_IMAGE.to_string()];
    let o = run_scenario(&s);
    expect(&o)
        .result(0, TestResult::Success)
        .contains("(d0)   ok   enable on itself: Some(EINVAL)")
        .contains("(d0)   ok   CLEAN while off: Some(EINVAL)")
        .contains("(d0)   ok   enable twice: Some(EINVAL)")
        .contains("(d0)   ok   enable on a second domain while one has it: Some(EBUSY)")
        .contains("(d0)   ok   a bitmap in the hypervisor: Some(EFAULT)")
        .contains("(d0)   ok   a read-only bitmap (kernel text): Some(EFAULT)")
        .contains("(d0)   ok   then enable on the other domain: None")
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    let written = numbers(&o.output, "logdirty-writer: writes", "writes")
        .unwrap_or_else(|| panic!("the writer's pfns\n{o}"));
    let untouched = numbers(&o.output, "logdirty-writer: writes", "untouched")
        .unwrap_or_else(|| panic!("the writer's untouched pfns\n{o}"));
    let harvest = numbers(&o.output, "logdirty: running harvest", "pages:")
        .unwrap_or_else(|| panic!("the harvest\n{o}"));
    eprintln!("written {written:?}, untouched {untouched:?}, harvested {harvest:?}");
    assert_eq!((written.len(), untouched.len()), (4, 4), "{o}");
    assert!(
        written.is_subset(&harvest),
        "written {written:?} not all in the harvest {harvest:?}\n{o}"
    );
    assert!(
        untouched.is_disjoint(&harvest),
        "untouched {untouched:?} reported {harvest:?}\n{o}"
    );
    assert!(!o.output.contains("MISMATCH"), "teardown recount\n{o}");
}

#[test]
fn a_domain_that_is_not_pv_gets_no_log_dirty() {
    if tests::skip_if_unavailable(Mode::Emulate) {
        return;
    }
    let o = run_scenario(&Scenario::new(&[
        "test=logdirty-nonpv",
        "kind=emulate shell",
    ]));
    expect(&o)
        .result(0, TestResult::Success)
        .contains("(d0)   ok   enable on a domain that is not PV: Some(EOPNOTSUPP)")
        .poweroff(0)
        .hypervisor_alive_at_end();
}
