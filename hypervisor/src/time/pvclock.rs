//! pvclock: system time from the TSC, the `vcpu_time_info` a guest reads it from, the wallclock, and timer
//! arithmetic.
//!
//! System time is nanoseconds since the hypervisor's time base (boot). A guest computes it from its
//! `vcpu_time_info` with Xen's formula (`abi::xen::VcpuTimeInfo::system_time_at`):
//!
//! ```text
//! ns = system_time + (((tsc - tsc_timestamp) << tsc_shift  (or >> -tsc_shift)) * tsc_to_system_mul) >> 32
//! ```
//!
//! [`scale_for`] is Xen's `set_time_scale`; [`Clock`] keeps the time base and produces publications.
//!
//! **Monotonicity.** Each publication is *exact* for its instant: `tsc_timestamp` is aligned so that the
//! shifted TSC delta from the time base splits without remainder, and `system_time` is the hypervisor's own
//! clock there. Every guest reading is then the exact value rounded down, minus at most one more rounding
//! step, so it lies in `[T - 1, T]` for the hypervisor's clock `T` at that TSC (1 ns: a scaled unit is
//! 0.5..1 ns). Readings from successive publications can therefore go backwards by at most 1 ns, never
//! more, however often the hypervisor publishes. **Guest rule:** keep the last value returned and return
//! `max(last, reading)`, as Linux does. `flags` never carries `VCPU_TIME_TSC_STABLE`, which would tell a
//! Linux guest it may skip that rule.
//!
//! **Seqlock.** [`write_vcpu_time`] and [`write_wallclock`] follow Xen's protocol: version made odd, fields
//! written, version made even (`(v + 1) | 1`, then `+ 1`), with compiler fences between the steps. On one CPU
//! the guest never runs while the hypervisor writes, but the protocol is the ABI.

use core::mem::offset_of;
use core::sync::atomic::{Ordering, compiler_fence};

use abi::xen::{SharedInfo, VcpuInfo, VcpuTimeInfo, XEN_LEGACY_MAX_VCPUS, scale_delta};

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// Xen's `set_time_scale`: `(mul, shift)` such that `scale_delta(ticks, mul, shift)` converts ticks of a
/// `tsc_hz` clock to nanoseconds. `mul` is in `[2^31, 2^32)` (at least 31 significant bits, so the rate
/// error is below 2^-31, 0.0005 ppm). A zero frequency gives `(0, 0)`: time stands still.
pub const fn scale_for(tsc_hz: u64) -> (u32, i8) {
    if tsc_hz == 0 {
        return (0, 0);
    }
    let mut tps64 = tsc_hz;
    let mut shift: i8 = 0;
    while tps64 > 2 * NS_PER_SEC {
        tps64 >>= 1;
        shift -= 1;
    }
    // Now 1 <= tps64 <= 2e9, which fits a u32.
    let mut tps32 = tps64 as u32;
    while tps32 as u64 <= NS_PER_SEC {
        tps32 <<= 1;
        shift += 1;
    }
    // 1e9 < tps32 <= 2e9: (1e9 << 32) / tps32 is in [2^31, 2^32).
    let mul = ((NS_PER_SEC as u128) << 32) / tps32 as u128;
    (mul as u32, shift)
}

/// The smallest tick count that `scale_delta(ticks, mul, shift)` maps to at least `ns` (saturating at
/// `u64::MAX`; `u64::MAX` too if `mul` is 0, as such a clock never reaches `ns`). Converting a deadline with
/// it makes a timer never fire early.
pub const fn ticks_for_ns(ns: u64, mul: u32, shift: i8) -> u64 {
    if ns == 0 {
        return 0;
    }
    if mul == 0 {
        return u64::MAX;
    }
    // Shifted units x with floor(x * mul / 2^32) >= ns: x = ceil(ns * 2^32 / mul), by long division in
    // 64-bit steps (the scheduler converts a deadline on every decision; a 128-bit division is a library
    // call): ns = q * mul + r, so ns * 2^32 / mul = q * 2^32 + r * 2^32 / mul, and r * 2^32 < 2^64.
    let m = mul as u64;
    let (q, r) = (ns / m, ns % m);
    let units = ((q as u128) << 32) + (r << 32).div_ceil(m) as u128;
    if shift >= 0 {
        // units = ticks << shift, which the formula computes in 64 bits: beyond them the clock wraps,
        // so such a deadline is never reached.
        if units > u64::MAX as u128 {
            return u64::MAX;
        }
        let units = units as u64;
        let s = shift as u32;
        if s >= 64 {
            // units >= 1 (ns > 0): one tick already shifts past every bit.
            return 1;
        }
        // ceil(units / 2^s) without a division.
        (units >> s) + ((units & ((1u64 << s) - 1)) != 0) as u64
    } else {
        // units = ticks >> k: the smallest such ticks is units << k.
        let k = shift.unsigned_abs() as u32;
        if k >= 64 || units > (u64::MAX as u128) >> k {
            return u64::MAX;
        }
        (units as u64) << k
    }
}

/// Ticks of a `hz` clock in `ns` nanoseconds, rounded up, saturating (e.g. a LAPIC timer count).
pub const fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    let t = (ns as u128 * hz as u128).div_ceil(NS_PER_SEC as u128);
    if t > u64::MAX as u128 {
        u64::MAX
    } else {
        t as u64
    }
}

/// The hypervisor's system time: a TSC frequency and the TSC value at system time 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    tsc_hz: u64,
    tsc_base: u64,
    mul: u32,
    shift: i8,
    /// The latest `tsc_timestamp` published (publications never go back before it).
    last_tsc: u64,
}

impl Clock {
    /// A clock running at `tsc_hz`, reading 0 at TSC value `tsc_base`.
    pub const fn new(tsc_hz: u64, tsc_base: u64) -> Clock {
        let (mul, shift) = scale_for(tsc_hz);
        Clock {
            tsc_hz,
            tsc_base,
            mul,
            shift,
            last_tsc: tsc_base,
        }
    }

    /// The TSC frequency it was made with.
    pub const fn tsc_hz(&self) -> u64 {
        self.tsc_hz
    }

    /// `(tsc_to_system_mul, tsc_shift)`.
    pub const fn scale(&self) -> (u32, i8) {
        (self.mul, self.shift)
    }

    /// System time (ns) at TSC value `tsc`; 0 before the time base.
    pub const fn now_ns(&self, tsc: u64) -> u64 {
        scale_delta(tsc.saturating_sub(self.tsc_base), self.mul, self.shift)
    }

    /// The earliest TSC value at which system time is at least `ns` (saturating).
    pub const fn tsc_at(&self, ns: u64) -> u64 {
        self.tsc_base
            .saturating_add(ticks_for_ns(ns, self.mul, self.shift))
    }

    /// A guest's absolute timer deadline (ns of system time) as a TSC deadline: `None` for 0, which
    /// cancels; otherwise [`Clock::tsc_at`] (a deadline in the past gives a TSC value in the past: fire now).
    pub const fn guest_deadline_tsc(&self, deadline_ns: u64) -> Option<u64> {
        if deadline_ns == 0 {
            None
        } else {
            Some(self.tsc_at(deadline_ns))
        }
    }

    /// A new `vcpu_time_info` for TSC value `tsc_now` (clamped to never precede the previous publication):
    /// `tsc_timestamp` and `system_time` describe the same instant, `version` is left 0 for
    /// [`write_vcpu_time`] to set, `flags` is 0 (see the module docs).
    pub fn publish(&mut self, tsc_now: u64) -> VcpuTimeInfo {
        let tsc = tsc_now.max(self.last_tsc).max(self.tsc_base);
        let mut delta = tsc - self.tsc_base;
        if self.shift < 0 {
            // Drop the bits the right shift would drop, so the delta splits exactly at this instant.
            let k = self.shift.unsigned_abs() as u32;
            delta = match 1u64.checked_shl(k) {
                Some(unit) if k < 64 => delta & !(unit - 1),
                _ => 0,
            };
        }
        let tsc_timestamp = self.tsc_base + delta;
        // Alignment rounds down; never before the last publication (a rounded-down value >= last_tsc
        // exists because last_tsc is itself aligned).
        self.last_tsc = tsc_timestamp.max(self.last_tsc);
        VcpuTimeInfo {
            version: 0,
            pad0: 0,
            tsc_timestamp: self.last_tsc,
            system_time: self.now_ns(self.last_tsc),
            tsc_to_system_mul: self.mul,
            tsc_shift: self.shift,
            flags: 0,
            pad1: [0; 2],
        }
    }
}

/// Word access to a shared page, for the seqlock writers ([`write_vcpu_time`], [`write_wallclock`]).
/// Writes beyond the page are ignored and reads beyond it return 0.
pub trait SharedWords {
    /// The little-endian `u32` at `offset`.
    fn read_u32(&self, offset: usize) -> u32;
    /// Write `bytes` at `offset`.
    fn write_bytes(&mut self, offset: usize, bytes: &[u8]);
}

impl SharedWords for [u8] {
    fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        if let Some(s) = self.get(offset..offset.saturating_add(4)) {
            b.copy_from_slice(s);
        }
        u32::from_le_bytes(b)
    }

    fn write_bytes(&mut self, offset: usize, bytes: &[u8]) {
        if let Some(s) = self.get_mut(offset..offset.saturating_add(bytes.len())) {
            s.copy_from_slice(bytes);
        }
    }
}

impl SharedWords for [u8; 4096] {
    fn read_u32(&self, offset: usize) -> u32 {
        self.as_slice().read_u32(offset)
    }

    fn write_bytes(&mut self, offset: usize, bytes: &[u8]) {
        self.as_mut_slice().write_bytes(offset, bytes)
    }
}

/// Offset of `vcpu_info[vcpu].time` in the shared_info page.
pub const fn vcpu_time_offset(vcpu: usize) -> usize {
    offset_of!(SharedInfo, vcpu_info) + vcpu * size_of::<VcpuInfo>() + offset_of!(VcpuInfo, time)
}

/// The longest a switch to a vCPU keeps its published `vcpu_time_info` record before publishing a new one
/// (ns of system time). A record stays exact however old it is (see the module docs: a reading is within
/// 1 ns of the hypervisor's clock whatever the distance to `tsc_timestamp`), so this only bounds how long a
/// guest goes without seeing its record move, as Xen's once-a-second recalibration does; it is not needed
/// for accuracy. (Before: a new record on every switch, ~60 instructions each.)
pub const REPUBLISH_NS: u64 = 1_000_000;

/// `vcpu_info[0].time` of the shared_info page `page` as four little-endian words (version and pad,
/// `tsc_timestamp`, `system_time`, multiplier/shift/flags): what a switch compares with the record it
/// last wrote.
#[inline(always)]
pub fn vcpu0_time_words(page: &[u8; 4096]) -> [u64; 4] {
    const AT: usize = vcpu_time_offset(0);
    core::array::from_fn(|i| {
        page.get(AT + 8 * i..)
            .and_then(<[u8]>::first_chunk::<8>)
            .map_or(0, |b| u64::from_le_bytes(*b))
    })
}

/// Whether a switch to a vCPU at system time `now` must publish its time record again: the page no longer
/// holds `record`, the words the last publication left there (`vcpu0_time_words` after it: a first run, a
/// new or restored page, or the guest wrote its own record), or `now` reached `due`.
#[inline(always)]
pub fn must_republish(page: &[u8; 4096], record: &[u64; 4], due: u64, now: u64) -> bool {
    now >= due || vcpu0_time_words(page) != *record
}

/// Write the version of a seqlock-protected block: begin (odd) or end (even).
fn seq_begin(mem: &mut (impl SharedWords + ?Sized), at: usize) -> u32 {
    let v = mem.read_u32(at).wrapping_add(1) | 1;
    mem.write_bytes(at, &v.to_le_bytes());
    compiler_fence(Ordering::SeqCst);
    v
}

fn seq_end(mem: &mut (impl SharedWords + ?Sized), at: usize, begun: u32) {
    compiler_fence(Ordering::SeqCst);
    mem.write_bytes(at, &begun.wrapping_add(1).to_le_bytes());
}

/// Store `info` (all fields but `version`) in `vcpu_info[vcpu].time` of the shared_info page `mem`, under
/// the seqlock. `vcpu` ≥ 32 does nothing.
pub fn write_vcpu_time(mem: &mut (impl SharedWords + ?Sized), vcpu: usize, info: &VcpuTimeInfo) {
    if vcpu >= XEN_LEGACY_MAX_VCPUS {
        return;
    }
    let base = vcpu_time_offset(vcpu);
    let at = |field: usize| base + field;
    let v = seq_begin(mem, at(offset_of!(VcpuTimeInfo, version)));
    mem.write_bytes(
        at(offset_of!(VcpuTimeInfo, tsc_timestamp)),
        &info.tsc_timestamp.to_le_bytes(),
    );
    mem.write_bytes(
        at(offset_of!(VcpuTimeInfo, system_time)),
        &info.system_time.to_le_bytes(),
    );
    mem.write_bytes(
        at(offset_of!(VcpuTimeInfo, tsc_to_system_mul)),
        &info.tsc_to_system_mul.to_le_bytes(),
    );
    mem.write_bytes(
        at(offset_of!(VcpuTimeInfo, tsc_shift)),
        &[info.tsc_shift as u8, info.flags],
    );
    seq_end(mem, at(offset_of!(VcpuTimeInfo, version)), v);
}

/// Wall-clock time at system time 0, from a wall-clock reading (`unix_secs`, e.g. the CMOS RTC at boot)
/// taken at system time `now_ns`: `(seconds, nanoseconds)` since the Unix epoch (0 if `now_ns` reaches
/// before the epoch).
pub const fn wallclock_base(unix_secs: u64, now_ns: u64) -> (u64, u32) {
    let total = (unix_secs as u128 * NS_PER_SEC as u128).saturating_sub(now_ns as u128);
    let sec = total / NS_PER_SEC as u128;
    (sec as u64, (total % NS_PER_SEC as u128) as u32)
}

/// Store the wall clock at system time 0 (`wc_sec` + `wc_sec_hi`, `wc_nsec`) in the shared_info page
/// `mem`, under the `wc_version` seqlock.
pub fn write_wallclock(mem: &mut (impl SharedWords + ?Sized), sec: u64, nsec: u32) {
    let v = seq_begin(mem, offset_of!(SharedInfo, wc_version));
    mem.write_bytes(offset_of!(SharedInfo, wc_sec), &(sec as u32).to_le_bytes());
    mem.write_bytes(offset_of!(SharedInfo, wc_nsec), &nsec.to_le_bytes());
    mem.write_bytes(
        offset_of!(SharedInfo, wc_sec_hi),
        &((sec >> 32) as u32).to_le_bytes(),
    );
    seq_end(mem, offset_of!(SharedInfo, wc_version), v);
}

/// `set_timer_op(timeout)`'s deadline, Xen's way: 0 cancels (`None`); a timeout that is negative as an
/// `s64`, or more than 2^50 ns (about 13 days) in the future, is a known Linux wrap-around and becomes
/// `now + 100 ms`; anything else (including the past: fire at once) is taken as is.
pub const fn set_timer_op_deadline(timeout: u64, now: u64) -> Option<u64> {
    if timeout == 0 {
        return None;
    }
    let huge = (timeout as i64) < 0 || (timeout > now && (timeout - now) >> 50 != 0);
    if huge {
        Some(now.saturating_add(100_000_000))
    } else {
        Some(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromBytes;

    /// 10 MHz .. 10 GHz in steps of about 7 %, plus the usual suspects.
    fn frequencies() -> Vec<u64> {
        let mut v = vec![
            10_000_000,
            14_318_180,
            999_999_999,
            1_000_000_000,
            1_000_000_001,
            2_000_000_000,
            2_000_000_001,
            2_400_000_000,
            3_192_000_123,
            4_294_967_296,
            10_000_000_000,
        ];
        let mut f = 10_000_000f64;
        while f <= 10e9 {
            v.push(f as u64);
            f *= 1.07;
        }
        v
    }

    #[test]
    fn scale_matches_the_frequency_within_1_ppm() {
        for hz in frequencies() {
            let (mul, shift) = scale_for(hz);
            assert!(mul >= 1 << 31, "{hz}: mul {mul:#x}");
            // Effective ns per tick = mul * 2^shift / 2^32; exact: 1e9 / hz.
            let eff = mul as f64 * 2f64.powi(shift as i32) / 2f64.powi(32);
            let err = (eff * hz as f64 / 1e9 - 1.0).abs();
            assert!(err < 1e-6, "{hz} Hz: rate error {err:e}");
            // And through the guest's formula, over 10 s and 1 ms.
            for secs_e3 in [10_000u64, 1] {
                let ticks = (hz as u128 * secs_e3 as u128 / 1000) as u64;
                let t = VcpuTimeInfo {
                    tsc_to_system_mul: mul,
                    tsc_shift: shift,
                    ..Default::default()
                };
                let ns = t.system_time_at(ticks) as f64;
                let want = ticks as f64 * 1e9 / hz as f64;
                assert!(
                    (ns - want).abs() <= want * 1e-6 + 2.0,
                    "{hz} Hz: {ns} vs {want}"
                );
            }
        }
        assert_eq!(scale_for(0), (0, 0));
        let (mul, shift) = scale_for(1);
        assert_eq!(scale_delta(1, mul, shift), 1_000_000_000, "1 Hz: exact");
        let (mul, shift) = scale_for(u64::MAX);
        assert!(mul >= 1 << 31 && shift < 0);
        assert_eq!(
            scale_for(1_000_000_000),
            (1 << 31, 1),
            "1 GHz is the identity"
        );
    }

    /// The 128-bit formula `ticks_for_ns` computed before it moved to 64-bit steps.
    fn ticks_for_ns_u128(ns: u64, mul: u32, shift: i8) -> u64 {
        if ns == 0 {
            return 0;
        }
        if mul == 0 {
            return u64::MAX;
        }
        let units = ((ns as u128) << 32).div_ceil(mul as u128);
        let ticks = if shift >= 0 {
            if units > u64::MAX as u128 {
                return u64::MAX;
            }
            units.div_ceil(1u128 << shift as u32)
        } else {
            let k = shift.unsigned_abs() as u32;
            if k >= 64 || units > (u64::MAX as u128) >> k {
                return u64::MAX;
            }
            units << k
        };
        ticks.min(u64::MAX as u128) as u64
    }

    #[test]
    fn ticks_for_ns_equals_the_128_bit_formula_for_any_arguments() {
        let mut seed = 0x0bad_cafe_f00d_1234u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let edges = [0, 1, 2, u32::MAX as u64, 1 << 32, u64::MAX - 1, u64::MAX];
        for i in 0..200_000u32 {
            let ns = match i % 4 {
                0 => edges[(rnd() % edges.len() as u64) as usize],
                _ => rnd() >> (rnd() % 64),
            };
            let mul = match i % 3 {
                0 => [0, 1, u32::MAX, 1 << 31][(rnd() % 4) as usize],
                _ => rnd() as u32,
            };
            let shift = rnd() as i8;
            assert_eq!(
                ticks_for_ns(ns, mul, shift),
                ticks_for_ns_u128(ns, mul, shift),
                "ns {ns} mul {mul} shift {shift}"
            );
        }
    }

    #[test]
    fn deadlines_never_fire_early_and_not_late_either() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for hz in frequencies() {
            let (mul, shift) = scale_for(hz);
            for _ in 0..200 {
                let ns = rnd() >> (rnd() % 64);
                let t = ticks_for_ns(ns, mul, shift);
                if t == u64::MAX {
                    continue;
                }
                assert!(scale_delta(t, mul, shift) >= ns, "{hz} Hz, {ns} ns -> {t}");
                if t > 0 {
                    assert!(
                        scale_delta(t - 1, mul, shift) < ns,
                        "{hz} Hz, {ns} ns -> {t}"
                    );
                }
            }
        }
        assert_eq!(ticks_for_ns(5, 0, 0), u64::MAX);
        assert_eq!(ticks_for_ns(0, 0, 0), 0);
        assert_eq!(ticks_for_ns(u64::MAX, 1, 127), u64::MAX, "beyond 64 bits");
        assert_eq!(ticks_for_ns(1 << 20, 1 << 31, 20), 2);
        assert_eq!(ticks_for_ns(u64::MAX, 1, -128), u64::MAX);
        let c = Clock::new(2_000_000_000, 1000);
        assert_eq!(c.guest_deadline_tsc(0), None);
        assert_eq!(c.guest_deadline_tsc(1_000), Some(3_000));
        assert_eq!(c.tsc_at(u64::MAX), u64::MAX, "saturates");
        assert_eq!(ns_to_ticks(1_000_000, 1_000_000_000), 1_000_000);
        assert_eq!(ns_to_ticks(1, 3), 1, "rounded up");
        assert_eq!(ns_to_ticks(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(ns_to_ticks(0, 5), 0);
    }

    #[test]
    fn publications_are_exact_at_their_instant() {
        for hz in frequencies() {
            let mut c = Clock::new(hz, 123_456_789);
            let mut tsc = 123_456_789u64;
            for i in 0..50u64 {
                tsc += hz / 7 + i * 1_000_003;
                let p = c.publish(tsc);
                assert!(p.tsc_timestamp <= tsc);
                assert_eq!(p.system_time, c.now_ns(p.tsc_timestamp));
                assert_eq!((p.tsc_to_system_mul, p.tsc_shift), c.scale());
                for t in [tsc, tsc + 1, tsc + 999_999, tsc + hz] {
                    let r = p.system_time_at(t);
                    let exact = c.now_ns(t);
                    assert!(r <= exact && exact - r <= 1, "{hz} Hz: {r} vs {exact}");
                }
            }
            // A TSC value older than the last publication does not move the clock back.
            let last = c.publish(tsc);
            let again = c.publish(tsc - hz);
            assert_eq!(again, last);
            assert_eq!(c.now_ns(0), 0, "before the time base: 0");
        }
    }

    /// 10^6 guest reads interleaved with hypervisor publications at random points.
    #[test]
    fn a_million_reads_never_go_backwards() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut worst_raw_step = 0u64;
        for hz in [
            10_000_000,
            1_000_000_007,
            2_400_000_000,
            3_192_000_123,
            9_999_999_967,
        ] {
            let mut c = Clock::new(hz, rnd() >> 8);
            let mut tsc = c.tsc_at(0);
            let mut info = c.publish(tsc);
            let (mut last, mut last_raw) = (0u64, 0u64);
            for _ in 0..200_000 {
                tsc += 1 + rnd() % 5_000;
                if rnd() % 37 == 0 {
                    // The hypervisor publishes at some TSC value at or before the guest's next read.
                    info = c.publish(tsc - rnd() % 3);
                }
                let raw = info.system_time_at(tsc);
                let exact = c.now_ns(tsc);
                assert!(
                    raw <= exact && exact - raw <= 1,
                    "{hz} Hz: {raw} vs {exact}"
                );
                worst_raw_step = worst_raw_step.max(last_raw.saturating_sub(raw));
                let read = raw.max(last);
                assert!(read >= last);
                (last, last_raw) = (read, raw);
            }
        }
        assert!(
            worst_raw_step <= 1,
            "without the max rule: {worst_raw_step} ns back"
        );
    }

    /// Records every write, to check the seqlock order.
    struct Recorder {
        page: Vec<u8>,
        writes: Vec<(usize, Vec<u8>)>,
    }

    impl SharedWords for Recorder {
        fn read_u32(&self, offset: usize) -> u32 {
            self.page.read_u32(offset)
        }
        fn write_bytes(&mut self, offset: usize, bytes: &[u8]) {
            self.page.write_bytes(offset, bytes);
            self.writes.push((offset, bytes.to_vec()));
        }
    }

    fn check_seqlock(r: &Recorder, version_at: usize, old: u32, fields: core::ops::Range<usize>) {
        let (first, last) = (&r.writes[0], r.writes.last().unwrap());
        assert_eq!(first.0, version_at);
        let begun = u32::from_le_bytes(first.1[..].try_into().unwrap());
        assert_eq!(begun, old.wrapping_add(1) | 1);
        assert_eq!(last.0, version_at);
        let ended = u32::from_le_bytes(last.1[..].try_into().unwrap());
        assert_eq!(ended % 2, 0);
        assert_eq!(ended, begun.wrapping_add(1));
        for (off, bytes) in &r.writes[1..r.writes.len() - 1] {
            assert!(fields.contains(off) && fields.contains(&(off + bytes.len() - 1)));
        }
    }

    #[test]
    fn vcpu_time_is_written_under_the_seqlock() {
        let mut c = Clock::new(2_400_000_000, 0);
        let info = c.publish(24_000_000_017);
        for (vcpu, old) in [(0usize, 0u32), (0, 7), (1, u32::MAX), (31, 2)] {
            let base = vcpu_time_offset(vcpu);
            let mut r = Recorder {
                page: vec![0; 4096],
                writes: vec![],
            };
            r.page[base..base + 4].copy_from_slice(&old.to_le_bytes());
            write_vcpu_time(&mut r, vcpu, &info);
            check_seqlock(&r, base, old, base + 8..base + 32);
            let got = VcpuTimeInfo::read_from_bytes(&r.page[base..base + 32]).unwrap();
            assert_eq!(
                got,
                VcpuTimeInfo {
                    version: got.version,
                    ..info
                }
            );
            assert!(!got.update_in_progress());
            assert_eq!(base, 32 + 64 * vcpu);
        }
        let mut page = [0u8; 4096];
        write_vcpu_time(&mut page, 32, &info);
        write_vcpu_time(&mut page, usize::MAX, &info);
        assert!(
            page.iter().all(|&b| b == 0),
            "no such vCPU slot: nothing written"
        );
        write_vcpu_time(&mut page, 0, &info);
        let si = SharedInfo::read_from_bytes(&page[..size_of::<SharedInfo>()]).unwrap();
        assert_eq!(si.vcpu_info[0].time.system_time, info.system_time);
        assert_eq!(si.vcpu_info[0].time.version, 2);
    }

    #[test]
    fn a_record_is_republished_only_when_changed_or_due() {
        let mut c = Clock::new(2_400_000_000, 0);
        let mut page = [0u8; 4096];
        assert!(
            must_republish(&page, &[0; 4], 0, 0),
            "never published: due at once"
        );
        write_vcpu_time(&mut page, 0, &c.publish(24_000_000_017));
        let record = vcpu0_time_words(&page);
        let base = vcpu_time_offset(0);
        let got = VcpuTimeInfo::read_from_bytes(&page[base..base + 32]).unwrap();
        assert_eq!(record[0], u64::from(got.version));
        assert_eq!(record[1], got.tsc_timestamp);
        assert_eq!(record[2], got.system_time);
        assert_eq!(record[3] as u32, got.tsc_to_system_mul);
        let due = 10;
        assert!(!must_republish(&page, &record, due, 9));
        assert!(must_republish(&page, &record, due, 10), "due");
        // Any byte of the record changed (by the guest, or a page not written by us): publish again.
        for i in 0..32 {
            let mut p = page;
            p[base + i] ^= 1;
            assert!(must_republish(&p, &record, due, 0), "byte {i} changed");
        }
        // Bytes outside the record do not matter.
        let mut p = page;
        p[base - 1] ^= 1;
        p[base + 32] ^= 1;
        assert!(!must_republish(&p, &record, due, 0));
    }

    #[test]
    fn wallclock() {
        assert_eq!(
            wallclock_base(1_700_000_000, 2_500_000_000),
            (1_699_999_997, 500_000_000)
        );
        assert_eq!(wallclock_base(1, 5_000_000_000), (0, 0));
        assert_eq!(wallclock_base(u64::MAX, 0), (u64::MAX, 0));
        let mut r = Recorder {
            page: vec![0; 4096],
            writes: vec![],
        };
        let sec = (1u64 << 33) + 5;
        write_wallclock(&mut r, sec, 999_999_999);
        check_seqlock(&r, 0xC00, 0, 0xC04..0xC10);
        let si = SharedInfo::read_from_bytes(&r.page[..size_of::<SharedInfo>()]).unwrap();
        assert_eq!((si.wc_version, si.wc_sec, si.wc_sec_hi), (2, 5, 2));
        assert_eq!(si.wc_nsec, 999_999_999);
    }

    #[test]
    fn set_timer_op_follows_xen() {
        let now = 5_000_000_000;
        assert_eq!(set_timer_op_deadline(0, now), None);
        assert_eq!(set_timer_op_deadline(now + 10, now), Some(now + 10));
        assert_eq!(
            set_timer_op_deadline(1, now),
            Some(1),
            "the past: fire at once"
        );
        assert_eq!(
            set_timer_op_deadline(now + (1 << 50) - 1, now),
            Some(now + (1 << 50) - 1)
        );
        assert_eq!(
            set_timer_op_deadline(now + (1 << 50), now),
            Some(now + 100_000_000)
        );
        assert_eq!(
            set_timer_op_deadline(u64::MAX, now),
            Some(now + 100_000_000)
        );
        assert_eq!(set_timer_op_deadline(1 << 63, 0), Some(100_000_000));
        assert_eq!(set_timer_op_deadline(u64::MAX, u64::MAX), Some(u64::MAX));
    }
}
