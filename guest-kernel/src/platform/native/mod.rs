//! The native backend: the kernel in ring 0 on a bare (emulated) PC, no hypervisor. Selected at boot when
//! the kernel was entered through the multiboot entry (`arch::x86_64::entry`, `_start32` → `_start64` →
//! `boot::native_main`).
//!
//! Devices are legacy port I/O only — the set a trap-and-emulate monitor will emulate: the 8259 PIC pair
//! (interrupt sources), the 8254 PIT (timer, and the reference the TSC is calibrated against), the 16550
//! UART on COM1 (console output, input on IRQ 4), the CMOS RTC (wall clock) and QEMU's `isa-debug-exit`
//! (power off with a code). No LAPIC, IOAPIC or MMIO.
//!
//! Files: [`backend`] (the `Platform` implementation, bare metal), `tables` (GDT, TSS, IDT), `devices`
//! (PIC, PIT, RTC port I/O); and the pure, host-tested parts: [`desc`] (descriptors, gates, STAR),
//! [`pic_pit`] (PIC remapping, masks and EOI, PIT counts, TSC calibration arithmetic), [`rtc`] (CMOS
//! registers to Unix time), [`uart`] (programming and output line handling), [`multiboot`] (the loader's
//! information), [`exit_value`] and [`image_page_flags`].

#[cfg(feature = "baremetal")]
pub mod backend;
pub mod desc;
#[cfg(feature = "baremetal")]
mod devices;
#[cfg(feature = "baremetal")]
pub mod hostile;
pub mod multiboot;
pub mod pic_pit;
pub mod rtc;
#[cfg(feature = "baremetal")]
pub mod svm_probe;
#[cfg(feature = "baremetal")]
mod tables;
pub mod uart;

use super::Halt;

/// The native backend's GDT and IDT addresses (what SGDT/SIDT show a kernel on its own machine).
#[cfg(feature = "baremetal")]
pub fn table_bases() -> (u64, u64) {
    tables::bases()
}

/// The L4 slot of the native direct map: physical 0..1 GiB, writable, 2 MiB pages, set up by the 32-bit
/// entry and never changed. The backend writes page-table entries through it (the memory manager's
/// physmap maps page-table frames read-only, as PV requires); it is in the kernel half every address
/// space shares (`mm::KERNEL_SLOTS`), unused by the memory manager.
pub const DIRECT_MAP_SLOT: usize = 272;
/// The direct map's first byte (physical address 0).
pub const DIRECT_MAP_BASE: u64 = crate::mm::pte::l4_slot_va(DIRECT_MAP_SLOT);
/// How much physical memory the direct map covers.
pub const DIRECT_MAP_SIZE: u64 = 1 << 30;

/// Page-table entry flags (present, writable, no-execute bits) of the native image mapping's 4 KiB page at
/// byte `offset` from the image start: text read-only and executable, rodata read-only, the rest (data,
/// .bss, the boot stack and tables, the slack up to 2 MiB) writable; no-execute outside the text when the
/// CPU has it (`nx`).
pub const fn image_page_flags(offset: u64, text_end: u64, rodata_end: u64, nx: bool) -> u64 {
    const PRESENT: u64 = 1;
    const WRITABLE: u64 = 1 << 1;
    const NO_EXECUTE: u64 = 1 << 63;
    let nx_bit = if nx { NO_EXECUTE } else { 0 };
    if offset < text_end {
        PRESENT
    } else if offset < rodata_end {
        PRESENT | nx_bit
    } else {
        PRESENT | WRITABLE | nx_bit
    }
}

/// Where physical address `pa` is readable and writable natively, if the direct map covers it.
pub const fn direct_va(pa: u64) -> Option<u64> {
    if pa < DIRECT_MAP_SIZE {
        Some(DIRECT_MAP_BASE + pa)
    } else {
        None
    }
}

/// The `isa-debug-exit` value for a shutdown: the same values the hypervisor reports for a one-domain run
/// (`abi::exit`), so that tests and tools read a native run's exit like a PV one: poweroff with code 0 is
/// `EXIT_OK`, any other code or a crash is `EXIT_DOMAIN_FAILED`.
pub const fn exit_value(how: Halt, code: u32) -> u8 {
    match (how, code) {
        (Halt::Poweroff, 0) => abi::exit::EXIT_OK,
        _ => abi::exit::EXIT_DOMAIN_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_map_sits_in_a_shared_kernel_slot_below_the_physmap() {
        assert!(crate::mm::KERNEL_SLOTS.contains(&DIRECT_MAP_SLOT));
        assert_ne!(DIRECT_MAP_SLOT, crate::mm::PHYSMAP_SLOT);
        assert_eq!(DIRECT_MAP_BASE, 0xffff_8800_0000_0000);
        assert_eq!(direct_va(0x1234), Some(0xffff_8800_0000_1234));
        assert_eq!(direct_va(DIRECT_MAP_SIZE), None);
    }

    #[test]
    fn image_pages_get_their_segment_permissions() {
        let (text, ro) = (0x6b000, 0xdb000);
        assert_eq!(
            image_page_flags(0, text, ro, true),
            1,
            "text: read-only, executable"
        );
        assert_eq!(image_page_flags(text - 0x1000, text, ro, true), 1);
        assert_eq!(
            image_page_flags(text, text, ro, true),
            1 | 1 << 63,
            "rodata"
        );
        assert_eq!(image_page_flags(ro, text, ro, true), 3 | 1 << 63, "data");
        assert_eq!(
            image_page_flags(0x1f_f000, text, ro, true),
            3 | 1 << 63,
            "slack"
        );
        assert_eq!(
            image_page_flags(ro, text, ro, false),
            3,
            "no NX bit without NX"
        );
    }

    #[test]
    fn exit_values_match_a_one_domain_pv_run() {
        assert_eq!(exit_value(Halt::Poweroff, 0), abi::exit::EXIT_OK);
        assert_eq!(exit_value(Halt::Poweroff, 7), abi::exit::EXIT_DOMAIN_FAILED);
        assert_eq!(exit_value(Halt::Crash, 0), abi::exit::EXIT_DOMAIN_FAILED);
        assert_eq!(exit_value(Halt::Crash, 1), abi::exit::EXIT_DOMAIN_FAILED);
    }
}
