//! What an emulate domain's trap becomes: the per-domain state ([`EmuState`]: virtual CPU, shadow tables,
//! devices, exit counts) and the decision for each entry into the hypervisor — emulate the instruction,
//! fill the shadow, reflect the exception through the guest's IDT, take the system call, inject the
//! device interrupt — independent of the machine (host-tested through [`Machine`]).
#![forbid(unsafe_code)]

use super::decode::{self, Insn};
use super::env::{Env, Outcome, Regs, vector};
use super::exec;
use super::exits::{Exits, Reason};
use super::reflect;
use super::shadow::{Fault, FaultResult, Mode, Shadow};
use super::vcpu::VCpu;
use crate::devices::Board;

/// The per-domain state of an emulate domain.
#[derive(Debug)]
pub struct EmuState {
    /// The virtual CPU.
    pub vcpu: VCpu,
    /// The shadow page tables.
    pub shadow: Shadow,
    /// The devices.
    pub board: Board,
    /// Exit counts.
    pub exits: Exits,
    /// Guest frames.
    pub pages: u64,
    /// The frame holding the P2M directory (machine frame numbers of the P2M leaves).
    pub p2m_dir: u64,
    /// Head of the shadow frame pool's free list (0: empty).
    pub pool_head: u64,
    /// Frames the pool owns (free or in use).
    pub pool_frames: u64,
}

/// Where a domain's [`EmuState`] lives (an index into the hypervisor's table of emulate states), so that
/// `Domain` stays small: the PV paths copy and scan it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmuSlot(pub u8);

/// The machine under the emulator: [`Env`] plus the shadow's page-fault handling.
pub trait Machine: Env {
    /// A page fault from the guest at `va` with hardware error code `err`.
    fn page_fault(&mut self, cr3: u64, va: u64, err: u32, mode: Mode)
    -> Result<FaultResult, Fault>;
    /// The domain's devices.
    fn board(&mut self) -> &mut Board;
}

/// What the scheduler does next with the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run it again.
    Resume,
    /// It executed HLT with interrupts enabled: sleep until its devices' next deadline or input.
    Block,
    /// It wrote to isa-debug-exit.
    Shutdown(u32),
    /// Crash it (the reason; the caller adds RIP and the instruction bytes).
    Crash(&'static str),
}

/// The vector the entry code gives a SYSCALL.
pub const SYSCALL_VECTOR: u64 = abi::traps::SYSCALL_PSEUDO_VECTOR;

/// Fetch up to 15 instruction bytes at RIP (fewer at the end of the mapped code); the count read.
pub fn fetch(m: &mut dyn Machine, v: &VCpu, rip: u64, buf: &mut [u8; 15]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        let mut b = [0u8];
        if m.read(v.cr3, rip.wrapping_add(n as u64), &mut b, v.cpl == 3)
            .is_err()
        {
            break;
        }
        buf[n] = b[0];
        n += 1;
    }
    n
}

/// Turn an outcome into the next action, delivering exceptions and software interrupts to the guest.
pub fn finish(m: &mut dyn Machine, v: &mut VCpu, r: &mut Regs, o: Outcome) -> Action {
    match o {
        Outcome::Continue => Action::Resume,
        Outcome::Exception { vector, error } => {
            to_action(reflect::deliver(m, v, r, vector, error, false))
        }
        Outcome::SoftInt(n) => to_action(reflect::deliver(m, v, r, n, None, true)),
        Outcome::Block => Action::Block,
        Outcome::Shutdown(code) => Action::Shutdown(code),
        Outcome::Crash(why) => Action::Crash(why),
    }
}

fn to_action(o: Outcome) -> Action {
    match o {
        Outcome::Crash(why) => Action::Crash(why),
        _ => Action::Resume,
    }
}

/// Handle an entry from the guest: `ring` is the real ring it came from (1: the guest kernel, 3: user),
/// `vector` the entry's vector (exception, [`SYSCALL_VECTOR`], the hypercall vector, or an interrupt, which
/// the caller has already recorded), `error` its error code, `cr2` the fault address of a #PF.
#[allow(clippy::too_many_arguments)]
pub fn handle(
    m: &mut dyn Machine,
    v: &mut VCpu,
    exits: &mut Exits,
    r: &mut Regs,
    ring: u8,
    vector: u64,
    error: u64,
    cr2: u64,
) -> Action {
    if ring == 3 {
        // Real ring 3 is the guest's CPL 3; its selectors are the only ring-3 ones the real GDT has, and a
        // ring-3 program always runs with IF set (real IF is never clear in a guest).
        v.cpl = 3;
        v.vif = true;
        v.cs = abi::layout::GUEST_USER_CS;
        v.ss = abi::layout::GUEST_USER_SS;
    } else {
        v.cpl = 0;
    }
    let o = match vector {
        SYSCALL_VECTOR => {
            exits.count(Reason::Syscall);
            reflect::syscall(v, r)
        }
        14 => {
            let mode = Mode {
                nxe: v.nxe(),
                pge: v.pge(),
            };
            match m.page_fault(v.cr3, cr2, error as u32, mode) {
                Ok(FaultResult::Hidden) => {
                    exits.count(Reason::HiddenPf);
                    Outcome::Continue
                }
                Ok(FaultResult::Reflect(code)) => {
                    exits.count(Reason::TruePf);
                    v.cr2 = cr2;
                    Outcome::Exception {
                        vector: vector::PF,
                        error: Some(code),
                    }
                }
                Err(Fault::Crash(why)) => Outcome::Crash(why),
                Err(Fault::Page(code)) => {
                    v.cr2 = cr2;
                    Outcome::Exception {
                        vector: vector::PF,
                        error: Some(code),
                    }
                }
            }
        }
        13 | 6 => {
            let mut bytes = [0u8; 15];
            let n = fetch(m, v, r.rip, &mut bytes);
            let d = decode::decode(&bytes[..n]);
            if ring == 3 {
                // A user program's #GP is its own, except INT n to a gate the real IDT keeps at DPL 0.
                match d.insn {
                    Insn::Int(n) if vector == 13 && error & 2 != 0 => {
                        exits.count(Reason::Int);
                        r.rip = r.rip.wrapping_add(u64::from(d.len));
                        Outcome::SoftInt(n)
                    }
                    _ => {
                        exits.count(Reason::Exception);
                        Outcome::Exception {
                            vector: vector as u8,
                            error: (vector == 13).then_some(error as u32),
                        }
                    }
                }
            } else if d.insn == Insn::Unknown {
                Outcome::Crash("#GP/#UD at an instruction the emulator does not handle")
            } else {
                exits.count(exec::reason(&d.insn));
                exec::execute(m, v, r, &d, &bytes[..n])
            }
        }
        // INT3 (real gate DPL 3) and INT 0x82 (the hypercall gate, DPL 1): software interrupts of the guest,
        // RIP already after them.
        3 => {
            exits.count(Reason::Int);
            Outcome::SoftInt(3)
        }
        x if x == u64::from(abi::layout::HYPERCALL_VECTOR) => {
            exits.count(Reason::Int);
            Outcome::SoftInt(abi::layout::HYPERCALL_VECTOR)
        }
        2 => Outcome::Continue,
        8 => Outcome::Crash("double fault"),
        x if x < 32 => {
            exits.count(Reason::Exception);
            let vec = x as u8;
            Outcome::Exception {
                vector: vec,
                error: vector::has_error(vec).then_some(error as u32),
            }
        }
        _ => {
            exits.count(Reason::Interrupt);
            Outcome::Continue
        }
    };
    finish(m, v, r, o)
}

/// Before the guest runs again: deliver the devices' pending interrupt if the virtual IF allows it.
/// Returns the action (a failed delivery crashes the domain).
pub fn inject(m: &mut dyn Machine, v: &mut VCpu, exits: &mut Exits, r: &mut Regs) -> Action {
    if !v.vif || m.board().pending_vector().is_none() {
        return Action::Resume;
    }
    let Some(vec) = m.board().acknowledge() else {
        return Action::Resume;
    };
    // An injection is not an exit (the entry that preceded it was counted).
    let _ = exits;
    to_action(reflect::deliver(m, v, r, vec, None, false))
}
