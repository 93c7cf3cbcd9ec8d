//! `evtchn-prompt`: an event that becomes deliverable inside a hypercall is delivered on that hypercall's
//! own return, before the guest's next instruction — through the full path (`EVTCHNOP_send`) and through
//! the light table's path (`xen_version(XENVER_version)`, which `irq_restore` issues to collect an event
//! that arrived while events were masked). Every check reads the counter right after the call, without
//! waiting: a return that skipped the pending upcall (left it for a later entry) fails here.
//!
//! The hypervisor answers a light hypercall on its fast path (entry, handler, exit) with the state its
//! last return recorded, as long as nothing has locked its domain table since. Two light calls in a row
//! take it (the first records the state): the checks above put the upcall on that path, and
//! `fast_return_base` checks that an address-space switch in between is not answered with the
//! recorded (old) CR3.

use core::sync::atomic::{AtomicU64, Ordering};

use abi::hypercall::nr;

use crate::boot::platform;
use crate::event;
use crate::platform::xen_pv::raw;
use crate::println;
use crate::xtf::{Outcome, Results};

use super::memory::{check, expect};

/// Rounds of each check.
const ROUNDS: u64 = 20;

static DELIVERED: AtomicU64 = AtomicU64::new(0);

fn on_event(_: crate::platform::Irq) {
    DELIVERED.fetch_add(1, Ordering::SeqCst);
}

/// The scenario ([module docs](self)).
pub fn evtchn_prompt(_: &str, r: &mut Results) {
    if !crate::trap::dispatch::callbacks_ready() {
        println!("no event callback registered");
        r.report(Outcome::Failure);
        return;
    }
    let p = match event::bind_ipi(Some(on_event)) {
        Ok(p) => p,
        Err(e) => {
            check(r, &alloc::format!("bind_ipi: {e}"), false);
            return;
        }
    };
    let enabled = platform().irq_disable();
    platform().irq_restore(true);
    let mut full = true;
    let mut light = true;
    let mut held = true;
    for i in 0..ROUNDS {
        // Events enabled: the send makes the upcall pending inside the hypercall; its return delivers it.
        let before = DELIVERED.load(Ordering::SeqCst);
        let sent = event::send(p);
        full &= sent.is_ok() && DELIVERED.load(Ordering::SeqCst) == before + 1;
        // Events masked: the event waits, through a NULL hypercall's return too ...
        let was = platform().irq_disable();
        let _ = event::send(p);
        raw(nr::NULL, [0; 5]);
        held &= DELIVERED.load(Ordering::SeqCst) == before + 1;
        // ... and unmasking issues xen_version (light table), whose return delivers it.
        platform().irq_restore(was);
        light &= DELIVERED.load(Ordering::SeqCst) == before + 2;
        if !(full && held && light) {
            println!(
                "round {i}: sent {sent:?}, delivered {} (before {before})",
                DELIVERED.load(Ordering::SeqCst)
            );
            break;
        }
    }
    check(
        r,
        "an event sent to itself is delivered on the send's own return",
        full,
    );
    check(
        r,
        "with events masked it waits, across a NULL hypercall",
        held,
    );
    check(
        r,
        "unmasking delivers it on the return of xen_version (light table)",
        light,
    );
    platform().irq_restore(enabled);
    expect(r, "close the IPI port", event::close(p), Ok(()));
    super::fast_return_base::light_after_base_switch(r);
}
