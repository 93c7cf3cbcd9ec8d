//! Process-context identifiers: the CR3 values the entry and exit paths load (pure, host-tested).
//!
//! Without PCID every CR3 write flushes the (non-global) TLB, so each hypercall pays for two full flushes.
//! With PCID (CR4.PCIDE) each address space gets a tag and a CR3 write with bit 63 set keeps the entries of
//! every tag: the hypervisor's identity map stays cached under tag 0, each domain's mappings under its own
//! tag, and neither is usable from the other's address space because the CPU only uses entries tagged with
//! the current PCID.
//!
//! Rules kept here: the hypervisor uses tag 0 and never changes its mappings after boot, so it may always
//! switch without flushing; a domain's tag is `domid + 1`; the first switch to a domain (its tag may hold
//! stale entries of an earlier domain with the same id) and any switch after its page tables changed must
//! flush its tag (bit 63 clear). When PCID is off, bit 63 and the low 12 bits must be zero.

/// CR3 bit 63: do not invalidate the new PCID's TLB entries.
pub const NO_FLUSH: u64 = 1 << 63;
/// The PCID of the hypervisor's own address space.
pub const HV_PCID: u64 = 0;

/// The PCID of domain `domid`'s address spaces.
pub const fn domain_pcid(domid: u16) -> u64 {
    domid as u64 + 1
}

/// The CR3 value for a switch to the page-table root `root` (a page-aligned machine address).
pub const fn cr3_value(root: u64, pcid_enabled: bool, pcid: u64, flush: bool) -> u64 {
    let root = root & !0xfff;
    if !pcid_enabled {
        return root;
    }
    let v = root | (pcid & 0xfff);
    if flush { v } else { v | NO_FLUSH }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_pcid_only_the_root() {
        assert_eq!(cr3_value(0x12_3000, false, 5, false), 0x12_3000);
        assert_eq!(cr3_value(0x12_3000, false, 5, true), 0x12_3000);
    }

    #[test]
    fn with_pcid_tag_and_flush_bit() {
        assert_eq!(
            cr3_value(0x12_3000, true, HV_PCID, false),
            0x12_3000 | NO_FLUSH
        );
        assert_eq!(cr3_value(0x12_3000, true, domain_pcid(0), true), 0x12_3001);
        assert_eq!(
            cr3_value(0x12_3000, true, domain_pcid(6), false),
            0x12_3007 | NO_FLUSH
        );
        // Tags never spill into the address bits.
        assert_eq!(cr3_value(0x12_3000, true, 0x1_0001, true), 0x12_3001);
        assert_ne!(domain_pcid(0), HV_PCID);
    }
}
