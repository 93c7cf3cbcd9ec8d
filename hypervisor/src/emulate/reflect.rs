//! Control transfers the emulator performs on the guest's behalf, with the guest's own descriptor tables:
//! exception and interrupt delivery through the virtual IDT (the frame a real CPU pushes, with the virtual
//! CS/SS), SYSCALL/SYSRET with the virtual STAR/LSTAR/FMASK, IRETQ and far returns, and segment loads.
//!
//! The guest kernel (virtual CPL 0) runs in real ring 1, its user mode (CPL 3) in real ring 3; a transfer
//! to a guest ring 1 or 2 is not supported (crash). A delivery that faults (a missing gate, an unusable
//! stack) is the guest's triple fault: the domain is crashed.
#![forbid(unsafe_code)]

use super::env::{Env, MemFault, Outcome, Regs, gp, reg, vector};
use super::vcpu::{VCpu, efer, rflags};

/// A code or data descriptor, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// The raw 8 bytes.
    pub raw: u64,
}

impl Desc {
    /// Type field (4 bits).
    pub fn typ(self) -> u8 {
        ((self.raw >> 40) & 0xf) as u8
    }
    /// Code or data (S = 1).
    pub fn code_or_data(self) -> bool {
        self.raw >> 44 & 1 != 0
    }
    /// A code segment.
    pub fn code(self) -> bool {
        self.code_or_data() && self.typ() & 8 != 0
    }
    /// DPL.
    pub fn dpl(self) -> u8 {
        ((self.raw >> 45) & 3) as u8
    }
    /// Present.
    pub fn present(self) -> bool {
        self.raw >> 47 & 1 != 0
    }
    /// 64-bit code (L).
    pub fn long(self) -> bool {
        self.raw >> 53 & 1 != 0
    }
    /// Base (32 bits; a system descriptor's upper half is separate).
    pub fn base(self) -> u64 {
        ((self.raw >> 16) & 0xff_ffff) | ((self.raw >> 56) << 24)
    }
    /// Limit (20 bits).
    pub fn limit(self) -> u32 {
        ((self.raw & 0xffff) | ((self.raw >> 32) & 0xf_0000)) as u32
    }
}

fn canonical(a: u64) -> bool {
    ((a as i64) << 16 >> 16) as u64 == a
}

/// Turn a failed memory access into the outcome a real CPU gives (a #PF with CR2) or a crash.
pub fn mem_fault(v: &mut VCpu, f: MemFault) -> Outcome {
    match f {
        MemFault::Page(va, code) => {
            v.cr2 = va;
            Outcome::Exception {
                vector: vector::PF,
                error: Some(code),
            }
        }
        MemFault::Crash(why) => Outcome::Crash(why),
    }
}

fn read_u64(env: &mut dyn Env, v: &mut VCpu, va: u64) -> Result<u64, Outcome> {
    let mut b = [0u8; 8];
    // Descriptor-table, TSS and (at CPL 0) stack reads: the CPU's supervisor accesses.
    env.read(v.cr3, va, &mut b, false)
        .map_err(|f| mem_fault(v, f))?;
    Ok(u64::from_le_bytes(b))
}

/// The descriptor `sel` names in the virtual GDT (`Err`: the outcome a real CPU gives).
pub fn read_desc(env: &mut dyn Env, v: &mut VCpu, sel: u16) -> Result<Desc, Outcome> {
    let err = u32::from(sel & 0xfffc);
    if sel & 4 != 0 {
        // No LDT descriptors are emulated: a real CPU with an empty LDT gives #GP(sel) too.
        return Err(gp(err));
    }
    let off = u64::from(sel & 0xfff8);
    if off + 7 > u64::from(v.gdtr.limit) {
        return Err(gp(err));
    }
    let raw = read_u64(env, v, v.gdtr.base.wrapping_add(off))?;
    Ok(Desc { raw })
}

/// Check `sel` as the CS of a transfer to `cpl` (a 64-bit code segment of DPL = RPL = `cpl`).
fn check_code(env: &mut dyn Env, v: &mut VCpu, sel: u16, cpl: u8) -> Result<(), Outcome> {
    if sel & 0xfffc == 0 {
        return Err(gp(0));
    }
    let d = read_desc(env, v, sel)?;
    let err = u32::from(sel & 0xfffc);
    if !d.code() || !d.long() || d.dpl() != cpl || (d.typ() & 4 == 0 && (sel & 3) as u8 != cpl) {
        return Err(gp(err));
    }
    if !d.present() {
        return Err(Outcome::Exception {
            vector: vector::NP,
            error: Some(err),
        });
    }
    Ok(())
}

/// Check `sel` as the SS of a transfer to `cpl` (null allowed at CPL 0 in 64-bit mode).
fn check_stack(env: &mut dyn Env, v: &mut VCpu, sel: u16, cpl: u8) -> Result<(), Outcome> {
    if sel & 0xfffc == 0 {
        return if cpl != 3 && (sel & 3) as u8 == cpl {
            Ok(())
        } else {
            Err(gp(0))
        };
    }
    let d = read_desc(env, v, sel)?;
    let err = u32::from(sel & 0xfffc);
    if d.code() || !d.code_or_data() || d.typ() & 2 == 0 || d.dpl() != cpl || (sel & 3) as u8 != cpl
    {
        return Err(gp(err));
    }
    if !d.present() {
        return Err(Outcome::Exception {
            vector: vector::SS,
            error: Some(err),
        });
    }
    Ok(())
}

/// A data-segment load (DS, ES, FS, GS; SS goes through [`load_ss`]).
pub fn check_data(env: &mut dyn Env, v: &mut VCpu, sel: u16) -> Result<Desc, Outcome> {
    if sel & 0xfffc == 0 {
        return Ok(Desc { raw: 0 });
    }
    let d = read_desc(env, v, sel)?;
    let err = u32::from(sel & 0xfffc);
    let readable = !d.code() || d.typ() & 2 != 0;
    let conforming = d.code() && d.typ() & 4 != 0;
    if !d.code_or_data() || !readable || (!conforming && d.dpl() < v.cpl.max((sel & 3) as u8)) {
        return Err(gp(err));
    }
    if !d.present() {
        return Err(Outcome::Exception {
            vector: vector::NP,
            error: Some(err),
        });
    }
    Ok(d)
}

/// MOV/POP SS.
pub fn load_ss(env: &mut dyn Env, v: &mut VCpu, sel: u16) -> Result<(), Outcome> {
    let cpl = v.cpl;
    check_stack(env, v, sel, cpl)?;
    v.ss = sel;
    Ok(())
}

/// IRETQ (64-bit operand size) at virtual CPL 0.
pub fn iretq(env: &mut dyn Env, v: &mut VCpu, r: &mut Regs) -> Outcome {
    match iretq_inner(env, v, r) {
        Ok(()) => Outcome::Continue,
        Err(o) => o,
    }
}

fn iretq_inner(env: &mut dyn Env, v: &mut VCpu, r: &mut Regs) -> Result<(), Outcome> {
    let sp = r.gpr[reg::RSP];
    let mut w = [0u64; 5];
    for (i, x) in w.iter_mut().enumerate() {
        *x = read_u64(env, v, sp.wrapping_add(8 * i as u64))?;
    }
    let [rip, cs, fl, rsp, ss] = w;
    let (cs, ss) = (cs as u16, ss as u16);
    let cpl = (cs & 3) as u8;
    if cpl == 1 || cpl == 2 {
        return Err(Outcome::Crash(
            "iretq to guest ring 1 or 2 (the emulator runs guest rings 0 and 3 only)",
        ));
    }
    check_code(env, v, cs, cpl)?;
    check_stack(env, v, ss, cpl)?;
    if !canonical(rip) {
        return Err(gp(0));
    }
    r.rip = rip;
    r.gpr[reg::RSP] = rsp;
    r.rflags = v.load_rflags(fl & !(rflags::VM | rflags::NT | rflags::RF));
    v.cs = cs;
    v.ss = ss;
    v.cpl = cpl;
    Ok(())
}

/// RETF with operand size 8 (REX.W) popping `imm` more bytes.
pub fn retf(env: &mut dyn Env, v: &mut VCpu, r: &mut Regs, imm: u16) -> Outcome {
    let sp = r.gpr[reg::RSP];
    let res = (|| -> Result<(), Outcome> {
        let rip = read_u64(env, v, sp)?;
        let cs = read_u64(env, v, sp.wrapping_add(8))? as u16;
        let cpl = (cs & 3) as u8;
        let after = sp.wrapping_add(16 + u64::from(imm));
        if cpl == v.cpl {
            check_code(env, v, cs, cpl)?;
            if !canonical(rip) {
                return Err(gp(0));
            }
            r.rip = rip;
            r.gpr[reg::RSP] = after;
            v.cs = cs;
            return Ok(());
        }
        if cpl != 3 || v.cpl != 0 {
            return Err(gp(u32::from(cs & 0xfffc)));
        }
        let rsp = read_u64(env, v, after)?;
        let ss = read_u64(env, v, after.wrapping_add(8))? as u16;
        check_code(env, v, cs, 3)?;
        check_stack(env, v, ss, 3)?;
        if !canonical(rip) {
            return Err(gp(0));
        }
        r.rip = rip;
        r.gpr[reg::RSP] = rsp;
        v.cs = cs;
        v.ss = ss;
        v.cpl = 3;
        Ok(())
    })();
    res.err().unwrap_or(Outcome::Continue)
}

/// SYSCALL (RIP already past the instruction).
pub fn syscall(v: &mut VCpu, r: &mut Regs) -> Outcome {
    if v.efer & efer::SCE == 0 {
        return super::env::UD;
    }
    let visible = v.visible_rflags(r.rflags) & !rflags::RF;
    r.gpr[reg::RCX] = r.rip;
    r.gpr[reg::R11] = visible;
    r.rflags = v.load_rflags(visible & !v.fmask);
    v.cs = ((v.star >> 32) & 0xfffc) as u16;
    v.ss = (((v.star >> 32) & 0xfffc) + 8) as u16;
    v.cpl = 0;
    r.rip = v.lstar;
    Outcome::Continue
}

/// SYSRET (`rex_w`: to 64-bit code).
pub fn sysret(v: &mut VCpu, r: &mut Regs, rex_w: bool) -> Outcome {
    if v.efer & efer::SCE == 0 {
        return super::env::UD;
    }
    if v.cpl != 0 {
        return gp(0);
    }
    if !rex_w {
        return Outcome::Crash("sysret to compatibility mode (unsupported)");
    }
    let rip = r.gpr[reg::RCX];
    if !canonical(rip) {
        return gp(0);
    }
    let base = (v.star >> 48) & 0xfffc;
    r.rip = rip;
    r.rflags = v.load_rflags(r.gpr[reg::R11] & !(rflags::RF | rflags::VM));
    v.cs = ((base + 16) | 3) as u16;
    v.ss = ((base + 8) | 3) as u16;
    v.cpl = 3;
    Outcome::Continue
}

/// Deliver `vec` through the guest's IDT as a real CPU would: the gate's code segment and offset, the
/// stack from the TSS on a privilege change or an IST, the frame SS, RSP, RFLAGS, CS, RIP [, error].
/// `soft`: an INT n (the gate's DPL must allow the current CPL, else #GP(vec·8+2) is delivered instead).
/// `Outcome::Continue` when the guest now runs the handler; `Crash` on a triple fault.
pub fn deliver(
    env: &mut dyn Env,
    v: &mut VCpu,
    r: &mut Regs,
    vec: u8,
    error: Option<u32>,
    soft: bool,
) -> Outcome {
    match deliver_inner(env, v, r, vec, error, soft) {
        Ok(()) => Outcome::Continue,
        Err(Fail::Gp(code)) if soft => {
            match deliver_inner(env, v, r, vector::GP, Some(code), false) {
                Ok(()) => Outcome::Continue,
                Err(Fail::Gp(_)) => {
                    Outcome::Crash("triple fault: the guest's #GP gate is missing or invalid")
                }
                Err(Fail::Triple(why)) => Outcome::Crash(why),
            }
        }
        Err(Fail::Gp(_)) => {
            Outcome::Crash("triple fault: the gate is missing, invalid or outside the guest's IDT")
        }
        Err(Fail::Triple(why)) => Outcome::Crash(why),
    }
}

/// Why a delivery failed.
enum Fail {
    /// The #GP a software interrupt raises instead (error code).
    Gp(u32),
    /// Undeliverable: the guest's triple fault.
    Triple(&'static str),
}

fn deliver_inner(
    env: &mut dyn Env,
    v: &mut VCpu,
    r: &mut Regs,
    vec: u8,
    error: Option<u32>,
    soft: bool,
) -> Result<(), Fail> {
    let gp_code = u32::from(vec) * 8 + 2;
    let off = u64::from(vec) * 16;
    if off + 15 > u64::from(v.idtr.limit) {
        return Err(Fail::Gp(gp_code));
    }
    let unmapped = |_| Fail::Triple("triple fault: the guest's IDT is not mapped");
    let lo = read_u64(env, v, v.idtr.base.wrapping_add(off)).map_err(unmapped)?;
    let hi = read_u64(env, v, v.idtr.base.wrapping_add(off + 8)).map_err(unmapped)?;
    let typ = (lo >> 40) & 0xf;
    let dpl = ((lo >> 45) & 3) as u8;
    if lo >> 47 & 1 == 0 || !(typ == 0xe || typ == 0xf) {
        return Err(Fail::Gp(gp_code));
    }
    if soft && dpl < v.cpl {
        return Err(Fail::Gp(gp_code));
    }
    let target = (lo & 0xffff) | ((lo >> 48) << 16) | ((hi & 0xffff_ffff) << 32);
    let sel = ((lo >> 16) & 0xffff) as u16;
    let ist = (lo >> 32) & 7;
    let d = read_desc(env, v, sel).map_err(|_| {
        Fail::Triple("triple fault: the gate's code selector is not in the guest's GDT")
    })?;
    if !d.code() || !d.long() || !d.present() || d.dpl() != 0 || !canonical(target) {
        return Err(Fail::Triple(
            "triple fault: the gate's code segment is not 64-bit ring-0 code (or its target is non-canonical)",
        ));
    }
    let old_cpl = v.cpl;
    let mut sp = r.gpr[reg::RSP];
    if old_cpl != 0 || ist != 0 {
        if v.tr.sel == 0 {
            return Err(Fail::Triple(
                "triple fault: a stack switch with no TSS loaded",
            ));
        }
        let field = if ist != 0 { 0x24 + 8 * (ist - 1) } else { 4 };
        sp = read_u64(env, v, v.tr.base.wrapping_add(field))
            .map_err(|_| Fail::Triple("triple fault: the guest's TSS is not mapped"))?;
    }
    sp &= !0xf;
    let fl = v.visible_rflags(r.rflags);
    let mut frame = [0u64; 6];
    let words = if let Some(e) = error {
        frame = [
            u64::from(e),
            r.rip,
            u64::from(v.cs),
            fl,
            r.gpr[reg::RSP],
            u64::from(v.ss),
        ];
        6
    } else {
        frame[..5].copy_from_slice(&[r.rip, u64::from(v.cs), fl, r.gpr[reg::RSP], u64::from(v.ss)]);
        5
    };
    let base = sp.wrapping_sub(8 * words as u64);
    let mut bytes = [0u8; 48];
    for (i, w) in frame[..words].iter().enumerate() {
        bytes[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
    }
    // Delivery runs at CPL 0: supervisor access.
    v.cpl = 0;
    if env.write(v.cr3, base, &bytes[..8 * words], false).is_err() {
        v.cpl = old_cpl;
        return Err(Fail::Triple(
            "triple fault: the handler's stack is not writable",
        ));
    }
    r.gpr[reg::RSP] = base;
    r.rip = target;
    v.cs = sel & 0xfffc;
    if old_cpl != 0 {
        v.ss = 0;
    }
    r.rflags &= !(rflags::TF | rflags::NT | rflags::RF);
    if typ == 0xe {
        v.vif = false;
    }
    Ok(())
}
