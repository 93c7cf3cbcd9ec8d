//! The machine-wide memory state the hypercalls work on: free frames, the frame table, the M2P table.
//!
//! Grouped so a hypercall takes one lock and sees one consistent picture, and so the hypercall families can
//! be tested on the host with the same structure the hypervisor uses.

use abi::mm::INVALID_M2P_ENTRY;
use abi::types::{Mfn, Pfn};

use super::frame_alloc::FrameAllocator;
use super::frame_table::FrameTable;

/// The machine-to-physical table: `m2p[mfn]` = the owner's pfn for that frame. The hypervisor writes it
/// (through its own mapping) and every guest reads it through a read-only mapping at
/// `abi::mm::RO_MPT_VIRT_START`.
pub struct M2p<'a> {
    table: &'a mut [u64],
}

impl<'a> M2p<'a> {
    /// A table over `table.len()` frames, every entry invalid.
    pub fn new(table: &'a mut [u64]) -> Self {
        table.fill(INVALID_M2P_ENTRY);
        M2p { table }
    }

    /// Record that `mfn` is pfn `pfn` of its owner (ignored for frames beyond the table).
    pub fn set(&mut self, mfn: Mfn, pfn: Pfn) {
        if let Some(e) = usize::try_from(mfn.0)
            .ok()
            .and_then(|i| self.table.get_mut(i))
        {
            *e = pfn.0;
        }
    }

    /// Forget `mfn` (it no longer belongs to a domain).
    pub fn invalidate(&mut self, mfn: Mfn) {
        self.set(mfn, Pfn(INVALID_M2P_ENTRY));
    }

    /// The pfn recorded for `mfn`.
    pub fn get(&self, mfn: Mfn) -> Option<Pfn> {
        let v = *self.table.get(usize::try_from(mfn.0).ok()?)?;
        (v != INVALID_M2P_ENTRY).then_some(Pfn(v))
    }

    /// Number of frames the table covers (the highest MFN a guest can look up, plus one).
    pub fn len(&self) -> u64 {
        self.table.len() as u64
    }

    /// True if the table covers no frame.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// Free frames, ownership and types, and the M2P table.
pub struct Machine<'a> {
    /// Free frames.
    pub frames: FrameAllocator<'a>,
    /// Owner, type and reference counts of every frame.
    pub ft: FrameTable<'a>,
    /// Machine-to-physical table.
    pub m2p: M2p<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m2p_set_get_invalidate() {
        let mut backing = [0u64; 8];
        let mut m = M2p::new(&mut backing);
        assert_eq!(m.get(Mfn(3)), None);
        m.set(Mfn(3), Pfn(42));
        assert_eq!(m.get(Mfn(3)), Some(Pfn(42)));
        m.invalidate(Mfn(3));
        assert_eq!(m.get(Mfn(3)), None);
        m.set(Mfn(100), Pfn(1));
        assert_eq!(m.get(Mfn(100)), None);
        assert_eq!(m.len(), 8);
    }
}
