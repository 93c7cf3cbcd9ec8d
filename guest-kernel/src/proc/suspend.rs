//! Suspend and resume for the toolstack's save, snapshot and clone (Xen's protocol, abi deviation o).
//!
//! The hypervisor raises `VIRQ_SUSPEND` (bound by every kernel that runs processes); the upcall only sets a
//! flag, and the scheduler acts on it at its next decision ([`poll`]), where no kernel code is half-way
//! through anything — in particular no machine frame number is held in a register between a P2M lookup
//! and the hypercall that uses it. There the kernel calls `SHUTDOWN_suspend` naming its start-info frame.
//! The call returns:
//!
//! - **in place** (the toolstack resumed this domain: a snapshot, or the request was withdrawn): nothing
//!   changed; carry on;
//! - **in a restored domain**: every machine frame is new. The hypervisor has rewritten the page tables,
//!   start info and the P2M (`mfn_list`), and kept the VIRQ and IPI ports; the kernel re-derives the
//!   frame numbers it caches from their pfns (the current base, every process's L4: the kernel's own L4 is
//!   always looked up in the P2M), reads its possibly new domain id, re-arms the periodic timer (timers
//!   are not part of an image, as in Xen) and reports interdomain channels closed. The pvclock continues:
//!   the hypervisor's system time does.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use abi::types::{PAGE_SHIFT, Pfn};

use super::kernel::{TICK_NS, with};
use crate::event::HANDLERS;
use crate::mm::{KERNEL_VIRT_BASE, MmEnv};
use crate::platform::{IrqSource, IrqState, ops};
use crate::println;

/// The toolstack asked this domain to suspend.
static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Times this kernel continued in a restored domain.
static RESTORES: AtomicU64 = AtomicU64::new(0);

fn on_suspend(_: u32) {
    REQUESTED.store(true, Ordering::Release);
}

/// Take suspend requests (at boot of the process kernel). Without a hypervisor there are none.
pub fn bind() {
    let _ = crate::event::bind(IrqSource::Suspend, Some(on_suspend));
}

/// At the scheduler's decision point (events masked, no lock held): suspend if asked to.
pub fn poll() {
    if REQUESTED.swap(false, Ordering::AcqRel) {
        suspend_now();
    }
}

fn suspend_now() {
    let Some(env) = crate::mm::kernel::env() else {
        return;
    };
    let base_pfn = env.mfn_to_pfn(env.current_base());
    let si_va = crate::boot::facts().start_info as *const abi::xen::StartInfo as u64;
    let si_pfn = Pfn(si_va.wrapping_sub(KERNEL_VIRT_BASE) >> PAGE_SHIFT);
    let before = crate::boot::domid();
    println!("kernel: suspending for the toolstack");
    match ops().suspend(env.pfn_to_mfn(si_pfn)) {
        Ok(false) => println!("kernel: resumed in place"),
        Ok(true) => resumed_elsewhere(&env, before, base_pfn),
        Err(e) => println!("kernel: suspend refused ({e})"),
    }
}

fn resumed_elsewhere(env: &crate::mm::kernel::KernelEnv, before: u32, base_pfn: Option<Pfn>) {
    RESTORES.fetch_add(1, Ordering::Relaxed);
    let now_id = crate::boot::refresh_domid();
    if let Some(p) = base_pfn {
        crate::mm::kernel::set_current_base(env.pfn_to_mfn(p));
    }
    with(|p| {
        for q in p.table.iter_mut() {
            if let Some(s) = q.res.space.as_mut() {
                s.refresh_root(env);
            }
        }
    });
    if let Err(e) = crate::time::start_periodic(TICK_NS) {
        println!("kernel: periodic timer not re-armed ({e})");
    }
    // Interdomain channels do not survive a restore: report the ones this kernel handled.
    let mut closed = 0;
    for port in 1..crate::event::handlers::MAX_PORTS as u32 {
        if HANDLERS.get(port).is_some() && ops().irq_state(port) == Ok(IrqState::Free) {
            HANDLERS.set(port, None);
            closed += 1;
        }
    }
    super::ping::forget();
    println!(
        "kernel: resumed in a restored domain: domain {now_id} (saved from domain {before}), {closed} interdomain channel(s) closed"
    );
}

/// How many times this kernel continued in a restored domain.
pub fn restores() -> u64 {
    RESTORES.load(Ordering::Relaxed)
}
