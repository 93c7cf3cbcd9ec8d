//! The scheduling policy: weighted fair sharing of one CPU among up to [`NR_VCPUS`] vCPUs (one per domain,
//! indexed by domain id), CFS-style, plus each vCPU's guest timers. Pure: time is passed in (ns of system
//! time), decisions are returned; the hypervisor does the switching and programs the one-shot timer.
//!
//! **Fair share.** Each vCPU has a weight (1..=65535, default 256) and a *virtual runtime* that advances by
//! `ran_ns * 256 / weight` while it runs, so a weight-512 vCPU's advances half as fast and it gets twice the
//! CPU. [`SchedPolicy::pick`] runs the runnable vCPU with the lowest virtual runtime (ties in round-robin
//! order) for at most one slice ([`DEFAULT_SLICE_NS`], bounded by [`MIN_SLICE_NS`]..=[`MAX_SLICE_NS`]); at
//! the slice's end it chooses again, so a spinning vCPU (even one with events masked, which never enters the
//! hypervisor by itself) loses the CPU after one slice whenever another is runnable. A heavier vCPU may be
//! chosen for several slices in a row: that is its share. A vCPU that wakes gets a virtual runtime of at
//! least `min_vruntime - one slice`, so a long sleep cannot be banked as credit, and it preempts the running
//! vCPU at once if its virtual runtime is lower (short wake-to-run latency for event-driven domains).
//! Blocked and stopped vCPUs cost nothing: no accounting, no ticks; with only one runnable vCPU there is no
//! slice timer either.
//!
//! **Timers.** Each vCPU has a single-shot timer (`set_timer_op`, `VCPUOP_set_singleshot_timer`) and a
//! periodic one (`VCPUOP_set_periodic_timer`); when one expires the hypervisor raises `VIRQ_TIMER`, whose
//! kick wakes a blocked vCPU. A blocked vCPU may also have its own `wake_at` (a `SCHEDOP_poll` timeout),
//! at which the policy wakes it itself.
//!
//! **How the hypervisor drives it** (`now` = system time):
//!
//! ```text
//! domain created:          start(d, weight)         domain dead:  stop(d)
//! SCHEDOP_yield:           yield_now(d)
//! SCHEDOP_block:           unless an upcall is pending: block(d, None)
//! SCHEDOP_poll(timeout):   unless a port is pending: block(d, timeout)
//! set_timer_op(t):         set_singleshot(d, pvclock::set_timer_op_deadline(t, now))
//! VCPUOP_*_periodic_timer: set_periodic(d, Some(period) / None, now)
//! an event kicks d:        wake(d)
//! timer interrupt (and on any entry, cheaply): for d in timers_due(now) { raise VIRQ_TIMER for d }
//! before every exit to a guest:
//!     match pick(now) { Some(d) => run d, None => idle (HLT) }
//!     program the one-shot timer for next_deadline(now) (None: no timer needed)
//! ```
//!
//! `pick` charges the previously running vCPU for the time since it was picked, so no separate accounting
//! call is needed; [`SchedPolicy::account`] is for charging time the policy did not see.

use abi::errno::Errno;

use crate::domain::state::MAX_DOMAINS;

/// vCPUs the policy schedules: one per domain.
pub const NR_VCPUS: usize = MAX_DOMAINS;
/// The weight of a vCPU that was given none; also the weight at which virtual time equals real time.
pub const DEFAULT_WEIGHT: u16 = 256;
/// The default time slice: 10 ms.
pub const DEFAULT_SLICE_NS: u64 = 10_000_000;
/// The shortest slice [`SchedPolicy::set_slice`] accepts: 100 µs.
pub const MIN_SLICE_NS: u64 = 100_000;
/// The longest slice [`SchedPolicy::set_slice`] accepts: 1 s.
pub const MAX_SLICE_NS: u64 = 1_000_000_000;
/// The shortest periodic timer period (Xen's: 1 ms).
pub const MIN_PERIOD_NS: u64 = 1_000_000;
/// The longest periodic timer period (Xen's `STIME_DELTA_MAX`-like bound).
pub const MAX_PERIOD_NS: u64 = 1 << 62;

/// A vCPU's scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Wants the CPU (the running vCPU is runnable too).
    Runnable,
    /// Sleeping until woken by an event ([`SchedPolicy::wake`]) or, if set, at `wake_at` (ns).
    Blocked {
        /// Absolute system time at which the policy wakes it (a poll timeout).
        wake_at: Option<u64>,
    },
    /// Not scheduled at all (no domain, shut down, crashed).
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Periodic {
    next: u64,
    period: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entity {
    state: RunState,
    weight: u16,
    vruntime: u64,
    cpu_ns: u64,
    singleshot: Option<u64>,
    periodic: Option<Periodic>,
    /// Paused by the control domain: never picked, whatever `state` says (timers and wakes still update
    /// `state`, so it continues as it would have when unpaused).
    paused: bool,
}

impl Entity {
    const STOPPED: Entity = Entity {
        state: RunState::Stopped,
        weight: DEFAULT_WEIGHT,
        vruntime: 0,
        cpu_ns: 0,
        singleshot: None,
        periodic: None,
        paused: false,
    };

    fn runnable(&self) -> bool {
        self.state == RunState::Runnable && !self.paused
    }
}

/// The vCPU on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Running {
    vcpu: usize,
    /// Charged up to here.
    since: u64,
    /// Its slice ends here.
    slice_end: u64,
}

/// A set of vCPUs; iterates in ascending order. Two 64-bit words (not a `u128`, whose shifts and bit
/// scans take several instructions each): the policy's choice iterates its runnable set on every
/// decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSet([u64; 2]);

static_assertions::const_assert!(NR_VCPUS <= 128);

impl VcpuSet {
    /// The empty set.
    pub const EMPTY: VcpuSet = VcpuSet([0; 2]);

    fn insert(&mut self, v: usize) {
        self.set(v, true);
    }

    /// Put `v` in the set (`true`) or take it out; nothing for `v` beyond [`NR_VCPUS`].
    fn set(&mut self, v: usize, member: bool) {
        if v >= NR_VCPUS {
            return;
        }
        let bit = 1u64 << (v % 64);
        if member {
            self.0[v / 64] |= bit;
        } else {
            self.0[v / 64] &= !bit;
        }
    }

    /// `v` is in the set.
    pub const fn contains(&self, v: usize) -> bool {
        v < NR_VCPUS && self.0[v / 64] & (1 << (v % 64)) != 0
    }

    /// No vCPU in the set.
    pub const fn is_empty(&self) -> bool {
        self.0[0] | self.0[1] == 0
    }

    /// The set without `v` (`None`: unchanged).
    fn without(self, v: Option<usize>) -> VcpuSet {
        // Both words masked (no store and reload of the set through memory to index it).
        match v {
            Some(v @ 0..64) => VcpuSet([self.0[0] & !(1 << v), self.0[1]]),
            Some(v @ 64..NR_VCPUS) => VcpuSet([self.0[0], self.0[1] & !(1 << (v - 64))]),
            _ => self,
        }
    }

    /// The members from `v` on (all of them for `v` = 0).
    fn from(self, v: usize) -> VcpuSet {
        match v {
            0..64 => VcpuSet([self.0[0] & (!0u64 << v), self.0[1]]),
            64..NR_VCPUS => VcpuSet([0, self.0[1] & (!0u64 << (v - 64))]),
            _ => VcpuSet::EMPTY,
        }
    }

    /// Call `f` on every member, in ascending order (a plain loop per word: the hot paths use this, not
    /// the iterator).
    #[inline(always)]
    fn each(self, mut f: impl FnMut(usize)) {
        for (w, mut bits) in self.0.into_iter().enumerate() {
            while bits != 0 {
                f(w * 64 + bits.trailing_zeros() as usize);
                bits &= bits - 1;
            }
        }
    }

    /// The one member, if the set has exactly one (two tests: no bit scan over an empty word).
    #[inline(always)]
    fn single(&self) -> Option<usize> {
        let [lo, hi] = self.0;
        match (lo, hi) {
            (0, 0) => None,
            (w, 0) if w & (w - 1) == 0 => Some(w.trailing_zeros() as usize),
            (0, w) if w & (w - 1) == 0 => Some(64 + w.trailing_zeros() as usize),
            _ => None,
        }
    }

    /// The members not in `other`.
    fn minus(self, other: VcpuSet) -> VcpuSet {
        VcpuSet([self.0[0] & !other.0[0], self.0[1] & !other.0[1]])
    }
}

impl Iterator for VcpuSet {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        let w = if self.0[0] != 0 {
            0
        } else if self.0[1] != 0 {
            1
        } else {
            return None;
        };
        let word = &mut self.0[w];
        let v = w * 64 + word.trailing_zeros() as usize;
        *word &= *word - 1;
        Some(v)
    }
}

/// What [`SchedPolicy::timers_due`] found. Iterating yields [`Due::timers`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// The vCPUs whose guest timer (single-shot or periodic) expired: raise `VIRQ_TIMER` for each.
    pub timers: VcpuSet,
    /// Blocked vCPUs whose own `wake_at` passed; the policy already made them runnable.
    pub woken: VcpuSet,
}

impl Iterator for Due {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        self.timers.next()
    }
}

/// The policy's state for all vCPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedPolicy {
    vcpus: [Entity; NR_VCPUS],
    running: Option<Running>,
    slice_ns: u64,
    /// Monotonic floor of the runnable vCPUs' virtual runtimes.
    min_vruntime: u64,
    /// The last vCPU picked (round-robin order for ties starts after it).
    cursor: usize,
    /// Choose again at the next `pick` even if the running vCPU's slice has not ended.
    resched: bool,
    /// This vCPU yielded: the next choice avoids it if anything else is runnable.
    yielded: Option<usize>,
    /// Something that can move the next deadline or the choice changed since [`SchedPolicy::take_changed`].
    changed: bool,
    /// A vCPU was stopped since [`SchedPolicy::take_stopped`] (the hypervisor then has domains to reap).
    stopped: bool,
    /// The vCPUs for which [`Entity::runnable`] holds, kept by [`SchedPolicy::sync`] after every change of a
    /// state or pause flag: a choice and the next deadline visit only these, not every started vCPU.
    runnable: VcpuSet,
    /// The vCPUs (not stopped) with a guest timer or a `wake_at`: the only ones whose deadlines
    /// [`SchedPolicy::next_deadline`] and [`SchedPolicy::timers_due`] need to look at.
    timed: VcpuSet,
}

impl Default for SchedPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl SchedPolicy {
    /// Every vCPU stopped, default slice.
    pub const fn new() -> SchedPolicy {
        SchedPolicy {
            vcpus: [Entity::STOPPED; NR_VCPUS],
            running: None,
            slice_ns: DEFAULT_SLICE_NS,
            min_vruntime: 0,
            cursor: NR_VCPUS - 1,
            resched: false,
            yielded: None,
            changed: true,
            stopped: false,
            runnable: VcpuSet::EMPTY,
            timed: VcpuSet::EMPTY,
        }
    }

    /// Bring `v`'s bits in [`SchedPolicy::runnable`] and [`SchedPolicy::timed`] up to date with its entity
    /// (after any change of its state, pause flag or timers).
    #[inline]
    fn sync(&mut self, v: usize) {
        let Some(e) = self.vcpus.get(v) else {
            return;
        };
        let timed = e.state != RunState::Stopped
            && (e.singleshot.is_some()
                || e.periodic.is_some()
                || matches!(e.state, RunState::Blocked { wake_at: Some(_) }));
        self.runnable.set(v, e.runnable());
        self.timed.set(v, timed);
    }

    /// True (once) if a state change since the last call may have moved the next deadline or the choice:
    /// the hypervisor then re-arms its timer; otherwise a vCPU that keeps the CPU skips that work.
    pub fn take_changed(&mut self) -> bool {
        core::mem::replace(&mut self.changed, false)
    }

    /// True (once) if a vCPU was stopped since the last call.
    pub fn take_stopped(&mut self) -> bool {
        core::mem::replace(&mut self.stopped, false)
    }

    /// Whether [`SchedPolicy::take_stopped`] would return true (without consuming it).
    pub fn stopped_since(&self) -> bool {
        self.stopped
    }

    /// Whether [`SchedPolicy::take_changed`] would return true (without consuming it).
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Set the time slice, bounded to [`MIN_SLICE_NS`]..=[`MAX_SLICE_NS`]; returns the slice in effect.
    pub fn set_slice(&mut self, ns: u64) -> u64 {
        self.changed = true;
        self.slice_ns = ns.clamp(MIN_SLICE_NS, MAX_SLICE_NS);
        self.slice_ns
    }

    /// The time slice.
    pub const fn slice_ns(&self) -> u64 {
        self.slice_ns
    }

    fn get(&self, v: usize) -> Option<&Entity> {
        self.vcpus.get(v)
    }

    /// `v`'s state (`None` beyond [`NR_VCPUS`]).
    pub fn state(&self, v: usize) -> Option<RunState> {
        self.get(v).map(|e| e.state)
    }

    /// `v`'s weight.
    pub fn weight(&self, v: usize) -> Option<u16> {
        self.get(v).map(|e| e.weight)
    }

    /// `v`'s virtual runtime.
    pub fn vruntime(&self, v: usize) -> Option<u64> {
        self.get(v).map(|e| e.vruntime)
    }

    /// Real time `v` has been charged for (ns), for statistics and the debug dump.
    pub fn cpu_ns(&self, v: usize) -> Option<u64> {
        self.get(v).map(|e| e.cpu_ns)
    }

    /// Real time `v` has held the CPU up to `now` (ns): what it has been charged, plus, if it is the vCPU
    /// on the CPU, the time since it was last charged (for `sysctl`'s `cpu_time`). Pure: nothing is charged.
    pub fn cpu_ns_at(&self, v: usize, now: u64) -> Option<u64> {
        let e = self.get(v)?;
        let uncharged = self
            .running
            .filter(|r| r.vcpu == v)
            .map_or(0, |r| now.saturating_sub(r.since));
        Some(e.cpu_ns.saturating_add(uncharged))
    }

    /// `v`'s single-shot timer deadline.
    pub fn singleshot(&self, v: usize) -> Option<u64> {
        self.get(v).and_then(|e| e.singleshot)
    }

    /// The vCPU the last [`pick`](Self::pick) chose, if any.
    pub fn running(&self) -> Option<usize> {
        self.running.map(|r| r.vcpu)
    }

    /// The floor of the runnable vCPUs' virtual runtimes.
    pub const fn min_vruntime(&self) -> u64 {
        self.min_vruntime
    }

    /// Make stopped vCPU `v` runnable with `weight` (its virtual runtime starts at `min_vruntime`, so it
    /// neither owes nor is owed time). For a vCPU already started this only sets the weight. -EINVAL for a
    /// vCPU beyond [`NR_VCPUS`] or weight 0.
    pub fn start(&mut self, v: usize, weight: u16) -> Result<(), Errno> {
        self.changed = true;
        self.set_weight(v, weight)?;
        let min = self.min_vruntime;
        let e = &mut self.vcpus[v];
        if e.state == RunState::Stopped {
            *e = Entity {
                state: RunState::Runnable,
                vruntime: min,
                weight,
                ..Entity::STOPPED
            };
            self.resched = true;
            self.sync(v);
        }
        Ok(())
    }

    /// Change `v`'s weight (1..=65535; -EINVAL for 0 or a vCPU beyond [`NR_VCPUS`]).
    pub fn set_weight(&mut self, v: usize, weight: u16) -> Result<(), Errno> {
        self.changed = true;
        match self.vcpus.get_mut(v) {
            Some(e) if weight != 0 => {
                e.weight = weight;
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// `v` stops being scheduled (shut down, crashed); its timers are cancelled. If it is running, the next
    /// `pick` charges it for its last run and chooses another.
    pub fn stop(&mut self, v: usize) {
        self.changed = true;
        self.stopped = true;
        if let Some(e) = self.vcpus.get_mut(v) {
            e.state = RunState::Stopped;
            e.singleshot = None;
            e.periodic = None;
            e.paused = false;
            self.resched = true;
            self.sync(v);
        }
    }

    /// Pause (`true`) or unpause `v` (`XEN_DOMCTL_pausedomain`): a paused vCPU is never picked, but its
    /// timers and wakes are kept, so it continues where it was when unpaused. -EINVAL for a stopped vCPU
    /// or one beyond [`NR_VCPUS`].
    pub fn set_paused(&mut self, v: usize, paused: bool) -> Result<(), Errno> {
        match self.vcpus.get_mut(v) {
            Some(e) if e.state != RunState::Stopped => {
                e.paused = paused;
                self.changed = true;
                self.resched = true;
                self.sync(v);
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// `v` is paused.
    pub fn paused(&self, v: usize) -> bool {
        self.vcpus.get(v).is_some_and(|e| e.paused)
    }

    /// Charge `ran_ns` of CPU time to `v`: its virtual runtime advances by `ran_ns * 256 / weight`.
    #[inline] // Into `pick` (every decision charges the vCPU that ran).
    pub fn account(&mut self, v: usize, ran_ns: u64) {
        let Some(e) = self.vcpus.get_mut(v) else {
            return;
        };
        // In 64 bits whenever the product fits (any run shorter than 2^56 ns, i.e. always in practice): a
        // 128-bit division is a library call, and this runs on every scheduling decision.
        // At the default weight virtual time is real time (exactly: `ran_ns * 256 / 256`), with no
        // multiplication or division (every vCPU that was given no weight), tested first.
        let delta = if e.weight == DEFAULT_WEIGHT {
            ran_ns
        } else {
            let weight = u64::from(e.weight.max(1));
            match ran_ns.checked_mul(u64::from(DEFAULT_WEIGHT)) {
                Some(p) => p / weight,
                None => (ran_ns as u128 * DEFAULT_WEIGHT as u128 / weight as u128)
                    .min(u64::MAX as u128) as u64,
            }
        };
        e.vruntime = e.vruntime.saturating_add(delta);
        e.cpu_ns = e.cpu_ns.saturating_add(ran_ns);
        self.update_min_vruntime();
    }

    fn update_min_vruntime(&mut self) {
        let mut min: Option<u64> = None;
        let vcpus = &self.vcpus;
        self.runnable
            .each(|v| min = Some(min.map_or(vcpus[v].vruntime, |m| m.min(vcpus[v].vruntime))));
        if let Some(m) = min {
            self.min_vruntime = self.min_vruntime.max(m);
        }
    }

    /// Charge the running vCPU up to `now`.
    fn charge(&mut self, now: u64) {
        if let Some(r) = self.running.as_mut() {
            let ran = now.saturating_sub(r.since);
            r.since = r.since.max(now);
            let v = r.vcpu;
            self.account(v, ran);
        }
    }

    /// `v` goes to sleep (`SCHEDOP_block`, `SCHEDOP_poll`) until [`wake`](Self::wake) or, if given, until
    /// `wake_at`. Only a runnable vCPU blocks; returns whether it did.
    #[inline] // On every `SCHEDOP_block`/`poll` (`sched_op`): kept inline whatever the crate's partition.
    pub fn block(&mut self, v: usize, wake_at: Option<u64>) -> bool {
        self.changed = true;
        match self.vcpus.get_mut(v) {
            Some(e) if e.runnable() => {
                e.state = RunState::Blocked { wake_at };
                if self.running() == Some(v) {
                    self.resched = true;
                }
                self.sync(v);
                true
            }
            _ => false,
        }
    }

    /// Make blocked `v` runnable (an event kicked it, or its `wake_at` passed). Its virtual runtime is
    /// raised to at least `min_vruntime - slice`, and the next `pick` chooses again (so it preempts the
    /// running vCPU if it is owed time). Returns whether it was blocked.
    #[inline]
    pub fn wake(&mut self, v: usize) -> bool {
        // Waking a vCPU that is not blocked (e.g. a domain's event to itself) changes nothing: that test
        // stays inline in the event paths, the wake-up itself does not.
        if !matches!(self.state(v), Some(RunState::Blocked { .. })) {
            return false;
        }
        self.wake_blocked(v);
        true
    }

    /// [`SchedPolicy::wake`] by an event that `by`, the vCPU running now, sent in a hypercall of its own.
    ///
    /// If `v` is blocked and `by` is the running, runnable vCPU, the wake-up moves only one deadline:
    /// `by`'s slice end, which counts from now on because another vCPU is runnable (the woken vCPU's
    /// `wake_at` is dropped, which can only make a deadline later; a timer that then fires early is
    /// harmless, `crate::sched`'s lazy arming relies on that already). So the policy is not marked
    /// changed — which would send the caller's return through the scheduler to recompute
    /// [`SchedPolicy::next_deadline`] — and that slice end is returned instead, for the caller to arm the
    /// timer for (`Env::arm_deadline`); `by` keeps the CPU until then or until it blocks or yields, and
    /// the next choice considers the woken vCPU (`resched`), exactly as after [`SchedPolicy::wake`]. In
    /// any other case this is [`SchedPolicy::wake`] and returns `None`.
    #[inline]
    pub fn wake_by(&mut self, v: usize, by: usize) -> Option<u64> {
        if !matches!(self.state(v), Some(RunState::Blocked { .. })) {
            return None;
        }
        match self.running {
            Some(r) if r.vcpu == by && self.vcpus[by].runnable() => {
                self.make_runnable(v);
                Some(r.slice_end)
            }
            _ => {
                self.wake_blocked(v);
                None
            }
        }
    }

    /// [`SchedPolicy::wake`] of a blocked vCPU `v`.
    #[inline(never)]
    fn wake_blocked(&mut self, v: usize) {
        // Only a real wake-up moves the choice or the next deadline.
        self.changed = true;
        self.make_runnable(v);
    }

    /// [`SchedPolicy::wake_blocked`] but for the changed mark, which [`SchedPolicy::wake_by`]'s own
    /// case leaves as it was.
    #[inline(always)]
    fn make_runnable(&mut self, v: usize) {
        let floor = self.min_vruntime.saturating_sub(self.slice_ns);
        let e = &mut self.vcpus[v];
        e.state = RunState::Runnable;
        e.vruntime = e.vruntime.max(floor);
        self.resched = true;
        self.sync(v);
    }

    /// `v` gives up the rest of its slice (`SCHEDOP_yield`): the next `pick` chooses another runnable vCPU
    /// if there is one, whatever their virtual runtimes.
    pub fn yield_now(&mut self, v: usize) {
        self.changed = true;
        if self.running() == Some(v) {
            self.yielded = Some(v);
            self.resched = true;
        }
    }

    /// Set or cancel (`None`) `v`'s single-shot timer (absolute ns; in the past: it fires at the next
    /// [`timers_due`](Self::timers_due)).
    pub fn set_singleshot(&mut self, v: usize, deadline: Option<u64>) {
        self.changed = true;
        if let Some(e) = self.vcpus.get_mut(v) {
            e.singleshot = deadline;
            self.sync(v);
        }
    }

    /// Start (`Some(period)`, first expiry at `now + period`) or stop (`None`) `v`'s periodic timer.
    /// -EINVAL for a period outside [`MIN_PERIOD_NS`]..=[`MAX_PERIOD_NS`] or a vCPU beyond [`NR_VCPUS`].
    pub fn set_periodic(&mut self, v: usize, period: Option<u64>, now: u64) -> Result<(), Errno> {
        self.changed = true;
        let e = self.vcpus.get_mut(v).ok_or(Errno::EINVAL)?;
        e.periodic = match period {
            None => None,
            Some(p) if (MIN_PERIOD_NS..=MAX_PERIOD_NS).contains(&p) => Some(Periodic {
                next: now.saturating_add(p),
                period: p,
            }),
            Some(_) => return Err(Errno::EINVAL),
        };
        self.sync(v);
        Ok(())
    }

    /// Expire timers at `now`: single-shot timers that passed are cleared and periodic ones advanced past
    /// `now` (missed periods coalesce into one expiry); both are reported for `VIRQ_TIMER`. Blocked vCPUs
    /// whose `wake_at` passed are woken here. Stopped vCPUs have no timers.
    pub fn timers_due(&mut self, now: u64) -> Due {
        self.changed = true;
        let mut due = Due::default();
        // Only a vCPU with a timer or a `wake_at` can have one due (stopped ones have none).
        for v in self.timed {
            let e = &mut self.vcpus[v];
            if e.singleshot.is_some_and(|t| t <= now) {
                e.singleshot = None;
                due.timers.insert(v);
            }
            if let Some(p) = e.periodic.as_mut().filter(|p| p.next <= now) {
                let missed = (now - p.next) / p.period;
                p.next = p
                    .next
                    .saturating_add(p.period.saturating_mul(missed.saturating_add(1)));
                due.timers.insert(v);
            }
            if let RunState::Blocked { wake_at: Some(t) } = e.state
                && t <= now
            {
                self.wake(v);
                due.woken.insert(v);
            }
            self.sync(v);
        }
        due
    }

    /// Choose the vCPU to run from `now` on (`None`: idle). The previously picked vCPU is charged for the
    /// time since it was picked. It keeps the CPU if it is still runnable, its slice has not ended and
    /// nothing asked for a new choice (a wake, block, yield, start or stop); otherwise the runnable vCPU
    /// with the lowest virtual runtime is chosen (ties: round-robin after the last one picked), and a
    /// fresh slice starts unless the same vCPU continues inside its current slice.
    ///
    /// The choice moves the next deadline (a new slice end), but does not mark the policy changed: the
    /// scheduler's decision takes the choice with that deadline ([`SchedPolicy::decide`]) and arms the
    /// timer for it, under the same lock, so the chosen vCPU's returns need no decision for it. (So
    /// outside the tests only `decide` is built.)
    #[cfg(test)]
    pub fn pick(&mut self, now: u64) -> Option<usize> {
        self.decide(now).0
    }

    /// [`SchedPolicy::pick`] and then [`SchedPolicy::next_deadline`] at the same `now`, in one call: the
    /// scheduler's decision on a switch. The choice settles the deadline's first part (the chosen vCPU
    /// is the running, runnable one: its slice end counts if any other vCPU is runnable; no choice means
    /// nothing is runnable), so only the timers are left to visit.
    #[inline(always)] // Into the scheduler's decision, its one caller outside tests: no result through memory.
    pub fn decide(&mut self, now: u64) -> (Option<usize>, Option<u64>) {
        let choice = self.choose_and_run(now);
        let (earliest, any) = match (choice, self.running) {
            (Some(v), Some(r)) if self.runnable.single() != Some(v) => (r.slice_end, true),
            _ => (u64::MAX, false),
        };
        (choice, self.timer_deadline(earliest, any))
    }

    /// The choice of [`SchedPolicy::pick`] (whose body this is), the running vCPU updated.
    #[inline(always)]
    fn choose_and_run(&mut self, now: u64) -> Option<usize> {
        self.charge(now);
        if let Some(r) = self.running
            && !self.resched
            && self.vcpus[r.vcpu].runnable()
            && now < r.slice_end
        {
            return Some(r.vcpu);
        }
        let choice = self.choose();
        self.resched = false;
        self.yielded = None;
        match choice {
            Some(v) => {
                let slice_end = match self.running {
                    Some(r) if r.vcpu == v && now < r.slice_end => r.slice_end,
                    _ => now.saturating_add(self.slice_ns),
                };
                self.running = Some(Running {
                    vcpu: v,
                    since: now,
                    slice_end,
                });
                self.cursor = v;
            }
            None => self.running = None,
        }
        choice
    }

    /// The runnable vCPU with the lowest virtual runtime, avoiding one that yielded if possible.
    ///
    /// Visits only the runnable vCPUs (the [`SchedPolicy::runnable`] set), in round-robin order: from
    /// the one after the last vCPU picked up to the highest, then from the lowest (the order of a scan over
    /// all vCPUs starting after the last one picked); strict `<` keeps the
    /// first of equals. With one eligible vCPU (the usual case of a yield between two domains, or a
    /// single runnable domain) that is one step. The result is the same as a scan over every started
    /// vCPU in that order (`sched_policy_proptest.rs` checks it against such a scan).
    fn choose(&self) -> Option<usize> {
        let others = self.runnable.without(self.yielded);
        let eligible = if others.is_empty() {
            self.runnable
        } else {
            others
        };
        // One eligible vCPU (a yield or a block with one other vCPU runnable, a single runnable domain):
        // it is the choice whatever the virtual runtimes and the round-robin order.
        if let Some(v) = eligible.single() {
            return Some(v);
        }
        let start = (self.cursor + 1) % NR_VCPUS;
        let after = eligible.from(start);
        let before = eligible.minus(after);
        let mut best: Option<(usize, u64)> = None;
        let mut consider = |v: usize| {
            let vr = self.vcpus[v].vruntime;
            if best.is_none_or(|(_, b)| vr < b) {
                best = Some((v, vr));
            }
        };
        after.each(&mut consider);
        before.each(&mut consider);
        best.map(|(v, _)| v)
    }

    /// When the hypervisor must next get control (absolute ns), for its one-shot timer: the earliest of the
    /// running vCPU's slice end (only if another vCPU is runnable), every guest timer and every blocked
    /// vCPU's `wake_at`. `now` if a choice is pending (runnable vCPUs but none picked). `None`: no timer is
    /// needed (only events can change anything).
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        // The earliest so far and whether there is one (not an `Option` rebuilt at every step).
        let (earliest, any) = match self.running {
            // Another vCPU is runnable unless the running one is the only member.
            Some(r) if self.runnable.contains(r.vcpu) => {
                (r.slice_end, self.runnable.single() != Some(r.vcpu))
            }
            _ if !self.runnable.is_empty() => (now, true),
            _ => (u64::MAX, false),
        };
        self.timer_deadline(if any { earliest } else { u64::MAX }, any)
    }

    /// The earlier of `earliest` (a deadline if `any`) and every guest timer and `wake_at`; `None` if
    /// there is none of them.
    #[inline(always)]
    fn timer_deadline(&self, earliest: u64, any: bool) -> Option<u64> {
        let (mut earliest, mut any) = (earliest, any);
        let mut consider = |t: u64| {
            earliest = earliest.min(t);
            any = true;
        };
        // Only vCPUs with a timer or a `wake_at` (none of them stopped) have a deadline.
        self.timed.each(|v| {
            let e = &self.vcpus[v];
            if let Some(t) = e.singleshot {
                consider(t);
            }
            if let Some(p) = e.periodic {
                consider(p.next);
            }
            if let RunState::Blocked { wake_at: Some(t) } = e.state {
                consider(t);
            }
        });
        any.then_some(earliest)
    }
}

#[cfg(test)]
#[path = "sched_policy_proptest.rs"]
mod proptests;

#[cfg(test)]
#[path = "sched_policy_tests.rs"]
mod tests;
