//! Loading guest images.

pub mod elf;
pub mod multiboot_image;
