//! `dirty PAGES [MS] [BUFFER]`: a workload that dirties memory at a known rate (live migration's
//! convergence): every MS milliseconds (default 100) it writes one word into PAGES distinct pages of a
//! BUFFER-page anonymous region (default: PAGES pages, so the same PAGES pages each time), cycling
//! through the region, and prints `count N` like `count` does, so a migration's counter check still
//! applies. `dirty 0` only counts. Runs until Ctrl-C ends it.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::hint::black_box;

use user::{eprintln, num, println, sys};

user::main!(main);

const PAGE: usize = 4096;
/// Most pages the region may have (`uapi::MMAP_MAX` bytes).
const MAX_PAGES: u64 = uapi::MMAP_MAX / PAGE as u64;

fn main(args: &str) -> i32 {
    let mut words = args.split_whitespace().map(num::parse_u64);
    let (Some(Some(pages)), ms, buffer) = (words.next(), words.next(), words.next()) else {
        return usage();
    };
    let ms = match ms {
        None => 100,
        Some(Some(ms)) if ms > 0 => ms,
        Some(_) => return usage(),
    };
    let buffer = match buffer {
        None => pages,
        Some(Some(b)) if b >= pages => b,
        Some(_) => return usage(),
    };
    if words.next().is_some() || buffer > MAX_PAGES {
        return usage();
    }
    let region: &mut [u8] = if buffer == 0 {
        &mut []
    } else {
        match sys::mmap_rw(buffer as usize * PAGE) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dirty: no {buffer}-page region: {e}");
                return 1;
            }
        }
    };
    let (pages, buffer) = (pages as usize, buffer as usize);
    let mut next = 0usize;
    let mut n = 0u64;
    loop {
        n += 1;
        for _ in 0..pages {
            let at = next * PAGE;
            region[at..at + 8].copy_from_slice(&n.to_le_bytes());
            next = (next + 1) % buffer;
        }
        // The stores must happen: something may look at the region.
        black_box(&mut *region);
        println!("count {n}");
        if let Err(e) = sys::sleep_ns(ms * 1_000_000) {
            eprintln!("dirty: {e}");
            return 1;
        }
    }
}

fn usage() -> i32 {
    eprintln!("usage: dirty PAGES [MS] [BUFFER] (BUFFER >= PAGES, at most {MAX_PAGES})");
    2
}
