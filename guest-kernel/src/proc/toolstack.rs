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
    /// A saved-image operation (`uapi::domctl::image`): on domain `id`, with the name (or, for `LIST`,
    /// the output buffer) in `name` and the extra argument `arg`.
    Image {
        op: u64,
        id: u16,
        name: UserRange,
        arg: u64,
    },
}

/// True for the toolstack's system-call numbers.
pub const fn is_toolstack(number: u64) -> bool {
    matches!(
        number,
        nr::DOM_CREATE | nr::DOM_CONTROL | nr::DOM_LIST | nr::DOM_IMAGE
    )
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
                op::SUSPEND => MachineOp::Suspend,
                op::RESUME => MachineOp::Resume,
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
        nr::DOM_IMAGE => {
            let op = a[0];
            let name = if op == uapi::domctl::image::LIST {
                let size = core::mem::size_of::<uapi::domctl::ImageInfo>() as u64;
                let max = a[4].min(uapi::domctl::MAX_SAVED_IMAGES as u64);
                user_range(a[2], max * size)?
            } else if (1..=uapi::domctl::SAVED_NAME_MAX as u64).contains(&a[3]) {
                user_range(a[2], a[3])?
            } else {
                return Err(Errno::EINVAL);
            };
            if !(uapi::domctl::image::SAVE..=uapi::domctl::image::MIGRATE_RECEIVE).contains(&op) {
                return Err(Errno::EINVAL);
            }
            ToolRequest::Image {
                op,
                id: id(a[1])?,
                name,
                arg: a[4],
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
        ToolRequest::Image { op, id, name, arg } => {
            use crate::platform::ImageOp;
            use uapi::domctl::image;
            if op == image::LIST {
                let mut out = [uapi::domctl::ImageInfo::default(); uapi::domctl::MAX_SAVED_IMAGES];
                let max = (name.len as usize / core::mem::size_of::<uapi::domctl::ImageInfo>())
                    .min(out.len());
                check(name, true)?;
                let n = ops().machine_image(ImageOp::List {
                    out: &mut out[..max],
                })? as usize;
                copy_out(name.addr, out[..n.min(max)].as_bytes())?;
                return Ok(n as u64);
            }
            let mut bytes = [0u8; uapi::domctl::SAVED_NAME_MAX];
            let b = &mut bytes[..name.len as usize];
            copy_in(name, b)?;
            let name = core::str::from_utf8(b).map_err(|_| Errno::EINVAL)?;
            ops().machine_image(match op {
                image::SAVE => ImageOp::Save { id, name },
                image::RESTORE => ImageOp::Restore {
                    name,
                    paused: arg & 1 != 0,
                },
                image::DUMP => ImageOp::Dump { name },
                image::MIGRATE => ImageOp::Migrate {
                    id,
                    phase: arg as u32,
                },
                image::MIGRATE_RECEIVE => ImageOp::MigrateReceive,
                _ => ImageOp::Delete { name },
            })
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
        assert!(is_toolstack(nr::DOM_IMAGE));
        for n in [0, uapi::NR_MAX, 31, 36, u64::MAX] {
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
        for what in [0, 8, u64::MAX] {
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
