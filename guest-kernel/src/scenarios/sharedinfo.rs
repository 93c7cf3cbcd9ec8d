//! Hostile scenarios around the frames the hypervisor writes for this domain (issue 10, part 0):
//! `sharedinfo-pin` (the shared_info page, remapped read-only, must not become a page table or a
//! descriptor table by any route) and `poll-masked-virq` (`SCHEDOP_poll` on a masked VIRQ port wakes at
//! the VIRQ, not at its timeout).

use core::sync::atomic::{AtomicU64, Ordering};

use abi::errno::Errno;
use abi::event_channel::EvtchnPort;
use abi::hypercall::nr;
use abi::types::{Gva, Mfn, Pfn};
use abi::vcpu::{VCPUOP_REGISTER_VCPU_INFO, VcpuRegisterVcpuInfo};

use super::memory::{check, expect, mm_env, mmu1, must};
use crate::boot::{facts, platform};
use crate::event;
use crate::mm::kernel::KernelEnv;
use crate::mm::physmap::leaf_flags;
use crate::mm::pte::{Level, Pte, PteFlags, entry_maddr, index};
use crate::mm::{MmEnv, MmError};
use crate::platform::xen_pv::{MappingFlush, XEN_PV, raw};
use crate::println;
use crate::time::{self, NS_PER_MS, NS_PER_SEC, now, wait_until};
use crate::xtf::{Outcome, Results};

/// The leaf entry that maps `va` in the kernel's address space, walked through the physmap.
fn leaf_entry(env: &KernelEnv, va: u64) -> Option<Pte> {
    let (mut table, _) = env.kernel_base();
    for level in [Level::L4, Level::L3, Level::L2] {
        let e = Pte(env.read_entry(table, index(va, level)));
        if !e.is_present() {
            return None;
        }
        table = env.mfn_to_pfn(e.mfn())?;
    }
    Some(Pte(env.read_entry(table, index(va, Level::L1))))
}

/// A raw hypercall's result as a `Result` (for printing).
fn result_of(ret: i64) -> Result<(), Errno> {
    match ret {
        0.. => Ok(()),
        r => Err(Errno::from_ret(r).unwrap_or(Errno::EINVAL)),
    }
}

/// Expect a refusal of any kind (a hypercall this hypervisor does not implement counts).
fn refused(r: &mut Results, what: &str, ret: i64) {
    let res = result_of(ret);
    let name = res.err().map_or("0", Errno::name);
    if r.check(res.is_err()) {
        println!("  ok   {what}: refused ({name})");
    } else {
        println!("  FAIL {what}: accepted");
    }
}

/// A zeroed page of this domain, mapped read-only in the physmap and pinned as a table of `level`.
fn scratch_table(env: &KernelEnv, level: Level, r: &mut Results) -> Option<(Pfn, Mfn)> {
    let p = must(r, "allocate", env.alloc_page().ok_or(MmError::OutOfMemory))?;
    env.zero_frame(p);
    let m = env.pfn_to_mfn(p);
    let (_, res) = mmu1(env.physmap_entry(p), Pte::new(m, leaf_flags(true)).0);
    expect(r, "scratch page read-only in the physmap", res, Ok(()));
    let pinned = res.and_then(|()| platform().pin_table(level, m));
    expect(
        r,
        &alloc::format!("pin the scratch page as {level:?}"),
        pinned,
        Ok(()),
    );
    pinned.is_ok().then_some((p, m))
}

/// Unpin a scratch table, map it writable again and free it.
fn drop_scratch(env: &KernelEnv, (p, m): (Pfn, Mfn), r: &mut Results) {
    expect(
        r,
        "unpin the scratch table",
        platform().unpin_table(m),
        Ok(()),
    );
    let (_, res) = mmu1(env.physmap_entry(p), Pte::new(m, leaf_flags(false)).0);
    expect(r, "scratch page writable again", res, Ok(()));
    if res.is_ok() {
        env.free_page(p);
    }
}

static IPIS: AtomicU64 = AtomicU64::new(0);

fn ipi(_: EvtchnPort) {
    IPIS.fetch_add(1, Ordering::SeqCst);
}

/// Every attempt to make the shared_info frame a table once its writable mapping is gone (the sequence
/// of the report), while events are masked so that no upcall writes the read-only page.
fn attack(env: &KernelEnv, shared: Mfn, r: &mut Results) {
    for level in [Level::L1, Level::L2, Level::L3, Level::L4] {
        expect(
            r,
            &alloc::format!("mmuext_op PIN_{level:?}_TABLE of shared_info"),
            platform().pin_table(level, shared),
            Err(Errno::EBUSY),
        );
    }
    expect(
        r,
        "mmuext_op NEW_BASEPTR to shared_info",
        platform().switch_address_space(shared.0),
        Err(Errno::EBUSY),
    );
    // Linked as a lower-level table: as an L1 from a scratch L2, as an L2 from a scratch L3.
    for (level, what) in [
        (Level::L2, "an L1 from a scratch L2"),
        (Level::L3, "an L2 from a scratch L3"),
    ] {
        let Some(t) = scratch_table(env, level, r) else {
            return;
        };
        for flags in [PteFlags::PRESENT, PteFlags::PRESENT | PteFlags::WRITABLE] {
            let (done, res) = mmu1(entry_maddr(t.1, 7), Pte::new(shared, flags).0);
            expect(
                r,
                &alloc::format!("mmu_update linking shared_info as {what} ({flags:?})"),
                res,
                Err(Errno::EBUSY),
            );
            check(
                r,
                "  nothing applied",
                done == 0 && env.read_entry(t.0, 7) == 0,
            );
        }
        drop_scratch(env, t, r);
    }
    // Descriptor tables: a GDT in that frame, one descriptor written into it.
    let frames = [shared.0];
    refused(
        r,
        "set_gdt on the shared_info frame",
        raw(nr::SET_GDT, [frames.as_ptr() as u64, 512, 0, 0, 0]),
    );
    let code_desc = 0x00af_9a00_0000_ffffu64;
    refused(
        r,
        "update_descriptor into the shared_info frame",
        raw(nr::UPDATE_DESCRIPTOR, [shared.0 << 12, code_desc, 0, 0, 0]),
    );
    let released = platform().decrease_reservation(&[shared.0]);
    check(
        r,
        &alloc::format!("decrease_reservation of shared_info releases nothing ({released:?})"),
        matches!(released, Ok(0) | Err(_)),
    );
}

/// `sharedinfo-pin`: the shared_info frame, mapped read-only, still cannot become a page table or a
/// descriptor table; then the writable mapping comes back and events work.
pub fn sharedinfo_pin(_: &str, r: &mut Results) {
    let Some(env) = mm_env(r) else { return };
    let va = XEN_PV.shared_info() as u64;
    let shared = Mfn(facts().start_info.shared_info >> 12);
    println!(
        "shared_info at {va:#x}, machine frame {:#x} (start_info.shared_info)",
        shared.0
    );
    let Some(orig) = leaf_entry(&env, va) else {
        check(r, "the shared_info address is mapped", false);
        return;
    };
    let writable = orig
        .flags()
        .contains(PteFlags::PRESENT | PteFlags::WRITABLE);
    if !check(
        r,
        &alloc::format!("its leaf entry {:#x} maps that frame writable", orig.0),
        orig.mfn() == shared && writable,
    ) {
        return;
    }

    // No upcall may run while the page is read-only: the handler writes it.
    let enabled = platform().irq_disable();
    let ro = Pte(orig.0 & !PteFlags::WRITABLE.bits());
    let remapped = platform().update_va_mapping(Gva(va), ro.0, MappingFlush::Page);
    expect(
        r,
        "update_va_mapping: shared_info read-only",
        remapped,
        Ok(()),
    );
    if remapped.is_ok() {
        attack(&env, shared, r);
        // The domain still reads it (the mask byte it set before the remap).
        // SAFETY: the shared_info address stays mapped (read-only now); reading one byte is harmless.
        let mask = unsafe {
            core::ptr::read_volatile(
                &raw const (*XEN_PV.shared_info()).vcpu_info[0].evtchn_upcall_mask,
            )
        };
        check(
            r,
            "the read-only shared_info still reads (events mask set)",
            mask != 0,
        );
        let back = platform().update_va_mapping(Gva(va), orig.0, MappingFlush::Page);
        expect(
            r,
            "update_va_mapping: shared_info writable again",
            back,
            Ok(()),
        );
        if back.is_err() {
            // Leave events masked: an upcall would fault on the read-only page.
            return;
        }
    }
    platform().irq_restore(enabled);
    check(
        r,
        "the leaf entry is the original one",
        leaf_entry(&env, va) == Some(orig),
    );

    // The reverse order: a frame that is a page table cannot become a page the hypervisor writes.
    if let Some(t) = scratch_table(&env, Level::L1, r) {
        let info = VcpuRegisterVcpuInfo {
            mfn: t.1.0,
            offset: 0,
            rsvd: 0,
        };
        refused(
            r,
            "VCPUOP_register_vcpu_info on a pinned L1",
            raw(
                nr::VCPU_OP,
                [VCPUOP_REGISTER_VCPU_INFO, 0, &raw const info as u64, 0, 0],
            ),
        );
        drop_scratch(&env, t, r);
    }

    // Events still work: an IPI to this vCPU, and the timer.
    match event::bind_ipi(Some(ipi)) {
        Ok(p) => {
            expect(
                r,
                &alloc::format!("send on IPI port {p}"),
                event::send(p),
                Ok(()),
            );
            let got = wait_until(
                || IPIS.load(Ordering::SeqCst) >= 1,
                Some(now() + NS_PER_SEC),
            );
            check(r, "the IPI is delivered", got == Ok(true));
            expect(r, "close the IPI port", event::close(p), Ok(()));
        }
        Err(e) => {
            check(r, &alloc::format!("bind_ipi: {e}"), false);
        }
    }
    let t0 = now();
    expect(
        r,
        "sleep 2 ms (timer VIRQ)",
        time::sleep(2 * NS_PER_MS),
        Ok(()),
    );
    check(r, "the clock moved on", now() >= t0 + 2 * NS_PER_MS);
}

/// One `SCHEDOP_poll` on the masked timer port with the timer armed `after` ns ahead (or not armed) and
/// `timeout` (absolute, 0: none). Returns the elapsed time and whether the port was pending afterwards.
fn poll_once(
    port: EvtchnPort,
    after: Option<u64>,
    timeout: Option<u64>,
) -> (Result<(), Errno>, u64, bool) {
    let start = now();
    if let Some(a) = after
        && let Err(e) = platform().set_timer(start + a)
    {
        return (Err(e), 0, false);
    }
    let res = XEN_PV.sched_poll(&[port], timeout.map_or(0, |t| start + t));
    let elapsed = now().saturating_sub(start);
    (res, elapsed, event::take_pending(port))
}

/// Rounds of each timer case: the vCPU may be preempted between arming the timer and polling, so one
/// round may find the port pending already; ten rounds make sure most of them really sleep in the poll.
const POLL_ROUNDS: u32 = 10;

/// `poll-masked-virq`: `SCHEDOP_poll` waits for the pending bit whatever the mask, so a VIRQ_TIMER on the
/// masked timer port ends the poll at the timer (1 ms), not at the timeout (1 s) — or never (timeout 0).
pub fn poll_masked_virq(_: &str, r: &mut Results) {
    let Some(port) = time::timer_port() else {
        println!("no VIRQ_TIMER port (see the traps: line at boot)");
        r.report(Outcome::Failure);
        return;
    };
    if !time::available() {
        r.report(Outcome::Failure);
        return;
    }
    event::mask(port);
    event::take_pending(port);
    println!("VIRQ_TIMER port {port}, masked");
    for (what, timeout) in [("1 s timeout", Some(NS_PER_SEC)), ("no timeout", None)] {
        let (mut all_ok, mut all_pending) = (true, true);
        let (mut best, mut worst) = (u64::MAX, 0);
        for _ in 0..POLL_ROUNDS {
            let (res, elapsed, pending) = poll_once(port, Some(NS_PER_MS), timeout);
            all_ok &= res.is_ok();
            all_pending &= pending;
            best = best.min(elapsed);
            worst = worst.max(elapsed);
        }
        check(
            r,
            &alloc::format!("SCHEDOP_poll x{POLL_ROUNDS}, 1 ms timer, {what}: each returned 0"),
            all_ok,
        );
        check(
            r,
            &alloc::format!(
                "  woke after {}..{} us: at the timer (1000 us), long before 1 s",
                best / 1000,
                worst / 1000
            ),
            best >= NS_PER_MS && worst < 200 * NS_PER_MS,
        );
        check(
            r,
            "  the timer port was pending each time (the wake-up's cause)",
            all_pending,
        );
    }
    // The timeout alone still ends a poll.
    let (res, elapsed, pending) = poll_once(port, None, Some(20 * NS_PER_MS));
    expect(r, "SCHEDOP_poll, no timer, 20 ms timeout", res, Ok(()));
    check(
        r,
        &alloc::format!(
            "  woke after {} us: at the timeout (20000 us)",
            elapsed / 1000
        ),
        (20 * NS_PER_MS..220 * NS_PER_MS).contains(&elapsed),
    );
    check(r, "  nothing pending", !pending);
    expect(r, "unmask the timer port", event::unmask(port), Ok(()));
    let t0 = now();
    expect(
        r,
        "sleep 2 ms with the port unmasked",
        time::sleep(2 * NS_PER_MS),
        Ok(()),
    );
    check(r, "the clock moved on", now() >= t0 + 2 * NS_PER_MS);
}
