//! The frame table: who owns each machine frame. One entry per frame, indexed by MFN.
//!
//! This is the seed of Xen's `struct page_info` array. Today it records ownership only, which is what
//! domain teardown and the "only your own frames" rule need; the page-table validation work adds the type
//! and reference counts beside the owner.

use abi::types::Mfn;

/// Owner value of a frame that belongs to no domain (free, or the hypervisor's own).
pub const NO_OWNER: u16 = u16::MAX;

/// Ownership of every machine frame below a fixed limit.
pub struct FrameTable<'a> {
    owner: &'a mut [u16],
}

/// A frame outside the table, or already owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignError {
    /// The MFN is beyond the table.
    OutOfRange(Mfn),
    /// The frame already has an owner.
    AlreadyOwned(Mfn, u16),
}

impl<'a> FrameTable<'a> {
    /// A table over `owner.len()` frames, all unowned.
    pub fn new(owner: &'a mut [u16]) -> Self {
        owner.fill(NO_OWNER);
        FrameTable { owner }
    }

    /// The owner of `mfn`, if any.
    pub fn owner(&self, mfn: Mfn) -> Option<u16> {
        match self.owner.get(usize::try_from(mfn.0).ok()?) {
            Some(&NO_OWNER) | None => None,
            Some(&d) => Some(d),
        }
    }

    /// Give an unowned frame to `domid`.
    pub fn assign(&mut self, mfn: Mfn, domid: u16) -> Result<(), AssignError> {
        let slot = usize::try_from(mfn.0)
            .ok()
            .and_then(|i| self.owner.get_mut(i))
            .ok_or(AssignError::OutOfRange(mfn))?;
        if *slot != NO_OWNER {
            return Err(AssignError::AlreadyOwned(mfn, *slot));
        }
        *slot = domid;
        Ok(())
    }

    /// Take every frame of `domid` away from it, calling `release` for each (in MFN order).
    /// Returns how many frames were released.
    pub fn release_all(&mut self, domid: u16, mut release: impl FnMut(Mfn)) -> u64 {
        let mut n = 0;
        for (i, o) in self.owner.iter_mut().enumerate() {
            if *o == domid {
                *o = NO_OWNER;
                release(Mfn(i as u64));
                n += 1;
            }
        }
        n
    }

    /// Number of frames `domid` owns.
    pub fn count(&self, domid: u16) -> u64 {
        self.owner.iter().filter(|&&o| o == domid).count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_and_release() {
        let mut backing = [0u16; 16];
        let mut t = FrameTable::new(&mut backing);
        assert_eq!(t.owner(Mfn(3)), None);
        t.assign(Mfn(3), 1).unwrap();
        t.assign(Mfn(5), 1).unwrap();
        t.assign(Mfn(6), 2).unwrap();
        assert_eq!(
            t.assign(Mfn(3), 2),
            Err(AssignError::AlreadyOwned(Mfn(3), 1))
        );
        assert_eq!(t.assign(Mfn(16), 2), Err(AssignError::OutOfRange(Mfn(16))));
        assert_eq!(
            t.assign(Mfn(u64::MAX), 2),
            Err(AssignError::OutOfRange(Mfn(u64::MAX)))
        );
        assert_eq!(t.count(1), 2);
        let mut got = Vec::new();
        assert_eq!(t.release_all(1, |m| got.push(m)), 2);
        assert_eq!(got, vec![Mfn(3), Mfn(5)]);
        assert_eq!(t.owner(Mfn(3)), None);
        assert_eq!(t.owner(Mfn(6)), Some(2));
        assert_eq!(t.owner(Mfn(99)), None);
    }
}
