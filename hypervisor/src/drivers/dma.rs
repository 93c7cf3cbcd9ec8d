//! A region of hypervisor memory shared with a device (rings, buffers): bounds-checked volatile access
//! for the driver, and the physical addresses the device is given (the hypervisor's memory is identity
//! mapped, so a pointer's value is its physical address).

use super::virtq::Mem;

/// `len` bytes at `base`, owned by one driver and shared with its device.
pub struct DmaRegion {
    base: usize,
    len: usize,
}

impl DmaRegion {
    /// The region `base..base + len`.
    ///
    /// # Safety
    /// The bytes are valid for reads and writes for the rest of the hypervisor's life, identity mapped
    /// (virtual address = physical address), and reached by no Rust reference: only through this region
    /// (and the device), and no other `DmaRegion` covers them.
    pub unsafe fn new(base: *mut u8, len: usize) -> DmaRegion {
        DmaRegion {
            base: base as usize,
            len,
        }
    }

    /// Bytes in the region.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Is the region empty?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The physical address of byte `off`.
    pub fn phys(&self, off: usize) -> u64 {
        (self.base + off.min(self.len)) as u64
    }

    fn ok(&self, off: usize, n: usize) -> bool {
        off.checked_add(n).is_some_and(|end| end <= self.len)
    }

    /// Copy `data` to byte `off` (nothing if it does not fit).
    pub fn write_from(&mut self, off: usize, data: &[u8]) {
        if self.ok(off, data.len()) {
            // SAFETY: in bounds (checked); the region's bytes are ours (`new`'s contract) and `data` is
            // not among them (it is a Rust reference, which the contract excludes).
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    (self.base + off) as *mut u8,
                    data.len(),
                )
            }
        }
    }

    /// The `n` bytes at `off` (empty if out of bounds). The caller reads a buffer the device has given
    /// back; a device that keeps writing it can only change the bytes seen, never reach outside them.
    pub fn bytes(&self, off: usize, n: usize) -> &[u8] {
        if !self.ok(off, n) {
            return &[];
        }
        // SAFETY: in bounds (checked), valid for the hypervisor's life (`new`'s contract); no `&mut`
        // to these bytes exists (`write_from` takes `&mut self`, so not while this borrow lives).
        unsafe { core::slice::from_raw_parts((self.base + off) as *const u8, n) }
    }

    /// Zero the whole region.
    pub fn zero(&mut self) {
        // SAFETY: the whole region, ours (`new`'s contract).
        unsafe { core::ptr::write_bytes(self.base as *mut u8, 0, self.len) }
    }
}

impl Mem for DmaRegion {
    fn read16(&self, off: usize) -> u16 {
        self.load(off)
    }

    fn read32(&self, off: usize) -> u32 {
        self.load(off)
    }

    fn write16(&mut self, off: usize, v: u16) {
        self.store(off, v);
    }

    fn write32(&mut self, off: usize, v: u32) {
        self.store(off, v);
    }

    fn write64(&mut self, off: usize, v: u64) {
        self.store(off, v);
    }
}

impl DmaRegion {
    fn load<T: Copy + Default>(&self, off: usize) -> T {
        if !self.ok(off, size_of::<T>()) || !(self.base + off).is_multiple_of(align_of::<T>()) {
            return T::default();
        }
        // SAFETY: in bounds and aligned (checked), valid for the hypervisor's life (`new`'s contract);
        // volatile, as the device writes this memory.
        unsafe { core::ptr::read_volatile((self.base + off) as *const T) }
    }

    fn store<T: Copy>(&mut self, off: usize, v: T) {
        if self.ok(off, size_of::<T>()) && (self.base + off).is_multiple_of(align_of::<T>()) {
            // SAFETY: in bounds and aligned (checked); the region's bytes are ours (`new`'s contract);
            // volatile, as the device reads this memory.
            unsafe { core::ptr::write_volatile((self.base + off) as *mut T, v) }
        }
    }
}
