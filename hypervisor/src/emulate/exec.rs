//! Performing one decoded privileged instruction on the virtual CPU: what it would have done in ring 0.
//!
//! `execute` is called for a #GP or #UD the guest kernel (virtual CPL 0, real ring 1) took; its result is
//! an [`Outcome`] for the trap path. RIP is advanced only when the instruction completes.
#![forbid(unsafe_code)]

use super::decode::{Decoded, Insn, Port, Rm, Sreg};
use super::env::{Env, Outcome, Regs, UD, gp, reg};
use super::exits::Reason;
use super::reflect::{self, mem_fault};
use super::vcpu::{VCpu, cr0, cr4, msr};
use crate::devices::IoEffect;

/// CR4 bits the guest may set (the rest: #GP, as on a CPU without them).
const CR4_ALLOWED: u64 = cr4::DE
    | cr4::PSE
    | cr4::PAE
    | cr4::MCE
    | cr4::PGE
    | cr4::PCE
    | cr4::OSFXSR
    | cr4::OSXMMEXCPT
    | cr4::UMIP
    | cr4::TSD;
/// Most repetitions of a string I/O instruction per trap (the rest restart it, as an interrupted REP).
const REP_CHUNK: u64 = 256;

/// The exit reason of an instruction.
pub fn reason(insn: &Insn) -> Reason {
    match insn {
        Insn::Cli => Reason::Cli,
        Insn::Sti => Reason::Sti,
        Insn::Hlt => Reason::Hlt,
        Insn::In { .. } | Insn::Out { .. } | Insn::Ins { .. } | Insn::Outs { .. } => Reason::Io,
        Insn::MovToCr { cr: 3, .. } => Reason::MovCr3,
        Insn::MovToCr { .. } | Insn::MovFromCr { .. } | Insn::Clts | Insn::Lmsw(_) => Reason::MovCr,
        Insn::Rdmsr => Reason::Rdmsr,
        Insn::Wrmsr => Reason::Wrmsr,
        Insn::Iret { .. } => Reason::Iretq,
        Insn::Sysret { .. } => Reason::Sysret,
        Insn::Syscall => Reason::Syscall,
        Insn::Swapgs => Reason::Swapgs,
        Insn::Invlpg(_) => Reason::Invlpg,
        Insn::Lgdt(_) => Reason::Lgdt,
        Insn::Lidt(_) => Reason::Lidt,
        Insn::Ltr(_) => Reason::Ltr,
        Insn::Lldt(_) => Reason::Lldt,
        Insn::Sgdt(_) | Insn::Sidt(_) | Insn::Sldt(..) | Insn::Str(..) | Insn::Smsw(..) => {
            Reason::Umip
        }
        Insn::MovToSreg { .. } | Insn::PopSreg(_) => Reason::Segment,
        Insn::Retf { .. } => Reason::Retf,
        Insn::Int(_) | Insn::Int3 | Insn::Int1 => Reason::Int,
        _ => Reason::Other,
    }
}

fn linear(m: &super::decode::Mem, v: &VCpu, r: &Regs, next: u64) -> u64 {
    m.linear(&r.gpr, next, v.fs_base, v.gs_base)
}

fn read_mem(env: &mut dyn Env, v: &mut VCpu, va: u64, buf: &mut [u8]) -> Result<(), Outcome> {
    env.read(v.cr3, va, buf, v.cpl == 3)
        .map_err(|f| mem_fault(v, f))
}

fn write_mem(env: &mut dyn Env, v: &mut VCpu, va: u64, bytes: &[u8]) -> Result<(), Outcome> {
    env.write(v.cr3, va, bytes, v.cpl == 3)
        .map_err(|f| mem_fault(v, f))
}

fn read_rm16(
    env: &mut dyn Env,
    v: &mut VCpu,
    r: &Regs,
    rm: &Rm,
    next: u64,
) -> Result<u16, Outcome> {
    match rm {
        Rm::Reg(n) => Ok(r.gpr[usize::from(*n)] as u16),
        Rm::Mem(m) => {
            let mut b = [0u8; 2];
            read_mem(env, v, linear(m, v, r, next), &mut b)?;
            Ok(u16::from_le_bytes(b))
        }
    }
}

/// Store `value` to a register (of `size` bytes: 2 keeps the upper bits, 4 and 8 zero-extend) or 2 bytes
/// of memory (SLDT, STR, SMSW).
fn store_rm(
    env: &mut dyn Env,
    v: &mut VCpu,
    r: &mut Regs,
    rm: &Rm,
    size: u8,
    value: u64,
    next: u64,
) -> Result<(), Outcome> {
    match rm {
        Rm::Reg(n) => {
            let g = &mut r.gpr[usize::from(*n)];
            *g = if size == 2 {
                (*g & !0xffff) | (value & 0xffff)
            } else {
                value
            };
            Ok(())
        }
        Rm::Mem(m) => write_mem(env, v, linear(m, v, r, next), &(value as u16).to_le_bytes()),
    }
}

fn canonical(a: u64) -> bool {
    ((a as i64) << 16 >> 16) as u64 == a
}

/// Perform `d` (decoded from `bytes` at `r.rip`) at virtual CPL 0.
pub fn execute(
    env: &mut dyn Env,
    v: &mut VCpu,
    r: &mut Regs,
    d: &Decoded,
    bytes: &[u8],
) -> Outcome {
    let next = r.rip.wrapping_add(u64::from(d.len));
    match run(env, v, r, d, bytes, next) {
        Ok(Some(o)) => o,
        Ok(None) => {
            r.rip = next;
            Outcome::Continue
        }
        Err(o) => o,
    }
}

/// `Ok(None)`: completed, advance RIP; `Ok(Some(o))`: `o` with RIP already set; `Err(o)`: a fault at RIP.
fn run(
    env: &mut dyn Env,
    v: &mut VCpu,
    r: &mut Regs,
    d: &Decoded,
    bytes: &[u8],
    next: u64,
) -> Result<Option<Outcome>, Outcome> {
    if v.cpl != 0 {
        // Only the guest kernel's privileged instructions are emulated; a user program's fault is its own.
        return Err(gp(0));
    }
    match d.insn {
        Insn::Cli => v.vif = false,
        Insn::Sti => {
            v.vif = true;
            // STI's interrupt shadow: `sti; hlt` must not take the interrupt between the two, or the HLT
            // would sleep past it. Emulate the pair at once.
            if bytes.get(usize::from(d.len)) == Some(&0xf4) {
                r.rip = next + 1;
                return Ok(Some(Outcome::Block));
            }
        }
        Insn::Hlt => {
            if !v.vif {
                return Err(Outcome::Crash(
                    "hlt with interrupts disabled (the machine would stop for good)",
                ));
            }
            r.rip = next;
            return Ok(Some(Outcome::Block));
        }
        Insn::Wbinvd => {}
        Insn::Clts => v.cr0 &= !cr0::TS,
        Insn::Swapgs => core::mem::swap(&mut v.gs_base, &mut v.kernel_gs_base),
        Insn::Rdmsr => {
            let m = r.gpr[reg::RCX] as u32;
            let val = v.read_msr(m, env.host_tsc()).ok_or(gp(0))?;
            r.gpr[reg::RAX] = val & 0xffff_ffff;
            r.gpr[reg::RDX] = val >> 32;
        }
        Insn::Wrmsr => {
            let m = r.gpr[reg::RCX] as u32;
            let val = (r.gpr[reg::RDX] << 32) | (r.gpr[reg::RAX] & 0xffff_ffff);
            let old_nxe = v.nxe();
            v.write_msr(m, val, env.host_tsc()).map_err(|_| gp(0))?;
            if m == msr::EFER && v.nxe() != old_nxe {
                env.flush_all(false);
            }
        }
        Insn::Rdtsc | Insn::Rdtscp => {
            let t = env.host_tsc().wrapping_add(v.tsc_offset);
            r.gpr[reg::RAX] = t & 0xffff_ffff;
            r.gpr[reg::RDX] = t >> 32;
            if d.insn == Insn::Rdtscp {
                r.gpr[reg::RCX] = v.tsc_aux;
            }
        }
        Insn::MovFromCr { cr, reg: g } => {
            r.gpr[usize::from(g)] = match cr {
                0 => v.cr0,
                2 => v.cr2,
                3 => v.cr3,
                4 => v.cr4,
                8 => v.cr8,
                _ => return Err(UD),
            };
        }
        Insn::MovToCr { cr, reg: g } => mov_to_cr(env, v, cr, r.gpr[usize::from(g)])?,
        Insn::Lmsw(rm) => {
            let w = u64::from(read_rm16(env, v, r, &rm, next)?);
            // LMSW sets PE/MP/EM/TS and never clears PE.
            let val = (v.cr0 & !0xe) | (w & 0xf);
            mov_to_cr(env, v, 0, val | (v.cr0 & cr0::PE))?;
        }
        Insn::MovFromDr { dr, reg: g } => {
            let i = match dr {
                0..=3 | 6 | 7 => dr,
                4 | 5 => dr + 2,
                _ => return Err(UD),
            };
            r.gpr[usize::from(g)] = v.dr[usize::from(i)];
        }
        Insn::MovToDr { dr, reg: g } => {
            let i = match dr {
                0..=3 | 6 | 7 => dr,
                4 | 5 => dr + 2,
                _ => return Err(UD),
            };
            // Stored only: the real debug registers are never loaded from a guest.
            v.dr[usize::from(i)] = r.gpr[usize::from(g)];
        }
        Insn::Lgdt(m) | Insn::Lidt(m) => {
            let mut b = [0u8; 10];
            read_mem(env, v, linear(&m, v, r, next), &mut b)?;
            let limit = u16::from_le_bytes([b[0], b[1]]);
            let mut base8 = [0u8; 8];
            base8.copy_from_slice(&b[2..10]);
            let base = u64::from_le_bytes(base8);
            if !canonical(base) {
                return Err(gp(0));
            }
            let t = super::vcpu::TableReg { base, limit };
            if matches!(d.insn, Insn::Lgdt(_)) {
                v.gdtr = t;
            } else {
                v.idtr = t;
            }
        }
        Insn::Sgdt(m) | Insn::Sidt(m) => {
            let t = if matches!(d.insn, Insn::Sgdt(_)) {
                v.gdtr
            } else {
                v.idtr
            };
            let mut b = [0u8; 10];
            b[..2].copy_from_slice(&t.limit.to_le_bytes());
            b[2..].copy_from_slice(&t.base.to_le_bytes());
            write_mem(env, v, linear(&m, v, r, next), &b)?;
        }
        Insn::Sldt(rm, size) => store_rm(env, v, r, &rm, size, u64::from(v.ldtr.sel), next)?,
        Insn::Str(rm, size) => store_rm(env, v, r, &rm, size, u64::from(v.tr.sel), next)?,
        Insn::Smsw(rm, size) => store_rm(
            env,
            v,
            r,
            &rm,
            size,
            v.cr0 & if size == 2 { 0xffff } else { !0 },
            next,
        )?,
        Insn::Lldt(rm) => {
            let sel = read_rm16(env, v, r, &rm, next)?;
            if sel & 0xfffc == 0 {
                v.ldtr = super::vcpu::SegReg::default();
            } else {
                let dsc = reflect::read_desc(env, v, sel)?;
                if dsc.code_or_data() || dsc.typ() != 2 {
                    return Err(gp(u32::from(sel & 0xfffc)));
                }
                // The LDT is recorded but never used: descriptors with TI = 1 give #GP (reflect.rs).
                v.ldtr = super::vcpu::SegReg {
                    sel,
                    base: dsc.base(),
                    limit: dsc.limit(),
                };
            }
        }
        Insn::Ltr(rm) => ltr(env, v, r, &rm, next)?,
        Insn::Invlpg(m) => {
            let va = linear(&m, v, r, next);
            if canonical(va) {
                env.invlpg(va);
            }
        }
        Insn::In { size, port } => {
            let p = match port {
                Port::Imm(p) => u16::from(p),
                Port::Dx => r.gpr[reg::RDX] as u16,
            };
            let val = u64::from(env.io_in(p, size));
            let a = &mut r.gpr[reg::RAX];
            *a = match size {
                1 => (*a & !0xff) | (val & 0xff),
                2 => (*a & !0xffff) | (val & 0xffff),
                _ => val & 0xffff_ffff,
            };
        }
        Insn::Out { size, port } => {
            let p = match port {
                Port::Imm(p) => u16::from(p),
                Port::Dx => r.gpr[reg::RDX] as u16,
            };
            if let Some(o) = out(env, p, size, r.gpr[reg::RAX] as u32) {
                r.rip = next;
                return Ok(Some(o));
            }
        }
        Insn::Ins { size, rep } | Insn::Outs { size, rep, .. } => {
            return string_io(env, v, r, d, size, rep, next);
        }
        Insn::MovToSreg { sreg, src } => {
            let sel = read_rm16(env, v, r, &src, next)?;
            load_sreg(env, v, sreg, sel)?;
        }
        Insn::PopSreg(sreg) => {
            let mut b = [0u8; 8];
            let sp = r.gpr[reg::RSP];
            read_mem(env, v, sp, &mut b)?;
            load_sreg(env, v, sreg, u64::from_le_bytes(b) as u16)?;
            r.gpr[reg::RSP] = sp.wrapping_add(8);
        }
        Insn::Iret { size: 8 } => return Ok(Some(reflect::iretq(env, v, r))),
        Insn::Iret { .. } => {
            return Err(Outcome::Crash(
                "iret with a 16/32-bit operand size (unsupported)",
            ));
        }
        Insn::Retf { size: 8, imm } => return Ok(Some(reflect::retf(env, v, r, imm))),
        Insn::Retf { .. } => {
            return Err(Outcome::Crash(
                "far return with a 16/32-bit operand size (unsupported)",
            ));
        }
        Insn::Sysret { rex_w } => return Ok(Some(reflect::sysret(v, r, rex_w))),
        Insn::Syscall => {
            r.rip = next;
            return Ok(Some(reflect::syscall(v, r)));
        }
        Insn::Int(n) => {
            r.rip = next;
            return Ok(Some(Outcome::SoftInt(n)));
        }
        Insn::Ud2 => return Err(UD),
        Insn::Int3 | Insn::Int1 | Insn::Rdpmc | Insn::Cpuid | Insn::Unknown => {
            return Err(Outcome::Crash("instruction the emulator does not handle"));
        }
    }
    Ok(None)
}

fn out(env: &mut dyn Env, port: u16, size: u8, value: u32) -> Option<Outcome> {
    match env.io_out(port, size, value) {
        IoEffect::None => None,
        IoEffect::Output(b) => {
            env.console(b);
            None
        }
        IoEffect::Shutdown(code) => Some(Outcome::Shutdown(code)),
    }
}

fn string_io(
    env: &mut dyn Env,
    v: &mut VCpu,
    r: &mut Regs,
    d: &Decoded,
    size: u8,
    rep: bool,
    next: u64,
) -> Result<Option<Outcome>, Outcome> {
    let port = r.gpr[reg::RDX] as u16;
    let step = if r.rflags & super::vcpu::rflags::DF != 0 {
        (size as u64).wrapping_neg()
    } else {
        u64::from(size)
    };
    let mut n = if rep {
        r.gpr[reg::RCX].min(REP_CHUNK)
    } else {
        1
    };
    while n > 0 {
        if let super::decode::Insn::Ins { .. } = d.insn {
            let val = env.io_in(port, size).to_le_bytes();
            write_mem(env, v, r.gpr[reg::RDI], &val[..usize::from(size)])?;
            r.gpr[reg::RDI] = r.gpr[reg::RDI].wrapping_add(step);
        } else {
            let mut b = [0u8; 4];
            let src = match d.insn {
                Insn::Outs {
                    seg: Some(Sreg::Fs),
                    ..
                } => r.gpr[reg::RSI].wrapping_add(v.fs_base),
                Insn::Outs {
                    seg: Some(Sreg::Gs),
                    ..
                } => r.gpr[reg::RSI].wrapping_add(v.gs_base),
                _ => r.gpr[reg::RSI],
            };
            read_mem(env, v, src, &mut b[..usize::from(size)])?;
            r.gpr[reg::RSI] = r.gpr[reg::RSI].wrapping_add(step);
            if let Some(o) = out(env, port, size, u32::from_le_bytes(b)) {
                if rep {
                    r.gpr[reg::RCX] -= 1;
                }
                r.rip = if rep && r.gpr[reg::RCX] != 0 {
                    r.rip
                } else {
                    next
                };
                return Ok(Some(o));
            }
        }
        if rep {
            r.gpr[reg::RCX] -= 1;
        }
        n -= 1;
    }
    if rep && r.gpr[reg::RCX] != 0 {
        // Not finished: run the instruction again (an interrupted REP resumes the same way).
        return Ok(Some(Outcome::Continue));
    }
    Ok(None)
}

fn load_sreg(env: &mut dyn Env, v: &mut VCpu, sreg: Sreg, sel: u16) -> Result<(), Outcome> {
    if sreg == Sreg::Ss {
        return reflect::load_ss(env, v, sel);
    }
    let dsc = reflect::check_data(env, v, sel)?;
    match sreg {
        Sreg::Ds => v.ds = sel,
        Sreg::Es => v.es = sel,
        Sreg::Fs => {
            v.fs = sel;
            if sel & 0xfffc != 0 {
                v.fs_base = dsc.base();
            }
        }
        Sreg::Gs => {
            v.gs = sel;
            if sel & 0xfffc != 0 {
                v.gs_base = dsc.base();
            }
        }
        Sreg::Cs | Sreg::Ss => return Err(UD),
    }
    Ok(())
}

fn ltr(env: &mut dyn Env, v: &mut VCpu, r: &Regs, rm: &Rm, next: u64) -> Result<(), Outcome> {
    let sel = read_rm16(env, v, r, rm, next)?;
    let err = u32::from(sel & 0xfffc);
    if sel & 0xfffc == 0 || sel & 4 != 0 {
        return Err(gp(err));
    }
    let off = u64::from(sel & 0xfff8);
    if off + 15 > u64::from(v.gdtr.limit) {
        return Err(gp(err));
    }
    let lo = reflect::read_desc(env, v, sel)?;
    if lo.code_or_data() || lo.typ() != 9 {
        return Err(gp(err));
    }
    if !lo.present() {
        return Err(Outcome::Exception {
            vector: super::env::vector::NP,
            error: Some(err),
        });
    }
    let mut hi = [0u8; 8];
    read_mem(env, v, v.gdtr.base.wrapping_add(off + 8), &mut hi)?;
    let base = lo.base() | (u64::from(u32::from_le_bytes([hi[0], hi[1], hi[2], hi[3]])) << 32);
    if !canonical(base) {
        return Err(gp(err));
    }
    // Mark it busy, as the CPU does.
    let busy = lo.raw | (1 << 41);
    write_mem(env, v, v.gdtr.base.wrapping_add(off), &busy.to_le_bytes())?;
    v.tr = super::vcpu::SegReg {
        sel,
        base,
        limit: lo.limit(),
    };
    Ok(())
}

fn mov_to_cr(env: &mut dyn Env, v: &mut VCpu, cr: u8, val: u64) -> Result<(), Outcome> {
    match cr {
        0 => {
            if val >> 32 != 0 || (val & cr0::NW != 0 && val & cr0::CD == 0) {
                return Err(gp(0));
            }
            if val & cr0::PG == 0 || val & cr0::PE == 0 {
                return Err(Outcome::Crash(
                    "CR0.PG or PE cleared: ring compression cannot run paging-off code",
                ));
            }
            if val & cr0::WP == 0 {
                return Err(Outcome::Crash(
                    "CR0.WP cleared (unsupported by the shadow tables)",
                ));
            }
            v.cr0 = val | cr0::ET;
        }
        2 => v.cr2 = val,
        3 => {
            let cr3 = val & !(1 << 63);
            env.load_cr3(cr3, v.pge(), v.nxe())
                .map_err(Outcome::Crash)?;
            v.cr3 = cr3;
        }
        4 => {
            if val & !CR4_ALLOWED != 0 {
                return Err(gp(0));
            }
            if val & cr4::PAE == 0 {
                return Err(gp(0));
            }
            if (val ^ v.cr4) & cr4::PGE != 0 {
                env.flush_all(false);
            }
            v.cr4 = val;
        }
        8 => {
            if val >> 4 != 0 {
                return Err(gp(0));
            }
            v.cr8 = val;
        }
        _ => return Err(UD),
    }
    Ok(())
}
