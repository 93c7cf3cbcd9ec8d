//! Property test of the device Board: random sequences of port reads and writes (known ports, random
//! ports, every size), time steps (tiny, PIT-clock sized, long absences, backwards), acknowledges, EOIs,
//! serial input and canned programming fragments (PIC remap with everything unmasked, the PIT at its
//! fastest rate, the UART's interrupts on, the RTC's interrupts on at a random rate). Checked after every
//! step: nothing panics; a pending vector is one a PIC was programmed with, on an unmasked line; a wide
//! read stays within its size; an Output comes only from an access covering COM1's THR and a Shutdown
//! only from one covering 0xf4; an `advance` is idempotent at the same time (at most one timer edge per
//! call, however long the absence); with edge-triggered lines, draining the board by acknowledging
//! without EOI yields at most 17 vectors (16 lines and a spurious one: an IRQ storm stays bounded); the
//! next deadline is in the future; the UART FIFO stays within 16 bytes; the RTC's registers decode in
//! range; a second Board that only saw time pass ends as a fresh one (nothing is shared between Boards).
//! Default 50,000 cases; `DEVICES_PROPTEST_CASES=n` overrides.

use std::cell::Cell;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRunner};

use super::{Board, IoEffect};

/// Ports the generator favours.
const PORTS: [u16; 23] = [
    0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x3f8, 0x3f9, 0x3fa, 0x3fb,
    0x3fc, 0x3fd, 0x3fe, 0x3ff, 0x70, 0x71, 0xf4, 0xf3,
];
const SIZES: [u8; 8] = [1, 1, 1, 1, 2, 4, 3, 0];

#[derive(Clone, Copy, Debug)]
enum Op {
    Out(u16, u8, u32),
    In(u16, u8),
    Advance(u64),
    Back(u64),
    Ack,
    Eoi(bool),
    Input(u8),
    Remap,
    PitFast(u8, u8),
    UartIrq,
    RtcIrq(u8, u8),
}

fn decode(w: u64) -> Op {
    let port = PORTS[((w >> 4) % PORTS.len() as u64) as usize];
    let size = SIZES[((w >> 9) & 7) as usize];
    let value = (w >> 12) as u32;
    // Values: mostly a byte, sometimes the whole word.
    let value = if w >> 60 & 1 == 0 {
        value & 0xff
    } else {
        value
    };
    match w & 0xf {
        0..=5 => Op::Out(port, size, value),
        6 | 7 => Op::In(port, size),
        8 => Op::Out((w >> 16) as u16, size, value),
        9 => Op::Advance(match (w >> 4) & 7 {
            0 => 0,
            1 => 1,
            2 => 838 * ((w >> 8) & 0xff),
            3 => 1_000_000,
            4 => 10_000_000,
            5 => 10_000_000_000,
            6 => (w >> 8) & 0xff_ffff,
            _ => (w >> 8) & 0xffff_ffff_ffff,
        }),
        10 => Op::Ack,
        11 => Op::Input((w >> 8) as u8),
        12 => Op::Eoi(w >> 8 & 1 != 0),
        13 => Op::Remap,
        14 if w >> 24 & 1 == 0 => Op::PitFast((w >> 8) as u8, (w >> 16) as u8 % 3),
        14 if w >> 25 & 1 == 0 => Op::UartIrq,
        14 => Op::RtcIrq((w >> 32) as u8, (w >> 40) as u8),
        _ => Op::Back((w >> 8) & 0xffff_ffff),
    }
}

#[derive(Default)]
struct Stats {
    steps: Cell<u64>,
    vectors: Cell<u64>,
    slave_vectors: Cell<u64>,
    outputs: Cell<u64>,
    shutdowns: Cell<u64>,
    timer: Cell<u64>,
    max_drain: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

fn covers(port: u16, size: u8, target: u16) -> bool {
    (0..size).any(|i| port.wrapping_add(u16::from(i)) == target)
}

fn check(b: &Board, now: u64, stats: &Stats) -> Result<(), TestCaseError> {
    let pic = b.pic();
    if let Some(v) = b.pending_vector() {
        let master = v & 0xf8 == pic.master.base && v & 7 != 2;
        let slave = v & 0xf8 == pic.slave.base;
        prop_assert!(master || slave, "vector {v:#x} not programmed: {pic:?}");
        if master && !slave {
            prop_assert!(
                pic.master.imr & (1 << (v & 7)) == 0,
                "masked line delivered"
            );
        } else if slave && !master {
            prop_assert!(
                pic.master.imr & 4 == 0,
                "slave delivered through a masked cascade"
            );
        }
        if v == pic.master.base {
            bump(&stats.timer);
        }
    }
    if let Some(d) = b.next_deadline_ns() {
        prop_assert!(d > b.now_ns, "deadline {d} not after {}", b.now_ns);
    }
    // Advancing again at the same time raises nothing new.
    let mut again = b.clone();
    again.advance(now);
    prop_assert_eq!(again.pic(), b.pic());
    // Draining without EOI: bounded when both chips are edge-triggered.
    if !pic.any_level_triggered() {
        let mut d = b.clone();
        let mut n = 0u64;
        while d.acknowledge().is_some() {
            n += 1;
            prop_assert!(n <= 17, "storm: {n} vectors without EOI");
        }
        stats.max_drain.set(stats.max_drain.get().max(n));
    }
    prop_assert!(b.uart().rx.len() <= 16);
    let rtc = b.rtc();
    let binary = rtc.reg_b & 4 != 0;
    let dec = |v: u8| {
        if binary {
            u32::from(v)
        } else {
            u32::from(v >> 4) * 10 + u32::from(v & 0xf)
        }
    };
    prop_assert!(dec(rtc.register(0, now)) < 60);
    prop_assert!(dec(rtc.register(2, now)) < 60);
    let h = rtc.register(4, now);
    if rtc.reg_b & 2 != 0 {
        prop_assert!(dec(h) < 24);
    } else {
        prop_assert!((1..=12).contains(&dec(h & 0x7f)));
    }
    prop_assert!((1..=31).contains(&dec(rtc.register(7, now))));
    prop_assert!((1..=12).contains(&dec(rtc.register(8, now))));
    prop_assert!((1..=7).contains(&dec(rtc.register(6, now))));
    Ok(())
}

fn run_case(ops: &[Op], stats: &Stats) -> Result<(), TestCaseError> {
    let mut b = Board::new(1_700_000_000);
    // Another domain's Board, only advanced: whatever happens to `b` must not reach it.
    let mut other = Board::new(1_700_000_000);
    let mut now = 0u64;
    for &op in ops {
        match op {
            Op::Out(port, size, value) => {
                let e = b.io_out(port, size, value, now);
                match e {
                    IoEffect::None => {}
                    IoEffect::Output(_) => {
                        prop_assert!(covers(port, size, 0x3f8) && port != 0xf4);
                        bump(&stats.outputs);
                    }
                    IoEffect::Shutdown(_) => {
                        prop_assert!(covers(port, size, 0xf4));
                        bump(&stats.shutdowns);
                    }
                }
            }
            Op::In(port, size) => {
                let v = b.io_in(port, size, now);
                match size {
                    1 => prop_assert!(v <= 0xff),
                    2 => prop_assert!(v <= 0xffff),
                    _ => {}
                }
            }
            Op::Advance(dt) => {
                now = now.saturating_add(dt);
                b.advance(now);
            }
            Op::Back(dt) => b.advance(now.saturating_sub(dt)),
            Op::Ack => {
                let slave_base = b.pic().slave.base;
                if let Some(v) = b.acknowledge() {
                    bump(&stats.vectors);
                    if v & 0xf8 == slave_base {
                        bump(&stats.slave_vectors);
                    }
                }
            }
            Op::Eoi(slave) => {
                if slave {
                    b.io_out(0xa0, 1, 0x20, now);
                }
                b.io_out(0x20, 1, 0x20, now);
            }
            Op::Input(c) => b.push_input(c),
            Op::Remap => {
                for (port, v) in [
                    (0x20, 0x11),
                    (0xa0, 0x11),
                    (0x21, 0x20),
                    (0xa1, 0x28),
                    (0x21, 4),
                    (0xa1, 2),
                    (0x21, 1),
                    (0xa1, 1),
                    (0x21, 0),
                    (0xa1, 0),
                ] {
                    b.io_out(port, 1, v, now);
                }
            }
            Op::UartIrq => {
                for (port, v) in [(0x3fb, 3), (0x3fa, 0x07), (0x3f9, 0x0f), (0x3fc, 0x0b)] {
                    b.io_out(port, 1, v, now);
                }
            }
            Op::RtcIrq(a, b_reg) => {
                for (port, v) in [(0x70, 0x0a), (0x71, a), (0x70, 0x0b), (0x71, b_reg | 0x70)] {
                    b.io_out(port, 1, u32::from(v), now);
                }
            }
            Op::PitFast(count, mode) => {
                b.io_out(0x43, 1, [0x30, 0x34, 0x36][usize::from(mode)], now);
                b.io_out(0x40, 1, u32::from(count % 4), now);
                b.io_out(0x40, 1, 0, now);
            }
        }
        bump(&stats.steps);
        check(&b, now, stats)?;
        other.advance(now);
    }
    let mut fresh = Board::new(1_700_000_000);
    fresh.advance(now);
    prop_assert_eq!(other.to_string(), fresh.to_string());
    prop_assert_eq!(other.pending_vector(), None);
    Ok(())
}

#[test]
fn random_device_programming() {
    let cases = std::env::var("DEVICES_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    let config = Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let stats = Stats::default();
    let start = Instant::now();
    let strategy = prop::collection::vec(any::<u64>().prop_map(decode), 1..60);
    let result = runner.run(&strategy, |ops| run_case(&ops, &stats));
    eprintln!(
        "devices property test: {cases} cases, {} steps in {:.1?}; vectors acknowledged {} \
         (from the slave {}), timer vectors \
         pending {}, UART outputs {}, shutdowns {}, longest drain without EOI {}",
        stats.steps.get(),
        start.elapsed(),
        stats.vectors.get(),
        stats.slave_vectors.get(),
        stats.timer.get(),
        stats.outputs.get(),
        stats.shutdowns.get(),
        stats.max_drain.get(),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
