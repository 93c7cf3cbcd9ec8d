//! The register frame the trap entry stubs build (`arch::x86_64::trap_entry`), what a handler is told and
//! answers, and the choice of return path. Pure: host-tested.
//!
//! # Frame layout
//!
//! Every entry (exception bounce, event upcall, SYSCALL bounce, direct `int 0x80`) is normalised by its
//! stub into one layout, lowest address first:
//!
//! ```text
//!  +0    r15 r14 r13 r12 rbp rbx r10 r9 r8 rdi rsi rdx     saved by the common entry code
//!  +96   vector                                           which entry (exception number or pseudo-vector)
//!  +104  rax r11 rcx error_code                           } an `abi::xen::IretContext` from +104:
//!  +136  rip cs rflags rsp ss                             } rax r11 rcx flags rip cs rflags rsp ss
//! ```
//!
//! The bounce frame of `abi::traps` is `rcx r11 [error] rip cs rflags rsp ss`; the stub pops RCX and R11
//! back into their registers (so every register holds the interrupted value again), pushes a zero error
//! code if the vector has none, then pushes RCX, R11 and RAX. That makes the upper part of the frame
//! exactly an `iret_context` (with the error code slot as its `flags`), so the `iret` hypercall can be
//! issued on it in place. The direct `int 0x80` gate has only the hardware IRET frame; its stub pushes the
//! zero error code and RCX, R11, RAX the same way.

use core::mem::{offset_of, size_of};

/// The saved state of an interrupted context (see the module docs for the layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    /// The exception vector (0..=31) or one of the pseudo-vectors below.
    pub vector: u64,
    pub rax: u64,
    pub r11: u64,
    pub rcx: u64,
    /// The exception's error code (0 if it has none); the `flags` word of the `iret_context` on return.
    pub error_code: u64,
    pub rip: u64,
    /// The interrupted code selector; bits 32..39 of a bounce frame hold the saved event mask.
    pub cs: u64,
    /// RFLAGS; in a bounce frame, IF is the virtual interrupt flag (1 = events were enabled).
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Size of [`TrapFrame`] in bytes.
pub const FRAME_SIZE: usize = size_of::<TrapFrame>();
/// Offset of the `iret_context` (RAX onwards) inside the frame.
pub const IRET_CONTEXT_OFFSET: usize = offset_of!(TrapFrame, rax);

static_assertions::const_assert_eq!(FRAME_SIZE, 176);
static_assertions::const_assert_eq!(offset_of!(TrapFrame, vector), 96);
static_assertions::const_assert_eq!(IRET_CONTEXT_OFFSET, 104);
static_assertions::const_assert_eq!(offset_of!(TrapFrame, error_code), 128);
static_assertions::const_assert_eq!(offset_of!(TrapFrame, rip), 136);
static_assertions::const_assert_eq!(offset_of!(TrapFrame, ss), 168);
// The part from RAX on is exactly Xen's iret_context.
static_assertions::const_assert_eq!(
    FRAME_SIZE - IRET_CONTEXT_OFFSET,
    size_of::<abi::xen::IretContext>()
);
static_assertions::const_assert_eq!(
    offset_of!(TrapFrame, rip) - IRET_CONTEXT_OFFSET,
    offset_of!(abi::xen::IretContext, rip)
);
static_assertions::const_assert_eq!(
    offset_of!(TrapFrame, error_code) - IRET_CONTEXT_OFFSET,
    offset_of!(abi::xen::IretContext, flags)
);

/// Pseudo-vector of the SYSCALL callback (the hypervisor's own number for SYSCALL entries).
pub const VECTOR_SYSCALL: u64 = abi::traps::SYSCALL_PSEUDO_VECTOR;
/// Pseudo-vector of the event callback (upcall).
pub const VECTOR_EVENT: u64 = 0x101;
/// The direct system-call gate's vector.
pub const VECTOR_INT80: u64 = abi::traps::DIRECT_SYSCALL_VECTOR as u64;

/// RFLAGS.IF.
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS.IOPL (two bits).
pub const RFLAGS_IOPL: u64 = 3 << 12;
/// RFLAGS.NT.
pub const RFLAGS_NT: u64 = 1 << 14;

/// How the interrupted context got here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// An exception bounced by the hypervisor (vector 0..=31).
    Exception,
    /// The event upcall, bounced with events masked.
    Event,
    /// SYSCALL from ring 3, bounced with events masked.
    Syscall,
    /// `int 0x80` from ring 3 through the direct gate: a plain hardware frame, events untouched.
    DirectGate,
}

impl EntryKind {
    /// The kind of entry a vector stands for.
    pub const fn of(vector: u64) -> EntryKind {
        match vector {
            VECTOR_EVENT => EntryKind::Event,
            VECTOR_SYSCALL => EntryKind::Syscall,
            VECTOR_INT80 => EntryKind::DirectGate,
            _ => EntryKind::Exception,
        }
    }

    /// True if the frame is a hypervisor bounce frame (saved mask in CS, virtual IF in RFLAGS).
    pub const fn is_bounce(self) -> bool {
        !matches!(self, EntryKind::DirectGate)
    }
}

/// What a handler learns besides the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapCtx {
    /// The frame's vector.
    pub vector: u64,
    /// The interrupted code ran in ring 3.
    pub from_user: bool,
    /// For a page fault: the faulting address (`vcpu_info.arch.cr2`); 0 otherwise.
    pub cr2: u64,
    /// The interrupted context had events masked (the bounce frame's saved mask; for the direct gate,
    /// the mask found on entry).
    pub events_were_masked: bool,
}

/// A handler's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Handled: resume the (possibly modified) frame.
    Resume,
    /// Not this handler's business: fall through to the default (report, then kill what faulted).
    Unhandled,
    /// The ring-3 program is finished (or killed): return to the kernel code that entered user mode, with
    /// this value.
    ExitUser(u64),
}

/// How the exit code leaves a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ReturnPath {
    /// Pop everything and IRETQ (ring 1 → ring 1 or 3; the real IF is never changed by it).
    Iretq = 0,
    /// Pop the registers and issue the `iret` hypercall on the `iret_context` left on the stack: the
    /// hypervisor restores the frame and sets the event mask from RFLAGS.IF atomically.
    Hypercall = 1,
}

/// The return decision for one trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReturnPlan {
    pub path: ReturnPath,
    /// Set the event mask to this before returning (only with [`ReturnPath::Iretq`]).
    pub set_mask: Option<bool>,
    /// The event mask the interrupted context gets back.
    pub resume_masked: bool,
}

/// Decide how to return: the interrupted context must get back the event mask it had (`resume_masked`).
/// Unmasking is done by the `iret` hypercall, so that an event that became pending while the handler ran
/// is delivered at once and none can slip in between unmasking and resuming; every other case returns
/// with IRETQ (masking first if the handler left events enabled but the interrupted code had them off).
pub const fn plan_return(resume_masked: bool, currently_masked: bool) -> ReturnPlan {
    let (path, set_mask) = match (resume_masked, currently_masked) {
        (false, true) => (ReturnPath::Hypercall, None),
        (true, false) => (ReturnPath::Iretq, Some(true)),
        _ => (ReturnPath::Iretq, None),
    };
    ReturnPlan {
        path,
        set_mask,
        resume_masked,
    }
}

impl TrapFrame {
    /// The interrupted code ran in ring 3.
    pub const fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }

    /// The saved event mask of a bounce frame (CS bits 32..39).
    pub const fn saved_mask(&self) -> bool {
        (self.cs >> abi::traps::SAVED_MASK_SHIFT) & 0xff != 0
    }

    /// Drop the saved mask from CS so that IRETQ and the `iret` hypercall see a plain selector.
    pub fn clear_saved_mask(&mut self) {
        self.cs &= 0xffff;
    }

    /// Prepare the frame for the `iret` hypercall: the context's flags word is 0 and RFLAGS.IF carries the
    /// event mask to restore.
    pub fn prepare_iret(&mut self, resume_masked: bool) {
        self.error_code = 0;
        if resume_masked {
            self.rflags &= !RFLAGS_IF;
        } else {
            self.rflags |= RFLAGS_IF;
        }
    }
}

/// A name for a vector or pseudo-vector.
pub fn vector_name(vector: u64) -> &'static str {
    match vector {
        v if v < 32 => abi::traps::exception_name(v).unwrap_or("exception"),
        VECTOR_INT80 => "int 0x80",
        VECTOR_SYSCALL => "SYSCALL",
        VECTOR_EVENT => "event upcall",
        _ => "unknown vector",
    }
}

/// True for the exceptions reported after the instruction (traps): re-executing cannot reproduce them.
pub const fn is_trap_class(vector: u64) -> bool {
    matches!(vector, 1 | 3 | 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(EntryKind::of(14), EntryKind::Exception);
        assert_eq!(EntryKind::of(0x80), EntryKind::DirectGate);
        assert_eq!(EntryKind::of(0x100), EntryKind::Syscall);
        assert_eq!(EntryKind::of(VECTOR_EVENT), EntryKind::Event);
        assert!(!EntryKind::DirectGate.is_bounce());
        assert!(EntryKind::Event.is_bounce());
    }

    #[test]
    fn return_plans() {
        // Masked on entry by the hypervisor, interrupted code had events on: the iret hypercall unmasks.
        assert_eq!(
            plan_return(false, true),
            ReturnPlan {
                path: ReturnPath::Hypercall,
                set_mask: None,
                resume_masked: false
            }
        );
        // Nothing to change: plain IRETQ.
        assert_eq!(plan_return(true, true).path, ReturnPath::Iretq);
        assert_eq!(plan_return(false, false).set_mask, None);
        // The handler enabled events, the interrupted code had them off: mask, then IRETQ.
        assert_eq!(
            plan_return(true, false),
            ReturnPlan {
                path: ReturnPath::Iretq,
                set_mask: Some(true),
                resume_masked: true
            }
        );
    }

    #[test]
    fn frame_helpers() {
        let mut f = TrapFrame {
            cs: 0x33 | 1 << 32,
            rflags: 0x202,
            error_code: 6,
            ..Default::default()
        };
        assert!(f.from_user());
        assert!(f.saved_mask());
        f.clear_saved_mask();
        assert_eq!(f.cs, 0x33);
        assert!(!f.saved_mask());
        f.prepare_iret(true);
        assert_eq!((f.error_code, f.rflags), (0, 0x002));
        f.prepare_iret(false);
        assert_eq!(f.rflags, 0x202);
    }

    #[test]
    fn names() {
        assert_eq!(vector_name(14), "page fault");
        assert_eq!(vector_name(0), "divide error");
        assert_eq!(vector_name(0x80), "int 0x80");
        assert_eq!(vector_name(0x999), "unknown vector");
        assert!(is_trap_class(3) && !is_trap_class(14));
    }
}
