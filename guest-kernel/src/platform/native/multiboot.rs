//! The multiboot v1 information the loader passes to the native entry (only the fields the kernel uses:
//! flags, the memory sizes and the command line). Pure: the backend copies the first words out of memory.

/// `flags` bit: `mem_lower`/`mem_upper` are valid.
pub const FLAG_MEMORY: u32 = 1 << 0;
/// `flags` bit: `cmdline` is valid.
pub const FLAG_CMDLINE: u32 = 1 << 2;
/// Words of the structure read: flags, mem_lower, mem_upper, boot_device, cmdline.
pub const WORDS: usize = 5;

/// What the kernel takes from the multiboot information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// KiB of memory above 1 MiB (contiguous), if the loader said.
    pub mem_upper_kib: Option<u32>,
    /// Physical address of the NUL-terminated command line, if any.
    pub cmdline: Option<u32>,
}

impl Info {
    /// Decode the first [`WORDS`] words.
    pub const fn parse(words: [u32; WORDS]) -> Info {
        let flags = words[0];
        Info {
            mem_upper_kib: if flags & FLAG_MEMORY != 0 {
                Some(words[2])
            } else {
                None
            },
            cmdline: if flags & FLAG_CMDLINE != 0 && words[4] != 0 {
                Some(words[4])
            } else {
                None
            },
        }
    }

    /// 4 KiB pages of RAM from physical 0 to the end of the memory above 1 MiB (0 if unknown).
    pub const fn memory_pages(&self) -> u64 {
        match self.mem_upper_kib {
            Some(kib) => (1024 + kib as u64) / 4,
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_count_only_when_flagged() {
        let i = Info::parse([FLAG_MEMORY | FLAG_CMDLINE, 639, 523_136, 0, 0x9000]);
        assert_eq!(i.mem_upper_kib, Some(523_136));
        assert_eq!(i.cmdline, Some(0x9000));
        // 512 MiB machine: 1 MiB + 511 MiB (minus what the BIOS keeps at the top).
        assert_eq!(i.memory_pages(), (1024 + 523_136) / 4);

        let none = Info::parse([0, 639, 523_136, 0, 0x9000]);
        assert_eq!(none.mem_upper_kib, None);
        assert_eq!(none.cmdline, None);
        assert_eq!(none.memory_pages(), 0);

        let null_cmdline = Info::parse([FLAG_CMDLINE, 0, 0, 0, 0]);
        assert_eq!(
            null_cmdline.cmdline, None,
            "a null pointer is no command line"
        );
    }
}
