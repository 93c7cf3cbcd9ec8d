//! Property test of the scheduling policy's sets: on random sequences of operations, `pick`,
//! `next_deadline`, `decide` (the two fused) and `timers_due` (which visit only the runnable and timed
//! vCPUs) decide exactly as the scans over every vCPU they replaced (kept here as the oracle), and the
//! sets always match the entities.

use proptest::prelude::*;

use super::*;

/// The choice as a scan over every vCPU, in round-robin order after the last one picked.
fn oracle_choose(p: &SchedPolicy) -> Option<usize> {
    let runnable = |v: usize| p.vcpus[v].runnable();
    let others = (0..NR_VCPUS).any(|v| runnable(v) && Some(v) != p.yielded);
    let eligible = |v: usize| runnable(v) && (!others || Some(v) != p.yielded);
    let start = (p.cursor + 1) % NR_VCPUS;
    let mut best: Option<usize> = None;
    for k in 0..NR_VCPUS {
        let v = (start + k) % NR_VCPUS;
        if eligible(v) && best.is_none_or(|b| p.vcpus[v].vruntime < p.vcpus[b].vruntime) {
            best = Some(v);
        }
    }
    best
}

/// `account` with the minimum virtual runtime taken by a scan.
fn oracle_account(p: &mut SchedPolicy, v: usize, ran_ns: u64) {
    let Some(e) = p.vcpus.get_mut(v) else {
        return;
    };
    let weight = u64::from(e.weight.max(1));
    let delta = (ran_ns as u128 * DEFAULT_WEIGHT as u128 / weight as u128).min(u64::MAX as u128);
    e.vruntime = e.vruntime.saturating_add(delta as u64);
    e.cpu_ns = e.cpu_ns.saturating_add(ran_ns);
    let min = p
        .vcpus
        .iter()
        .filter(|e| e.runnable())
        .map(|e| e.vruntime)
        .min();
    if let Some(m) = min {
        p.min_vruntime = p.min_vruntime.max(m);
    }
}

/// `pick` with the oracle's choice and accounting.
fn oracle_pick(p: &mut SchedPolicy, now: u64) -> Option<usize> {
    if let Some(r) = p.running.as_mut() {
        let ran = now.saturating_sub(r.since);
        r.since = r.since.max(now);
        let v = r.vcpu;
        oracle_account(p, v, ran);
    }
    if let Some(r) = p.running
        && !p.resched
        && p.vcpus[r.vcpu].runnable()
        && now < r.slice_end
    {
        return Some(r.vcpu);
    }
    let choice = oracle_choose(p);
    let prev = p.running;
    p.resched = false;
    p.yielded = None;
    p.running = choice.map(|v| Running {
        vcpu: v,
        since: now,
        slice_end: match prev {
            Some(r) if r.vcpu == v && now < r.slice_end => r.slice_end,
            _ => now.saturating_add(p.slice_ns),
        },
    });
    if let Some(v) = choice {
        p.cursor = v;
    }
    choice
}

/// The next deadline as a scan over every vCPU.
fn oracle_next_deadline(p: &SchedPolicy, now: u64) -> Option<u64> {
    let mut deadline: Option<u64> = None;
    let mut consider = |t: u64| deadline = Some(deadline.map_or(t, |d| d.min(t)));
    let any_runnable = p.vcpus.iter().any(Entity::runnable);
    match p.running {
        Some(r) if p.vcpus[r.vcpu].runnable() => {
            let others = (0..NR_VCPUS).any(|v| v != r.vcpu && p.vcpus[v].runnable());
            if others {
                consider(r.slice_end);
            }
        }
        _ if any_runnable => consider(now),
        _ => {}
    }
    for e in p.vcpus.iter().filter(|e| e.state != RunState::Stopped) {
        if let Some(t) = e.singleshot {
            consider(t);
        }
        if let Some(per) = e.periodic {
            consider(per.next);
        }
        if let RunState::Blocked { wake_at: Some(t) } = e.state {
            consider(t);
        }
    }
    deadline
}

/// `timers_due` as a scan over every vCPU.
fn oracle_timers_due(p: &mut SchedPolicy, now: u64) -> Due {
    p.changed = true;
    let mut due = Due::default();
    for v in 0..NR_VCPUS {
        let e = &mut p.vcpus[v];
        if e.state == RunState::Stopped {
            continue;
        }
        if e.singleshot.is_some_and(|t| t <= now) {
            e.singleshot = None;
            due.timers.insert(v);
        }
        if let Some(per) = e.periodic.as_mut().filter(|per| per.next <= now) {
            let missed = (now - per.next) / per.period;
            per.next = per
                .next
                .saturating_add(per.period.saturating_mul(missed.saturating_add(1)));
            due.timers.insert(v);
        }
        if let RunState::Blocked { wake_at: Some(t) } = e.state
            && t <= now
        {
            p.wake(v);
            due.woken.insert(v);
        }
    }
    // The oracle's entities are the truth; its sets are refreshed so the states compare whole.
    for v in 0..NR_VCPUS {
        p.sync(v);
    }
    due
}

/// The sets match the entities.
fn check_sets(p: &SchedPolicy) {
    for (v, e) in p.vcpus.iter().enumerate() {
        assert_eq!(p.runnable.contains(v), e.runnable(), "runnable bit of {v}");
        let timed = e.state != RunState::Stopped
            && (e.singleshot.is_some()
                || e.periodic.is_some()
                || matches!(e.state, RunState::Blocked { wake_at: Some(_) }));
        assert_eq!(p.timed.contains(v), timed, "timed bit of {v}");
    }
}

#[derive(Clone, Debug)]
enum Op {
    Start(usize, u16),
    Stop(usize),
    Pause(usize, bool),
    Block(usize, Option<u64>),
    Wake(usize),
    Yield(usize),
    Singleshot(usize, Option<u64>),
    Periodic(usize, Option<u64>),
    Account(usize, u64),
    TimersDue(u64),
    Pick(u64),
    Decide(u64),
    Slice(u64),
}

/// Mostly a handful of vCPUs (so they interact), sometimes any, sometimes out of range.
fn vcpu() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..6,
        1 => 0usize..NR_VCPUS,
        1 => NR_VCPUS..NR_VCPUS + 3,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0u64..200_000_000;
    prop_oneof![
        3 => (vcpu(), prop_oneof![Just(256u16), 1u16..1024]).prop_map(|(v, w)| Op::Start(v, w)),
        1 => vcpu().prop_map(Op::Stop),
        1 => (vcpu(), any::<bool>()).prop_map(|(v, b)| Op::Pause(v, b)),
        2 => (vcpu(), proptest::option::of(t.clone())).prop_map(|(v, w)| Op::Block(v, w)),
        2 => vcpu().prop_map(Op::Wake),
        3 => vcpu().prop_map(Op::Yield),
        2 => (vcpu(), proptest::option::of(t.clone())).prop_map(|(v, d)| Op::Singleshot(v, d)),
        1 => (vcpu(), proptest::option::of(0u64..30_000_000)).prop_map(|(v, d)| Op::Periodic(v, d)),
        1 => (vcpu(), 0u64..50_000_000).prop_map(|(v, n)| Op::Account(v, n)),
        2 => (0u64..20_000_000).prop_map(Op::TimersDue),
        6 => (0u64..20_000_000).prop_map(Op::Pick),
        4 => (0u64..20_000_000).prop_map(Op::Decide),
        1 => (0u64..2_000_000_000).prop_map(Op::Slice),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Every step leaves the policy in the same state as the oracle, with the same answers.
    #[test]
    fn the_sets_decide_as_the_scans(ops in proptest::collection::vec(op(), 1..120)) {
        let mut p = SchedPolicy::new();
        let mut now = 0u64;
        for op in ops {
            let mut o = p.clone();
            match op {
                Op::Start(v, w) => {
                    prop_assert_eq!(p.start(v, w), o.start(v, w));
                }
                Op::Stop(v) => {
                    p.stop(v);
                    o.stop(v);
                }
                Op::Pause(v, b) => {
                    prop_assert_eq!(p.set_paused(v, b), o.set_paused(v, b));
                }
                Op::Block(v, w) => {
                    let w = w.map(|d| now + d);
                    prop_assert_eq!(p.block(v, w), o.block(v, w));
                }
                Op::Wake(v) => {
                    prop_assert_eq!(p.wake(v), o.wake(v));
                }
                Op::Yield(v) => {
                    p.yield_now(v);
                    o.yield_now(v);
                }
                Op::Singleshot(v, d) => {
                    let d = d.map(|d| now + d);
                    p.set_singleshot(v, d);
                    o.set_singleshot(v, d);
                }
                Op::Periodic(v, per) => {
                    prop_assert_eq!(p.set_periodic(v, per, now), o.set_periodic(v, per, now));
                }
                Op::Account(v, n) => {
                    p.account(v, n);
                    oracle_account(&mut o, v, n);
                }
                Op::TimersDue(d) => {
                    now += d;
                    prop_assert_eq!(p.timers_due(now), oracle_timers_due(&mut o, now));
                }
                Op::Pick(d) => {
                    now += d;
                    prop_assert_eq!(p.pick(now), oracle_pick(&mut o, now));
                }
                Op::Decide(d) => {
                    now += d;
                    let (choice, deadline) = p.decide(now);
                    prop_assert_eq!(choice, oracle_pick(&mut o, now));
                    prop_assert_eq!(deadline, oracle_next_deadline(&o, now));
                }
                Op::Slice(ns) => {
                    prop_assert_eq!(p.set_slice(ns), o.set_slice(ns));
                }
            }
            prop_assert_eq!(&p, &o);
            check_sets(&p);
            prop_assert_eq!(p.next_deadline(now), oracle_next_deadline(&p, now));
        }
    }
}
