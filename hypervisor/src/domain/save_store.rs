//! The image store's bookkeeping (pure): saved images by name, each a run of contiguous hypervisor-owned
//! frames, at most [`MAX_SAVED_IMAGES`] of them and [`SAVED_IMAGES_MAX_FRAMES`] frames together. The frames
//! themselves are allocated, written and freed by `domain::save`.

use abi::domctl::{MAX_SAVED_IMAGES, SAVED_IMAGES_MAX_FRAMES, SAVED_NAME_MAX, SavedImageInfo};
use abi::errno::Errno;
use abi::types::Mfn;

/// One stored image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its name.
    pub name: heapless::String<SAVED_NAME_MAX>,
    /// First frame of its run.
    pub first: Mfn,
    /// Frames in the run.
    pub frames: u64,
    /// Bytes of the image (from the start of the run).
    pub len: usize,
    /// Pages of the saved domain.
    pub pages: u64,
    /// The domain it was saved from.
    pub source: u16,
}

/// The stored images.
pub struct Store {
    slots: [Option<Stored>; MAX_SAVED_IMAGES],
}

/// A name the store takes: 1..=16 bytes of letters, digits, `-`, `_` or `.`.
pub fn valid_name(b: &[u8]) -> Result<&str, Errno> {
    let ok = !b.is_empty()
        && b.len() <= SAVED_NAME_MAX
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c));
    if !ok {
        return Err(Errno::EINVAL);
    }
    core::str::from_utf8(b).map_err(|_| Errno::EINVAL)
}

/// The `restore=NAME` word of a boot module's command line (the module is a save image to restore at
/// boot: `cargo xtask run --restore FILE`), if any.
pub fn restore_word(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("restore="))
}

impl Store {
    /// No image.
    pub const fn new() -> Store {
        Store {
            slots: [const { None }; MAX_SAVED_IMAGES],
        }
    }

    /// The image called `name`.
    pub fn find(&self, name: &str) -> Option<&Stored> {
        self.slots.iter().flatten().find(|s| s.name == name)
    }

    /// Frames all images take.
    pub fn frames(&self) -> u64 {
        self.slots.iter().flatten().map(|s| s.frames).sum()
    }

    /// Whether an image of `frames` frames called `name` may be added: `-EEXIST` for a name in use,
    /// `-ENOSPC` when the store is full (count or frames).
    pub fn check_room(&self, name: &str, frames: u64) -> Result<(), Errno> {
        if self.find(name).is_some() {
            return Err(Errno::EEXIST);
        }
        if self.slots.iter().all(Option::is_some)
            || self.frames().saturating_add(frames) > SAVED_IMAGES_MAX_FRAMES
        {
            return Err(Errno::ENOSPC);
        }
        Ok(())
    }

    /// Add an image (after [`Store::check_room`]).
    pub fn insert(&mut self, s: Stored) -> Result<(), Errno> {
        self.check_room(&s.name, s.frames)?;
        let slot = self
            .slots
            .iter_mut()
            .find(|x| x.is_none())
            .ok_or(Errno::ENOSPC)?;
        *slot = Some(s);
        Ok(())
    }

    /// Take the image called `name` out (its frames are the caller's to free).
    pub fn remove(&mut self, name: &str) -> Option<Stored> {
        self.slots
            .iter_mut()
            .find(|x| x.as_ref().is_some_and(|s| s.name == name))?
            .take()
    }

    /// The images as `xl images` lists them.
    pub fn list(&self) -> impl Iterator<Item = SavedImageInfo> + '_ {
        self.slots.iter().flatten().map(|s| {
            let mut i = SavedImageInfo {
                bytes: s.len as u64,
                pages: s.pages,
                source: u32::from(s.source),
                ..SavedImageInfo::default()
            };
            i.name[..s.name.len()].copy_from_slice(s.name.as_bytes());
            i
        })
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, frames: u64) -> Stored {
        Stored {
            name: heapless::String::try_from(name).unwrap(),
            first: Mfn(0x100),
            frames,
            len: 4096,
            pages: 1,
            source: 3,
        }
    }

    #[test]
    fn restore_words() {
        assert_eq!(restore_word("restore=snap-1"), Some("snap-1"));
        assert_eq!(restore_word("x restore=a y"), Some("a"));
        assert_eq!(restore_word("image=guest"), None);
        assert_eq!(
            restore_word("restore="),
            Some(""),
            "refused later by valid_name"
        );
    }

    #[test]
    fn names_limits_and_removal() {
        let mut s = Store::new();
        assert_eq!(valid_name(b"snap-1.x_y"), Ok("snap-1.x_y"));
        for bad in [&b""[..], b"a b", b"x/y", b"seventeen-bytes!!", b"\xff"] {
            assert_eq!(valid_name(bad), Err(Errno::EINVAL), "{bad:?}");
        }
        s.insert(img("a", 10)).unwrap();
        assert_eq!(s.insert(img("a", 1)), Err(Errno::EEXIST));
        assert_eq!(
            s.check_room("b", SAVED_IMAGES_MAX_FRAMES - 9),
            Err(Errno::ENOSPC)
        );
        s.check_room("b", SAVED_IMAGES_MAX_FRAMES - 10).unwrap();
        for i in 1..MAX_SAVED_IMAGES {
            s.insert(img(&std::format!("i{i}"), 1)).unwrap();
        }
        assert_eq!(s.insert(img("full", 1)), Err(Errno::ENOSPC));
        assert_eq!(s.list().count(), MAX_SAVED_IMAGES);
        let first = s.list().next().unwrap();
        assert_eq!(
            (&first.name[..2], first.bytes, first.source),
            (&b"a\0"[..], 4096, 3)
        );
        assert_eq!(s.remove("a").map(|x| x.frames), Some(10));
        assert_eq!(s.remove("a"), None);
        assert_eq!(s.frames(), (MAX_SAVED_IMAGES - 1) as u64);
        s.insert(img("full", 1)).unwrap();
    }
}
