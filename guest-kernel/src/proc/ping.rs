//! Event-channel ping-pong between domains: the `evtchn_ping` system call in domain 0, and the
//! `ping-server` command a second domain runs to answer it.
//!
//! Rendezvous without a store: at boot, domain 0's process kernel allocates an unbound port for domain 1
//! ([`offer`]); the server scans domain 0's low ports until one accepts (`event::bind_offered`, the same
//! convention as `bench-partner`). The server echoes every event, blocked in `SCHEDOP_poll` between them,
//! and checks every half second that the channel is still bound: when domain 0 closes it (its shell
//! exited) or dies, the server powers off too.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use abi::errno::Errno;

use super::kernel;
use super::table::Wait;
use crate::event;
use crate::platform::{Irq, IrqState, ops};
use crate::println;
use crate::time::{self, NS_PER_MS, NS_PER_SEC};

/// Domain 0's port for the server (0: none).
static PORT: AtomicU32 = AtomicU32::new(0);
/// A reply arrived.
static REPLY: AtomicBool = AtomicBool::new(false);

fn on_reply(_: Irq) {
    REPLY.store(true, Ordering::Release);
}

/// True if a reply arrived since the last ping was sent.
pub fn replied() -> bool {
    REPLY.load(Ordering::Acquire)
}

/// Domain 0: offer a port to domain 1 (quietly nothing if there is no domain 1).
pub fn offer() {
    if crate::boot::domid() != 0 {
        return;
    }
    if let Ok(port) = event::alloc_unbound(1) {
        event::set_handler(port, Some(on_reply));
        PORT.store(port, Ordering::Release);
    }
}

/// Forget the offered port without closing it (a restore closed it already).
pub fn forget() {
    PORT.store(0, Ordering::Release);
}

/// Close the offered port (the server notices and stops).
pub fn close() {
    let port = PORT.swap(0, Ordering::AcqRel);
    if port != 0 {
        let _ = event::close(port);
    }
}

/// `rounds` round trips with the server; returns the total time in ns.
pub fn ping(rounds: u64) -> Result<u64, Errno> {
    let port = PORT.load(Ordering::Acquire);
    if port == 0 {
        return Err(Errno::ENODEV);
    }
    if ops().irq_state(port) != Ok(IrqState::Peer) {
        return Err(Errno::ENODEV);
    }
    let start = time::now();
    for _ in 0..rounds {
        REPLY.store(false, Ordering::Release);
        event::send(port)?;
        let deadline = time::now() + NS_PER_SEC;
        while !replied() {
            if time::now() >= deadline {
                return Err(Errno::ETIMEDOUT);
            }
            kernel::block_current(Wait::Event(deadline));
        }
    }
    Ok(time::now() - start)
}

/// `ping-server`: answer domain 0's pings until it closes the channel. Returns the exit code.
pub fn serve() -> u32 {
    let mut port = None;
    let give_up = time::now() + 30 * NS_PER_SEC;
    while port.is_none() && time::now() < give_up {
        port = event::bind_offered(0);
        if port.is_none() {
            let _ = time::sleep(10 * NS_PER_MS);
        }
    }
    let Some(port) = port else {
        println!("ping-server: domain 0 offered no port; stopping");
        return 0;
    };
    event::mask(port);
    println!("ping-server: answering domain 0 on port {port}");
    let mut answered = 0u64;
    loop {
        if event::take_pending(port) {
            if event::send(port).is_err() {
                break;
            }
            answered += 1;
            continue;
        }
        if ops().irq_state(port) != Ok(IrqState::Peer) {
            break;
        }
        let _ = ops().poll(&[port], time::now() + 500 * NS_PER_MS);
    }
    let _ = event::close(port);
    println!("ping-server: channel closed after {answered} pings; stopping");
    0
}
