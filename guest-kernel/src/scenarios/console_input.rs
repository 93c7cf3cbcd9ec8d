//! Console input for domain 0: bytes typed on the serial line arrive as VIRQ_CONSOLE and are read with
//! `console_io(CONSOLEIO_read)`. The scenario binds the VIRQ, announces it is ready, and waits (blocked,
//! woken by the VIRQ) until a whole line `ping` has arrived; other domains are refused the read.

use core::sync::atomic::{AtomicU32, Ordering};

use abi::event_channel::VIRQ_CONSOLE;

use crate::boot::{facts, platform};
use crate::println;
use crate::xtf::{Outcome, Results};

static CONSOLE_EVENTS: AtomicU32 = AtomicU32::new(0);

fn on_console(_: u32) {
    CONSOLE_EVENTS.fetch_add(1, Ordering::Relaxed);
}

/// `console-input`: read one typed line in domain 0.
pub fn console_input(_: &str, r: &mut Results) {
    if facts().domid != 0 {
        let mut b = [0u8; 8];
        let refused = platform().console_read(&mut b).is_err();
        println!(
            "console: read from domain {} refused: {refused}",
            facts().domid
        );
        r.check(refused);
        return;
    }
    if let Err(e) = crate::event::bind_virq(VIRQ_CONSOLE, Some(on_console)) {
        println!("console: cannot bind VIRQ_CONSOLE: {e:?}");
        r.report(Outcome::Error);
        return;
    }
    println!("console: ready for input");
    let mut line: heapless::Vec<u8, 64> = heapless::Vec::new();
    let deadline = crate::time::now().saturating_add(20_000_000_000);
    let got = crate::time::wait_until(
        || {
            let mut buf = [0u8; 32];
            let n = platform().console_read(&mut buf).unwrap_or(0);
            for &b in &buf[..n] {
                if b == b'\n' || b == b'\r' {
                    return line.as_slice() == b"ping";
                }
                let _ = line.push(b);
            }
            false
        },
        Some(deadline),
    );
    let events = CONSOLE_EVENTS.load(Ordering::Relaxed);
    match got {
        Ok(true) => println!("console: got 'ping' after {events} VIRQ_CONSOLE event(s)"),
        other => println!(
            "console: no 'ping' line ({other:?}; read {:?})",
            core::str::from_utf8(&line)
        ),
    }
    r.check(matches!(got, Ok(true)) && events > 0);
}
