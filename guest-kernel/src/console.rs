//! Console output for the kernel: `println!` formats into a line buffer and hands whole lines to the
//! platform (one `console_io` hypercall per line).

use core::fmt::{self, Write};

use crate::platform::ops;

/// A fixed buffer that flushes to the platform console when full.
pub struct LineWriter {
    buf: heapless::Vec<u8, 256>,
}

impl LineWriter {
    /// An empty writer.
    pub const fn new() -> Self {
        LineWriter {
            buf: heapless::Vec::new(),
        }
    }

    /// Send what is buffered.
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            let _ = ops().console_write(&self.buf);
            self.buf.clear();
        }
    }
}

impl Default for LineWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.buf.push(b).is_err() {
                self.flush();
                let _ = self.buf.push(b);
            }
        }
        Ok(())
    }
}

/// Print formatted text followed by a newline, as one console write when it fits.
pub fn println_args(args: fmt::Arguments<'_>) {
    let mut w = LineWriter::new();
    let _ = w.write_fmt(args);
    let _ = w.write_str("\n");
    w.flush();
}

/// Print a line on the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::println_args(format_args!($($arg)*)) };
}
