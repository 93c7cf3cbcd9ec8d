//! Architecture support. Only x86_64 exists; all of the kernel's assembly lives below this module.
pub mod x86_64;
