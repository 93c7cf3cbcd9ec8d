//! Host tests of the instruction emulator and control transfers on a flat guest memory (virtual =
//! physical below 1 MiB, a page fault above), including hostile descriptor tables and frames.
#![allow(clippy::unwrap_used)]

use super::decode::decode;
use super::env::{Env, MemFault, Outcome, Regs, reg, vector};
use super::exec::execute;
use super::reflect;
use super::vcpu::{VCpu, cr0, cr4, msr, rflags};
use crate::devices::IoEffect;

const MEM: usize = 1 << 20;

struct Flat {
    mem: Vec<u8>,
    outs: Vec<(u16, u8, u32)>,
    console: Vec<u8>,
    cr3_loads: Vec<u64>,
    invlpgs: Vec<u64>,
    flushes: usize,
    board: crate::devices::Board,
}

impl Env for Flat {
    fn read(&mut self, _cr3: u64, va: u64, buf: &mut [u8], user: bool) -> Result<(), MemFault> {
        let end = va
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= MEM as u64)
            .ok_or(MemFault::Page(va, if user { 4 } else { 0 }))?;
        buf.copy_from_slice(&self.mem[va as usize..end as usize]);
        Ok(())
    }
    fn write(&mut self, _cr3: u64, va: u64, bytes: &[u8], user: bool) -> Result<(), MemFault> {
        let end = va
            .checked_add(bytes.len() as u64)
            .filter(|&e| e <= MEM as u64)
            .ok_or(MemFault::Page(va, 2 | if user { 4 } else { 0 }))?;
        self.mem[va as usize..end as usize].copy_from_slice(bytes);
        Ok(())
    }
    fn io_in(&mut self, port: u16, _size: u8) -> u32 {
        u32::from(port) ^ 0xa5a5_a5a5
    }
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> IoEffect {
        self.outs.push((port, size, value));
        match port {
            0x3f8 => IoEffect::Output(value as u8),
            0xf4 => IoEffect::Shutdown(value),
            _ => IoEffect::None,
        }
    }
    fn console(&mut self, byte: u8) {
        self.console.push(byte);
    }
    fn host_tsc(&self) -> u64 {
        1000
    }
    fn load_cr3(&mut self, cr3: u64, _pge: bool, _nxe: bool) -> Result<(), &'static str> {
        if cr3 >= MEM as u64 {
            return Err("CR3 outside the domain's memory");
        }
        self.cr3_loads.push(cr3);
        Ok(())
    }
    fn invlpg(&mut self, va: u64) {
        self.invlpgs.push(va);
    }
    fn flush_all(&mut self, _keep_global: bool) {
        self.flushes += 1;
    }
}

impl super::dispatch::Machine for Flat {
    fn page_fault(
        &mut self,
        _cr3: u64,
        va: u64,
        err: u32,
        _mode: super::shadow::Mode,
    ) -> Result<super::shadow::FaultResult, super::shadow::Fault> {
        // Below 1 MiB everything is "mapped" (a hidden fault); above, the guest's own fault.
        Ok(if va < MEM as u64 {
            super::shadow::FaultResult::Hidden
        } else {
            super::shadow::FaultResult::Reflect(err)
        })
    }
    fn board(&mut self) -> &mut crate::devices::Board {
        &mut self.board
    }
}

const GDT: u64 = 0x1000;
const IDT: u64 = 0x2000;
const TSS: u64 = 0x3000;
const KCODE: u64 = 0x00af_9a00_0000_ffff;
const KDATA: u64 = 0x00cf_9200_0000_ffff;
const UDATA: u64 = 0x00cf_f200_0000_ffff;
const UCODE: u64 = 0x00af_fa00_0000_ffff;

fn setup() -> (Flat, VCpu, Regs) {
    let mut f = Flat {
        mem: vec![0; MEM],
        outs: vec![],
        console: vec![],
        cr3_loads: vec![],
        invlpgs: vec![],
        flushes: 0,
        board: crate::devices::Board::new(0),
    };
    // The native kernel's GDT layout: 0x08 code, 0x10 data, 0x2b user data, 0x33 user code, 0x38 TSS.
    for (i, d) in [(1u64, KCODE), (2, KDATA), (5, UDATA), (6, UCODE)] {
        f.mem[(GDT + 8 * i) as usize..(GDT + 8 * i + 8) as usize].copy_from_slice(&d.to_le_bytes());
    }
    let tss_lo: u64 = 0x67 | ((TSS & 0xff_ffff) << 16) | (0x89 << 40);
    f.mem[(GDT + 0x38) as usize..(GDT + 0x40) as usize].copy_from_slice(&tss_lo.to_le_bytes());
    // TSS.rsp0 = 0x9000, IST1 = 0xa000.
    f.mem[(TSS + 4) as usize..(TSS + 12) as usize].copy_from_slice(&0x9000u64.to_le_bytes());
    f.mem[(TSS + 0x24) as usize..(TSS + 0x2c) as usize].copy_from_slice(&0xa000u64.to_le_bytes());
    let mut v = VCpu::at_entry64(0, true, 0x08);
    v.gdtr = super::vcpu::TableReg {
        base: GDT,
        limit: 0x47,
    };
    v.idtr = super::vcpu::TableReg {
        base: IDT,
        limit: 0xfff,
    };
    let r = Regs {
        rip: 0x5000,
        rflags: rflags::FIXED,
        gpr: [0; 16],
    };
    (f, v, r)
}

fn gate(f: &mut Flat, vec: u8, target: u64, dpl: u8, ist: u8, trap: bool) {
    let lo = (target & 0xffff)
        | (0x08 << 16)
        | (u64::from(ist) << 32)
        | ((if trap { 0xfu64 } else { 0xe }) << 40)
        | (u64::from(dpl) << 45)
        | (1 << 47)
        | ((target >> 16 & 0xffff) << 48);
    let hi = target >> 32;
    let at = (IDT + 16 * u64::from(vec)) as usize;
    f.mem[at..at + 8].copy_from_slice(&lo.to_le_bytes());
    f.mem[at + 8..at + 16].copy_from_slice(&hi.to_le_bytes());
}

fn exec(f: &mut Flat, v: &mut VCpu, r: &mut Regs, bytes: &[u8]) -> Outcome {
    let d = decode(bytes);
    execute(f, v, r, &d, bytes)
}

fn u64_at(f: &Flat, a: u64) -> u64 {
    u64::from_le_bytes(f.mem[a as usize..a as usize + 8].try_into().unwrap())
}

#[test]
fn interrupt_flag_hlt_and_io() {
    let (mut f, mut v, mut r) = setup();
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0xfb, 0x90]),
        Outcome::Continue
    );
    assert!(v.vif);
    assert_eq!(r.rip, 0x5001);
    assert_eq!(exec(&mut f, &mut v, &mut r, &[0xfa]), Outcome::Continue);
    assert!(!v.vif);
    assert!(matches!(
        exec(&mut f, &mut v, &mut r, &[0xf4]),
        Outcome::Crash(_)
    ));
    // sti; hlt is one step: no window between them.
    r.rip = 0x5000;
    assert_eq!(exec(&mut f, &mut v, &mut r, &[0xfb, 0xf4]), Outcome::Block);
    assert_eq!(r.rip, 0x5002);
    // out dx, al to COM1 reaches the console; in al, dx keeps the upper bits of RAX.
    r.gpr[reg::RDX] = 0x3f8;
    r.gpr[reg::RAX] = 0xffff_ff41;
    assert_eq!(exec(&mut f, &mut v, &mut r, &[0xee]), Outcome::Continue);
    assert_eq!(f.console, b"A");
    r.gpr[reg::RDX] = 0x21;
    assert_eq!(exec(&mut f, &mut v, &mut r, &[0xec]), Outcome::Continue);
    assert_eq!(r.gpr[reg::RAX], 0xffff_ff00 | (0x21 ^ 0xa5));
    // out dx, eax to isa-debug-exit shuts down with the value.
    r.gpr[reg::RDX] = 0xf4;
    r.gpr[reg::RAX] = 0x31;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0xef]),
        Outcome::Shutdown(0x31)
    );
    // rep outsb of "hi" from memory.
    f.mem[0x100..0x102].copy_from_slice(b"hi");
    r.gpr[reg::RDX] = 0x3f8;
    r.gpr[reg::RSI] = 0x100;
    r.gpr[reg::RCX] = 2;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0xf3, 0x6e]),
        Outcome::Continue
    );
    assert_eq!(f.console, b"Ahi");
    assert_eq!(r.gpr[reg::RCX], 0);
}

#[test]
fn control_registers_and_msrs() {
    let (mut f, mut v, mut r) = setup();
    r.gpr[reg::RAX] = 0x7000;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x22, 0xd8]),
        Outcome::Continue
    );
    assert_eq!((v.cr3, f.cr3_loads.clone()), (0x7000, vec![0x7000]));
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x20, 0xd9]),
        Outcome::Continue
    );
    assert_eq!(r.gpr[reg::RCX], 0x7000);
    // CR3 at a hostile address: the domain is crashed, CR3 unchanged.
    r.gpr[reg::RAX] = 0xffff_ffff_f000;
    assert!(matches!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x22, 0xd8]),
        Outcome::Crash(_)
    ));
    assert_eq!(v.cr3, 0x7000);
    // Paging off: crash (ring compression cannot run it). Reserved CR4 bits: #GP. PGE toggle: flush.
    r.gpr[reg::RAX] = v.cr0 & !cr0::PG;
    assert!(matches!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x22, 0xc0]),
        Outcome::Crash(_)
    ));
    r.gpr[reg::RAX] = v.cr4 | cr4::SMEP;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x22, 0xe0]),
        Outcome::Exception {
            vector: vector::GP,
            error: Some(0)
        }
    );
    r.gpr[reg::RAX] = v.cr4 | cr4::PGE;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x22, 0xe0]),
        Outcome::Continue
    );
    assert_eq!(f.flushes, 1);
    // wrmsr LSTAR, rdmsr back; unknown MSR: #GP.
    r.gpr[reg::RCX] = u64::from(msr::LSTAR);
    r.gpr[reg::RDX] = 0xffff_ffff;
    r.gpr[reg::RAX] = 0x8000_1000;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x30]),
        Outcome::Continue
    );
    assert_eq!(v.lstar, 0xffff_ffff_8000_1000);
    r.gpr[reg::RAX] = 0;
    r.gpr[reg::RDX] = 0;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x32]),
        Outcome::Continue
    );
    assert_eq!(
        (r.gpr[reg::RAX], r.gpr[reg::RDX]),
        (0x8000_1000, 0xffff_ffff)
    );
    r.gpr[reg::RCX] = 0x1234;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x32]),
        Outcome::Exception {
            vector: vector::GP,
            error: Some(0)
        }
    );
    // swapgs
    v.gs_base = 1;
    v.kernel_gs_base = 2;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x01, 0xf8]),
        Outcome::Continue
    );
    assert_eq!((v.gs_base, v.kernel_gs_base), (2, 1));
    // invlpg [rdi]
    r.gpr[reg::RDI] = 0x4321;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x01, 0x3f]),
        Outcome::Continue
    );
    assert_eq!(f.invlpgs, vec![0x4321]);
}

#[test]
fn descriptor_tables_umip_and_ltr() {
    let (mut f, mut v, mut r) = setup();
    // lidt [rdi] with a pseudo-descriptor in memory; sidt [rsi] writes it back (UMIP emulation).
    f.mem[0x200..0x20a].copy_from_slice(&[0xff, 0x0f, 0, 0x40, 0, 0, 0, 0, 0, 0]);
    r.gpr[reg::RDI] = 0x200;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x01, 0x1f]),
        Outcome::Continue
    );
    assert_eq!((v.idtr.base, v.idtr.limit), (0x4000, 0xfff));
    r.gpr[reg::RSI] = 0x300;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x01, 0x0e]),
        Outcome::Continue
    );
    assert_eq!(&f.mem[0x300..0x30a], &f.mem[0x200..0x20a].to_vec()[..]);
    // lgdt with a non-canonical base: #GP(0); from an unmapped address: #PF with CR2.
    f.mem[0x200..0x20a].copy_from_slice(&[0xff, 0, 0, 0, 0, 0, 0, 0x80, 0, 0]);
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x01, 0x17]),
        Outcome::Exception {
            vector: vector::GP,
            error: Some(0)
        }
    );
    r.gpr[reg::RDI] = 0x1_0000_0000;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x01, 0x17]),
        Outcome::Exception {
            vector: vector::PF,
            error: Some(0)
        }
    );
    assert_eq!(v.cr2, 0x1_0000_0000);
    // ltr 0x38 marks the TSS busy; a second ltr of a busy TSS, a data segment or beyond the limit: #GP.
    r.gpr[reg::RAX] = 0x38;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x00, 0xd8]),
        Outcome::Continue
    );
    assert_eq!((v.tr.sel, v.tr.base), (0x38, TSS));
    assert_eq!((u64_at(&f, GDT + 0x38) >> 40) & 0xf, 0xb);
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x00, 0xd8]),
        Outcome::Exception {
            vector: vector::GP,
            error: Some(0x38)
        }
    );
    r.gpr[reg::RAX] = 0x10;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x00, 0xd8]),
        Outcome::Exception {
            vector: vector::GP,
            error: Some(0x10)
        }
    );
    r.gpr[reg::RAX] = 0x400;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x00, 0xd8]),
        Outcome::Exception {
            vector: vector::GP,
            error: Some(0x400)
        }
    );
    // str eax reads the virtual TR.
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x00, 0xc8]),
        Outcome::Continue
    );
    assert_eq!(r.gpr[reg::RAX], 0x38);
}

#[test]
fn segment_loads_check_the_guest_gdt() {
    let (mut f, mut v, mut r) = setup();
    r.gpr[reg::RAX] = 0x10;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x8e, 0xd0]),
        Outcome::Continue
    ); // mov ss, eax
    assert_eq!(v.ss, 0x10);
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x8e, 0xd8]),
        Outcome::Continue
    ); // mov ds, eax
    assert_eq!(v.ds, 0x10);
    r.gpr[reg::RAX] = 0;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x8e, 0xd0]),
        Outcome::Continue
    ); // null SS at CPL 0
    // User data as SS at CPL 0, code as SS, garbage selectors: #GP(sel).
    for sel in [0x2bu64, 0x08, 0x30, 0x1000, 0x0c] {
        r.gpr[reg::RAX] = sel;
        assert_eq!(
            exec(&mut f, &mut v, &mut r, &[0x8e, 0xd0]),
            Outcome::Exception {
                vector: vector::GP,
                error: Some((sel & 0xfffc) as u32)
            },
            "sel {sel:#x}"
        );
    }
}

#[test]
fn far_return_and_iretq_to_kernel_and_user() {
    let (mut f, mut v, mut r) = setup();
    // retfq to 0x08:0x6000 (what the native load_gdt does).
    r.gpr[reg::RSP] = 0x8000;
    f.mem[0x8000..0x8008].copy_from_slice(&0x6000u64.to_le_bytes());
    f.mem[0x8008..0x8010].copy_from_slice(&0x08u64.to_le_bytes());
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x48, 0xcb]),
        Outcome::Continue
    );
    assert_eq!((r.rip, r.gpr[reg::RSP], v.cs), (0x6000, 0x8010, 0x08));
    // iretq to ring 3 with IF set.
    let frame = [
        0x40_0000u64,
        0x33,
        rflags::IF | rflags::FIXED | rflags::CF,
        0x7fff_0000,
        0x2b,
    ];
    for (i, w) in frame.iter().enumerate() {
        f.mem[0x8100 + 8 * i..0x8108 + 8 * i].copy_from_slice(&w.to_le_bytes());
    }
    r.gpr[reg::RSP] = 0x8100;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x48, 0xcf]),
        Outcome::Continue
    );
    assert_eq!(
        (r.rip, r.gpr[reg::RSP], v.cpl, v.cs, v.ss, v.vif),
        (0x40_0000, 0x7fff_0000, 3, 0x33, 0x2b, true)
    );
    assert_eq!(r.rflags & rflags::CF, rflags::CF);
    // Hostile frames at CPL 0: a user CS with a kernel SS, a ring-1 CS, a non-canonical RIP, garbage CS.
    let cases: [([u64; 5], Option<Outcome>); 4] = [
        (
            [0x1000, 0x33, 0x202, 0x1000, 0x10],
            Some(Outcome::Exception {
                vector: vector::GP,
                error: Some(0x10),
            }),
        ),
        ([0x1000, 0x09, 0x202, 0x1000, 0x10], None),
        (
            [0x8000_0000_0000_0000, 0x08, 0x202, 0x1000, 0x10],
            Some(Outcome::Exception {
                vector: vector::GP,
                error: Some(0),
            }),
        ),
        (
            [0x1000, 0x7ff8, 0x202, 0x1000, 0x10],
            Some(Outcome::Exception {
                vector: vector::GP,
                error: Some(0x7ff8),
            }),
        ),
    ];
    for (frame, want) in cases {
        v.cpl = 0;
        v.cs = 0x08;
        for (i, w) in frame.iter().enumerate() {
            f.mem[0x8100 + 8 * i..0x8108 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        r.gpr[reg::RSP] = 0x8100;
        r.rip = 0x5000;
        let got = exec(&mut f, &mut v, &mut r, &[0x48, 0xcf]);
        match want {
            Some(w) => assert_eq!(got, w, "{frame:x?}"),
            None => assert!(matches!(got, Outcome::Crash(_)), "{frame:x?}: {got:?}"),
        }
        assert_eq!(
            (v.cpl, r.rip),
            (0, 0x5000),
            "a refused iretq changes nothing"
        );
    }
}

#[test]
fn exception_and_interrupt_delivery_push_the_real_frame() {
    let (mut f, mut v, mut r) = setup();
    gate(&mut f, 14, 0xffff_ffff_8000_1000, 0, 0, false);
    gate(&mut f, 0x20, 0xffff_ffff_8000_2000, 0, 0, false);
    gate(&mut f, 0x80, 0xffff_ffff_8000_3000, 3, 0, true);
    gate(&mut f, 2, 0xffff_ffff_8000_4000, 0, 1, false);
    v.tr = super::vcpu::SegReg {
        sel: 0x38,
        base: TSS,
        limit: 0x67,
    };
    // From user mode: the stack is TSS.rsp0, the frame carries the user's selectors, IF is cleared.
    v.cpl = 3;
    v.cs = 0x33;
    v.ss = 0x2b;
    v.vif = true;
    r.rip = 0x40_1234;
    r.gpr[reg::RSP] = 0x7fff_fff8;
    assert_eq!(
        reflect::deliver(&mut f, &mut v, &mut r, 14, Some(6), false),
        Outcome::Continue
    );
    assert_eq!(
        (r.rip, r.gpr[reg::RSP], v.cpl, v.cs, v.ss, v.vif),
        (0xffff_ffff_8000_1000, 0x9000 - 48, 0, 0x08, 0, false)
    );
    let words: Vec<u64> = (0..6).map(|i| u64_at(&f, 0x9000 - 48 + 8 * i)).collect();
    assert_eq!(
        words,
        vec![
            6,
            0x40_1234,
            0x33,
            rflags::IF | rflags::FIXED,
            0x7fff_fff8,
            0x2b
        ]
    );
    // A nested interrupt in the kernel: same stack, aligned down, kernel selectors in the frame.
    v.vif = true;
    let sp = r.gpr[reg::RSP];
    assert_eq!(
        reflect::deliver(&mut f, &mut v, &mut r, 0x20, None, false),
        Outcome::Continue
    );
    assert_eq!(r.gpr[reg::RSP], (sp & !0xf) - 40);
    assert_eq!(u64_at(&f, r.gpr[reg::RSP] + 8), 0x08);
    // IST: the NMI gate's IST 1 stack.
    assert_eq!(
        reflect::deliver(&mut f, &mut v, &mut r, 2, None, false),
        Outcome::Continue
    );
    assert_eq!(r.gpr[reg::RSP], 0xa000 - 40);
    // int 0x80 from user is allowed (DPL 3, trap gate keeps IF); int 0x20 from user gives #GP(0x20*8+2),
    // delivered through the #GP gate — which is missing here: a triple fault, the domain crashes.
    v.cpl = 3;
    v.cs = 0x33;
    v.vif = true;
    assert_eq!(
        reflect::deliver(&mut f, &mut v, &mut r, 0x80, None, true),
        Outcome::Continue
    );
    assert!(v.vif);
    v.cpl = 3;
    v.cs = 0x33;
    assert!(matches!(
        reflect::deliver(&mut f, &mut v, &mut r, 0x20, None, true),
        Outcome::Crash(_)
    ));
    gate(&mut f, 13, 0xffff_ffff_8000_5000, 0, 0, false);
    v.cpl = 3;
    v.cs = 0x33;
    assert_eq!(
        reflect::deliver(&mut f, &mut v, &mut r, 0x20, None, true),
        Outcome::Continue
    );
    assert_eq!(r.rip, 0xffff_ffff_8000_5000);
    assert_eq!(u64_at(&f, r.gpr[reg::RSP]), 0x20 * 8 + 2);
    // A hostile IDT: gate beyond the limit, a gate to a user code segment, IDTR at unmapped memory.
    v.idtr.limit = 0xf;
    assert!(matches!(
        reflect::deliver(&mut f, &mut v, &mut r, 14, Some(0), false),
        Outcome::Crash(_)
    ));
    v.idtr.limit = 0xfff;
    let at = (IDT + 16 * 14) as usize;
    f.mem[at + 2] = 0x33;
    assert!(matches!(
        reflect::deliver(&mut f, &mut v, &mut r, 14, Some(0), false),
        Outcome::Crash(_)
    ));
    v.idtr.base = 0xffff_8080_0000_0000;
    assert!(matches!(
        reflect::deliver(&mut f, &mut v, &mut r, 14, Some(0), false),
        Outcome::Crash(_)
    ));
}

#[test]
fn syscall_and_sysret_follow_star_lstar_fmask() {
    let (_f, mut v, mut r) = setup();
    v.efer |= super::vcpu::efer::SCE;
    v.star = (0x23u64 << 48) | (0x08 << 32);
    v.lstar = 0xffff_ffff_8000_9000;
    v.fmask = rflags::IF | rflags::DF;
    v.cpl = 3;
    v.vif = true;
    r.rip = 0x40_0002;
    r.rflags = rflags::FIXED | rflags::DF;
    assert_eq!(reflect::syscall(&mut v, &mut r), Outcome::Continue);
    assert_eq!(
        (r.rip, r.gpr[reg::RCX], v.cpl, v.cs, v.ss, v.vif),
        (v.lstar, 0x40_0002, 0, 0x08, 0x10, false)
    );
    assert_eq!(r.gpr[reg::R11], rflags::FIXED | rflags::DF | rflags::IF);
    assert_eq!(r.rflags & rflags::DF, 0);
    assert_eq!(reflect::sysret(&mut v, &mut r, true), Outcome::Continue);
    assert_eq!(
        (r.rip, v.cpl, v.cs, v.ss, v.vif),
        (0x40_0002, 3, 0x33, 0x2b, true)
    );
    // Without EFER.SCE: #UD.
    v.efer &= !super::vcpu::efer::SCE;
    assert_eq!(reflect::syscall(&mut v, &mut r), super::env::UD);
}

#[test]
fn user_mode_and_unknown_instructions() {
    let (mut f, mut v, mut r) = setup();
    assert!(matches!(
        exec(&mut f, &mut v, &mut r, &[0x90]),
        Outcome::Crash(_)
    ));
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0x0f, 0x0b]),
        Outcome::Exception {
            vector: vector::UD,
            error: None
        }
    );
    v.cpl = 3;
    assert_eq!(
        exec(&mut f, &mut v, &mut r, &[0xfa]),
        Outcome::Exception {
            vector: vector::GP,
            error: Some(0)
        }
    );
}

#[test]
fn dispatch_turns_entries_into_guest_events() {
    use super::dispatch::{Action, handle, inject};
    use super::exits::{Exits, Reason};
    let (mut f, mut v, mut r) = setup();
    let mut ex = Exits::default();
    gate(&mut f, 14, 0xffff_ffff_8000_1000, 0, 0, false);
    gate(&mut f, 13, 0xffff_ffff_8000_5000, 0, 0, false);
    gate(&mut f, 0x80, 0xffff_ffff_8000_3000, 3, 0, true);
    gate(&mut f, 0x20, 0xffff_ffff_8000_2000, 0, 0, false);
    v.tr = super::vcpu::SegReg {
        sel: 0x38,
        base: TSS,
        limit: 0x67,
    };
    // A hidden #PF: nothing for the guest.
    assert_eq!(
        handle(&mut f, &mut v, &mut ex, &mut r, 1, 14, 0, 0x4000),
        Action::Resume
    );
    assert_eq!((r.rip, ex.get(Reason::HiddenPf)), (0x5000, 1));
    // A true #PF from user mode: reflected with CR2, on TSS.RSP0.
    r.rip = 0x40_0000;
    r.gpr[reg::RSP] = 0x7fff_0000;
    assert_eq!(
        handle(&mut f, &mut v, &mut ex, &mut r, 3, 14, 6, 0x1_0000_0000),
        Action::Resume
    );
    assert_eq!(
        (r.rip, v.cr2, v.cpl, ex.get(Reason::TruePf)),
        (0xffff_ffff_8000_1000, 0x1_0000_0000, 0, 1)
    );
    assert_eq!(r.gpr[reg::RSP], 0x9000 - 48);
    // `int 0x80` from user mode arrives as #GP(0x80*8+2) at the instruction: delivered through the DPL-3
    // gate with RIP after it.
    f.mem[0x6000..0x6002].copy_from_slice(&[0xcd, 0x80]);
    r.rip = 0x6000;
    assert_eq!(
        handle(&mut f, &mut v, &mut ex, &mut r, 3, 13, 0x80 * 8 + 2, 0),
        Action::Resume
    );
    assert_eq!(r.rip, 0xffff_ffff_8000_3000);
    assert_eq!(
        u64_at(&f, r.gpr[reg::RSP]),
        0x6002,
        "the frame's RIP is after the INT"
    );
    // A privileged instruction in user mode is the program's own #GP.
    f.mem[0x6000] = 0xfa;
    r.rip = 0x6000;
    assert_eq!(
        handle(&mut f, &mut v, &mut ex, &mut r, 3, 13, 0, 0),
        Action::Resume
    );
    assert_eq!(r.rip, 0xffff_ffff_8000_5000);
    assert_eq!(u64_at(&f, r.gpr[reg::RSP]), 0, "#GP's error code");
    // HLT with interrupts on blocks; a device interrupt is injected once the virtual IF allows it.
    f.mem[0x6000] = 0xf4;
    r.rip = 0x6000;
    v.vif = true;
    assert_eq!(
        handle(&mut f, &mut v, &mut ex, &mut r, 1, 13, 0, 0),
        Action::Block
    );
    for (port, val) in [
        (0x20u16, 0x11u32),
        (0x21, 0x20),
        (0x21, 4),
        (0x21, 1),
        (0x21, 0xfe),
        (0x43, 0x34),
        (0x40, 0x10),
        (0x40, 0),
    ] {
        f.board.io_out(port, 1, val, 0);
    }
    f.board.advance(1_000_000);
    v.vif = false;
    assert_eq!(inject(&mut f, &mut v, &mut ex, &mut r), Action::Resume);
    assert_eq!(r.rip, 0x6001, "held while the virtual IF is clear");
    v.vif = true;
    assert_eq!(inject(&mut f, &mut v, &mut ex, &mut r), Action::Resume);
    assert_eq!((r.rip, v.vif), (0xffff_ffff_8000_2000, false));
    // An unknown instruction in the kernel: crash.
    f.mem[0x6000..0x6003].copy_from_slice(&[0x0f, 0x01, 0xc8]);
    r.rip = 0x6000;
    assert!(matches!(
        handle(&mut f, &mut v, &mut ex, &mut r, 1, 6, 0, 0),
        Action::Crash(_)
    ));
}
