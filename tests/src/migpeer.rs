//! A host-side fake live-migration peer for `tests/tests/migrate_hostile.rs`: it connects to a QEMU's
//! second serial port (a TCP server chardev) and speaks `abi::save::mig` frames — as a hostile source
//! feeding a receiving hypervisor bad streams ([`rx_case`]), or as a minimal destination that
//! acknowledges every round of a real source ([`Peer::answer_rounds`]).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use abi::save::mig::{self, Reader};
use abi::save::{DomainRecord, Encoder, PT_PINNED, PortRecord, RecordKind};
use zerocopy::{FromZeros, IntoBytes};

/// One whole frame's bytes.
pub fn frame(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    mig::send(kind, parts, |b| v.extend_from_slice(b));
    v
}

fn w(x: u64) -> [u8; 8] {
    x.to_le_bytes()
}

/// The connection to one QEMU's COM2.
pub struct Peer {
    port: u16,
    conn: Option<TcpStream>,
    reader: Box<Reader>,
}

impl Peer {
    /// A peer for the chardev listening on `port` (connected on first use).
    pub fn new(port: u16) -> Peer {
        Peer {
            port,
            conn: None,
            reader: Box::new(Reader::new()),
        }
    }

    fn conn(&mut self) -> Result<&mut TcpStream, String> {
        if self.conn.is_none() {
            let t0 = Instant::now();
            let c = loop {
                match TcpStream::connect(("127.0.0.1", self.port)) {
                    Ok(c) => break c,
                    Err(e) if t0.elapsed() > Duration::from_secs(60) => {
                        return Err(format!("cannot connect to COM2 on port {}: {e}", self.port));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            };
            let _ = c.set_nodelay(true);
            self.conn = Some(c);
            *self.reader = Reader::new();
        }
        self.conn
            .as_mut()
            .ok_or_else(|| "no connection".to_string())
    }

    /// Connect now (the QEMU must be listening).
    pub fn connect(&mut self) -> Result<(), String> {
        self.conn().map(|_| ())
    }

    /// Write `bytes` to the other side.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.conn()?
            .write_all(bytes)
            .map_err(|e| format!("write to COM2: {e}"))
    }

    /// Close the connection (the next use reconnects).
    pub fn hang_up(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Forget whatever the other side sent so far.
    pub fn drain(&mut self) -> Result<(), String> {
        let c = self.conn()?;
        c.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        *self.reader = Reader::new();
        Ok(())
    }

    /// The next whole frame from the other side within `timeout`: kind and payload.
    pub fn next(&mut self, timeout: Duration) -> Result<(u8, Vec<u8>), String> {
        let t0 = Instant::now();
        loop {
            let left = timeout
                .checked_sub(t0.elapsed())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("no frame within {timeout:?}"))?;
            let c = self.conn()?;
            c.set_read_timeout(Some(left.min(Duration::from_millis(200))))
                .map_err(|e| e.to_string())?;
            let mut b = [0u8; 1];
            match c.read(&mut b) {
                Ok(0) => return Err("the other side closed the connection".into()),
                Ok(_) => match self.reader.push(b[0]) {
                    Ok(true) => {
                        let (k, p) = self.reader.frame();
                        return Ok((k, p.to_vec()));
                    }
                    Ok(false) => {}
                    Err(e) => return Err(format!("a bad frame from the other side: {e:?}")),
                },
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("read from COM2: {e}")),
            }
        }
    }

    /// Expect a frame of `kind` next; its first word.
    pub fn expect(&mut self, kind: u8, timeout: Duration) -> Result<u64, String> {
        let (k, p) = self.next(timeout)?;
        if k != kind {
            return Err(format!(
                "expected a frame of kind {kind}, got kind {k} ({:?})",
                &p[..p.len().min(16)]
            ));
        }
        Ok(mig::word(&p, 0))
    }

    /// Act as a destination until `stop` says so: answer every ROUND_END with its ACK; count the STARTs
    /// and ABORTs seen (returned).
    pub fn answer_rounds(&mut self, stop: &dyn Fn() -> bool) -> Result<(u32, u32), String> {
        let (mut starts, mut aborts) = (0, 0);
        while !stop() {
            let (k, p) = match self.next(Duration::from_millis(300)) {
                Ok(f) => f,
                Err(e) if e.starts_with("no frame") => continue,
                // The machine powered off.
                Err(e) if e.contains("closed the connection") => break,
                Err(e) => return Err(e),
            };
            match k {
                mig::START => starts += 1,
                mig::ABORT => aborts += 1,
                mig::ROUND_END => {
                    let ack = frame(mig::ACK, &[&p[..8]]);
                    self.send(&ack)?;
                }
                _ => {}
            }
        }
        Ok((starts, aborts))
    }
}

/// The guest kernel's base address (`guest_kernel::mm::KERNEL_VIRT_BASE`), where the synthetic domain
/// is mapped.
const BASE: u64 = 0xffff_ffff_8000_0000;
/// Pages of the synthetic domain.
pub const NR: u64 = 8;

/// A small valid save image (the one `test=save-hostile` builds): pfns 0..4 the four page-table levels,
/// 4 the start info, 5 the P2M, 6 code (`jmp $`), 7 stack, mapped at the kernel's base address.
pub fn small_image() -> Vec<u8> {
    image(&[], false)
}

/// The code page of [`small_image`] (`jmp $` throughout).
pub fn code_page() -> Vec<u8> {
    [0xeb, 0xfe].repeat(2048)
}

/// [`small_image`] without the data pages `left_out` (a migration's tail: the destination holds them),
/// and with `writable_table` its L1 mapping itself writable (the validator refuses it).
pub fn image(left_out: &[u64], writable_table: bool) -> Vec<u8> {
    let pte = |pfn: u64, flags: u64| (pfn << 12) | flags;
    let mut tables = [[0u64; 512]; 4];
    tables[0][511] = pte(1, 3);
    tables[1][510] = pte(2, 3);
    tables[2][0] = pte(3, 3);
    for pfn in 0..NR {
        tables[3][pfn as usize] = pte(pfn, if pfn < 4 { 1 } else { 3 });
    }
    if writable_table {
        tables[3][3] = pte(3, 3);
    }
    let mut si = abi::xen::StartInfo::new_zeroed();
    si.magic[..14].copy_from_slice(b"xen-3.0-x86_64");
    si.nr_pages = NR;
    si.mfn_list = BASE + 5 * 4096;
    si.pt_base = BASE;
    let mut ctx = abi::domctl::VcpuGuestContext::new_zeroed();
    ctx.user_regs.rip = BASE + 6 * 4096;
    ctx.user_regs.rsp = BASE + 8 * 4096;
    ctx.user_regs.cs = abi::layout::GUEST_KERNEL_CS;
    ctx.user_regs.ss = abi::layout::GUEST_KERNEL_SS;
    ctx.user_regs.rflags = 0x202;
    ctx.kernel_ss = u64::from(abi::layout::GUEST_KERNEL_SS);
    let dr = DomainRecord {
        nr_pages: NR,
        max_pages: NR,
        start_info_pfn: 4,
        base_pfn: 0,
        source: 77,
        saved_at_ns: 0,
    };
    let timer = PortRecord {
        port: 3,
        state: abi::event_channel::EVTCHNSTAT_VIRQ,
        a: abi::event_channel::VIRQ_TIMER,
        b: 0,
    };
    let mut start = vec![0u8; 4096];
    start[..core::mem::size_of::<abi::xen::StartInfo>()].copy_from_slice(si.as_bytes());
    let code = code_page();
    let mut buf = vec![0u8; 64 * 1024];
    let mut e = Encoder::new(&mut buf).expect("room for a header");
    let go = || -> Result<usize, abi::save::SaveError> {
        e.record(RecordKind::Domain, &[&dr.encode()])?;
        e.record(RecordKind::Vcpu, &[ctx.as_bytes()])?;
        e.record(RecordKind::EventChannels, &[&timer.encode()])?;
        for (pfn, t) in tables.iter().enumerate() {
            let level = 4 - pfn as u64;
            let word = if pfn == 0 { level | PT_PINNED } else { level };
            e.record(
                RecordKind::PageTable,
                &[&w(pfn as u64), &w(word), t.as_bytes()],
            )?;
        }
        for pfn in (4..NR).filter(|p| !left_out.contains(p)) {
            let body: &[u8] = if pfn == 4 { &start } else { &code };
            e.record(RecordKind::Page, &[&w(pfn), body])?;
        }
        e.finish()
    };
    let len = go().expect("the small image fits");
    buf.truncate(len);
    buf
}

/// A tail: TAIL_BEGIN `len`, the bytes of `img` in TAIL frames, TAIL_END with `len` and `sum`.
fn tail(img: &[u8], len: u64, sum: u64) -> Vec<u8> {
    let mut v = frame(mig::TAIL_BEGIN, &[&w(len)]);
    for (i, chunk) in img.chunks(4096).enumerate() {
        v.extend(frame(mig::TAIL, &[&w(i as u64 * 4096), chunk]));
    }
    v.extend(frame(mig::TAIL_END, &[&w(len), &w(sum)]));
    v
}

fn fnv(b: &[u8]) -> u64 {
    abi::save::wire::fnv(abi::save::wire::FNV_START, b)
}

const ANSWER: Duration = Duration::from_secs(20);

/// Send the hostile stream of case `name` (`guest-kernel/src/scenarios/migrate_hostile.rs`, `RX_CASES`)
/// and check the destination's answers where it gives one. The destination is waiting in its receive.
pub fn rx_case(p: &mut Peer, name: &str) -> Result<(), String> {
    p.drain()?;
    let start = |n: u64| frame(mig::START, &[&w(n)]);
    let page = |pfn: u64| frame(mig::PAGE, &[&w(pfn), &[0x5a; 4096]]);
    let header = |kind: u8, len: u32| {
        let mut h = [0u8; mig::HEADER];
        h[..2].copy_from_slice(&mig::MAGIC);
        h[2] = kind;
        h[4..8].copy_from_slice(&len.to_le_bytes());
        h
    };
    match name {
        "bad-crc" => {
            let mut f = start(NR);
            f[8] ^= 1;
            p.send(&f)
        }
        "wrong-version" => {
            let mut f = start(NR);
            f[1] = mig::MAGIC[1] + 1;
            p.send(&f[..mig::HEADER])
        }
        "oversize-length" => p.send(&header(mig::TAIL, mig::MAX_PAYLOAD as u32 + 1)),
        "unknown-kind" => p.send(&header(99, 8)),
        "wrong-size-for-kind" => p.send(&header(mig::START, 4)),
        "page-before-start" => p.send(&page(0)),
        "count-zero" => p.send(&start(0)),
        "count-above-limit" => p.send(&start(abi::domctl::MAX_DOMAIN_MEM_KB / 4 + 1)),
        "start-twice" => p.send(&[start(NR), start(NR)].concat()),
        "pfn-beyond-count" => p.send(&[start(NR), page(NR)].concat()),
        "hash-beyond-count" => {
            p.send(&[start(NR), frame(mig::HASH, &[&w(NR), &w(0x1234)])].concat())
        }
        "hash-unknown-then-abort" => {
            // A correct round whose digest the destination cannot match: it lists the pfn as missing,
            // then acknowledges; a second round sends it; then the source gives up.
            let round0 = [
                start(NR),
                page(0),
                frame(mig::ZERO, &[&w(1)]),
                frame(mig::HASH, &[&w(2), &w(0x0bad_d16e_57ba_d5ed)]),
                frame(mig::ROUND_END, &[&w(0), &w(3)]),
            ]
            .concat();
            p.send(&round0)?;
            let (k, missing) = p.next(ANSWER)?;
            if k != mig::MISSING || missing != w(2) {
                return Err(format!("expected MISSING [2], got kind {k} {missing:?}"));
            }
            let round = p.expect(mig::ACK, ANSWER)?;
            if round != 0 {
                return Err(format!("ACK of round {round}, expected 0"));
            }
            p.send(&[page(2), frame(mig::ROUND_END, &[&w(1), &w(1)])].concat())?;
            let round = p.expect(mig::ACK, ANSWER)?;
            if round != 1 {
                return Err(format!("ACK of round {round}, expected 1"));
            }
            p.send(&frame(mig::ABORT, &[]))
        }
        "tail-before-begin" => p.send(&[start(NR), frame(mig::TAIL, &[&w(0), &[1; 16]])].concat()),
        "tail-too-long" => {
            let len = abi::domctl::SAVED_IMAGES_MAX_FRAMES * 4096 + 1;
            p.send(&[start(NR), frame(mig::TAIL_BEGIN, &[&w(len)])].concat())
        }
        "tail-offset-wraps" => p.send(
            &[
                start(NR),
                frame(mig::TAIL_BEGIN, &[&w(4096)]),
                frame(mig::TAIL, &[&w(u64::MAX - 7), &[1; 16]]),
            ]
            .concat(),
        ),
        "tail-past-its-length" => p.send(
            &[
                start(NR),
                frame(mig::TAIL_BEGIN, &[&w(64)]),
                frame(mig::TAIL, &[&w(32), &[1; 64]]),
            ]
            .concat(),
        ),
        "tail-bad-checksum" | "tail-truncated" | "tail-corrupt-image" => {
            let img = small_image();
            let stream = match name {
                "tail-bad-checksum" => tail(&img, img.len() as u64, fnv(&img) ^ 1),
                "tail-truncated" => {
                    let cut = &img[..img.len() / 2];
                    tail(cut, cut.len() as u64, fnv(cut))
                }
                _ => {
                    let mut bad = img.clone();
                    let mid = bad.len() / 2;
                    bad[mid] ^= 0x40;
                    tail(&bad, bad.len() as u64, fnv(&bad))
                }
            };
            p.send(&[start(NR), stream].concat())?;
            p.expect(mig::REFUSED, ANSWER).map(|_| ())
        }
        "abort-mid-stream" => p.send(&[start(NR), page(0), frame(mig::ABORT, &[])].concat()),
        "silence" => p.send(&[start(NR), page(0)].concat()),
        "cut-mid-frame" => {
            let f = page(1);
            p.send(&[start(NR), page(0), f[..100].to_vec()].concat())?;
            p.hang_up();
            Ok(())
        }
        "kept-pages-refused" | "kept-pages-valid" => {
            // Pages 6 and 7 sent before the tail (the destination keeps them and the restore adopts their
            // frames), the tail without them; refused, its L1 maps itself writable: the adopted frames
            // must be freed with the rest.
            let img = image(&[6, 7], name == "kept-pages-refused");
            let code = code_page();
            let pages = [6, 7].map(|pfn| frame(mig::PAGE, &[&w(pfn), &code]));
            let stream = tail(&img, img.len() as u64, fnv(&img));
            p.send(&[start(NR), pages.concat(), stream].concat())?;
            let want = if name == "kept-pages-valid" {
                mig::DONE
            } else {
                mig::REFUSED
            };
            p.expect(want, ANSWER).map(|_| ())
        }
        "valid" => {
            let img = small_image();
            p.send(&[start(NR), tail(&img, img.len() as u64, fnv(&img))].concat())?;
            p.expect(mig::DONE, ANSWER).map(|_| ())
        }
        other => Err(format!("no such case {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_small_image_decodes_and_frames_read_back() {
        let img = small_image();
        assert!(abi::save::decode(&img).is_ok());
        let f = frame(mig::START, &[&w(NR)]);
        let mut r = Reader::new();
        let done: Vec<bool> = f
            .iter()
            .map(|&b| r.push(b).expect("a good frame"))
            .collect();
        assert_eq!(done.iter().filter(|&&d| d).count(), 1);
        assert_eq!(r.frame(), (mig::START, &w(NR)[..]));
    }
}
