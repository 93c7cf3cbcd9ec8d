//! The toolstack's system calls (`uapi::domctl`): `dom_create`, `dom_control`, `dom_list`, which domain 0's
//! `xl` uses. Decoding is pure (host-tested); executing forwards to the platform seam
//! ([`Platform::machine_create`](crate::platform::Platform::machine_create),
//! [`machine_control`](crate::platform::Platform::machine_control),
//! [`machines`](crate::platform::Platform::machines)), so the kernel never sees Xen's structures here and a
//! native backend answers "not virtualised". The hypervisor decides who may (domain 0 only).

use abi::errno::Errno;
use uapi::domctl::{MAX_DOMAINS, nr, op};

use super::decode::{UserRange, user_range};
use crate::platform::MachineOp;

/// A decoded toolstack call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolRequest {
    /// Build a domain from the `DomCreate` in this range.
    Create(UserRange),
    /// Act on domain `id`.
    Control(u16, MachineOp),
    /// List domains from id `first` into `buf` (room for `max` records).
    List {
        first: u16,
        buf: UserRange,
        max: u64,
    },
}

/// True for the toolstack's system-call numbers.
pub const fn is_toolstack(number: u64) -> bool {
    matches!(number, nr::DOM_CREATE | nr::DOM_CONTROL | nr::DOM_LIST)
}

/// Decode toolstack call `number` (one of [`is_toolstack`]). Domain ids past the limit are `-ESRCH`,
/// unknown operations `-EINVAL`, bad buffers `-EFAULT`.
pub fn decode(number: u64, a: [u64; 5]) -> Result<ToolRequest, Errno> {
    let id = |v: u64| match u16::try_from(v) {
        Ok(d) if usize::from(d) < MAX_DOMAINS => Ok(d),
        _ => Err(Errno::ESRCH),
    };
    Ok(match number {
        nr::DOM_CREATE => ToolRequest::Create(user_range(
            a[0],
            core::mem::size_of::<uapi::domctl::DomCreate>() as u64,
        )?),
        nr::DOM_CONTROL => {
            let what = match a[0] {
                op::DESTROY => MachineOp::Destroy,
                op::PAUSE => MachineOp::Pause,
                op::UNPAUSE => MachineOp::Unpause,
                op::MAX_MEM => MachineOp::MaxMemKb(a[2]),
                op::CONSOLE => MachineOp::ConsoleInput,
                _ => return Err(Errno::EINVAL),
            };
            ToolRequest::Control(id(a[1])?, what)
        }
        nr::DOM_LIST => {
            let size = core::mem::size_of::<uapi::DomInfo>() as u64;
            let max = a[2].min(MAX_DOMAINS as u64);
            ToolRequest::List {
                first: if a[0] >= MAX_DOMAINS as u64 {
                    MAX_DOMAINS as u16
                } else {
                    a[0] as u16
                },
                buf: user_range(a[1], max.checked_mul(size).ok_or(Errno::EFAULT)?)?,
                max,
            }
        }
        _ => return Err(Errno::ENOSYS),
    })
}

/// Carry out a toolstack call.
#[cfg(feature = "baremetal")]
pub fn execute(req: ToolRequest) -> Result<u64, Errno> {
    use super::usercopy::{check, copy_in, copy_out};
    use crate::platform::ops;
    use zerocopy::{FromBytes, IntoBytes};

    match req {
        ToolRequest::Create(r) => {
            let mut bytes = [0u8; core::mem::size_of::<uapi::domctl::DomCreate>()];
            copy_in(r, &mut bytes)?;
            let c = uapi::domctl::DomCreate::read_from_bytes(&bytes).map_err(|_| Errno::EFAULT)?;
            ops().machine_create(&c).map(u64::from)
        }
        ToolRequest::Control(id, what) => ops().machine_control(id, what).map(|()| 0),
        ToolRequest::List { first, buf, max } => {
            check(buf, true)?;
            let mut chunk = [<uapi::DomInfo as zerocopy::FromZeros>::new_zeroed(); 16];
            let (mut next, mut n) = (first, 0u64);
            while n < max && usize::from(next) < MAX_DOMAINS {
                let want = ((max - n) as usize).min(chunk.len());
                let got = ops().machines(next, &mut chunk[..want])?;
                if got == 0 {
                    break;
                }
                let at = buf.addr + n * core::mem::size_of::<uapi::DomInfo>() as u64;
                copy_out(at, chunk[..got].as_bytes())?;
                n += got as u64;
                // Ascending ids: continue after the last one reported (bounded by the limit).
                next = chunk[got - 1]
                    .domid
                    .saturating_add(1)
                    .min(MAX_DOMAINS as u32) as u16;
            }
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_toolstack_numbers() {
        for n in [nr::DOM_CREATE, nr::DOM_CONTROL, nr::DOM_LIST] {
            assert!(is_toolstack(n));
        }
        for n in [0, uapi::NR_MAX, 31, 35, u64::MAX] {
            assert!(!is_toolstack(n));
        }
    }

    #[test]
    fn hostile_arguments() {
        for bad in [0, 0xffff_8000_0000_0000, u64::MAX - 8] {
            assert_eq!(
                decode(nr::DOM_CREATE, [bad, 0, 0, 0, 0]),
                Err(Errno::EFAULT)
            );
            assert_eq!(decode(nr::DOM_LIST, [0, bad, 4, 0, 0]), Err(Errno::EFAULT));
        }
        for id in [MAX_DOMAINS as u64, 0x7ff0, 1 << 16, u64::MAX] {
            assert_eq!(
                decode(nr::DOM_CONTROL, [op::PAUSE, id, 0, 0, 0]),
                Err(Errno::ESRCH)
            );
        }
        for what in [0, 6, u64::MAX] {
            assert_eq!(
                decode(nr::DOM_CONTROL, [what, 1, 0, 0, 0]),
                Err(Errno::EINVAL)
            );
        }
        // A huge record count is bounded by the limit before the range is checked.
        assert_eq!(
            decode(nr::DOM_LIST, [0, 0x40_0000, u64::MAX, 0, 0]),
            Ok(ToolRequest::List {
                first: 0,
                buf: UserRange {
                    addr: 0x40_0000,
                    len: MAX_DOMAINS as u64 * 40
                },
                max: MAX_DOMAINS as u64
            })
        );
        assert_eq!(
            decode(nr::DOM_CONTROL, [op::MAX_MEM, 3, 8192, 0, 0]),
            Ok(ToolRequest::Control(3, MachineOp::MaxMemKb(8192)))
        );
    }
}
