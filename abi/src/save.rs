//! The domain save image: a versioned, checksummed sequence of typed records (pure; no allocation).
//!
//! Shared by everything that writes or reads a saved domain (the hypervisor, domain 0's toolstack and
//! `cargo xtask`), so it lives beside the ABI. Layout, all little-endian:
//!
//! ```text
//!  header (32 bytes): magic "R1PVSAVE" | version u32 | records u32 | total length u64 | checksum u64
//!  record:            kind u32 | payload length u32 | payload | zero padding to 8 bytes
//!  ...                the last record is END (empty)
//! ```
//!
//! The checksum is FNV-1a (64-bit) over the whole image with the checksum field taken as zero. Each FNV
//! step is a bijection of the running hash (xor with the byte, multiply by an odd prime), so a change
//! confined to one byte — in particular any flipped bit — always changes the checksum. [`decode`] accepts
//! an image only if every check holds: magic, version ([`VERSION`]; anything else is
//! [`SaveError::Version`]), the stated length equal to the bytes given (a truncated or extended image is
//! refused), the checksum, every record inside the image with zero padding, a known kind with the size
//! that kind must have, exactly one [`RecordKind::Domain`] and [`RecordKind::Vcpu`] and at most one
//! [`RecordKind::SharedInfo`], the record count, and END last with nothing after it.

/// The first eight bytes of every image.
pub const MAGIC: [u8; 8] = *b"R1PVSAVE";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 32;
/// Bytes of a record header (kind, length).
pub const RECORD_HEADER_LEN: usize = 8;
/// Byte offset of the checksum in the header.
const CHECKSUM_AT: usize = 24;
/// The largest payload a record may have (a page-table record: pfn, level, one page).
pub const MAX_PAYLOAD: usize = 16 + 4096;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RecordKind {
    /// The domain: pages, ceiling, flags, command line ([`DOMAIN_LEN`] bytes).
    Domain = 1,
    /// The vCPU: `abi::domctl::VcpuGuestContext` (5168 bytes).
    Vcpu = 2,
    /// One data page: pfn (u64) then its 4096 bytes.
    Page = 3,
    /// One page-table page, canonicalized (every entry's frame is a pfn, not an mfn): pfn (u64), level
    /// (u64, 1..=4, bit 8 set if pinned), then its 4096 bytes.
    PageTable = 4,
    /// The shared-info page (4096 bytes).
    SharedInfo = 5,
    /// Event channels: 16 bytes per open port (port u32, state u32, remote domain u32, remote port u32).
    EventChannels = 6,
    /// Timers: single-shot deadline, periodic period, system time at save (3 × u64, 24 bytes).
    Timers = 7,
    /// One data page that is all zeros: its pfn (u64) only (a fresh domain's memory is mostly these).
    ZeroPage = 8,
    /// The end.
    End = 0xffff,
}

/// Bytes of a [`RecordKind::Domain`] payload.
pub const DOMAIN_LEN: usize = 128;
/// Bytes of a [`RecordKind::Vcpu`] payload.
pub const VCPU_LEN: usize = core::mem::size_of::<crate::domctl::VcpuGuestContext>();

impl RecordKind {
    /// The kind with this number.
    pub const fn from_u32(v: u32) -> Option<RecordKind> {
        Some(match v {
            1 => RecordKind::Domain,
            2 => RecordKind::Vcpu,
            3 => RecordKind::Page,
            4 => RecordKind::PageTable,
            5 => RecordKind::SharedInfo,
            6 => RecordKind::EventChannels,
            7 => RecordKind::Timers,
            8 => RecordKind::ZeroPage,
            0xffff => RecordKind::End,
            _ => return None,
        })
    }

    /// Whether a payload of `len` bytes is the right size for this kind.
    pub const fn size_ok(self, len: usize) -> bool {
        match self {
            RecordKind::Domain => len == DOMAIN_LEN,
            RecordKind::Vcpu => len == VCPU_LEN,
            RecordKind::Page => len == 8 + 4096,
            RecordKind::PageTable => len == 16 + 4096,
            RecordKind::SharedInfo => len == 4096,
            RecordKind::EventChannels => len.is_multiple_of(16) && len <= 16 * 1024,
            RecordKind::Timers => len == 24,
            RecordKind::ZeroPage => len == 8,
            RecordKind::End => len == 0,
        }
    }
}

/// The pfn a canonical page-table entry names for the domain's shared-info frame (which is not one of its
/// pfns): rewritten to the new shared-info frame on restore. Above every real pfn.
pub const SHARED_INFO_PFN: u64 = (1 << 40) - 1;
/// [`RecordKind::PageTable`] level word: the table was pinned.
pub const PT_PINNED: u64 = 1 << 8;

/// The [`RecordKind::Domain`] payload: what the domain was, in pfns (no machine frame appears in an image).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainRecord {
    /// Length of the P2M: every pfn in the image is below it (start info's `nr_pages`).
    pub nr_pages: u64,
    /// The memory ceiling, pages.
    pub max_pages: u64,
    /// Pfn of the start-info page (named by the guest's suspend call).
    pub start_info_pfn: u64,
    /// Pfn of the page-table base (an L4).
    pub base_pfn: u64,
    /// The domain saved (for the log and `xl images`).
    pub source: u64,
    /// Hypervisor system time at the save, ns.
    pub saved_at_ns: u64,
}

impl DomainRecord {
    /// The payload ([`DOMAIN_LEN`] bytes; the rest zero).
    pub fn encode(&self) -> [u8; DOMAIN_LEN] {
        let mut b = [0u8; DOMAIN_LEN];
        let f = [
            self.nr_pages,
            self.max_pages,
            self.start_info_pfn,
            self.base_pfn,
            self.source,
            self.saved_at_ns,
        ];
        for (i, v) in f.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Read a payload; `None` unless it is [`DOMAIN_LEN`] bytes with the unused tail zero.
    pub fn decode(b: &[u8]) -> Option<DomainRecord> {
        if b.len() != DOMAIN_LEN || b[48..].iter().any(|&x| x != 0) {
            return None;
        }
        let u = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        Some(DomainRecord {
            nr_pages: u(0),
            max_pages: u(1),
            start_info_pfn: u(2),
            base_pfn: u(3),
            source: u(4),
            saved_at_ns: u(5),
        })
    }
}

/// One [`RecordKind::EventChannels`] entry: the port and its state, as the hypervisor's event table has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRecord {
    /// The port.
    pub port: u32,
    /// `EVTCHNSTAT_*`.
    pub state: u32,
    /// Remote domain (unbound, interdomain) or the VIRQ.
    pub a: u32,
    /// Remote port (interdomain).
    pub b: u32,
}

impl PortRecord {
    /// 16 bytes.
    pub fn encode(&self) -> [u8; 16] {
        let mut o = [0u8; 16];
        for (i, v) in [self.port, self.state, self.a, self.b].iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        o
    }

    /// The entries of an event-channel payload (its length is a multiple of 16, checked by [`decode`]).
    pub fn all(payload: &[u8]) -> impl Iterator<Item = PortRecord> + '_ {
        payload.chunks_exact(16).map(|c| PortRecord {
            port: u32_at(c, 0),
            state: u32_at(c, 4),
            a: u32_at(c, 8),
            b: u32_at(c, 12),
        })
    }
}

/// Why an image was refused (or could not be written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveError {
    /// Not an image (magic) or shorter than a header.
    NotAnImage,
    /// Another format version.
    Version(u32),
    /// The stated length is not the number of bytes given (truncated or extended).
    Length {
        /// What the header says.
        stated: u64,
        /// What was given.
        actual: u64,
    },
    /// The checksum does not match: the image is corrupt.
    Checksum,
    /// A record at this offset runs past the end, has an unknown kind, a wrong size or non-zero padding.
    BadRecord(usize),
    /// A required record is missing or appears twice, or the count is wrong.
    Structure,
    /// The output buffer is too small (encoding).
    NoSpace,
}

/// FNV-1a (64-bit) of `image` with the header's checksum field taken as zero.
pub fn checksum(image: &[u8]) -> u64 {
    let step = |h: u64, b: u8| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    let cut = image.len().min(CHECKSUM_AT);
    let rest = image.len().min(CHECKSUM_AT + 8);
    let mut h = image[..cut]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| step(h, b));
    h = (cut..rest).fold(h, |h, _| step(h, 0));
    image[rest..].iter().fold(h, |h, &b| step(h, b))
}

const fn padded(len: usize) -> usize {
    (len + 7) & !7
}

/// Writes an image into a caller-provided buffer, record by record; [`Encoder::finish`] adds END, the
/// header and the checksum.
pub struct Encoder<'a> {
    buf: &'a mut [u8],
    len: usize,
    records: u32,
}

impl<'a> Encoder<'a> {
    /// Start an image in `buf`.
    pub fn new(buf: &'a mut [u8]) -> Result<Encoder<'a>, SaveError> {
        if buf.len() < HEADER_LEN {
            return Err(SaveError::NoSpace);
        }
        buf[..HEADER_LEN].fill(0);
        Ok(Encoder {
            buf,
            len: HEADER_LEN,
            records: 0,
        })
    }

    /// Append a record whose payload is the concatenation of `parts`.
    pub fn record(&mut self, kind: RecordKind, parts: &[&[u8]]) -> Result<(), SaveError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > u32::MAX as usize {
            return Err(SaveError::NoSpace);
        }
        let end = self.len + RECORD_HEADER_LEN + padded(len);
        if end > self.buf.len() {
            return Err(SaveError::NoSpace);
        }
        let at = self.len;
        self.buf[at..at + 4].copy_from_slice(&(kind as u32).to_le_bytes());
        self.buf[at + 4..at + 8].copy_from_slice(&(len as u32).to_le_bytes());
        let mut p = at + RECORD_HEADER_LEN;
        for part in parts {
            self.buf[p..p + part.len()].copy_from_slice(part);
            p += part.len();
        }
        self.buf[p..end].fill(0);
        self.len = end;
        self.records += 1;
        Ok(())
    }

    /// Add END, the header and the checksum; returns the image's length.
    pub fn finish(mut self) -> Result<usize, SaveError> {
        self.record(RecordKind::End, &[])?;
        let len = self.len;
        let h = &mut self.buf[..HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.records.to_le_bytes());
        h[16..24].copy_from_slice(&(len as u64).to_le_bytes());
        let sum = checksum(&self.buf[..len]);
        self.buf[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
        Ok(len)
    }
}

/// A checked image: iterate over its records (END excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image<'a> {
    body: &'a [u8],
    records: u32,
}

impl<'a> Image<'a> {
    /// The records before END, in order.
    pub fn records(&self) -> Records<'a> {
        Records {
            rest: self.body,
            left: self.records - 1,
        }
    }

    /// The payload of the one record of `kind` (for the kinds that appear once).
    pub fn single(&self, kind: RecordKind) -> Option<&'a [u8]> {
        self.records().find(|(k, _)| *k == kind).map(|(_, p)| p)
    }
}

/// Iterator over an [`Image`]'s records.
#[derive(Clone, Debug)]
pub struct Records<'a> {
    rest: &'a [u8],
    left: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> Iterator for Records<'a> {
    type Item = (RecordKind, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // Checked by `decode`: every record is whole and well-formed.
        let kind = RecordKind::from_u32(u32_at(self.rest, 0))?;
        let len = u32_at(self.rest, 4) as usize;
        let payload = self.rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len)?;
        self.rest = self.rest.get(RECORD_HEADER_LEN + padded(len)..)?;
        self.left -= 1;
        Some((kind, payload))
    }
}

/// Check `image` completely (see the module documentation) before anything of it is used.
pub fn decode(image: &[u8]) -> Result<Image<'_>, SaveError> {
    if image.len() < HEADER_LEN || image[..8] != MAGIC {
        return Err(SaveError::NotAnImage);
    }
    let version = u32_at(image, 8);
    if version != VERSION {
        return Err(SaveError::Version(version));
    }
    let records = u32_at(image, 12);
    let stated = u64::from_le_bytes(image[16..24].try_into().unwrap_or_default());
    if stated != image.len() as u64 {
        return Err(SaveError::Length {
            stated,
            actual: image.len() as u64,
        });
    }
    let sum = u64::from_le_bytes(image[24..32].try_into().unwrap_or_default());
    if sum != checksum(image) {
        return Err(SaveError::Checksum);
    }
    let (mut at, mut seen, mut ended) = (HEADER_LEN, 0u32, false);
    let (mut domain, mut vcpu, mut shared) = (0, 0, 0);
    while at < image.len() {
        if ended || image.len() - at < RECORD_HEADER_LEN {
            return Err(SaveError::BadRecord(at));
        }
        let kind = RecordKind::from_u32(u32_at(image, at)).ok_or(SaveError::BadRecord(at))?;
        let len = u32_at(image, at + 4) as usize;
        let body = at + RECORD_HEADER_LEN;
        if !kind.size_ok(len) || image.len() - body < padded(len) {
            return Err(SaveError::BadRecord(at));
        }
        if image[body + len..body + padded(len)]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(SaveError::BadRecord(at));
        }
        match kind {
            RecordKind::Domain => domain += 1,
            RecordKind::Vcpu => vcpu += 1,
            RecordKind::SharedInfo => shared += 1,
            RecordKind::End => ended = true,
            _ => {}
        }
        seen += 1;
        at = body + padded(len);
    }
    if !ended || seen != records || domain != 1 || vcpu != 1 || shared > 1 {
        return Err(SaveError::Structure);
    }
    Ok(Image {
        body: &image[HEADER_LEN..],
        records,
    })
}

#[path = "save_wire.rs"]
pub mod wire;

#[cfg(test)]
#[path = "save_tests.rs"]
mod tests;

#[path = "save_mig.rs"]
pub mod mig;
