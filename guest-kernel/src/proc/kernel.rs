//! The process kernel: the process table and its lock, switching, the idle loop,
//! blocking and waking, process exit and kill, and the trap hooks that make it all happen.
//!
//! Locking: [`PROCS`] is taken only by kernel code running with events masked, never across a switch;
//! event handlers (in the upcall) only set the atomics below, which the kernel looks at when it next
//! schedules or returns to user mode.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use abi::types::{PAGE_SIZE, Pfn};
use uapi::{STATUS_FAULT, STATUS_INTERRUPTED};

use super::table::{INIT_PID, Pid, Proc, State, Table, Wait};
use super::tty::{LineDiscipline, Signal};
use super::vma::{Access, FaultText, Regions, Verdict};
use crate::arch::x86_64::trap_entry::guest_switch_context;
use crate::mm::kernel::KernelEnv;
use crate::mm::{AddressSpace, MmEnv, physmap_va};
use crate::platform::{Halt, IrqSource, ops};
use crate::println;
use crate::trap::{Disposition, HANDLERS, TrapCtx, TrapFrame};

/// Pages of a kernel stack.
pub const KSTACK_PAGES: usize = 8;
/// The scheduler's tick.
pub const TICK_NS: u64 = 10_000_000;
/// Ticks a process may run before another runnable one gets the CPU.
pub const SLICE_TICKS: u64 = 1;

/// A kernel stack: contiguous pages, used through the physmap; freed when dropped.
pub struct KStack {
    first: Pfn,
}

impl KStack {
    pub fn new(env: &KernelEnv) -> Option<KStack> {
        env.alloc_contiguous(KSTACK_PAGES)
            .map(|first| KStack { first })
    }

    /// One past the highest byte.
    pub fn top(&self) -> u64 {
        physmap_va(self.first) + (KSTACK_PAGES as u64) * PAGE_SIZE
    }
}

impl Drop for KStack {
    fn drop(&mut self) {
        if let Some(env) = crate::mm::kernel::env() {
            for i in 0..KSTACK_PAGES as u64 {
                env.free_page(Pfn(self.first.0 + i));
            }
        }
    }
}

/// What the kernel keeps per process besides the table's bookkeeping.
pub struct Res {
    /// The address space (`None` once the process has exited).
    pub space: Option<AddressSpace>,
    pub regions: Regions,
    pub kstack: KStack,
    /// Saved RSP while switched out.
    pub ctx_rsp: u64,
    /// System time when it last got the CPU.
    pub ran_since: u64,
    /// Tick count when it last got the CPU.
    pub slice_tick: u64,
}

/// Everything the process kernel owns.
pub struct Procs {
    pub table: Table<Res>,
    pub current: Pid,
    pub tty: LineDiscipline,
    /// The program Ctrl-C ends.
    pub foreground: Option<Pid>,
    /// Ctrl-C was typed while a `read` waited and no foreground program ran.
    pub read_interrupted: bool,
}

impl Procs {
    /// The running process (`None` only before the first one starts).
    pub fn me(&mut self) -> Option<&mut Proc<Res>> {
        let cur = self.current;
        self.table.get_mut(cur)
    }
}

/// The process kernel's state (see the module docs for the locking rule).
pub static PROCS: spin::Mutex<Option<Procs>> = spin::Mutex::new(None);
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Timer ticks so far (the tick hook).
static TICKS: AtomicU64 = AtomicU64::new(0);
/// The tick count at the last wake-up scan.
static POLLED_TICK: AtomicU64 = AtomicU64::new(0);
/// Console input is waiting (the console's interrupt source; PV: VIRQ_CONSOLE).
static CONSOLE_KICK: AtomicBool = AtomicBool::new(false);
/// Where the boot stack's RSP goes when the first process starts (never resumed).
static BOOT_RSP: AtomicU64 = AtomicU64::new(0);

/// True once processes run.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// Run `f` on the process kernel's state.
pub fn with<T>(f: impl FnOnce(&mut Procs) -> T) -> T {
    let mut g = PROCS.lock();
    f(g.as_mut().expect("process kernel not started"))
}

/// The kernel environment (memory management is up whenever processes run).
pub fn env() -> KernelEnv {
    crate::mm::kernel::env().expect("memory management is up")
}

/// The running process.
pub fn current() -> Pid {
    with(|p| p.current)
}

/// Run `f` on the running process.
pub fn with_current<T>(f: impl FnOnce(&mut Proc<Res>) -> T) -> Option<T> {
    with(|p| p.me().map(f))
}

fn on_tick(_: u64) {
    TICKS.fetch_add(1, Ordering::Release);
}

fn on_console(_: u32) {
    CONSOLE_KICK.store(true, Ordering::Release);
}

/// The console's input event is bound: `read` on fd 0 may wait for input (otherwise `-ENODEV`).
static CONSOLE_BOUND: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// True if this kernel takes console input.
pub fn console_bound() -> bool {
    CONSOLE_BOUND.load(core::sync::atomic::Ordering::Relaxed)
}

/// Start the process kernel with `program` as process 1 and never come back: when process 1 ends, the
/// domain powers off with its status.
pub fn run_init(program: &str) -> ! {
    install_handlers();
    crate::time::set_tick_hook(Some(on_tick));
    if let Err(e) = crate::time::start_periodic(TICK_NS) {
        println!("kernel: no periodic timer ({e}); no preemption");
    }
    // Every domain that runs the shell takes console input; the hypervisor sends it to domain 0 unless the
    // toolstack gave it to another (`xl console`).
    match crate::event::bind(IrqSource::Console, Some(on_console)) {
        Ok(_) => CONSOLE_BOUND.store(true, core::sync::atomic::Ordering::Relaxed),
        Err(e) => println!("kernel: no console input ({e})"),
    }
    super::ping::offer();
    super::suspend::bind();
    *PROCS.lock() = Some(Procs {
        table: Table::new(),
        current: 0,
        tty: LineDiscipline::new(),
        foreground: None,
        read_interrupted: false,
    });
    ops().irq_disable();
    match super::loader::spawn(0, program, b"") {
        Ok(pid) => println!(
            "kernel: {} programs embedded; starting {program} as pid {pid}",
            super::programs::PROGRAMS.len()
        ),
        Err(e) => {
            println!("kernel: cannot start {program}: {e}");
            ops().shutdown(Halt::Crash, 1)
        }
    }
    ACTIVE.store(true, Ordering::Release);
    let first = with(|p| p.table.pick()).expect("the first process is runnable");
    let new_rsp = enter(first);
    // SAFETY: `new_rsp` is the first process's prepared kernel stack (its address space and stack are
    // installed by `enter`); the boot stack is abandoned and never switched back to.
    unsafe { guest_switch_context(BOOT_RSP.as_ptr(), new_rsp) };
    ops().shutdown(Halt::Crash, 1)
}

/// Make `next` the current process: its kernel stack for traps, its address space, its accounting.
/// Returns the RSP to switch to.
fn enter(next: Pid) -> u64 {
    let env = env();
    with(|p| {
        p.current = next;
        let n = p.table.get_mut(next).expect("picked process exists");
        n.res.ran_since = crate::time::now();
        n.res.slice_tick = TICKS.load(Ordering::Acquire);
        if let Err(e) = ops().set_kernel_stack(n.res.kstack.top()) {
            println!("kernel: stack_switch refused ({e}); stopping");
            ops().shutdown(Halt::Crash, 1);
        }
        if let Some(s) = n.res.space.as_mut()
            && let Err(e) = s.switch_to(&env)
        {
            println!("kernel: cannot switch to pid {next}'s address space: {e}");
            ops().shutdown(Halt::Crash, 1);
        }
        n.res.ctx_rsp
    })
}

/// Charge the current process for the time since it got the CPU.
fn charge_current() {
    let now = crate::time::now();
    with_current(|c| {
        c.stats.cpu_ns += now.saturating_sub(c.res.ran_since);
        c.res.ran_since = now;
    });
}

/// Give the CPU to the next runnable process (possibly the caller). The caller has set its own state
/// first (queued again, blocked, or a zombie). Returns when the caller runs again (a zombie never does).
/// Events are masked on entry and on return.
pub fn schedule() {
    charge_current();
    let next = loop {
        poll();
        if let Some(n) = with(|p| p.table.pick()) {
            break n;
        }
        idle();
    };
    let cur = current();
    if next == cur {
        with(|p| {
            if let Some(c) = p.table.get_mut(cur) {
                c.res.ran_since = crate::time::now();
                c.res.slice_tick = TICKS.load(Ordering::Acquire);
            }
        });
        return;
    }
    let save: *mut u64 = with(|p| {
        let c = p.table.get_mut(cur).expect("the current process exists");
        &raw mut c.res.ctx_rsp
    });
    let new_rsp = enter(next);
    // SAFETY: `save` points at the current process's `ctx_rsp` in the table; nothing changes the table's
    // layout between taking it and the store at the start of the switch (`enter` only updates fields), and
    // the pointer is not used after that store. `new_rsp` is `next`'s saved or freshly built kernel stack,
    // whose address space and trap stack `enter` installed.
    unsafe { guest_switch_context(save, new_rsp) };
}

/// Nothing is runnable: sleep until an event (a tick, console input, a reply) arrives.
fn idle() {
    let deadline = with(|p| {
        p.table
            .iter()
            .filter_map(|q| match q.state {
                State::Blocked(Wait::Sleep(d) | Wait::Event(d)) => Some(d),
                _ => None,
            })
            .min()
    });
    if let Some(d) = deadline {
        let _ = ops().set_timer(d);
    }
    let _ = ops().block();
    ops().irq_disable();
}

/// Take console input, then wake every blocked process whose wait is over.
fn poll() {
    super::suspend::poll();
    POLLED_TICK.store(TICKS.load(Ordering::Acquire), Ordering::Release);
    if CONSOLE_KICK.swap(false, Ordering::AcqRel) {
        read_console();
    }
    let now = crate::time::now();
    let reply = super::ping::replied();
    with(|p| {
        let mut ready: heapless::Vec<Pid, { super::table::MAX_PROCS }> = heapless::Vec::new();
        for q in p.table.iter() {
            let State::Blocked(w) = q.state else { continue };
            let over = q.killed.is_some()
                || match w {
                    Wait::Sleep(d) => now >= d,
                    Wait::Child(want) => {
                        p.table.zombie_child(q.pid, want).is_some()
                            || !p.table.has_child(q.pid, want)
                    }
                    Wait::Console => p.tty.has_input() || p.read_interrupted,
                    Wait::Event(d) => reply || now >= d,
                    Wait::Notify => q.notified,
                };
            if over {
                let _ = ready.push(q.pid);
            }
        }
        for pid in ready {
            p.table.wake(pid);
        }
    });
}

/// Feed typed bytes to the line discipline; echo; Ctrl-C interrupts the foreground program.
fn read_console() {
    let mut buf = [0u8; 64];
    loop {
        let n = ops().console_read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        let mut echo: heapless::Vec<u8, 256> = heapless::Vec::new();
        let mut interrupts = 0;
        with(|p| {
            for &b in &buf[..n] {
                let sig = p.tty.feed(b, &mut |e| {
                    let _ = echo.extend_from_slice(e);
                });
                if sig == Signal::Interrupt {
                    interrupts += 1;
                }
            }
        });
        let _ = ops().console_write(&echo);
        for _ in 0..interrupts {
            interrupt();
        }
    }
}

/// Ctrl-C: end the foreground program, or interrupt a waiting `read`.
fn interrupt() {
    let fg = with(|p| {
        match p.foreground {
            Some(fg)
                if p.table
                    .get(fg)
                    .is_some_and(|q| !matches!(q.state, State::Zombie(_))) =>
            {
                return Some(fg);
            }
            _ => {}
        }
        if p.table
            .iter()
            .any(|q| q.state == State::Blocked(Wait::Console))
        {
            p.read_interrupted = true;
        }
        None
    });
    if let Some(fg) = fg {
        let name = name_of(fg);
        println!("kernel: pid {fg} ({name}) interrupted");
        kill(fg, STATUS_INTERRUPTED);
    }
}

/// The name of `pid` (for messages).
pub fn name_of(pid: Pid) -> heapless::String<16> {
    let mut s = heapless::String::new();
    with(|p| {
        if let Some(q) = p.table.get(pid) {
            let _ = s.push_str(uapi::name_str(&q.name));
        }
    });
    s
}

/// End `pid` with `status` as soon as it runs (it is woken if blocked).
pub fn kill(pid: Pid, status: u32) {
    with(|p| {
        if let Some(q) = p.table.get_mut(pid)
            && !matches!(q.state, State::Zombie(_))
        {
            q.killed.get_or_insert(status);
            if matches!(q.state, State::Blocked(_)) {
                p.table.wake(pid);
            }
        }
    });
}

/// If the current process was killed, end it now.
pub fn check_killed() {
    if let Some(status) = with_current(|q| q.killed).flatten() {
        exit_current(status);
    }
}

/// Put the current process at the back of the run queue and run the others first.
pub fn yield_current() {
    with(|p| {
        let cur = p.current;
        p.table.wake(cur);
    });
    schedule();
    check_killed();
}

/// Block the current process on `w` and run others until it is woken; then end it if it was killed.
pub fn block_current(w: Wait) {
    with(|p| {
        let cur = p.current;
        p.table.block(cur, w);
    });
    schedule();
    check_killed();
}

/// The current process ends with `status`: its address space is torn down now, its kernel stack when
/// its parent reaps it. Process 1 ending powers the domain off.
pub fn exit_current(status: u32) -> ! {
    let (pid, space) = with(|p| {
        let cur = p.current;
        if p.foreground == Some(cur) {
            p.foreground = None;
            // A Ctrl-D typed for the program it did not read must not end the shell's input.
            p.tty.drop_end_of_input();
        }
        let space = p.table.get_mut(cur).and_then(|q| q.res.space.take());
        p.table.exit(cur, status);
        (cur, space)
    });
    if let Some(s) = space
        && let Err(e) = s.destroy(&env())
    {
        println!("kernel: tearing down pid {pid}'s address space: {e}");
    }
    if pid == INIT_PID {
        super::ping::close();
        println!("kernel: pid 1 exited with status {status}; powering off");
        ops().shutdown(Halt::Poweroff, status);
    }
    schedule();
    println!("kernel: a zombie was scheduled");
    ops().shutdown(Halt::Crash, 1)
}

/// Called at the end of every trap from a process's user code (events masked): look at input and
/// timers, end the process if it was killed, and preempt it if its slice is over.
pub fn return_to_user() {
    let ticks = TICKS.load(Ordering::Acquire);
    if CONSOLE_KICK.load(Ordering::Acquire) || POLLED_TICK.load(Ordering::Acquire) != ticks {
        poll();
    }
    let (killed, preempt) = with(|p| {
        let others = p.table.others_runnable();
        match p.me() {
            Some(c) if c.killed.is_some() => (c.killed, false),
            Some(c) if others && ticks.wrapping_sub(c.res.slice_tick) >= SLICE_TICKS => {
                c.stats.preemptions += 1;
                (None, true)
            }
            _ => (None, false),
        }
    });
    if let Some(status) = killed {
        exit_current(status);
    }
    if preempt {
        yield_current();
    }
}

/// Install the trap handlers of process mode: system calls on both paths, every exception.
fn install_handlers() {
    HANDLERS.set(crate::trap::frame::VECTOR_INT80, Some(on_syscall));
    HANDLERS.set(crate::trap::frame::VECTOR_SYSCALL, Some(on_syscall));
    for v in 0..32 {
        HANDLERS.set(v, Some(on_exception));
    }
}

fn on_syscall(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if !ctx.from_user {
        return Disposition::Unhandled;
    }
    if crate::trap::user::active() {
        // The ring-3 harness of the benchmarks (run by the `bench` system call) keeps its own calls.
        return crate::trap::dispatch::harness_syscall(f, ctx);
    }
    with_current(|c| c.stats.syscalls += 1);
    let r = super::decode::decode(f.rax, [f.rdi, f.rsi, f.rdx, f.r10, f.r8])
        .and_then(|req| super::syscall::execute(req, f));
    f.rax = uapi::ret(r);
    Disposition::Resume
}

fn on_exception(f: &mut TrapFrame, ctx: &TrapCtx) -> Disposition {
    if !ctx.from_user || crate::trap::user::active() {
        return Disposition::Unhandled;
    }
    let pid = current();
    if ctx.vector == 14 {
        let access = Access::from_error_code(f.error_code);
        let verdict = with_current(|q| q.res.regions.classify(ctx.cr2, access));
        match verdict {
            Some(Verdict::Populate(page, prot)) => match populate(page, prot) {
                Ok(()) => return Disposition::Resume,
                Err(()) => {
                    println!(
                        "kernel: pid {pid} ({}) killed: out of memory at {:#x}",
                        name_of(pid),
                        ctx.cr2
                    );
                    exit_current(STATUS_FAULT);
                }
            },
            Some(Verdict::Kill(reason)) => {
                if run_fault_handler(f, ctx.cr2) {
                    return Disposition::Resume;
                }
                let text = FaultText {
                    addr: ctx.cr2,
                    access,
                    reason,
                };
                println!(
                    "kernel: pid {pid} ({}) killed: {text}, rip {:#x}",
                    name_of(pid),
                    f.rip
                );
            }
            None => {}
        }
    } else {
        println!(
            "kernel: pid {pid} ({}) killed: {} (vector {}) at rip {:#x}",
            name_of(pid),
            crate::trap::frame::vector_name(ctx.vector),
            ctx.vector,
            f.rip
        );
    }
    exit_current(STATUS_FAULT)
}

/// The current process registered a page-fault handler: enter it (see `faulthandler`). False if there is
/// none, it is already running, or its stack cannot take the return address (the caller then kills).
fn run_fault_handler(f: &mut TrapFrame, addr: u64) -> bool {
    let error = f.error_code;
    let Some(d) = with_current(|q| q.fault.deliver(f, addr, error)).flatten() else {
        return false;
    };
    if super::usercopy::copy_out(d.return_slot, &0u64.to_le_bytes()).is_ok() {
        return true;
    }
    // Put the faulting context back for the kill message.
    with_current(|q| q.fault.finish(f, 0));
    false
}

/// Map a zeroed page at `page` in the current process.
pub fn populate(page: u64, prot: crate::mm::Prot) -> Result<(), ()> {
    let env = env();
    with(|p| {
        let s = p.me().and_then(|q| q.res.space.as_mut()).ok_or(())?;
        s.map_zeroed(&env, page, prot).map_err(|_| ())?;
        s.flush(&env).map_err(|_| ())
    })
}
