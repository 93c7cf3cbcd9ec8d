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
    let mut words = args.split_ascii_whitespace();
    let rounds = match (words.next(), words.next()) {
        (None, _) => DEFAULT_ROUNDS,
        (Some(n), None) => match num::parse_u64(n) {
            Some(n) if n > 0 => n,
            _ => return usage(),
        },
        _ => return usage(),
    };
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
    eprintln!("usage: evtchn-ping [ROUNDS]");
    2
}
