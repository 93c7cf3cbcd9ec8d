//! Handling one #VMEXIT, and preparing the next VMRUN's event injection: pure logic over the VMCB, the
//! guest's other registers and the domain's devices (behind [`Devices`]), host-tested.
//!
//! Under QEMU's TCG there is no next-RIP save and no decode assist: only I/O exits give the next RIP
//! (EXITINFO2). CPUID, RDMSR/WRMSR and INVD are two bytes, HLT one; a guest that adds redundant prefixes to
//! them resumes inside its own instruction (its own problem: nothing outside the domain depends on it).
#![forbid(unsafe_code)]

use super::cpuid::{self, Regs};
use super::exit::{self, EventInfo, Exit};
use super::vmcb::{CR0_PG, Vmcb, efer, misc1, vintr};

/// The guest's registers that the VMCB does not hold (RAX and RSP are in the VMCB; so are DR6/DR7). The
/// VMRUN stub in `arch/x86_64/entry.rs` loads and stores them by these offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestGprs {
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RBP.
    pub rbp: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
    /// DR0..DR3: VMRUN switches only DR6 and DR7, so the stub switches the breakpoint addresses too (no
    /// hvm domain can read another's).
    pub dr: [u64; 4],
}

/// What a port write did beyond changing device state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOutcome {
    /// Nothing else.
    None,
    /// A byte for the domain's console.
    Output(u8),
    /// The domain asked to stop with this code (isa-debug-exit).
    Shutdown(u32),
}

/// The domain's emulated devices, as the exit handler sees them (the device model's `Board`).
pub trait Devices {
    /// A port read of `size` bytes.
    fn io_in(&mut self, port: u16, size: u8, now_ns: u64) -> u32;
    /// A port write of `size` bytes.
    fn io_out(&mut self, port: u16, size: u8, value: u32, now_ns: u64) -> IoOutcome;
    /// The vector the interrupt controller would deliver now.
    fn pending_vector(&self) -> Option<u8>;
    /// Interrupt acknowledge: the vector delivered.
    fn acknowledge(&mut self) -> Option<u8>;
}

/// Why a domain is crashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// A triple fault (SHUTDOWN intercept).
    TripleFault,
    /// A nested page fault: the guest touched guest-physical memory it does not have.
    NestedFault {
        /// Guest-physical address.
        gpa: u64,
        /// EXITINFO1.
        code: u64,
    },
    /// VMRUN refused the VMCB.
    Invalid,
    /// A machine check while the guest ran.
    MachineCheck,
    /// INS/OUTS (not emulated).
    StringIo {
        /// Port.
        port: u16,
    },
    /// An exit this hypervisor never asked for.
    Unexpected(u64),
    /// The guest turned CR4.OSXSAVE (`"CR4.OSXSAVE"`) or CR4.PKE (`"CR4.PKE"`) on: XSAVE-managed state
    /// (XCR0, the upper halves of the vector registers) and PKRU are not switched between domains.
    ExtendedState(&'static str),
}

impl core::fmt::Display for Crash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Crash::TripleFault => f.write_str("triple fault (shutdown intercept)"),
            Crash::NestedFault { gpa, code } => write!(
                f,
                "nested page fault at guest-physical {gpa:#x} (outside the domain's memory; code {code:#x})"
            ),
            Crash::Invalid => f.write_str("VMRUN refused the VMCB (VMEXIT_INVALID)"),
            Crash::MachineCheck => f.write_str("machine check while the guest ran"),
            Crash::StringIo { port } => {
                write!(f, "string I/O (INS/OUTS) at port {port:#x} is not emulated")
            }
            Crash::Unexpected(c) => write!(f, "unexpected exit code {c:#x}"),
            Crash::ExtendedState(bit) => write!(
                f,
                "{bit} turned on (XSAVE/AVX state and PKRU are not offered to hvm guests: not switched)"
            ),
        }
    }
}

/// What the run loop does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Enter the guest again.
    Resume,
    /// A physical interrupt (or NMI/SMI/INIT) for the host: let the scheduler act on it.
    Reschedule,
    /// HLT: the guest waits for an interrupt.
    Halt,
    /// The guest powered off with this code.
    Shutdown(u32),
    /// Stop the domain.
    Crash(Crash),
}

/// Handle one exit. `cpuid` answers for the host; `console` takes the guest's UART output.
pub fn handle(
    vmcb: &mut Vmcb,
    gprs: &mut GuestGprs,
    dev: &mut impl Devices,
    now_ns: u64,
    host_cpuid: impl Fn(u32, u32) -> Regs,
    console: &mut impl FnMut(u8),
) -> Action {
    // Whatever was injected was delivered, or shows up in EXITINTINFO for `prepare_entry`.
    vmcb.eventinj = 0;
    match exit::decode(vmcb.exitcode, vmcb.exitinfo1, vmcb.exitinfo2) {
        Exit::Intr | Exit::Nmi | Exit::Smi | Exit::Init => Action::Reschedule,
        Exit::Vintr => {
            // The guest can take an interrupt now: `prepare_entry` injects it.
            vmcb.vintr &= !vintr::V_IRQ;
            vmcb.intercept_misc1 &= !misc1::VINTR;
            Action::Resume
        }
        Exit::Cpuid => {
            let r = cpuid::guest_cpuid(vmcb.rax as u32, gprs.rcx as u32, host_cpuid);
            vmcb.rax = u64::from(r.eax);
            gprs.rbx = u64::from(r.ebx);
            gprs.rcx = u64::from(r.ecx);
            gprs.rdx = u64::from(r.edx);
            skip(vmcb, 2);
            Action::Resume
        }
        Exit::Msr { write } => {
            msr(vmcb, gprs, write);
            Action::Resume
        }
        Exit::Hlt => {
            skip(vmcb, 1);
            Action::Halt
        }
        Exit::Invd => {
            // Dropping caches without writing them back is the host's business: INVD acts as a no-op.
            skip(vmcb, 2);
            Action::Resume
        }
        Exit::Io(io) => {
            if io.string {
                return Action::Crash(Crash::StringIo { port: io.port });
            }
            let mask = match io.size {
                1 => 0xff,
                2 => 0xffff,
                _ => 0xffff_ffff,
            };
            let mut action = Action::Resume;
            if io.input {
                let v = u64::from(dev.io_in(io.port, io.size, now_ns)) & mask;
                vmcb.rax = if io.size == 4 {
                    v
                } else {
                    (vmcb.rax & !mask) | v
                };
            } else {
                match dev.io_out(io.port, io.size, (vmcb.rax & mask) as u32, now_ns) {
                    IoOutcome::None => {}
                    IoOutcome::Output(b) => console(b),
                    IoOutcome::Shutdown(code) => action = Action::Shutdown(code),
                }
            }
            vmcb.rip = io.next_rip;
            vmcb.interrupt_shadow &= !1;
            action
        }
        Exit::Shutdown => Action::Crash(Crash::TripleFault),
        Exit::Invlpga | Exit::SvmInstruction(_) => {
            inject_ud(vmcb);
            Action::Resume
        }
        Exit::Npf { gpa, code } => Action::Crash(Crash::NestedFault { gpa, code }),
        Exit::Exception { vector: 18, .. } => Action::Crash(Crash::MachineCheck),
        Exit::Invalid => Action::Crash(Crash::Invalid),
        Exit::CrRead(_)
        | Exit::CrWrite(_)
        | Exit::DrRead(_)
        | Exit::DrWrite(_)
        | Exit::Exception { .. }
        | Exit::Other(_) => Action::Crash(Crash::Unexpected(vmcb.exitcode)),
    }
}

/// The intercepted instruction of `len` bytes completed: move past it. Completing it also ends an
/// interrupt shadow (after `sti; hlt` the pending interrupt is taken right after the HLT, as on hardware;
/// keeping the shadow would hold it back until the guest's next instruction, which may be a `cli`).
fn skip(vmcb: &mut Vmcb, len: u64) {
    vmcb.rip = vmcb.rip.wrapping_add(len);
    vmcb.interrupt_shadow &= !1;
}

/// CR4.OSXSAVE.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// CR4.PKE.
pub const CR4_PKE: u64 = 1 << 22;

/// Checks on the guest's state after every exit, before anything else: a guest that turned CR4.OSXSAVE or
/// CR4.PKE on (CPUID offers neither; XSETBV cannot be intercepted under TCG, WRPKRU never) is stopped, and
/// the caller scrubs the state it may have left in the CPU (XCR0, vector registers, PKRU).
pub fn check_state(vmcb: &Vmcb) -> Option<Crash> {
    if vmcb.cr4 & CR4_OSXSAVE != 0 {
        Some(Crash::ExtendedState("CR4.OSXSAVE"))
    } else if vmcb.cr4 & CR4_PKE != 0 {
        Some(Crash::ExtendedState("CR4.PKE"))
    } else {
        None
    }
}

/// Refuse the instruction: #UD at its RIP.
fn inject_ud(vmcb: &mut Vmcb) {
    vmcb.eventinj = EventInfo::exception(exit::UD, None).0;
}

fn inject_gp(vmcb: &mut Vmcb) {
    vmcb.eventinj = EventInfo::exception(exit::GP, Some(0)).0;
}

/// EFER: the bits a guest may set (LMA is the CPU's; SVME is the host's and stays hidden).
const EFER_GUEST_BITS: u64 = efer::SCE | efer::LME | efer::NXE;

/// RDMSR/WRMSR of an intercepted MSR: EFER is emulated (SVME hidden from reads, kept set, never writable),
/// every other intercepted MSR is refused with #GP.
fn msr(vmcb: &mut Vmcb, gprs: &mut GuestGprs, write: bool) {
    const EFER: u32 = 0xc000_0080;
    let index = gprs.rcx as u32;
    if index != EFER {
        inject_gp(vmcb);
        return;
    }
    if write {
        let v = (gprs.rdx & 0xffff_ffff) << 32 | (vmcb.rax & 0xffff_ffff);
        let paging = vmcb.cr0 & CR0_PG != 0;
        let bad_bits = v & !(EFER_GUEST_BITS | efer::LMA) != 0;
        let lme_change = (v ^ vmcb.efer) & efer::LME != 0;
        if bad_bits || (paging && lme_change) {
            inject_gp(vmcb);
            return;
        }
        vmcb.efer = (v & EFER_GUEST_BITS) | (vmcb.efer & efer::LMA) | efer::SVME;
    } else {
        let v = vmcb.efer & !efer::SVME;
        vmcb.rax = v & 0xffff_ffff;
        gprs.rdx = v >> 32;
    }
    skip(vmcb, 2);
}

/// Before VMRUN: re-inject an event whose delivery the last exit interrupted; else inject the devices'
/// pending interrupt if the guest can take it now (IF set, no interrupt shadow), or ask for a VINTR exit
/// for when it can (V_IRQ + the VINTR intercept).
pub fn prepare_entry(vmcb: &mut Vmcb, dev: &mut impl Devices) {
    let interrupted = EventInfo(vmcb.exitintinfo);
    vmcb.exitintinfo = 0;
    if EventInfo(vmcb.eventinj).valid() {
        return;
    }
    if interrupted.valid() {
        vmcb.eventinj = interrupted.0;
        return;
    }
    let want_window = |vmcb: &mut Vmcb, on: bool| {
        if on {
            vmcb.vintr |= vintr::V_IRQ | vintr::V_INTR_PRIO_MAX | vintr::V_IGN_TPR;
            vmcb.intercept_misc1 |= misc1::VINTR;
        } else {
            vmcb.vintr &= !(vintr::V_IRQ | vintr::V_INTR_PRIO_MAX | vintr::V_IGN_TPR);
            vmcb.intercept_misc1 &= !misc1::VINTR;
        }
    };
    if dev.pending_vector().is_none() {
        want_window(vmcb, false);
        return;
    }
    if vmcb.interrupts_enabled() && !vmcb.in_shadow() {
        want_window(vmcb, false);
        if let Some(v) = dev.acknowledge() {
            vmcb.eventinj = EventInfo::interrupt(v).0;
        }
    } else {
        want_window(vmcb, true);
    }
}

/// The shortest interval at which the hypervisor's timer follows an hvm guest's device deadlines (50 µs,
/// 20 kHz): a guest that programs the PIT to its fastest rate (about 1.2 MHz) gets late, coalesced ticks
/// rather than a host drowning in timer interrupts.
pub const MIN_DEVICE_TIMER_NS: u64 = 50_000;

/// When the hypervisor's timer should next end the guest's run (or sleep) for its devices: their deadline,
/// but not sooner than [`MIN_DEVICE_TIMER_NS`] from `now`.
pub fn device_timer(deadline: Option<u64>, now: u64) -> Option<u64> {
    deadline.map(|d| d.max(now.saturating_add(MIN_DEVICE_TIMER_NS)))
}

/// True if an interrupt would be delivered as soon as the guest runs (after HLT: no need to sleep).
pub fn interrupt_deliverable(vmcb: &Vmcb, dev: &impl Devices) -> bool {
    EventInfo(vmcb.eventinj).valid()
        || (dev.pending_vector().is_some() && vmcb.interrupts_enabled())
}

#[cfg(test)]
#[path = "exits_tests.rs"]
mod tests;
