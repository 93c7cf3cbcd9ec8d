//! Validation and description of ELF64 x86_64 executables (placeholder: being moved here from the hypervisor).
#![no_std]
#![forbid(unsafe_code)]
