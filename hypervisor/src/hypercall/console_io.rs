//! `console_io` (hypercall 18): a domain writes to the hypervisor console.
//!
//! `console_io(cmd, count, buffer)`. The buffer is checked against the caller's own page tables, all of it,
//! before any byte is printed. `CONSOLEIO_read` gives domain 0 the bytes typed on the serial line (up to
//! 256 per call; other domains get -EPERM). Deviation (documented in `abi::console`): a write longer than
//! `CONSOLE_IO_MAX` is refused with -EINVAL instead of being processed in preemptible chunks.

use abi::console::{CONSOLE_IO_MAX, CONSOLEIO_READ, CONSOLEIO_WRITE};
use abi::errno::Errno;
use abi::types::Gva;

use super::MachineMem;
use super::{Action, HypercallCtx};
use crate::mm::guest_mem::GuestView;

/// A decoded `console_io` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleRequest {
    /// Copy up to `len` typed bytes to guest address `buf` (domain 0 only).
    Read {
        /// Guest buffer.
        buf: Gva,
        /// Room in it.
        len: u64,
    },
    /// Print `len` bytes from guest address `buf`.
    Write {
        /// Guest buffer.
        buf: Gva,
        /// Bytes to print.
        len: u64,
    },
}

/// Decode the registers. Pure: no guest memory is touched.
pub fn decode(args: [u64; 5]) -> Result<ConsoleRequest, Errno> {
    let [cmd, count, buf, ..] = args;
    match cmd {
        CONSOLEIO_WRITE => {
            // Xen's count is an `unsigned int`; a count with high bits set is a hostile or broken caller.
            if count > CONSOLE_IO_MAX {
                return Err(Errno::EINVAL);
            }
            Ok(ConsoleRequest::Write {
                buf: Gva(buf),
                len: count,
            })
        }
        CONSOLEIO_READ => {
            if count > CONSOLE_IO_MAX {
                return Err(Errno::EINVAL);
            }
            Ok(ConsoleRequest::Read {
                buf: Gva(buf),
                len: count,
            })
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Handle `console_io`.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn console_io<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let result = decode(ctx.args()).and_then(|req| match req {
        ConsoleRequest::Write { buf, len } => {
            // Validate first (no output on failure), then stream.
            ctx.guest().read_chunks(buf, len, CONSOLE_IO_MAX, |_| {})?;
            let (env, id) = (&mut *ctx.env, ctx.domid);
            GuestView::new(&mut *ctx.mem, ctx.dom.base, ctx.user).read_chunks(
                buf,
                len,
                CONSOLE_IO_MAX,
                |chunk| env.console_write(id, chunk),
            )?;
            Ok(0)
        }
        ConsoleRequest::Read { buf, len } => {
            let mut tmp = [0u8; 256];
            let want = (len as usize).min(tmp.len());
            if !ctx.env.console_input_owner(ctx.domid) {
                return Err(Errno::EPERM);
            }
            // Check the buffer first so a bad pointer loses no input.
            ctx.guest().write(buf, &tmp[..want])?;
            let n = ctx.env.console_read(ctx.domid, &mut tmp[..want]).min(want);
            ctx.guest().write(buf, &tmp[..n])?;
            Ok(n as i64)
        }
    });
    Action::from(result)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::mm::phys::FrameMem;
    use abi::hypercall::nr::CONSOLE_IO;
    use abi::types::Mfn;

    fn write(va: u64, len: u64) -> (Action, Vec<u8>) {
        let (mut m, root) = machine();
        m.frame_mut(Mfn(10))[..5].copy_from_slice(b"hello");
        call(&mut m, root, CONSOLE_IO, [CONSOLEIO_WRITE, len, va, 0, 0])
    }

    #[test]
    fn writes_the_guest_buffer() {
        assert_eq!(write(RW_PAGE, 5), (Action::Return(0), b"hello".to_vec()));
        assert_eq!(write(RW_PAGE, 0), (Action::Return(0), Vec::new()));
        // Read-only guest pages are fine for output.
        assert_eq!(write(RO_PAGE, 3).0, Action::Return(0));
    }

    #[test]
    fn hostile_buffers_fault_without_output() {
        let efault = Action::Return(Errno::EFAULT.as_ret());
        for va in [
            0x20_0000,                    // the hypervisor's image address: unmapped for guests
            abi::layout::ENTRY_REGION_VA, // mapped, but the hypervisor's range
            0x0000_8000_0000_0000,        // non-canonical
            0x1000,                       // unmapped
            RO_PAGE + 0xffe,              // runs into an unmapped page
            u64::MAX - 1,                 // wraps
        ] {
            assert_eq!(write(va, 4), (efault, Vec::new()), "va {va:#x}");
        }
    }

    #[test]
    fn huge_and_unknown() {
        let einval = Action::Return(Errno::EINVAL.as_ret());
        assert_eq!(write(RW_PAGE, CONSOLE_IO_MAX + 1).0, einval);
        assert_eq!(write(RW_PAGE, u64::MAX).0, einval);
        assert_eq!(write(RW_PAGE, 1 << 32).0, einval);
        let (mut m, root) = machine();
        let enosys = Action::Return(Errno::ENOSYS.as_ret());
        assert_eq!(
            call(&mut m, root, CONSOLE_IO, [7, 1, RW_PAGE, 0, 0]).0,
            enosys
        );
        assert_eq!(
            call(&mut m, root, CONSOLE_IO, [u64::MAX, 1, RW_PAGE, 0, 0]).0,
            enosys
        );
    }
}
