//! Memory management: frames, page-table entries, guest page-table walks.

pub mod audit;
pub mod frame_alloc;
pub mod frame_table;
pub mod guest_mem;
pub mod logdirty;
pub mod machine;
pub mod pcid;
pub mod phys;
pub mod pte;
pub mod ptval;
#[cfg(test)]
mod ptval_proptest;
pub mod recount;
pub mod walk;
