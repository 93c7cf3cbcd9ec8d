//! Event channels (issue 4): 10,000 interdomain round trips with none lost (upcalls, and `SCHEDOP_poll`
//! on the answering side), masked events delivered after unmask, and another domain's ports out of reach.

use abi::exit::EXIT_OK;
use tests::{TestResult, expect, run};

#[test]
fn interdomain_ping_pong_loses_nothing() {
    let outcome = run(&["test=evtchn-ping", "test=evtchn-pong"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .result(1, TestResult::Success)
        .line("10,000 round trips, none lost", |l| {
            l.starts_with("(d0)   ok   evtchn-ping: 10000 round trips in ")
        })
        .contains("(d1)   ok   evtchn-pong: answered 10000 pings (upcalls)")
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
    for l in outcome.domain_output(0) {
        if l.contains("evtchn-ping: ") {
            println!("{l}");
        }
    }
}

#[test]
fn ping_pong_with_a_polling_peer() {
    let outcome = run(&[
        "test=evtchn-ping rounds=2000",
        "test=evtchn-pong rounds=2000 mode=poll",
    ]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .result(1, TestResult::Success)
        .contains("(d1)   ok   evtchn-pong: answered 2000 pings (SCHEDOP_poll)")
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}

#[test]
fn masked_events_are_delivered_after_unmask() {
    let outcome = run(&["test=evtchn-mask"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .poweroff(0)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}

#[test]
fn another_domains_ports_are_out_of_reach() {
    let outcome = run(&["test=evtchn-hostile-peer", "test=evtchn-hostile"]);
    expect(&outcome)
        .result(0, TestResult::Success)
        .result(1, TestResult::Success)
        .contains("(d0)   ok   every private port still unbound for this domain, none pending, all still masked")
        .contains("(d1)   ok   domain 0 closed its end: this end is unbound")
        .poweroff(0)
        .poweroff(1)
        .exit(EXIT_OK)
        .hypervisor_alive_at_end();
}
