//! Where the entry region and the per-CPU entry stacks appear in every address space.
//!
//! ```text
//! ENTRY_REGION_VA  (L4 slot 257, L3/L2 index 0; one L1 maps all of it)
//!   +0x000000  .entry.text   read-only, executable   (entry stubs, exit stub)
//!   +n*4K      .entry.data   read-only, no-execute   (IDT, GDT, TSS, entry words)
//! ENTRY_STACKS_VA = ENTRY_REGION_VA + 1 MiB
//!   slot k at +k*64K: one unmapped guard page, then the stack (read-write, no-execute)
//!   k = 0: entry stack (TSS.RSP0), 1 page
//!   k = 1..=4: IST stacks for #DF, NMI, #MC, #DB, 4 pages each
//! ```

use abi::layout::{ENTRY_REGION_VA, ENTRY_STACKS_VA};

/// Distance between stack slots.
pub const STACK_SLOT_STRIDE: u64 = 0x1_0000;
/// Number of stack slots (entry stack + 4 IST stacks).
pub const STACK_SLOTS: usize = 5;

/// Pages in stack slot `k`.
pub const fn stack_pages(k: usize) -> u64 {
    if k == 0 { 1 } else { 4 }
}

/// Lowest mapped address of stack slot `k`.
pub const fn stack_base(k: usize) -> u64 {
    ENTRY_STACKS_VA + k as u64 * STACK_SLOT_STRIDE + 0x1000
}

/// Top (initial RSP) of stack slot `k`.
pub const fn stack_top(k: usize) -> u64 {
    stack_base(k) + stack_pages(k) * 4096
}

/// Top of the entry stack (TSS.RSP0).
pub const fn entry_stack_top() -> u64 {
    stack_top(0)
}

unsafe extern "C" {
    static __entry_start: u8;
    static __entry_end: u8;
    static __entry_text_end: u8;
}

/// Image (physical = identity virtual) bounds of the entry region: (start, end of text, end).
pub fn entry_region_image() -> (u64, u64, u64) {
    (
        core::ptr::addr_of!(__entry_start) as u64,
        core::ptr::addr_of!(__entry_text_end) as u64,
        core::ptr::addr_of!(__entry_end) as u64,
    )
}

/// The alias address of an image address inside the entry region.
pub fn alias_of(image_addr: u64) -> u64 {
    let (start, _, end) = entry_region_image();
    debug_assert!((start..end).contains(&image_addr));
    ENTRY_REGION_VA + (image_addr - start)
}
