//! Guest kernel images: [`elf64`] validation under the hypervisor's address policy (anything a guest may
//! map, which excludes the hypervisor's reserved range; at most [`MAX_SPAN`] bytes).

use abi::layout::{RESERVED_VA_END, RESERVED_VA_START, guest_va_allowed};
pub use elf64::{AddressPolicy, ElfError, ElfImage, Segment};

/// Largest accepted span from the lowest segment address to the highest segment end.
pub const MAX_SPAN: u64 = 1 << 30;

/// Where a guest image may lie.
pub const GUEST_IMAGE_POLICY: AddressPolicy = AddressPolicy {
    allows: guest_range_allowed,
    max_span: MAX_SPAN,
    refusal: "overlaps the hypervisor's reserved range",
};

/// Both ends guest-allowed, and the range does not cover the reserved range.
fn guest_range_allowed(first: u64, last: u64) -> bool {
    guest_va_allowed(first)
        && guest_va_allowed(last)
        && !(first < RESERVED_VA_END && last >= RESERVED_VA_START)
}

/// Validates a guest image and describes its loadable segments.
pub fn parse(image: &[u8]) -> Result<ElfImage, ElfError> {
    elf64::parse(image, &GUEST_IMAGE_POLICY)
}

#[cfg(test)]
pub(crate) mod testelf {
    //! Assembles small ELF images in memory for tests.

    pub use elf64::write::ProgramHeader as Ph;

    /// A page-aligned `PT_LOAD` with `flags` whose file data is at `offset`.
    pub fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph::load(flags, offset, vaddr, filesz, memsz)
    }

    /// Header + phdrs at offset 64, then the image is padded to `len` bytes and `data` pieces are written at
    /// their offsets.
    pub fn build(entry: u64, phdrs: &[Ph], len: usize, data: &[(usize, &[u8])]) -> Vec<u8> {
        let mut v = vec![0u8; len.max(elf64::write::headers_len(phdrs.len()))];
        elf64::write::write_headers(&mut v, entry, phdrs).expect("buffer sized for the headers");
        for (off, bytes) in data {
            v[*off..*off + bytes.len()].copy_from_slice(bytes);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    //! The hypervisor's policy (the parser's own checks are tested in `elf64`).

    use super::testelf::{build, load};
    use super::*;
    use abi::layout::ENTRY_REGION_VA;

    const BASE: u64 = 0xffff_ffff_8000_0000;

    /// A text segment at 0x40_0000 (the entry point) and a data segment of `memsz` bytes at `va`.
    fn with_data_at(va: u64, memsz: u64) -> Result<ElfImage, ElfError> {
        let phdrs = [load(5, 0, 0x40_0000, 0x10, 0x10), load(6, 0, va, 0, memsz)];
        parse(&build(0x40_0000, &phdrs, 0x1000, &[]))
    }

    fn reserved(index: usize) -> Result<ElfImage, ElfError> {
        Err(ElfError::AddressNotAllowed {
            index,
            why: "overlaps the hypervisor's reserved range",
        })
    }

    #[test]
    fn reserved_range_refused() {
        assert_eq!(with_data_at(RESERVED_VA_START, 0x1000), reserved(1));
        assert_eq!(with_data_at(ENTRY_REGION_VA, 0x1000), reserved(1));
        assert_eq!(with_data_at(RESERVED_VA_END - 0x1000, 0x2000), reserved(1));
        assert_eq!(with_data_at(RESERVED_VA_START, 1 << 40), reserved(1));
        // Right after it is fine; right before it is the non-canonical hole.
        let kernel = |va: u64| {
            let phdrs = [load(5, 0, va, 0x10, 0x1000)];
            parse(&build(va, &phdrs, 0x1000, &[]))
        };
        assert!(kernel(RESERVED_VA_END).is_ok());
        assert_eq!(kernel(RESERVED_VA_END - 0x1000), reserved(0));
        assert_eq!(
            kernel(RESERVED_VA_START - 0x1000),
            Err(ElfError::NonCanonical { index: 0 })
        );
    }

    #[test]
    fn upper_and_lower_half_images_accepted() {
        let phdrs = [
            load(5, 0x1000, BASE, 0x800, 0x800),
            load(6, 0x1800, BASE + 0x1800, 0x100, 0x3000),
        ];
        let img = parse(&build(BASE + 0x20, &phdrs, 0x2000, &[])).unwrap();
        assert_eq!((img.lowest, img.highest_end), (BASE, BASE + 0x4800));
        assert_eq!(img.entry, BASE + 0x20);
        assert!(with_data_at(0x50_0000, 0x1000).is_ok());
    }

    #[test]
    fn span_limit_is_one_gib() {
        assert!(with_data_at(0x40_0000 + MAX_SPAN - 0x1000, 0x1000).is_ok());
        assert_eq!(
            with_data_at(0x40_0000 + MAX_SPAN, 0x1000),
            Err(ElfError::TooLarge {
                span: MAX_SPAN + 0x1000,
                limit: MAX_SPAN
            })
        );
    }

    #[test]
    fn messages_unchanged() {
        assert_eq!(
            reserved(3).unwrap_err().to_string(),
            "segment 3: overlaps the hypervisor's reserved range"
        );
        assert_eq!(
            ElfError::TooLarge {
                span: 0x4000_1000,
                limit: MAX_SPAN
            }
            .to_string(),
            "image spans 0x40001000 bytes (limit 0x40000000)"
        );
        assert_eq!(
            ElfError::EntryNotExecutable(0x40_1000).to_string(),
            "entry point Gva(0x401000) not in an executable segment"
        );
        assert_eq!(
            ElfError::WrongMachine(3).to_string(),
            "ELF machine 3 is not x86_64"
        );
    }
}
