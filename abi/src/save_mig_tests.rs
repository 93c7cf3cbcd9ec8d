//! Host tests of the migration stream's frames: round trip, truncation and every bit flip refused.

extern crate std;
use std::vec;
use std::vec::Vec;

use super::*;

fn frame(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    send(kind, parts, |b| v.extend_from_slice(b));
    v
}

fn read_all(bytes: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, FrameError> {
    let mut r = Reader::new();
    let mut out = Vec::new();
    for &b in bytes {
        if r.push(b)? {
            let (k, p) = r.frame();
            out.push((k, p.to_vec()));
        }
    }
    Ok(out)
}

#[test]
fn frames_round_trip() {
    let page: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let mut s = frame(START, &[&16u64.to_le_bytes()]);
    s.extend(frame(PAGE, &[&5u64.to_le_bytes(), &page]));
    s.extend(frame(ZERO, &[&6u64.to_le_bytes()]));
    s.extend(frame(
        ROUND_END,
        &[&0u64.to_le_bytes(), &2u64.to_le_bytes()],
    ));
    s.extend(frame(TAIL, &[&0u64.to_le_bytes(), &[1, 2, 3]]));
    s.extend(frame(ABORT, &[]));
    let got = read_all(&s).unwrap();
    assert_eq!(got.len(), 6);
    assert_eq!(got[0], (START, 16u64.to_le_bytes().to_vec()));
    assert_eq!(word(&got[1].1, 0), 5);
    assert_eq!(&got[1].1[8..], &page[..]);
    assert_eq!(got[3].0, ROUND_END);
    assert_eq!(word(&got[3].1, 8), 2);
    assert_eq!(got[4].1, vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
    assert_eq!(got[5], (ABORT, vec![]));
}

#[test]
fn truncation_gives_no_frame() {
    let f = frame(PAGE, &[&9u64.to_le_bytes(), &[0xab; 4096]]);
    for cut in 0..f.len() {
        assert!(
            read_all(&f[..cut]).map_or(true, |v| v.is_empty()),
            "a frame cut at {cut} bytes was accepted"
        );
    }
}

#[test]
fn every_bit_flip_is_refused() {
    let f = frame(ROUND_END, &[&3u64.to_le_bytes(), &77u64.to_le_bytes()]);
    for bit in 0..f.len() * 8 {
        let mut g = f.clone();
        g[bit / 8] ^= 1 << (bit % 8);
        // Refused outright, or (a longer length) still waiting: never accepted.
        if let Ok(v) = read_all(&g) {
            assert!(v.is_empty(), "bit {bit} flipped was accepted");
        }
    }
}

#[test]
fn wrong_sizes_and_kinds_are_refused() {
    assert_eq!(size_ok(PAGE, 8), Err(FrameError::Length));
    assert_eq!(size_ok(TAIL, 8), Err(FrameError::Length));
    assert_eq!(size_ok(99, 8), Err(FrameError::Kind));
    assert_eq!(size_ok(MISSING, 12), Err(FrameError::Length));
    assert_eq!(size_ok(MISSING, 4104), Err(FrameError::Length));
    assert_eq!(size_ok(HASH, 16), Ok(()));
    let mut f = frame(ABORT, &[]);
    f[1] = 2; // another stream version
    assert_eq!(read_all(&f), Err(FrameError::Magic));
}
