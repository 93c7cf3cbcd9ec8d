//! How exceptions, system calls and events reach a PV guest kernel: the bounce frame the hypervisor
//! builds, and the rules of the trap table, callbacks, `stack_switch`, `iret` and the direct system-call
//! gate. Xen's x86_64 PV layout is kept wherever ring 1 allows.
//!
//! # The bounce frame
//! To deliver an exception (a vector with a trap-table entry), an event upcall (the event callback) or a
//! system call (`SYSCALL` from ring 3, the syscall callback), the hypervisor pushes this frame on the guest
//! kernel's stack and resumes the guest at the handler in ring 1 (lowest address first, 8 bytes each):
//!
//! ```text
//!  RSP+0   RCX            the interrupted RCX (for SYSCALL: the user return address)
//!  RSP+8   R11            the interrupted R11 (for SYSCALL: the user RFLAGS)
//! [RSP+16  error code]    only for exceptions that have one (see `has_error_code`)
//!  +0      RIP            where the interrupted code resumes
//!  +8      CS             its code selector; bits 32..39 hold the saved event mask (`SAVED_MASK_SHIFT`)
//!  +16     RFLAGS         IF = 1 if events were enabled (the virtual interrupt flag), 0 if masked
//!  +24     RSP
//!  +32     SS
//! ```
//!
//! Which stack: if the guest was in ring 1, its current stack, below the 128-byte red zone and aligned
//! down to 16 bytes; if it was in ring 3, the stack registered with `stack_switch`. For page faults the
//! faulting address is in `vcpu_info.arch.cr2` before the handler runs. Events are masked on entry
//! (`evtchn_upcall_mask = 1`) for the event callback, for the syscall callback, and for trap-table entries
//! with `TI_IF` set. All other registers hold the interrupted values. A frame that cannot be written (bad
//! guest stack) crashes the domain.
//!
//! # The trap table
//! `set_trap_table` updates the vectors it lists (up to the first entry whose address is 0) and leaves the
//! others as they were, as Xen does; a null table pointer clears every vector. An `int n` that the real IDT
//! refuses (#GP) is delivered to vector `n` of the trap table if its DPL allows the calling ring.
//!
//! # Returning
//! - `HYPERVISOR_iret` (hypercall 23): the guest pushes an `iret_context` ([`crate::xen::IretContext`]:
//!   rax, r11, rcx, flags, rip, cs, rflags, rsp, ss — lowest address first) and calls `iret` with RSP
//!   pointing at it. The hypervisor restores RAX/R11/RCX and the frame, sets the event mask from RFLAGS.IF
//!   (IF = 1 unmasks, and a pending upcall is delivered at once), and returns. Everything is sanitized
//!   (ring 1 or 3 only, IOPL 0, canonical RIP in the guest range).
//! - Or, a ring-1 advantage over Xen's ring-3 kernels: pop RCX, R11 (and the error code) and execute
//!   IRETQ directly (IRET from ring 1 to ring 1 or 3 is allowed; it never changes the real IF). The event
//!   mask is then the handler's to restore, and an event that arrives meanwhile waits for the next entry
//!   into the hypervisor.
//!
//! # The direct system-call gate (`int 0x80`)
//! A trap-table entry for [`DIRECT_SYSCALL_VECTOR`] with DPL 3 is installed into the real IDT (as a trap
//! gate to the guest's ring-1 code segment) whenever the domain runs: user code's `int 0x80` then enters
//! the guest kernel directly, on the `stack_switch` stack (TSS.RSP1), without entering the hypervisor. The
//! hardware pushes a plain IRET frame (SS, RSP, RFLAGS, CS, RIP; no RCX/R11, no error code) and leaves real
//! interrupts enabled, so the hypervisor keeps preempting. Without such an entry, `int 0x80` from ring 3 is a
//! #GP, bounced like any other.
//!
//! # SYSCALL
//! `SYSCALL` from ring 3 enters the hypervisor, which bounces it to the syscall callback with the frame
//! above (CS/SS = the user selectors, RIP = the user's return address). The guest kernel itself must not
//! execute SYSCALL (the CPU does not record the ring it came from); it uses `int 0x82`. If it does, the
//! hypervisor cannot tell: the SYSCALL is bounced to the syscall callback exactly as one from ring 3 (user
//! selectors in the frame, the `stack_switch` stack), and resuming that frame unchanged enters ring 3.
//! The hypervisor never returns with SYSRET, so a non-canonical return address (SYSCALL in the last
//! bytes below the canonical hole) reaches the callback as it is; an `iret` to it crashes the domain.

/// Bit position, in the CS slot of a bounce frame, of the saved event mask (Xen's `saved_upcall_mask`).
pub const SAVED_MASK_SHIFT: u32 = 32;
/// Bytes below an interrupted ring-1 RSP that the hypervisor leaves untouched (the System V red zone).
pub const RED_ZONE: u64 = 128;
/// The vector of the direct system-call gate.
pub const DIRECT_SYSCALL_VECTOR: u8 = 0x80;
/// The pseudo-vector the hypervisor uses internally for SYSCALL entries (outside the IDT's range).
pub const SYSCALL_PSEUDO_VECTOR: u64 = 0x100;

/// True for the exceptions whose bounce frame carries an error code.
pub const fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// The architectural names of exceptions 0..32, by vector.
pub const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "non-maskable interrupt",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved (15)",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "hypervisor injection",
    "VMM communication",
    "security exception",
    "reserved (31)",
];

/// The architectural name of exception `vector`, if it is one (0..32).
pub fn exception_name(vector: u64) -> Option<&'static str> {
    EXCEPTION_NAMES.get(usize::try_from(vector).ok()?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes() {
        assert!(has_error_code(14) && has_error_code(13) && has_error_code(8));
        assert!(!has_error_code(0) && !has_error_code(3) && !has_error_code(0x80));
        assert_eq!(exception_name(14), Some("page fault"));
        assert_eq!(exception_name(32), None);
    }
}
