//! The Rust side of every trap entry, the default handlers, and what boot installs through the platform
//! seam: the trap gates, the kernel stack for traps from user mode, the interrupt/failsafe/SYSCALL entry
//! points, the timer's interrupt source, and finally interrupts enabled.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use abi::errno::Errno;

use super::frame::{
    Disposition, EntryKind, RFLAGS_IF, ReturnPath, TrapCtx, TrapFrame, VECTOR_EVENT, VECTOR_INT80,
    VECTOR_SYSCALL, is_trap_class, plan_return, vector_name,
};
use super::{HANDLERS, KILLED, sys};
use crate::arch::x86_64::trap_entry::stubs;
use crate::platform::{EntryPoints, Gate, Halt, Platform, TrapGates, on_backend, ops};
use crate::println;

/// Size of the ring-1 stack used for traps from ring 3 (`stack_switch`).
const TRAP_STACK_SIZE: usize = 32 * 1024;

#[repr(C, align(64))]
struct TrapStack(UnsafeCell<[u8; TRAP_STACK_SIZE]>);

// SAFETY: the stack is only ever used by the CPU as a stack (one vCPU); Rust never reads or writes it.
unsafe impl Sync for TrapStack {}

static TRAP_STACK: TrapStack = TrapStack(UnsafeCell::new([0; TRAP_STACK_SIZE]));

/// The top of the ring-1 stack used for traps from ring 3.
pub fn trap_stack_top() -> u64 {
    TRAP_STACK.0.get() as u64 + TRAP_STACK_SIZE as u64
}

/// Entries handled so far.
static TRAPS: AtomicU64 = AtomicU64::new(0);

/// What boot managed to install.
#[derive(Clone, Copy, Debug)]
pub struct TrapStatus {
    pub table: Result<(), Errno>,
    pub stack: Result<(), Errno>,
    pub callbacks: Result<(), Errno>,
}

static TRAP_TABLE_OK: AtomicBool = AtomicBool::new(false);
static STACK_OK: AtomicBool = AtomicBool::new(false);
static CALLBACKS_OK: AtomicBool = AtomicBool::new(false);

/// True if the trap table is installed (exceptions reach this kernel's handlers).
pub fn traps_ready() -> bool {
    TRAP_TABLE_OK.load(Ordering::Acquire)
}

/// True if ring-3 code can trap into this kernel (trap table and `stack_switch` stack installed).
pub fn user_ready() -> bool {
    traps_ready() && STACK_OK.load(Ordering::Acquire)
}

/// True if the event callback is registered.
pub fn callbacks_ready() -> bool {
    CALLBACKS_OK.load(Ordering::Acquire)
}

/// The kernel's trap gates: every exception vector (user code may raise only `int3` and `into` itself),
/// plus the direct `int 0x80` gate, user-invocable, if `with_int80`. No gate masks interrupts: exceptions
/// run with the interrupted context's interrupt flag.
pub fn gates(with_int80: bool) -> TrapGates {
    let s = stubs();
    let mut g = TrapGates::default();
    for (v, gate) in g.exceptions.iter_mut().enumerate() {
        *gate = Gate {
            handler: s.exceptions[v],
            user: v == 3 || v == 4,
        };
    }
    g.int80 = with_int80.then_some(Gate {
        handler: s.int80,
        user: true,
    });
    g
}

/// Install the trap gates (see [`gates`]).
pub fn install_table(with_int80: bool) -> Result<(), Errno> {
    let r = ops().set_trap_gates(&gates(with_int80));
    TRAP_TABLE_OK.store(r.is_ok(), Ordering::Release);
    r
}

/// Register the interrupt (event), failsafe and SYSCALL entry points.
pub fn register_callbacks() -> Result<(), Errno> {
    let s = stubs();
    let r = ops().set_entry_points(&EntryPoints {
        interrupt: s.event,
        failsafe: s.failsafe,
        syscall: s.syscall,
    });
    CALLBACKS_OK.store(r.is_ok(), Ordering::Release);
    r
}

/// Install everything traps need: table, ring-1 stack for ring-3 traps, callbacks, the system-call
/// handlers. Failures (e.g. `-ENOSYS` from a hypervisor without trap support) are reported, not fatal.
pub fn init() -> TrapStatus {
    HANDLERS.set(VECTOR_INT80, Some(harness_syscall));
    HANDLERS.set(VECTOR_SYSCALL, Some(harness_syscall));
    let table = install_table(true);
    let stack = ops().set_kernel_stack(trap_stack_top());
    STACK_OK.store(stack.is_ok(), Ordering::Release);
    let callbacks = register_callbacks();
    TrapStatus {
        table,
        stack,
        callbacks,
    }
}

fn errno_str(r: Result<(), Errno>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(e) => e.name(),
    }
}

/// Boot: traps, then the clock's timer VIRQ, then events on. Prints one summary line.
pub fn boot() {
    let t = init();
    let timer = if t.callbacks.is_ok() {
        crate::time::init()
    } else {
        Err(Errno::ENOSYS)
    };
    if t.callbacks.is_ok() {
        ops().irq_restore(true);
    }
    let native = crate::platform::backend() == crate::platform::Backend::Native;
    let clock = match (crate::time::available(), native) {
        (true, false) => "pvclock",
        (false, false) => "no pvclock",
        (true, true) => "TSC clock",
        (false, true) => "no clock",
    };
    match timer {
        Ok(port) => println!(
            "traps: table {}, stack {}, callbacks {}; {} {port}, events enabled; {clock}",
            errno_str(t.table),
            errno_str(t.stack),
            errno_str(t.callbacks),
            if native {
                "timer on irq"
            } else {
                "VIRQ_TIMER on port"
            },
        ),
        Err(e) => println!(
            "traps: table {}, stack {}, callbacks {}; VIRQ_TIMER {}, events {}; {clock}",
            errno_str(t.table),
            errno_str(t.stack),
            errno_str(t.callbacks),
            e.name(),
            if t.callbacks.is_ok() {
                "enabled"
            } else {
                "masked"
            },
        ),
    }
}

/// The boot-time system-call handler (`int 0x80` and SYSCALL from ring 3); also what the ring-3 harness
/// gets while processes run (`crate::proc` delegates to it).
pub fn harness_syscall(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if !ctx.from_user {
        return Disposition::Unhandled;
    }
    match f.rax {
        sys::EXIT => Disposition::ExitUser(f.rdi),
        sys::PING => {
            f.rax = f.rdi.wrapping_add(1);
            Disposition::Resume
        }
        _ => {
            f.rax = Errno::ENOSYS.as_ret() as u64;
            Disposition::Resume
        }
    }
}

/// Entries handled so far.
pub fn trap_count() -> u64 {
    TRAPS.load(Ordering::Relaxed)
}

/// Called by the exception stubs' common path (vectors 0..=31, bounce frames) instead of
/// [`trap_dispatch`]: the same result. An exception taken in user mode takes the general path; one taken
/// in kernel mode (ring 1: page faults the kernel resolves or fixes up, breakpoints, `ud2` probes, ...)
/// takes [`kernel_exception`], built for each backend so that its two platform queries (the fault
/// address, the event mask) are direct calls the compiler can inline, not calls through `ops()`.
pub extern "C" fn trap_exception(frame: &mut TrapFrame) -> u64 {
    if frame.from_user() {
        return trap_dispatch(frame);
    }
    TRAPS.fetch_add(1, Ordering::Relaxed);
    on_backend!(p => kernel_exception(p, frame))
}

/// [`trap_exception`] for an exception from ring 1 on the platform `p` (the one in use): what the general
/// path ([`trap_dispatch`]) does for it, in its order, without what cannot apply — it is a bounce
/// (the frame's virtual IF is the interrupted mask), not from user mode (so never process mode), not the
/// event upcall. The exception gates do not mask events, so the return plan compares the interrupted
/// mask with the one the handler left, as there.
#[inline(always)]
fn kernel_exception(p: &impl Platform, frame: &mut TrapFrame) -> u64 {
    debug_assert!(frame.vector < 32 && !frame.from_user());
    let events_were_masked = frame.rflags & RFLAGS_IF == 0;
    frame.clear_saved_mask();
    let vector = frame.vector;
    let ctx = TrapCtx {
        vector,
        from_user: false,
        cr2: if vector == 14 { p.fault_address() } else { 0 },
        events_were_masked,
    };
    handle(frame, &ctx);
    finish(p, frame, events_were_masked, !p.irqs_enabled())
}

/// The return plan of a trap whose interrupted context had `events_were_masked`, with the mask now
/// `masked_now`: set the mask if needed, prepare the frame for the `iret` hypercall if that is the way out.
#[inline(always)]
fn finish(
    p: &(impl Platform + ?Sized),
    frame: &mut TrapFrame,
    events_were_masked: bool,
    masked_now: bool,
) -> u64 {
    let plan = plan_return(events_were_masked, masked_now);
    if let Some(m) = plan.set_mask {
        p.irq_set_flag(!m);
    }
    if plan.path == ReturnPath::Hypercall {
        frame.prepare_iret(plan.resume_masked);
    }
    plan.path as u64
}

/// Called by the common entry path with the frame; returns the [`ReturnPath`] (as u64). Every entry but
/// a PV exception stub's (see [`trap_exception`]). The backend is chosen once, here: the body is built
/// for each ([`dispatch_on`]), so its event-mask queries are direct calls the compiler can inline, not
/// calls through `ops()` (the run-time price of a second backend, paid on every system call otherwise).
pub extern "C" fn trap_dispatch(frame: &mut TrapFrame) -> u64 {
    on_backend!(p => dispatch_on(p, frame))
}

/// [`trap_dispatch`]'s body on the platform `p` (the one in use).
#[inline(always)]
fn dispatch_on(p: &impl Platform, frame: &mut TrapFrame) -> u64 {
    TRAPS.fetch_add(1, Ordering::Relaxed);
    let masked_now = || !p.irqs_enabled();
    let kind = EntryKind::of(frame.vector);
    let events_were_masked = if kind.is_bounce() {
        frame.rflags & RFLAGS_IF == 0
    } else {
        masked_now()
    };
    frame.clear_saved_mask();
    let ctx = TrapCtx {
        vector: frame.vector,
        from_user: frame.from_user(),
        cr2: if frame.vector == 14 {
            p.fault_address()
        } else {
            0
        },
        events_were_masked,
    };
    // Process mode: the kernel works with events masked; a trap from a process's user code ends by
    // looking at timers and input (maybe switching to another process) before it returns.
    let process = ctx.from_user && crate::proc::active() && !super::user::active();
    if process && !events_were_masked {
        p.irq_disable();
    }
    match kind {
        EntryKind::Event => crate::event::upcall(),
        _ => handle(frame, &ctx),
    }
    if process {
        crate::proc::return_to_user();
        // Without a pending event, unmask here and leave by IRETQ (no hypercall on the direct gate's
        // path); an event raised after this point is delivered as an upcall into the exit path.
        if !events_were_masked && kind != EntryKind::Event && !p.irq_pending() {
            p.irq_restore(true);
        }
    }
    let plan = plan_return(events_were_masked, masked_now());
    if let Some(m) = plan.set_mask {
        p.irq_set_flag(!m);
    }
    if plan.path == ReturnPath::Hypercall {
        frame.prepare_iret(plan.resume_masked);
    }
    plan.path as u64
}

/// Called by the event callback's entry (`guest_trap_stub_event`, every upcall on PV: timer, console,
/// I/O, IPIs) with the frame; returns the [`ReturnPath`] (as u64). The same steps as [`trap_dispatch`]
/// takes for [`EntryKind::Event`] — a bounce frame, so the interrupted context's event mask is its
/// saved virtual IF; in process mode events stay masked while the kernel works and the return may
/// switch processes; the upcall; then [`plan_return`] — without the general path's handler context,
/// which an upcall does not use. (Natively the interrupt stubs enter [`trap_dispatch`].)
pub extern "C" fn event_dispatch(frame: &mut TrapFrame) -> u64 {
    debug_assert_eq!(frame.vector, VECTOR_EVENT);
    // The backend chosen once, as in `trap_dispatch`.
    on_backend!(p => event_on(p, frame))
}

/// [`event_dispatch`]'s body on the platform `p` (the one in use).
#[inline(always)]
fn event_on(p: &impl Platform, frame: &mut TrapFrame) -> u64 {
    TRAPS.fetch_add(1, Ordering::Relaxed);
    let events_were_masked = frame.rflags & RFLAGS_IF == 0;
    frame.clear_saved_mask();
    let process = frame.from_user() && crate::proc::active() && !super::user::active();
    if process && !events_were_masked {
        p.irq_disable();
    }
    crate::event::upcall();
    if process {
        crate::proc::return_to_user();
    }
    let plan = plan_return(events_were_masked, !p.irqs_enabled());
    if let Some(m) = plan.set_mask {
        p.irq_set_flag(!m);
    }
    if plan.path == ReturnPath::Hypercall {
        frame.prepare_iret(plan.resume_masked);
    }
    plan.path as u64
}

fn handle(frame: &mut TrapFrame, ctx: &TrapCtx) {
    let d = HANDLERS
        .get(ctx.vector)
        .map_or(Disposition::Unhandled, |h| h(frame, ctx));
    if d != Disposition::Resume {
        not_resumed(frame, ctx, d);
    }
}

/// A handler's verdict other than [`Disposition::Resume`] (or no handler): leave user mode, or the
/// default (report, then kill what faulted). Out of line, so that [`handle`] stays small wherever it is
/// inlined.
#[cold]
#[inline(never)]
fn not_resumed(frame: &mut TrapFrame, ctx: &TrapCtx, d: Disposition) {
    match d {
        Disposition::Resume => {}
        Disposition::ExitUser(v) => {
            if ctx.from_user {
                super::user::exit_to_kernel(v);
            }
            println!(
                "trap: a handler asked to leave user mode from ring {}",
                frame.cs & 3
            );
            unhandled(frame, ctx);
        }
        Disposition::Unhandled => unhandled(frame, ctx),
    }
}

/// Print what trapped.
pub fn report(frame: &TrapFrame, ctx: &TrapCtx) {
    println!(
        "trap: unhandled {} (vector {:#x}) in ring {} at rip={:#x} error={:#x} cr2={:#x}",
        vector_name(ctx.vector),
        ctx.vector,
        frame.cs & 3,
        frame.rip,
        frame.error_code,
        ctx.cr2,
    );
    println!(
        "trap:   rsp={:#x} rflags={:#x} cs={:#x} ss={:#x}",
        frame.rsp, frame.rflags, frame.cs, frame.ss
    );
    println!(
        "trap:   rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x}",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi
    );
    println!(
        "trap:   rdi={:#x} rbp={:#x} r8={:#x} r9={:#x} r10={:#x}",
        frame.rdi, frame.rbp, frame.r8, frame.r9, frame.r10
    );
    println!(
        "trap:   r11={:#x} r12={:#x} r13={:#x} r14={:#x} r15={:#x}",
        frame.r11, frame.r12, frame.r13, frame.r14, frame.r15
    );
}

/// The default: report, then kill what faulted (see the module docs of `crate::trap`).
fn unhandled(frame: &mut TrapFrame, ctx: &TrapCtx) {
    report(frame, ctx);
    if ctx.from_user && super::user::active() {
        println!("trap: killing the user program");
        super::user::exit_to_kernel(KILLED + ctx.vector);
    }
    if ctx.vector >= 32 || is_trap_class(ctx.vector) {
        println!("trap: nothing to kill but the kernel: shutting down");
        ops().shutdown(Halt::Crash, 1);
    }
    match ops().clear_trap_gates() {
        Ok(()) => {
            TRAP_TABLE_OK.store(false, Ordering::Release);
            println!(
                "trap: nothing to kill but the kernel: trap table cleared, re-executing the faulting instruction for the hypervisor"
            );
        }
        Err(e) => {
            println!("trap: cannot clear the trap table ({e}): shutting down");
            ops().shutdown(Halt::Crash, 1);
        }
    }
}

/// The `iret` hypercall refused to return from a trap: nothing sensible can continue.
pub extern "C" fn trap_iret_failed(err: i64, context: u64) -> ! {
    println!(
        "trap: the iret hypercall failed ({err}) on the context at {context:#x}; shutting down"
    );
    ops().shutdown(Halt::Crash, 1)
}

/// The failsafe callback: report the frame's first words and stop.
pub extern "C" fn trap_failsafe(rsp: u64) -> ! {
    let rsp = rsp as *const u64;
    let mut w = [0u64; 8];
    for (i, slot) in w.iter_mut().enumerate() {
        // SAFETY: the hypervisor wrote its failsafe frame at `rsp` on this (mapped) stack; reading eight
        // words of it stays within what it pushed or the stack above it.
        *slot = unsafe { rsp.add(i).read_volatile() };
    }
    println!("trap: failsafe callback entered, frame at {rsp:p}: {w:#x?}; shutting down");
    ops().shutdown(Halt::Crash, 1)
}
