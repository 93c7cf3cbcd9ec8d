//! Unit tests of the scheduling policy (`sched_policy.rs`), on simulated guests: shares by weight,
//! spinners and sleepers, CPU time, wake-ups and deadlines, yield, periodic timers, pause, and hostile
//! arguments.

use super::*;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;

/// What a simulated guest does when it runs.
#[derive(Clone, Copy)]
enum Guest {
    /// Computes forever (events masked or not: it never enters the hypervisor by itself).
    Spin,
    /// Runs `.0` ns, then sets its timer `.1` ns ahead and blocks.
    Sleepy(u64, u64),
}

struct Sim {
    p: SchedPolicy,
    guests: Vec<Guest>,
    now: u64,
    ran: Vec<u64>,
    left: Vec<u64>,
    /// Longest stretch one vCPU held the CPU while another was runnable, and the longest
    /// wake-to-run latency of a Sleepy guest.
    longest_hold: u64,
    longest_latency: u64,
}

impl Sim {
    fn new(weights: &[u16], guests: &[Guest]) -> Sim {
        let mut p = SchedPolicy::new();
        for (v, &w) in weights.iter().enumerate() {
            p.start(v, w).unwrap();
        }
        let left = guests
            .iter()
            .map(|g| match g {
                Guest::Spin => u64::MAX,
                Guest::Sleepy(run, _) => *run,
            })
            .collect();
        Sim {
            p,
            guests: guests.to_vec(),
            now: 0,
            ran: vec![0; guests.len()],
            left,
            longest_hold: 0,
            longest_latency: 0,
        }
    }

    fn others_runnable(&self, v: usize) -> bool {
        (0..NR_VCPUS).any(|u| u != v && self.p.state(u) == Some(RunState::Runnable))
    }

    fn run(&mut self, until: u64) {
        let mut woke_at = vec![None; self.guests.len()];
        let mut hold: Option<(usize, u64)> = None;
        while self.now < until {
            // The timer interrupt: VIRQ_TIMER for every expired guest timer, whose kick wakes it.
            for v in self.p.timers_due(self.now) {
                if self.p.wake(v) {
                    woke_at[v] = Some(self.now);
                }
            }
            let Some(v) = self.p.pick(self.now) else {
                self.now = self
                    .p
                    .next_deadline(self.now)
                    .expect("idle with nothing to wait for");
                hold = None;
                continue;
            };
            if let Some(t) = woke_at[v].take() {
                self.longest_latency = self.longest_latency.max(self.now - t);
            }
            let contended = self.others_runnable(v);
            let deadline = self.p.next_deadline(self.now);
            if contended {
                let d = deadline.expect("contended: a slice timer");
                assert!(d <= self.now + self.p.slice_ns(), "run beyond a slice");
            }
            let stop = deadline
                .unwrap_or(until)
                .min(until)
                .min(self.now.saturating_add(self.left[v]));
            let ran = stop - self.now;
            match hold {
                Some((h, start)) if h == v => {
                    if contended {
                        self.longest_hold = self.longest_hold.max(stop - start)
                    }
                }
                _ => hold = Some((v, self.now)),
            }
            self.ran[v] += ran;
            self.now = stop;
            if let Guest::Sleepy(run, sleep) = self.guests[v] {
                self.left[v] -= ran;
                if self.left[v] == 0 {
                    self.left[v] = run;
                    self.p.set_singleshot(v, Some(self.now + sleep));
                    assert!(self.p.block(v, None));
                    hold = None;
                }
            }
        }
    }

    fn share(&self, v: usize) -> f64 {
        self.ran[v] as f64 / self.ran.iter().sum::<u64>() as f64
    }
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 0.05 * want
}

#[test]
fn a_set_knows_its_single_member() {
    let set = |vs: &[usize]| {
        let mut s = VcpuSet::EMPTY;
        vs.iter().for_each(|&v| s.insert(v));
        s
    };
    assert_eq!(set(&[]).single(), None);
    for v in [0, 1, 5, 63, 64, 65, NR_VCPUS - 1] {
        assert_eq!(set(&[v]).single(), Some(v), "{v}");
    }
    for vs in [
        &[0, 1][..],
        &[3, 64],
        &[64, 100],
        &[0, NR_VCPUS - 1],
        &[2, 5, 9],
    ] {
        assert_eq!(set(vs).single(), None, "{vs:?}");
    }
}

#[test]
fn shares_follow_weights() {
    let mut s = Sim::new(&[256, 512, 256], &[Guest::Spin; 3]);
    s.run(10 * SEC);
    for (v, want) in [(0, 0.25), (1, 0.5), (2, 0.25)] {
        assert!(close(s.share(v), want), "vCPU {v}: {}", s.share(v));
    }
    // Weight 512 may take two slices in a row.
    assert!(s.longest_hold <= 2 * s.p.slice_ns());
}

#[test]
fn shares_follow_weights_with_a_periodic_sleeper() {
    // vCPU 2 wants 2 ms in every 10 ms (less than its 25 %): it gets what it asks for, and the two
    // spinners split the rest 1:2.
    let sleepy = Guest::Sleepy(2 * MS, 8 * MS);
    let mut s = Sim::new(&[256, 512, 256], &[Guest::Spin, Guest::Spin, sleepy]);
    s.run(10 * SEC);
    let (a, b, c) = (s.share(0), s.share(1), s.share(2));
    assert!(close(c, 0.2), "the sleeper got {c}");
    assert!(close(a / (a + b), 1.0 / 3.0), "spinners {a} {b}");
    assert!(s.longest_latency <= s.p.slice_ns());
    // Never idle while someone spins.
    assert_eq!(s.ran.iter().sum::<u64>(), 10 * SEC);
}

#[test]
fn a_spinner_cannot_starve_others() {
    // Equal weights: nobody holds the CPU past one slice (strict rotation), and a woken sleeper
    // runs at once.
    let sleepy = Guest::Sleepy(100_000, MS);
    let mut s = Sim::new(&[256; 3], &[Guest::Spin, Guest::Spin, sleepy]);
    s.run(2 * SEC);
    assert!(s.longest_hold <= s.p.slice_ns());
    assert_eq!(s.longest_latency, 0);
    assert!(close(s.share(0), s.share(1)));
    // The sleeper gets all it asks for: 100 us in every 1.1 ms.
    assert!(close(s.ran[2] as f64, (2 * SEC) as f64 / 11.0));
    // Even a heavy spinner leaves a weight-1 vCPU its (small) share.
    let mut s = Sim::new(&[256, 1], &[Guest::Spin; 2]);
    s.run(100 * SEC);
    assert!(close(s.share(1), 1.0 / 257.0), "{}", s.share(1));
}

#[test]
fn cpu_time_includes_the_running_vcpus_uncharged_time() {
    let mut p = SchedPolicy::new();
    p.start(0, 256).unwrap();
    p.start(1, 512).unwrap();
    assert_eq!(p.cpu_ns_at(0, 0), Some(0));
    assert_eq!(p.pick(MS), Some(0));
    // Running since 1 ms, charged nothing yet: the reading counts the run so far, and charges nothing.
    assert_eq!(p.cpu_ns_at(0, 4 * MS), Some(3 * MS));
    assert_eq!(p.cpu_ns(0), Some(0));
    assert_eq!(p.cpu_ns_at(1, 4 * MS), Some(0), "not on the CPU");
    // A reading before the last charge point adds nothing (no underflow).
    assert_eq!(p.cpu_ns_at(0, 0), Some(0));
    p.yield_now(0);
    assert_eq!(p.pick(6 * MS), Some(1));
    assert_eq!(p.cpu_ns_at(0, 9 * MS), Some(5 * MS), "real ns, not virtual");
    assert_eq!(
        p.cpu_ns_at(1, 9 * MS),
        Some(3 * MS),
        "weight does not scale it"
    );
    p.stop(0);
    assert_eq!(p.cpu_ns_at(0, 20 * MS), Some(5 * MS), "kept after stopping");
    assert_eq!(p.cpu_ns_at(NR_VCPUS, 0), None);
}

/// `wake_by` leaves the policy exactly as `wake` does except for the changed mark, and arming the
/// deadline it returns keeps the timer no later than the policy's next deadline: the new next deadline
/// is never earlier than the earlier of the old one and the returned slice end.
#[test]
fn wake_by_the_running_vcpu_moves_only_its_slice_end() {
    for (timer, wake_at, third) in [
        (None, None, false),
        (Some(3 * MS), None, false),
        (None, Some(2 * MS), true),
        (Some(50 * MS), Some(SEC), true),
    ] {
        let mut p = SchedPolicy::new();
        p.start(0, 256).unwrap();
        p.start(1, 256).unwrap();
        if third {
            p.start(2, 256).unwrap();
            p.block(2, None);
        }
        assert_eq!(p.pick(0), Some(0));
        p.block(1, wake_at);
        p.set_singleshot(0, timer);
        assert_eq!(p.pick(MS), Some(0));
        let now = MS + 10;
        let before = p.next_deadline(now);
        let mut plain = p.clone();
        p.take_changed();
        let d = p
            .wake_by(1, 0)
            .expect("the running vCPU woke a blocked one");
        assert!(!p.changed(), "no policy change to act on");
        plain.wake(1);
        plain.changed = false;
        assert_eq!(p, plain, "the same state as after wake");
        let after = p
            .next_deadline(now)
            .expect("two runnable vCPUs: a slice end");
        let armed = before.map_or(d, |b| b.min(d));
        assert!(
            armed <= after,
            "armed {armed} later than the deadline {after}"
        );
        // Not blocked: nothing; not woken by the running vCPU: a plain wake.
        assert_eq!(p.wake_by(1, 0), None);
        if third {
            p.take_changed();
            assert_eq!(p.wake_by(2, 1), None);
            assert!(p.changed() && p.state(2) == Some(RunState::Runnable));
        }
    }
}

#[test]
fn blocked_vcpus_wake_at_their_deadline_and_cost_nothing() {
    let mut p = SchedPolicy::new();
    p.start(0, 256).unwrap();
    p.start(1, 256).unwrap();
    assert_eq!(p.pick(0), Some(0));
    assert!(p.block(1, Some(5 * MS)));
    // Alone: no slice timer, just the wake-up.
    assert_eq!(p.next_deadline(0), Some(5 * MS));
    assert_eq!(p.pick(3 * MS), Some(0));
    assert!(p.timers_due(5 * MS - 1).woken.is_empty());
    let due = p.timers_due(5 * MS);
    assert!(due.woken.contains(1) && due.timers.is_empty());
    assert_eq!(p.state(1), Some(RunState::Runnable));
    assert_eq!(p.pick(5 * MS), Some(1), "the sleeper is owed time");
    assert_eq!(p.cpu_ns(0), Some(5 * MS));
    assert_eq!(p.cpu_ns(1), Some(0), "blocked: charged nothing");
    // A guest timer with block(None): the timer fires, the hypervisor raises VIRQ_TIMER, the kick wakes.
    assert!(p.block(1, None));
    p.set_singleshot(1, Some(9 * MS));
    assert_eq!(p.pick(6 * MS), Some(0));
    assert_eq!(p.next_deadline(6 * MS), Some(9 * MS));
    let due = p.timers_due(9 * MS);
    assert_eq!(due.collect::<Vec<_>>(), [1]);
    assert_eq!(p.state(1), Some(RunState::Blocked { wake_at: None }));
    assert!(p.wake(1));
    assert!(!p.wake(1), "already awake");
    assert_eq!(p.singleshot(1), None);
    // Everyone blocked: idle until the earliest deadline; nothing at all: no timer.
    assert!(p.block(0, Some(20 * MS)));
    assert!(p.block(1, Some(15 * MS)));
    assert_eq!(p.pick(10 * MS), None);
    assert_eq!(p.next_deadline(10 * MS), Some(15 * MS));
    p.stop(1);
    assert!(!p.block(0, None), "already blocked");
    assert!(p.wake(0));
    assert!(p.block(0, None));
    assert_eq!(p.pick(11 * MS), None);
    assert_eq!(p.next_deadline(11 * MS), None);
}

#[test]
fn sleepers_cannot_bank_credit() {
    let mut p = SchedPolicy::new();
    p.start(0, 256).unwrap();
    p.start(1, 256).unwrap();
    assert!(p.block(1, None));
    assert_eq!(p.pick(0), Some(0));
    // vCPU 0 runs alone for 5 s (one pick at a time, no slice timer).
    assert_eq!(p.pick(5 * SEC), Some(0));
    assert!(p.wake(1));
    assert_eq!(p.vruntime(1), Some(5 * SEC - p.slice_ns()));
    // vCPU 1 gets about one slice of catch-up, not 5 s.
    let mut t = 5 * SEC;
    let mut run1 = 0;
    for _ in 0..4 {
        let v = p.pick(t).unwrap();
        let d = p.next_deadline(t).unwrap();
        if v == 1 {
            run1 += d - t;
        }
        t = d;
    }
    assert!(run1 <= 3 * p.slice_ns(), "{run1}");
}

#[test]
fn yield_hands_over_the_cpu() {
    let mut p = SchedPolicy::new();
    p.start(0, 256).unwrap();
    p.start(1, 256).unwrap();
    p.account(1, 50 * MS);
    assert_eq!(p.pick(0), Some(0));
    assert_eq!(p.pick(MS), Some(0), "inside its slice");
    p.yield_now(0);
    // Yield switches even to a vCPU with more virtual runtime, which gets a slice of its own; at its
    // end the lowest virtual runtime runs again.
    assert_eq!(p.pick(MS), Some(1));
    assert_eq!(p.pick(2 * MS), Some(1));
    assert_eq!(p.pick(11 * MS), Some(0));
    p.yield_now(1);
    assert_eq!(p.pick(12 * MS), Some(0), "only the running vCPU can yield");
    p.stop(1);
    p.yield_now(1);
    assert_eq!(p.pick(13 * MS), Some(0));
    p.yield_now(0);
    assert_eq!(
        p.pick(13 * MS),
        Some(0),
        "nothing else runnable: the yielder runs"
    );
}

#[test]
fn periodic_timers() {
    let mut p = SchedPolicy::new();
    p.start(3, 256).unwrap();
    assert_eq!(p.set_periodic(3, Some(MS - 1), 0), Err(Errno::EINVAL));
    assert_eq!(p.set_periodic(3, Some(u64::MAX), 0), Err(Errno::EINVAL));
    assert_eq!(p.set_periodic(NR_VCPUS, Some(MS), 0), Err(Errno::EINVAL));
    p.set_periodic(3, Some(MS), 0).unwrap();
    assert_eq!(p.pick(0), Some(3));
    assert_eq!(p.next_deadline(0), Some(MS));
    assert!(p.timers_due(MS - 1).timers.is_empty());
    assert!(p.timers_due(MS).timers.contains(3));
    assert_eq!(p.next_deadline(MS), Some(2 * MS));
    // Missed periods coalesce into one expiry.
    assert_eq!(p.timers_due(10 * MS + 5).count(), 1);
    assert_eq!(p.next_deadline(10 * MS + 5), Some(11 * MS));
    p.set_periodic(3, None, 0).unwrap();
    assert_eq!(p.next_deadline(11 * MS), None);
    // A stopped vCPU's timers are gone.
    p.set_singleshot(3, Some(20 * MS));
    p.stop(3);
    assert_eq!(p.next_deadline(0), None);
    assert!(p.timers_due(u64::MAX).timers.is_empty());
}

#[test]
fn hostile_arguments() {
    let mut p = SchedPolicy::new();
    for v in [NR_VCPUS, NR_VCPUS + 100, usize::MAX] {
        assert_eq!(p.start(v, 256), Err(Errno::EINVAL));
        assert_eq!(p.set_weight(v, 1), Err(Errno::EINVAL));
        assert!(!p.block(v, Some(1)) && !p.wake(v));
        p.account(v, u64::MAX);
        p.stop(v);
        p.yield_now(v);
        p.set_singleshot(v, Some(0));
        assert_eq!(p.state(v), None);
    }
    assert_eq!(p.start(0, 0), Err(Errno::EINVAL));
    p.start(0, 1).unwrap();
    p.account(0, u64::MAX);
    p.account(0, u64::MAX);
    assert_eq!(p.vruntime(0), Some(u64::MAX));
    assert_eq!(p.pick(u64::MAX), Some(0));
    assert_eq!(p.pick(0), Some(0), "time going backwards charges nothing");
    assert_eq!(p.next_deadline(0), None);
    assert_eq!(p.set_slice(0), MIN_SLICE_NS);
    assert_eq!(p.set_slice(u64::MAX), MAX_SLICE_NS);
    let mut s = VcpuSet::EMPTY;
    s.insert(7);
    assert!(s.contains(7) && !s.contains(8) && !s.contains(usize::MAX));
}

#[test]
fn a_paused_vcpu_is_never_picked_and_continues_when_unpaused() {
    let mut p = SchedPolicy::new();
    p.start(0, DEFAULT_WEIGHT).unwrap();
    p.start(1, DEFAULT_WEIGHT).unwrap();
    assert_eq!(p.set_paused(5, true), Err(Errno::EINVAL), "a stopped vCPU");
    assert_eq!(p.set_paused(NR_VCPUS, true), Err(Errno::EINVAL));
    p.set_paused(1, true).unwrap();
    assert!(p.paused(1));
    let mut now = 0;
    for _ in 0..20 {
        now += DEFAULT_SLICE_NS;
        assert_eq!(p.pick(now), Some(0));
    }
    // Blocked and woken while paused: still not picked.
    p.set_paused(0, true).unwrap();
    assert_eq!(p.pick(now + 1), None);
    assert_eq!(p.next_deadline(now + 1), None, "nothing to run, no timer");
    p.set_paused(1, false).unwrap();
    assert_eq!(p.pick(now + 2), Some(1));
    p.stop(0);
    assert!(!p.paused(0), "stopping forgets the pause");
}
