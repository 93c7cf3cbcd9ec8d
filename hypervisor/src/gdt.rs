//! The GDT's contents (pure, host-tested): the hypervisor's, the guest kernel's and the guest user's flat
//! segments, every one pre-accessed, and the TSS descriptor. `arch::x86_64::tables` installs them.

use abi::layout::{GUEST_KERNEL_CS, GUEST_KERNEL_SS, GUEST_USER_CS, GUEST_USER_SS};

/// Hypervisor code segment selector.
pub const HV_CS: u16 = 0x08;
/// Hypervisor data segment selector.
pub const HV_DS: u16 = 0x10;
/// TSS selector (a 16-byte system descriptor in GDT slots 8 and 9).
pub const TSS_SEL: u16 = 0x40;
/// Number of GDT slots.
pub const GDT_LEN: usize = 16;
/// Size of the 64-bit TSS (its descriptor's limit is this minus one).
pub const TSS_SIZE: usize = 104;
/// The Accessed bit of a code/data descriptor's access byte. Set in every descriptor from the start: the
/// CPU sets it on each descriptor load if it is clear, and that write would fault on the GDT, which every
/// address space maps read-only (a guest's `mov %ax, %ds`, or the hypervisor's own IRETQ into a guest).
pub const ACCESSED: u64 = 0x01;

/// A code or data segment descriptor with base 0 and limit 4 GiB (ignored in long mode), pre-accessed.
const fn segment(dpl: u64, code: bool) -> u64 {
    let access = 0x80 | (dpl << 5) | 0x10 | ACCESSED | if code { 0x0a } else { 0x02 };
    // Flags: G, and L for code (64-bit) or D/B for data.
    let flags: u64 = if code { 0xa } else { 0xc };
    0xffff | (access << 40) | (0xf << 48) | (flags << 52)
}

/// The GDT contents: ring-0, ring-1 and ring-3 segments; the selectors are pinned in `abi::layout`.
pub fn gdt_entries(tss_base: u64) -> [u64; GDT_LEN] {
    let mut g = [0u64; GDT_LEN];
    g[(HV_CS >> 3) as usize] = segment(0, true);
    g[(HV_DS >> 3) as usize] = segment(0, false);
    g[(GUEST_KERNEL_CS >> 3) as usize] = segment(1, true);
    g[(GUEST_KERNEL_SS >> 3) as usize] = segment(1, false);
    g[(GUEST_USER_SS >> 3) as usize] = segment(3, false);
    g[(GUEST_USER_CS >> 3) as usize] = segment(3, true);
    let limit = (TSS_SIZE - 1) as u64;
    let slot = (TSS_SEL >> 3) as usize;
    g[slot] = (limit & 0xffff)
        | ((tss_base & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((tss_base >> 24) & 0xff) << 56);
    g[slot + 1] = tss_base >> 32;
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSS_BASE: u64 = 0xffff_8080_0000_1234;

    fn access(d: u64) -> u64 {
        (d >> 40) & 0xff
    }

    #[test]
    fn every_code_and_data_descriptor_is_pre_accessed() {
        let g = gdt_entries(TSS_BASE);
        let tss_slot = (TSS_SEL >> 3) as usize;
        let mut code_data = 0;
        for (i, &d) in g.iter().enumerate() {
            if i == tss_slot + 1 {
                continue; // upper half of the 16-byte TSS descriptor
            }
            let a = access(d);
            if a & 0x80 == 0 {
                assert_eq!(d, 0, "slot {i}: a non-present descriptor must be all zero");
                continue;
            }
            if a & 0x10 != 0 {
                code_data += 1;
                assert_eq!(
                    a & ACCESSED,
                    ACCESSED,
                    "slot {i} ({d:#x}) lacks the Accessed bit"
                );
            } else {
                assert_eq!(
                    i, tss_slot,
                    "slot {i}: the only system descriptor is the TSS"
                );
            }
        }
        assert_eq!(code_data, 6);
    }

    #[test]
    fn tss_descriptor_stays_an_available_64_bit_tss() {
        let g = gdt_entries(TSS_BASE);
        let slot = (TSS_SEL >> 3) as usize;
        // Type 0x9 (available 64-bit TSS): LTR makes it busy (0xb) in the writable image; it must not be
        // busy beforehand or LTR faults.
        assert_eq!(access(g[slot]), 0x89);
        let base =
            ((g[slot] >> 16) & 0xff_ffff) | (((g[slot] >> 56) & 0xff) << 24) | (g[slot + 1] << 32);
        assert_eq!(base, TSS_BASE);
    }

    #[test]
    fn documented_selectors_have_the_right_dpl_and_kind() {
        let g = gdt_entries(TSS_BASE);
        for (sel, dpl, code) in [
            (HV_CS, 0u16, true),
            (HV_DS, 0, false),
            (GUEST_KERNEL_CS, 1, true),
            (GUEST_KERNEL_SS, 1, false),
            (GUEST_USER_CS, 3, true),
            (GUEST_USER_SS, 3, false),
        ] {
            let a = access(g[(sel >> 3) as usize]);
            assert_eq!((a >> 5) & 3, u64::from(dpl), "selector {sel:#x}");
            assert_eq!(a & 0x08 != 0, code, "selector {sel:#x}");
            assert_eq!(u64::from(sel & 3), u64::from(dpl), "selector {sel:#x} RPL");
        }
    }
}
