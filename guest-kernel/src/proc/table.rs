//! The process table (pure): pids, parents and children, states, the run queue, exit and reaping.
//!
//! `R` is what the kernel keeps per process besides this bookkeeping (address space, kernel stack, saved
//! context); the host tests use `()`. Invariants, checked by [`Table::check`] in the tests: a pid is in
//! the run queue exactly when its state is `Runnable`; every process's parent is alive (the first process
//! has none); at most one process is `Running`.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use abi::errno::Errno;

/// A process id.
pub type Pid = u32;

/// Most processes alive at once (zombies included).
pub const MAX_PROCS: usize = uapi::MAX_PROCS;
/// The first process (the shell); orphans are given to it.
pub const INIT_PID: Pid = 1;
/// Pids are reused after this.
const PID_LIMIT: Pid = 0xffff;

/// What a blocked process waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// System time (ns) to wake at.
    Sleep(u64),
    /// A child to end (any child: `None`).
    Child(Option<Pid>),
    /// A console line.
    Console,
    /// The event-channel reply, or the deadline.
    Event(u64),
    /// A wake-up from `notify` (see [`Table::notify`]).
    Notify,
}

/// A process's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Runnable,
    Running,
    Blocked(Wait),
    /// Ended with this status, not reaped yet.
    Zombie(u32),
}

impl State {
    /// The `uapi::state` number.
    pub const fn code(self) -> u32 {
        match self {
            State::Runnable => uapi::state::RUNNABLE,
            State::Running => uapi::state::RUNNING,
            State::Blocked(Wait::Sleep(_)) => uapi::state::SLEEPING,
            State::Blocked(Wait::Child(_)) => uapi::state::WAITING,
            State::Blocked(Wait::Console) => uapi::state::READING,
            State::Blocked(Wait::Event(_)) => uapi::state::EVENT,
            State::Blocked(Wait::Notify) => uapi::state::NOTIFY,
            State::Zombie(_) => uapi::state::ZOMBIE,
        }
    }
}

/// Counters shown by `ps`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub preemptions: u64,
    pub syscalls: u64,
    pub cpu_ns: u64,
}

/// One process.
#[derive(Debug)]
pub struct Proc<R> {
    pub pid: Pid,
    /// Parent (0: none).
    pub ppid: Pid,
    /// Program name, NUL-padded.
    pub name: [u8; 16],
    pub state: State,
    /// Set when someone (Ctrl-C, a fault) ended it while it was not running: it exits with this status
    /// as soon as it runs.
    pub killed: Option<u32>,
    /// A `notify` wake-up is pending (consumed by `await_notify`).
    pub notified: bool,
    /// Its ring-3 page-fault handler.
    pub fault: super::faulthandler::FaultHandler,
    pub stats: Stats,
    pub res: R,
}

/// The table.
#[derive(Debug)]
pub struct Table<R> {
    procs: Vec<Proc<R>>,
    runq: VecDeque<Pid>,
    next_pid: Pid,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> Table<R> {
    /// Empty.
    pub const fn new() -> Table<R> {
        Table {
            procs: Vec::new(),
            runq: VecDeque::new(),
            next_pid: INIT_PID,
        }
    }

    /// Processes alive (zombies included).
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// True if there is none.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    fn free_pid(&mut self) -> Pid {
        loop {
            let p = self.next_pid;
            self.next_pid = if p >= PID_LIMIT { INIT_PID + 1 } else { p + 1 };
            if self.get(p).is_none() {
                return p;
            }
        }
    }

    /// Add a runnable process, child of `ppid` (0 for none). `-EAGAIN` if the table is full.
    pub fn insert(&mut self, ppid: Pid, name: &str, res: R) -> Result<Pid, Errno> {
        if self.procs.len() >= MAX_PROCS {
            return Err(Errno::EAGAIN);
        }
        let pid = self.free_pid();
        self.procs.push(Proc {
            pid,
            ppid,
            name: uapi::name_field(name),
            state: State::Runnable,
            killed: None,
            notified: false,
            fault: super::faulthandler::FaultHandler::new(),
            stats: Stats::default(),
            res,
        });
        self.runq.push_back(pid);
        Ok(pid)
    }

    /// The process `pid`.
    pub fn get(&self, pid: Pid) -> Option<&Proc<R>> {
        self.procs.iter().find(|p| p.pid == pid)
    }

    /// The process `pid`, mutably.
    pub fn get_mut(&mut self, pid: Pid) -> Option<&mut Proc<R>> {
        self.procs.iter_mut().find(|p| p.pid == pid)
    }

    /// Every process, by pid.
    pub fn iter(&self) -> impl Iterator<Item = &Proc<R>> {
        let mut v: Vec<&Proc<R>> = self.procs.iter().collect();
        v.sort_by_key(|p| p.pid);
        v.into_iter()
    }

    /// Every process, mutably (any order).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Proc<R>> {
        self.procs.iter_mut()
    }

    /// Make a blocked (or running) process runnable; zombies and runnable ones are left alone.
    pub fn wake(&mut self, pid: Pid) {
        if let Some(p) = self.get_mut(pid)
            && matches!(p.state, State::Blocked(_) | State::Running)
        {
            p.state = State::Runnable;
            self.runq.push_back(pid);
        }
    }

    /// Block `pid` (running or runnable) on `w`.
    pub fn block(&mut self, pid: Pid, w: Wait) {
        if let Some(p) = self.get_mut(pid)
            && !matches!(p.state, State::Zombie(_))
        {
            p.state = State::Blocked(w);
            self.runq.retain(|&q| q != pid);
        }
    }

    /// The next runnable process, now `Running`.
    pub fn pick(&mut self) -> Option<Pid> {
        let pid = self.runq.pop_front()?;
        if let Some(p) = self.get_mut(pid) {
            p.state = State::Running;
        }
        Some(pid)
    }

    /// True if some process waits in the run queue.
    pub fn others_runnable(&self) -> bool {
        !self.runq.is_empty()
    }

    /// `pid` ends with `status`: it becomes a zombie, its children go to [`INIT_PID`] (or lose their parent
    /// if `pid` is the init process itself). Returns its parent.
    pub fn exit(&mut self, pid: Pid, status: u32) -> Pid {
        self.runq.retain(|&q| q != pid);
        let new_parent = if pid == INIT_PID { 0 } else { INIT_PID };
        let mut waiting: Vec<Pid> = Vec::new();
        for c in self.procs.iter_mut().filter(|c| c.ppid == pid) {
            c.ppid = new_parent;
            // A parent's end is a wake-up for a child waiting on it (it would wait forever otherwise).
            if c.state == State::Blocked(Wait::Notify) {
                c.notified = true;
                waiting.push(c.pid);
            }
        }
        // So is a child's end for a parent waiting on it (its next `notify` to the child then fails).
        if let Some(parent) = self.get(pid).map(|p| p.ppid)
            && let Some(q) = self.get_mut(parent)
            && q.state == State::Blocked(Wait::Notify)
        {
            q.notified = true;
            waiting.push(parent);
        }
        for c in waiting {
            self.wake(c);
        }
        match self.get_mut(pid) {
            Some(p) => {
                p.state = State::Zombie(status);
                p.ppid
            }
            None => 0,
        }
    }

    /// True if `parent` has a child matching `want` (any child: `None`).
    pub fn has_child(&self, parent: Pid, want: Option<Pid>) -> bool {
        self.procs
            .iter()
            .any(|c| c.ppid == parent && want.is_none_or(|w| w == c.pid))
    }

    /// A zombie child of `parent` matching `want`, if any.
    pub fn zombie_child(&self, parent: Pid, want: Option<Pid>) -> Option<Pid> {
        self.procs
            .iter()
            .filter(|c| c.ppid == parent && want.is_none_or(|w| w == c.pid))
            .find(|c| matches!(c.state, State::Zombie(_)))
            .map(|c| c.pid)
    }

    /// Remove the zombie `pid`, returning its status and resources.
    pub fn reap(&mut self, pid: Pid) -> Option<(u32, R)> {
        let i = self
            .procs
            .iter()
            .position(|p| p.pid == pid && matches!(p.state, State::Zombie(_)))?;
        let p = self.procs.swap_remove(i);
        match p.state {
            State::Zombie(status) => Some((status, p.res)),
            _ => None,
        }
    }

    /// `from` posts a wake-up to `to`: allowed only between parent and child (`-EPERM`), to a live
    /// process (`-ESRCH`). Wakes `to` if it waits in `await_notify`.
    pub fn notify(&mut self, from: Pid, to: Pid) -> Result<(), Errno> {
        let from_parent = self.get(from).map_or(0, |p| p.ppid);
        let target = self.get_mut(to).ok_or(Errno::ESRCH)?;
        if matches!(target.state, State::Zombie(_)) {
            return Err(Errno::ESRCH);
        }
        if target.ppid != from && from_parent != to {
            return Err(Errno::EPERM);
        }
        target.notified = true;
        if target.state == State::Blocked(Wait::Notify) {
            self.wake(to);
        }
        Ok(())
    }

    /// Consume `pid`'s pending wake-up: true if there was one.
    pub fn take_notification(&mut self, pid: Pid) -> bool {
        self.get_mut(pid)
            .is_some_and(|p| core::mem::take(&mut p.notified))
    }

    /// Check the invariants (tests).
    pub fn check(&self) -> Result<(), &'static str> {
        let running = self
            .procs
            .iter()
            .filter(|p| p.state == State::Running)
            .count();
        if running > 1 {
            return Err("more than one running process");
        }
        for p in &self.procs {
            let queued = self.runq.iter().filter(|&&q| q == p.pid).count();
            if queued != usize::from(p.state == State::Runnable) {
                return Err("run queue and states disagree");
            }
            if p.ppid != 0 && self.get(p.ppid).is_none() {
                return Err("a parent is gone");
            }
        }
        if self.runq.iter().any(|&q| self.get(q).is_none()) {
            return Err("a queued pid does not exist");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_ping_pong_and_refusals() {
        let mut t: Table<()> = Table::new();
        let init = t.insert(0, "sh", ()).unwrap();
        assert_eq!(t.pick(), Some(init));
        let a = t.insert(init, "osbench", ()).unwrap();
        let b = t.insert(a, "osbench", ()).unwrap();
        let stranger = t.insert(init, "spin", ()).unwrap();
        // b waits; a (its parent) wakes it; the wake-up is consumed once.
        t.block(b, Wait::Notify);
        assert_eq!(t.get(b).unwrap().state.code(), uapi::state::NOTIFY);
        t.notify(a, b).unwrap();
        assert_eq!(t.get(b).unwrap().state, State::Runnable);
        assert!(t.take_notification(b));
        assert!(!t.take_notification(b));
        // Child to parent works; wake-ups do not queue.
        t.notify(b, a).unwrap();
        t.notify(b, a).unwrap();
        assert!(t.take_notification(a));
        assert!(!t.take_notification(a));
        t.check().unwrap();
        // Not related: refused, nothing posted; grandparent too.
        assert_eq!(t.notify(stranger, b), Err(Errno::EPERM));
        assert_eq!(t.notify(b, stranger), Err(Errno::EPERM));
        assert_eq!(t.notify(init, b), Err(Errno::EPERM));
        assert!(!t.take_notification(b));
        // Hostile ids: nobody, self-less pid 0, huge pids, a zombie.
        for bad in [0, 999, u32::MAX] {
            assert_eq!(t.notify(a, bad), Err(Errno::ESRCH));
        }
        // A child waiting for its parent is woken when the parent ends.
        let c = t.insert(a, "osbench", ()).unwrap();
        t.block(c, Wait::Notify);
        t.exit(a, 130);
        assert_eq!(t.get(c).unwrap().state, State::Runnable);
        assert!(t.take_notification(c));
        assert_eq!(t.notify(c, a), Err(Errno::ESRCH), "the old parent is gone");
        t.check().unwrap();
        // A parent waiting on a child is woken when the child ends.
        let d = t.insert(b, "osbench", ()).unwrap();
        t.block(b, Wait::Notify);
        t.exit(d, 1);
        assert_eq!(t.get(b).unwrap().state, State::Runnable);
        assert!(t.take_notification(b));
        assert_eq!(t.notify(b, d), Err(Errno::ESRCH), "the child is a zombie");
        t.check().unwrap();
        t.exit(b, 0);
        assert_eq!(t.notify(a, b), Err(Errno::ESRCH));
        assert!(!t.take_notification(12345));
        t.check().unwrap();
    }

    #[test]
    fn spawn_run_exit_reap() {
        let mut t: Table<()> = Table::new();
        let init = t.insert(0, "sh", ()).unwrap();
        assert_eq!(init, INIT_PID);
        assert_eq!(t.pick(), Some(init));
        let child = t.insert(init, "hello", ()).unwrap();
        t.block(init, Wait::Child(Some(child)));
        t.check().unwrap();
        assert_eq!(t.pick(), Some(child));
        assert_eq!(t.zombie_child(init, Some(child)), None);
        assert_eq!(t.exit(child, 7), init);
        assert_eq!(t.zombie_child(init, None), Some(child));
        t.wake(init);
        t.check().unwrap();
        assert_eq!(t.reap(child), Some((7, ())));
        assert!(!t.has_child(init, None));
        assert_eq!(t.reap(child), None);
        t.check().unwrap();
    }

    #[test]
    fn orphans_go_to_init_and_the_table_fills() {
        let mut t: Table<()> = Table::new();
        let init = t.insert(0, "sh", ()).unwrap();
        let a = t.insert(init, "a", ()).unwrap();
        let b = t.insert(a, "b", ()).unwrap();
        t.exit(a, 0);
        assert_eq!(t.get(b).unwrap().ppid, INIT_PID);
        assert!(t.reap(a).is_some());
        t.check().unwrap();
        while t.len() < MAX_PROCS {
            t.insert(init, "x", ()).unwrap();
        }
        assert_eq!(t.insert(init, "y", ()), Err(Errno::EAGAIN));
        t.check().unwrap();
    }

    #[test]
    fn pids_are_reused_only_when_free() {
        let mut t: Table<()> = Table::new();
        let init = t.insert(0, "sh", ()).unwrap();
        let mut seen = alloc::collections::BTreeSet::new();
        for _ in 0..70_000u32 {
            let p = t.insert(init, "c", ()).unwrap();
            assert!(t.get(p).is_some());
            assert_ne!(p, init);
            seen.insert(p);
            t.exit(p, 0);
            t.reap(p).unwrap();
        }
        assert!(seen.len() >= (PID_LIMIT - 1) as usize);
        t.check().unwrap();
    }

    #[test]
    fn random_operations_keep_the_invariants() {
        let mut t: Table<()> = Table::new();
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        t.insert(0, "sh", ()).unwrap();
        for _ in 0..20_000 {
            let pids: Vec<Pid> = t.iter().map(|p| p.pid).collect();
            let pid = pids[(rnd() as usize) % pids.len()];
            match rnd() % 6 {
                // Only live processes spawn children.
                0 if !matches!(t.get(pid).unwrap().state, State::Zombie(_)) => {
                    let _ = t.insert(pid, "c", ());
                }
                1 => t.block(pid, Wait::Sleep(rnd())),
                2 => t.wake(pid),
                3 if pid != INIT_PID => {
                    t.exit(pid, 1);
                }
                4 => {
                    if let Some(z) = t.zombie_child(pid, None) {
                        t.reap(z).unwrap();
                    }
                }
                _ => {
                    if let Some(p) = t.pick() {
                        t.wake(p);
                    }
                }
            }
            t.check().unwrap();
        }
    }
}
