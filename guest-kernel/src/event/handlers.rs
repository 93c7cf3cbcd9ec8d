//! Per-port event handlers: a lock-free table (the upcall reads it with events masked, the kernel
//! writes it at any time), plus counters. Pure: host-tested.

use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::platform::Irq;

/// A handler for one port; runs in the upcall, with events masked.
pub type PortHandler = fn(Irq);

/// Ports a domain may have (the hypervisor's per-domain limit).
pub const MAX_PORTS: usize = 1024;

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// The table.
pub struct PortHandlers {
    slots: [AtomicPtr<()>; MAX_PORTS],
    /// Events dispatched to a handler.
    handled: AtomicU64,
    /// Events on ports without a handler (or beyond the table).
    unhandled: AtomicU64,
}

impl PortHandlers {
    /// An empty table.
    pub const fn new() -> PortHandlers {
        PortHandlers {
            slots: [EMPTY; MAX_PORTS],
            handled: AtomicU64::new(0),
            unhandled: AtomicU64::new(0),
        }
    }

    /// Install or remove the handler of `port`; returns false for a port beyond the table.
    pub fn set(&self, port: Irq, handler: Option<PortHandler>) -> bool {
        match self.slots.get(port as usize) {
            Some(slot) => {
                slot.store(
                    handler.map_or(core::ptr::null_mut(), |h| h as *mut ()),
                    Ordering::Release,
                );
                true
            }
            None => false,
        }
    }

    /// The handler of `port`.
    pub fn get(&self, port: Irq) -> Option<PortHandler> {
        let p = self.slots.get(port as usize)?.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: the only non-null values stored are `PortHandler` function pointers cast by `set`.
        Some(unsafe { core::mem::transmute::<*mut (), PortHandler>(p) })
    }

    /// Run the handler of `port` (counting the event either way).
    pub fn dispatch(&self, port: Irq) {
        match self.get(port) {
            Some(h) => {
                self.handled.fetch_add(1, Ordering::Relaxed);
                h(port);
            }
            None => {
                self.unhandled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `(handled, unhandled)` events so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.handled.load(Ordering::Relaxed),
            self.unhandled.load(Ordering::Relaxed),
        )
    }
}

impl Default for PortHandlers {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    static LAST: AtomicU32 = AtomicU32::new(0);

    fn record(port: Irq) {
        LAST.store(port, Ordering::SeqCst);
    }

    #[test]
    fn dispatch_and_counts() {
        let t = PortHandlers::new();
        assert!(t.set(5, Some(record)));
        assert!(!t.set(MAX_PORTS as u32, Some(record)));
        t.dispatch(5);
        assert_eq!(LAST.load(Ordering::SeqCst), 5);
        t.dispatch(6);
        t.dispatch(4000);
        assert_eq!(t.counts(), (1, 2));
        assert!(t.set(5, None));
        assert!(t.get(5).is_none());
        t.dispatch(5);
        assert_eq!(t.counts(), (1, 3));
    }
}
