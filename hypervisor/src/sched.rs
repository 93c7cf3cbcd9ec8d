//! The scheduler: choose the vCPU to run next and return to it; power off when none is left.
//!
//! Round-robin over runnable domains, without preemption yet: a vCPU runs until it traps (yield, shutdown,
//! crash). Timer-driven preemption, blocking and weights arrive with the timer work.

use crate::arch::{self, entry, serial};
use crate::domain::state::exit_status;
use crate::mm::pcid;
use crate::regs::sanitize;
use crate::setup::{DOMAINS, HV, integrity_checksum};
use crate::trap::crash_domain;

/// Run a vCPU: the current one if `switch` is false and it can run, else the next runnable one.
pub fn schedule(switch: bool) -> ! {
    loop {
        let mut table = DOMAINS.lock();
        let current_ok = table
            .current
            .is_some_and(|c| table.slots[c].as_ref().is_some_and(|d| d.runnable()));
        let next = if !switch && current_ok {
            table.current
        } else {
            table.next_runnable(table.current)
        };
        let Some(i) = next else {
            drop(table);
            power_off();
        };
        let prev_loaded = table.segments_loaded;
        let dom = table.slots[i]
            .as_mut()
            .expect("next_runnable returns existing domains");
        if !crate::deliver::upcall(dom) {
            continue;
        }
        match sanitize(&dom.vcpu.regs) {
            Err(e) => {
                crash_domain(dom, format_args!("cannot resume: {e}"));
                continue;
            }
            Ok(frame) => {
                let switching = table.current != Some(i);
                if switching {
                    log::debug!("switching to domain {i}");
                }
                table.current = Some(i);
                // Segment state: save the one in the CPU (if it belongs to another live domain), load ours.
                if prev_loaded != Some(i) {
                    if let Some(p) = prev_loaded.and_then(|p| table.slots[p].as_mut()) {
                        let s = arch::save_segments();
                        p.vcpu.pv.selectors = s.selectors.0;
                        [p.vcpu.pv.fs_base, p.vcpu.pv.gs_base, p.vcpu.pv.gs_kernel] = s.bases;
                    }
                    table.segments_loaded = Some(i);
                }
                let dom = table.slots[i].as_mut().expect("checked above");
                let pv = &mut dom.vcpu.pv;
                if prev_loaded != Some(i) {
                    arch::load_segments(&arch::GuestSegments {
                        selectors: arch::cpu::DataSelectors(pv.selectors),
                        bases: [pv.fs_base, pv.gs_base, pv.gs_kernel],
                    });
                    pv.segments_dirty = false;
                } else if pv.segments_dirty {
                    arch::load_segment_bases([pv.fs_base, pv.gs_base, pv.gs_kernel]);
                    pv.segments_dirty = false;
                }
                if switching || pv.gates_dirty {
                    arch::set_direct_gate(pv.direct_gate());
                    arch::set_rsp1(pv.kernel_sp);
                    pv.gates_dirty = false;
                }
                let cr3 = pcid::cr3_value(
                    dom.mm.base.addr().0,
                    arch::pcid_enabled(),
                    pcid::domain_pcid(dom.id),
                    dom.mm.flush_tlb,
                );
                dom.mm.flush_tlb = false;
                let fx = dom.vcpu.fx.0.as_mut_ptr();
                arch::set_fxsave_area(fx);
                drop(table);
                // SAFETY: cr3 is the domain's validated base (entry region installed); `fx` points into the
                // domain's slot of the static domain table, which stays put while the domain exists; the
                // frame was sanitized; no lock is held.
                unsafe { entry::exit_to_guest(&frame, cr3, fx) }
            }
        }
    }
}

/// No runnable domain is left: report, check the hypervisor's integrity and stop the machine.
fn power_off() -> ! {
    let mut status = exit_status(DOMAINS.lock().iter());
    if HV
        .get()
        .is_some_and(|h| h.boot_errors.load(core::sync::atomic::Ordering::Relaxed))
    {
        log::error!("some boot modules could not be started (see above)");
        status = status.max(abi::exit::EXIT_BOOT_ERROR);
    }
    match HV.get() {
        Some(hv) if hv.integrity == integrity_checksum() => {
            log::info!("integrity: hypervisor text and rodata unchanged")
        }
        _ => log::error!("integrity: hypervisor text, rodata or canary CHANGED"),
    }
    log::info!("all domains finished: exit status {status}");
    serial::debug_exit(status)
}
