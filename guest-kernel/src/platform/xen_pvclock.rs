//! Reading Xen's pvclock (`vcpu_time_info`) consistently: the PV backend's clock. Pure: host-tested with a
//! simulated hypervisor that updates the record between and during reads.
//!
//! The hypervisor updates the record under a sequence lock: it makes `version` odd, writes the fields,
//! then makes `version` even again. A reader reads `version`, the fields and the TSC, then `version` again,
//! and retries if the two versions differ or are odd. The time is
//! `system_time + scale(tsc - tsc_timestamp)` ([`abi::xen::VcpuTimeInfo::system_time_at`]).
//!
//! Successive records are computed independently, so rounding (or a re-calibration) can make the value
//! computed just after an update a few nanoseconds smaller than one computed just before it. The kernel
//! therefore passes the clock through `time::Monotonic`, which never returns less than it returned before
//! (Linux's `pvclock_clocksource_read` does the same).

use core::sync::atomic::Ordering;

use abi::xen::VcpuTimeInfo;

/// Where a pvclock record and a TSC can be read.
pub trait PvclockSource {
    /// The record's `version` (one read).
    fn version(&self) -> u32;
    /// A copy of the record's fields (read between two `version` reads).
    fn fields(&self) -> VcpuTimeInfo;
    /// The TSC now (ordered after the preceding loads).
    fn tsc(&self) -> u64;
}

/// One consistent reading (`version`: the record's version it came from).
pub use super::ClockReading as Reading;

/// Read the clock once, retrying while the record is being updated. `None` if it never became stable
/// within a large number of attempts (a hypervisor leaving `version` odd).
#[inline] // Into `now`: a codegen-unit shuffle had moved it out of line (+15 on evtchn_pingpong_interdomain).
pub fn read(src: &impl PvclockSource) -> Option<Reading> {
    for retries in 0..1_000_000u32 {
        let v1 = src.version();
        core::sync::atomic::compiler_fence(Ordering::Acquire);
        let t = src.fields();
        let tsc = src.tsc();
        core::sync::atomic::compiler_fence(Ordering::Acquire);
        let v2 = src.version();
        if v1 == v2 && v1 & 1 == 0 {
            return Some(Reading {
                ns: t.system_time_at(tsc),
                version: v1,
                retries,
            });
        }
        core::hint::spin_loop();
    }
    None
}

/// True if the record looks like one the hypervisor maintains (a zeroed record means no pvclock).
pub fn present(t: &VcpuTimeInfo) -> bool {
    t.version != 0 && t.tsc_to_system_mul != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Monotonic;
    use std::cell::Cell;

    /// A simulated vCPU clock: 1 TSC tick = 1 ns (mul 2^31, shift 1); `update_every` reads trigger an
    /// update that re-bases the record, optionally in the middle of the reader's critical section.
    struct Sim {
        record: Cell<VcpuTimeInfo>,
        tsc: Cell<u64>,
        calls: Cell<u32>,
        update_mid_read: Cell<bool>,
        skew: i64,
    }

    impl Sim {
        fn new(skew: i64) -> Sim {
            Sim {
                record: Cell::new(VcpuTimeInfo {
                    version: 2,
                    tsc_timestamp: 1000,
                    system_time: 0,
                    tsc_to_system_mul: 1 << 31,
                    tsc_shift: 1,
                    ..Default::default()
                }),
                tsc: Cell::new(1000),
                calls: Cell::new(0),
                update_mid_read: Cell::new(false),
                skew,
            }
        }

        /// The hypervisor re-bases the record at the current TSC (with `skew` ns of rounding error).
        fn update(&self) {
            let mut r = self.record.get();
            let now = r.system_time_at(self.tsc.get());
            r.version += 1;
            self.record.set(r);
            r.system_time = now.wrapping_add_signed(self.skew);
            r.tsc_timestamp = self.tsc.get();
            r.version += 1;
            self.record.set(r);
        }
    }

    impl PvclockSource for Sim {
        fn version(&self) -> u32 {
            self.record.get().version
        }
        fn fields(&self) -> VcpuTimeInfo {
            let r = self.record.get();
            if self.update_mid_read.replace(false) {
                self.update();
            }
            r
        }
        fn tsc(&self) -> u64 {
            self.calls.set(self.calls.get() + 1);
            self.tsc.set(self.tsc.get() + 7);
            self.tsc.get()
        }
    }

    #[test]
    fn reads_scale_the_tsc() {
        let s = Sim::new(0);
        let r = read(&s).unwrap();
        assert_eq!(r.ns, 7);
        assert_eq!((r.version, r.retries), (2, 0));
        assert!(present(&s.record.get()));
        assert!(!present(&VcpuTimeInfo::default()));
    }

    #[test]
    fn an_update_during_the_read_is_retried() {
        let s = Sim::new(0);
        s.update_mid_read.set(true);
        let r = read(&s).unwrap();
        assert_eq!(r.retries, 1);
        assert_eq!(r.version, 4);
    }

    #[test]
    fn odd_version_forever_gives_up() {
        struct Stuck;
        impl PvclockSource for Stuck {
            fn version(&self) -> u32 {
                3
            }
            fn fields(&self) -> VcpuTimeInfo {
                VcpuTimeInfo::default()
            }
            fn tsc(&self) -> u64 {
                0
            }
        }
        assert_eq!(read(&Stuck), None);
    }

    #[test]
    fn monotonic_across_backward_updates() {
        // Each update loses 20 ns (more than one read advances): the raw clock steps back, the monotonic
        // one does not.
        let s = Sim::new(-20);
        let m = Monotonic::new();
        let mut last_raw = 0;
        let mut last = 0;
        let mut backwards = 0;
        for i in 0..1000 {
            if i % 10 == 0 {
                s.update();
            }
            let raw = read(&s).unwrap().ns;
            if raw < last_raw {
                backwards += 1;
            }
            last_raw = raw;
            let t = m.observe(raw);
            assert!(t >= last);
            last = t;
        }
        assert!(backwards > 0, "the simulation does step back");
        assert_eq!(m.last(), last);
    }
}
