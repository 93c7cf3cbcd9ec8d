//! A split virtqueue, driver side (pure: every access to the rings goes through [`Mem`]): the legacy
//! layout, descriptor allocation, avail/used index arithmetic with wrap-around, and a device that writes
//! nonsense into the used ring — an id out of range or not in flight, a length larger than the buffer, an
//! index that runs ahead — is refused, never followed: the queue is then [`Error::Broken`] for good.
//!
//! Layout of a queue of `n` entries (virtio 1.x "legacy interfaces", alignment 4096): descriptors
//! (16 bytes each: address u64, length u32, flags u16, next u16) at 0; the avail ring (flags u16,
//! idx u16, ring[n] u16, used_event u16) right after; the used ring (flags u16, idx u16, ring[n] of
//! (id u32, len u32), avail_event u16) at the next multiple of 4096.
#![forbid(unsafe_code)]

use core::sync::atomic::{Ordering, fence};

/// The most entries a queue may have here (what [`Virtq`]'s bookkeeping holds).
pub const MAX_SIZE: usize = 256;
/// The legacy interface's ring alignment.
pub const ALIGN: usize = 4096;

const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;
/// avail.flags: the driver does not want interrupts (it polls).
const AVAIL_NO_INTERRUPT: u16 = 1;

/// Little-endian access to the memory the rings live in (shared with the device). Offsets are relative to
/// the ring memory's start; an implementation ignores (writes) or reads as 0 anything past its end.
pub trait Mem {
    /// The u16 at `off`.
    fn read16(&self, off: usize) -> u16;
    /// The u32 at `off`.
    fn read32(&self, off: usize) -> u32;
    /// Store `v` at `off`.
    fn write16(&mut self, off: usize, v: u16);
    /// Store `v` at `off`.
    fn write32(&mut self, off: usize, v: u32);
    /// Store `v` at `off`.
    fn write64(&mut self, off: usize, v: u64);
}

/// Why an operation did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The device's queue size is not a power of two in 1..=[`MAX_SIZE`].
    Size,
    /// Not enough free descriptors (wait for the device to return some).
    Full,
    /// An empty chain or a zero-length buffer.
    Empty,
    /// The device broke the protocol (see [`Virtq::pop_used`]); the queue is unusable.
    Broken,
}

/// Where the parts of a legacy queue of `size` entries lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Entries.
    pub size: u16,
    /// Offset of the avail ring.
    pub avail: usize,
    /// Offset of the used ring.
    pub used: usize,
    /// Bytes of ring memory in all.
    pub bytes: usize,
}

impl Layout {
    /// The legacy layout of a queue of `size` entries.
    pub fn legacy(size: u16) -> Result<Layout, Error> {
        let n = usize::from(size);
        if n == 0 || n > MAX_SIZE || !n.is_power_of_two() {
            return Err(Error::Size);
        }
        let avail = 16 * n;
        let used = (avail + 6 + 2 * n).next_multiple_of(ALIGN);
        Ok(Layout {
            size,
            avail,
            used,
            bytes: used + 6 + 8 * n,
        })
    }
}

/// One buffer of a chain: guest-physical address, length, and whether the device writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf {
    /// Physical address (what the device uses).
    pub addr: u64,
    /// Length in bytes (> 0).
    pub len: u32,
    /// Device-writable (a receive buffer) rather than device-readable.
    pub device_writes: bool,
}

/// The driver's side of one split virtqueue. The bookkeeping (free list, chains in flight) is private:
/// nothing the device writes into the shared memory is trusted except the used ring's id/len, checked.
pub struct Virtq {
    layout: Layout,
    /// Next free descriptor after each free one; for a chain in flight, the next of the chain.
    next: [u16; MAX_SIZE],
    /// Per head in flight: the chain's descriptor count (0: not a head in flight).
    chain: [u16; MAX_SIZE],
    /// Per head in flight: the bytes the device may write (its writable buffers' total).
    writable: [u32; MAX_SIZE],
    free_head: u16,
    free: u16,
    in_flight: u16,
    avail_idx: u16,
    last_used: u16,
    broken: bool,
}

impl Virtq {
    /// A queue of `layout.size` entries over ring memory that the caller zeroed; avail.flags asks for
    /// no interrupts.
    pub fn new(layout: Layout, mem: &mut impl Mem) -> Virtq {
        let n = usize::from(layout.size);
        let mut next = [0u16; MAX_SIZE];
        for (i, x) in next.iter_mut().enumerate().take(n) {
            *x = (i + 1) as u16;
        }
        mem.write16(layout.avail, AVAIL_NO_INTERRUPT);
        Virtq {
            layout,
            next,
            chain: [0; MAX_SIZE],
            writable: [0; MAX_SIZE],
            free_head: 0,
            free: layout.size,
            in_flight: 0,
            avail_idx: 0,
            last_used: 0,
            broken: false,
        }
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Free descriptors.
    pub fn free(&self) -> u16 {
        self.free
    }

    /// Chains the device holds.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// Has the device broken the protocol?
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Give the device one chain of `bufs`; returns its head (what the used ring will name). The caller
    /// notifies the device afterwards.
    pub fn push(&mut self, mem: &mut impl Mem, bufs: &[Buf]) -> Result<u16, Error> {
        if self.broken {
            return Err(Error::Broken);
        }
        if bufs.is_empty() || bufs.iter().any(|b| b.len == 0) {
            return Err(Error::Empty);
        }
        if bufs.len() > usize::from(self.free) {
            return Err(Error::Full);
        }
        let head = self.free_head;
        let mut d = head;
        let mut writable = 0u32;
        for (i, b) in bufs.iter().enumerate() {
            let last = i + 1 == bufs.len();
            let follow = self.next[usize::from(d)];
            let at = 16 * usize::from(d);
            mem.write64(at, b.addr);
            mem.write32(at + 8, b.len);
            let flags =
                if last { 0 } else { DESC_NEXT } | if b.device_writes { DESC_WRITE } else { 0 };
            mem.write16(at + 12, flags);
            mem.write16(at + 14, if last { 0 } else { follow });
            if b.device_writes {
                writable = writable.saturating_add(b.len);
            }
            if last {
                self.free_head = follow;
            } else {
                d = follow;
            }
        }
        self.free -= bufs.len() as u16;
        self.chain[usize::from(head)] = bufs.len() as u16;
        self.writable[usize::from(head)] = writable;
        self.in_flight += 1;
        let slot = usize::from(self.avail_idx % self.layout.size);
        mem.write16(self.layout.avail + 4 + 2 * slot, head);
        // The descriptors and the ring entry before the index that publishes them.
        fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write16(self.layout.avail + 2, self.avail_idx);
        Ok(head)
    }

    /// The next chain the device returned, as (head, bytes it wrote), or `None`. An index that moved past
    /// the chains in flight, an id that is not a head in flight, or a length past what the chain lets the
    /// device write breaks the queue (`Err(Broken)`, now and for every later call).
    pub fn pop_used(&mut self, mem: &mut impl Mem) -> Result<Option<(u16, u32)>, Error> {
        if self.broken {
            return Err(Error::Broken);
        }
        let idx = mem.read16(self.layout.used + 2);
        let pending = idx.wrapping_sub(self.last_used);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.in_flight {
            self.broken = true;
            return Err(Error::Broken);
        }
        // The entry after the index that published it.
        fence(Ordering::SeqCst);
        let slot = usize::from(self.last_used % self.layout.size);
        let at = self.layout.used + 4 + 8 * slot;
        let id = mem.read32(at);
        let len = mem.read32(at + 4);
        let head = match u16::try_from(id) {
            Ok(h) if h < self.layout.size && self.chain[usize::from(h)] != 0 => h,
            _ => {
                self.broken = true;
                return Err(Error::Broken);
            }
        };
        if len > self.writable[usize::from(head)] {
            self.broken = true;
            return Err(Error::Broken);
        }
        // Back on the free list, following our own record of the chain (not the shared descriptors).
        let count = self.chain[usize::from(head)];
        let mut tail = head;
        for _ in 1..count {
            tail = self.next[usize::from(tail)];
        }
        self.next[usize::from(tail)] = self.free_head;
        self.free_head = head;
        self.free += count;
        self.chain[usize::from(head)] = 0;
        self.writable[usize::from(head)] = 0;
        self.in_flight -= 1;
        self.last_used = self.last_used.wrapping_add(1);
        Ok(Some((head, len)))
    }
}

#[cfg(test)]
#[path = "virtq_tests.rs"]
mod tests;
