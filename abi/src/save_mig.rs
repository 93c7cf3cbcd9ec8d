//! The live-migration stream (pure; no allocation): binary frames on the second serial line (COM2)
//! between the source hypervisor and the destination's, carrying pre-copy rounds of pages, the
//! stop-and-copy tail (an `abi::save` image of everything but the unchanged data pages) and the answers.
//!
//! A frame is `MAGIC[2] kind[1] 0[1] len[u32 le] crc[u32 le] payload[len]`; the CRC is the low half of
//! the FNV-1a of kind, length and payload. `MAGIC` carries the stream's version: a frame of another
//! version, a wrong CRC, a length past [`MAX_PAYLOAD`] or a payload of the wrong size for its kind is
//! refused ([`Reader::push`]), and the migration with it.

use super::wire::{FNV_START, fnv};

/// Frame magic: `M` and the stream version (1).
pub const MAGIC: [u8; 2] = [b'M', 1];
/// Bytes before the payload.
pub const HEADER: usize = 12;
/// The largest payload: a pfn or offset and one page.
pub const MAX_PAYLOAD: usize = 8 + 4096;

/// source → destination: the P2M length (`nr_pages`); payload `u64`.
pub const START: u8 = 1;
/// A data page: pfn `u64` and its 4096 bytes.
pub const PAGE: u8 = 2;
/// An all-zero data page: pfn `u64`.
pub const ZERO: u8 = 3;
/// End of a pre-copy round: round and pages sent, `u64` each; answered by [`ACK`].
pub const ROUND_END: u8 = 4;
/// The stop-and-copy tail image begins: its length `u64`.
pub const TAIL_BEGIN: u8 = 5;
/// Tail bytes: offset `u64` and up to 4096 bytes.
pub const TAIL: u8 = 6;
/// The tail is complete: length and FNV-1a `u64` each; answered by [`DONE`] or [`REFUSED`].
pub const TAIL_END: u8 = 7;
/// The source gives up: the destination drops everything it received.
pub const ABORT: u8 = 8;
/// destination → source: round `u64` received.
pub const ACK: u8 = 9;
/// destination → source: the domain runs here as `u64` domain id (the source may destroy its copy).
pub const DONE: u8 = 10;
/// destination → source: the image was refused (errno `u64`); the source resumes its domain.
pub const REFUSED: u8 = 11;

/// A data page by digest: pfn and `migrate_track`'s 64-bit digest; the destination copies a page of
/// its own with that digest, or lists the pfn in [`MISSING`].
pub const HASH: u8 = 12;
/// destination → source, before the round's [`ACK`]: pfns (`u64` each, up to 512) whose [`HASH`] it
/// could not match; the source sends them as [`PAGE`]s.
pub const MISSING: u8 = 13;
/// source → destination, in the tail of a verifying migration (`xl migrate --verify`), before
/// [`TAIL_END`]: (pfn, digest) pairs, `u64` each, up to 256 a frame, of every data page of the suspended
/// domain; the destination refuses the image ([`REFUSED`]) if a page it would restore differs.
pub const VERIFY: u8 = 14;

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Not this stream's magic or version.
    Magic,
    /// The length is too large or wrong for the kind.
    Length,
    /// An unknown kind.
    Kind,
    /// The CRC does not match.
    Crc,
}

fn crc(kind: u8, payload: &[u8]) -> u32 {
    let h = fnv(FNV_START, &[kind]);
    let h = fnv(h, &(payload.len() as u32).to_le_bytes());
    fnv(h, payload) as u32
}

/// Is `len` a valid payload length for `kind`?
pub fn size_ok(kind: u8, len: usize) -> Result<(), FrameError> {
    let ok = match kind {
        START | ZERO | TAIL_BEGIN | ACK | DONE | REFUSED => len == 8,
        PAGE => len == 8 + 4096,
        ROUND_END | TAIL_END | HASH => len == 16,
        MISSING => (8..=4096).contains(&len) && len.is_multiple_of(8),
        VERIFY => (16..=4096).contains(&len) && len.is_multiple_of(16),
        TAIL => (9..=MAX_PAYLOAD).contains(&len),
        ABORT => len == 0,
        _ => return Err(FrameError::Kind),
    };
    if ok { Ok(()) } else { Err(FrameError::Length) }
}

/// The header of a frame of `kind` whose payload is the concatenation of `parts`.
pub fn header(kind: u8, parts: &[&[u8]]) -> [u8; HEADER] {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut h = fnv(FNV_START, &[kind]);
    h = fnv(h, &(len as u32).to_le_bytes());
    for p in parts {
        h = fnv(h, p);
    }
    let mut out = [0u8; HEADER];
    out[..2].copy_from_slice(&MAGIC);
    out[2] = kind;
    out[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    out[8..12].copy_from_slice(&(h as u32).to_le_bytes());
    out
}

/// Write one frame through `put` (header, then each part).
pub fn send(kind: u8, parts: &[&[u8]], mut put: impl FnMut(&[u8])) {
    put(&header(kind, parts));
    for p in parts {
        put(p);
    }
}

/// The `u64` at byte `at` of a payload (0 past its end).
pub fn word(payload: &[u8], at: usize) -> u64 {
    payload
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Reassembles frames from a byte stream.
pub struct Reader {
    buf: [u8; HEADER + MAX_PAYLOAD],
    len: usize,
}

impl Default for Reader {
    fn default() -> Self {
        Self::new()
    }
}

impl Reader {
    /// An empty reader.
    pub const fn new() -> Self {
        Reader {
            buf: [0; HEADER + MAX_PAYLOAD],
            len: 0,
        }
    }

    fn want(&self) -> usize {
        HEADER + u32::from_le_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize
    }

    /// Take one byte: `Ok(true)` when a whole, checked frame is ready ([`Reader::frame`]; the next byte
    /// starts a new one). Any error makes the stream unusable (the caller gives up).
    pub fn push(&mut self, b: u8) -> Result<bool, FrameError> {
        if self.len >= self.buf.len() || (self.len >= HEADER && self.len >= self.want()) {
            self.len = 0;
        }
        self.buf[self.len] = b;
        self.len += 1;
        if self.len == 2 && self.buf[..2] != MAGIC {
            self.len = 0;
            return Err(FrameError::Magic);
        }
        if self.len == 4 && self.buf[3] != 0 {
            self.len = 0;
            return Err(FrameError::Magic);
        }
        if self.len == HEADER {
            let l = self.want() - HEADER;
            if l > MAX_PAYLOAD {
                self.len = 0;
                return Err(FrameError::Length);
            }
            size_ok(self.buf[2], l).inspect_err(|_| self.len = 0)?;
        }
        if self.len >= HEADER && self.len == self.want() {
            let (kind, p) = self.frame();
            let want = u32::from_le_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]);
            if crc(kind, p) != want {
                self.len = 0;
                return Err(FrameError::Crc);
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// The frame just completed: its kind and payload.
    pub fn frame(&self) -> (u8, &[u8]) {
        (self.buf[2], &self.buf[HEADER..self.len])
    }
}

#[cfg(test)]
#[path = "save_mig_tests.rs"]
mod tests;
