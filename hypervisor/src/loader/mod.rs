//! Loading guest images.

pub mod elf;
