//! Architecture support. Only x86_64 exists; all assembly of the hypervisor lives below this module.
pub mod x86_64;
pub use self::x86_64::*;
