//! A polled virtio console (transitional PCI device 1af4:1003, legacy interface in I/O BAR 0): the fast
//! byte stream live migration prefers to COM2 (see docs/ARCHITECTURE.md, "Live migration").
//!
//! No feature is negotiated (in particular not MULTIPORT), so the device carries one port on queue 0
//! (receive: device → driver) and queue 1 (transmit). Legacy registers (offsets in the BAR): device
//! features u32 @0, driver features u32 @4, queue PFN u32 @8, queue size u16 @12, queue select u16 @14,
//! queue notify u16 @16, status u8 @18, ISR u8 @19. Nothing interrupts: avail.flags asks for none and the
//! PCI command register disables INTx; the driver polls the used rings.

use core::sync::atomic::{AtomicBool, Ordering, fence};

use super::dma::DmaRegion;
use super::virtq::{Buf, Error, Layout, MAX_SIZE, Virtq};
use crate::arch::pci::{self, Bdf};

const VENDOR: u16 = 0x1af4;
/// The transitional console's device id (a modern-only one is 0x1043, which has no I/O BAR).
const DEVICE: u16 = 0x1003;

const REG_FEATURES: u16 = 0;
const REG_DRIVER_FEATURES: u16 = 4;
const REG_QUEUE_PFN: u16 = 8;
const REG_QUEUE_SIZE: u16 = 12;
const REG_QUEUE_SELECT: u16 = 14;
const REG_QUEUE_NOTIFY: u16 = 16;
const REG_STATUS: u16 = 18;

const ACKNOWLEDGE: u8 = 1;
const DRIVER: u8 = 2;
const DRIVER_OK: u8 = 4;
const NEEDS_RESET: u8 = 0x40;
const FAILED: u8 = 0x80;

const RX: u16 = 0;
const TX: u16 = 1;

/// Ring memory per queue: enough for [`MAX_SIZE`] entries (10 246 bytes).
const RING_BYTES: usize = 3 * 4096;
/// Receive buffers: one page each.
const RX_BUF: usize = 4096;
const RX_SLOTS: usize = 32;
/// Transmit buffers: two pages each, a whole migration frame (12 + 8 + 4096 bytes) in one.
pub const TX_BUF: usize = 8192;
const TX_SLOTS: usize = 16;
const _: () = assert!(TX_SLOTS < 32 && RX_SLOTS <= 256);

#[repr(C, align(4096))]
struct Memory {
    rx_ring: [u8; RING_BYTES],
    tx_ring: [u8; RING_BYTES],
    rx: [u8; RX_BUF * RX_SLOTS],
    tx: [u8; TX_BUF * TX_SLOTS],
}

/// The device's memory (identity mapped, like all of the hypervisor's statics). Only the one [`Console`]
/// [`probe`] makes reaches it, through [`DmaRegion`]s.
static mut MEMORY: Memory = Memory {
    rx_ring: [0; RING_BYTES],
    tx_ring: [0; RING_BYTES],
    rx: [0; RX_BUF * RX_SLOTS],
    tx: [0; TX_BUF * TX_SLOTS],
};
static TAKEN: AtomicBool = AtomicBool::new(false);

/// A virtio console set up and running.
pub struct Console {
    bdf: Bdf,
    io: u16,
    rxq: Virtq,
    txq: Virtq,
    rx_ring: DmaRegion,
    tx_ring: DmaRegion,
    rx: DmaRegion,
    tx: DmaRegion,
    /// Per descriptor head in flight, its buffer slot.
    rx_slot: [u8; MAX_SIZE],
    tx_slot: [u8; MAX_SIZE],
    /// Free transmit slots (bit per slot).
    tx_free: u32,
    /// The receive buffer being consumed: slot, bytes in it, bytes consumed.
    cur: Option<(usize, usize, usize)>,
}

/// Find the device and bring it up. `Err` names what was missing or wrong (the device is then reset, so
/// it no longer uses our memory). Succeeds at most once: the console's memory has one owner.
pub fn probe() -> Result<Console, &'static str> {
    let bdf = pci::find(VENDOR, DEVICE).ok_or("no virtio console (1af4:1003) on PCI bus 0")?;
    pci::enable_io_and_bus_master(bdf);
    let io = pci::io_bar(bdf, 0).ok_or("its BAR 0 is not an I/O BAR")?;
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Err("already probed");
    }
    let m = &raw mut MEMORY;
    // SAFETY: MEMORY is a static (identity mapped, valid forever), taken once (TAKEN), and reached only
    // through these four regions, which do not overlap (distinct fields).
    let (rx_ring, tx_ring, rx, tx) = unsafe {
        (
            DmaRegion::new((&raw mut (*m).rx_ring).cast(), RING_BYTES),
            DmaRegion::new((&raw mut (*m).tx_ring).cast(), RING_BYTES),
            DmaRegion::new((&raw mut (*m).rx).cast(), RX_BUF * RX_SLOTS),
            DmaRegion::new((&raw mut (*m).tx).cast(), TX_BUF * TX_SLOTS),
        )
    };
    let r = start(bdf, io, rx_ring, tx_ring, rx, tx);
    if r.is_err() {
        pci::io_write8(io + REG_STATUS, FAILED);
        pci::io_write8(io + REG_STATUS, 0);
    }
    r
}

fn setup_queue(io: u16, q: u16, ring: &mut DmaRegion) -> Result<Virtq, &'static str> {
    pci::io_write16(io + REG_QUEUE_SELECT, q);
    let size = pci::io_read16(io + REG_QUEUE_SIZE);
    let layout =
        Layout::legacy(size).map_err(|_| "a queue size that is not a power of two ≤ 256")?;
    if layout.bytes > ring.len() {
        return Err("a queue too large for its ring memory");
    }
    if pci::io_read32(io + REG_QUEUE_PFN) != 0 {
        return Err("a queue already in use after reset");
    }
    ring.zero();
    let vq = Virtq::new(layout, ring);
    let pfn = ring.phys(0) >> 12;
    let pfn = u32::try_from(pfn).map_err(|_| "ring memory above 16 TiB")?;
    pci::io_write32(io + REG_QUEUE_PFN, pfn);
    if pci::io_read32(io + REG_QUEUE_PFN) != pfn {
        return Err("the queue address did not stick");
    }
    Ok(vq)
}

fn start(
    bdf: Bdf,
    io: u16,
    mut rx_ring: DmaRegion,
    mut tx_ring: DmaRegion,
    rx: DmaRegion,
    tx: DmaRegion,
) -> Result<Console, &'static str> {
    pci::io_write8(io + REG_STATUS, 0);
    if pci::io_read8(io + REG_STATUS) != 0 {
        return Err("the device does not reset");
    }
    pci::io_write8(io + REG_STATUS, ACKNOWLEDGE);
    pci::io_write8(io + REG_STATUS, ACKNOWLEDGE | DRIVER);
    // Offered features are read (the protocol) and none is taken: one port, queues 0 and 1.
    let _offered = pci::io_read32(io + REG_FEATURES);
    pci::io_write32(io + REG_DRIVER_FEATURES, 0);
    let rxq = setup_queue(io, RX, &mut rx_ring)?;
    let txq = setup_queue(io, TX, &mut tx_ring)?;
    let txq_size = txq.layout().size;
    let mut c = Console {
        bdf,
        io,
        rxq,
        txq,
        rx_ring,
        tx_ring,
        rx,
        tx,
        rx_slot: [0; MAX_SIZE],
        tx_slot: [0; MAX_SIZE],
        tx_free: (1u32 << TX_SLOTS.min(usize::from(txq_size))) - 1,
        cur: None,
    };
    let slots = RX_SLOTS.min(usize::from(c.rxq.layout().size));
    for s in 0..slots {
        c.post_rx(s)
            .map_err(|_| "cannot post the receive buffers")?;
    }
    pci::io_write8(io + REG_STATUS, ACKNOWLEDGE | DRIVER | DRIVER_OK);
    let st = pci::io_read8(io + REG_STATUS);
    if st & (NEEDS_RESET | FAILED) != 0 || st & DRIVER_OK == 0 {
        return Err("the device refused DRIVER_OK");
    }
    c.notify(RX);
    Ok(c)
}

impl Console {
    /// Where the device is.
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// Its I/O base.
    pub fn io_base(&self) -> u16 {
        self.io
    }

    /// Stop the device (it forgets the rings: our memory is no longer used) — for a device that broke
    /// the protocol.
    pub fn reset(&mut self) {
        pci::io_write8(self.io + REG_STATUS, 0);
    }

    fn notify(&mut self, q: u16) {
        // The rings' stores before the notification (the port write itself is not reordered).
        fence(Ordering::SeqCst);
        pci::io_write16(self.io + REG_QUEUE_NOTIFY, q);
    }

    fn post_rx(&mut self, slot: usize) -> Result<(), Error> {
        let b = Buf {
            addr: self.rx.phys(slot * RX_BUF),
            len: RX_BUF as u32,
            device_writes: true,
        };
        let head = self.rxq.push(&mut self.rx_ring, &[b])?;
        self.rx_slot[usize::from(head)] = slot as u8;
        Ok(())
    }

    /// Send the concatenation of `parts` (at most [`TX_BUF`] bytes) as one buffer. `Ok(false)`: every
    /// transmit buffer is still with the device (try again later).
    pub fn try_send(&mut self, parts: &[&[u8]]) -> Result<bool, Error> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 || total > TX_BUF {
            return Err(Error::Empty);
        }
        while let Some((head, _)) = self.txq.pop_used(&mut self.tx_ring)? {
            self.tx_free |= 1 << self.tx_slot[usize::from(head)];
        }
        if self.tx_free == 0 {
            return Ok(false);
        }
        let slot = self.tx_free.trailing_zeros() as usize;
        let mut at = slot * TX_BUF;
        for p in parts {
            self.tx.write_from(at, p);
            at += p.len();
        }
        let b = Buf {
            addr: self.tx.phys(slot * TX_BUF),
            len: total as u32,
            device_writes: false,
        };
        let head = self.txq.push(&mut self.tx_ring, &[b])?;
        self.tx_free &= !(1 << slot);
        self.tx_slot[usize::from(head)] = slot as u8;
        self.notify(TX);
        Ok(true)
    }

    /// Offer the received bytes not yet consumed to `f`, which returns how many it consumed (a buffer
    /// consumed to its end goes back to the device). `Ok(false)`: nothing has arrived.
    pub fn with_input(&mut self, f: impl FnOnce(&[u8]) -> usize) -> Result<bool, Error> {
        if self.cur.is_none() {
            let Some((head, len)) = self.rxq.pop_used(&mut self.rx_ring)? else {
                return Ok(false);
            };
            let slot = usize::from(self.rx_slot[usize::from(head)]);
            // `len` is at most the buffer's length (pop_used checked it).
            self.cur = Some((slot, len as usize, 0));
        }
        let Some((slot, len, pos)) = self.cur else {
            return Ok(false);
        };
        let n = f(self.rx.bytes(slot * RX_BUF + pos, len - pos)).min(len - pos);
        if pos + n < len {
            self.cur = Some((slot, len, pos + n));
        } else {
            self.cur = None;
            self.post_rx(slot)?;
            self.notify(RX);
        }
        Ok(true)
    }

    /// Drop everything received so far.
    pub fn drain(&mut self) -> Result<(), Error> {
        while self.with_input(|b| b.len())? {}
        Ok(())
    }

    /// Are transmit buffers still with the device?
    pub fn sending(&self) -> bool {
        self.txq.in_flight() > 0
    }
}
