//! "Run this code in ring 3": a minimal user-mode harness for the scenarios (processes come later).
//!
//! [`UserSpace::new`] builds an address space (the kernel half shared) with the ring-3 program of
//! `arch::x86_64::trap_probes` copied into a user page at [`USER_CODE_VA`] (read + execute) and a user
//! stack page below [`USER_STACK_TOP`]. [`UserSpace::run`] switches to it, IRETQs to ring 3 at an entry
//! offset, and returns when a trap handler ends the program ([`exit_to_kernel`]: the `exit` system call,
//! or the default handler killing it), then switches back to the kernel's address space. Traps from ring
//! 3 arrive on the `stack_switch` stack; `exit_to_kernel` abandons that stack and resumes the kernel's.

use core::sync::atomic::{AtomicPtr, Ordering};

use abi::types::PAGE_SIZE;

use crate::arch::x86_64::trap_entry::{UserReturn, guest_user_enter, guest_user_resume};
use crate::mm::kernel::{KernelEnv, ready_env};
use crate::mm::{AddressSpace, MmEnv, MmError, Prot, physmap_va};
use crate::platform::{Mmu, ops};

/// Where the program is mapped.
pub const USER_CODE_VA: u64 = 0x40_0000;
/// The top of the user stack (one page below it is mapped).
pub const USER_STACK_TOP: u64 = 0x80_0000;

/// The kernel context a running user program returns to (null: none running).
static ACTIVE: AtomicPtr<UserReturn> = AtomicPtr::new(core::ptr::null_mut());

/// True while a user program runs.
pub fn active() -> bool {
    !ACTIVE.load(Ordering::Acquire).is_null()
}

/// End the running user program: resume the kernel in [`UserSpace::run`], which returns `value`. Returns
/// only if no user program runs.
pub fn exit_to_kernel(value: u64) {
    let p = ACTIVE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: `p` is the `UserReturn` of the `run` call still on the kernel stack (it clears ACTIVE
        // before returning, and this swap cleared it too, so it is used once); the current stack is the
        // trap stack, which is abandoned, holding nothing that needs dropping (no lock is held across a
        // handler call).
        unsafe { guest_user_resume(p, value) }
    }
}

/// A user address space with the ring-3 program in it.
pub struct UserSpace {
    env: KernelEnv,
    space: Option<AddressSpace>,
}

impl UserSpace {
    /// Build it: the program `code` at [`USER_CODE_VA`], one stack page.
    pub fn new(code: &[u8]) -> Result<UserSpace, MmError> {
        let env = ready_env()?;
        if code.len() > PAGE_SIZE as usize {
            return Err(MmError::Internal("the user program does not fit a page"));
        }
        let mut space = AddressSpace::new(&env)?;
        let built = (|| {
            let pfn = space.map_zeroed(&env, USER_CODE_VA, Prot::EXEC)?;
            // SAFETY: `pfn` was just allocated for this mapping; its physmap alias is writable and one page
            // long, and the program fits in a page.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    code.as_ptr(),
                    physmap_va(pfn) as *mut u8,
                    code.len(),
                )
            };
            space.map_zeroed(&env, USER_STACK_TOP - PAGE_SIZE, Prot::WRITE)?;
            space.flush(&env)
        })();
        match built {
            Ok(()) => Ok(UserSpace {
                env,
                space: Some(space),
            }),
            Err(e) => {
                let _ = space.destroy(&env);
                Err(e)
            }
        }
    }

    /// Map one more user page at `va` (read + execute) holding `bytes` at offset `at`: for probes that need
    /// code at a particular address, e.g. the last page below the non-canonical hole. Run it with
    /// [`run`](Self::run)`(va + at - USER_CODE_VA)`.
    pub fn map_code_page(&mut self, va: u64, bytes: &[u8], at: usize) -> Result<(), MmError> {
        if at + bytes.len() > PAGE_SIZE as usize {
            return Err(MmError::Internal("the code does not fit the page"));
        }
        let space = self
            .space
            .as_mut()
            .ok_or(MmError::Internal("address space gone"))?;
        let pfn = space.map_zeroed(&self.env, va, Prot::EXEC)?;
        // SAFETY: `pfn` was just allocated for this mapping; its physmap alias is writable and one page
        // long, and `at + bytes.len()` fits in it (checked above).
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (physmap_va(pfn) as *mut u8).add(at),
                bytes.len(),
            )
        };
        space.flush(&self.env)
    }

    /// Run the program from `entry` (an offset into it) in ring 3 until it exits or is killed; returns its
    /// result. The kernel's event mask is the same afterwards.
    pub fn run(&mut self, entry: u64) -> Result<u64, MmError> {
        self.run_with(entry, 0)
    }

    /// [`run`](Self::run) with RDI = `arg` at the entry point.
    pub fn run_with(&mut self, entry: u64, arg: u64) -> Result<u64, MmError> {
        let space = self
            .space
            .as_mut()
            .ok_or(MmError::Internal("address space gone"))?;
        space.switch_to(&self.env)?;
        let enabled = ops().irqs_enabled();
        let mut ctx = UserReturn::default();
        ACTIVE.store(&raw mut ctx, Ordering::Release);
        // SAFETY: the entry point is inside the mapped program page, the stack page is mapped writable
        // and user-accessible; `ctx` lives until this call returns (exit_to_kernel resumes into it).
        let v =
            unsafe { guest_user_enter(USER_CODE_VA + entry, USER_STACK_TOP, &raw mut ctx, arg) };
        ACTIVE.store(core::ptr::null_mut(), Ordering::Release);
        // Back from a trap handler that may have left events masked (SYSCALL bounce): restore.
        ops().irq_disable();
        ops().irq_restore(enabled);
        let (_, kernel) = self.env.kernel_base();
        self.env
            .switch_address_space(kernel)
            .map_err(|errno| MmError::Hypercall {
                op: "NEW_BASEPTR (back to the kernel)",
                arg: kernel.0,
                errno,
            })?;
        Ok(v)
    }
}

impl Drop for UserSpace {
    fn drop(&mut self) {
        if let Some(s) = self.space.take() {
            let _ = s.destroy(&self.env);
        }
    }
}
