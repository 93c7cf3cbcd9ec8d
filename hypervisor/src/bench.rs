//! The hypervisor's own measurement: the cost of an `int` + `iretq` round trip in ring 0 (the hardware
//! floor every guest transition is compared with), reported in the `abi::bench` line format when the
//! operator passes `bench=floor` on the hypervisor command line.

use abi::bench::{self, Stats};

use crate::arch::cpu;
use crate::console::print;

/// Most iterations the floor measurement takes.
pub const MAX_ITERATIONS: usize = 4096;

static SAMPLES: spin::Mutex<[u64; MAX_ITERATIONS]> = spin::Mutex::new([0; MAX_ITERATIONS]);

/// The fenced TSC-read pair with nothing between (the measurement's own cost): the median of `n` tries.
fn overhead(samples: &mut [u64]) -> u64 {
    for s in samples.iter_mut() {
        *s = cpu::time_ring0_int_iret(false);
    }
    bench::summarize(samples).map_or(0, |s| s.median)
}

/// Measure `floor_ring0_int_iret` `iterations` times and print its result line.
pub fn ring0_floor(iterations: usize) -> Stats {
    let n = iterations.clamp(1, MAX_ITERATIONS);
    let mut guard = SAMPLES.lock();
    let samples = &mut guard[..n];
    let base = overhead(samples);
    for s in samples.iter_mut() {
        *s = cpu::time_ring0_int_iret(true);
    }
    bench::subtract_overhead(samples, base);
    let stats = bench::summarize(samples).unwrap_or_default();
    let mut line: heapless::String<160> = heapless::String::new();
    let _ = bench::write_line(&mut line, "floor_ring0_int_iret", n as u64, &stats);
    print(format_args!("{line}\n"));
    stats
}
