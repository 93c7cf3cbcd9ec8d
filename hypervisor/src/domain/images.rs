//! Available images: kernel images the hypervisor keeps so the control domain can create domains from
//! them at run time (`XEN_DOMCTL_createdomain`, abi deviation n).
//!
//! A boot module whose command line contains the word `image=NAME` is not started as a domain: its
//! frames stay reserved for the hypervisor's whole life and it is registered here under `NAME` (1 to
//! [`IMAGE_NAME_MAX`] characters from `a-z 0-9 - _ .`). At most [`MAX_IMAGES`] are kept; a duplicate or
//! malformed name is a boot error. `cargo xtask run` passes the guest kernel as image `guest`.

use abi::domctl::{IMAGE_NAME_MAX, MAX_IMAGES};
use abi::types::Maddr;

/// One kept image: its name and where its bytes are (machine addresses, identity mapped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The name `createdomain` asks for.
    pub name: heapless::String<IMAGE_NAME_MAX>,
    /// First byte.
    pub start: Maddr,
    /// One past the last byte.
    pub end: Maddr,
}

/// Why a module could not be kept as an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// `image=` with an empty, too long or badly formed name.
    BadName,
    /// The name is taken.
    Duplicate,
    /// More than [`MAX_IMAGES`].
    TooMany,
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ImageError::BadName => write!(
                f,
                "bad image name (1 to {IMAGE_NAME_MAX} characters from a-z 0-9 - _ .)"
            ),
            ImageError::Duplicate => f.write_str("an image with this name exists"),
            ImageError::TooMany => write!(f, "more than {MAX_IMAGES} images"),
        }
    }
}

/// The `image=NAME` word of a module's command line: `None` if there is none (the module is a domain),
/// `Some(Err)` if the name is malformed. Pure.
pub fn image_word(cmdline: &str) -> Option<Result<&str, ImageError>> {
    let name = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("image="))?;
    let ok = (1..=IMAGE_NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    Some(if ok {
        Ok(name)
    } else {
        Err(ImageError::BadName)
    })
}

/// The kept images.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Images {
    list: heapless::Vec<Image, MAX_IMAGES>,
}

impl Images {
    /// None kept.
    pub const fn new() -> Images {
        Images {
            list: heapless::Vec::new(),
        }
    }

    /// Keep `start..end` as image `name`.
    pub fn add(&mut self, name: &str, start: Maddr, end: Maddr) -> Result<(), ImageError> {
        if self.find(name).is_some() {
            return Err(ImageError::Duplicate);
        }
        let name = heapless::String::try_from(name).map_err(|_| ImageError::BadName)?;
        self.list
            .push(Image { name, start, end })
            .map_err(|_| ImageError::TooMany)
    }

    /// The image called `name`.
    pub fn find(&self, name: &str) -> Option<&Image> {
        self.list.iter().find(|i| i.name == name)
    }

    /// Every kept image.
    pub fn iter(&self) -> impl Iterator<Item = &Image> {
        self.list.iter()
    }
}

/// The images kept at boot (written once by `setup`, read by `domain::control`).
pub static IMAGES: spin::Mutex<Images> = spin::Mutex::new(Images::new());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_words() {
        assert_eq!(image_word("demo"), None);
        assert_eq!(image_word("test=x loglevel=info"), None);
        assert_eq!(image_word("image=guest"), Some(Ok("guest")));
        assert_eq!(image_word("foo image=ping-2.0_x"), Some(Ok("ping-2.0_x")));
        for bad in [
            "image=",
            "image=Guest",
            "image=a/b",
            "image=12345678901234567",
            "image=é",
        ] {
            assert_eq!(image_word(bad), Some(Err(ImageError::BadName)), "{bad}");
        }
        assert_eq!(
            image_word("image=1234567890123456"),
            Some(Ok("1234567890123456"))
        );
    }

    #[test]
    fn a_bounded_registry_of_unique_names() {
        let mut r = Images::new();
        r.add("guest", Maddr(0x10_0000), Maddr(0x20_0000)).unwrap();
        assert_eq!(
            r.add("guest", Maddr(0), Maddr(1)),
            Err(ImageError::Duplicate)
        );
        for i in 1..MAX_IMAGES {
            r.add(&format!("g{i}"), Maddr(0), Maddr(1)).unwrap();
        }
        assert_eq!(r.add("more", Maddr(0), Maddr(1)), Err(ImageError::TooMany));
        assert_eq!(r.find("guest").unwrap().end, Maddr(0x20_0000));
        assert!(r.find("nope").is_none());
        assert_eq!(r.iter().count(), MAX_IMAGES);
    }
}
