//! The debug keys: Ctrl-] followed by a letter on the serial line makes the hypervisor print its state.
//!
//! | key | prints |
//! |---|---|
//! | `h` | this list |
//! | `d` | domains: state, scheduling (weight, CPU time, virtual runtime), memory, vCPU registers |
//! | `e` | event channels of every domain |
//! | `t` | time: system time, TSC frequency, next timer deadline |
//! | `c` | console input back to domain 0 (after `xl console`) |
//! | `x` | exit counts of every emulate and hvm domain (their `exits:` lines, so far) |

use crate::console::print;
use crate::domain::state::DomainTable;
use crate::setup::{EVENTS, SCHED, TIME};

/// Act on debug key `key`.
pub fn handle(key: u8, table: &DomainTable, now: u64) {
    match key {
        b'd' => domains(table),
        b'e' => events(table),
        b't' => time(now),
        b'x' => {
            crate::emulate::machine::print_exits(table);
            for d in table.iter() {
                crate::hvm::run::print_exits(d);
            }
        }
        b'c' => {
            crate::console::set_input_owner(0);
            print(format_args!("[hv] console input: domain 0\n"));
        }
        _ => {
            print(format_args!(
                "[hv] debug keys (Ctrl-] then): h help, d domains, e event channels, t time, c console to domain 0, x emulate/hvm exits\n"
            ));
        }
    }
}

fn domains(table: &DomainTable) {
    let sched = SCHED.lock();
    for d in table.iter() {
        let i = usize::from(d.id);
        let r = &d.vcpu.regs;
        print(format_args!(
            "[hv] domain {}: {:?}, sched {:?} weight {} cpu {} ms, {} pages (max {}), base {:#x}, {} continuations\n",
            d.id,
            d.state,
            sched.0.state(i),
            sched.0.weight(i).unwrap_or(0),
            sched.0.cpu_ns(i).unwrap_or(0) / 1_000_000,
            d.mm.tot_pages,
            d.mm.max_pages,
            d.mm.base.addr().0,
            d.mm.preemptions
        ));
        print(format_args!(
            "[hv]   rip={:#x} rsp={:#x} rflags={:#x} cs={:#x} events {}\n",
            r.rip,
            r.rsp,
            r.rflags,
            r.cs,
            if crate::deliver::events_masked(d) {
                "masked"
            } else {
                "enabled"
            }
        ));
    }
}

fn events(table: &DomainTable) {
    let ev = EVENTS.lock();
    for d in table.iter() {
        print(format_args!("[hv] domain {} event channels:", d.id));
        if let Some(t) = ev.table(d.id) {
            for (port, st) in t.bound() {
                print(format_args!(" {port}={st:?}"));
            }
        }
        print(format_args!("\n"));
    }
}

fn time(now: u64) {
    let t = TIME.get().expect("time initialised");
    let next = SCHED.lock().0.next_deadline(now);
    print(format_args!(
        "[hv] time: system {} ns, TSC {} Hz, wall clock base {} s, next deadline {:?} ns\n",
        now, t.timer.tsc_hz, t.wallclock.0, next
    ));
}
