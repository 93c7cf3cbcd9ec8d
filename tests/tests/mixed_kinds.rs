//! Domains of the three kinds side by side under one hypervisor and one scheduler (`--domains
//! pv,emulate,hvm`): each runs the Popek–Goldberg table (`sensitive`) and powers off; the table of each
//! shows its own kind (PV and emulate: RPL 1; hvm: RPL 0), and the hypervisor reports exits for the two
//! fully virtualized ones. SKIP while the hypervisor cannot run emulate or hvm domains.

use abi::exit::EXIT_OK;
use tests::{Scenario, expect, run_scenario};
use xtask::Mode;
use xtask::compare::exits;

#[test]
fn pv_emulate_and_hvm_domains_run_side_by_side() {
    for mode in [Mode::Emulate, Mode::Hvm] {
        if tests::skip_if_unavailable(mode) {
            return;
        }
    }
    let domains: Vec<String> = Mode::DOMAIN_KINDS
        .iter()
        .map(|k| k.module_cmdline("sensitive"))
        .collect();
    assert_eq!(
        domains,
        ["sensitive", "kind=emulate sensitive", "kind=hvm sensitive"]
    );
    let o = run_scenario(&Scenario::new(&domains));
    for (domid, kind) in Mode::DOMAIN_KINDS.iter().enumerate() {
        let domid = domid as u32;
        let rpl = format!("(RPL {})", kind.kernel_ring());
        assert!(
            o.domain_output(domid)
                .iter()
                .any(|l| l.starts_with("sensitive: mov cs") && l.contains(&rpl)),
            "domain {domid} ({kind}) runs at {rpl}\n{o}"
        );
        expect(&o).poweroff(domid);
        if *kind != Mode::Pv {
            let e = exits::of_domain(&o.output, domid);
            assert_eq!(
                e.as_ref().map(|e| e.kind.as_str()),
                Some(kind.name()),
                "domain {domid}'s exits line\n{o}"
            );
        }
    }
    expect(&o)
        .exit(EXIT_OK)
        .no_panic()
        .hypervisor_alive_at_end();
}
