//! Shared hypervisor state that a hypercall handler locks on first use ([`Lazy`]), and what the
//! hypervisor around the handlers provides on request ([`Env`]): the hypercall context carries a
//! reference for each instead of taking every lock and building every piece on every entry.
//!
//! A handler that never touches the frame table, the event channels or the scheduling policy (`NULL`,
//! `xen_version`, `set_segment_base`, ...) takes none of their locks. A lock, once taken, is held until
//! the hypercall's context is dropped, exactly as when the trap code took all of them up front; the
//! hypervisor runs on one CPU with interrupts off, so the order in which handlers happen to take them
//! cannot deadlock (the same lock is never taken twice: each lives in one context field).

use crate::event::channel::EventSystem;
use crate::mm::machine::Machine;
use crate::sched_policy::SchedPolicy;

use super::sched_op::PollTable;

/// A type a hypercall handler reaches through a [`Lazy`]: what its lock guards, and how to get from
/// there to it.
pub trait Project {
    /// The value behind the lock.
    type Locked;
    /// The handler's view of the locked value.
    fn project(locked: &mut Self::Locked) -> &mut Self;
    /// Called when a context releases the lock it took, with the value it guarded (once per context).
    #[inline(always)]
    fn on_unlock(_locked: &Self::Locked) {}
}

impl<'m> Project for Machine<'m> {
    type Locked = Option<Machine<'m>>;
    fn project<'l>(locked: &'l mut Option<Machine<'m>>) -> &'l mut Machine<'m> {
        // Set once at boot, before any domain exists: no guest can reach a hypercall before.
        locked.as_mut().expect("machine initialised")
    }
}

impl Project for EventSystem {
    type Locked = EventSystem;
    fn project(locked: &mut EventSystem) -> &mut EventSystem {
        locked
    }
}

impl Project for (SchedPolicy, PollTable) {
    type Locked = (SchedPolicy, PollTable);
    fn project(locked: &mut Self) -> &mut Self {
        locked
    }
    /// A handler that took the policy and changed it (anything that can move the choice or the next
    /// deadline marks it, see `SchedPolicy::changed`) leaves the return a check to make
    /// (`crate::pending`). Raised when the lock is released rather than when it is taken: a handler that
    /// only read the policy, or changed nothing the return must look at (a send that wakes another
    /// vCPU, `SchedPolicy::wake_by`), sends its caller's return past the policy's lock. Nothing reads
    /// the bit while the context holds the lock: the return runs after the context is dropped.
    #[inline(always)]
    fn on_unlock(locked: &Self) {
        if locked.0.changed() {
            crate::pending::raise(crate::pending::SCHED);
        }
    }
}

/// A piece of shared state: already borrowed, or behind a lock taken on the first [`Lazy::get`] and
/// released when the `Lazy` is dropped (with the hypercall's context). The `u32` counts the
/// [`Lazy::get`] calls ([`Lazy::uses`]).
pub enum Lazy<'a, T: Project> {
    /// Borrowed by whoever built the context (the host tests' fake machine).
    Ready(&'a mut T, u32),
    /// Not locked yet (no use so far).
    Unlocked(&'a spin::Mutex<T::Locked>),
    /// Locked by this context.
    Held(spin::MutexGuard<'a, T::Locked>, u32),
}

impl<'a, T: Project> Lazy<'a, T> {
    /// Borrowed state (no lock).
    pub fn ready(value: &'a mut T) -> Self {
        Lazy::Ready(value, 0)
    }

    /// The state, locking it first if this is the first use.
    ///
    /// The first use stores the guard over the `Unlocked` value without running its drop glue (it has
    /// none: a shared reference) and hands out the state from the guard it just took, so the way in is
    /// one test of the variant, the lock and the stores of the new variant (no second match).
    #[inline]
    pub fn get(&mut self) -> &mut T {
        match self {
            Lazy::Ready(r, n) => {
                *n = n.wrapping_add(1);
                r
            }
            Lazy::Held(g, n) => {
                *n = n.wrapping_add(1);
                T::project(g)
            }
            Lazy::Unlocked(m) => {
                let m = *m;
                // `Unlocked` holds a shared reference: nothing to drop.
                core::mem::forget(core::mem::replace(self, Lazy::Held(m.lock(), 1)));
                match self {
                    Lazy::Held(g, _) => T::project(g),
                    // Stored just above.
                    _ => unreachable!("held after locking"),
                }
            }
        }
    }

    /// How many times [`Lazy::get`] handed out the state so far (wrapping): code that must know
    /// whether a call in between could have changed the state compares two readings.
    pub fn uses(&self) -> u32 {
        match self {
            Lazy::Ready(_, n) | Lazy::Held(_, n) => *n,
            Lazy::Unlocked(_) => 0,
        }
    }
}

impl<T: Project> Drop for Lazy<'_, T> {
    /// A lock this context took is released here (the guard's own drop, after [`Project::on_unlock`]).
    #[inline(always)]
    fn drop(&mut self) {
        if let Lazy::Held(g, _) = self {
            T::on_unlock(g);
        }
    }
}

/// What the hypervisor provides to the few handlers that need more than the caller's state: the
/// clock, the console, the hypervisor's command line. One reference in the context, asked for only by
/// those handlers.
pub trait Env {
    /// System time (ns since boot).
    fn now_ns(&self) -> u64;
    /// Console output of the calling domain `id` (the context's `domid`: the environment is the
    /// caller's, the id is passed so that the hypervisor's side is the caller's line buffer itself,
    /// with nothing built for it on every hypercall).
    fn console_write(&mut self, id: u16, bytes: &[u8]);
    /// The caller, domain `id`, currently owns the console input.
    fn console_input_owner(&self, id: u16) -> bool;
    /// Typed console input for the caller, domain `id` (the input owner): fills `buf`, returns the
    /// number of bytes.
    fn console_read(&mut self, id: u16, buf: &mut [u8]) -> usize;
    /// The hypervisor's own command line (for `XENVER_commandline`).
    fn hv_cmdline(&self) -> &str;
    /// Make the hypervisor's timer fire no later than `deadline` (ns of system time), for a handler
    /// whose change to the scheduling policy moved only that deadline (`SchedPolicy::wake_by`).
    fn arm_deadline(&mut self, deadline: u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pending::{SCHED, TEST_WORD, clear, is_raised};

    /// A context's lock of the policy raises `pending::SCHED` when it is released, and only if the handler
    /// marked the policy changed: a handler that read it (or changed nothing the return must see) leaves
    /// the bit clear, one that changed it leaves the bit raised before the return can look.
    #[test]
    fn the_policy_lock_raises_sched_on_release_if_changed() {
        let _word = TEST_WORD.lock();
        let policy = spin::Mutex::new((SchedPolicy::new(), PollTable::new()));
        policy.lock().0.take_changed();
        clear(SCHED);
        {
            let mut lazy: Lazy<'_, (SchedPolicy, PollTable)> = Lazy::Unlocked(&policy);
            assert!(!lazy.get().0.changed());
            assert!(policy.is_locked(), "held until the context is dropped");
        }
        assert!(!policy.is_locked());
        assert!(
            !is_raised(SCHED),
            "read only: nothing for the return to check"
        );
        {
            let mut lazy: Lazy<'_, (SchedPolicy, PollTable)> = Lazy::Unlocked(&policy);
            lazy.get().0.set_slice(2_000_000);
            assert!(!is_raised(SCHED), "raised when released");
        }
        assert!(is_raised(SCHED), "a change leaves the return a check");
        clear(SCHED);
        // Borrowed state (the host tests' contexts) takes no lock and raises nothing.
        let mut own = (SchedPolicy::new(), PollTable::new());
        {
            let mut lazy = Lazy::ready(&mut own);
            lazy.get().0.set_slice(2_000_000);
        }
        assert!(!is_raised(SCHED));
    }
}
