//! Property tests of the serial-line form: random images round-trip; every line lost and every bit
//! flipped is refused, or (a flip that does not change a value, e.g. a hex digit's case) yields the very
//! same image.

extern crate std;
use std::string::String;
use std::vec;
use std::vec::Vec;

use super::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random image: random length, stretches of zeros and of random bytes.
fn image(rng: &mut Rng) -> Vec<u8> {
    let len = 1 + rng.below(3000) as usize;
    let mut v = vec![0u8; len];
    let mut at = 0;
    while at < len {
        let run = (1 + rng.below(300) as usize).min(len - at);
        if rng.below(2) == 0 {
            for b in &mut v[at..at + run] {
                *b = rng.next() as u8;
            }
        }
        at += run;
    }
    v
}

fn lines(name: &str, img: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    encode(name, img, |l| out.push(String::from(l)));
    out
}

/// Decode console lines (wire lines among others); the image if accepted.
fn decode_lines(lines: &[String]) -> Result<Vec<u8>, WireError> {
    let mut a = Assembler::new();
    let mut out = Vec::new();
    for l in lines {
        let Some(w) = parse(l)? else { continue };
        if let WireLine::Begin { len, .. } = w {
            if a.announced_len().is_some() {
                return Err(WireError::Order);
            }
            out = vec![0u8; len.min(1 << 24) as usize];
        }
        a.feed(w, &mut out)?;
    }
    if a.is_done() {
        Ok(out)
    } else {
        Err(WireError::Order)
    }
}

#[test]
fn random_images_round_trip_among_other_console_lines() {
    let mut rng = Rng(0xfeed);
    for _ in 0..300 {
        let img = image(&mut rng);
        let mut ls = lines("img-1", &img);
        assert!(ls.iter().all(|l| l.len() <= LINE_MAX));
        // Log prefixes and unrelated console output are ignored.
        ls[0] = std::format!("[hv] INFO  {}", ls[0]);
        ls.insert(1, String::from("(d1) tick 3"));
        assert_eq!(decode_lines(&ls), Ok(img));
    }
}

#[test]
fn every_lost_line_is_noticed() {
    let mut rng = Rng(3);
    for _ in 0..60 {
        let img = image(&mut rng);
        let ls = lines("x", &img);
        for drop in 0..ls.len() {
            let mut cut = ls.clone();
            cut.remove(drop);
            assert!(
                decode_lines(&cut).is_err(),
                "line {drop} of {} lost",
                ls.len()
            );
        }
        // A line twice is noticed too.
        let mut twice = ls.clone();
        let i = rng.below(ls.len() as u64) as usize;
        twice.insert(i, ls[i].clone());
        assert!(decode_lines(&twice).is_err());
    }
}

#[test]
fn every_bit_flip_is_refused_or_harmless() {
    let mut rng = Rng(11);
    let mut refused = 0;
    for _ in 0..40 {
        let img = image(&mut rng);
        let ls = lines("x", &img);
        for (i, l) in ls.iter().enumerate() {
            for at in 0..l.len() {
                let bit = rng.below(8);
                let mut bytes = l.clone().into_bytes();
                bytes[at] ^= 1 << bit;
                let Ok(flipped) = String::from_utf8(bytes) else {
                    continue;
                };
                let mut bad = ls.clone();
                bad[i] = flipped;
                match decode_lines(&bad) {
                    Err(_) => refused += 1,
                    Ok(got) => {
                        assert_eq!(got, img, "line {i} byte {at} bit {bit}: a different image")
                    }
                }
            }
        }
    }
    assert!(refused > 1000);
}
