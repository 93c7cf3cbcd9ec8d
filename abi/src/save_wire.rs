//! The serial-line form of a save image (pure; no allocation): how the hypervisor streams a stored image
//! over its console and `cargo xtask save` turns the console output back into a file.
//!
//! Text lines, each starting with [`PREFIX`] (anything before it on the line — a log prefix — is ignored,
//! and so is every line without it):
//!
//! ```text
//! R1PV-IMAGE begin NAME LEN SUM        LEN decimal bytes, SUM the FNV-1a of the image (16 hex digits)
//! R1PV-IMAGE d OFFSET HEX CRC           up to 48 bytes at OFFSET (hex), CRC of offset and bytes (8 hex)
//! R1PV-IMAGE z OFFSET COUNT CRC         COUNT (hex) zero bytes at OFFSET: runs of zero chunks
//! R1PV-IMAGE end LEN SUM                the same LEN and SUM again
//! ```
//!
//! [`Assembler`] accepts an image only if every wire line parses with a correct CRC, the chunks follow
//! each other with no gap or overlap from 0 to LEN, and the end line and the FNV-1a of the bytes assembled
//! agree with the begin line. A line lost or garbled on the way is therefore always noticed: a garbled line
//! either fails its CRC, stops being a wire line (then the next chunk does not follow), or changes LEN or
//! SUM (then begin and end disagree). The image inside is checked again by [`super::decode`].

use core::fmt::{self, Write};

/// What every wire line contains.
pub const PREFIX: &str = "R1PV-IMAGE ";
/// Bytes per data line.
pub const CHUNK: usize = 48;
/// The longest wire line (without the newline).
pub const LINE_MAX: usize = 160;

/// FNV-1a (64-bit) of `bytes`, continuing from `h` (start with [`FNV_START`]).
pub fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The FNV-1a offset basis.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn crc(offset: u64, payload: &[u8]) -> u32 {
    fnv(fnv(FNV_START, &offset.to_le_bytes()), payload) as u32
}

/// A line being built (no allocation).
struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Write `image` called `name` as wire lines; `emit` gets each line without its newline.
pub fn encode(name: &str, image: &[u8], mut emit: impl FnMut(&str)) {
    let sum = fnv(FNV_START, image);
    let mut line = |args: fmt::Arguments<'_>| {
        let mut l = Line {
            buf: [0; LINE_MAX],
            len: 0,
        };
        let _ = l.write_str(PREFIX);
        let _ = l.write_fmt(args);
        emit(core::str::from_utf8(&l.buf[..l.len]).unwrap_or_default());
    };
    line(format_args!("begin {name} {} {sum:016x}", image.len()));
    let mut at = 0;
    while at < image.len() {
        let zero_end = image[at..]
            .chunks(CHUNK)
            .take_while(|c| c.iter().all(|&b| b == 0))
            .map(<[u8]>::len)
            .sum::<usize>()
            + at;
        if zero_end > at {
            let count = (zero_end - at) as u64;
            let c = crc(at as u64, &count.to_le_bytes());
            line(format_args!("z {at:x} {count:x} {c:08x}"));
            at = zero_end;
            continue;
        }
        let chunk = &image[at..(at + CHUNK).min(image.len())];
        let c = crc(at as u64, chunk);
        line(format_args!("d {at:x} {} {c:08x}", Hex(chunk)));
        at += chunk.len();
    }
    line(format_args!("end {} {sum:016x}", image.len()));
}

struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// One parsed wire line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireLine<'a> {
    /// The image starts: its name, length and FNV-1a.
    Begin { name: &'a str, len: u64, sum: u64 },
    /// `n` bytes at `offset`.
    Data {
        offset: u64,
        bytes: [u8; CHUNK],
        n: usize,
    },
    /// `count` zero bytes at `offset`.
    Zero { offset: u64, count: u64 },
    /// The image ends.
    End { len: u64, sum: u64 },
}

/// Why the wire form was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A wire line that does not parse.
    BadLine,
    /// A line's CRC does not match.
    Crc,
    /// A line before `begin`, after `end`, or a second `begin`.
    Order,
    /// A chunk does not follow the previous one, or runs past the length.
    Gap { expected: u64, got: u64 },
    /// The end line or the assembled bytes disagree with the begin line.
    Sum,
    /// The output buffer is not the image's length.
    Length,
}

fn hex(s: &str) -> Result<u64, WireError> {
    if s.is_empty() || s.len() > 16 {
        return Err(WireError::BadLine);
    }
    u64::from_str_radix(s, 16).map_err(|_| WireError::BadLine)
}

fn dec(s: &str) -> Result<u64, WireError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WireError::BadLine);
    }
    s.parse().map_err(|_| WireError::BadLine)
}

/// Parse a console line: `Ok(None)` if it is not a wire line.
pub fn parse(line: &str) -> Result<Option<WireLine<'_>>, WireError> {
    let Some(at) = line.find(PREFIX) else {
        return Ok(None);
    };
    let mut w = line[at + PREFIX.len()..].trim_end().split(' ');
    let mut next = || w.next().ok_or(WireError::BadLine);
    let l = match next()? {
        "begin" => {
            let name = next()?;
            let ok = !name.is_empty()
                && name.len() <= crate::domctl::SAVED_NAME_MAX
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c));
            if !ok {
                return Err(WireError::BadLine);
            }
            WireLine::Begin {
                name,
                len: dec(next()?)?,
                sum: hex(next()?)?,
            }
        }
        "end" => WireLine::End {
            len: dec(next()?)?,
            sum: hex(next()?)?,
        },
        "z" => {
            let offset = hex(next()?)?;
            let count = hex(next()?)?;
            if hex(next()?)? != u64::from(crc(offset, &count.to_le_bytes())) {
                return Err(WireError::Crc);
            }
            WireLine::Zero { offset, count }
        }
        "d" => {
            let offset = hex(next()?)?;
            let digits = next()?;
            if digits.is_empty() || digits.len() % 2 != 0 || digits.len() > 2 * CHUNK {
                return Err(WireError::BadLine);
            }
            let mut bytes = [0u8; CHUNK];
            let n = digits.len() / 2;
            for (i, b) in bytes.iter_mut().take(n).enumerate() {
                *b = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16)
                    .map_err(|_| WireError::BadLine)?;
            }
            if hex(next()?)? != u64::from(crc(offset, &bytes[..n])) {
                return Err(WireError::Crc);
            }
            WireLine::Data { offset, bytes, n }
        }
        _ => return Err(WireError::BadLine),
    };
    if w.next().is_some() {
        return Err(WireError::BadLine);
    }
    Ok(Some(l))
}

/// Puts an image back together from its wire lines, in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Assembler {
    begun: Option<(u64, u64)>,
    next: u64,
    sum: u64,
    done: bool,
}

impl Assembler {
    /// Nothing seen yet.
    pub fn new() -> Assembler {
        Assembler::default()
    }

    /// The length `begin` announced.
    pub fn announced_len(&self) -> Option<u64> {
        self.begun.map(|(l, _)| l)
    }

    /// True once `end` was accepted: `out` holds the image.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Take one parsed line; `out` must be exactly the announced length once `begin` was seen.
    pub fn feed(&mut self, line: WireLine<'_>, out: &mut [u8]) -> Result<(), WireError> {
        if self.done {
            return Err(WireError::Order);
        }
        let Some((len, sum)) = self.begun else {
            return match line {
                WireLine::Begin { len, sum, .. } => {
                    self.begun = Some((len, sum));
                    self.sum = FNV_START;
                    Ok(())
                }
                _ => Err(WireError::Order),
            };
        };
        if out.len() as u64 != len {
            return Err(WireError::Length);
        }
        match line {
            WireLine::Begin { .. } => Err(WireError::Order),
            WireLine::Data { offset, bytes, n } => {
                self.put(out, offset, n as u64, Some(&bytes[..n]))
            }
            WireLine::Zero { offset, count } => self.put(out, offset, count, None),
            WireLine::End { len: l, sum: s } => {
                if l != len || s != sum || self.next != len || self.sum != sum {
                    return Err(WireError::Sum);
                }
                self.done = true;
                Ok(())
            }
        }
    }

    fn put(
        &mut self,
        out: &mut [u8],
        offset: u64,
        count: u64,
        bytes: Option<&[u8]>,
    ) -> Result<(), WireError> {
        let len = out.len() as u64;
        if offset != self.next || count == 0 || count > len - offset {
            return Err(WireError::Gap {
                expected: self.next,
                got: offset,
            });
        }
        let dst = &mut out[offset as usize..(offset + count) as usize];
        match bytes {
            Some(b) => dst.copy_from_slice(b),
            None => dst.fill(0),
        }
        self.sum = fnv(self.sum, dst);
        self.next = offset + count;
        Ok(())
    }
}

#[cfg(test)]
#[path = "save_wire_tests.rs"]
mod tests;
