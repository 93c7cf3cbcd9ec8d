//! The hypervisor console: `[hv]` log lines, and guest output as `(dN)` lines.
//!
//! Guest bytes are collected per domain until a newline so that lines of different domains never mix;
//! control characters are replaced so a guest cannot move the cursor or clear a user's terminal.
//!
//! With `dom0_console=direct` on the hypervisor command line, domain 0's output goes to the serial line as
//! it comes, without a prefix (as Xen does for its hardware domain: it may be interactive — a shell's
//! prompt has no newline, and typed characters are echoed one by one). Only printable bytes, TAB, CR, LF
//! and backspace pass ([`direct_byte`]); a `[hv]` or `(dN)` line starts on a fresh line if domain 0 left
//! one unfinished. The default keeps domain 0 in lines like every other domain, which the test harness
//! relies on to attribute output.
//!
//! Serial input goes to one domain, the *input owner* ([`input_owner`]): domain 0 unless the control domain
//! gave it to another with `xl console` (our `domctl` command `XEN_DOMCTL_CONSOLE_INPUT`, abi deviation n);
//! the debug key Ctrl-] `c` gives it back to domain 0, and so does the owner's end. With
//! `dom0_console=direct`, the direct output follows the owner (the domain being typed at echoes at once).

/// The domain that receives serial input (`VIRQ_CONSOLE`, `CONSOLEIO_read`).
static INPUT_OWNER: core::sync::atomic::AtomicU16 = core::sync::atomic::AtomicU16::new(0);

/// The domain serial input goes to.
pub fn input_owner() -> u16 {
    INPUT_OWNER.load(core::sync::atomic::Ordering::Relaxed)
}

/// Send serial input to domain `d` from now on.
pub fn set_input_owner(d: u16) {
    INPUT_OWNER.store(d, core::sync::atomic::Ordering::Relaxed);
}

/// Longest guest line kept before it is flushed without a newline.
pub const LINE_MAX: usize = 160;

/// One domain's unterminated console output.
pub struct LineBuffer {
    buf: heapless::Vec<u8, LINE_MAX>,
}

impl LineBuffer {
    /// An empty buffer.
    pub const fn new() -> LineBuffer {
        LineBuffer {
            buf: heapless::Vec::new(),
        }
    }

    /// Append guest bytes; `emit` receives every completed line (without the newline).
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        for &b in bytes {
            match b {
                b'\n' => {
                    emit(&self.buf);
                    self.buf.clear();
                }
                b'\r' => {}
                _ => {
                    let c = if b == b'\t' || (0x20..0x7f).contains(&b) {
                        b
                    } else {
                        b'?'
                    };
                    if self.buf.push(c).is_err() {
                        emit(&self.buf);
                        self.buf.clear();
                        let _ = self.buf.push(c);
                    }
                }
            }
        }
    }

    /// Emit whatever is left (used when a domain stops).
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            emit(&self.buf);
            self.buf.clear();
        }
    }
}

/// What a byte of domain 0's direct output becomes on the serial line: printable ASCII, TAB, CR, LF and
/// backspace pass; anything else (escape sequences, bells, ...) becomes `?`.
pub const fn direct_byte(b: u8) -> u8 {
    match b {
        b'\t' | b'\r' | b'\n' | 0x08 | 0x20..=0x7e => b,
        _ => b'?',
    }
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

/// How long after domain 0's last direct byte another domain's line waits for domain 0 to finish its line.
pub const HOLD_NS: u64 = 50_000_000;

/// Other domains' `(dN)` lines and the hypervisor's own `[hv]` lines held back while domain 0's direct
/// output is in the middle of a line it is still writing (a native kernel's banner under emulate arrives
/// one port write at a time, and domain 0 may be preempted in the middle): printing them at once would cut
/// domain 0's line in two. A line is held while domain 0 wrote within [`HOLD_NS`] and there is room (a
/// line that is not held goes out after everything held, so the order is kept); everything held goes out,
/// in order, once domain 0 ends its line, once the hold expires (checked on every console write), when the
/// CPU goes idle (every domain is blocked: domain 0 is not writing), or before the machine powers off.
/// `[hv]` lines are held too: a log line about another domain (its shutdown, a debug key) cuts domain 0's
/// line as surely as that domain's own output. Pure; the serial side below owns one.
pub struct HoldBack<const N: usize> {
    held: heapless::Vec<u8, N>,
}

impl<const N: usize> HoldBack<N> {
    /// Nothing held.
    pub const fn new() -> Self {
        HoldBack {
            held: heapless::Vec::new(),
        }
    }

    /// Hold `(d{domid}) line\n` if domain 0 is mid-line and wrote at `last_direct_ns`, within [`HOLD_NS`]
    /// of `now_ns`, and it fits; false: print it now.
    pub fn hold(
        &mut self,
        mid_line: bool,
        last_direct_ns: u64,
        now_ns: u64,
        domid: u16,
        line: &[u8],
    ) -> bool {
        let mut prefix: heapless::String<12> = heapless::String::new();
        let _ = core::fmt::Write::write_fmt(&mut prefix, format_args!("(d{domid}) "));
        self.hold_parts(
            mid_line,
            last_direct_ns,
            now_ns,
            &[prefix.as_bytes(), line, b"\n"],
        )
    }

    /// Hold hypervisor text (`[hv]` lines, already formatted, newlines included) on the same terms as
    /// [`hold`](Self::hold); false: print it now (after anything held, see [`due`](Self::due)).
    pub fn hold_text(
        &mut self,
        mid_line: bool,
        last_direct_ns: u64,
        now_ns: u64,
        text: &[u8],
    ) -> bool {
        self.hold_parts(mid_line, last_direct_ns, now_ns, &[text])
    }

    fn hold_parts(
        &mut self,
        mid_line: bool,
        last_direct_ns: u64,
        now_ns: u64,
        parts: &[&[u8]],
    ) -> bool {
        if !mid_line || now_ns.saturating_sub(last_direct_ns) >= HOLD_NS {
            return false;
        }
        if self.held.len() + parts.iter().map(|p| p.len()).sum::<usize>() > N {
            return false;
        }
        // Room was checked: these cannot fail.
        for p in parts {
            let _ = self.held.extend_from_slice(p);
        }
        true
    }

    /// True if lines are held and the hold is over: domain 0 ended its line, or has not written for
    /// [`HOLD_NS`].
    pub fn due(&self, mid_line: bool, last_direct_ns: u64, now_ns: u64) -> bool {
        !self.held.is_empty() && (!mid_line || now_ns.saturating_sub(last_direct_ns) >= HOLD_NS)
    }

    /// Hand every held byte to `emit` (once) and forget them.
    pub fn drain(&mut self, emit: impl FnMut(u8)) {
        self.held.iter().copied().for_each(emit);
        self.held.clear();
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

impl<const N: usize> Default for HoldBack<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "baremetal")]
pub use self::serial::*;

#[cfg(feature = "baremetal")]
mod serial {
    use core::fmt::Write;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use crate::arch::serial;

    /// Serializes whole lines on the UART.
    static LOCK: spin::Mutex<()> = spin::Mutex::new(());

    struct Uart;

    impl Write for Uart {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            s.bytes().for_each(serial::write_byte);
            Ok(())
        }
    }

    /// Domain 0 writes directly (`dom0_console=direct`).
    static DOM0_DIRECT: AtomicBool = AtomicBool::new(false);
    /// Domain 0's direct output ended without a newline.
    static MID_LINE: AtomicBool = AtomicBool::new(false);

    /// Send domain 0's output directly to the serial line (`dom0_console=direct`).
    pub fn set_dom0_direct(on: bool) {
        DOM0_DIRECT.store(on, Ordering::Relaxed);
    }

    /// True if domain 0's output goes directly to the serial line.
    pub fn dom0_direct() -> bool {
        DOM0_DIRECT.load(Ordering::Relaxed)
    }

    /// Other domains' lines waiting for domain 0 to end its direct line ([`super::HoldBack`]).
    static HELD: spin::Mutex<super::HoldBack<4096>> = spin::Mutex::new(super::HoldBack::new());
    /// System time of domain 0's last direct byte.
    static LAST_DIRECT_NS: AtomicU64 = AtomicU64::new(0);

    fn now_ns() -> u64 {
        crate::setup::TIME
            .get()
            .map_or(0, crate::setup::TimeBase::now_ns)
    }

    /// Write domain 0's bytes as they come (filtered by [`super::direct_byte`]).
    pub fn guest_direct(bytes: &[u8]) {
        let _g = LOCK.lock();
        for &b in bytes {
            serial::write_byte(super::direct_byte(b));
        }
        if let Some(&last) = bytes.last() {
            MID_LINE.store(last != b'\n', Ordering::Relaxed);
            LAST_DIRECT_NS.store(now_ns(), Ordering::Relaxed);
        }
        release_held(false);
    }

    /// Print the held lines if their hold is over (or `force`: a `[hv]` line follows), starting a fresh
    /// line first if domain 0 left one unfinished (lock held).
    fn release_held(force: bool) {
        let mut held = HELD.lock();
        if held.is_empty() {
            return;
        }
        let mid = MID_LINE.load(Ordering::Relaxed);
        if force || held.due(mid, LAST_DIRECT_NS.load(Ordering::Relaxed), now_ns()) {
            if MID_LINE.swap(false, Ordering::Relaxed) {
                serial::write_byte(b'\n');
            }
            held.drain(serial::write_byte);
        }
    }

    /// The CPU is going idle: every domain is blocked, so domain 0 is not in the middle of writing its
    /// line (a prompt waits for input): print everything held now rather than at the next interrupt.
    pub fn release_on_idle() {
        let _g = LOCK.lock();
        release_held(true);
    }

    /// Print everything held and end domain 0's unfinished line (the machine is about to power off).
    pub fn release_all() {
        let _g = LOCK.lock();
        fresh_line();
    }

    /// Text formatted for [`print`] before it goes out or is held (a `[hv]` line is at most a few hundred
    /// bytes; longer text goes out directly, after anything held).
    struct Text(heapless::Vec<u8, 512>, bool);

    impl Write for Text {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            if self.0.extend_from_slice(s.as_bytes()).is_err() {
                self.1 = true;
            }
            Ok(())
        }
    }

    /// Start a fresh line if domain 0's direct output left one unfinished (lock held).
    fn fresh_line() {
        release_held(true);
        if MID_LINE.swap(false, Ordering::Relaxed) {
            serial::write_byte(b'\n');
        }
    }

    /// Print formatted text on the console (no prefix); used for multi-part lines.
    pub fn print(args: core::fmt::Arguments<'_>) {
        let _g = LOCK.lock();
        let mid = MID_LINE.load(Ordering::Relaxed);
        let last = LAST_DIRECT_NS.load(Ordering::Relaxed);
        if mid && now_ns().saturating_sub(last) < super::HOLD_NS {
            let mut t = Text(heapless::Vec::new(), false);
            let _ = t.write_fmt(args);
            if !t.1 && HELD.lock().hold_text(mid, last, now_ns(), &t.0) {
                return;
            }
            fresh_line();
            if t.1 {
                let _ = Uart.write_fmt(args);
            } else {
                t.0.iter().copied().for_each(serial::write_byte);
            }
            return;
        }
        fresh_line();
        let _ = Uart.write_fmt(args);
    }

    /// Print on the console without taking the lock (panic and fault paths only: the lock may be held by
    /// the code that failed).
    pub fn print_unlocked(args: core::fmt::Arguments<'_>) {
        let _ = Uart.write_fmt(args);
    }

    /// Panic and fault paths, before their report: print the held lines (if the failing code does not
    /// hold them), so that no line logged before the failure is lost.
    pub fn release_unlocked() {
        if let Some(mut held) = HELD.try_lock() {
            if MID_LINE.swap(false, Ordering::Relaxed) {
                serial::write_byte(b'\n');
            }
            held.drain(serial::write_byte);
        }
    }

    /// Print one line of domain `domid`'s output as `(dN) line`.
    pub fn guest_line(domid: u16, line: &[u8]) {
        let _g = LOCK.lock();
        let mid = MID_LINE.load(Ordering::Relaxed);
        let last = LAST_DIRECT_NS.load(Ordering::Relaxed);
        if HELD.lock().hold(mid, last, now_ns(), domid, line) {
            return;
        }
        fresh_line();
        let _ = write!(Uart, "(d{domid}) ");
        line.iter().copied().for_each(serial::write_byte);
        serial::write_byte(b'\n');
    }

    struct Logger;

    impl log::Log for Logger {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::max_level()
        }

        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                print(format_args!("[hv] {:<5} {}\n", r.level(), r.args()));
            }
        }

        fn flush(&self) {}
    }

    static LOGGER: Logger = Logger;

    /// Install the `[hv]` logger with the given maximum level.
    pub fn init_logger(level: log::LevelFilter) {
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(level);
    }

    /// Parse a `loglevel=` value.
    pub fn parse_level(s: &str) -> Option<log::LevelFilter> {
        Some(match s {
            "error" => log::LevelFilter::Error,
            "warn" => log::LevelFilter::Warn,
            "info" => log::LevelFilter::Info,
            "debug" => log::LevelFilter::Debug,
            "trace" => log::LevelFilter::Trace,
            "off" => log::LevelFilter::Off,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_sanitized() {
        let mut b = LineBuffer::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        b.push(b"hello\nwor", |l| out.push(l.to_vec()));
        b.push(b"ld\x1b[2J\r\n", |l| out.push(l.to_vec()));
        assert_eq!(out, vec![b"hello".to_vec(), b"world?[2J".to_vec()]);
        b.push(b"tail", |l| out.push(l.to_vec()));
        b.flush(|l| out.push(l.to_vec()));
        assert_eq!(out.last().unwrap(), b"tail");
    }

    #[test]
    fn direct_output_passes_only_harmless_bytes() {
        let out: Vec<u8> = b"ok\x08 \x08\r\n\t\x1b[2J\x07\xff"
            .iter()
            .map(|&b| direct_byte(b))
            .collect();
        assert_eq!(out, b"ok\x08 \x08\r\n\t?[2J??".to_vec());
    }

    #[test]
    fn long_lines_are_wrapped() {
        let mut b = LineBuffer::new();
        let mut n = 0;
        b.push(&[b'x'; LINE_MAX * 2 + 5], |l| {
            assert!(l.len() <= LINE_MAX);
            n += 1;
        });
        assert_eq!(n, 2);
    }

    #[test]
    fn other_lines_wait_for_domain_0_to_end_its_line() {
        let mut h: HoldBack<64> = HoldBack::new();
        let mut out = Vec::new();
        // Domain 0 at column > 0 and writing now: held.
        assert!(h.hold(true, 1_000, 2_000, 1, b"round 1"));
        assert!(!h.due(true, 1_000, 2_000));
        // Domain 0 not mid-line, or quiet for the hold time: printed at once.
        assert!(!h.hold(false, 1_000, 2_000, 2, b"x"));
        assert!(!h.hold(true, 0, HOLD_NS, 2, b"x"));
        // Domain 0 ends its line: due, drained once, in order.
        assert!(h.hold(true, 1_000, 3_000, 1, b"round 2"));
        assert!(h.due(false, 1_000, 3_000));
        h.drain(|b| out.push(b));
        assert_eq!(out, b"(d1) round 1\n(d1) round 2\n".to_vec());
        assert!(h.is_empty() && !h.due(false, 0, 0));
        // Expiry with domain 0 still mid-line.
        assert!(h.hold(true, 10, 20, 3, b"late"));
        assert!(!h.due(true, 10, 10 + HOLD_NS - 1));
        assert!(h.due(true, 10, 10 + HOLD_NS));
    }

    #[test]
    fn hypervisor_lines_wait_with_the_other_domains_lines_in_order() {
        // A PV domain's last line, then the hypervisor's lines about its shutdown, while domain 0 is
        // still writing its banner (it was preempted after "guest kernel run"): all wait, in order.
        let mut h: HoldBack<128> = HoldBack::new();
        assert!(h.hold(true, 1_000, 2_000, 1, b"demo finished"));
        assert!(h.hold_text(true, 1_000, 3_000, b"[hv] INFO  domain 1 shut down\n"));
        assert!(!h.due(true, 1_000, 3_000));
        // Not mid-line, expired, or no room: the caller prints it now (after draining).
        assert!(!h.hold_text(false, 1_000, 3_000, b"[hv] a\n"));
        assert!(!h.hold_text(true, 1_000, 1_000 + HOLD_NS, b"[hv] a\n"));
        assert!(!h.hold_text(true, 1_000, 3_000, &[b'x'; 128]));
        assert!(h.due(false, 1_000, 4_000));
        let mut out = Vec::new();
        h.drain(|b| out.push(b));
        assert_eq!(
            out,
            b"(d1) demo finished\n[hv] INFO  domain 1 shut down\n".to_vec()
        );
    }

    #[test]
    fn a_full_hold_back_prints_at_once_and_loses_nothing_held() {
        let mut h: HoldBack<16> = HoldBack::new();
        assert!(h.hold(true, 0, 0, 1, b"0123456")); // 5 + 7 + 1 = 13 bytes
        assert!(!h.hold(true, 0, 0, 1, b"abc"));
        let mut out = Vec::new();
        h.drain(|b| out.push(b));
        assert_eq!(out, b"(d1) 0123456\n".to_vec());
    }
}
