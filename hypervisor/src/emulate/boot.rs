//! Building an emulate domain's start of day in guest-physical memory: the kernel image at its multiboot
//! load address, the multiboot information and command line, and the boot page tables the documented
//! 64-bit entry (`_start64`, docs/ARCHITECTURE.md "The native backend") requires, in memory the kernel
//! does not manage. The entry is found by the ELF symbol `_start64` in the image's symbol table.
//!
//! Guest-physical layout (below the image, which a native kernel following the protocol does not manage):
//!
//! ```text
//! 0x0000_9000  multiboot information, its memory map and the command line (`loader::multiboot_image::
//!              write_info`: flags MEM | CMDLINE | MMAP; the command line is at most CMDLINE_MAX bytes, so
//!              all of it ends below 0x10000)
//! 0x0001_0000  boot page tables (L4 first, at most BOOT_TABLE_FRAMES frames)
//! load_phys    the image (`loader::multiboot_image::load`), bss zeroed
//! ```
//!
//! The image is parsed and loaded by `loader::multiboot_image` (shared with the hvm kind); this file adds
//! what only the 64-bit entry needs: the `_start64` address (`MultibootImage::entry64`), the image's link
//! offset and the boot tables.
#![forbid(unsafe_code)]

use crate::loader::multiboot_image::{self as mbi, GuestPhysWrite, LoadError};

/// Where the multiboot information goes.
pub const INFO_GPA: u64 = mbi::INFO_ADDR as u64;
/// Longest command line (with its NUL): the information, map and line end well below the boot tables.
pub const CMDLINE_MAX: usize = 0x1000;
/// The boot L4.
pub const BOOT_TABLES_GPA: u64 = 0x1_0000;
/// Frames reserved for the boot tables.
pub const BOOT_TABLE_FRAMES: u64 = 16;
/// The multiboot magic the entry gets in RDI.
pub const MULTIBOOT_MAGIC: u64 = 0x2bad_b002;
/// The physmap (L4 slot 273) and direct map (slot 272) bases of the documented entry state.
pub const PHYSMAP_VA: u64 = 0xffff_8880_0000_0000;
/// Direct map base.
pub const DIRECT_MAP_VA: u64 = 0xffff_8800_0000_0000;

/// Why an image cannot be started as an emulate domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The multiboot loader refused the image.
    Load(LoadError),
    /// No `_start64` symbol in the image's ELF symbol table.
    NoEntry64,
    /// The image does not fit in the domain's memory (or overlaps the boot area below 1 MiB).
    TooBig,
    /// The command line is too long.
    CmdlineTooLong,
    /// The image's link address is not 2 MiB-aligned with its load address.
    Unaligned,
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BootError::Load(e) => return write!(f, "{e}"),
            BootError::NoEntry64 => "no _start64 symbol (the 64-bit entry of the emulate protocol)",
            BootError::TooBig => "image does not fit in the domain's memory",
            BootError::CmdlineTooLong => "command line too long",
            BootError::Unaligned => "image link address not 2 MiB-aligned with its load address",
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The virtual address of the image's first byte: the lowest PT_LOAD's `p_vaddr` (its link address).
pub fn link_base(image: &[u8]) -> Option<u64> {
    let phoff = usize::try_from(u64_at(image, 0x20)?).ok()?;
    let phentsize = usize::from(u16_at(image, 0x36)?);
    let phnum = usize::from(u16_at(image, 0x38)?);
    (0..phnum)
        .filter_map(|i| {
            let p = phoff.checked_add(i.checked_mul(phentsize)?)?;
            (u32_at(image, p)? == 1)
                .then(|| u64_at(image, p + 0x10))
                .flatten()
        })
        .min()
}

/// Where guest memory is written during the build.
pub trait PhysWrite {
    /// Write `bytes` at guest-physical `gpa` (inside the domain's memory).
    fn write(&mut self, gpa: u64, bytes: &[u8]);
}

/// The result of a build: the entry state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `_start64`'s virtual address.
    pub rip: u64,
    /// The multiboot magic (RDI).
    pub rdi: u64,
    /// The multiboot information's physical address (RSI).
    pub rsi: u64,
    /// The boot L4's guest-physical address (CR3).
    pub cr3: u64,
    /// Physical end of the image's bss.
    pub image_end: u64,
}

/// Lay out the start of day for a domain of `pages` 4 KiB frames (guest memory is zero on entry).
pub fn build(
    mem: &mut dyn PhysWrite,
    image: &[u8],
    pages: u64,
    cmdline: &str,
) -> Result<Entry, BootError> {
    struct W<'a>(&'a mut dyn PhysWrite);
    impl GuestPhysWrite for W<'_> {
        fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), LoadError> {
            self.0.write(gpa, bytes);
            Ok(())
        }
    }
    let size = pages * 4096;
    if cmdline.len() + 1 > CMDLINE_MAX {
        return Err(BootError::CmdlineTooLong);
    }
    let m = mbi::parse(image).map_err(BootError::Load)?;
    let rip = m.entry64.ok_or(BootError::NoEntry64)?;
    let base = link_base(image).ok_or(BootError::NoEntry64)?;
    let load = u64::from(m.load_phys);
    let bss_end = m.end();
    if bss_end > size {
        return Err(BootError::TooBig);
    }
    let offset = base.wrapping_sub(load);
    if offset % (2 << 20) != 0 || load % (2 << 20) != 0 {
        return Err(BootError::Unaligned);
    }
    let st = mbi::load_multiboot(image, &mut W(&mut *mem), size, cmdline).map_err(|e| match e {
        LoadError::BeyondMemory { .. } | LoadError::OverlapsLowArea { .. } => BootError::TooBig,
        e => BootError::Load(e),
    })?;
    // Guest memory is zero: only the entries are written (the table set is small and kept off the stack).
    let mut t = Tables {
        next: 1,
        links: [(0, 0, 0); 32],
        nlinks: 0,
    };
    let ram_2m = size.div_ceil(2 << 20) * (2 << 20);
    let mut pa = 0;
    while pa < ram_2m.min(1 << 30) {
        t.map_2m(mem, pa, pa).ok_or(BootError::TooBig)?;
        t.map_2m(mem, PHYSMAP_VA + pa, pa)
            .ok_or(BootError::TooBig)?;
        t.map_2m(mem, DIRECT_MAP_VA + pa, pa)
            .ok_or(BootError::TooBig)?;
        pa += 2 << 20;
    }
    let mut pa = load;
    while pa < bss_end {
        t.map_2m(mem, pa.wrapping_add(offset), pa)
            .ok_or(BootError::TooBig)?;
        pa += 2 << 20;
    }
    Ok(Entry {
        rip,
        rdi: MULTIBOOT_MAGIC,
        rsi: u64::from(st.ebx),
        cr3: BOOT_TABLES_GPA,
        image_end: bss_end,
    })
}

/// The boot tables being built: frame k is at `BOOT_TABLES_GPA + k × 4096` (0 is the L4); `links` records
/// which (table, index) already points at which child table.
struct Tables {
    next: u64,
    links: [(u64, usize, u64); 32],
    nlinks: usize,
}

impl Tables {
    fn entry(mem: &mut dyn PhysWrite, table: u64, idx: usize, v: u64) {
        mem.write(
            BOOT_TABLES_GPA + 4096 * table + 8 * idx as u64,
            &v.to_le_bytes(),
        );
    }

    fn map_2m(&mut self, mem: &mut dyn PhysWrite, va: u64, pa: u64) -> Option<()> {
        let mut table = 0;
        for level in [4u32, 3] {
            let i = ((va >> (12 + 9 * (level - 1))) & 511) as usize;
            table = match self.links[..self.nlinks]
                .iter()
                .find(|l| l.0 == table && l.1 == i)
            {
                Some(l) => l.2,
                None => {
                    if self.next >= BOOT_TABLE_FRAMES || self.nlinks >= self.links.len() {
                        return None;
                    }
                    let n = self.next;
                    self.next += 1;
                    self.links[self.nlinks] = (table, i, n);
                    self.nlinks += 1;
                    Self::entry(mem, table, i, (BOOT_TABLES_GPA + 4096 * n) | 3);
                    n
                }
            };
        }
        Self::entry(mem, table, ((va >> 21) & 511) as usize, pa | 0x83);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<u8>);
    impl PhysWrite for Mem {
        fn write(&mut self, gpa: u64, bytes: &[u8]) {
            self.0[gpa as usize..gpa as usize + bytes.len()].copy_from_slice(bytes);
        }
    }

    /// A minimal ELF64 with a multiboot header at file offset 0x1000 (the first byte of the one PT_LOAD,
    /// linked at `link`, loaded at 2 MiB) and a symbol table naming `_start64` at `link + 0x40`.
    fn image(link: u64) -> Vec<u8> {
        let mut f = vec![0u8; 0x3000];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes()); // phoff
        f[0x28..0x30].copy_from_slice(&0x2000u64.to_le_bytes()); // shoff
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        // PT_LOAD at file 0x1000, vaddr link.
        f[0x40..0x44].copy_from_slice(&1u32.to_le_bytes());
        f[0x48..0x50].copy_from_slice(&0x1000u64.to_le_bytes());
        f[0x50..0x58].copy_from_slice(&link.to_le_bytes());
        // Multiboot header at 0x1000: load 2 MiB .. +0x800, bss to +0x3000.
        let mb = [
            0x1bad_b002u32,
            0x0001_0003,
            0u32.wrapping_sub(0x1bad_b002 + 0x0001_0003),
            0x20_0000,
            0x20_0000,
            0x20_0800,
            0x20_3000,
            0x20_0020,
        ];
        for (i, w) in mb.iter().enumerate() {
            f[0x1000 + 4 * i..0x1004 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        f[0x1040] = 0xcc;
        // Sections: 0 null, 1 symtab (at 0x2200, link 2), 2 strtab (at 0x2300).
        let sh =
            |f: &mut Vec<u8>, i: usize, typ: u32, off: u64, size: u64, link: u32, entsize: u64| {
                let s = 0x2000 + 64 * i;
                f[s + 4..s + 8].copy_from_slice(&typ.to_le_bytes());
                f[s + 0x18..s + 0x20].copy_from_slice(&off.to_le_bytes());
                f[s + 0x20..s + 0x28].copy_from_slice(&size.to_le_bytes());
                f[s + 0x28..s + 0x2c].copy_from_slice(&link.to_le_bytes());
                f[s + 0x38..s + 0x40].copy_from_slice(&entsize.to_le_bytes());
            };
        sh(&mut f, 1, 2, 0x2200, 72, 2, 24);
        sh(&mut f, 2, 3, 0x2300, 32, 0, 0);
        f[0x2300..0x2312].copy_from_slice(b"\0_start32\0_start64");
        // Symbol 1: _start32 (name 1), symbol 2: _start64 (name 10).
        f[0x2218..0x221c].copy_from_slice(&1u32.to_le_bytes());
        f[0x2220..0x2228].copy_from_slice(&0x20_0020u64.to_le_bytes());
        f[0x2230..0x2234].copy_from_slice(&10u32.to_le_bytes());
        f[0x2238..0x2240].copy_from_slice(&(link + 0x40).to_le_bytes());
        f
    }

    fn read_u64(m: &Mem, a: u64) -> u64 {
        u64::from_le_bytes(m.0[a as usize..a as usize + 8].try_into().unwrap())
    }

    /// Walk the boot tables like a CPU (2 MiB leaves).
    fn translate(m: &Mem, va: u64) -> Option<u64> {
        let mut t = BOOT_TABLES_GPA;
        for level in [4u32, 3, 2] {
            let e = read_u64(m, t + 8 * ((va >> (12 + 9 * (level - 1))) & 511));
            if e & 1 == 0 {
                return None;
            }
            if level == 2 {
                assert_ne!(e & 0x80, 0);
                return Some((e & 0x000f_ffff_ffe0_0000) + (va & 0x1f_ffff));
            }
            t = e & 0x000f_ffff_ffff_f000;
        }
        None
    }

    #[test]
    fn builds_the_documented_entry_state() {
        let link = 0xffff_ffff_8000_0000;
        let img = image(link);
        let mut m = Mem(vec![0; 16 << 20]);
        let e = build(&mut m, &img, 4096, "guest-kernel shell").unwrap();
        assert_eq!(
            e,
            Entry {
                rip: link + 0x40,
                rdi: 0x2bad_b002,
                rsi: INFO_GPA,
                cr3: BOOT_TABLES_GPA,
                image_end: 0x20_3000
            }
        );
        assert_eq!(m.0[0x20_0040], 0xcc);
        let cmdline = u32::from_le_bytes(m.0[0x9010..0x9014].try_into().unwrap()) as usize;
        assert!(cmdline > 0x9000 && cmdline < 0x1_0000);
        assert_eq!(&m.0[cmdline..cmdline + 19], b"guest-kernel shell\0");
        // flags, mem_upper, cmdline
        assert_eq!(
            u32::from_le_bytes(m.0[0x9000..0x9004].try_into().unwrap()),
            0x45
        );
        assert_eq!(
            u32::from_le_bytes(m.0[0x9008..0x900c].try_into().unwrap()),
            15 * 1024
        );
        // image at its link address, RAM at the physmap, the direct map and identity.
        assert_eq!(translate(&m, link + 0x40), Some(0x20_0040));
        assert_eq!(translate(&m, PHYSMAP_VA + 0x9000), Some(0x9000));
        assert_eq!(translate(&m, DIRECT_MAP_VA + 0xf0_0000), Some(0xf0_0000));
        assert_eq!(translate(&m, 0x1234), Some(0x1234));
        // Nothing beyond the domain's RAM (rounded to 2 MiB).
        assert_eq!(translate(&m, PHYSMAP_VA + (16 << 20)), None);
    }

    #[test]
    fn refuses_bad_images() {
        let mut m = Mem(vec![0; 16 << 20]);
        assert!(matches!(
            build(&mut m, &[0u8; 100], 4096, ""),
            Err(BootError::Load(_))
        ));
        let mut img = image(0xffff_ffff_8000_0000);
        assert_eq!(build(&mut m, &img, 256, ""), Err(BootError::TooBig));
        assert_eq!(
            build(&mut m, &image(0xffff_ffff_8010_0000), 4096, ""),
            Err(BootError::Unaligned)
        );
        img[0x2310] = b'X';
        assert_eq!(build(&mut m, &img, 4096, ""), Err(BootError::NoEntry64));
        let img = image(0xffff_ffff_8000_0000);
        assert_eq!(
            build(&mut m, &img, 4096, &"x".repeat(5000)),
            Err(BootError::CmdlineTooLong)
        );
    }
}

#[cfg(test)]
mod real_image {
    /// The real guest kernel, when the workspace has built it: its header, symbol and link base.
    #[test]
    fn the_guest_kernel_follows_the_protocol() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/guest/x86_64-unknown-linux-gnu/release/guest-kernel"
        );
        let Ok(img) = std::fs::read(path) else {
            eprintln!("{path} not built: skipped");
            return;
        };
        let m = super::mbi::parse(&img).unwrap();
        assert_eq!(m.load_phys, 0x20_0000);
        assert_eq!(super::link_base(&img), Some(0xffff_ffff_8000_0000));
        assert!(m.entry64.unwrap() > 0xffff_ffff_8000_0000);
    }
}
