//! Architecture support of the user runtime. Only x86_64 exists; all assembly of the crate lives below
//! this module.
pub mod x86_64;
