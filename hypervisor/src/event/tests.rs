//! Event-channel tests through the whole pure path: argument bytes → `event_channel_op` → effects applied
//! to fake shared_info pages → a simulated guest upcall handler.

use abi::errno::Errno;
use abi::event_channel::*;
use abi::xen::DOMID_SELF;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::bits::{self, EventBits, SharedInfoPage, guest};
use super::channel::{EventSystem, MAX_PORTS, PortState};
use super::op::{self, Effect};
use crate::domain::state::MAX_DOMAINS;

/// Domains 0..4 exist; every domain has a fake shared_info page.
struct World {
    sys: Box<EventSystem>,
    pages: Vec<Box<[u8; 4096]>>,
    kicks: [u32; MAX_DOMAINS],
    exists: u8,
}

impl World {
    fn new() -> World {
        World {
            sys: Box::new(EventSystem::new()),
            pages: (0..MAX_DOMAINS).map(|_| Box::new([0u8; 4096])).collect(),
            kicks: [0; MAX_DOMAINS],
            exists: 0b1111,
        }
    }

    /// Run `cmd` for `caller` with argument `arg` as the hypercall would: copy the reply back, apply the
    /// effect, count kicks.
    fn op<T: IntoBytes + FromBytes + Immutable + Copy>(
        &mut self,
        caller: u16,
        cmd: u64,
        arg: T,
    ) -> Result<T, Errno> {
        let exists = self.exists;
        let out = op::event_channel_op(&mut self.sys, caller, cmd, arg.as_bytes(), |d| {
            d < 8 && exists & 1 << d != 0
        })?;
        let mut arg = arg;
        if let Some(r) = out.reply {
            arg = T::read_from_bytes(r.as_bytes()).unwrap();
        }
        if let Some(e) = out.effect {
            let mut b = SharedInfoPage::new(&mut self.pages[e.dom() as usize]);
            if e.apply(&mut b, |_| false) {
                self.kicks[e.dom() as usize] += 1;
            }
        }
        Ok(arg)
    }

    fn alloc_unbound(&mut self, caller: u16, remote: u16) -> Result<u32, Errno> {
        let a = EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: remote,
            port: 0,
        };
        self.op(caller, EVTCHNOP_ALLOC_UNBOUND, a).map(|a| a.port)
    }

    fn bind(&mut self, caller: u16, remote: u16, port: u32) -> Result<u32, Errno> {
        let a = EvtchnBindInterdomain {
            remote_dom: remote,
            remote_port: port,
            ..Default::default()
        };
        self.op(caller, EVTCHNOP_BIND_INTERDOMAIN, a)
            .map(|a| a.local_port)
    }

    /// A connected pair: (a's port, b's port).
    fn pair(&mut self, a: u16, b: u16) -> (u32, u32) {
        let pa = self.alloc_unbound(a, b).unwrap();
        let pb = self.bind(b, a, pa).unwrap();
        (pa, pb)
    }

    fn send(&mut self, caller: u16, port: u32) -> Result<(), Errno> {
        self.op(caller, EVTCHNOP_SEND, EvtchnSend { port })
            .map(drop)
    }

    fn close(&mut self, caller: u16, port: u32) -> Result<(), Errno> {
        self.op(caller, EVTCHNOP_CLOSE, EvtchnClose { port })
            .map(drop)
    }

    fn unmask(&mut self, caller: u16, port: u32) -> Result<(), Errno> {
        self.op(caller, EVTCHNOP_UNMASK, EvtchnUnmask { port })
            .map(drop)
    }

    fn virq(&mut self, caller: u16, virq: u32, vcpu: u32) -> Result<u32, Errno> {
        let a = EvtchnBindVirq {
            virq,
            vcpu,
            port: 0,
        };
        self.op(caller, EVTCHNOP_BIND_VIRQ, a).map(|a| a.port)
    }

    fn status(&mut self, caller: u16, dom: u16, port: u32) -> Result<EvtchnStatus, Errno> {
        let a = EvtchnStatus {
            dom,
            port,
            ..Default::default()
        };
        self.op(caller, EVTCHNOP_STATUS, a)
    }

    /// The guest's upcall handler on `dom`, if an upcall is deliverable: the ports it handled.
    fn upcall(&mut self, dom: u16) -> Vec<u32> {
        let mut got = vec![];
        guest::upcall(&mut self.pages[dom as usize], |p| got.push(p));
        got
    }
}

#[test]
fn ping_pong_10000_round_trips_none_lost() {
    let mut w = World::new();
    let (p1, p2) = w.pair(1, 2);
    assert_ne!((p1, p2), (0, 0));
    let (mut got1, mut got2) = (0, 0);
    for i in 0..10_000u32 {
        // Some rounds with dom 2's events disabled (virtual IF clear) or its port masked.
        let disabled = i % 7 == 3;
        let masked = i % 13 == 5;
        guest::set_upcall_mask(&mut w.pages[2], disabled);
        guest::set_mask(&mut w.pages[2], p2, masked);
        w.send(1, p1).unwrap();
        if disabled || masked {
            assert!(w.upcall(2).is_empty(), "round {i}: nothing delivered yet");
            assert!(SharedInfoPage::new(&mut w.pages[2]).is_pending(p2));
            if masked {
                w.unmask(2, p2).unwrap();
            }
            guest::set_upcall_mask(&mut w.pages[2], false);
        }
        let r = w.upcall(2);
        assert_eq!(r, [p2], "round {i}");
        got2 += r.len();
        w.send(2, p2).unwrap();
        let r = w.upcall(1);
        assert_eq!(r, [p1], "round {i}");
        got1 += r.len();
    }
    assert_eq!((got1, got2), (10_000, 10_000));
    // Every send found the other side idle, so every one kicked (masked rounds kicked at unmask).
    assert_eq!((w.kicks[1], w.kicks[2]), (10_000, 10_000));
    w.sys.check().unwrap();
}

#[test]
fn bursts_coalesce_but_the_last_event_is_never_lost() {
    let mut w = World::new();
    let (p1, p2) = w.pair(1, 2);
    guest::set_upcall_mask(&mut w.pages[2], true);
    for _ in 0..100 {
        w.send(1, p1).unwrap();
    }
    assert_eq!(w.kicks[2], 1, "only the first send raised the upcall");
    guest::set_upcall_mask(&mut w.pages[2], false);
    assert_eq!(w.upcall(2), [p2]);
    w.send(1, p1).unwrap();
    assert_eq!(
        w.upcall(2),
        [p2],
        "a send after the handler cleared the bit is seen"
    );
}

#[test]
fn masked_events_are_delivered_after_unmask() {
    let mut w = World::new();
    let (p1, p2) = w.pair(1, 2);
    let ipi = w
        .op(2, EVTCHNOP_BIND_IPI, EvtchnBindIpi { vcpu: 0, port: 0 })
        .unwrap()
        .port;
    guest::set_mask(&mut w.pages[2], p2, true);
    guest::set_mask(&mut w.pages[2], ipi, true);
    w.send(1, p1).unwrap();
    w.send(2, ipi).unwrap();
    assert!(w.upcall(2).is_empty());
    assert_eq!(w.kicks[2], 0);
    w.unmask(2, ipi).unwrap();
    assert_eq!(w.kicks[2], 1);
    assert_eq!(w.upcall(2), [ipi]);
    w.unmask(2, p2).unwrap();
    assert_eq!(w.upcall(2), [p2]);
    assert_eq!(w.kicks[2], 2);
}

#[test]
fn another_domains_ports_cannot_be_used() {
    let mut w = World::new();
    let (p1, _) = w.pair(1, 2);
    let v1 = w.virq(1, VIRQ_TIMER, 0).unwrap();
    let u1 = w.alloc_unbound(1, 2).unwrap();
    guest::set_mask(&mut w.pages[1], u1, true);
    // Domain 3 owns only port 1.
    let p3 = w.alloc_unbound(3, 3).unwrap();
    assert_eq!(p3, 1);
    let sys_before = w.sys.clone();
    let page1 = w.pages[1].clone();
    for port in [p1, v1, u1] {
        if port == p3 {
            continue;
        }
        assert_eq!(w.send(3, port), Err(Errno::EINVAL), "send on {port}");
        assert_eq!(w.close(3, port), Err(Errno::EINVAL), "close {port}");
        // Unmask only ever touches the caller's own page.
        w.unmask(3, port).unwrap();
    }
    assert_eq!(w.sys, sys_before);
    assert_eq!(w.pages[1], page1, "domain 1's bits are untouched");
    // Naming another domain's table, or binding a port not offered to the caller.
    assert_eq!(w.status(3, 1, p1), Err(Errno::EPERM));
    let a = EvtchnAllocUnbound {
        dom: 1,
        remote_dom: 3,
        port: 0,
    };
    assert_eq!(w.op(3, EVTCHNOP_ALLOC_UNBOUND, a), Err(Errno::EPERM));
    assert_eq!(w.bind(3, 1, u1), Err(Errno::EINVAL), "offered to 2, not 3");
    assert_eq!(w.bind(3, 1, p1), Err(Errno::EINVAL), "already connected");
    assert_eq!(w.bind(3, 1, v1), Err(Errno::EINVAL));
    let r = EvtchnReset { dom: 1 };
    assert_eq!(w.op(3, EVTCHNOP_RESET, r), Err(Errno::EPERM));
    assert_eq!(w.sys, sys_before);
}

#[test]
fn out_of_range_ports_are_einval() {
    let mut w = World::new();
    w.pair(1, 2);
    let before = w.sys.clone();
    for port in [MAX_PORTS as u32, 1025, 4095, 4096, 4097, 1 << 31, u32::MAX] {
        assert_eq!(w.send(1, port), Err(Errno::EINVAL), "{port}");
        assert_eq!(w.close(1, port), Err(Errno::EINVAL), "{port}");
        assert_eq!(w.unmask(1, port), Err(Errno::EINVAL), "{port}");
        assert_eq!(w.status(1, DOMID_SELF, port), Err(Errno::EINVAL), "{port}");
        assert_eq!(w.bind(2, 1, port), Err(Errno::EINVAL), "{port}");
        let bv = EvtchnBindVcpu { port, vcpu: 0 };
        assert_eq!(w.op(1, EVTCHNOP_BIND_VCPU, bv), Err(Errno::EINVAL));
    }
    // Port 0 is reserved: never bound, not usable, reported closed.
    assert_eq!(w.send(1, 0), Err(Errno::EINVAL));
    assert_eq!(w.close(1, 0), Err(Errno::EINVAL));
    assert_eq!(w.bind(2, 1, 0), Err(Errno::EINVAL));
    assert_eq!(
        w.status(1, DOMID_SELF, 0).unwrap().status,
        EVTCHNSTAT_CLOSED
    );
    assert_eq!(w.sys, before);
}

#[test]
fn closing_one_end_leaves_the_other_unbound() {
    let mut w = World::new();
    let (p1, p2) = w.pair(1, 2);
    let s = w.status(1, DOMID_SELF, p1).unwrap();
    assert_eq!(
        (s.status, s.vcpu, s.u),
        (EVTCHNSTAT_INTERDOMAIN, 0, [2, p2])
    );
    // A pending bit of the closed port is cleared.
    w.send(2, p2).unwrap();
    w.close(1, p1).unwrap();
    assert!(!SharedInfoPage::new(&mut w.pages[1]).is_pending(p1));
    assert_eq!(w.sys.state(2, p2), Some(PortState::Unbound { remote: 1 }));
    let s = w.status(2, 2, p2).unwrap();
    assert_eq!((s.status, s.u), (EVTCHNSTAT_UNBOUND, [1, 0]));
    assert_eq!(w.status(1, 1, p1).unwrap().status, EVTCHNSTAT_CLOSED);
    // Sending on the surviving end is silently dropped; the closed end is gone.
    w.send(2, p2).unwrap();
    assert!(w.upcall(1).is_empty());
    assert_eq!(w.send(1, p1), Err(Errno::EINVAL));
    assert_eq!(w.close(1, p1), Err(Errno::EINVAL));
    // The closer may connect again.
    let q1 = w.bind(1, 2, p2).unwrap();
    w.send(2, p2).unwrap();
    assert_eq!(w.upcall(1), [q1]);
    // Loopback pairs work the same within one domain.
    let (a, b) = w.pair(3, 3);
    assert_ne!(a, b);
    w.send(3, a).unwrap();
    assert_eq!(w.upcall(3), [b]);
    w.close(3, b).unwrap();
    assert_eq!(w.sys.state(3, a), Some(PortState::Unbound { remote: 3 }));
    w.sys.check().unwrap();
}

#[test]
fn virqs() {
    let mut w = World::new();
    let t = w.virq(1, VIRQ_TIMER, 0).unwrap();
    assert_eq!(w.virq(1, VIRQ_TIMER, 0), Err(Errno::EEXIST));
    assert_eq!(w.virq(1, NR_VIRQS, 0), Err(Errno::EINVAL));
    assert_eq!(w.virq(1, u32::MAX, 0), Err(Errno::EINVAL));
    assert_eq!(w.virq(1, VIRQ_DEBUG, 1), Err(Errno::ENOENT));
    assert_eq!(
        w.virq(1, VIRQ_CONSOLE, 1),
        Err(Errno::EINVAL),
        "global VIRQ"
    );
    assert_eq!(w.sys.virq_port(1, VIRQ_TIMER), Some(t));
    assert_eq!(w.sys.virq_port(2, VIRQ_TIMER), None);
    assert_eq!(w.sys.virq_port(9, VIRQ_TIMER), None);
    assert_eq!(w.sys.virq_port(1, 1000), None);
    let s = w.status(1, DOMID_SELF, t).unwrap();
    assert_eq!((s.status, s.u[0]), (EVTCHNSTAT_VIRQ, VIRQ_TIMER));
    assert_eq!(
        w.send(1, t),
        Err(Errno::EINVAL),
        "VIRQ ports are not sent on"
    );
    // The hypervisor raises it.
    let mut b = SharedInfoPage::new(&mut w.pages[1]);
    assert!(super::raise_virq(&w.sys, 1, VIRQ_TIMER, &mut b, |_| false));
    assert!(!super::raise_virq(&w.sys, 1, VIRQ_CONSOLE, &mut b, |_| {
        true
    }));
    assert_eq!(w.upcall(1), [t]);
    // Rebinding works after close.
    w.close(1, t).unwrap();
    assert_eq!(w.sys.virq_port(1, VIRQ_TIMER), None);
    let t2 = w.virq(1, VIRQ_TIMER, 0).unwrap();
    assert_eq!(w.sys.virq_port(1, VIRQ_TIMER), Some(t2));
    // bind_vcpu: vCPU 0 is fine for a global VIRQ, not for a per-vCPU one.
    let c = w.virq(1, VIRQ_CONSOLE, 0).unwrap();
    let bv = |port, vcpu| EvtchnBindVcpu { port, vcpu };
    assert_eq!(w.op(1, EVTCHNOP_BIND_VCPU, bv(c, 0)), Ok(bv(c, 0)));
    assert_eq!(w.op(1, EVTCHNOP_BIND_VCPU, bv(c, 1)), Err(Errno::ENOENT));
    assert_eq!(w.op(1, EVTCHNOP_BIND_VCPU, bv(t2, 0)), Err(Errno::EINVAL));
    w.sys.check().unwrap();
}

#[test]
fn ipis_and_bind_checks() {
    let mut w = World::new();
    let ipi = |vcpu| EvtchnBindIpi { vcpu, port: 0 };
    assert_eq!(w.op(1, EVTCHNOP_BIND_IPI, ipi(1)), Err(Errno::ENOENT));
    let p = w.op(1, EVTCHNOP_BIND_IPI, ipi(0)).unwrap().port;
    assert_eq!(w.status(1, 1, p).unwrap().status, EVTCHNSTAT_IPI);
    w.send(1, p).unwrap();
    assert_eq!(w.upcall(1), [p]);
    // Remote domains must exist.
    assert_eq!(w.alloc_unbound(1, 5), Err(Errno::ESRCH));
    assert_eq!(w.alloc_unbound(1, 0x7FF4), Err(Errno::ESRCH));
    assert_eq!(w.alloc_unbound(1, u16::MAX), Err(Errno::ESRCH));
    assert_eq!(w.bind(1, 6, 1), Err(Errno::ESRCH));
    let u = w.alloc_unbound(1, DOMID_SELF).unwrap();
    assert_eq!(w.sys.state(1, u), Some(PortState::Unbound { remote: 1 }));
    // A caller beyond the table gets an error, not a panic.
    assert_eq!(w.alloc_unbound(200, 1), Err(Errno::ESRCH));
    assert_eq!(w.send(u16::MAX, 1), Err(Errno::ESRCH));
}

#[test]
fn exhaustion_is_enospc() {
    let mut w = World::new();
    for want in 1..MAX_PORTS as u32 {
        assert_eq!(w.alloc_unbound(1, 2), Ok(want));
    }
    assert_eq!(w.alloc_unbound(1, 2), Err(Errno::ENOSPC));
    assert_eq!(w.virq(1, VIRQ_TIMER, 0), Err(Errno::ENOSPC));
    assert_eq!(w.bind(1, 2, 0), Err(Errno::EINVAL));
    w.close(1, 500).unwrap();
    assert_eq!(w.alloc_unbound(1, 2), Ok(500));
}

#[test]
fn reset_domain_leaves_peers_consistent() {
    let mut w = World::new();
    let (_, b2) = w.pair(1, 2);
    let (a3, b3) = w.pair(3, 1);
    let (l1, l2) = w.pair(1, 1);
    w.virq(1, VIRQ_TIMER, 0).unwrap();
    w.alloc_unbound(2, 1).unwrap();
    w.sys.reset_domain(1);
    w.sys.check().unwrap();
    assert_eq!(w.sys.table(1).unwrap().bound().count(), 0);
    assert_eq!(w.sys.state(1, l1), Some(PortState::Free));
    assert_eq!(w.sys.state(1, l2), Some(PortState::Free));
    assert_eq!(w.sys.state(2, b2), Some(PortState::Unbound { remote: 1 }));
    assert_eq!(w.sys.state(3, a3), Some(PortState::Unbound { remote: 1 }));
    assert_eq!(w.sys.virq_port(1, VIRQ_TIMER), None);
    let _ = b3;
    // The peers still work (sends are dropped) and the domain can come back and reconnect.
    w.send(2, b2).unwrap();
    let n = w.bind(1, 2, b2).unwrap();
    w.send(2, b2).unwrap();
    assert_eq!(w.upcall(1), [n]);
    // EVTCHNOP_reset on itself does the same and clears its pending bits.
    w.op(1, EVTCHNOP_RESET, EvtchnReset { dom: DOMID_SELF })
        .unwrap();
    assert!(!SharedInfoPage::new(&mut w.pages[1]).is_pending(n));
    assert_eq!(w.sys.state(2, b2), Some(PortState::Unbound { remote: 1 }));
    w.sys.reset_domain(100);
    w.sys.check().unwrap();
}

#[test]
fn decode_sizes_and_unknown_commands() {
    for cmd in [EVTCHNOP_BIND_PIRQ, 11, 12, 13, 14, 1 << 32, u64::MAX] {
        assert_eq!(op::arg_size(cmd), Err(Errno::ENOSYS));
        assert_eq!(op::decode(cmd, &[0; 24]), Err(Errno::ENOSYS));
    }
    let sizes = [
        (0, 12),
        (1, 12),
        (3, 4),
        (4, 4),
        (5, 24),
        (6, 8),
        (7, 8),
        (8, 8),
        (9, 4),
        (10, 2),
    ];
    for (cmd, size) in sizes {
        assert_eq!(op::arg_size(cmd), Ok(size));
        assert!(op::decode(cmd, &[0; 24][..size]).is_ok());
        assert_eq!(op::decode(cmd, &[0; 24][..size - 1]), Err(Errno::EINVAL));
        assert_eq!(op::decode(cmd, &[0; 25][..size + 1]), Err(Errno::EINVAL));
        let mut sys = EventSystem::new();
        let r = op::event_channel_op(&mut sys, 1, cmd, &[0; 24][..size - 1], |_| true);
        assert_eq!(r, Err(Errno::EFAULT));
    }
    // The reply is the whole structure with the OUT field at Xen's offset; padding is preserved.
    let mut sys = EventSystem::new();
    let arg = [0xf0, 0x7f, 1, 0, 0xee, 0xee, 0xee, 0xee];
    let out = op::event_channel_op(&mut sys, 1, EVTCHNOP_ALLOC_UNBOUND, &arg, |_| true).unwrap();
    assert_eq!(
        out.reply.unwrap().as_bytes(),
        [0xf0, 0x7f, 1, 0, 1, 0, 0, 0]
    );
    assert_eq!(out.effect, None);
    let send = op::event_channel_op(&mut sys, 1, EVTCHNOP_SEND, &[1, 0, 0, 0], |_| true);
    assert_eq!(send.unwrap().reply, None, "unbound: dropped, nothing to do");
    let out = op::event_channel_op(&mut sys, 1, EVTCHNOP_UNMASK, &[1, 0, 0, 0], |_| true);
    assert_eq!(
        out.unwrap().effect,
        Some(Effect::Unmask { dom: 1, port: 1 })
    );
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_operation_sequences_keep_the_invariants() {
    const DOMS: [u16; 7] = [0, 1, 2, 3, 5, DOMID_SELF, 0x7FFF];
    const PORTS: [u32; 6] = [0, 1023, 1024, 4096, u32::MAX, 1 << 16];
    for seed in 1..=20u64 {
        let mut w = World::new();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for step in 0..3_000 {
            let caller = rng.below(5) as u16; // 4 is a caller whose domain does not exist
            let dom = DOMS[rng.below(DOMS.len() as u64) as usize];
            let port = if rng.below(8) == 0 {
                PORTS[rng.below(PORTS.len() as u64) as usize]
            } else {
                rng.below(10) as u32
            };
            let before = w.sys.clone();
            let r = match rng.below(10) {
                0 => w.alloc_unbound(caller, dom).map(drop),
                1 => w.bind(caller, dom, port).map(drop),
                2 => w
                    .virq(caller, rng.below(26) as u32, rng.below(3) as u32)
                    .map(drop),
                3 => w
                    .op(
                        caller,
                        EVTCHNOP_BIND_IPI,
                        EvtchnBindIpi { vcpu: 0, port: 0 },
                    )
                    .map(drop),
                4 => w.close(caller, port),
                5 => {
                    // Whatever a send marks pending is the other end of the pair, or the IPI itself.
                    if let Ok(Some((d, p))) = w.sys.send(caller, port) {
                        match w.sys.state(caller, port).unwrap() {
                            PortState::Interdomain { .. } => assert_eq!(
                                w.sys.state(d, p),
                                Some(PortState::Interdomain {
                                    remote: caller,
                                    remote_port: port
                                })
                            ),
                            s => assert_eq!((s, d, p), (PortState::Ipi, caller, port)),
                        }
                    }
                    w.send(caller, port)
                }
                6 => w.status(caller, dom, port).map(drop),
                7 => w.unmask(caller, port),
                8 if rng.below(20) == 0 => {
                    w.sys.reset_domain(dom);
                    Ok(())
                }
                _ => {
                    let a = EvtchnBindVcpu { port, vcpu: 0 };
                    w.op(caller, EVTCHNOP_BIND_VCPU, a).map(drop)
                }
            };
            if r.is_err() {
                assert_eq!(
                    w.sys, before,
                    "seed {seed} step {step}: a failed op changed state"
                );
            }
            w.sys
                .check()
                .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            // Drain upcalls now and then, as guests would.
            if step % 17 == 0 {
                for d in 0..4 {
                    w.upcall(d);
                }
            }
        }
    }
}

#[test]
fn effect_application_and_kicks() {
    let mut page = Box::new([0u8; 4096]);
    let mut b = SharedInfoPage::new(&mut page);
    assert!(Effect::SetPending { dom: 1, port: 5 }.apply(&mut b, |_| false));
    assert!(!Effect::SetPending { dom: 1, port: 5 }.apply(&mut b, |_| false));
    assert!(!Effect::ClearPending { dom: 1, port: 5 }.apply(&mut b, |_| false));
    assert!(!b.is_pending(5));
    b.test_and_set_pending(6);
    assert!(!Effect::ClearAllPending { dom: 1 }.apply(&mut b, |_| false));
    assert!(!b.is_pending(6));
    assert!(
        bits::upcall_deliverable(&b),
        "upcall_pending stays for the guest to clear"
    );
}

/// `SCHEDOP_poll` waits for a port's pending bit whatever its mask: a VIRQ on a masked, polled port wakes
/// the poller exactly as a send does (one rule, `mark_pending`), while a masked port nobody polls does not.
#[test]
fn polled_masked_ports_wake_for_virqs_and_sends() {
    let mut w = World::new();
    let t = w.virq(1, VIRQ_TIMER, 0).unwrap();
    let (_, b) = w.pair(1, 2);
    guest::set_mask(&mut w.pages[2], b, true);
    guest::set_mask(&mut w.pages[1], t, true);
    let polls_t = |p| p == t;
    // Masked, not polled: pending, no wake.
    let mut bits = SharedInfoPage::new(&mut w.pages[1]);
    assert!(!super::raise_virq(&w.sys, 1, VIRQ_TIMER, &mut bits, |_| {
        false
    }));
    assert!(bits.is_pending(t) && !bits.upcall_pending());
    bits.clear_pending(t);
    // Masked and polled: wake (the poll's answer), still no upcall.
    let mut asked = None;
    let wake = super::raise_virq(&w.sys, 1, VIRQ_TIMER, &mut bits, |p| {
        asked = Some(p);
        polls_t(p)
    });
    assert!(wake && asked == Some(t));
    assert!(bits.is_pending(t) && !bits.upcall_pending());
    // Polling another port does not wake for this one.
    bits.clear_pending(t);
    assert!(!super::raise_virq(&w.sys, 1, VIRQ_TIMER, &mut bits, |p| p == t + 1));
    // The send path: the same rule through Effect::apply.
    let send = Effect::SetPending { dom: 2, port: b };
    let mut bits2 = SharedInfoPage::new(&mut w.pages[2]);
    assert!(!send.apply(&mut bits2, |_| false));
    bits2.clear_pending(b);
    assert!(send.apply(&mut bits2, |p| p == b));
    // Unmasked, not polled: the ordinary kick.
    SharedInfoPage::new(&mut w.pages[1]).clear_pending(t);
    guest::set_mask(&mut w.pages[1], t, false);
    let mut bits = SharedInfoPage::new(&mut w.pages[1]);
    assert!(super::raise_virq(&w.sys, 1, VIRQ_TIMER, &mut bits, |_| {
        false
    }));
    assert_eq!(w.upcall(1), [t]);
}

#[test]
fn restore_binds_only_local_kinds_on_free_ports() {
    let mut sys = Box::new(EventSystem::new());
    sys.restore_local(3, 7, PortState::Virq { virq: VIRQ_TIMER })
        .unwrap();
    sys.restore_local(3, 9, PortState::Ipi).unwrap();
    assert_eq!(sys.virq_port(3, VIRQ_TIMER), Some(7));
    let bad = [
        (7, PortState::Ipi),                       // in use
        (8, PortState::Virq { virq: VIRQ_TIMER }), // VIRQ bound already
        (8, PortState::Virq { virq: NR_VIRQS }),   // no such VIRQ
        (0, PortState::Ipi),                       // port 0
        (MAX_PORTS as u32, PortState::Ipi),        // beyond the table
        (8, PortState::Unbound { remote: 0 }),     // not local
        (
            8,
            PortState::Interdomain {
                remote: 0,
                remote_port: 1,
            },
        ),
    ];
    for (port, st) in bad {
        assert_eq!(
            sys.restore_local(3, port, st),
            Err(Errno::EINVAL),
            "{port} {st:?}"
        );
    }
    assert_eq!(
        sys.restore_local(MAX_DOMAINS as u16, 8, PortState::Ipi),
        Err(Errno::ESRCH)
    );
    sys.check().unwrap();
    // A new bind takes the lowest free port around the restored ones.
    assert_eq!(sys.bind_ipi(3, 0), Ok(1));
}
