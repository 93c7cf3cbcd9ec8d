//! Scenario tests run by `test=NAME` on the command line, XTF style: each prints `Test: NAME`, checks what
//! it must, prints `Test result: SUCCESS|SKIP|ERROR|FAILURE` and shuts down with XTF's exit code.
//!
//! Tests that expect the hypervisor to *crash* this domain (touching hypervisor memory, privileged
//! instructions) cannot report their own success: if they get as far as printing a result, that result is
//! FAILURE, and the QEMU harness checks the hypervisor's crash report instead.

mod console_input;
mod domctl;
mod entry_isolation;
mod events;
mod fast_return;
mod fast_return_base;
mod fuzz;
mod fuzz_calls;
mod fuzz_domctl;
mod fuzz_seq;
mod hostile_calls;
mod hostile_entry;
mod hypercall_abi;
mod isolation;
mod logdirty_hostile;
mod memory;
mod memory_refusals;
mod migrate_hostile;
mod save_hostile;
mod sharedinfo;
mod sysctl;
mod time_sched;
mod trap_hostile;
mod traps;

use crate::println;
use crate::xtf::{Outcome, Results};

/// A scenario: name, one-line description, body.
struct Scenario {
    name: &'static str,
    about: &'static str,
    run: fn(cmdline: &str, r: &mut Results),
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "unknown-hypercall",
        about: "unknown hypercall numbers return -ENOSYS",
        run: hypercall_abi::unknown_hypercall,
    },
    Scenario {
        name: "console-hostile",
        about: "console_io and friends refuse hostile buffers",
        run: hypercall_abi::console_hostile,
    },
    Scenario {
        name: "hv-read",
        about: "reading hypervisor memory stops this domain",
        run: isolation::hv_read,
    },
    Scenario {
        name: "hv-write",
        about: "writing hypervisor memory stops this domain",
        run: isolation::hv_write,
    },
    Scenario {
        name: "entry-write",
        about: "the entry region is readable but not writable",
        run: isolation::entry_write,
    },
    Scenario {
        name: "pt-write",
        about: "the domain's own page tables are read-only to it",
        run: isolation::pt_write,
    },
    Scenario {
        name: "privileged",
        about: "a privileged instruction stops this domain only",
        run: isolation::privileged,
    },
    Scenario {
        name: "as-churn",
        about: "1,000 address spaces created, used and destroyed leak nothing",
        run: memory::as_churn,
    },
    Scenario {
        name: "pt-writable",
        about: "a writable mapping of a page table is refused, read-only accepted",
        run: memory_refusals::pt_writable,
    },
    Scenario {
        name: "map-foreign",
        about: "mapping a hypervisor or foreign frame is refused (-EPERM)",
        run: memory_refusals::map_foreign,
    },
    Scenario {
        name: "l1-selfref",
        about: "an L1 mapping itself writable is refused, read-only accepted",
        run: memory_refusals::l1_selfref,
    },
    Scenario {
        name: "pin-writable",
        about: "pinning a frame mapped writable is refused (-EBUSY)",
        run: memory_refusals::pin_writable,
    },
    Scenario {
        name: "baseptr-bad",
        about: "bad NEW_BASEPTR targets are refused; the old base stays",
        run: memory_refusals::baseptr_bad,
    },
    Scenario {
        name: "batch-bad-middle",
        about: "a bad 5th entry of 8 stops the batch with done == 4",
        run: memory_refusals::batch_bad_middle,
    },
    Scenario {
        name: "multicall-mix",
        about: "update_va_mapping and mmu_update mixed in one multicall",
        run: memory::multicall_mix,
    },
    Scenario {
        name: "million-batch",
        about: "one mmu_update of 1,000,000 requests (run with dom_mem=64M)",
        run: memory::million_batch,
    },
    Scenario {
        name: "ticker",
        about: "print tick N and yield, 200 times",
        run: memory::ticker,
    },
    Scenario {
        name: "reservation",
        about: "16 frames given back and taken again",
        run: memory::reservation,
    },
    Scenario {
        name: "trap-kernel",
        about: "#DE, #BP, #GP, #PF, #UD in the kernel reach its handlers",
        run: traps::trap_kernel,
    },
    Scenario {
        name: "trap-user",
        about: "#DE, #BP, #GP, #PF from ring 3 reach the kernel; SYSCALL and int 0x80",
        run: traps::trap_user,
    },
    Scenario {
        name: "trap-bad-stack",
        about: "a page fault on an unusable kernel stack crashes this domain",
        run: traps::trap_bad_stack,
    },
    Scenario {
        name: "int80-early",
        about: "user int 0x80 with no gate registered: #GP (mode=no-table: crash)",
        run: traps::int80_early,
    },
    Scenario {
        name: "hostile-traps",
        about: "bad trap tables, callbacks, stacks refused; iret frames sanitized",
        run: trap_hostile::hostile_traps,
    },
    Scenario {
        name: "iret-noncanonical",
        about: "an iret frame with a non-canonical RIP crashes this domain",
        run: trap_hostile::iret_noncanonical,
    },
    Scenario {
        name: "evtchn-ping",
        about: "domain 0 of the ping-pong: 10,000 interdomain round trips",
        run: events::evtchn_ping,
    },
    Scenario {
        name: "evtchn-pong",
        about: "domain 1 of the ping-pong (mode=poll: SCHEDOP_poll)",
        run: events::evtchn_pong,
    },
    Scenario {
        name: "evtchn-prompt",
        about: "an event raised inside a hypercall is delivered on that hypercall's return",
        run: fast_return::evtchn_prompt,
    },
    Scenario {
        name: "evtchn-mask",
        about: "masked events are delivered after unmask",
        run: events::evtchn_mask,
    },
    Scenario {
        name: "evtchn-hostile",
        about: "domain 1: another domain's ports and bad ports are refused",
        run: events::evtchn_hostile,
    },
    Scenario {
        name: "evtchn-hostile-peer",
        about: "domain 0 of evtchn-hostile: private ports stay untouched",
        run: events::evtchn_hostile_peer,
    },
    Scenario {
        name: "sleep-10ms",
        about: "a 10 ms sleep measured with the pvclock; vCPU timers",
        run: time_sched::sleep_10ms,
    },
    Scenario {
        name: "clock-monotonic",
        about: "10^6 pvclock reads never go backwards",
        run: time_sched::clock_monotonic,
    },
    Scenario {
        name: "sched-spin",
        about: "spin with events masked through a 2 s window, counting",
        run: time_sched::sched_spin,
    },
    Scenario {
        name: "sched-block",
        about: "sleep 10 ms at a time through a 2 s window, counting",
        run: time_sched::sched_block,
    },
    Scenario {
        name: "sched-compute",
        about: "compute through a 2 s window, counting",
        run: time_sched::sched_compute,
    },
    Scenario {
        name: "console-input",
        about: "domain 0 reads a typed line (VIRQ_CONSOLE + console_io read)",
        run: console_input::console_input,
    },
    Scenario {
        name: "domains",
        about: "domain 0 lists the domains (sysctl); the others are refused",
        run: sysctl::domains,
    },
    Scenario {
        name: "hostile-entry",
        about: "far transfers, lldt/ltr, SYSCALL from ring 1 and to the hole, TF across entries",
        run: hostile_entry::hostile_entry,
    },
    Scenario {
        name: "hostile-entry-crash",
        about: "mode=sysret|ltr: a return to the hole, an ltr without handler (crashed)",
        run: hostile_entry::hostile_entry_crash,
    },
    Scenario {
        name: "hostile-calls",
        about: "segment bases, iret flags, multicall flushes, event and console bounds",
        run: hostile_calls::hostile_calls,
    },
    Scenario {
        name: "sharedinfo-pin",
        about: "shared_info remapped read-only still cannot become a page table (-EBUSY)",
        run: sharedinfo::sharedinfo_pin,
    },
    Scenario {
        name: "poll-masked-virq",
        about: "SCHEDOP_poll on the masked VIRQ_TIMER port wakes at the timer",
        run: sharedinfo::poll_masked_virq,
    },
    Scenario {
        name: "ist-victim",
        about: "IST leak pair, domain 1: single-steps (#DB) with secrets in 11 registers",
        run: entry_isolation::ist_victim,
    },
    Scenario {
        name: "ist-attacker",
        about: "IST leak pair, domain 0: scans every readable entry-region page for the secrets",
        run: entry_isolation::ist_attacker,
    },
    Scenario {
        name: "null-ss",
        about: "null SS, then via=int82|syscall|fault|priv|badstack: crashed at CPL 0 (TCG) or held",
        run: entry_isolation::null_ss,
    },
    Scenario {
        name: "selectors",
        about: "every documented selector into DS/ES/FS/GS/SS in ring 1 and ring 3: no fault",
        run: entry_isolation::selectors,
    },
    Scenario {
        name: "fuzz",
        about: "hypercall fuzzer: seed=S count=N [wild=per-million] (see scenarios/fuzz.rs)",
        run: fuzz::fuzz,
    },
    Scenario {
        name: "selftest-fail",
        about: "harness self-test: must be reported as FAILURE",
        run: selftest_fail,
    },
    Scenario {
        name: "domctl-hostile",
        about: "domctl: -EPERM for every other domain; garbage from domain 0 refused",
        run: domctl::domctl_hostile,
    },
    Scenario {
        name: "save-hostile",
        about: "save/restore: protocol errors, hostile images refused, nothing left behind",
        run: save_hostile::save_hostile,
    },
    Scenario {
        name: "migrate-hostile-rx",
        about: "migration receive: hostile streams from a host peer refused, nothing kept",
        run: migrate_hostile::migrate_hostile_rx,
    },
    Scenario {
        name: "migrate-hostile-tx",
        about: "migration source: busy, crashed and destroyed domains, refused phases",
        run: migrate_hostile::migrate_hostile_tx,
    },
    Scenario {
        name: "logdirty-hostile",
        about: "log-dirty (shadow_op): bad requests refused; a harvest sees exactly the written pages",
        run: logdirty_hostile::logdirty_hostile,
    },
    Scenario {
        name: "logdirty-nonpv",
        about: "log-dirty on a domain that is not PV (domain 1): -EOPNOTSUPP",
        run: logdirty_hostile::logdirty_nonpv,
    },
    Scenario {
        name: "logdirty-writer",
        about: "write four known pages every 20 ms until destroyed (for logdirty-hostile)",
        run: logdirty_hostile::logdirty_writer,
    },
    Scenario {
        name: "tick-forever",
        about: "print a tick every 100 ms until destroyed (xl pause/unpause)",
        run: domctl::tick_forever,
    },
    Scenario {
        name: "idle-forever",
        about: "boot, then sleep until destroyed",
        run: domctl::idle_forever,
    },
    Scenario {
        name: "domctl-limit",
        about: "create domains until -ENOSPC at MAX_DOMAINS, destroy them all",
        run: domctl::domctl_limit,
    },
    Scenario {
        name: "domctl-vcpu",
        about: "create paused, get/set the vCPU context, max_mem, unpause, destroy",
        run: domctl::domctl_vcpu,
    },
];

/// Run scenario `name`; returns the exit code.
pub fn run(name: &str, cmdline: &str) -> u32 {
    let Some(s) = SCENARIOS.iter().find(|s| s.name == name) else {
        println!("Test: {name}");
        println!("no such test; known tests:");
        for s in SCENARIOS {
            println!("  {:<18} {}", s.name, s.about);
        }
        println!("Test result: ERROR: unknown test '{name}'");
        return Outcome::Error.exit_code();
    };
    println!("Test: {} ({})", s.name, s.about);
    let mut results = Results::new();
    (s.run)(cmdline, &mut results);
    let o = results.outcome();
    println!("Test result: {}", o.as_str());
    o.exit_code()
}

fn selftest_fail(_: &str, r: &mut Results) {
    println!("reporting a deliberate failure so the harness proves it can see one");
    r.report(Outcome::Failure);
}
