//! The virtual-address map every guest sees, and the selectors the hypervisor's GDT provides.
//!
//! Deviation from Xen (ring-1 design): Xen's 64-bit PV guests run their kernel in ring 3 and use selectors
//! `FLAT_KERNEL_CS64 = 0xe033` etc. Here the guest kernel runs in ring 1, so the selectors below are ours.
//! The reserved range is Xen's: L4 slots 256..=271 belong to the hypervisor and are refused to guests.

/// Guest kernel 64-bit code segment (GDT index 3, RPL 1).
pub const GUEST_KERNEL_CS: u16 = 0x19;
/// Guest kernel data/stack segment (GDT index 4, RPL 1).
pub const GUEST_KERNEL_SS: u16 = 0x21;
/// Guest user data/stack segment (GDT index 5, RPL 3). Placed so `SYSRET` can target it (`STAR[63:48] + 8`).
pub const GUEST_USER_SS: u16 = 0x2b;
/// Guest user 64-bit code segment (GDT index 6, RPL 3). `SYSRET` target (`STAR[63:48] + 16`).
pub const GUEST_USER_CS: u16 = 0x33;

/// First L4 slot reserved for the hypervisor (Xen: 256).
pub const RESERVED_L4_FIRST: usize = 256;
/// Last L4 slot reserved for the hypervisor (Xen: 271).
pub const RESERVED_L4_LAST: usize = 271;
/// Lowest reserved virtual address (start of L4 slot 256).
pub const RESERVED_VA_START: u64 = 0xffff_8000_0000_0000;
/// One past the highest reserved virtual address (start of L4 slot 272).
pub const RESERVED_VA_END: u64 = 0xffff_8800_0000_0000;

/// Where the hypervisor maps its read-only entry region (entry code, GDT, IDT, TSS) in every address space,
/// the guests' and its own. L4 slot 257 (Xen's per-domain GDT/LDT area); slot 256 stays free for the
/// read-only machine-to-physical table, as in Xen.
pub const ENTRY_REGION_VA: u64 = 0xffff_8080_0000_0000;
/// Where the current CPU's entry stack and IST stacks are mapped (1 MiB above the entry region).
pub const ENTRY_STACKS_VA: u64 = ENTRY_REGION_VA + 0x10_0000;

/// The interrupt vector of the hypercall gate (`int 0x82`, DPL 1), Xen's 32-bit PV precedent.
pub const HYPERCALL_VECTOR: u8 = 0x82;

/// Where the domain builder maps the shared-info page at boot: the page after start_info (deviation f).
pub const fn boot_shared_info_va(start_info_va: u64) -> u64 {
    start_info_va + 4096
}

/// A DPL-1 vector whose handler returns at once without entering the hypervisor proper (no address-space
/// switch): the floor of a ring-1 → ring-0 → ring-1 round trip, for benchmarks (our extension).
pub const FASTPATH_VECTOR: u8 = 0x83;

/// True if `va` may be mapped or named by a guest: canonical and outside the hypervisor's reserved slots.
pub const fn guest_va_allowed(va: u64) -> bool {
    let top = va >> 47;
    let canonical = top == 0 || top == 0x1_ffff;
    canonical && !(va >= RESERVED_VA_START && va < RESERVED_VA_END)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_range_is_slots_256_to_271() {
        assert_eq!((RESERVED_VA_START >> 39) & 0x1ff, RESERVED_L4_FIRST as u64);
        assert_eq!(
            ((RESERVED_VA_END - 1) >> 39) & 0x1ff,
            RESERVED_L4_LAST as u64
        );
        assert_eq!((ENTRY_REGION_VA >> 39) & 0x1ff, 257);
        assert!(!guest_va_allowed(ENTRY_REGION_VA));
        assert!(!guest_va_allowed(0x0000_8000_0000_0000));
        assert!(guest_va_allowed(0xffff_ffff_8000_0000));
        assert!(guest_va_allowed(0x1000));
        assert!(!guest_va_allowed(RESERVED_VA_END - 1));
        assert!(guest_va_allowed(RESERVED_VA_END));
    }

    #[test]
    fn sysret_layout() {
        // SYSRET to 64-bit mode loads CS = STAR[63:48] + 16 and SS = STAR[63:48] + 8, both with RPL 3.
        let base = (GUEST_USER_SS & !3) - 8;
        assert_eq!(base + 16, GUEST_USER_CS & !3);
    }
}
