//! Per-vector trap handlers: a small lock-free table (a trap can arrive while a handler is being
//! installed, so there is no lock to deadlock on). Pure: host-tested.
//!
//! Slots: the 32 exception vectors, the direct `int 0x80` gate and the SYSCALL callback. A slot holds a
//! function pointer or nothing; [`HandlerGuard`] installs a handler for a scope and puts the previous one
//! back, which is how scenarios install expectations.

use core::sync::atomic::{AtomicPtr, Ordering};

use super::frame::{Disposition, TrapCtx, TrapFrame, VECTOR_INT80, VECTOR_SYSCALL};

/// A trap handler: may change the frame (skip an instruction, set a return value) and says what next.
pub type TrapHandler = fn(&mut TrapFrame, &TrapCtx) -> Disposition;

/// Number of slots: vectors 0..=31, `int 0x80`, SYSCALL.
pub const SLOTS: usize = 34;

/// The slot of a vector, if it has one.
pub const fn slot_of(vector: u64) -> Option<usize> {
    match vector {
        v if v < 32 => Some(v as usize),
        VECTOR_INT80 => Some(32),
        VECTOR_SYSCALL => Some(33),
        _ => None,
    }
}

/// The handler table.
pub struct TrapRegistry {
    slots: [AtomicPtr<()>; SLOTS],
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

impl TrapRegistry {
    /// An empty table.
    pub const fn new() -> TrapRegistry {
        TrapRegistry {
            slots: [EMPTY; SLOTS],
        }
    }

    fn decode(p: *mut ()) -> Option<TrapHandler> {
        if p.is_null() {
            None
        } else {
            // SAFETY: the only non-null values ever stored are `TrapHandler` function pointers cast to
            // `*mut ()` by `set`; function and data pointers have the same size and representation here.
            Some(unsafe { core::mem::transmute::<*mut (), TrapHandler>(p) })
        }
    }

    /// Install (`Some`) or remove (`None`) the handler of `vector`; returns the previous one. Vectors
    /// without a slot are ignored (and `None` returned).
    pub fn set(&self, vector: u64, handler: Option<TrapHandler>) -> Option<TrapHandler> {
        let slot = slot_of(vector)?;
        let p = handler.map_or(core::ptr::null_mut(), |h| h as *mut ());
        Self::decode(self.slots[slot].swap(p, Ordering::AcqRel))
    }

    /// The handler of `vector`, if any.
    pub fn get(&self, vector: u64) -> Option<TrapHandler> {
        Self::decode(self.slots[slot_of(vector)?].load(Ordering::Acquire))
    }

    /// Install `handler` for `vector` until the guard is dropped.
    pub fn scoped(&self, vector: u64, handler: TrapHandler) -> HandlerGuard<'_> {
        let previous = self.set(vector, Some(handler));
        HandlerGuard {
            registry: self,
            vector,
            previous,
        }
    }
}

impl Default for TrapRegistry {
    fn default() -> Self {
        Self::new()
    }
}

/// Restores a vector's previous handler when dropped.
pub struct HandlerGuard<'a> {
    registry: &'a TrapRegistry,
    vector: u64,
    previous: Option<TrapHandler>,
}

impl Drop for HandlerGuard<'_> {
    fn drop(&mut self) {
        self.registry.set(self.vector, self.previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(f: &mut TrapFrame, _: &TrapCtx) -> Disposition {
        f.rip += 2;
        Disposition::Resume
    }

    fn exit(f: &mut TrapFrame, _: &TrapCtx) -> Disposition {
        Disposition::ExitUser(f.rdi)
    }

    fn ctx(vector: u64) -> TrapCtx {
        TrapCtx {
            vector,
            from_user: false,
            cr2: 0,
            events_were_masked: true,
        }
    }

    #[test]
    fn slots() {
        assert_eq!(slot_of(0), Some(0));
        assert_eq!(slot_of(31), Some(31));
        assert_eq!(slot_of(32), None);
        assert_eq!(slot_of(0x80), Some(32));
        assert_eq!(slot_of(0x100), Some(33));
        assert_eq!(slot_of(super::super::frame::VECTOR_EVENT), None);
    }

    #[test]
    fn set_get_and_call() {
        let r = TrapRegistry::new();
        assert!(r.get(14).is_none());
        assert!(r.set(14, Some(skip)).is_none());
        let mut f = TrapFrame {
            rip: 0x1000,
            rdi: 9,
            ..Default::default()
        };
        let h = r.get(14).unwrap();
        assert_eq!(h(&mut f, &ctx(14)), Disposition::Resume);
        assert_eq!(f.rip, 0x1002);
        assert!(r.set(14, None).is_some());
        assert!(r.get(14).is_none());
        assert!(r.set(0x42, Some(skip)).is_none(), "no slot: ignored");
        assert!(r.get(0x42).is_none());
    }

    #[test]
    fn scoped_handlers_restore_the_previous_one() {
        let r = TrapRegistry::new();
        r.set(0x80, Some(exit));
        {
            let _g = r.scoped(0x80, skip);
            let mut f = TrapFrame::default();
            assert_eq!(
                r.get(0x80).unwrap()(&mut f, &ctx(0x80)),
                Disposition::Resume
            );
            {
                let _h = r.scoped(0x80, exit);
                f.rdi = 5;
                assert_eq!(
                    r.get(0x80).unwrap()(&mut f, &ctx(0x80)),
                    Disposition::ExitUser(5)
                );
            }
            assert_eq!(
                r.get(0x80).unwrap()(&mut f, &ctx(0x80)),
                Disposition::Resume
            );
        }
        let mut f = TrapFrame {
            rdi: 3,
            ..Default::default()
        };
        assert_eq!(
            r.get(0x80).unwrap()(&mut f, &ctx(0x80)),
            Disposition::ExitUser(3)
        );
        let _g = r.scoped(3, skip);
        drop(_g);
        assert!(r.get(3).is_none());
    }
}
