//! A domain's event bits in its shared_info page, and Xen's 2-level set-pending and unmask rules.
//!
//! The bits live in guest-writable memory (`abi::xen::SharedInfo`): per port a pending bit
//! (`evtchn_pending`, set by the hypervisor, cleared by the guest) and a mask bit (`evtchn_mask`, written by
//! the guest only); per vCPU a selector word (`vcpu_info.evtchn_pending_sel`, bit `w` = word `w` of the
//! pending bitmap may hold pending unmasked ports), `evtchn_upcall_pending` and `evtchn_upcall_mask` (the
//! guest's virtual interrupt flag, inverted). Every domain has one vCPU here, so the per-vCPU fields are
//! always `vcpu_info[0]`'s.
//!
//! [`EventBits`] is the access trait; [`SharedInfoPage`] implements it over the 4 KiB page (the real page in
//! the hypervisor, a `[u8; 4096]` in the tests). The hypervisor runs on one CPU with interrupts off and the
//! guest never runs at the same time, so plain read-modify-write is atomic with respect to the guest. (An
//! SMP port would implement the trait with locked bit operations; the rules below would not change.)
//!
//! [`set_pending`] and [`unmask`] are Xen's `evtchn_2l_set_pending` / `evtchn_2l_unmask` with
//! `vcpu_mark_events_pending`, step for step, so no event is ever lost:
//!
//! ```text
//! set_pending(port):  if test_and_set(pending[port]) -> done (already pending)
//!                     if mask[port]                  -> done (unmask will re-check)
//!                     if test_and_set(sel[port/64])  -> done (the guest has yet to scan that word)
//!                     if !test_and_set(upcall_pending) -> KICK
//! unmask(port):       if test_and_clear(mask[port]) && pending[port] && !test_and_set(sel[port/64])
//!                        && !test_and_set(upcall_pending) -> KICK
//! ```
//!
//! A *kick* means the vCPU now has an upcall pending it did not have before: wake it if it is blocked; if it
//! is running or runnable, the exit path delivers the upcall when [`upcall_deliverable`] holds.

use core::mem::offset_of;

use abi::event_channel::{EvtchnPort, NR_EVENT_CHANNELS, port_word_and_mask};
use abi::xen::{SharedInfo, VcpuInfo};

/// Byte offset of `evtchn_pending` in the shared_info page (0x800).
pub const PENDING_OFFSET: usize = offset_of!(SharedInfo, evtchn_pending);
/// Byte offset of `evtchn_mask` in the shared_info page (0xA00).
pub const MASK_OFFSET: usize = offset_of!(SharedInfo, evtchn_mask);
/// Byte offset of `vcpu_info[0].evtchn_upcall_pending` (0).
pub const UPCALL_PENDING_OFFSET: usize = offset_of!(VcpuInfo, evtchn_upcall_pending);
/// Byte offset of `vcpu_info[0].evtchn_upcall_mask` (1).
pub const UPCALL_MASK_OFFSET: usize = offset_of!(VcpuInfo, evtchn_upcall_mask);
/// Byte offset of `vcpu_info[0].evtchn_pending_sel` (8).
pub const PENDING_SEL_OFFSET: usize = offset_of!(VcpuInfo, evtchn_pending_sel);

static_assertions::const_assert_eq!(PENDING_OFFSET, 0x800);
static_assertions::const_assert_eq!(MASK_OFFSET, 0xA00);
static_assertions::const_assert_eq!(UPCALL_PENDING_OFFSET, 0);
static_assertions::const_assert_eq!(UPCALL_MASK_OFFSET, 1);
static_assertions::const_assert_eq!(PENDING_SEL_OFFSET, 8);

/// Number of 64-bit words in the pending and mask bitmaps (and bits used in the selector).
pub const WORDS: usize = NR_EVENT_CHANNELS / 64;

/// Access to one domain's event bits (vCPU 0's per-vCPU fields).
///
/// Ports at or above `NR_EVENT_CHANNELS` (4096) and words at or above [`WORDS`] do not exist: the methods
/// treat them as pending, masked and selected, and never change anything, so nothing is ever delivered for
/// them and nothing panics.
pub trait EventBits {
    /// Sets the port's pending bit; returns whether it was already set.
    fn test_and_set_pending(&mut self, port: EvtchnPort) -> bool;
    /// Clears the port's pending bit.
    fn clear_pending(&mut self, port: EvtchnPort);
    /// The port's pending bit.
    fn is_pending(&self, port: EvtchnPort) -> bool;
    /// The port's mask bit.
    fn is_masked(&self, port: EvtchnPort) -> bool;
    /// Clears the port's mask bit; returns whether it was set.
    fn test_and_clear_mask(&mut self, port: EvtchnPort) -> bool;
    /// Sets bit `word` of vCPU 0's `evtchn_pending_sel`; returns whether it was already set.
    fn test_and_set_sel(&mut self, word: usize) -> bool;
    /// Sets vCPU 0's `evtchn_upcall_pending`; returns whether it was already set (non-zero).
    fn test_and_set_upcall_pending(&mut self) -> bool;
    /// vCPU 0's `evtchn_upcall_pending` is non-zero.
    fn upcall_pending(&self) -> bool;
    /// vCPU 0's `evtchn_upcall_mask` is non-zero (events disabled).
    fn upcall_mask(&self) -> bool;
    /// Writes vCPU 0's `evtchn_upcall_mask` (1 if `masked`, else 0).
    fn set_upcall_mask(&mut self, masked: bool);
}

/// Marks `port` pending, Xen's way; returns true if the vCPU must be *kicked* (its `evtchn_upcall_pending`
/// went from clear to set). Masked ports stay pending without an upcall until [`unmask`].
pub fn set_pending(bits: &mut impl EventBits, port: EvtchnPort) -> bool {
    if port as usize >= NR_EVENT_CHANNELS || bits.test_and_set_pending(port) {
        return false;
    }
    if bits.is_masked(port) {
        return false;
    }
    let (word, _) = port_word_and_mask(port);
    if bits.test_and_set_sel(word) {
        return false;
    }
    !bits.test_and_set_upcall_pending()
}

/// Clears `port`'s mask (the `EVTCHNOP_unmask` hypercall), Xen's way: if it was masked and is pending, its
/// selector bit and the upcall are raised, so an event that arrived while masked is delivered now. Returns
/// true if the vCPU must be kicked.
pub fn unmask(bits: &mut impl EventBits, port: EvtchnPort) -> bool {
    if port as usize >= NR_EVENT_CHANNELS {
        return false;
    }
    if !bits.test_and_clear_mask(port) || !bits.is_pending(port) {
        return false;
    }
    let (word, _) = port_word_and_mask(port);
    if bits.test_and_set_sel(word) {
        return false;
    }
    !bits.test_and_set_upcall_pending()
}

/// An upcall should be delivered on the way back to the guest: `evtchn_upcall_pending` is set and
/// `evtchn_upcall_mask` is clear (Xen's `local_events_need_delivery`).
pub fn upcall_deliverable(bits: &impl EventBits) -> bool {
    bits.upcall_pending() && !bits.upcall_mask()
}

/// `SCHEDOP_block`'s first step: re-enable events (clear `evtchn_upcall_mask`), then report whether an
/// upcall is already pending, in which case the vCPU must not sleep (it returns at once and takes the
/// upcall). Doing both in one place is what makes block atomic with respect to a wake-up.
pub fn block_enable_events(bits: &mut impl EventBits) -> bool {
    bits.set_upcall_mask(false);
    bits.upcall_pending()
}

/// Clears the pending bit of every port below `ports` (used when all of a domain's ports are closed).
pub fn clear_all_pending(bits: &mut impl EventBits, ports: usize) {
    for port in 0..ports.min(NR_EVENT_CHANNELS) {
        bits.clear_pending(port as EvtchnPort);
    }
}

/// [`EventBits`] over a domain's shared_info page.
pub struct SharedInfoPage<'a> {
    page: &'a mut [u8; 4096],
}

impl<'a> SharedInfoPage<'a> {
    /// The event bits of the shared_info page `page`.
    pub fn new(page: &'a mut [u8; 4096]) -> Self {
        SharedInfoPage { page }
    }

    fn read_u64(&self, offset: usize) -> u64 {
        let mut b = [0u8; 8];
        if let Some(s) = self.page.get(offset..offset + 8) {
            b.copy_from_slice(s);
        }
        u64::from_le_bytes(b)
    }

    fn write_u64(&mut self, offset: usize, v: u64) {
        if let Some(s) = self.page.get_mut(offset..offset + 8) {
            s.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// The bitmap word at `base` holding `port`, and the port's bit; `None` beyond the bitmap.
    fn locate(base: usize, port: EvtchnPort) -> Option<(usize, u64)> {
        if port as usize >= NR_EVENT_CHANNELS {
            return None;
        }
        let (word, bit) = port_word_and_mask(port);
        Some((base + word * 8, bit))
    }

    fn test_bit(&self, base: usize, port: EvtchnPort) -> Option<bool> {
        Self::locate(base, port).map(|(off, bit)| self.read_u64(off) & bit != 0)
    }

    /// Sets (`set`) or clears a bit; returns its old value (`None` beyond the bitmap).
    fn change_bit(&mut self, base: usize, port: EvtchnPort, set: bool) -> Option<bool> {
        let (off, bit) = Self::locate(base, port)?;
        let old = self.read_u64(off);
        self.write_u64(off, if set { old | bit } else { old & !bit });
        Some(old & bit != 0)
    }
}

impl EventBits for SharedInfoPage<'_> {
    fn test_and_set_pending(&mut self, port: EvtchnPort) -> bool {
        self.change_bit(PENDING_OFFSET, port, true).unwrap_or(true)
    }

    fn clear_pending(&mut self, port: EvtchnPort) {
        self.change_bit(PENDING_OFFSET, port, false);
    }

    fn is_pending(&self, port: EvtchnPort) -> bool {
        self.test_bit(PENDING_OFFSET, port).unwrap_or(true)
    }

    fn is_masked(&self, port: EvtchnPort) -> bool {
        self.test_bit(MASK_OFFSET, port).unwrap_or(true)
    }

    fn test_and_clear_mask(&mut self, port: EvtchnPort) -> bool {
        self.change_bit(MASK_OFFSET, port, false).unwrap_or(false)
    }

    fn test_and_set_sel(&mut self, word: usize) -> bool {
        if word >= WORDS {
            return true;
        }
        let old = self.read_u64(PENDING_SEL_OFFSET);
        self.write_u64(PENDING_SEL_OFFSET, old | 1 << word);
        old & 1 << word != 0
    }

    fn test_and_set_upcall_pending(&mut self) -> bool {
        let old = self.page[UPCALL_PENDING_OFFSET];
        self.page[UPCALL_PENDING_OFFSET] = 1;
        old != 0
    }

    fn upcall_pending(&self) -> bool {
        self.page[UPCALL_PENDING_OFFSET] != 0
    }

    fn upcall_mask(&self) -> bool {
        self.page[UPCALL_MASK_OFFSET] != 0
    }

    fn set_upcall_mask(&mut self, masked: bool) {
        self.page[UPCALL_MASK_OFFSET] = masked as u8;
    }
}

/// A guest's side of the 2-level ABI, for the tests: what a PV kernel's upcall handler does.
#[cfg(test)]
pub(crate) mod guest {
    use super::*;

    fn rd(page: &[u8; 4096], off: usize) -> u64 {
        u64::from_le_bytes(page[off..off + 8].try_into().unwrap())
    }

    fn wr(page: &mut [u8; 4096], off: usize, v: u64) {
        page[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Sets or clears a port's mask bit (guest-owned).
    pub fn set_mask(page: &mut [u8; 4096], port: u32, masked: bool) {
        let (w, b) = port_word_and_mask(port);
        let off = MASK_OFFSET + w * 8;
        let v = rd(page, off);
        wr(page, off, if masked { v | b } else { v & !b });
    }

    /// Sets the virtual interrupt flag (`evtchn_upcall_mask`).
    pub fn set_upcall_mask(page: &mut [u8; 4096], masked: bool) {
        page[UPCALL_MASK_OFFSET] = masked as u8;
    }

    /// The upcall, if the hypervisor would deliver one now: clear `upcall_pending`, exchange the selector
    /// with 0, and for each selected word handle `pending & !mask`, clearing each pending bit before calling
    /// `handle(port)`. Returns the number of ports handled (0 and no change if no upcall is deliverable).
    pub fn upcall(page: &mut [u8; 4096], mut handle: impl FnMut(u32)) -> usize {
        if page[UPCALL_PENDING_OFFSET] == 0 || page[UPCALL_MASK_OFFSET] != 0 {
            return 0;
        }
        let mut n = 0;
        page[UPCALL_PENDING_OFFSET] = 0;
        let sel = rd(page, PENDING_SEL_OFFSET);
        wr(page, PENDING_SEL_OFFSET, 0);
        for w in 0..WORDS {
            if sel & 1 << w == 0 {
                continue;
            }
            let (poff, moff) = (PENDING_OFFSET + w * 8, MASK_OFFSET + w * 8);
            let mut ready = rd(page, poff) & !rd(page, moff);
            while ready != 0 {
                let b = ready.trailing_zeros();
                ready &= ready - 1;
                let p = rd(page, poff);
                wr(page, poff, p & !(1 << b));
                handle(w as u32 * 64 + b);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::guest;
    use super::*;

    fn page() -> Box<[u8; 4096]> {
        Box::new([0u8; 4096])
    }

    #[test]
    fn offsets_are_shared_infos() {
        let mut p = page();
        let mut b = SharedInfoPage::new(&mut p);
        assert!(!b.test_and_set_pending(65));
        assert!(b.test_and_set_pending(65));
        assert!(!b.test_and_set_sel(1));
        assert!(!b.test_and_set_upcall_pending());
        b.set_upcall_mask(true);
        assert_eq!(p[0x808], 2, "port 65 is word 1, bit 1");
        assert_eq!(p[8], 2, "selector bit 1");
        assert_eq!((p[0], p[1]), (1, 1));
        guest::set_mask(&mut p, 4095, true);
        assert_eq!(p[0xBFF], 0x80);
    }

    #[test]
    fn set_pending_follows_xen() {
        let mut p = page();
        let mut b = SharedInfoPage::new(&mut p);
        assert!(set_pending(&mut b, 3), "first event kicks");
        assert!(!set_pending(&mut b, 3), "already pending");
        assert!(!set_pending(&mut b, 4), "same word: selector already set");
        assert!(
            !set_pending(&mut b, 200),
            "other word: upcall already pending"
        );
        assert!(b.is_pending(200) && b.test_and_set_sel(3));
        let n = guest::upcall(&mut p, |_| {});
        assert_eq!(n, 3);
        let mut b = SharedInfoPage::new(&mut p);
        assert!(!b.upcall_pending());
        assert!(
            set_pending(&mut b, 4),
            "after the guest scanned, a new event kicks again"
        );
    }

    #[test]
    fn masked_ports_are_delivered_after_unmask() {
        let mut p = page();
        guest::set_mask(&mut p, 70, true);
        let mut b = SharedInfoPage::new(&mut p);
        assert!(!set_pending(&mut b, 70), "masked: no upcall");
        assert!(b.is_pending(70) && !b.upcall_pending());
        assert!(!set_pending(&mut b, 70));
        assert!(unmask(&mut b, 70), "unmask of a pending port kicks");
        assert!(!unmask(&mut b, 70), "not masked any more: nothing to do");
        let mut got = vec![];
        guest::upcall(&mut p, |port| got.push(port));
        assert_eq!(got, [70]);
        // Unmasking a port that is not pending raises nothing.
        guest::set_mask(&mut p, 71, true);
        let mut b = SharedInfoPage::new(&mut p);
        assert!(!unmask(&mut b, 71));
        assert!(!b.upcall_pending() && !b.is_masked(71));
    }

    #[test]
    fn upcall_mask_defers_but_keeps_the_event() {
        let mut p = page();
        guest::set_upcall_mask(&mut p, true);
        let mut b = SharedInfoPage::new(&mut p);
        assert!(
            set_pending(&mut b, 9),
            "the kick still happens (it wakes a blocked vCPU)"
        );
        assert!(!upcall_deliverable(&b));
        assert!(
            block_enable_events(&mut b),
            "blocking with an event pending does not sleep"
        );
        assert!(upcall_deliverable(&b));
        let mut got = vec![];
        guest::upcall(&mut p, |port| got.push(port));
        assert_eq!(got, [9]);
        let mut b = SharedInfoPage::new(&mut p);
        assert!(
            !block_enable_events(&mut b),
            "nothing pending: the vCPU may sleep"
        );
    }

    #[test]
    fn hostile_ports_change_nothing() {
        let mut p = page();
        // A guest may scribble anything over its page.
        p.fill(0x5a);
        let before = p.clone();
        let mut b = SharedInfoPage::new(&mut p);
        for port in [4096, 4097, u32::MAX, 1 << 31] {
            assert!(!set_pending(&mut b, port));
            assert!(!unmask(&mut b, port));
            assert!(b.is_pending(port) && b.is_masked(port));
            assert!(b.test_and_set_pending(port));
            assert!(!b.test_and_clear_mask(port));
            b.clear_pending(port);
        }
        assert!(b.test_and_set_sel(64) && b.test_and_set_sel(usize::MAX));
        assert_eq!(p, before);
    }

    #[test]
    fn clear_all() {
        let mut p = page();
        let mut b = SharedInfoPage::new(&mut p);
        for port in [1, 63, 64, 1023, 1024, 4095] {
            set_pending(&mut b, port);
        }
        clear_all_pending(&mut b, 1024);
        assert!(!b.is_pending(1023) && !b.is_pending(1));
        assert!(b.is_pending(1024) && b.is_pending(4095));
        clear_all_pending(&mut b, usize::MAX);
        assert!(!b.is_pending(4095));
    }
}
