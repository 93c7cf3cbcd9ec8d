//! `--kernel FILE`: what a kernel file is, read from its first bytes — an x86-64 ELF (its entry point),
//! a multiboot v1 header in its first 8 KiB (its flags and, with the a.out-kludge bit, its entry) — and
//! whether a mode can run it: native, emulate and hvm boot multiboot kernels; pv needs a PV ELF, which a
//! kernel entered only through its 32-bit multiboot entry is not.

use crate::mode::Mode;

/// The multiboot v1 header magic.
pub const MULTIBOOT_HEADER_MAGIC: u32 = 0x1bad_b002;
/// The header must lie in the file's first this many bytes (4-byte aligned).
pub const MULTIBOOT_SEARCH: usize = 8192;
/// Header flag bit 16: the address fields (a.out kludge) are valid.
pub const MULTIBOOT_AOUT_KLUDGE: u32 = 1 << 16;

/// A multiboot v1 header found in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultibootHeader {
    /// Its offset in the file.
    pub offset: usize,
    /// Its flags.
    pub flags: u32,
    /// The 32-bit entry point of the a.out-kludge fields, if the flags say they are valid.
    pub entry: Option<u32>,
}

/// What the first bytes of a kernel file say about it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFile {
    /// The ELF entry point, if it is a 64-bit little-endian x86-64 ELF.
    pub elf64_entry: Option<u64>,
    /// Its multiboot v1 header, if any (magic and checksum correct).
    pub multiboot: Option<MultibootHeader>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Reads what [`KernelFile`] describes from a file's bytes.
pub fn inspect(bytes: &[u8]) -> KernelFile {
    let elf64_entry = (bytes.get(..4) == Some(b"\x7fELF".as_slice())
        && bytes.get(4) == Some(&2)
        && bytes.get(5) == Some(&1)
        && bytes.get(18..20) == Some(62u16.to_le_bytes().as_slice()))
    .then(|| {
        bytes
            .get(24..32)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    })
    .flatten();
    let end = bytes.len().min(MULTIBOOT_SEARCH);
    let multiboot = (0..end.saturating_sub(11)).step_by(4).find_map(|offset| {
        let magic = u32_at(bytes, offset)?;
        let flags = u32_at(bytes, offset + 4)?;
        let checksum = u32_at(bytes, offset + 8)?;
        if magic != MULTIBOOT_HEADER_MAGIC || magic.wrapping_add(flags).wrapping_add(checksum) != 0
        {
            return None;
        }
        let entry = if flags & MULTIBOOT_AOUT_KLUDGE != 0 {
            u32_at(bytes, offset + 28)
        } else {
            None
        };
        Some(MultibootHeader {
            offset,
            flags,
            entry,
        })
    });
    KernelFile {
        elf64_entry,
        multiboot,
    }
}

/// Whether `mode` can run the kernel `file` (named `name` in the message): `Err` says why not.
pub fn check(mode: Mode, name: &str, file: &KernelFile) -> Result<(), String> {
    match mode {
        Mode::Native | Mode::Emulate | Mode::Hvm => {
            if file.multiboot.is_none() {
                return Err(format!(
                    "{name} has no multiboot v1 header in its first {MULTIBOOT_SEARCH} bytes: --mode {mode} \
                     boots multiboot kernels"
                ));
            }
            if file.elf64_entry.is_some()
                && file
                    .multiboot
                    .is_some_and(|h| h.flags & MULTIBOOT_AOUT_KLUDGE == 0)
            {
                return Err(format!(
                    "{name} is an ELF64 whose multiboot header lacks the a.out-kludge address fields (flag \
                     bit 16), without which QEMU's multiboot loader refuses an ELF64 image"
                ));
            }
            Ok(())
        }
        Mode::Pv => {
            let Some(entry) = file.elf64_entry else {
                return Err(format!(
                    "{name} is not an x86-64 ELF: --mode pv runs PV kernels (an ELF64 entered in 64-bit \
                     mode with start_info, like ring1pv's guest kernel); use --mode native, emulate or hvm \
                     for a multiboot kernel"
                ));
            };
            match file.multiboot.and_then(|h| h.entry) {
                Some(mb) if u64::from(mb) == entry => Err(format!(
                    "{name}'s ELF entry ({entry:#x}) is its 32-bit multiboot entry: it is a multiboot \
                     kernel, not a PV kernel; use --mode native, emulate or hvm"
                )),
                _ => Ok(()),
            }
        }
    }
}

/// Reads `path` and checks it for `mode` ([`check`]).
pub fn check_path(mode: Mode, path: &std::path::Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("--kernel {}: {e}", path.display()))?;
    check(mode, &path.display().to_string(), &inspect(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake ELF64 (x86-64) with entry `entry` and a multiboot header at 0x1000 with `flags` (and the
    /// a.out-kludge entry `mb_entry`).
    fn image(elf: bool, entry: u64, flags: Option<u32>, mb_entry: u32) -> Vec<u8> {
        let mut v = vec![0u8; 0x2000];
        if elf {
            v[..4].copy_from_slice(b"\x7fELF");
            v[4] = 2;
            v[5] = 1;
            v[18..20].copy_from_slice(&62u16.to_le_bytes());
            v[24..32].copy_from_slice(&entry.to_le_bytes());
        }
        if let Some(flags) = flags {
            let at = 0x1000;
            let sum = 0u32.wrapping_sub(MULTIBOOT_HEADER_MAGIC.wrapping_add(flags));
            for (i, w) in [MULTIBOOT_HEADER_MAGIC, flags, sum].iter().enumerate() {
                v[at + 4 * i..at + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
            }
            v[at + 28..at + 32].copy_from_slice(&mb_entry.to_le_bytes());
        }
        v
    }

    #[test]
    fn a_multiboot_only_kernel_runs_natively_and_fully_virtualized_but_not_as_pv() {
        let mini = inspect(&image(true, 0x10_0040, Some(0x1_0003), 0x10_0040));
        assert_eq!(mini.elf64_entry, Some(0x10_0040));
        assert_eq!(
            mini.multiboot,
            Some(MultibootHeader {
                offset: 0x1000,
                flags: 0x1_0003,
                entry: Some(0x10_0040)
            })
        );
        for mode in [Mode::Native, Mode::Emulate, Mode::Hvm] {
            assert_eq!(check(mode, "mini", &mini), Ok(()));
        }
        let err = check(Mode::Pv, "mini", &mini).unwrap_err();
        assert!(err.contains("multiboot kernel, not a PV kernel"), "{err}");
    }

    #[test]
    fn ring1pvs_guest_kernel_runs_everywhere() {
        // Its ELF entry is the PV `_start`; the multiboot header names `_start32`.
        let guest = inspect(&image(
            true,
            0xffff_ffff_8000_0010,
            Some(0x1_0003),
            0x20_0100,
        ));
        for mode in Mode::ALL {
            assert_eq!(check(mode, "guest", &guest), Ok(()), "{mode}");
        }
    }

    #[test]
    fn refusals() {
        let plain_elf = inspect(&image(true, 0x40_0000, None, 0));
        assert!(
            check(Mode::Hvm, "f", &plain_elf)
                .unwrap_err()
                .contains("no multiboot")
        );
        assert_eq!(check(Mode::Pv, "f", &plain_elf), Ok(()));
        let no_kludge = inspect(&image(true, 0x40_0000, Some(0x3), 0));
        assert!(
            check(Mode::Native, "f", &no_kludge)
                .unwrap_err()
                .contains("a.out-kludge")
        );
        let raw = inspect(&image(false, 0, Some(0x1_0003), 0x10_0000));
        assert_eq!(raw.elf64_entry, None);
        assert_eq!(check(Mode::Emulate, "f", &raw), Ok(()));
        assert!(
            check(Mode::Pv, "f", &raw)
                .unwrap_err()
                .contains("not an x86-64 ELF")
        );
        // A header with a bad checksum is no header; nor is one past 8 KiB; empty files are nothing.
        let mut bad = image(false, 0, Some(0x1_0003), 0);
        bad[0x1008] ^= 1;
        assert_eq!(inspect(&bad).multiboot, None);
        let mut late = vec![0u8; 0x2000];
        late.extend(image(false, 0, Some(0x1_0003), 0));
        assert_eq!(inspect(&late).multiboot, None);
        assert_eq!(inspect(&[]), KernelFile::default());
    }
}
