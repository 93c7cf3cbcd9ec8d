//! `evtchn-ping [N]`: N (default 100) event-channel round trips with the ping server in the other domain,
//! through the guest kernel; prints the time per round trip.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::{eprintln, num, println, sys};

user::main!(main);

/// Round trips when no count is given.
const DEFAULT_ROUNDS: u64 = 100;

fn main(args: &str) -> i32 {
    let rounds = match num::optional_arg(args, |w| num::parse_u64(w).filter(|&n| n > 0)) {
        Some(n) => n.unwrap_or(DEFAULT_ROUNDS),
        None => return usage(),
    };
    if rounds > uapi::EVTCHN_PING_MAX {
        eprintln!(
            "evtchn-ping: at most {} round trips per run (asked for {rounds})",
            uapi::EVTCHN_PING_MAX
        );
        return 2;
    }
    match sys::evtchn_ping(rounds) {
        Ok(total_ns) => {
            println!(
                "evtchn-ping: {rounds} round trips with the other domain, {} ns each",
                total_ns / rounds
            );
            0
        }
        Err(e) => {
            println!("evtchn-ping: {}", e.name());
            1
        }
    }
}

fn usage() -> i32 {
    eprintln!(
        "usage: evtchn-ping [ROUNDS] (1..={}, default {DEFAULT_ROUNDS})",
        uapi::EVTCHN_PING_MAX
    );
    2
}
