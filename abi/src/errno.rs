//! Error numbers returned by hypercalls (Xen's `xen/include/public/errno.h`).
//!
//! A failing hypercall returns `-errno` in `RAX`. The values are Xen's, which in turn are x86 Linux's, so
//! `-22` means `EINVAL` to the hypervisor, the guest and anyone reading a trace. [`Errno::as_ret`] produces the
//! negative return value and [`Errno::from_ret`] recognises one.

macro_rules! errnos {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// A Xen error number. The discriminant is the positive value; hypercalls return its negation.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(i64)]
        // The variant names are Xen's (and POSIX's) spelling on purpose.
        #[allow(clippy::upper_case_acronyms)]
        pub enum Errno {
            $($(#[$doc])* $name = $value,)*
        }

        impl Errno {
            /// Every error number, in ascending order of value.
            pub const ALL: &'static [Errno] = &[$(Errno::$name,)*];

            /// The error number with positive value `code`, if Xen defines one.
            pub const fn from_code(code: i64) -> Option<Errno> {
                match code {
                    $($value => Some(Errno::$name),)*
                    _ => None,
                }
            }

            /// The symbolic name, e.g. `"EFAULT"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Errno::$name => stringify!($name),)*
                }
            }
        }
    };
}

errnos! {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory (no such object).
    ENOENT = 2,
    /// No such process (no such domain).
    ESRCH = 3,
    /// Interrupted. Internal to Xen; never returned to a guest.
    EINTR = 4,
    /// I/O error.
    EIO = 5,
    /// No such device or address.
    ENXIO = 6,
    /// Argument list too long.
    E2BIG = 7,
    /// Exec format error.
    ENOEXEC = 8,
    /// Bad file number (bad handle or port).
    EBADF = 9,
    /// No child processes.
    ECHILD = 10,
    /// Try again (also `EWOULDBLOCK`).
    EAGAIN = 11,
    /// Out of memory.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address: a guest pointer could not be read or written.
    EFAULT = 14,
    /// Device or resource busy.
    EBUSY = 16,
    /// Already exists.
    EEXIST = 17,
    /// Cross-device link.
    EXDEV = 18,
    /// No such device.
    ENODEV = 19,
    /// Not a directory.
    ENOTDIR = 20,
    /// Is a directory.
    EISDIR = 21,
    /// Invalid argument.
    EINVAL = 22,
    /// File table overflow.
    ENFILE = 23,
    /// Too many open files.
    EMFILE = 24,
    /// No space left.
    ENOSPC = 28,
    /// Read-only.
    EROFS = 30,
    /// Too many links.
    EMLINK = 31,
    /// Argument out of domain.
    EDOM = 33,
    /// Result out of range.
    ERANGE = 34,
    /// Resource deadlock would occur (also `EDEADLOCK`).
    EDEADLK = 35,
    /// Name too long.
    ENAMETOOLONG = 36,
    /// No locks available.
    ENOLCK = 37,
    /// Function not implemented: unknown hypercall or sub-command.
    ENOSYS = 38,
    /// Not empty.
    ENOTEMPTY = 39,
    /// No data available.
    ENODATA = 61,
    /// Timer expired (e.g. a single-shot timeout already in the past).
    ETIME = 62,
    /// Not a data message.
    EBADMSG = 74,
    /// Value too large for its type.
    EOVERFLOW = 75,
    /// Illegal byte sequence.
    EILSEQ = 84,
    /// The hypercall should be restarted. Internal to Xen (continuations); never returned to a guest.
    ERESTART = 85,
    /// Not a socket.
    ENOTSOCK = 88,
    /// Message too large.
    EMSGSIZE = 90,
    /// Operation not supported.
    EOPNOTSUPP = 95,
    /// Address already in use.
    EADDRINUSE = 98,
    /// Cannot assign requested address.
    EADDRNOTAVAIL = 99,
    /// No buffer space available.
    ENOBUFS = 105,
    /// Already connected.
    EISCONN = 106,
    /// Not connected.
    ENOTCONN = 107,
    /// Timed out.
    ETIMEDOUT = 110,
    /// Connection refused.
    ECONNREFUSED = 111,
}

impl Errno {
    /// Xen's alias of [`Errno::EAGAIN`].
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
    /// Xen's alias of [`Errno::EDEADLK`].
    pub const EDEADLOCK: Errno = Errno::EDEADLK;

    /// The positive error number, e.g. 14 for `EFAULT`.
    pub const fn code(self) -> i64 {
        self as i64
    }

    /// The value a failing hypercall returns in `RAX`: the negated error number, e.g. -14 for `EFAULT`.
    pub const fn as_ret(self) -> i64 {
        -(self as i64)
    }

    /// The error a hypercall return value denotes: `Some` for the negation of a known error number, `None`
    /// for success (`ret >= 0`) and for negative values Xen does not define.
    pub const fn from_ret(ret: i64) -> Option<Errno> {
        match ret.checked_neg() {
            Some(code) if code > 0 => Errno::from_code(code),
            _ => None,
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Converts a hypercall outcome to the value returned in `RAX`: the success value, or the negated error.
pub const fn to_ret(result: Result<u64, Errno>) -> u64 {
    match result {
        Ok(v) => v,
        Err(e) => e.as_ret() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_xens() {
        let expected: &[(Errno, i64)] = &[
            (Errno::EPERM, 1),
            (Errno::ENOENT, 2),
            (Errno::ESRCH, 3),
            (Errno::EINTR, 4),
            (Errno::EIO, 5),
            (Errno::ENXIO, 6),
            (Errno::E2BIG, 7),
            (Errno::ENOEXEC, 8),
            (Errno::EBADF, 9),
            (Errno::ECHILD, 10),
            (Errno::EAGAIN, 11),
            (Errno::ENOMEM, 12),
            (Errno::EACCES, 13),
            (Errno::EFAULT, 14),
            (Errno::EBUSY, 16),
            (Errno::EEXIST, 17),
            (Errno::EXDEV, 18),
            (Errno::ENODEV, 19),
            (Errno::ENOTDIR, 20),
            (Errno::EISDIR, 21),
            (Errno::EINVAL, 22),
            (Errno::ENFILE, 23),
            (Errno::EMFILE, 24),
            (Errno::ENOSPC, 28),
            (Errno::EROFS, 30),
            (Errno::EMLINK, 31),
            (Errno::EDOM, 33),
            (Errno::ERANGE, 34),
            (Errno::EDEADLK, 35),
            (Errno::ENAMETOOLONG, 36),
            (Errno::ENOLCK, 37),
            (Errno::ENOSYS, 38),
            (Errno::ENOTEMPTY, 39),
            (Errno::ENODATA, 61),
            (Errno::ETIME, 62),
            (Errno::EBADMSG, 74),
            (Errno::EOVERFLOW, 75),
            (Errno::EILSEQ, 84),
            (Errno::ERESTART, 85),
            (Errno::ENOTSOCK, 88),
            (Errno::EMSGSIZE, 90),
            (Errno::EOPNOTSUPP, 95),
            (Errno::EADDRINUSE, 98),
            (Errno::EADDRNOTAVAIL, 99),
            (Errno::ENOBUFS, 105),
            (Errno::EISCONN, 106),
            (Errno::ENOTCONN, 107),
            (Errno::ETIMEDOUT, 110),
            (Errno::ECONNREFUSED, 111),
        ];
        assert_eq!(expected.len(), Errno::ALL.len());
        for &(e, v) in expected {
            assert_eq!(e.code(), v, "{e}");
            assert_eq!(e.as_ret(), -v, "{e}");
        }
        assert_eq!(Errno::EWOULDBLOCK, Errno::EAGAIN);
        assert_eq!(Errno::EDEADLOCK, Errno::EDEADLK);
    }

    #[test]
    fn round_trip() {
        for &e in Errno::ALL {
            assert_eq!(Errno::from_ret(e.as_ret()), Some(e));
            assert_eq!(Errno::from_code(e.code()), Some(e));
            assert_eq!(to_ret(Err(e)) as i64, e.as_ret());
        }
        for w in Errno::ALL.windows(2) {
            assert!(w[0].code() < w[1].code());
        }
        assert_eq!(Errno::from_ret(0), None);
        assert_eq!(Errno::from_ret(5), None);
        assert_eq!(Errno::from_ret(-15), None);
        assert_eq!(Errno::from_ret(-4096), None);
        assert_eq!(Errno::from_ret(i64::MIN), None);
        assert_eq!(to_ret(Ok(7)), 7);
    }

    #[test]
    fn names() {
        assert_eq!(Errno::EFAULT.name(), "EFAULT");
        assert_eq!(Errno::E2BIG.name(), "E2BIG");
        assert_eq!(Errno::ENOSYS.name(), "ENOSYS");
        assert_eq!(Errno::EWOULDBLOCK.name(), "EAGAIN");
        for &e in Errno::ALL {
            assert!(e.name().starts_with('E'));
        }
    }
}
