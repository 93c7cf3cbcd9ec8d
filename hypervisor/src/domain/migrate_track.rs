//! Which pages a live migration must send again (pure, host-tested): per pfn, a digest of the contents
//! the destination last received. A round sends the pages whose digest changed; page tables are never
//! sent in rounds (their contents hold machine frames: they go canonicalized in the tail), so they are
//! forgotten and always go in the tail.
//!
//! This is change detection by content, not log-dirty by write protection: see docs/ARCHITECTURE.md,
//! "Live migration", for why and what it costs.

/// What the source knows the destination holds.
pub trait Sent {
    /// Record that `pfn` with `digest` is about to be sent; true if it must be (never sent, or changed).
    fn changed(&mut self, pfn: u64, digest: u64) -> bool;
    /// The destination's copy of `pfn` no longer counts (it became a page table).
    fn forget(&mut self, pfn: u64);
}

/// The digests, one per pfn (0: nothing sent).
pub struct Digests<'a>(pub &'a mut [u64]);

impl Sent for Digests<'_> {
    fn changed(&mut self, pfn: u64, digest: u64) -> bool {
        let digest = digest.max(1);
        match self.0.get_mut(pfn as usize) {
            Some(d) if *d == digest => false,
            Some(d) => {
                *d = digest;
                true
            }
            // Beyond the table: always sent, never remembered.
            None => true,
        }
    }

    fn forget(&mut self, pfn: u64) {
        if let Some(d) = self.0.get_mut(pfn as usize) {
            *d = 0;
        }
    }
}

/// A 64-bit digest of one page (a multiply-xor over its words; never 0).
pub fn digest(page: &[u8; 4096]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for w in page.chunks_exact(8) {
        let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
        h = (h ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    }
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_pages_are_sent_again() {
        let mut t = [0u64; 8];
        let mut s = Digests(&mut t);
        let a = [1u8; 4096];
        let mut b = [1u8; 4096];
        assert!(s.changed(3, digest(&a)), "never sent");
        assert!(!s.changed(3, digest(&a)), "unchanged");
        b[4095] = 2;
        assert!(s.changed(3, digest(&b)), "one byte changed");
        assert!(!s.changed(3, digest(&b)));
        s.forget(3);
        assert!(s.changed(3, digest(&b)), "forgotten: sent again");
        assert!(
            s.changed(99, digest(&a)) && s.changed(99, digest(&a)),
            "beyond: always"
        );
    }

    #[test]
    fn a_zero_digest_is_still_a_digest() {
        let mut t = [0u64; 2];
        let mut s = Digests(&mut t);
        assert!(s.changed(0, 0));
        assert!(!s.changed(0, 0));
    }

    #[test]
    fn each_word_and_position_counts() {
        let z = [0u8; 4096];
        let d0 = digest(&z);
        for at in [0, 7, 8, 2048, 4095] {
            let mut p = z;
            p[at] = 1;
            assert_ne!(digest(&p), d0, "byte {at}");
        }
        let (mut x, mut y) = (z, z);
        x[0] = 1;
        y[8] = 1;
        assert_ne!(digest(&x), digest(&y), "same word at another place");
    }
}
