//! A process's own page-fault handler (pure): `fault_handler(entry)` registers it, a fault that would
//! kill the process runs it instead, `fault_return(resume)` ends it (see `uapi::nr::FAULT_HANDLER`).
//!
//! Safety of the design: the registers of the faulting context are kept here, in the kernel, never on the
//! user stack, so `fault_return` cannot be used to forge a frame (a privileged CS, a kernel RIP, odd
//! RFLAGS): it restores exactly what the CPU saved at the fault, and the only thing the process chooses is
//! a resume address, checked to lie in user space. Selectors are never taken from the saved copy (the
//! current system-call frame's user selectors stay). The handler runs once at a time: a fault inside it
//! kills the process, as without a handler.

use abi::errno::Errno;

use crate::mm::USER_END;
use crate::trap::TrapFrame;

use super::vma::USER_LOW;

/// The red zone the System V ABI lets a leaf function use below RSP: the handler's frame starts below it.
pub const RED_ZONE: u64 = 128;
/// RFLAGS bits cleared for the handler: TF (no single-stepping into it) and DF (the ABI wants it clear).
const RFLAGS_CLEAR: u64 = (1 << 8) | (1 << 10);

/// One process's handler state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultHandler {
    /// The handler's address (0: none).
    entry: u64,
    /// The faulting context while the handler runs.
    saved: Option<TrapFrame>,
}

/// Where the handler starts: the caller must store a zero return address at `return_slot` (in user
/// memory; if that fails, the process is killed as if it had no handler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub return_slot: u64,
}

fn user_address(a: u64) -> bool {
    (USER_LOW..USER_END).contains(&a)
}

impl FaultHandler {
    /// No handler.
    pub const fn new() -> FaultHandler {
        FaultHandler {
            entry: 0,
            saved: None,
        }
    }

    /// Register `entry` (0: remove the handler). `-EFAULT` unless it is a user address.
    pub fn register(&mut self, entry: u64) -> Result<(), Errno> {
        if entry != 0 && !user_address(entry) {
            return Err(Errno::EFAULT);
        }
        self.entry = entry;
        Ok(())
    }

    /// True while the handler runs.
    pub fn running(&self) -> bool {
        self.saved.is_some()
    }

    /// A page fault at `addr` with `error` would kill the process: redirect `f` (its user frame) into
    /// the handler, keeping the faulting context. `None` (frame untouched) if there is no handler, it is
    /// already running, or the faulting stack pointer leaves no room below the red zone in user space.
    pub fn deliver(&mut self, f: &mut TrapFrame, addr: u64, error: u64) -> Option<Delivery> {
        if self.entry == 0 || self.saved.is_some() || !f.from_user() {
            return None;
        }
        let top = f.rsp.checked_sub(RED_ZONE)? & !15;
        let slot = top.checked_sub(8)?;
        if !user_address(slot) || !user_address(top.checked_add(7)?) {
            return None;
        }
        self.saved = Some(*f);
        f.rip = self.entry;
        f.rsp = slot;
        f.rdi = addr;
        f.rsi = error;
        f.rdx = self.saved.map_or(0, |s| s.rip);
        f.rflags &= !RFLAGS_CLEAR;
        Some(Delivery { return_slot: slot })
    }

    /// The handler is gone without returning (its return-address store failed): forget the context.
    pub fn abandon(&mut self) {
        self.saved = None;
    }

    /// `fault_return(resume)`: put the faulting context back into `f` (the `fault_return` system call's
    /// frame), at its RIP (`resume` 0) or at `resume`. `-EINVAL` if the handler is not running,
    /// `-EFAULT` for a `resume` outside user space (the handler keeps running then).
    pub fn finish(&mut self, f: &mut TrapFrame, resume: u64) -> Result<(), Errno> {
        let saved = self.saved.ok_or(Errno::EINVAL)?;
        if resume != 0 && !user_address(resume) {
            return Err(Errno::EFAULT);
        }
        self.saved = None;
        let (cs, ss, vector, error_code) = (f.cs, f.ss, f.vector, f.error_code);
        *f = saved;
        // The selectors, the entry's vector and the iret flags word stay those of the current entry.
        (f.cs, f.ss, f.vector, f.error_code) = (cs, ss, vector, error_code);
        if resume != 0 {
            f.rip = resume;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER_CS: u64 = 0x33;
    const USER_SS: u64 = 0x2b;

    fn user_frame() -> TrapFrame {
        TrapFrame {
            rip: 0x40_1234,
            rsp: 0x7fff_fffe_f008,
            rflags: 0x246 | (1 << 8) | (1 << 10),
            cs: USER_CS,
            ss: USER_SS,
            rax: 1,
            rbx: 2,
            rcx: 3,
            r15: 15,
            vector: 14,
            error_code: 7,
            ..TrapFrame::default()
        }
    }

    #[test]
    fn deliver_and_return() {
        let mut h = FaultHandler::new();
        let mut f = user_frame();
        assert_eq!(h.deliver(&mut f, 0x1000_0000_0000, 7), None, "no handler");
        assert_eq!(f, user_frame());
        h.register(0x40_2000).unwrap();
        let d = h.deliver(&mut f, 0x1000_0000_0000, 7).unwrap();
        assert!(h.running());
        assert_eq!(f.rip, 0x40_2000);
        assert_eq!((f.rdi, f.rsi, f.rdx), (0x1000_0000_0000, 7, 0x40_1234));
        assert_eq!(f.rsp, d.return_slot);
        assert_eq!((f.rsp + 8) % 16, 0, "ABI alignment at function entry");
        assert!(f.rsp + 8 <= user_frame().rsp - RED_ZONE);
        assert_eq!(f.rflags & RFLAGS_CLEAR, 0);
        // A second fault inside the handler: not delivered (the caller kills).
        let mut again = f;
        assert_eq!(h.deliver(&mut again, 0x5000, 2), None);
        assert_eq!(again, f);
        // The handler clobbers registers, then returns past the faulting instruction through a
        // system-call frame (with its own vector and flags word).
        let mut sys = f;
        sys.rax = 99;
        sys.rbx = 98;
        sys.vector = 0x80;
        sys.error_code = 0;
        h.finish(&mut sys, 0x40_1238).unwrap();
        let mut want = user_frame();
        want.rip = 0x40_1238;
        want.vector = 0x80;
        want.error_code = 0;
        assert_eq!(sys, want);
        assert!(!h.running());
        // Resume 0: the faulting instruction again.
        let mut f = user_frame();
        h.deliver(&mut f, 0x5000, 2).unwrap();
        h.finish(&mut f, 0).unwrap();
        assert_eq!(f.rip, 0x40_1234);
    }

    #[test]
    fn hostile_arguments() {
        let mut h = FaultHandler::new();
        for bad in [
            1,
            0xfff,
            USER_END,
            USER_END + 0x1000,
            0xffff_ffff_8000_0000,
            u64::MAX,
        ] {
            assert_eq!(h.register(bad), Err(Errno::EFAULT), "{bad:#x}");
        }
        // fault_return with no handler running.
        let mut f = user_frame();
        assert_eq!(h.finish(&mut f, 0), Err(Errno::EINVAL));
        assert_eq!(f, user_frame());
        h.register(0x40_2000).unwrap();
        h.deliver(&mut f, 0x5000, 2).unwrap();
        let mid = f;
        for bad in [1, USER_END, 0xffff_8000_0000_0000, u64::MAX] {
            assert_eq!(h.finish(&mut f, bad), Err(Errno::EFAULT), "{bad:#x}");
            assert_eq!(f, mid);
            assert!(h.running());
        }
        // A kernel-mode frame is never redirected.
        let mut h = FaultHandler::new();
        h.register(0x40_2000).unwrap();
        let mut k = user_frame();
        k.cs = 0x19;
        assert_eq!(h.deliver(&mut k, 0x5000, 2), None);
        // A stack pointer with no room below the red zone (or in the kernel half): not delivered.
        for rsp in [0, 0x80, USER_LOW + 64, USER_END + 0x100, u64::MAX] {
            let mut f = user_frame();
            f.rsp = rsp;
            assert_eq!(h.deliver(&mut f, 0x5000, 2), None, "{rsp:#x}");
            assert!(!h.running());
        }
        // Abandoning forgets the context.
        let mut f = user_frame();
        h.deliver(&mut f, 0x5000, 2).unwrap();
        h.abandon();
        assert_eq!(h.finish(&mut f, 0), Err(Errno::EINVAL));
    }
}
