//! The native backend's descriptor tables, as values: the GDT (kernel and user segments laid out for
//! SYSCALL/SYSRET, the TSS descriptor), the IDT gates and the STAR MSR. Pure and host-tested; the backend
//! loads them (LGDT, LTR, LIDT, WRMSR).
//!
//! GDT layout (selector: descriptor): 0x08 kernel code (64-bit, DPL 0), 0x10 kernel data, 0x2b user data
//! (DPL 3), 0x33 user code (64-bit, DPL 3), 0x38 the TSS (two slots). The user selectors are the ones the
//! PV kernel already uses (`abi::layout::GUEST_USER_SS`/`GUEST_USER_CS`), so everything above the backend
//! builds the same ring-3 frames in both modes; SYSRET's rule (SS = STAR[63:48] + 8, CS = STAR[63:48] +
//! 16) is what puts user data below user code.

use abi::layout::{GUEST_USER_CS, GUEST_USER_SS};

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data (and stack) selector.
pub const KERNEL_SS: u16 = 0x10;
/// The TSS selector.
pub const TSS_SEL: u16 = 0x38;
/// Number of 8-byte GDT slots.
pub const GDT_SLOTS: usize = 9;

/// A 64-bit code segment descriptor at privilege `dpl` (present, readable, L=1).
pub const fn code64(dpl: u8) -> u64 {
    0x0020_9a00_0000_0000 | ((dpl as u64 & 3) << 45)
}

/// A data segment descriptor at privilege `dpl` (present, writable).
pub const fn data(dpl: u8) -> u64 {
    0x0000_9200_0000_0000 | ((dpl as u64 & 3) << 45)
}

/// The two slots of an available 64-bit TSS descriptor for a TSS at `base` of `limit` + 1 bytes.
pub const fn tss(base: u64, limit: u32) -> [u64; 2] {
    let low = (limit as u64 & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((limit as u64 >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// The whole GDT, given where the TSS is.
pub const fn gdt(tss_base: u64, tss_limit: u32) -> [u64; GDT_SLOTS] {
    let t = tss(tss_base, tss_limit);
    let mut g = [0u64; GDT_SLOTS];
    g[(KERNEL_CS >> 3) as usize] = code64(0);
    g[(KERNEL_SS >> 3) as usize] = data(0);
    g[(GUEST_USER_SS >> 3) as usize] = data(3);
    g[(GUEST_USER_CS >> 3) as usize] = code64(3);
    g[(TSS_SEL >> 3) as usize] = t[0];
    g[(TSS_SEL >> 3) as usize + 1] = t[1];
    g
}

/// STAR: SYSCALL loads CS = `KERNEL_CS`, SS = `KERNEL_CS + 8`; SYSRET (64-bit) loads CS = base + 16 and
/// SS = base + 8, both with RPL 3.
pub const fn star() -> u64 {
    let sysret_base = (GUEST_USER_SS & !3) - 8;
    ((sysret_base as u64) << 48) | ((KERNEL_CS as u64) << 32)
}

/// The interrupt-stack-table slot the double fault uses (a known-good stack: a #DF usually means the
/// kernel stack is gone).
pub const DOUBLE_FAULT_IST: u8 = 1;
/// The IST slot of the NMI: an NMI can arrive in the first instructions of the SYSCALL entry, while RSP is
/// still the user's (any value); a known-good stack keeps it from writing where user code pointed.
pub const NMI_IST: u8 = 2;

/// The IST slot of `vector`'s gate (0: the current stack).
pub const fn ist_of(vector: u8) -> u8 {
    match vector {
        2 => NMI_IST,
        8 => DOUBLE_FAULT_IST,
        _ => 0,
    }
}

/// One 16-byte IDT gate: an interrupt gate (IF cleared on entry) or a trap gate (IF kept), the handler in
/// the kernel's code segment, callable with `int` from privilege `dpl`, on the current stack (`ist` 0)
/// or on the TSS's interrupt stack `ist` (1..=7).
pub const fn idt_gate(handler: u64, dpl: u8, interrupt: bool, ist: u8) -> [u64; 2] {
    let kind: u64 = if interrupt { 0xe } else { 0xf };
    let low = (handler & 0xffff)
        | ((KERNEL_CS as u64) << 16)
        | ((ist as u64 & 7) << 32)
        | (kind << 40)
        | ((dpl as u64 & 3) << 45)
        | (1 << 47)
        | (((handler >> 16) & 0xffff) << 48);
    [low, handler >> 32]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_match_the_architectural_encodings() {
        // The well-known flat 64-bit descriptors (access byte 0x9a/0xfa, flags L=1).
        assert_eq!(code64(0), 0x0020_9a00_0000_0000);
        assert_eq!(code64(3), 0x0020_fa00_0000_0000);
        assert_eq!(data(0), 0x0000_9200_0000_0000);
        assert_eq!(data(3), 0x0000_f200_0000_0000);
    }

    #[test]
    fn tss_descriptor_splits_the_base() {
        let [lo, hi] = tss(0xffff_ffff_8012_3456, 0x67);
        assert_eq!(lo & 0xffff, 0x67, "limit 15:0");
        assert_eq!((lo >> 16) & 0xff_ffff, 0x12_3456, "base 23:0");
        assert_eq!(
            (lo >> 40) & 0xff,
            0x89,
            "present, DPL 0, available 64-bit TSS"
        );
        assert_eq!((lo >> 56) & 0xff, 0x80, "base 31:24");
        assert_eq!(hi, 0xffff_ffff, "base 63:32");
    }

    #[test]
    fn gdt_puts_each_selector_where_its_users_expect_it() {
        let g = gdt(0x1000, 0x67);
        assert_eq!(g[0], 0, "null descriptor");
        assert_eq!(g[1], code64(0));
        assert_eq!(g[2], data(0));
        assert_eq!(g[5], data(3), "GUEST_USER_SS = 0x2b");
        assert_eq!(g[6], code64(3), "GUEST_USER_CS = 0x33");
        assert_eq!([g[7], g[8]], tss(0x1000, 0x67));
        assert_eq!((GUEST_USER_SS, GUEST_USER_CS), (0x2b, 0x33));
    }

    #[test]
    fn star_makes_syscall_and_sysret_land_on_the_gdt_selectors() {
        let s = star();
        let syscall_cs = ((s >> 32) & 0xffff) as u16;
        assert_eq!(syscall_cs, KERNEL_CS);
        assert_eq!(syscall_cs + 8, KERNEL_SS, "SYSCALL's SS");
        let base = (s >> 48) as u16;
        assert_eq!((base + 8) | 3, GUEST_USER_SS, "SYSRET's SS");
        assert_eq!((base + 16) | 3, GUEST_USER_CS, "SYSRET's 64-bit CS");
        assert_eq!(s & 0xffff_ffff, 0, "the 32-bit SYSCALL target is unused");
    }

    #[test]
    fn gates_encode_handler_selector_type_and_dpl() {
        let h = 0xffff_ffff_8000_1234u64;
        let [lo, hi] = idt_gate(h, 3, false, 0);
        assert_eq!(lo & 0xffff, 0x1234);
        assert_eq!((lo >> 16) & 0xffff, u64::from(KERNEL_CS));
        assert_eq!((lo >> 32) & 0x7, 0, "IST 0");
        assert_eq!((lo >> 40) & 0xf, 0xf, "trap gate");
        assert_eq!((lo >> 45) & 3, 3, "int 0x80 from ring 3");
        assert_eq!(lo >> 47 & 1, 1, "present");
        assert_eq!((lo >> 48) & 0xffff, 0x8000);
        assert_eq!(hi, 0xffff_ffff);
        let [df, _] = idt_gate(h, 0, false, DOUBLE_FAULT_IST);
        assert_eq!((df >> 32) & 0x7, 1, "the double fault's own stack");
        assert_eq!(
            (ist_of(8), ist_of(2), ist_of(14), ist_of(0x80)),
            (1, 2, 0, 0)
        );
        let [irq, _] = idt_gate(h, 0, true, 0);
        assert_eq!((irq >> 40) & 0xf, 0xe, "interrupt gate masks IF");
        assert_eq!((irq >> 45) & 3, 0);
    }
}
