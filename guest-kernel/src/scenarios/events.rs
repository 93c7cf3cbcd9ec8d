//! Event-channel scenarios (issue 4): interdomain ping-pong (`evtchn-ping` in domain 0 with
//! `evtchn-pong` in domain 1), masking (`evtchn-mask`), and another domain's ports out of reach
//! (`evtchn-hostile` in domain 1 against `evtchn-hostile-peer` in domain 0).
//!
//! # Finding each other
//!
//! There is no xenstore, so the two domains of a pair use a convention: domain 0 allocates a port
//! unbound for domain 1 (`alloc_unbound`, after its other ports, so it is its highest); domain 1 tries
//! `bind_interdomain(0, p)` for p = 1, 2, … until one succeeds, which only a port offered to it can.
//! Every other attempt must fail with `-EINVAL`. The first message on the channel is domain 1's "hello".

use core::sync::atomic::{AtomicU64, Ordering};

use abi::errno::Errno;
use abi::event_channel::{
    EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_UNBOUND, EvtchnPort, NR_VIRQS, VIRQ_TIMER,
};
use abi::xen::{DOMID_SELF, DomId};

use crate::boot::{facts, platform};
use crate::cmdline::{option, parse_u64};
use crate::event;
use crate::platform::xen_pv::XEN_PV;
use crate::println;
use crate::time::{self, NS_PER_MS, NS_PER_SEC, now, wait_until};
use crate::xtf::{Outcome, Results};

use super::memory::{check, expect};

/// Round trips unless `rounds=` says otherwise.
const DEFAULT_ROUNDS: u64 = 10_000;
/// Highest port domain 1 tries when looking for domain 0's offer.
const SCAN_PORTS: EvtchnPort = event::OFFER_SCAN_PORTS;

static RECEIVED: AtomicU64 = AtomicU64::new(0);

fn received(_: EvtchnPort) {
    RECEIVED.fetch_add(1, Ordering::SeqCst);
}

fn rounds(cmdline: &str) -> u64 {
    option(cmdline, "rounds")
        .and_then(parse_u64)
        .unwrap_or(DEFAULT_ROUNDS)
}

fn require_events(r: &mut Results) -> bool {
    let ok = crate::trap::dispatch::callbacks_ready()
        && time::timer_port().is_some()
        && time::available();
    if !ok {
        println!("no event callback, VIRQ_TIMER port or pvclock (see the traps: line at boot)");
        r.report(Outcome::Failure);
    }
    ok
}

/// Wait (blocking) until RECEIVED reaches `n` or `deadline`.
fn await_received(n: u64, deadline: u64) -> Result<bool, Errno> {
    wait_until(|| RECEIVED.load(Ordering::SeqCst) >= n, Some(deadline))
}

/// Domain 0 of the ping-pong: offer a port to domain 1, then `rounds` × (send, wait for the reply).
pub fn evtchn_ping(cmdline: &str, r: &mut Results) {
    if !require_events(r) {
        return;
    }
    let n = rounds(cmdline);
    let peer: DomId = 1;
    // Events off until the handler is in place: the peer may bind and say hello at any moment.
    let enabled = platform().irq_disable();
    let port = match event::alloc_unbound(peer) {
        Ok(p) => p,
        Err(e) => {
            platform().irq_restore(enabled);
            println!("alloc_unbound for domain {peer}: {e}");
            r.report(Outcome::Failure);
            return;
        }
    };
    event::set_handler(port, Some(received));
    let unmasked = event::unmask(port);
    platform().irq_restore(enabled);
    expect(r, "unmask the new port", unmasked, Ok(()));
    println!("evtchn-ping: port {port} offered to domain {peer}; waiting for its hello");
    let start = now();
    match await_received(1, start + 20 * NS_PER_SEC) {
        Ok(true) => {}
        other => {
            println!("no hello from domain {peer}: {other:?}");
            r.report(Outcome::Failure);
            return;
        }
    }
    let t0 = now();
    let deadline = t0 + 25 * NS_PER_SEC;
    for i in 1..=n {
        if let Err(e) = event::send(port) {
            check(r, &alloc::format!("send, round {i}: {e}"), false);
            return;
        }
        match await_received(i + 1, deadline) {
            Ok(true) => {}
            other => {
                check(
                    r,
                    &alloc::format!(
                        "round {i}: no reply ({other:?}); received {} events",
                        RECEIVED.load(Ordering::SeqCst)
                    ),
                    false,
                );
                return;
            }
        }
    }
    let ms = (now() - t0) / NS_PER_MS;
    let got = RECEIVED.load(Ordering::SeqCst);
    check(
        r,
        &alloc::format!(
            "evtchn-ping: {n} round trips in {ms} ms, {got} events received (hello + {n} replies), none lost"
        ),
        got == n + 1,
    );
    let (handled, unhandled) = event::counts();
    println!(
        "evtchn-ping: {} upcalls, {handled} events handled, {unhandled} without a handler",
        event::upcalls()
    );
    let _ = event::close(port);
}

/// Find domain 0's offer: the first port of domain 0 that `bind_interdomain` accepts. Every refusal must
/// be `-EINVAL` (`bad` counts the others). Retries for up to 10 s (domain 0 may not have offered yet).
fn find_offer(remote: DomId, bad: &mut u32) -> Option<(EvtchnPort, EvtchnPort)> {
    let deadline = now() + 10 * NS_PER_SEC;
    while now() < deadline {
        for p in 1..=SCAN_PORTS {
            match event::bind_interdomain_raw(remote, p) {
                Ok(local) => return Some((p, local)),
                Err(Errno::EINVAL) => {}
                Err(e) => {
                    println!("  bind_interdomain({remote}, {p}): unexpected {e}");
                    *bad += 1;
                }
            }
        }
        let _ = time::sleep(NS_PER_MS);
    }
    None
}

/// Domain 1 of the ping-pong: connect, say hello, answer every event. `mode=poll` waits with
/// `SCHEDOP_poll` on the masked port instead of upcalls.
pub fn evtchn_pong(cmdline: &str, r: &mut Results) {
    if !require_events(r) {
        return;
    }
    let n = rounds(cmdline);
    let poll = option(cmdline, "mode") == Some("poll");
    let mut bad = 0;
    let Some((remote, port)) = find_offer(0, &mut bad) else {
        println!("domain 0 offered no port");
        r.report(Outcome::Failure);
        return;
    };
    check(
        r,
        &alloc::format!(
            "bound local port {port} to domain 0's port {remote}; every other port refused with EINVAL"
        ),
        bad == 0,
    );
    if poll {
        event::mask(port);
    } else {
        event::set_handler(port, Some(received));
        expect(r, "unmask", event::unmask(port), Ok(()));
    }
    expect(r, "hello", event::send(port), Ok(()));
    let deadline = now() + 30 * NS_PER_SEC;
    let mut answered = 0;
    while answered < n {
        let got = if poll {
            match XEN_PV.sched_poll(&[port], deadline) {
                Ok(()) => {
                    if event::take_pending(port) {
                        RECEIVED.fetch_add(1, Ordering::SeqCst);
                    }
                    now() < deadline
                }
                Err(e) => {
                    check(r, &alloc::format!("SCHEDOP_poll: {e}"), false);
                    return;
                }
            }
        } else {
            matches!(await_received(answered + 1, deadline), Ok(true))
        };
        if !got {
            check(
                r,
                &alloc::format!("waiting for ping {}: timed out", answered + 1),
                false,
            );
            return;
        }
        while answered < RECEIVED.load(Ordering::SeqCst) {
            answered += 1;
            if let Err(e) = event::send(port) {
                check(r, &alloc::format!("reply {answered}: {e}"), false);
                return;
            }
        }
    }
    check(
        r,
        &alloc::format!(
            "evtchn-pong: answered {answered} pings ({})",
            if poll { "SCHEDOP_poll" } else { "upcalls" }
        ),
        answered == n && RECEIVED.load(Ordering::SeqCst) == n,
    );
}

static LOOP_EVENTS: AtomicU64 = AtomicU64::new(0);

fn loop_event(_: EvtchnPort) {
    LOOP_EVENTS.fetch_add(1, Ordering::SeqCst);
}

/// A loopback channel in this domain: `(a, b)`, `b`'s events counted by `loop_event`.
fn loopback(r: &mut Results) -> Option<(EvtchnPort, EvtchnPort)> {
    let me = facts().domid as DomId;
    let a = match event::alloc_unbound(me) {
        Ok(a) => a,
        Err(e) => {
            check(
                r,
                &alloc::format!("alloc_unbound for this domain: {e}"),
                false,
            );
            return None;
        }
    };
    match event::bind_interdomain(me, a, Some(loop_event)) {
        Ok(b) => Some((a, b)),
        Err(e) => {
            check(
                r,
                &alloc::format!("bind_interdomain to own port {a}: {e}"),
                false,
            );
            None
        }
    }
}

/// Wait up to 1 s for LOOP_EVENTS to reach `n`.
fn loop_events_reach(n: u64) -> bool {
    matches!(
        wait_until(
            || LOOP_EVENTS.load(Ordering::SeqCst) >= n,
            Some(now() + NS_PER_SEC)
        ),
        Ok(true)
    )
}

/// A hypercall with no effect: the way back from it delivers any deliverable event.
fn poke() {
    let _ = platform().yield_cpu();
}

/// Masked events stay pending and are delivered after unmask (per port, and with the global mask).
pub fn evtchn_mask(_: &str, r: &mut Results) {
    if !require_events(r) {
        return;
    }
    let Some((a, b)) = loopback(r) else { return };
    println!("loopback channel: port {a} <-> port {b}");
    expect(r, "send on a", event::send(a), Ok(()));
    check(r, "unmasked: delivered to b", loop_events_reach(1));

    event::mask(b);
    expect(r, "send on a with b masked", event::send(a), Ok(()));
    poke();
    check(
        r,
        "masked port: not delivered, left pending",
        LOOP_EVENTS.load(Ordering::SeqCst) == 1 && event::is_pending(b),
    );
    expect(r, "EVTCHNOP_unmask b", event::unmask(b), Ok(()));
    check(r, "delivered after EVTCHNOP_unmask", loop_events_reach(2));
    check(
        r,
        "b unmasked, not pending",
        !event::is_masked(b) && !event::is_pending(b),
    );

    let enabled = platform().irq_disable();
    expect(r, "send on a with events masked", event::send(a), Ok(()));
    poke();
    let held = LOOP_EVENTS.load(Ordering::SeqCst) == 2;
    platform().irq_restore(true);
    check(r, "events masked: held back", held);
    check(
        r,
        "delivered when events are enabled again",
        loop_events_reach(3),
    );
    platform().irq_restore(enabled);

    event::mask(b);
    expect(r, "send on a with b masked", event::send(a), Ok(()));
    expect(r, "send on a again (coalesces)", event::send(a), Ok(()));
    expect(r, "unmask b", event::unmask(b), Ok(()));
    check(r, "two sends while masked: one event", loop_events_reach(4));
    poke();
    check(r, "and only one", LOOP_EVENTS.load(Ordering::SeqCst) == 4);

    expect(r, "close b", event::close(b), Ok(()));
    match event::status(DOMID_SELF, a) {
        Ok(s) => check(
            r,
            &alloc::format!(
                "the other end, a, is unbound again (status {}, remote domain {})",
                s.status,
                s.u[0] & 0xffff
            ),
            s.status == EVTCHNSTAT_UNBOUND,
        ),
        Err(e) => check(r, &alloc::format!("status of a: {e}"), false),
    };
    expect(r, "close a", event::close(a), Ok(()));

    // An IPI port: sending on it signals this vCPU itself.
    match event::bind_ipi(Some(loop_event)) {
        Ok(p) => {
            expect(
                r,
                &alloc::format!("send on IPI port {p}"),
                event::send(p),
                Ok(()),
            );
            check(r, "the IPI is delivered to this vCPU", loop_events_reach(5));
            expect(r, "close the IPI port", event::close(p), Ok(()));
        }
        Err(e) => {
            check(r, &alloc::format!("bind_ipi(vcpu 0): {e}"), false);
        }
    }
}

static PEER_EVENTS: AtomicU64 = AtomicU64::new(0);

fn peer_event(_: EvtchnPort) {
    PEER_EVENTS.fetch_add(1, Ordering::SeqCst);
}

/// Private ports of the peer (`evtchn-hostile-peer`).
const PRIVATE_PORTS: u32 = 40;

/// Domain 0 of the hostile pair: private ports (offered to itself only), then a coordination port
/// offered to domain 1; after domain 1's "done", checks its private ports are untouched and closes the
/// coordination port (domain 1 then sees its end unbound).
pub fn evtchn_hostile_peer(_: &str, r: &mut Results) {
    if !require_events(r) {
        return;
    }
    let me = facts().domid as DomId;
    let enabled = platform().irq_disable();
    let mut private = heapless::Vec::<EvtchnPort, 64>::new();
    for _ in 0..PRIVATE_PORTS {
        match event::alloc_unbound(me) {
            Ok(p) => {
                event::mask(p);
                let _ = private.push(p);
            }
            Err(e) => {
                check(r, &alloc::format!("alloc_unbound (private): {e}"), false);
            }
        }
    }
    let coord = event::alloc_unbound(1);
    if let Ok(c) = coord {
        event::set_handler(c, Some(peer_event));
        let _ = event::unmask(c);
    }
    platform().irq_restore(enabled);
    let Ok(coord) = coord else {
        check(r, "alloc_unbound for domain 1", false);
        return;
    };
    println!(
        "evtchn-hostile-peer: {} private ports {:?}..={:?}, coordination port {coord} for domain 1",
        private.len(),
        private.first(),
        private.last()
    );
    let done = wait_until(
        || PEER_EVENTS.load(Ordering::SeqCst) >= 1,
        Some(now() + 25 * NS_PER_SEC),
    );
    check(r, "domain 1 reported done", matches!(done, Ok(true)));
    let mut intact = true;
    for &p in &private {
        match event::status(DOMID_SELF, p) {
            Ok(s) if s.status == EVTCHNSTAT_UNBOUND && s.u[0] & 0xffff == u32::from(me) => {}
            other => {
                println!("  private port {p}: {other:?}");
                intact = false;
            }
        }
        if event::is_pending(p) || !event::is_masked(p) {
            println!(
                "  private port {p}: pending {}, masked {}",
                event::is_pending(p),
                event::is_masked(p)
            );
            intact = false;
        }
    }
    check(
        r,
        "every private port still unbound for this domain, none pending, all still masked",
        intact,
    );
    expect(
        r,
        "close the coordination port",
        event::close(coord),
        Ok(()),
    );
    for &p in &private {
        let _ = event::close(p);
    }
    // Give domain 1 time to see its end unbound before this domain (and its ports) go away.
    let _ = time::sleep(200 * NS_PER_MS);
}

/// `EVTCHNOP_unmask` of a port number this domain has not bound: Xen checks only the range and clears
/// this domain's own mask bit (0), or a stricter hypervisor says `-EINVAL`; either way the other domain's
/// port of that number is untouched (which domain 0 checks).
fn own_unmask(r: &mut Results, p: EvtchnPort) {
    let got = event::unmask(p);
    check(
        r,
        &alloc::format!(
            "unmask({p}): {} (this domain's own mask bit only)",
            got.err().map_or("0", |e| e.name())
        ),
        matches!(got, Ok(()) | Err(Errno::EINVAL)),
    );
}

/// Domain 1 of the hostile pair: out-of-range ports, another domain's ports, privileged operations, a
/// loopback close; then "done" to domain 0 and its end of the coordination channel must become unbound.
pub fn evtchn_hostile(_: &str, r: &mut Results) {
    if !require_events(r) {
        return;
    }
    let me = facts().domid as DomId;
    let mut bad = 0;
    let Some((remote, coord)) = find_offer(0, &mut bad) else {
        println!("domain 0 offered no port");
        r.report(Outcome::Failure);
        return;
    };
    check(
        r,
        &alloc::format!(
            "bind_interdomain found domain 0's offer at its port {remote} (local {coord}); ports not offered to this domain refused"
        ),
        bad == 0,
    );
    let einval = Err(Errno::EINVAL);
    // A second scan: nothing else of domain 0 can be bound (its private ports are offered to itself,
    // the coordination port is connected now).
    let stolen = (1..=SCAN_PORTS)
        .filter(|&p| event::bind_interdomain_raw(0, p).is_ok())
        .count();
    check(
        r,
        &alloc::format!("no other port of domain 0 can be bound ({stolen} were)"),
        stolen == 0,
    );
    println!("out-of-range and reserved ports:");
    for p in [0u32, 1024, 4095, 4096, 0x7fff_ffff, u32::MAX] {
        expect(r, &alloc::format!("send({p})"), event::send(p), einval);
        expect(
            r,
            &alloc::format!("close({p})"),
            event::close_raw(p),
            einval,
        );
        if p == 0 {
            // Xen's unmask only checks that the port is in range; port 0 is (reserved, never bound).
            own_unmask(r, p);
        } else {
            expect(r, &alloc::format!("unmask({p})"), event::unmask(p), einval);
        }
    }
    for p in [1024u32, 4096, u32::MAX] {
        expect(
            r,
            &alloc::format!("status({p})"),
            event::status(DOMID_SELF, p).map(|_| ()),
            einval,
        );
    }
    println!("domain 0's ports (numbers this domain does not have):");
    for p in (coord + 3)..=(coord + 12) {
        expect(r, &alloc::format!("send({p})"), event::send(p), einval);
        expect(
            r,
            &alloc::format!("close({p})"),
            event::close_raw(p),
            einval,
        );
        // Domain 0 checks that its (masked) ports stay masked.
        own_unmask(r, p);
    }
    println!("operations on another domain:");
    expect(
        r,
        "status of domain 0's port",
        event::status(0, remote).map(|_| ()),
        Err(Errno::EPERM),
    );
    expect(
        r,
        "alloc_unbound in domain 0",
        event::alloc_unbound_in(0, me).map(|_| ()),
        Err(Errno::EPERM),
    );
    expect(
        r,
        "bind_interdomain to domain 77 (none)",
        event::bind_interdomain_raw(77, 1).map(|_| ()),
        Err(Errno::ESRCH),
    );
    println!("VIRQs:");
    expect(
        r,
        "bind VIRQ_TIMER again",
        event::bind_virq(VIRQ_TIMER, None).map(|_| ()),
        Err(Errno::EEXIST),
    );
    expect(
        r,
        "bind VIRQ 99",
        event::bind_virq(99, None).map(|_| ()),
        einval,
    );
    expect(
        r,
        "bind VIRQ NR_VIRQS",
        event::bind_virq(NR_VIRQS, None).map(|_| ()),
        einval,
    );
    println!("close one end of a loopback channel:");
    if let Some((a, b)) = loopback(r) {
        match event::status(DOMID_SELF, a) {
            Ok(s) => check(
                r,
                &alloc::format!(
                    "a is connected to b (status {}, remote port {})",
                    s.status,
                    s.u[1]
                ),
                s.status == EVTCHNSTAT_INTERDOMAIN && s.u[1] == b,
            ),
            Err(e) => check(r, &alloc::format!("status(a): {e}"), false),
        };
        expect(r, "close b", event::close(b), Ok(()));
        match event::status(DOMID_SELF, a) {
            Ok(s) => check(
                r,
                &alloc::format!(
                    "a is unbound (status {}, for domain {})",
                    s.status,
                    s.u[0] & 0xffff
                ),
                s.status == EVTCHNSTAT_UNBOUND && s.u[0] & 0xffff == u32::from(me),
            ),
            Err(e) => check(r, &alloc::format!("status(a): {e}"), false),
        };
        expect(r, "send on the closed b", event::send(b), einval);
        expect(r, "close b twice", event::close_raw(b), einval);
        match event::status(DOMID_SELF, b) {
            Ok(s) => {
                check(
                    r,
                    &alloc::format!("b is closed (status {})", s.status),
                    s.status == EVTCHNSTAT_CLOSED,
                );
            }
            Err(e) => println!("  info status of the closed b: {e}"),
        }
        let _ = event::close(a);
    }
    expect(r, "tell domain 0: done", event::send(coord), Ok(()));
    let deadline = now() + 20 * NS_PER_SEC;
    let mut last = None;
    while now() < deadline {
        match event::status(DOMID_SELF, coord) {
            Ok(s) if s.status == EVTCHNSTAT_UNBOUND => {
                last = Some(s);
                break;
            }
            other => last = other.ok(),
        }
        let _ = time::sleep(2 * NS_PER_MS);
    }
    check(
        r,
        &alloc::format!(
            "domain 0 closed its end: this end is unbound (status {:?}, remote domain {:?})",
            last.map(|s| s.status),
            last.map(|s| s.u[0] & 0xffff)
        ),
        last.is_some_and(|s| s.status == EVTCHNSTAT_UNBOUND && s.u[0] & 0xffff == 0),
    );
    let _ = event::close(coord);
}
