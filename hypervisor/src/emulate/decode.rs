//! A small table-driven x86-64 decoder for exactly the privileged and sensitive instructions a kernel
//! executes (the ones that trap in ring 1), with their prefixes, ModRM/SIB memory operands and length.
//!
//! Anything else decodes as [`Insn::Unknown`]: the emulator never guesses. Only 64-bit code is decoded
//! (an emulate domain always runs in long mode: ring compression cannot run paging-off code).
#![forbid(unsafe_code)]

/// The architectural maximum length of one instruction.
pub const MAX_LEN: usize = 15;

/// A segment register, in the encoding order of ModRM.reg for `mov Sreg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sreg {
    /// ES
    Es = 0,
    /// CS
    Cs = 1,
    /// SS
    Ss = 2,
    /// DS
    Ds = 3,
    /// FS
    Fs = 4,
    /// GS
    Gs = 5,
}

impl Sreg {
    fn from_bits(b: u8) -> Option<Sreg> {
        Some(match b {
            0 => Sreg::Es,
            1 => Sreg::Cs,
            2 => Sreg::Ss,
            3 => Sreg::Ds,
            4 => Sreg::Fs,
            5 => Sreg::Gs,
            _ => return None,
        })
    }
}

/// A memory operand: `seg:[base + index*scale + disp]` or `[rip + disp]` (relative to the next instruction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mem {
    /// Base register (0 = RAX .. 15 = R15), if any.
    pub base: Option<u8>,
    /// Index register and scale (1, 2, 4, 8), if any.
    pub index: Option<(u8, u8)>,
    /// Displacement (sign-extended).
    pub disp: i64,
    /// RIP-relative (`base` and `index` are then `None`).
    pub rip_relative: bool,
    /// Segment override (only FS and GS have a base in long mode).
    pub seg: Option<Sreg>,
    /// 0x67 prefix: the address is computed in 32 bits.
    pub addr32: bool,
}

impl Mem {
    /// The linear address, given the general registers, the address after the instruction and the FS/GS
    /// bases.
    pub fn linear(&self, gpr: &[u64; 16], next_rip: u64, fs_base: u64, gs_base: u64) -> u64 {
        let mut a = self.disp as u64;
        if self.rip_relative {
            a = a.wrapping_add(next_rip);
        }
        if let Some(b) = self.base {
            a = a.wrapping_add(gpr[usize::from(b)]);
        }
        if let Some((i, s)) = self.index {
            a = a.wrapping_add(gpr[usize::from(i)].wrapping_mul(u64::from(s)));
        }
        if self.addr32 {
            a &= 0xffff_ffff;
        }
        match self.seg {
            Some(Sreg::Fs) => a.wrapping_add(fs_base),
            Some(Sreg::Gs) => a.wrapping_add(gs_base),
            _ => a,
        }
    }
}

/// A register or memory operand (ModRM r/m).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rm {
    /// A general register (0 = RAX .. 15 = R15).
    Reg(u8),
    /// Memory.
    Mem(Mem),
}

/// The port operand of IN/OUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// An immediate port number.
    Imm(u8),
    /// The port in DX.
    Dx,
}

/// A decoded instruction. Sizes are operand sizes in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// CLI
    Cli,
    /// STI
    Sti,
    /// HLT
    Hlt,
    /// WBINVD / INVD
    Wbinvd,
    /// CLTS
    Clts,
    /// SWAPGS
    Swapgs,
    /// RDMSR
    Rdmsr,
    /// WRMSR
    Wrmsr,
    /// RDTSC
    Rdtsc,
    /// RDTSCP
    Rdtscp,
    /// RDPMC
    Rdpmc,
    /// CPUID
    Cpuid,
    /// SYSCALL
    Syscall,
    /// SYSRET (`rex_w`: SYSRETQ, to 64-bit code)
    Sysret {
        /// REX.W present.
        rex_w: bool,
    },
    /// IRET of `size` 2, 4 or 8 (IRETQ)
    Iret {
        /// Operand size.
        size: u8,
    },
    /// Far return (RETF, `size` 8 with REX.W), popping `imm` more bytes
    Retf {
        /// Operand size.
        size: u8,
        /// Extra bytes popped.
        imm: u16,
    },
    /// INT n
    Int(u8),
    /// INT3
    Int3,
    /// INT1 (ICEBP)
    Int1,
    /// MOV to CRn from a general register
    MovToCr {
        /// Control register number (0..15).
        cr: u8,
        /// Source register.
        reg: u8,
    },
    /// MOV from CRn to a general register
    MovFromCr {
        /// Control register number.
        cr: u8,
        /// Destination register.
        reg: u8,
    },
    /// MOV to DRn
    MovToDr {
        /// Debug register number.
        dr: u8,
        /// Source register.
        reg: u8,
    },
    /// MOV from DRn
    MovFromDr {
        /// Debug register number.
        dr: u8,
        /// Destination register.
        reg: u8,
    },
    /// LGDT m
    Lgdt(Mem),
    /// LIDT m
    Lidt(Mem),
    /// SGDT m
    Sgdt(Mem),
    /// SIDT m
    Sidt(Mem),
    /// LLDT r/m16
    Lldt(Rm),
    /// LTR r/m16
    Ltr(Rm),
    /// SLDT r/m (`size` of a register destination)
    Sldt(Rm, u8),
    /// STR r/m
    Str(Rm, u8),
    /// SMSW r/m
    Smsw(Rm, u8),
    /// LMSW r/m16
    Lmsw(Rm),
    /// INVLPG m
    Invlpg(Mem),
    /// IN from a port into AL/AX/EAX
    In {
        /// 1, 2 or 4.
        size: u8,
        /// Port.
        port: Port,
    },
    /// OUT to a port from AL/AX/EAX
    Out {
        /// 1, 2 or 4.
        size: u8,
        /// Port.
        port: Port,
    },
    /// INS (port DX to [RDI])
    Ins {
        /// 1, 2 or 4.
        size: u8,
        /// REP prefix.
        rep: bool,
    },
    /// OUTS ([RSI] to port DX)
    Outs {
        /// 1, 2 or 4.
        size: u8,
        /// REP prefix.
        rep: bool,
        /// Segment override of the source.
        seg: Option<Sreg>,
    },
    /// MOV Sreg, r/m16
    MovToSreg {
        /// Destination.
        sreg: Sreg,
        /// Source.
        src: Rm,
    },
    /// POP FS / POP GS
    PopSreg(Sreg),
    /// UD2
    Ud2,
    /// Anything this decoder does not know.
    Unknown,
}

/// An instruction and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The instruction.
    pub insn: Insn,
    /// Its length in bytes (for `Unknown`: the bytes examined, at least 1).
    pub len: u8,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        if self.at >= MAX_LEN {
            return None;
        }
        self.at += 1;
        Some(v)
    }
    fn imm(&mut self, n: usize) -> Option<i64> {
        let mut v: u64 = 0;
        for i in 0..n {
            v |= u64::from(self.next()?) << (8 * i);
        }
        // Sign-extend from n bytes.
        let shift = 64 - 8 * n as u32;
        Some(((v << shift) as i64) >> shift)
    }
}

#[derive(Default, Clone, Copy)]
struct Prefixes {
    opsize: bool,
    addr32: bool,
    rep: bool,
    seg: Option<Sreg>,
    rex: u8,
}

impl Prefixes {
    fn w(&self) -> bool {
        self.rex & 8 != 0
    }
    fn r(&self) -> u8 {
        (self.rex >> 2 & 1) << 3
    }
    fn x(&self) -> u8 {
        (self.rex >> 1 & 1) << 3
    }
    fn b(&self) -> u8 {
        (self.rex & 1) << 3
    }
    /// The operand size of an instruction whose default is 32 bits.
    fn osize(&self) -> u8 {
        if self.w() {
            8
        } else if self.opsize {
            2
        } else {
            4
        }
    }
}

struct ModRm {
    reg: u8,
    rm: Rm,
}

fn modrm(c: &mut Cursor<'_>, p: &Prefixes) -> Option<ModRm> {
    let m = c.next()?;
    let md = m >> 6;
    let reg = (m >> 3) & 7;
    let rm = m & 7;
    if md == 3 {
        return Some(ModRm {
            reg,
            rm: Rm::Reg(rm | p.b()),
        });
    }
    let mut mem = Mem {
        base: None,
        index: None,
        disp: 0,
        rip_relative: false,
        seg: p.seg,
        addr32: p.addr32,
    };
    if rm == 4 {
        let sib = c.next()?;
        let scale = 1u8 << (sib >> 6);
        let idx = ((sib >> 3) & 7) | p.x();
        let base = sib & 7;
        if idx != 4 {
            mem.index = Some((idx, scale));
        }
        if base == 5 && md == 0 {
            mem.disp = c.imm(4)?;
        } else {
            mem.base = Some(base | p.b());
        }
    } else if rm == 5 && md == 0 {
        mem.rip_relative = true;
        mem.disp = c.imm(4)?;
    } else {
        mem.base = Some(rm | p.b());
    }
    match md {
        1 => mem.disp = mem.disp.wrapping_add(c.imm(1)?),
        2 => mem.disp = mem.disp.wrapping_add(c.imm(4)?),
        _ => {}
    }
    Some(ModRm {
        reg,
        rm: Rm::Mem(mem),
    })
}

fn mem_only(rm: Rm) -> Option<Mem> {
    match rm {
        Rm::Mem(m) => Some(m),
        Rm::Reg(_) => None,
    }
}

/// Decode the instruction at the start of `bytes` (64-bit mode).
pub fn decode(bytes: &[u8]) -> Decoded {
    let mut c = Cursor { b: bytes, at: 0 };
    match decode_inner(&mut c) {
        Some(insn) => Decoded {
            insn,
            len: c.at as u8,
        },
        None => Decoded {
            insn: Insn::Unknown,
            len: c.at.max(1) as u8,
        },
    }
}

fn decode_inner(c: &mut Cursor<'_>) -> Option<Insn> {
    let mut p = Prefixes::default();
    let mut op = loop {
        let b = c.next()?;
        match b {
            0x66 => p.opsize = true,
            0x67 => p.addr32 = true,
            0xf3 => p.rep = true,
            0xf2 | 0xf0 => {}
            0x26 | 0x2e | 0x36 | 0x3e => p.seg = None,
            0x64 => p.seg = Some(Sreg::Fs),
            0x65 => p.seg = Some(Sreg::Gs),
            _ => break b,
        }
        // A REX prefix followed by a legacy prefix is ignored; only the last REX before the opcode counts.
        p.rex = 0;
    };
    if (0x40..=0x4f).contains(&op) {
        p.rex = op;
        op = c.next()?;
        if (0x40..=0x4f).contains(&op) {
            return None;
        }
    }
    let size8 = |o: u8| {
        if o & 1 == 0 {
            1
        } else if p.opsize {
            2
        } else {
            4
        }
    };
    Some(match op {
        0xfa => Insn::Cli,
        0xfb => Insn::Sti,
        0xf4 => Insn::Hlt,
        0xcc => Insn::Int3,
        0xf1 => Insn::Int1,
        0xcd => Insn::Int(c.next()?),
        0xcf => Insn::Iret { size: p.osize() },
        0xcb => Insn::Retf {
            size: if p.w() { 8 } else { p.osize() },
            imm: 0,
        },
        0xca => {
            let imm = c.imm(2)? as u16;
            Insn::Retf {
                size: if p.w() { 8 } else { p.osize() },
                imm,
            }
        }
        0xe4 | 0xe5 => Insn::In {
            size: size8(op),
            port: Port::Imm(c.next()?),
        },
        0xe6 | 0xe7 => Insn::Out {
            size: size8(op),
            port: Port::Imm(c.next()?),
        },
        0xec | 0xed => Insn::In {
            size: size8(op),
            port: Port::Dx,
        },
        0xee | 0xef => Insn::Out {
            size: size8(op),
            port: Port::Dx,
        },
        0x6c | 0x6d => Insn::Ins {
            size: size8(op),
            rep: p.rep,
        },
        0x6e | 0x6f => Insn::Outs {
            size: size8(op),
            rep: p.rep,
            seg: p.seg,
        },
        0x8e => {
            let m = modrm(c, &p)?;
            let sreg = Sreg::from_bits(m.reg)?;
            if sreg == Sreg::Cs {
                return None;
            }
            Insn::MovToSreg { sreg, src: m.rm }
        }
        0x0f => return decode_0f(c, &p),
        _ => return None,
    })
}

fn decode_0f(c: &mut Cursor<'_>, p: &Prefixes) -> Option<Insn> {
    let op = c.next()?;
    let rsize = p.osize();
    Some(match op {
        0x00 => {
            let m = modrm(c, p)?;
            match m.reg {
                0 => Insn::Sldt(m.rm, rsize),
                1 => Insn::Str(m.rm, rsize),
                2 => Insn::Lldt(m.rm),
                3 => Insn::Ltr(m.rm),
                _ => return None,
            }
        }
        0x01 => {
            // Register forms with mod = 3 are separate instructions.
            let peek = *c.b.get(c.at)?;
            if peek >> 6 == 3 {
                c.next()?;
                return Some(match peek {
                    0xf8 => Insn::Swapgs,
                    0xf9 => Insn::Rdtscp,
                    _ if (peek >> 3) & 7 == 4 => Insn::Smsw(Rm::Reg((peek & 7) | p.b()), rsize),
                    _ if (peek >> 3) & 7 == 6 => Insn::Lmsw(Rm::Reg((peek & 7) | p.b())),
                    _ => return None,
                });
            }
            let m = modrm(c, p)?;
            match m.reg {
                0 => Insn::Sgdt(mem_only(m.rm)?),
                1 => Insn::Sidt(mem_only(m.rm)?),
                2 => Insn::Lgdt(mem_only(m.rm)?),
                3 => Insn::Lidt(mem_only(m.rm)?),
                4 => Insn::Smsw(m.rm, 2),
                6 => Insn::Lmsw(m.rm),
                7 => Insn::Invlpg(mem_only(m.rm)?),
                _ => return None,
            }
        }
        0x05 => Insn::Syscall,
        0x06 => Insn::Clts,
        0x07 => Insn::Sysret { rex_w: p.w() },
        0x08 | 0x09 => Insn::Wbinvd,
        0x0b => Insn::Ud2,
        0x20..=0x23 => {
            // MOV CR/DR: ModRM.mod is ignored, the r/m field is always a register.
            let m = c.next()?;
            let n = ((m >> 3) & 7) | p.r();
            let reg = (m & 7) | p.b();
            match op {
                0x20 => Insn::MovFromCr { cr: n, reg },
                0x22 => Insn::MovToCr { cr: n, reg },
                0x21 => Insn::MovFromDr { dr: n, reg },
                _ => Insn::MovToDr { dr: n, reg },
            }
        }
        0x30 => Insn::Wrmsr,
        0x31 => Insn::Rdtsc,
        0x32 => Insn::Rdmsr,
        0x33 => Insn::Rdpmc,
        0xa1 => Insn::PopSreg(Sreg::Fs),
        0xa2 => Insn::Cpuid,
        0xa9 => Insn::PopSreg(Sreg::Gs),
        _ => return None,
    })
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
