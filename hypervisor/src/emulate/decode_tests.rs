//! Host tests of the decoder: a corpus of encodings written from the SDM, and bounds over byte patterns.
use super::*;

fn d(b: &[u8]) -> (Insn, u8) {
    let r = decode(b);
    (r.insn, r.len)
}

fn mem(base: Option<u8>, index: Option<(u8, u8)>, disp: i64) -> Mem {
    Mem {
        base,
        index,
        disp,
        rip_relative: false,
        seg: None,
        addr32: false,
    }
}

#[test]
fn one_byte_privileged() {
    assert_eq!(d(&[0xfa]), (Insn::Cli, 1));
    assert_eq!(d(&[0xfb]), (Insn::Sti, 1));
    assert_eq!(d(&[0xf4]), (Insn::Hlt, 1));
    assert_eq!(d(&[0x48, 0xcf]), (Insn::Iret { size: 8 }, 2));
    assert_eq!(d(&[0xcf]), (Insn::Iret { size: 4 }, 1));
    assert_eq!(d(&[0x48, 0xcb]), (Insn::Retf { size: 8, imm: 0 }, 2));
    assert_eq!(d(&[0xca, 0x10, 0x00]), (Insn::Retf { size: 4, imm: 16 }, 3));
    assert_eq!(d(&[0xcd, 0x80]), (Insn::Int(0x80), 2));
    assert_eq!(d(&[0xcc]), (Insn::Int3, 1));
}

#[test]
fn port_io() {
    assert_eq!(
        d(&[0xec]),
        (
            Insn::In {
                size: 1,
                port: Port::Dx
            },
            1
        )
    );
    assert_eq!(
        d(&[0xed]),
        (
            Insn::In {
                size: 4,
                port: Port::Dx
            },
            1
        )
    );
    assert_eq!(
        d(&[0x66, 0xed]),
        (
            Insn::In {
                size: 2,
                port: Port::Dx
            },
            2
        )
    );
    assert_eq!(
        d(&[0xe6, 0x80]),
        (
            Insn::Out {
                size: 1,
                port: Port::Imm(0x80)
            },
            2
        )
    );
    assert_eq!(
        d(&[0xef]),
        (
            Insn::Out {
                size: 4,
                port: Port::Dx
            },
            1
        )
    );
    assert_eq!(
        d(&[0xe4, 0x21]),
        (
            Insn::In {
                size: 1,
                port: Port::Imm(0x21)
            },
            2
        )
    );
    assert_eq!(
        d(&[0xf3, 0x6e]),
        (
            Insn::Outs {
                size: 1,
                rep: true,
                seg: None
            },
            2
        )
    );
    assert_eq!(
        d(&[0x6d]),
        (
            Insn::Ins {
                size: 4,
                rep: false
            },
            1
        )
    );
}

#[test]
fn two_byte_privileged() {
    assert_eq!(d(&[0x0f, 0x01, 0xf8]), (Insn::Swapgs, 3));
    assert_eq!(d(&[0x0f, 0x30]), (Insn::Wrmsr, 2));
    assert_eq!(d(&[0x0f, 0x32]), (Insn::Rdmsr, 2));
    assert_eq!(d(&[0x48, 0x0f, 0x07]), (Insn::Sysret { rex_w: true }, 3));
    assert_eq!(d(&[0x0f, 0x09]), (Insn::Wbinvd, 2));
    assert_eq!(d(&[0x0f, 0x06]), (Insn::Clts, 2));
    assert_eq!(d(&[0x0f, 0xa2]), (Insn::Cpuid, 2));
    assert_eq!(d(&[0x0f, 0x0b]), (Insn::Ud2, 2));
    assert_eq!(d(&[0x0f, 0x01, 0xf9]), (Insn::Rdtscp, 3));
}

#[test]
fn control_registers() {
    // mov cr3, rax = 0f 22 d8; mov rax, cr3 = 0f 20 d8; mov cr0, r9 = 41 0f 22 c1; mov r10, cr2 = 41 0f 20 d2
    assert_eq!(d(&[0x0f, 0x22, 0xd8]), (Insn::MovToCr { cr: 3, reg: 0 }, 3));
    assert_eq!(
        d(&[0x0f, 0x20, 0xd8]),
        (Insn::MovFromCr { cr: 3, reg: 0 }, 3)
    );
    assert_eq!(
        d(&[0x41, 0x0f, 0x22, 0xc1]),
        (Insn::MovToCr { cr: 0, reg: 9 }, 4)
    );
    assert_eq!(
        d(&[0x41, 0x0f, 0x20, 0xd2]),
        (Insn::MovFromCr { cr: 2, reg: 10 }, 4)
    );
    // mov cr8, rax = 44 0f 22 c0 (REX.R extends the CR number)
    assert_eq!(
        d(&[0x44, 0x0f, 0x22, 0xc0]),
        (Insn::MovToCr { cr: 8, reg: 0 }, 4)
    );
    // mov rcx, cr4 = 0f 20 e1
    assert_eq!(
        d(&[0x0f, 0x20, 0xe1]),
        (Insn::MovFromCr { cr: 4, reg: 1 }, 3)
    );
    // mov dr7, rax = 0f 23 f8
    assert_eq!(d(&[0x0f, 0x23, 0xf8]), (Insn::MovToDr { dr: 7, reg: 0 }, 3));
}

#[test]
fn descriptor_tables_and_memory_operands() {
    // lgdt [rdi] = 0f 01 17
    assert_eq!(
        d(&[0x0f, 0x01, 0x17]),
        (Insn::Lgdt(mem(Some(7), None, 0)), 3)
    );
    // lidt [rax] = 0f 01 18
    assert_eq!(
        d(&[0x0f, 0x01, 0x18]),
        (Insn::Lidt(mem(Some(0), None, 0)), 3)
    );
    // lidt [r12] = 41 0f 01 1c 24 (SIB with base r12)
    assert_eq!(
        d(&[0x41, 0x0f, 0x01, 0x1c, 0x24]),
        (Insn::Lidt(mem(Some(12), None, 0)), 5)
    );
    // lgdt [r13] = 41 0f 01 55 00 (mod 1, disp8 0: r13 cannot be mod 0)
    assert_eq!(
        d(&[0x41, 0x0f, 0x01, 0x55, 0x00]),
        (Insn::Lgdt(mem(Some(13), None, 0)), 5)
    );
    // sgdt [rsp+8] = 0f 01 44 24 08
    assert_eq!(
        d(&[0x0f, 0x01, 0x44, 0x24, 0x08]),
        (Insn::Sgdt(mem(Some(4), None, 8)), 5)
    );
    // sidt [rbx+rcx*8-0x10] = 0f 01 4c cb f0
    assert_eq!(
        d(&[0x0f, 0x01, 0x4c, 0xcb, 0xf0]),
        (Insn::Sidt(mem(Some(3), Some((1, 8)), -16)), 5)
    );
    // invlpg [rdi] = 0f 01 3f ; invlpg [rax+0x12345678] = 0f 01 b8 78 56 34 12
    assert_eq!(
        d(&[0x0f, 0x01, 0x3f]),
        (Insn::Invlpg(mem(Some(7), None, 0)), 3)
    );
    assert_eq!(
        d(&[0x0f, 0x01, 0xb8, 0x78, 0x56, 0x34, 0x12]),
        (Insn::Invlpg(mem(Some(0), None, 0x1234_5678)), 7)
    );
    // lgdt [rip+0x100] = 0f 01 15 00 01 00 00
    let (i, l) = d(&[0x0f, 0x01, 0x15, 0x00, 0x01, 0x00, 0x00]);
    assert_eq!(l, 7);
    let Insn::Lgdt(m) = i else { panic!("{i:?}") };
    assert!(m.rip_relative);
    assert_eq!(m.linear(&[0; 16], 0x1000, 0, 0), 0x1100);
    // [disp32] with SIB no base, no index: 0f 01 14 25 00 10 00 00 = lgdt [0x1000]
    assert_eq!(
        d(&[0x0f, 0x01, 0x14, 0x25, 0x00, 0x10, 0, 0]),
        (Insn::Lgdt(mem(None, None, 0x1000)), 8)
    );
    // ltr ax = 0f 00 d8 ; ltr [rdi] = 0f 00 1f ; lldt ax = 0f 00 d0 ; str eax = 0f 00 c8
    assert_eq!(d(&[0x0f, 0x00, 0xd8]), (Insn::Ltr(Rm::Reg(0)), 3));
    assert_eq!(
        d(&[0x0f, 0x00, 0x1f]),
        (Insn::Ltr(Rm::Mem(mem(Some(7), None, 0))), 3)
    );
    assert_eq!(d(&[0x0f, 0x00, 0xd0]), (Insn::Lldt(Rm::Reg(0)), 3));
    assert_eq!(d(&[0x0f, 0x00, 0xc8]), (Insn::Str(Rm::Reg(0), 4), 3));
    assert_eq!(d(&[0x48, 0x0f, 0x01, 0xe0]), (Insn::Smsw(Rm::Reg(0), 8), 4));
    // lgdt with a register operand is invalid
    assert_eq!(d(&[0x0f, 0x01, 0xd0]).0, Insn::Unknown);
}

#[test]
fn segment_loads_and_prefixes() {
    // mov ss, eax = 8e d0; mov ds, r8w = 41 8e d8; mov gs, [rax] = 8e 28; pop fs = 0f a1
    assert_eq!(
        d(&[0x8e, 0xd0]),
        (
            Insn::MovToSreg {
                sreg: Sreg::Ss,
                src: Rm::Reg(0)
            },
            2
        )
    );
    assert_eq!(
        d(&[0x41, 0x8e, 0xd8]),
        (
            Insn::MovToSreg {
                sreg: Sreg::Ds,
                src: Rm::Reg(8)
            },
            3
        )
    );
    assert_eq!(
        d(&[0x8e, 0x28]),
        (
            Insn::MovToSreg {
                sreg: Sreg::Gs,
                src: Rm::Mem(mem(Some(0), None, 0))
            },
            2
        )
    );
    assert_eq!(d(&[0x0f, 0xa1]), (Insn::PopSreg(Sreg::Fs), 2));
    // mov cs, ax is invalid
    assert_eq!(d(&[0x8e, 0xc8]).0, Insn::Unknown);
    // gs: invlpg [rax]: the segment override is kept and adds the GS base
    let (i, l) = d(&[0x65, 0x0f, 0x01, 0x38]);
    assert_eq!(l, 4);
    let Insn::Invlpg(m) = i else { panic!() };
    assert_eq!(m.linear(&[0x1000; 16], 0, 0, 0x10), 0x1010);
    // 0x67: 32-bit address
    let (i, _) = d(&[0x67, 0x0f, 0x01, 0x38]);
    let Insn::Invlpg(m) = i else { panic!() };
    assert_eq!(m.linear(&[0x1_0000_1000; 16], 0, 0, 0), 0x1000);
}

#[test]
fn unknown_and_truncated() {
    assert_eq!(d(&[0x90]).0, Insn::Unknown);
    assert_eq!(d(&[0x0f, 0xff]).0, Insn::Unknown);
    assert_eq!(d(&[]).0, Insn::Unknown);
    assert_eq!(d(&[0x0f]).0, Insn::Unknown);
    assert_eq!(d(&[0x0f, 0x01]).0, Insn::Unknown);
    assert_eq!(d(&[0x0f, 0x01, 0xb8, 0x78]).0, Insn::Unknown);
    // 15 prefixes and no opcode: longer than the architectural maximum
    assert_eq!(d(&[0x66; 16]).0, Insn::Unknown);
    // two REX prefixes
    assert_eq!(d(&[0x48, 0x48, 0xcf]).0, Insn::Unknown);
}

#[test]
fn never_panics_and_length_bounded() {
    // Every 3-byte pattern over a set of interesting bytes, padded: decoding stays in bounds.
    let interesting = [
        0x0f, 0x01, 0x00, 0x20, 0x22, 0x66, 0x67, 0x41, 0x48, 0xf3, 0x65, 0x8e, 0xcd, 0x04, 0x05,
        0x44, 0x84, 0xff,
    ];
    for &a in &interesting {
        for &b in &interesting {
            for &c in &interesting {
                for tail in [0u8, 0x24, 0xff] {
                    let mut buf = [tail; 15];
                    buf[0] = a;
                    buf[1] = b;
                    buf[2] = c;
                    let r = decode(&buf);
                    assert!((1..=15).contains(&r.len));
                    for n in 0..15 {
                        let r2 = decode(&buf[..n]);
                        assert!(usize::from(r2.len) <= n.max(1));
                    }
                }
            }
        }
    }
}
