//! The guest side of Xen's 2-level event-channel ABI: the pending/mask bitmaps, the selector word and the
//! upcall flag, and the upcall scan loop. Pure: host-tested against a model of the hypervisor's
//! set-pending rule.
//!
//! The scan is Xen's (Linux's `xen_evtchn_do_upcall` / Mini-OS's `do_hypervisor_callback`):
//!
//! ```text
//! loop:
//!     upcall_pending = 0
//!     sel = xchg(pending_sel, 0)
//!     for each set bit w of sel:
//!         for each set bit b of pending[w] & ~mask[w]:
//!             clear pending[w] bit b        (before the handler: a new event sets it again)
//!             dispatch(64 * w + b)
//!     if upcall_pending is still 0: done     (else an event arrived meanwhile: scan again)
//! ```
//!
//! Clearing the pending bit before dispatching is what keeps an event raised during the handler from
//! being lost: the hypervisor sees the bit clear, sets it, the selector bit and `upcall_pending` again.

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use abi::event_channel::{EvtchnPort, port_word_and_mask};

/// Words of the pending and mask bitmaps (4096 ports).
pub const WORDS: usize = 64;

/// References to one vCPU's event state: in the shared_info page on the real platform, in plain atomics
/// in tests.
#[derive(Clone, Copy)]
pub struct EventState<'a> {
    /// `vcpu_info.evtchn_upcall_pending`.
    pub upcall_pending: &'a AtomicU8,
    /// `vcpu_info.evtchn_upcall_mask`.
    pub upcall_mask: &'a AtomicU8,
    /// `vcpu_info.evtchn_pending_sel`.
    pub pending_sel: &'a AtomicU64,
    /// `shared_info.evtchn_pending`.
    pub pending: &'a [AtomicU64; WORDS],
    /// `shared_info.evtchn_mask`.
    pub mask: &'a [AtomicU64; WORDS],
}

/// What one scan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Ports dispatched.
    pub dispatched: usize,
    /// Passes over the selector (more than one: events arrived during the scan).
    pub passes: usize,
}

impl EventState<'_> {
    /// Run the upcall scan, calling `dispatch` for each pending, unmasked port (its pending bit already
    /// cleared). Masked pending ports are left pending.
    pub fn scan(&self, mut dispatch: impl FnMut(EvtchnPort)) -> ScanStats {
        let mut stats = ScanStats::default();
        // A bound on passes so that a port raised from its own handler on every call cannot keep the
        // upcall running forever; what is left stays pending and is delivered on the next upcall.
        while stats.passes < 64 {
            stats.passes += 1;
            self.upcall_pending.store(0, Ordering::SeqCst);
            let mut sel = self.pending_sel.swap(0, Ordering::SeqCst);
            while sel != 0 {
                let w = sel.trailing_zeros() as usize;
                sel &= sel - 1;
                // One snapshot of the word per pass: a port raised again by its handler sets the selector
                // and upcall_pending again, and is taken on the next pass.
                let mut ready =
                    self.pending[w].load(Ordering::SeqCst) & !self.mask[w].load(Ordering::SeqCst);
                while ready != 0 {
                    let b = ready.trailing_zeros();
                    ready &= ready - 1;
                    let bit = 1u64 << b;
                    // Skip a port masked (or already taken) since the snapshot.
                    if self.mask[w].load(Ordering::SeqCst) & bit != 0
                        || self.pending[w].fetch_and(!bit, Ordering::SeqCst) & bit == 0
                    {
                        continue;
                    }
                    stats.dispatched += 1;
                    dispatch((w * 64) as EvtchnPort + b);
                }
            }
            if self.upcall_pending.load(Ordering::SeqCst) == 0 {
                break;
            }
        }
        stats
    }

    fn word(port: EvtchnPort) -> Option<(usize, u64)> {
        let (w, m) = port_word_and_mask(port);
        (w < WORDS).then_some((w, m))
    }

    /// Set the port's mask bit (local: the hypervisor only reads it).
    pub fn mask_port(&self, port: EvtchnPort) {
        if let Some((w, m)) = Self::word(port) {
            self.mask[w].fetch_or(m, Ordering::SeqCst);
        }
    }

    /// Clear the port's mask bit locally; returns true if the port is pending (the caller must then have
    /// the hypervisor deliver it, e.g. with `EVTCHNOP_unmask`).
    pub fn clear_mask_bit(&self, port: EvtchnPort) -> bool {
        match Self::word(port) {
            Some((w, m)) => {
                self.mask[w].fetch_and(!m, Ordering::SeqCst);
                self.pending[w].load(Ordering::SeqCst) & m != 0
            }
            None => false,
        }
    }

    /// True if the port's mask bit is set.
    pub fn is_masked(&self, port: EvtchnPort) -> bool {
        Self::word(port).is_some_and(|(w, m)| self.mask[w].load(Ordering::SeqCst) & m != 0)
    }

    /// True if the port's pending bit is set.
    pub fn is_pending(&self, port: EvtchnPort) -> bool {
        Self::word(port).is_some_and(|(w, m)| self.pending[w].load(Ordering::SeqCst) & m != 0)
    }

    /// Clear the port's pending bit; returns whether it was set.
    pub fn test_and_clear_pending(&self, port: EvtchnPort) -> bool {
        Self::word(port)
            .is_some_and(|(w, m)| self.pending[w].fetch_and(!m, Ordering::SeqCst) & m != 0)
    }

    /// True if events are masked (the virtual interrupt flag is clear).
    pub fn events_masked(&self) -> bool {
        self.upcall_mask.load(Ordering::SeqCst) != 0
    }

    /// True if an upcall is pending.
    pub fn upcall_is_pending(&self) -> bool {
        self.upcall_pending.load(Ordering::SeqCst) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned event state plus Xen's hypervisor-side rules, for the tests.
    struct Model {
        upcall_pending: AtomicU8,
        upcall_mask: AtomicU8,
        sel: AtomicU64,
        pending: [AtomicU64; WORDS],
        mask: [AtomicU64; WORDS],
    }

    impl Model {
        fn new() -> Model {
            Model {
                upcall_pending: AtomicU8::new(0),
                upcall_mask: AtomicU8::new(0),
                sel: AtomicU64::new(0),
                pending: core::array::from_fn(|_| AtomicU64::new(0)),
                mask: core::array::from_fn(|_| AtomicU64::new(0)),
            }
        }

        fn state(&self) -> EventState<'_> {
            EventState {
                upcall_pending: &self.upcall_pending,
                upcall_mask: &self.upcall_mask,
                pending_sel: &self.sel,
                pending: &self.pending,
                mask: &self.mask,
            }
        }

        /// Xen's evtchn_2l_set_pending.
        fn set_pending(&self, port: u32) {
            let (w, m) = port_word_and_mask(port);
            if self.pending[w].fetch_or(m, Ordering::SeqCst) & m != 0 {
                return;
            }
            if self.mask[w].load(Ordering::SeqCst) & m != 0 {
                return;
            }
            if self.sel.fetch_or(1 << w, Ordering::SeqCst) & (1 << w) != 0 {
                return;
            }
            self.upcall_pending.store(1, Ordering::SeqCst);
        }

        /// Xen's evtchn_2l_unmask.
        fn unmask(&self, port: u32) {
            let (w, m) = port_word_and_mask(port);
            if self.mask[w].fetch_and(!m, Ordering::SeqCst) & m != 0
                && self.pending[w].load(Ordering::SeqCst) & m != 0
                && self.sel.fetch_or(1 << w, Ordering::SeqCst) & (1 << w) == 0
            {
                self.upcall_pending.store(1, Ordering::SeqCst);
            }
        }
    }

    fn collect(m: &Model) -> Vec<u32> {
        let mut v = Vec::new();
        m.state().scan(|p| v.push(p));
        v
    }

    #[test]
    fn dispatches_in_order_and_clears() {
        let m = Model::new();
        for p in [3, 1, 64, 4095, 130] {
            m.set_pending(p);
        }
        assert!(m.state().upcall_is_pending());
        assert_eq!(collect(&m), vec![1, 3, 64, 130, 4095]);
        assert!(!m.state().upcall_is_pending());
        assert_eq!(m.sel.load(Ordering::SeqCst), 0);
        assert!(m.pending.iter().all(|w| w.load(Ordering::SeqCst) == 0));
        assert!(collect(&m).is_empty());
    }

    #[test]
    fn masked_ports_wait_for_unmask() {
        let m = Model::new();
        let s = m.state();
        s.mask_port(5);
        assert!(s.is_masked(5));
        m.set_pending(5);
        m.set_pending(6);
        assert_eq!(collect(&m), vec![6]);
        assert!(s.is_pending(5), "a masked event stays pending");
        m.unmask(5);
        assert!(s.upcall_is_pending());
        assert_eq!(collect(&m), vec![5]);
        assert!(!s.is_masked(5));
    }

    #[test]
    fn an_event_raised_during_a_handler_is_not_lost() {
        let m = Model::new();
        m.set_pending(7);
        let mut seen = Vec::new();
        let stats = m.state().scan(|p| {
            seen.push(p);
            if seen.len() == 1 {
                // The same port again, and another word, while the handler runs.
                m.set_pending(7);
                m.set_pending(200);
            }
        });
        assert_eq!(seen, vec![7, 7, 200]);
        assert_eq!(stats.dispatched, 3);
        assert!(!m.state().upcall_is_pending());
    }

    #[test]
    fn coalesced_events_count_once() {
        let m = Model::new();
        m.set_pending(9);
        m.set_pending(9);
        assert_eq!(collect(&m), vec![9]);
    }

    #[test]
    fn a_port_raised_forever_does_not_hang_the_upcall() {
        let m = Model::new();
        m.set_pending(11);
        let stats = m.state().scan(|p| m.set_pending(p));
        assert_eq!(stats.passes, 64);
        assert!(m.state().is_pending(11), "left pending for the next upcall");
    }

    #[test]
    fn local_bit_helpers() {
        let m = Model::new();
        let s = m.state();
        s.mask_port(70);
        m.set_pending(70);
        assert!(s.clear_mask_bit(70), "pending when unmasked locally");
        assert!(s.test_and_clear_pending(70));
        assert!(!s.test_and_clear_pending(70));
        assert!(!s.clear_mask_bit(70));
        // Out-of-range ports are ignored.
        s.mask_port(5000);
        assert!(!s.is_masked(5000) && !s.is_pending(5000));
        m.upcall_mask.store(1, Ordering::SeqCst);
        assert!(s.events_masked());
    }
}
