//! What a live migration's source knows per pfn (pure, host-tested): a bitmap of pfns ([`Pfns`]: the
//! pages the destination holds as data pages, the pages the last log-dirty harvest reported) and the
//! 64-bit page [`digest`] the stream uses to offer a page by content ([`abi::save::mig::HASH`]) and to
//! verify the joined image (`xl migrate --verify`). Which pages changed is log-dirty's business
//! (`mm::logdirty`), not a digest comparison.

/// A set of pfns, one bit each; pfns beyond it are never members and are not recorded.
pub struct Pfns<'a>(pub &'a mut [u64]);

impl Pfns<'_> {
    /// Is `pfn` in the set?
    pub fn get(&self, pfn: u64) -> bool {
        self.0
            .get((pfn / 64) as usize)
            .is_some_and(|w| w & (1 << (pfn % 64)) != 0)
    }

    /// Add `pfn`.
    pub fn set(&mut self, pfn: u64) {
        if let Some(w) = self.0.get_mut((pfn / 64) as usize) {
            *w |= 1 << (pfn % 64);
        }
    }

    /// Remove `pfn`.
    pub fn clear(&mut self, pfn: u64) {
        if let Some(w) = self.0.get_mut((pfn / 64) as usize) {
            *w &= !(1 << (pfn % 64));
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
    fn pfn_sets() {
        let mut t = [0u64; 2];
        let mut s = Pfns(&mut t);
        assert!(!s.get(3));
        s.set(3);
        s.set(127);
        s.set(128);
        assert!(
            s.get(3) && s.get(127) && !s.get(128),
            "beyond: never a member"
        );
        s.clear(3);
        assert!(!s.get(3) && s.get(127));
        s.clear(999);
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
        assert_ne!(d0, 0);
    }
}
