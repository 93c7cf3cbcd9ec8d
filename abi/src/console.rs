//! The hypervisor console (`console_io`, `xen.h`): sub-commands and our bound on a single write.
//!
//! `console_io(cmd, count, buffer)`: `RDI` = `CONSOLEIO_*`, `RSI` = byte count, `RDX` = guest virtual address
//! of the buffer.
//!
//! [`CONSOLEIO_WRITE`] returns 0 once all `count` bytes are written, or a negative errno (`-EFAULT` if the
//! buffer cannot be read). [`CONSOLEIO_READ`] returns the number of bytes read.
//!
//! # Deviation from Xen: a bounded write
//!
//! Xen accepts a write of any length and works through it in chunks, preempting itself (a hypercall
//! continuation) when it has worked too long. This hypervisor instead refuses a write longer than
//! [`CONSOLE_IO_MAX`] bytes with `-EINVAL` and writes nothing; guests split longer output themselves.

/// Write `count` bytes from the buffer to the hypervisor console.
pub const CONSOLEIO_WRITE: u64 = 0;
/// Read up to `count` bytes of console input into the buffer.
pub const CONSOLEIO_READ: u64 = 1;

/// The longest `CONSOLEIO_WRITE` accepted, in bytes; longer writes fail with `-EINVAL`.
pub const CONSOLE_IO_MAX: u64 = 16384;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(CONSOLEIO_WRITE, 0);
        assert_eq!(CONSOLEIO_READ, 1);
        assert_eq!(CONSOLE_IO_MAX, 16 * 1024);
    }
}
