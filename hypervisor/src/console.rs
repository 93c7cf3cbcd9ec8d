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

#[cfg(feature = "baremetal")]
pub use self::serial::*;

#[cfg(feature = "baremetal")]
mod serial {
    use core::fmt::Write;
    use core::sync::atomic::{AtomicBool, Ordering};

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

    /// Write domain 0's bytes as they come (filtered by [`super::direct_byte`]).
    pub fn guest_direct(bytes: &[u8]) {
        let _g = LOCK.lock();
        for &b in bytes {
            serial::write_byte(super::direct_byte(b));
        }
        if let Some(&last) = bytes.last() {
            MID_LINE.store(last != b'\n', Ordering::Relaxed);
        }
    }

    /// Start a fresh line if domain 0's direct output left one unfinished (lock held).
    fn fresh_line() {
        if MID_LINE.swap(false, Ordering::Relaxed) {
            serial::write_byte(b'\n');
        }
    }

    /// Print formatted text on the console (no prefix); used for multi-part lines.
    pub fn print(args: core::fmt::Arguments<'_>) {
        let _g = LOCK.lock();
        fresh_line();
        let _ = Uart.write_fmt(args);
    }

    /// Print on the console without taking the lock (panic and fault paths only: the lock may be held by
    /// the code that failed).
    pub fn print_unlocked(args: core::fmt::Arguments<'_>) {
        let _ = Uart.write_fmt(args);
    }

    /// Print one line of domain `domid`'s output as `(dN) line`.
    pub fn guest_line(domid: u16, line: &[u8]) {
        let _g = LOCK.lock();
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
}
