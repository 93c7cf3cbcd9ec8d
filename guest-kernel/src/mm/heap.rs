//! The kernel heap: `linked_list_allocator` (first fit over a list of free blocks, no dependencies, the
//! allocator of the "Writing an OS in Rust" series) over pages the boot code takes from the page allocator
//! and reaches through the physmap. The kernel allocates little (address-space bookkeeping), so a simple
//! first-fit list is plenty; the `Heap` sits behind a spinlock (one vCPU, no interrupts in the kernel yet).
//!
//! Before [`init`] every allocation fails (returns null, which `alloc` turns into a panic).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{NonNull, null_mut};

use linked_list_allocator::Heap;

/// The global allocator of the bare-metal kernel.
pub struct KernelHeap(spin::Mutex<Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(spin::Mutex::new(Heap::empty()));

// SAFETY: allocation and deallocation are delegated to `linked_list_allocator::Heap` under a lock, which
// hands out non-overlapping blocks of at least the requested size and alignment from its region.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the caller (GlobalAlloc's contract) passes a block this allocator returned for `layout`.
            unsafe { self.0.lock().deallocate(p, layout) }
        }
    }
}

/// Give the heap its memory.
///
/// # Safety
/// `start..start + size` must be writable memory used by nothing else, for the kernel's lifetime; call once.
pub unsafe fn init(start: *mut u8, size: usize) {
    // SAFETY: the caller guarantees the region.
    unsafe { HEAP.0.lock().init(start, size) }
}

/// `(used, free)` bytes of the heap.
pub fn usage() -> (usize, usize) {
    let h = HEAP.0.lock();
    (h.used(), h.free())
}
