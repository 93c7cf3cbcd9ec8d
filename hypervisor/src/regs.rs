//! The guest register frame and the rules for handing one back to a guest (pure, host-tested).
//!
//! Every frame the hypervisor returns to a guest passes through [`sanitize`]: whatever a guest (or a bug in
//! the hypervisor) put into a saved frame, the IRETQ that consumes it can only land in ring 1 or ring 3 on
//! the guest's own segments, with IOPL 0, NT/VM/RF clear, the real interrupt flag set (the guest's interrupt
//! flag is virtual: `evtchn_upcall_mask`), and a canonical RIP outside the hypervisor's reserved range.

use abi::layout::{
    GUEST_KERNEL_CS, GUEST_KERNEL_SS, GUEST_USER_CS, GUEST_USER_SS, RESERVED_VA_END,
    RESERVED_VA_START,
};

/// The register frame of a guest entry, in the order the entry stubs leave it on the entry stack (the
/// picture is in `arch/x86_64/entry.rs`). It is also the saved state of a vCPU that is not running.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct EntryFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// RFLAGS bits.
pub mod rflags {
    /// Carry.
    pub const CF: u64 = 1 << 0;
    /// Always one.
    pub const FIXED1: u64 = 1 << 1;
    /// Parity.
    pub const PF: u64 = 1 << 2;
    /// Adjust.
    pub const AF: u64 = 1 << 4;
    /// Zero.
    pub const ZF: u64 = 1 << 6;
    /// Sign.
    pub const SF: u64 = 1 << 7;
    /// Trap (single step).
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable.
    pub const IF: u64 = 1 << 9;
    /// Direction.
    pub const DF: u64 = 1 << 10;
    /// Overflow.
    pub const OF: u64 = 1 << 11;
    /// I/O privilege level (two bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume.
    pub const RF: u64 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check.
    pub const AC: u64 = 1 << 18;
    /// CPUID available.
    pub const ID: u64 = 1 << 21;
    /// The bits a guest may control.
    pub const GUEST_CONTROLLED: u64 = CF | PF | AF | ZF | SF | TF | DF | OF | AC | ID;
}

/// Why a frame cannot be returned to its guest (the domain is crashed instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SanitizeError {
    /// RIP is not canonical: IRETQ would fault in ring 0.
    NonCanonicalRip(u64),
    /// RIP points into the hypervisor's reserved range.
    ReservedRip(u64),
}

impl core::fmt::Display for SanitizeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SanitizeError::NonCanonicalRip(r) => write!(f, "non-canonical return address {r:#x}"),
            SanitizeError::ReservedRip(r) => {
                write!(f, "return address {r:#x} in the hypervisor's range")
            }
        }
    }
}

/// The ring a saved frame returns to: 3 if its CS says ring 3, otherwise 1 (ring 0 and 2 requests are
/// demoted to the guest kernel's ring).
pub fn frame_ring(f: &EntryFrame) -> u8 {
    if f.cs & 3 == 3 { 3 } else { 1 }
}

/// Make `f` safe to IRETQ to: forced selectors, RFLAGS reduced to guest-controlled bits plus IF, RIP
/// checked. The vector and error-code slots are cleared so nothing from another entry lingers on the
/// shared entry stack.
pub fn sanitize(f: &EntryFrame) -> Result<EntryFrame, SanitizeError> {
    let mut out = *f;
    sanitize_in_place(&mut out)?;
    Ok(out)
}

/// [`sanitize`] without a copy: rewrite `f` itself (on an error `f` is unchanged). Only the five slots
/// IRETQ consumes besides the general registers (RIP is checked, CS, SS, RFLAGS rewritten) and the vector
/// and error code change.
#[inline(always)]
pub fn sanitize_in_place(f: &mut EntryFrame) -> Result<(), SanitizeError> {
    if !va_allowed(f.rip) {
        return Err(refused_rip(f.rip));
    }
    // The selectors by the requested RPL, as `frame_ring` decides (3: the user's, else the kernel's):
    // two loads indexed by the low bits instead of a compare and two selects.
    let rpl = (f.cs & 3) as usize;
    f.cs = RETURN_CS[rpl];
    f.ss = RETURN_SS[rpl];
    f.rflags = (f.rflags & rflags::GUEST_CONTROLLED) | rflags::IF | rflags::FIXED1;
    f.vector = 0;
    f.error_code = 0;
    Ok(())
}

/// The CS a frame returns with, by its CS's RPL ([`frame_ring`]: ring 3 only for RPL 3).
static RETURN_CS: [u64; 4] = {
    let k = GUEST_KERNEL_CS as u64;
    [k, k, k, GUEST_USER_CS as u64]
};
/// The SS a frame returns with, by its CS's RPL (as [`RETURN_CS`]).
static RETURN_SS: [u64; 4] = {
    let k = GUEST_KERNEL_SS as u64;
    [k, k, k, GUEST_USER_SS as u64]
};

/// The lowest non-canonical address (48-bit virtual addresses).
const FIRST_NONCANONICAL: u64 = 0x0000_8000_0000_0000;
const _: () =
    assert!(RESERVED_VA_START == 0xffff_8000_0000_0000 && RESERVED_VA_END > RESERVED_VA_START);

/// [`abi::layout::guest_va_allowed`] with one comparison, for the paths every return and bounce takes:
/// the non-canonical addresses and the hypervisor's reserved range (which starts at the first upper-half
/// canonical address) are one range, `[FIRST_NONCANONICAL, RESERVED_VA_END)`.
#[inline(always)]
pub fn va_allowed(va: u64) -> bool {
    va.wrapping_sub(FIRST_NONCANONICAL) >= RESERVED_VA_END - FIRST_NONCANONICAL
}

/// True if every address of `[lo, end)` passes [`va_allowed`], for a non-empty range (`lo < end`) no
/// longer than the refused range `[FIRST_NONCANONICAL, RESERVED_VA_END)` (a bounce frame: 64 bytes at
/// most): such a range cannot contain the whole refused range, so it avoids it exactly when it ends at
/// or below its start or begins at or above its end. Two comparisons, where testing both ends with
/// [`va_allowed`] takes two subtractions and two comparisons more.
#[inline(always)]
pub fn short_range_allowed(lo: u64, end: u64) -> bool {
    debug_assert!(lo < end && end - lo <= RESERVED_VA_END - FIRST_NONCANONICAL);
    end <= FIRST_NONCANONICAL || lo >= RESERVED_VA_END
}

/// Why [`sanitize_in_place`] refuses `rip` (one of the two kinds of address it refuses).
#[cold]
fn refused_rip(rip: u64) -> SanitizeError {
    let top = rip >> 47;
    if top != 0 && top != 0x1_ffff {
        SanitizeError::NonCanonicalRip(rip)
    } else {
        SanitizeError::ReservedRip(rip)
    }
}

/// True if `f` is already what [`sanitize`] makes of it (for debug assertions on the exit path).
pub fn is_sanitized(f: &EntryFrame) -> bool {
    sanitize(f).is_ok_and(|s| s == *f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(cs: u64, rip: u64, fl: u64) -> EntryFrame {
        EntryFrame {
            cs,
            rip,
            rflags: fl,
            ss: 0,
            vector: 14,
            error_code: 7,
            ..Default::default()
        }
    }

    #[test]
    fn ring0_request_becomes_ring1() {
        let out = sanitize(&frame(0x08, 0xffff_ffff_8000_0000, 0)).unwrap();
        assert_eq!(out.cs, u64::from(GUEST_KERNEL_CS));
        assert_eq!(out.ss, u64::from(GUEST_KERNEL_SS));
        assert_eq!((out.vector, out.error_code), (0, 0));
    }

    #[test]
    fn ring3_stays_ring3() {
        let out = sanitize(&frame(0x33, 0x40_0000, 0)).unwrap();
        assert_eq!(out.cs, u64::from(GUEST_USER_CS));
        assert_eq!(out.ss, u64::from(GUEST_USER_SS));
        let out = sanitize(&frame(0xfffb, 0x40_0000, 0)).unwrap();
        assert_eq!(out.cs & 3, 3);
    }

    #[test]
    fn dangerous_flags_cleared_if_set() {
        let all = u64::MAX;
        let out = sanitize(&frame(0x19, 0x1000, all)).unwrap();
        assert_eq!(out.rflags & rflags::IOPL, 0);
        assert_eq!(out.rflags & (rflags::NT | rflags::VM | rflags::RF), 0);
        assert_ne!(out.rflags & rflags::IF, 0);
        assert_ne!(out.rflags & rflags::FIXED1, 0);
        assert_eq!(out.rflags >> 22, 0);
        let out = sanitize(&frame(0x19, 0x1000, 0)).unwrap();
        assert_eq!(out.rflags, rflags::IF | rflags::FIXED1);
    }

    #[test]
    fn bad_rip_refused() {
        assert_eq!(
            sanitize(&frame(0x19, 0x0000_8000_0000_0000, 0)),
            Err(SanitizeError::NonCanonicalRip(0x0000_8000_0000_0000))
        );
        assert_eq!(
            sanitize(&frame(0x19, abi::layout::ENTRY_REGION_VA, 0)),
            Err(SanitizeError::ReservedRip(abi::layout::ENTRY_REGION_VA))
        );
    }

    #[test]
    fn in_place_matches_copy_and_is_idempotent() {
        let cases = [
            frame(0x08, 0xffff_ffff_8000_0000, u64::MAX),
            frame(0x33, 0x40_0000, rflags::NT | rflags::IOPL | rflags::CF),
            frame(0xfffb, 0x1000, 0),
            frame(0x19, 0x0000_8000_0000_0000, 0),
            frame(0x19, abi::layout::ENTRY_REGION_VA, 0),
        ];
        for f in cases {
            let mut g = f;
            match sanitize(&f) {
                Ok(s) => {
                    assert_eq!(sanitize_in_place(&mut g), Ok(()));
                    assert_eq!(g, s);
                    assert!(is_sanitized(&g));
                    assert_eq!(sanitize(&g), Ok(g), "sanitizing twice changes nothing");
                }
                Err(e) => {
                    assert_eq!(sanitize_in_place(&mut g), Err(e));
                    assert_eq!(g, f, "a refused frame is left alone");
                    assert!(!is_sanitized(&g));
                }
            }
        }
        assert!(!is_sanitized(&frame(0x19, 0x1000, rflags::IOPL)));
    }

    #[test]
    fn rip_refused_exactly_where_guest_va_allowed_says_no() {
        let edges = [
            0,
            0x1000,
            0x0000_7fff_ffff_ffff,
            0x0000_8000_0000_0000,
            0x0000_8000_0000_0001,
            0x1234_5678_9abc_def0,
            0xffff_7fff_ffff_ffff,
            abi::layout::RESERVED_VA_START,
            abi::layout::ENTRY_REGION_VA,
            abi::layout::RESERVED_VA_END - 1,
            abi::layout::RESERVED_VA_END,
            0xffff_ffff_8000_0000,
            u64::MAX,
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        // Random addresses, each also as a lower-half and an upper-half canonical address.
        let random = (0..10_000).flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            [x, x & 0x0000_7fff_ffff_ffff, x | 0xffff_8000_0000_0000]
        });
        for rip in edges.into_iter().chain(random) {
            let r = sanitize(&frame(0x19, rip, 0));
            assert_eq!(
                r.is_ok(),
                abi::layout::guest_va_allowed(rip),
                "rip {rip:#x}"
            );
            assert_eq!(
                va_allowed(rip),
                abi::layout::guest_va_allowed(rip),
                "va {rip:#x}"
            );
            let top = rip >> 47;
            let canonical = top == 0 || top == 0x1_ffff;
            match r {
                Err(SanitizeError::NonCanonicalRip(r)) => assert!(!canonical && r == rip),
                Err(SanitizeError::ReservedRip(r)) => assert!(canonical && r == rip),
                Ok(_) => {}
            }
        }
    }

    #[test]
    fn short_range_allowed_is_both_ends_allowed() {
        let edges = [
            0x40,
            0x1000,
            FIRST_NONCANONICAL - 0x40,
            FIRST_NONCANONICAL - 8,
            FIRST_NONCANONICAL,
            FIRST_NONCANONICAL + 8,
            FIRST_NONCANONICAL + 0x40,
            0xffff_7fff_ffff_fff8,
            abi::layout::RESERVED_VA_START,
            abi::layout::ENTRY_REGION_VA,
            RESERVED_VA_END - 0x40,
            RESERVED_VA_END - 8,
            RESERVED_VA_END,
            RESERVED_VA_END + 8,
            0xffff_ffff_8000_0000,
            u64::MAX - 0x3f,
        ];
        for e in edges {
            for d in [0u64, 8, 16, 56, 64] {
                for size in [8u64, 56, 64] {
                    let Some(lo) = e.checked_sub(d) else { continue };
                    let Some(end) = lo.checked_add(size) else {
                        continue;
                    };
                    let want = (lo..end).step_by(8).all(va_allowed) && va_allowed(end - 1);
                    assert_eq!(short_range_allowed(lo, end), want, "{lo:#x}..{end:#x}");
                }
            }
        }
    }

    #[test]
    fn general_registers_untouched() {
        let mut f = frame(0x19, 0x1000, 0);
        f.rax = 1;
        f.r15 = 2;
        f.rsp = 3;
        let out = sanitize(&f).unwrap();
        assert_eq!((out.rax, out.r15, out.rsp), (1, 2, 3));
    }
}

/// The architectural name of exception `vector` (0..32), or "interrupt".
pub fn exception_name(vector: u64) -> &'static str {
    abi::traps::exception_name(vector).unwrap_or("interrupt")
}

/// Describe a page-fault error code, e.g. "write to a not-present page, supervisor".
pub fn page_fault_kind(error_code: u64) -> (&'static str, &'static str, &'static str) {
    let access = if error_code & 0x10 != 0 {
        "instruction fetch"
    } else if error_code & 2 != 0 {
        "write"
    } else {
        "read"
    };
    let present = if error_code & 1 != 0 {
        "protection violation"
    } else {
        "not present"
    };
    let mode = if error_code & 4 != 0 {
        "user"
    } else {
        "supervisor"
    };
    (access, present, mode)
}

#[cfg(test)]
mod describe_tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(exception_name(13), "general protection fault");
        assert_eq!(exception_name(14), "page fault");
        assert_eq!(exception_name(0x82), "interrupt");
        assert_eq!(page_fault_kind(0), ("read", "not present", "supervisor"));
        assert_eq!(
            page_fault_kind(3),
            ("write", "protection violation", "supervisor")
        );
        assert_eq!(
            page_fault_kind(0x15),
            ("instruction fetch", "protection violation", "user")
        );
    }
}
