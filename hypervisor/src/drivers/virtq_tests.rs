//! Host tests of the split virtqueue: layout, allocation, index wrap, and a hostile device.

use super::*;

/// Ring memory of exactly the layout's size: any access past it panics (the test fails), which is how
/// these tests show the driver never reaches outside its rings.
struct TestMem(Vec<u8>);

impl TestMem {
    fn new(l: Layout) -> TestMem {
        TestMem(vec![0; l.bytes])
    }
}

impl Mem for TestMem {
    fn read16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.0[off..off + 2].try_into().unwrap())
    }
    fn read32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.0[off..off + 4].try_into().unwrap())
    }
    fn write16(&mut self, off: usize, v: u16) {
        self.0[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn write32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn write64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// One descriptor as the device sees it: address, length, flags.
type Desc = (u64, u32, u16);

/// A well-behaved device: takes avail entries in order, returns them through the used ring.
struct Device {
    l: Layout,
    last_avail: u16,
    used_idx: u16,
}

impl Device {
    fn new(l: Layout) -> Device {
        Device {
            l,
            last_avail: 0,
            used_idx: 0,
        }
    }

    /// Take the next avail chain: (head, its buffers as (addr, len, flags)).
    fn take(&mut self, m: &TestMem) -> Option<(u16, Vec<Desc>)> {
        if m.read16(self.l.avail + 2) == self.last_avail {
            return None;
        }
        let slot = usize::from(self.last_avail % self.l.size);
        let head = m.read16(self.l.avail + 4 + 2 * slot);
        self.last_avail = self.last_avail.wrapping_add(1);
        let mut d = head;
        let mut out = vec![];
        loop {
            let at = 16 * usize::from(d);
            let addr = u64::from_le_bytes(m.0[at..at + 8].try_into().unwrap());
            let flags = m.read16(at + 12);
            out.push((addr, m.read32(at + 8), flags));
            if flags & DESC_NEXT == 0 {
                break;
            }
            d = m.read16(at + 14);
        }
        Some((head, out))
    }

    fn give(&mut self, m: &mut TestMem, id: u32, len: u32) {
        let slot = usize::from(self.used_idx % self.l.size);
        m.write32(self.l.used + 4 + 8 * slot, id);
        m.write32(self.l.used + 8 + 8 * slot, len);
        self.used_idx = self.used_idx.wrapping_add(1);
        m.write16(self.l.used + 2, self.used_idx);
    }
}

fn rx(addr: u64, len: u32) -> Buf {
    Buf {
        addr,
        len,
        device_writes: true,
    }
}

fn tx(addr: u64, len: u32) -> Buf {
    Buf {
        addr,
        len,
        device_writes: false,
    }
}

fn setup(size: u16) -> (Virtq, TestMem, Device) {
    let l = Layout::legacy(size).unwrap();
    let mut m = TestMem::new(l);
    let q = Virtq::new(l, &mut m);
    (q, m, Device::new(l))
}

#[test]
fn virtq_legacy_layout() {
    // QEMU's virtio-serial queues have 128 entries: descriptors 2 KiB, avail 262 bytes, used at 4096.
    let l = Layout::legacy(128).unwrap();
    assert_eq!((l.avail, l.used, l.bytes), (2048, 4096, 4096 + 6 + 1024));
    let l = Layout::legacy(256).unwrap();
    assert_eq!((l.avail, l.used, l.bytes), (4096, 8192, 8192 + 6 + 2048));
    let l = Layout::legacy(1).unwrap();
    assert_eq!((l.avail, l.used), (16, 4096));
    for bad in [0, 3, 100, 512, 1024, 32768, 65535] {
        assert_eq!(Layout::legacy(bad), Err(Error::Size), "{bad}");
    }
}

#[test]
fn virtq_push_writes_descriptors_and_avail_and_asks_for_no_interrupts() {
    let (mut q, mut m, mut dev) = setup(8);
    assert_eq!(m.read16(q.layout().avail), AVAIL_NO_INTERRUPT);
    let h = q.push(&mut m, &[tx(0x1000, 100), rx(0x2000, 50)]).unwrap();
    assert_eq!(q.free(), 6);
    let (head, bufs) = dev.take(&m).unwrap();
    assert_eq!(head, h);
    assert_eq!(
        bufs,
        vec![(0x1000, 100, DESC_NEXT), (0x2000, 50, DESC_WRITE)]
    );
    assert_eq!(q.pop_used(&mut m), Ok(None));
    dev.give(&mut m, u32::from(h), 50);
    assert_eq!(q.pop_used(&mut m), Ok(Some((h, 50))));
    assert_eq!((q.free(), q.in_flight()), (8, 0));
    assert_eq!(q.pop_used(&mut m), Ok(None));
}

#[test]
fn virtq_full_and_empty_chains_are_refused() {
    let (mut q, mut m, _) = setup(4);
    assert_eq!(q.push(&mut m, &[]), Err(Error::Empty));
    assert_eq!(q.push(&mut m, &[tx(1, 0)]), Err(Error::Empty));
    assert_eq!(q.push(&mut m, &[tx(1, 1); 5]), Err(Error::Full));
    for _ in 0..4 {
        q.push(&mut m, &[tx(1, 1)]).unwrap();
    }
    assert_eq!(q.push(&mut m, &[tx(1, 1)]), Err(Error::Full));
}

#[test]
fn virtq_indices_wrap_past_65535_and_descriptors_are_reused() {
    // 70 000 chains of 1–3 buffers through a 4-entry queue, returned out of order in pairs.
    let (mut q, mut m, mut dev) = setup(4);
    for i in 0..70_000u32 {
        let n = (i % 2 + 1) as usize;
        let bufs: Vec<Buf> = (0..n)
            .map(|k| rx(u64::from(i) * 8 + k as u64, 10))
            .collect();
        let h = q.push(&mut m, &bufs).unwrap();
        let (head, got) = dev.take(&m).unwrap();
        assert_eq!(head, h);
        assert_eq!(got.len(), n);
        dev.give(&mut m, u32::from(h), 10 * n as u32);
        assert_eq!(q.pop_used(&mut m), Ok(Some((h, 10 * n as u32))));
        assert_eq!(q.free(), 4);
    }
    // Out of order: two in flight, the second returned first.
    let a = q.push(&mut m, &[rx(1, 4), rx(2, 4)]).unwrap();
    let b = q.push(&mut m, &[rx(3, 4), rx(4, 4)]).unwrap();
    assert_eq!(q.free(), 0);
    dev.give(&mut m, u32::from(b), 8);
    dev.give(&mut m, u32::from(a), 0);
    assert_eq!(q.pop_used(&mut m), Ok(Some((b, 8))));
    assert_eq!(q.pop_used(&mut m), Ok(Some((a, 0))));
    assert_eq!(q.free(), 4);
}

#[test]
fn virtq_hostile_used_id_out_of_range_or_not_in_flight_breaks_the_queue() {
    for id in [8u32, 9, 0xffff, 0x1_0000, u32::MAX, 5] {
        let (mut q, mut m, mut dev) = setup(8);
        let h = q.push(&mut m, &[rx(0x1000, 64)]).unwrap();
        assert_eq!(h, 0);
        dev.give(&mut m, id, 1);
        assert_eq!(q.pop_used(&mut m), Err(Error::Broken), "id {id}");
        assert!(q.is_broken());
        assert_eq!(q.pop_used(&mut m), Err(Error::Broken));
        assert_eq!(q.push(&mut m, &[rx(1, 1)]), Err(Error::Broken));
    }
    // The same head returned twice.
    let (mut q, mut m, mut dev) = setup(8);
    let h = q.push(&mut m, &[rx(0x1000, 64)]).unwrap();
    q.push(&mut m, &[rx(0x2000, 64)]).unwrap();
    dev.give(&mut m, u32::from(h), 1);
    dev.give(&mut m, u32::from(h), 1);
    assert_eq!(q.pop_used(&mut m), Ok(Some((h, 1))));
    assert_eq!(q.pop_used(&mut m), Err(Error::Broken));
    // A non-head descriptor of a chain in flight.
    let (mut q, mut m, mut dev) = setup(8);
    let h = q.push(&mut m, &[rx(1, 4), rx(2, 4)]).unwrap();
    dev.give(&mut m, u32::from(h) + 1, 1);
    assert_eq!(q.pop_used(&mut m), Err(Error::Broken));
}

#[test]
fn virtq_hostile_used_len_past_the_writable_buffers_breaks_the_queue() {
    let (mut q, mut m, mut dev) = setup(8);
    let h = q
        .push(&mut m, &[tx(0x1000, 4000), rx(0x2000, 100)])
        .unwrap();
    dev.give(&mut m, u32::from(h), 101);
    assert_eq!(q.pop_used(&mut m), Err(Error::Broken));
    // A device-readable chain: the device may write nothing.
    let (mut q, mut m, mut dev) = setup(8);
    let h = q.push(&mut m, &[tx(0x1000, 4000)]).unwrap();
    dev.give(&mut m, u32::from(h), 1);
    assert_eq!(q.pop_used(&mut m), Err(Error::Broken));
    // Exactly the buffer: fine.
    let (mut q, mut m, mut dev) = setup(8);
    let h = q.push(&mut m, &[rx(0x1000, 100), rx(0x2000, 28)]).unwrap();
    dev.give(&mut m, u32::from(h), 128);
    assert_eq!(q.pop_used(&mut m), Ok(Some((h, 128))));
}

#[test]
fn virtq_hostile_used_index_running_ahead_breaks_the_queue() {
    for jump in [2u16, 9, 100, 0x8000, 0xffff] {
        let (mut q, mut m, _) = setup(8);
        q.push(&mut m, &[rx(0x1000, 64)]).unwrap();
        let used = q.layout().used;
        m.write16(used + 2, jump);
        assert_eq!(q.pop_used(&mut m), Err(Error::Broken), "jump {jump}");
    }
}

#[test]
fn virtq_hostile_random_used_rings_never_panic_nor_reach_outside() {
    // A device writing random words into the used ring (and its index): every outcome is a chain we
    // gave, with a length within it, or Broken; TestMem panics on any access past the rings.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for size in [1u16, 2, 8, 128, 256] {
        for _ in 0..200 {
            let (mut q, mut m, _) = setup(size);
            let l = q.layout();
            let mut given = std::collections::HashMap::new();
            for _ in 0..=(rnd() % u64::from(size)) {
                let len = (rnd() % 4096 + 1) as u32;
                if let Ok(h) = q.push(&mut m, &[rx(0x1000, len)]) {
                    given.insert(h, len);
                }
            }
            for _ in 0..(rnd() % 8) {
                let off = l.used + (rnd() as usize % (l.bytes - l.used - 3));
                m.write32(off, rnd() as u32);
            }
            for _ in 0..300 {
                match q.pop_used(&mut m) {
                    Ok(Some((h, len))) => {
                        let want = given.remove(&h).expect("a chain we did not give");
                        assert!(len <= want);
                    }
                    Ok(None) | Err(Error::Broken) => break,
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
    }
}
