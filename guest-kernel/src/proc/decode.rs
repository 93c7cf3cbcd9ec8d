//! System-call decoding (pure): registers in, a typed request out, or the errno — before anything is
//! touched. User ranges are checked for shape here (inside the user half, no wrap-around); whether they
//! are mapped is checked when they are copied (`usercopy`).

use abi::errno::Errno;
use uapi::{MAX_ARGS, MAX_NAME, SPAWN_FOREGROUND, WNOHANG, nr};

use crate::mm::USER_END;

/// A user range `[addr, addr + len)` that lies in the user half.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRange {
    pub addr: u64,
    pub len: u64,
}

/// Check the shape of a user range: `-EFAULT` if it wraps or reaches into the kernel's half, or (when not
/// empty) starts in page 0.
pub fn user_range(addr: u64, len: u64) -> Result<UserRange, Errno> {
    let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
    if len != 0 && (end > USER_END || addr < super::vma::USER_LOW) {
        return Err(Errno::EFAULT);
    }
    Ok(UserRange { addr, len })
}

fn array_range(addr: u64, count: u64, size: usize) -> Result<UserRange, Errno> {
    let len = count.checked_mul(size as u64).ok_or(Errno::EFAULT)?;
    user_range(addr, len)
}

/// Most bytes of a `bench` filter.
pub const FILTER_MAX: u64 = 64;
/// Most `evtchn_ping` rounds.
pub const PING_MAX: u64 = uapi::EVTCHN_PING_MAX;

/// A decoded system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Exit(u32),
    Write(UserRange),
    Read(UserRange),
    Getpid,
    Yield,
    Sleep(u64),
    Spawn {
        name: UserRange,
        args: UserRange,
        foreground: bool,
    },
    Wait {
        pid: Option<u32>,
        status: Option<UserRange>,
        nohang: bool,
    },
    Mmap {
        len: u64,
        prot: u64,
    },
    Munmap {
        addr: u64,
        len: u64,
    },
    Ps {
        buf: UserRange,
        max: u64,
    },
    Meminfo(UserRange),
    Uptime,
    Domains {
        buf: UserRange,
        max: u64,
    },
    Poweroff(u32),
    Ringinfo(UserRange),
    Bench {
        iterations: u64,
        filter: UserRange,
        quiet: bool,
    },
    EvtchnPing(u64),
    Hvcounters(UserRange),
    Notify(u32),
    AwaitNotify,
    FaultHandler(u64),
    FaultReturn(u64),
    Sensitive,
    /// `uapi::domctl` (domain 0's toolstack).
    Toolstack(super::toolstack::ToolRequest),
}

/// Decode system call `nr` with arguments RDI, RSI, RDX, R10, R8.
pub fn decode(number: u64, a: [u64; 5]) -> Result<Request, Errno> {
    let [a0, a1, a2, a3, a4] = a;
    Ok(match number {
        nr::EXIT => Request::Exit((a0 & 0xff) as u32),
        nr::WRITE => {
            let r = user_range(a1, a2)?;
            if a0 != 1 && a0 != 2 {
                return Err(Errno::EBADF);
            }
            Request::Write(r)
        }
        nr::READ => {
            let r = user_range(a1, a2)?;
            if a0 != 0 {
                return Err(Errno::EBADF);
            }
            Request::Read(r)
        }
        nr::GETPID => Request::Getpid,
        nr::YIELD => Request::Yield,
        nr::SLEEP => Request::Sleep(a0),
        nr::SPAWN => {
            let name = user_range(a0, a1)?;
            let args = user_range(a2, a3)?;
            if a4 & !SPAWN_FOREGROUND != 0 || args.len > MAX_ARGS as u64 {
                return Err(Errno::EINVAL);
            }
            if name.len == 0 || name.len > MAX_NAME as u64 {
                return Err(Errno::ENOENT);
            }
            Request::Spawn {
                name,
                args,
                foreground: a4 & SPAWN_FOREGROUND != 0,
            }
        }
        nr::WAIT => {
            let status = if a1 == 0 {
                None
            } else {
                Some(user_range(a1, 4)?)
            };
            if a2 & !WNOHANG != 0 {
                return Err(Errno::EINVAL);
            }
            let pid = match a0 {
                u64::MAX => None,
                p => Some(u32::try_from(p).map_err(|_| Errno::ECHILD)?),
            };
            Request::Wait {
                pid,
                status,
                nohang: a2 & WNOHANG != 0,
            }
        }
        nr::MMAP => {
            if a0 != 0 {
                return Err(Errno::EINVAL);
            }
            Request::Mmap { len: a1, prot: a2 }
        }
        nr::MUNMAP => Request::Munmap { addr: a0, len: a1 },
        nr::PS => Request::Ps {
            buf: array_range(a0, a1, size_of::<uapi::ProcInfo>())?,
            max: a1,
        },
        nr::MEMINFO => Request::Meminfo(user_range(a0, size_of::<uapi::MemInfo>() as u64)?),
        nr::UPTIME => Request::Uptime,
        nr::DOMAINS => Request::Domains {
            buf: array_range(a0, a1, size_of::<uapi::DomInfo>())?,
            max: a1,
        },
        nr::POWEROFF => Request::Poweroff((a0 & 0xff) as u32),
        nr::RINGINFO => Request::Ringinfo(user_range(a0, size_of::<uapi::RingInfo>() as u64)?),
        nr::BENCH => {
            let filter = user_range(a1, a2)?;
            if filter.len > FILTER_MAX
                || a0 == 0
                || a0 > crate::bench::MAX_ITERATIONS as u64
                || a3 & !uapi::BENCH_QUIET != 0
            {
                return Err(Errno::EINVAL);
            }
            Request::Bench {
                iterations: a0,
                filter,
                quiet: a3 & uapi::BENCH_QUIET != 0,
            }
        }
        nr::EVTCHN_PING => {
            if a0 == 0 || a0 > PING_MAX {
                return Err(Errno::EINVAL);
            }
            Request::EvtchnPing(a0)
        }
        nr::HVCOUNTERS => {
            Request::Hvcounters(user_range(a0, size_of::<uapi::HvCounters>() as u64)?)
        }
        nr::NOTIFY => Request::Notify(u32::try_from(a0).map_err(|_| Errno::ESRCH)?),
        nr::AWAIT_NOTIFY => Request::AwaitNotify,
        nr::FAULT_HANDLER => Request::FaultHandler(a0),
        nr::FAULT_RETURN => Request::FaultReturn(a0),
        nr::SENSITIVE => Request::Sensitive,
        n if super::toolstack::is_toolstack(n) => {
            Request::Toolstack(super::toolstack::decode(n, a)?)
        }
        _ => return Err(Errno::ENOSYS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD: [u64; 5] = [
        0,
        0xffff_ffff_8000_0000,
        0xffff_8000_0000_0000,
        0x8000_0000_0000_0000,
        USER_END - 2,
    ];

    #[test]
    fn every_pointer_argument_is_shape_checked() {
        for bad in BAD {
            for (n, args) in [
                (nr::WRITE, [1, bad, 16, 0, 0]),
                (nr::READ, [0, bad, 16, 0, 0]),
                (nr::SPAWN, [bad, 5, 0, 0, 0]),
                (nr::SPAWN, [0x40_0000, 5, bad, 8, 0]),
                (nr::PS, [bad, 4, 0, 0, 0]),
                (nr::MEMINFO, [bad, 0, 0, 0, 0]),
                (nr::DOMAINS, [bad, 4, 0, 0, 0]),
                (nr::RINGINFO, [bad, 0, 0, 0, 0]),
                (nr::BENCH, [10, bad, 8, 0, 0]),
                (nr::HVCOUNTERS, [bad, 0, 0, 0, 0]),
            ] {
                assert_eq!(decode(n, args), Err(Errno::EFAULT), "nr {n} {args:x?}");
            }
        }
        // wait's status pointer may be 0 ("don't care"); any other bad one faults.
        for bad in &BAD[1..] {
            assert_eq!(
                decode(nr::WAIT, [u64::MAX, *bad, 0, 0, 0]),
                Err(Errno::EFAULT)
            );
        }
        // Huge lengths and counts wrap or reach the kernel: -EFAULT too.
        assert_eq!(
            decode(nr::WRITE, [1, 0x40_0000, u64::MAX, 0, 0]),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            decode(nr::PS, [0x40_0000, u64::MAX / 8, 0, 0, 0]),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn other_arguments() {
        assert_eq!(decode(nr::WRITE, [7, 0x1000, 1, 0, 0]), Err(Errno::EBADF));
        assert_eq!(decode(nr::READ, [1, 0x1000, 1, 0, 0]), Err(Errno::EBADF));
        assert_eq!(decode(999, [0; 5]), Err(Errno::ENOSYS));
        assert_eq!(
            decode(nr::EXIT, [0x1ff, 0, 0, 0, 0]),
            Ok(Request::Exit(0xff))
        );
        assert_eq!(decode(nr::SPAWN, [0x1000, 0, 0, 0, 0]), Err(Errno::ENOENT));
        assert_eq!(
            decode(nr::SPAWN, [0x1000, 3, 0x2000, 300, 0]),
            Err(Errno::EINVAL)
        );
        assert_eq!(decode(nr::SPAWN, [0x1000, 3, 0, 0, 4]), Err(Errno::EINVAL));
        assert_eq!(decode(nr::WAIT, [1 << 40, 0, 0, 0, 0]), Err(Errno::ECHILD));
        assert_eq!(decode(nr::WAIT, [3, 0, 2, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(
            decode(nr::WAIT, [u64::MAX, 0, 1, 0, 0]),
            Ok(Request::Wait {
                pid: None,
                status: None,
                nohang: true
            })
        );
        assert_eq!(
            decode(nr::MMAP, [0x1000, 4096, 2, 0, 0]),
            Err(Errno::EINVAL)
        );
        assert_eq!(decode(nr::BENCH, [0, 0, 0, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(
            decode(nr::BENCH, [10, 0x1000, 65, 0, 0]),
            Err(Errno::EINVAL)
        );
        assert_eq!(decode(nr::EVTCHN_PING, [0, 0, 0, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(
            decode(nr::EVTCHN_PING, [uapi::EVTCHN_PING_MAX + 1, 0, 0, 0, 0]),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            decode(nr::BENCH, [10, 0x1000, 4, 2, 0]),
            Err(Errno::EINVAL),
            "unknown bench flag"
        );
        assert_eq!(
            decode(nr::BENCH, [10, 0x1000, 4, 1, 0]),
            Ok(Request::Bench {
                iterations: 10,
                filter: UserRange {
                    addr: 0x1000,
                    len: 4
                },
                quiet: true
            })
        );
        assert_eq!(decode(nr::NOTIFY, [1 << 32, 0, 0, 0, 0]), Err(Errno::ESRCH));
        assert_eq!(
            decode(nr::NOTIFY, [u64::MAX, 0, 0, 0, 0]),
            Err(Errno::ESRCH)
        );
        assert_eq!(decode(nr::NOTIFY, [7, 0, 0, 0, 0]), Ok(Request::Notify(7)));
        assert_eq!(decode(nr::AWAIT_NOTIFY, [9; 5]), Ok(Request::AwaitNotify));
        // The handler and resume addresses are checked when used (`faulthandler`), not here.
        assert_eq!(
            decode(nr::FAULT_RETURN, [u64::MAX, 0, 0, 0, 0]),
            Ok(Request::FaultReturn(u64::MAX))
        );
        // `sensitive` takes no arguments: whatever the registers hold is ignored.
        assert_eq!(decode(nr::SENSITIVE, [u64::MAX; 5]), Ok(Request::Sensitive));
        assert_eq!(decode(uapi::NR_MAX + 1, [0; 5]), Err(Errno::ENOSYS));
        // An empty range needs no valid pointer.
        assert_eq!(
            decode(nr::WRITE, [1, 0, 0, 0, 0]),
            Ok(Request::Write(UserRange { addr: 0, len: 0 }))
        );
    }
}
