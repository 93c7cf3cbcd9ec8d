//! Formatted output without a heap: [`Buffered`] collects `core::fmt` output in a small fixed buffer and
//! hands it to a sink (for programs: `write(fd, ..)`) whenever it fills and at the end; [`StrBuf`] formats
//! into a fixed string. The `print!`, `println!` and `eprintln!` macros are built on them.

use core::fmt;

/// Bytes a [`Buffered`] collects before flushing.
pub const BUF_LEN: usize = 256;

/// A `fmt::Write` that passes its output to `sink` in chunks of at most [`BUF_LEN`] bytes.
pub struct Buffered<F: FnMut(&[u8])> {
    buf: [u8; BUF_LEN],
    len: usize,
    sink: F,
}

impl<F: FnMut(&[u8])> Buffered<F> {
    /// An empty buffer in front of `sink`.
    pub fn new(sink: F) -> Self {
        Buffered {
            buf: [0; BUF_LEN],
            len: 0,
            sink,
        }
    }

    /// Hand whatever is buffered to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<F: FnMut(&[u8])> fmt::Write for Buffered<F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == BUF_LEN {
                self.flush();
            }
            let n = bytes.len().min(BUF_LEN - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

impl<F: FnMut(&[u8])> Drop for Buffered<F> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A string of at most `N` bytes formatted in place. Writing past the end fails (`fmt::Error`) and keeps
/// what fitted, cut at a character boundary.
pub struct StrBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StrBuf<N> {
    /// An empty string.
    pub const fn new() -> Self {
        StrBuf {
            buf: [0; N],
            len: 0,
        }
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s (or prefixes cut at a char boundary) are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// Forget the text.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Default for StrBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for StrBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        if s.len() <= room {
            self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.buf[self.len..self.len + cut].copy_from_slice(&s.as_bytes()[..cut]);
        self.len += cut;
        Err(fmt::Error)
    }
}

/// Format `args` to file descriptor `fd` (the console: 1 or 2). Errors are ignored: there is nowhere to
/// report them.
#[cfg(feature = "baremetal")]
pub fn print_to(fd: u64, args: fmt::Arguments<'_>) {
    let mut out = Buffered::new(|bytes: &[u8]| {
        let _ = crate::sys::write_all(fd, bytes);
    });
    let _ = fmt::Write::write_fmt(&mut out, args);
}

/// Print to the console (fd 1).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::print_to(1, format_args!($($arg)*)) };
}

/// Print a line to the console (fd 1).
#[macro_export]
macro_rules! println {
    () => { $crate::io::print_to(1, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::print_to(1, format_args!("{}\n", format_args!($($arg)*))) };
}

/// Print a line to the error output (fd 2, also the console).
#[macro_export]
macro_rules! eprintln {
    () => { $crate::io::print_to(2, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::print_to(2, format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn buffered_flushes_in_chunks_and_at_the_end() {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        {
            let mut out = Buffered::new(|b: &[u8]| chunks.push(b.to_vec()));
            let long = "x".repeat(BUF_LEN + 10);
            write!(out, "ab{}cd", long).unwrap();
        }
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].len(), BUF_LEN);
        let all: Vec<u8> = chunks.concat();
        assert_eq!(all.len(), BUF_LEN + 14);
        assert!(all.starts_with(b"abx") && all.ends_with(b"xcd"));
    }

    #[test]
    fn buffered_writes_nothing_when_empty() {
        let mut calls = 0;
        drop(Buffered::new(|_: &[u8]| calls += 1));
        assert_eq!(calls, 0);
    }

    #[test]
    fn strbuf_keeps_what_fits_at_a_char_boundary() {
        let mut s = StrBuf::<8>::new();
        let word = "ab";
        write!(s, "{} {word}", 12).unwrap();
        assert_eq!(s.as_str(), "12 ab");
        assert!(write!(s, "é€").is_err());
        assert_eq!(s.as_str(), "12 abé");
        s.clear();
        assert_eq!(s.as_str(), "");
    }
}
