//! Memory management: frames, page-table entries, guest page-table walks.

pub mod frame_alloc;
pub mod phys;
pub mod pte;
pub mod walk;
pub mod frame_table;
pub mod guest_mem;
pub mod audit;
