//! Time: pvclock system time and its publication to guests, the wallclock from the CMOS RTC, and timer
//! arithmetic. Pure and host-tested; the machine code (TSC calibration, LAPIC timer, port I/O) calls it.
//!
//! | module | what |
//! |---|---|
//! | [`pvclock`] | [`pvclock::scale_for`] (Xen's `set_time_scale`), [`pvclock::Clock`] (TSC → ns, `vcpu_time_info` publications, deadline → TSC), seqlocked shared_info writers, `set_timer_op` deadline rule |
//! | [`rtc`] | consistent CMOS reads through a register-read closure, BCD/binary, 12/24-hour and century decoding, Unix seconds |
//!
//! How the hypervisor uses it:
//!
//! - **Boot**: calibrate `tsc_hz`; `clock = Clock::new(tsc_hz, rdtsc())`; `secs = rtc::read_unix_seconds(cmos)`;
//!   `(s, ns) = pvclock::wallclock_base(secs, clock.now_ns(rdtsc()))`; for every domain's shared_info page
//!   `pvclock::write_wallclock(page, s, ns)`.
//! - **Before entering a vCPU** (on a switch to it, when its page no longer holds the record last
//!   published there or [`pvclock::REPUBLISH_NS`] have passed: `pvclock::must_republish`):
//!   `pvclock::write_vcpu_time(page, 0, &clock.publish(rdtsc()))`.
//! - **Timers**: the scheduler's deadlines are ns of system time; `clock.tsc_at(ns)` for a TSC-deadline
//!   timer, or `pvclock::ns_to_ticks(ns - now, lapic_hz)` for a LAPIC one-shot count.
//!   `set_timer_op(t)`: `pvclock::set_timer_op_deadline(t, now)` gives the guest timer (or `None`: cancel).

pub mod pvclock;
pub mod rtc;

pub use pvclock::{Clock, scale_for};
