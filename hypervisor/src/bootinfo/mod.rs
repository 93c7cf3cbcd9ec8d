//! Boot information handed over by the boot loader.

pub mod multiboot;
