//! Checked access to the current process's memory: every page of a user range must be mapped with the
//! needed rights, or be populatable on demand (anonymous regions, stack growth), else `-EFAULT`. Copies go
//! through the physmap alias of each page, so the kernel never dereferences a user address and never
//! faults on one.

use abi::errno::Errno;
use abi::types::{PAGE_SIZE, Pfn};

use super::decode::UserRange;
use super::kernel::{env, with};
use crate::mm::{Prot, physmap_va};

/// The frame behind user page `page` of the current process, populating it if its region allows.
fn page_frame(page: u64, write: bool) -> Result<Pfn, Errno> {
    let env = env();
    with(|p| {
        let q = p.me().ok_or(Errno::EFAULT)?;
        let space = q.res.space.as_mut().ok_or(Errno::EFAULT)?;
        if let Some((pfn, prot)) = space.lookup(page) {
            return if write && !prot.contains(Prot::WRITE) {
                Err(Errno::EFAULT)
            } else {
                Ok(pfn)
            };
        }
        let prot = q
            .res
            .regions
            .populatable(page, write)
            .ok_or(Errno::EFAULT)?;
        let pfn = space
            .map_zeroed(&env, page, prot)
            .map_err(|_| Errno::ENOMEM)?;
        space.flush(&env).map_err(|_| Errno::ENOMEM)?;
        Ok(pfn)
    })
}

/// Visit `r` page by page: `f(kernel pointer, offset in r, length)`.
fn walk(r: UserRange, write: bool, mut f: impl FnMut(*mut u8, usize, usize)) -> Result<(), Errno> {
    let mut off = 0u64;
    while off < r.len {
        let va = r.addr + off;
        let page = va & !(PAGE_SIZE - 1);
        let n = (PAGE_SIZE - (va - page)).min(r.len - off);
        let pfn = page_frame(page, write)?;
        f(
            (physmap_va(pfn) + (va - page)) as *mut u8,
            off as usize,
            n as usize,
        );
        off += n;
    }
    Ok(())
}

/// Check that all of `r` is accessible (populating demand pages), so that a later copy cannot fail.
pub fn check(r: UserRange, write: bool) -> Result<(), Errno> {
    walk(r, write, |_, _, _| {})
}

/// Copy `r` into `out` (`out.len() == r.len`).
pub fn copy_in(r: UserRange, out: &mut [u8]) -> Result<(), Errno> {
    debug_assert_eq!(out.len() as u64, r.len);
    walk(r, false, |src, off, n| {
        // SAFETY: `src..src + n` lies in one user page's physmap alias (mapped for every frame of this
        // domain); `out[off..off + n]` is in bounds because the walk covers exactly `r.len` bytes.
        unsafe { core::ptr::copy_nonoverlapping(src, out[off..off + n].as_mut_ptr(), n) }
    })
}

/// Copy `data` to user address `addr`.
pub fn copy_out(addr: u64, data: &[u8]) -> Result<(), Errno> {
    let r = super::decode::user_range(addr, data.len() as u64)?;
    walk(r, true, |dst, off, n| {
        // SAFETY: as in `copy_in`; the page is mapped writable for the process (checked), and its physmap
        // alias is writable because user pages are never page tables.
        unsafe { core::ptr::copy_nonoverlapping(data[off..off + n].as_ptr(), dst, n) }
    })
}
