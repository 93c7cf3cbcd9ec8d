//! Architecture support. Only x86_64 exists; all assembly of the runtime lives below this module.
pub mod x86_64;
