//! Copying to and from a guest through its own page tables (`copy_from_guest` / `copy_to_guest`).
//!
//! Every access is checked against the calling domain's mappings by a software walk ([`super::walk`]) with
//! the permissions the guest itself would need, over the whole range, before a single byte moves: a
//! failing copy has no side effect. Errors become `-EFAULT`, as in Xen.

use abi::errno::Errno;
use abi::types::{Gva, Maddr, Mfn, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::phys::FrameMem;
use super::walk::{self, Access};

/// Longest buffer a hypervisor copy *to* a guest handles at once.
pub const MAX_COPY_TO_GUEST: u64 = 4 * PAGE_SIZE;

/// A view of one domain's virtual memory, through its current page-table root.
pub struct GuestView<'m, M: FrameMem> {
    mem: &'m mut M,
    root: Mfn,
    access_user: bool,
}

impl<'m, M: FrameMem> GuestView<'m, M> {
    /// View the address space rooted at `root`; `user` selects ring-3 permission checks.
    pub fn new(mem: &'m mut M, root: Mfn, user: bool) -> Self {
        GuestView {
            mem,
            root,
            access_user: user,
        }
    }

    fn access(&self, write: bool) -> Access {
        Access {
            write,
            user: self.access_user,
        }
    }

    /// The machine address of the guest bytes `[va, va+len)`, which must lie in one page (`len` at least 1),
    /// translated with the permissions the guest needs for a read (or, with `write`, a write): one walk.
    /// Anything else, or an address the guest may not use, is `-EFAULT`.
    ///
    /// For request arrays (`mmu_update`, `mmuext_op`, `multicall`): translate the page of the first
    /// request, then read every request that lies in it from there — one walk per page, not per request.
    /// A request may change the very tables that map the array; later requests of the page are then still
    /// read from the frame the page was mapped to when it was translated. That frame cannot change hands
    /// meanwhile: only `memory_op` frees or transfers frames, and a `multicall` walks again after every
    /// entry that used the frame table or the allocator; so the hypervisor only ever reads (and, for
    /// `multicall`'s results, writes) memory the guest itself could read (write) when the page was
    /// translated. A new page-table root (`MMUEXT_NEW_BASEPTR`) walks again.
    #[inline]
    pub fn translate_in_page(&self, va: Gva, len: u64, write: bool) -> Result<Maddr, Errno> {
        if len == 0 || va.page_offset() + len > PAGE_SIZE {
            return Err(Errno::EFAULT);
        }
        // The whole range is in `va`'s page: canonical and outside the reserved slots (which are whole
        // pages) exactly when `va` is.
        walk::translate(&*self.mem, self.root, va, self.access(write)).map_err(|_| Errno::EFAULT)
    }

    /// Call `f` with the guest bytes `[va, va+len)` piece by piece, after validating all of them.
    /// `len > max` is `-EINVAL`; any unmapped, non-canonical or reserved byte is `-EFAULT`.
    pub fn read_chunks(
        &self,
        va: Gva,
        len: u64,
        max: u64,
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), Errno> {
        if len > max {
            return Err(Errno::EINVAL);
        }
        // A small bounce buffer, refilled as often as a chunk needs: no large stack frame to clear.
        let mut bounce = [0u8; 256];
        let mem = &*self.mem;
        walk::for_each_chunk(mem, self.root, va, len, self.access(false), max, |ma, n| {
            let mut done = 0;
            while done < n {
                let k = (n - done).min(bounce.len());
                mem.read_bytes(Maddr(ma.0 + done as u64), &mut bounce[..k]);
                f(&bounce[..k]);
                done += k;
            }
        })
        .map_err(|_| Errno::EFAULT)
    }

    /// Copy `buf.len()` bytes from guest address `va` (straight into `buf`, page by page).
    pub fn read(&self, va: Gva, buf: &mut [u8]) -> Result<(), Errno> {
        let len = buf.len() as u64;
        if len != 0 && va.page_offset() + len <= PAGE_SIZE {
            // The common small read: one page, one walk.
            let ma = self.translate_in_page(va, len, false)?;
            self.mem.read_bytes(ma, buf);
            return Ok(());
        }
        let mut off = 0;
        let mem = &*self.mem;
        let len = buf.len() as u64;
        walk::for_each_chunk(mem, self.root, va, len, self.access(false), len, |ma, n| {
            mem.read_bytes(ma, &mut buf[off..off + n]);
            off += n;
        })
        .map_err(|_| Errno::EFAULT)
    }

    /// Copy a plain-data object from guest address `va`.
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, va: Gva) -> Result<T, Errno> {
        let mut v = T::new_zeroed();
        self.read(va, v.as_mut_bytes())?;
        Ok(v)
    }

    /// Copy `data` to guest address `va` (at most [`MAX_COPY_TO_GUEST`] bytes); the mapping must be
    /// writable for the guest.
    pub fn write(&mut self, va: Gva, data: &[u8]) -> Result<(), Errno> {
        let to_errno = |e| {
            if e == walk::WalkError::TooLong {
                Errno::EINVAL
            } else {
                Errno::EFAULT
            }
        };
        if data.is_empty() {
            return Ok(());
        }
        if va.page_offset() + data.len() as u64 <= PAGE_SIZE {
            // The common small write (a bounce frame, a result): one page, one walk.
            let ma = self.translate_in_page(va, data.len() as u64, true)?;
            let start = ma.page_offset() as usize;
            self.mem.frame_mut(ma.mfn())[start..start + data.len()].copy_from_slice(data);
            return Ok(());
        }
        // At most MAX_COPY_TO_GUEST / PAGE_SIZE + 1 pieces (an unaligned start adds one).
        const MAX_PIECES: usize = (MAX_COPY_TO_GUEST / PAGE_SIZE) as usize + 1;
        let mut pieces = [(Maddr(0), 0usize); MAX_PIECES];
        let mut n_pieces = 0;
        walk::for_each_chunk(
            &*self.mem,
            self.root,
            va,
            data.len() as u64,
            self.access(true),
            MAX_COPY_TO_GUEST,
            |ma, n| {
                // The length limit above bounds the number of pieces.
                if let Some(p) = pieces.get_mut(n_pieces) {
                    *p = (ma, n);
                }
                n_pieces += 1;
            },
        )
        .map_err(to_errno)?;
        let mut off = 0;
        for &(ma, n) in &pieces[..n_pieces.min(MAX_PIECES)] {
            let start = ma.page_offset() as usize;
            self.mem.frame_mut(ma.mfn())[start..start + n].copy_from_slice(&data[off..off + n]);
            off += n;
        }
        Ok(())
    }

    /// Copy a plain-data object to guest address `va`.
    pub fn write_obj<T: IntoBytes + Immutable>(&mut self, va: Gva, v: &T) -> Result<(), Errno> {
        self.write(va, v.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::phys::FrameMem;
    use crate::mm::phys::fake::FakeMachine;

    const P: u64 = 1;
    const W: u64 = 2;

    /// Map guest page 0x40_0000 (RW) and 0x40_1000 (RO) with frames 10 and 11; 0x40_2000 unmapped.
    fn machine() -> (FakeMachine, Mfn) {
        let mut m = FakeMachine::new(32);
        let (l4, l3, l2, l1) = (Mfn(1), Mfn(2), Mfn(3), Mfn(4));
        let put = |m: &mut FakeMachine, t: Mfn, i: usize, v: u64| {
            m.frame_mut(t)[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(&mut m, l4, 0, l3.addr().0 | P | W);
        put(&mut m, l3, 0, l2.addr().0 | P | W);
        put(&mut m, l2, 2, l1.addr().0 | P | W);
        put(&mut m, l1, 0, Mfn(10).addr().0 | P | W);
        put(&mut m, l1, 1, Mfn(11).addr().0 | P);
        (m, l4)
    }

    #[test]
    fn read_across_pages_and_write() {
        let (mut m, root) = machine();
        m.frame_mut(Mfn(10))[4095] = 0xaa;
        m.frame_mut(Mfn(11))[0] = 0xbb;
        let mut v = GuestView::new(&mut m, root, false);
        let mut buf = [0u8; 2];
        v.read(Gva(0x40_0fff), &mut buf).unwrap();
        assert_eq!(buf, [0xaa, 0xbb]);
        v.write(Gva(0x40_0010), &[1, 2, 3]).unwrap();
        let x: u32 = v.read_obj(Gva(0x40_0010)).unwrap();
        assert_eq!(x, 0x0003_0201);
    }

    #[test]
    fn faults_have_no_side_effects() {
        let (mut m, root) = machine();
        let mut v = GuestView::new(&mut m, root, false);
        // Straddles into the read-only page: nothing may be written to the first page either.
        assert_eq!(v.write(Gva(0x40_0ffe), &[9, 9, 9, 9]), Err(Errno::EFAULT));
        let mut b = [0u8; 2];
        v.read(Gva(0x40_0ffe), &mut b).unwrap();
        assert_eq!(b, [0, 0]);
        // Unmapped, non-canonical, reserved, wrapping.
        assert_eq!(v.read(Gva(0x40_2000), &mut b), Err(Errno::EFAULT));
        assert_eq!(v.read(Gva(0x40_1fff), &mut b), Err(Errno::EFAULT));
        assert_eq!(v.read(Gva(0x8000_0000_0000), &mut b), Err(Errno::EFAULT));
        assert_eq!(
            v.read(Gva(abi::layout::ENTRY_REGION_VA), &mut b),
            Err(Errno::EFAULT)
        );
        assert_eq!(v.read(Gva(u64::MAX), &mut b), Err(Errno::EFAULT));
        assert_eq!(
            v.read_chunks(Gva(0x40_0000), 10, 4, |_| panic!("no chunk expected")),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            v.write(Gva(0x40_0000), &[0u8; 5 * 4096]),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn translate_in_page_is_one_page_with_the_access_asked_for() {
        let (mut m, root) = machine();
        let v = GuestView::new(&mut m, root, false);
        assert_eq!(
            v.translate_in_page(Gva(0x40_0010), 16, false),
            Ok(Maddr(10 * 4096 + 0x10))
        );
        assert_eq!(
            v.translate_in_page(Gva(0x40_0000), 4096, true),
            Ok(Mfn(10).addr())
        );
        assert_eq!(
            v.translate_in_page(Gva(0x40_1ff0), 16, false),
            Ok(Maddr(11 * 4096 + 0xff0))
        );
        // Read-only for a write; across a page boundary (even into a mapped page); empty; unmapped,
        // non-canonical, reserved.
        for (va, len, write) in [
            (0x40_1000, 8, true),
            (0x40_0ff8, 16, false),
            (0x40_0000, 0, false),
            (0x40_2000, 8, false),
            (0x8000_0000_0000, 8, false),
            (abi::layout::ENTRY_REGION_VA, 8, false),
        ] {
            assert_eq!(
                v.translate_in_page(Gva(va), len, write),
                Err(Errno::EFAULT),
                "{va:#x}+{len} write={write}"
            );
        }
        // Ring 3 needs the user bit.
        let v = GuestView::new(&mut m, root, true);
        assert_eq!(
            v.translate_in_page(Gva(0x40_0010), 16, false),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn user_access_needs_user_bit() {
        let (mut m, root) = machine();
        let v = GuestView::new(&mut m, root, true);
        let mut b = [0u8; 1];
        assert_eq!(v.read(Gva(0x40_0000), &mut b), Err(Errno::EFAULT));
    }
}
