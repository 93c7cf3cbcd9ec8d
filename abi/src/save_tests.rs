//! Property tests of the save-image codec: round trips of random images; every truncation and every bit
//! flip refused; structurally bad images with a correct checksum refused for the right reason.

extern crate std;
use std::vec;
use std::vec::Vec;

use super::*;

/// xorshift64*: deterministic test randomness.
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

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A random list of records that forms a valid image (one domain, one vCPU, maybe shared info, pages,
/// page tables, event channels, timers), in random order.
fn random_records(rng: &mut Rng) -> Vec<(RecordKind, Vec<u8>)> {
    let mut r = vec![
        (RecordKind::Domain, rng.bytes(DOMAIN_LEN)),
        (RecordKind::Vcpu, rng.bytes(VCPU_LEN)),
    ];
    if rng.below(2) == 0 {
        r.push((RecordKind::SharedInfo, rng.bytes(4096)));
    }
    for _ in 0..rng.below(4) {
        r.push((RecordKind::Page, rng.bytes(8 + 4096)));
    }
    for _ in 0..rng.below(4) {
        r.push((RecordKind::ZeroPage, rng.bytes(8)));
    }
    for _ in 0..rng.below(3) {
        r.push((RecordKind::PageTable, rng.bytes(16 + 4096)));
    }
    if rng.below(2) == 0 {
        let ports = rng.below(20) as usize;
        r.push((RecordKind::EventChannels, rng.bytes(16 * ports)));
    }
    if rng.below(2) == 0 {
        r.push((RecordKind::Timers, rng.bytes(24)));
    }
    for i in (1..r.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        r.swap(i, j);
    }
    r
}

fn encode(records: &[(RecordKind, Vec<u8>)]) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut e = Encoder::new(&mut buf).unwrap();
    for (k, p) in records {
        // Split the payload in two parts to exercise concatenation.
        let cut = p.len() / 3;
        e.record(*k, &[&p[..cut], &p[cut..]]).unwrap();
    }
    let n = e.finish().unwrap();
    buf.truncate(n);
    buf
}

/// Recompute the checksum after a deliberate change, so a check other than the checksum must refuse it.
fn reseal(image: &mut [u8]) {
    let sum = checksum(image);
    image[24..32].copy_from_slice(&sum.to_le_bytes());
}

#[test]
fn random_images_round_trip() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..200 {
        let records = random_records(&mut rng);
        let image = encode(&records);
        let decoded = decode(&image).expect("a fresh image decodes");
        let back: Vec<(RecordKind, Vec<u8>)> =
            decoded.records().map(|(k, p)| (k, p.to_vec())).collect();
        assert_eq!(back, records);
        assert_eq!(
            decoded.single(RecordKind::Domain),
            records
                .iter()
                .find(|(k, _)| *k == RecordKind::Domain)
                .map(|(_, p)| p.as_slice())
        );
    }
}

#[test]
fn every_truncation_is_refused() {
    let mut rng = Rng(7);
    for _ in 0..3 {
        let image = encode(&random_records(&mut rng));
        for n in 0..image.len() {
            assert!(decode(&image[..n]).is_err(), "a {n}-byte prefix");
        }
        // And an extended one.
        let mut longer = image.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(matches!(decode(&longer), Err(SaveError::Length { .. })));
    }
}

/// A small valid image (no pages), so that checking every bit of it stays quick.
fn small_records(rng: &mut Rng) -> Vec<(RecordKind, Vec<u8>)> {
    let mut r = vec![
        (RecordKind::Vcpu, rng.bytes(VCPU_LEN)),
        (RecordKind::Domain, rng.bytes(DOMAIN_LEN)),
        (RecordKind::Timers, rng.bytes(24)),
    ];
    let ports = rng.below(4) as usize;
    r.push((RecordKind::EventChannels, rng.bytes(16 * ports)));
    r
}

#[test]
fn every_bit_flip_is_refused() {
    let mut rng = Rng(99);
    for _ in 0..2 {
        let image = encode(&small_records(&mut rng));
        let mut copy = image.clone();
        for byte in 0..image.len() {
            for bit in 0..8 {
                copy[byte] ^= 1 << bit;
                assert!(decode(&copy).is_err(), "bit {bit} of byte {byte}");
                copy[byte] ^= 1 << bit;
            }
        }
        assert!(decode(&copy).is_ok());
    }
}

#[test]
fn wrong_versions_and_foreign_files() {
    let image = encode(&small_records(&mut Rng(3)));
    for v in [0, 2, VERSION + 1, u32::MAX] {
        let mut other = image.clone();
        other[8..12].copy_from_slice(&v.to_le_bytes());
        reseal(&mut other);
        assert_eq!(decode(&other), Err(SaveError::Version(v)));
    }
    assert_eq!(decode(b"\x7fELF"), Err(SaveError::NotAnImage));
    assert_eq!(decode(&[]), Err(SaveError::NotAnImage));
    let mut elf = image.clone();
    elf[..4].copy_from_slice(b"\x7fELF");
    assert_eq!(decode(&elf), Err(SaveError::NotAnImage));
}

#[test]
fn bad_structure_with_a_good_checksum() {
    let base = vec![
        (RecordKind::Domain, vec![1; DOMAIN_LEN]),
        (RecordKind::Vcpu, vec![2; VCPU_LEN]),
        (RecordKind::Timers, vec![3; 24]),
    ];
    let image = encode(&base);
    // Record offsets: domain at 32, vcpu at 32 + 8 + 128, timers after it.
    let vcpu_at = HEADER_LEN + RECORD_HEADER_LEN + DOMAIN_LEN;
    let timers_at = vcpu_at + RECORD_HEADER_LEN + VCPU_LEN;
    let mut unknown = image.clone();
    unknown[timers_at..timers_at + 4].copy_from_slice(&8u32.to_le_bytes());
    reseal(&mut unknown);
    assert_eq!(decode(&unknown), Err(SaveError::BadRecord(timers_at)));
    let mut wrong_size = image.clone();
    wrong_size[timers_at + 4..timers_at + 8].copy_from_slice(&16u32.to_le_bytes());
    reseal(&mut wrong_size);
    assert_eq!(decode(&wrong_size), Err(SaveError::BadRecord(timers_at)));
    let mut huge = image.clone();
    huge[timers_at + 4..timers_at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut huge);
    assert_eq!(decode(&huge), Err(SaveError::BadRecord(timers_at)));
    let mut count = image.clone();
    count[12..16].copy_from_slice(&3u32.to_le_bytes());
    reseal(&mut count);
    assert_eq!(decode(&count), Err(SaveError::Structure));
    // Missing or repeated records.
    for records in [
        vec![(RecordKind::Domain, vec![0; DOMAIN_LEN])],
        vec![(RecordKind::Vcpu, vec![0; VCPU_LEN])],
        vec![
            (RecordKind::Domain, vec![0; DOMAIN_LEN]),
            (RecordKind::Domain, vec![0; DOMAIN_LEN]),
            (RecordKind::Vcpu, vec![0; VCPU_LEN]),
        ],
        vec![
            (RecordKind::Domain, vec![0; DOMAIN_LEN]),
            (RecordKind::Vcpu, vec![0; VCPU_LEN]),
            (RecordKind::SharedInfo, vec![0; 4096]),
            (RecordKind::SharedInfo, vec![0; 4096]),
        ],
    ] {
        assert_eq!(decode(&encode(&records)), Err(SaveError::Structure));
    }
    // A record after END.
    let mut buf = vec![0u8; 16 * 1024];
    let mut e = Encoder::new(&mut buf).unwrap();
    e.record(RecordKind::Domain, &[&[0; DOMAIN_LEN]]).unwrap();
    e.record(RecordKind::Vcpu, &[&[0; VCPU_LEN]]).unwrap();
    e.record(RecordKind::End, &[]).unwrap();
    e.record(RecordKind::Timers, &[&[0; 24]]).unwrap();
    let n = e.finish().unwrap();
    assert!(matches!(decode(&buf[..n]), Err(SaveError::BadRecord(_))));
}

#[test]
fn the_encoder_refuses_a_full_buffer_and_odd_payloads_are_padded() {
    let mut small = [0u8; 16];
    assert!(Encoder::new(&mut small).is_err());
    let mut buf = [0u8; HEADER_LEN + 100];
    let mut e = Encoder::new(&mut buf).unwrap();
    assert_eq!(
        e.record(RecordKind::Domain, &[&[0; DOMAIN_LEN]]),
        Err(SaveError::NoSpace)
    );
    // Event channels are 16 bytes each; a 4-byte-short payload is refused by the decoder, not padded in.
    assert!(!RecordKind::EventChannels.size_ok(12));
    assert!(RecordKind::EventChannels.size_ok(32));
    let mut buf = vec![0u8; 16 * 1024];
    let mut e = Encoder::new(&mut buf).unwrap();
    e.record(RecordKind::Domain, &[&[0; DOMAIN_LEN]]).unwrap();
    e.record(RecordKind::Vcpu, &[&[0; VCPU_LEN]]).unwrap();
    let n = e.finish().unwrap();
    assert_eq!(n % 8, 0);
    assert_eq!(
        n,
        HEADER_LEN + 3 * RECORD_HEADER_LEN + DOMAIN_LEN + VCPU_LEN
    );
    // Bytes after END (with the length and checksum made to match) are refused.
    let mut padded_bad = buf[..n].to_vec();
    padded_bad.extend_from_slice(&[0; 8]);
    let len = padded_bad.len() as u64;
    padded_bad[16..24].copy_from_slice(&len.to_le_bytes());
    reseal(&mut padded_bad);
    assert!(matches!(decode(&padded_bad), Err(SaveError::BadRecord(_))));
}

#[test]
fn domain_records_round_trip_and_refuse_a_dirty_tail() {
    let mut rng = Rng(0x5eed_d0d0);
    for _ in 0..200 {
        let d = DomainRecord {
            nr_pages: rng.next(),
            max_pages: rng.next(),
            start_info_pfn: rng.next(),
            base_pfn: rng.next(),
            source: rng.next(),
            saved_at_ns: rng.next(),
        };
        let b = d.encode();
        assert_eq!(DomainRecord::decode(&b), Some(d));
        let mut bad = b;
        bad[48 + rng.below((DOMAIN_LEN - 48) as u64) as usize] |= 1 << rng.below(8);
        assert_eq!(DomainRecord::decode(&bad), None, "a non-zero unused byte");
        assert_eq!(DomainRecord::decode(&b[..DOMAIN_LEN - 1]), None);
    }
}

#[test]
fn port_records_round_trip() {
    let mut rng = Rng(77);
    let ports: Vec<PortRecord> = (0..50)
        .map(|_| PortRecord {
            port: rng.next() as u32,
            state: rng.next() as u32,
            a: rng.next() as u32,
            b: rng.next() as u32,
        })
        .collect();
    let payload: Vec<u8> = ports.iter().flat_map(|p| p.encode()).collect();
    assert_eq!(PortRecord::all(&payload).collect::<Vec<_>>(), ports);
}
