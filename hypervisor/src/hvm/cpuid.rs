//! What an hvm guest sees through CPUID: the host's answers, with the hypervisor-present bit and a
//! hypervisor leaf (0x40000000, signature "ring1pvring1"), and without what the hypervisor keeps for itself
//! or does not emulate or switch (SVM, VMX, MONITOR/MWAIT, the local APIC and x2APIC, XSAVE and AVX).
#![forbid(unsafe_code)]

/// The registers of one CPUID answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// The hypervisor signature in leaf 0x40000000 (EBX, ECX, EDX).
pub const SIGNATURE: &[u8; 12] = b"ring1pvring1";
/// The highest hypervisor leaf.
pub const HV_MAX_LEAF: u32 = 0x4000_0001;

/// Leaf 1 ECX: MONITOR/MWAIT (intercepted and refused).
const L1_ECX_MONITOR: u32 = 1 << 3;
/// Leaf 1 ECX: VMX.
const L1_ECX_VMX: u32 = 1 << 5;
/// Leaf 1 ECX: x2APIC.
const L1_ECX_X2APIC: u32 = 1 << 21;
/// Leaf 1 ECX: TSC deadline (an APIC timer mode).
const L1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 ECX: a hypervisor is present.
pub const L1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: on-chip local APIC (none is emulated: the guest gets the 8259 PICs).
const L1_EDX_APIC: u32 = 1 << 9;
/// Leaf 1 ECX: FMA, XSAVE, OSXSAVE, AVX, F16C — the XSAVE-managed state that the world switch does not
/// switch (it saves the FXSAVE image only), so an hvm guest is not offered it (and is crashed if it turns
/// CR4.OSXSAVE on anyway, `exits::check_state`).
const L1_ECX_XSAVE_FAMILY: u32 = (1 << 12) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 29);
/// Leaf 7 EBX: AVX2 and the AVX-512 family.
const L7_EBX_AVX: u32 = (1 << 5) | (1 << 16) | (1 << 17) | (1 << 21) | (0xf << 26) | (1 << 31);
/// Leaf 7 ECX: VAES, VPCLMULQDQ and the AVX-512 extensions, and PKU/OSPKE (PKRU is not switched either).
const L7_ECX_AVX: u32 = (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 6)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 12)
    | (1 << 14);
/// Leaf 0x80000001 ECX: SVM.
pub const EXT1_ECX_SVM: u32 = 1 << 2;

/// The guest's answer for `leaf`/`subleaf`, given the host's (`host(leaf, subleaf)`).
pub fn guest_cpuid(leaf: u32, subleaf: u32, host: impl Fn(u32, u32) -> Regs) -> Regs {
    match leaf {
        0x4000_0000 => Regs {
            eax: HV_MAX_LEAF,
            ebx: u32::from_le_bytes([SIGNATURE[0], SIGNATURE[1], SIGNATURE[2], SIGNATURE[3]]),
            ecx: u32::from_le_bytes([SIGNATURE[4], SIGNATURE[5], SIGNATURE[6], SIGNATURE[7]]),
            edx: u32::from_le_bytes([SIGNATURE[8], SIGNATURE[9], SIGNATURE[10], SIGNATURE[11]]),
        },
        // The hypervisor's feature leaf: none offered; the rest of the range is empty.
        0x4000_0001..=0x4000_ffff => Regs::default(),
        // SVM's own leaf, and the XSAVE state leaf: nothing for the guest.
        0x8000_000a | 0xd => Regs::default(),
        _ => {
            let mut r = host(leaf, subleaf);
            match leaf {
                1 => {
                    r.ecx &= !(L1_ECX_MONITOR
                        | L1_ECX_VMX
                        | L1_ECX_X2APIC
                        | L1_ECX_TSC_DEADLINE
                        | L1_ECX_XSAVE_FAMILY);
                    r.ecx |= L1_ECX_HYPERVISOR;
                    r.edx &= !L1_EDX_APIC;
                }
                0x8000_0001 => r.ecx &= !EXT1_ECX_SVM,
                7 if subleaf == 0 => {
                    r.ebx &= !L7_EBX_AVX;
                    r.ecx &= !L7_ECX_AVX;
                }
                _ => {}
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(leaf: u32, _sub: u32) -> Regs {
        match leaf {
            1 => Regs {
                eax: 0x663,
                ebx: 0,
                ecx: 0x0020_0028 | 1 << 24 | 1,
                edx: 0x0781_abff,
            },
            0x8000_0001 => Regs {
                eax: 0,
                ebx: 0,
                ecx: 0x0000_0025,
                edx: 0x2010_0800,
            },
            0x8000_000a => Regs {
                eax: 1,
                ebx: 16,
                ecx: 0,
                edx: 1,
            },
            l => Regs {
                eax: l,
                ebx: 1,
                ecx: 2,
                edx: 3,
            },
        }
    }

    #[test]
    fn hypervisor_leaf_and_bit() {
        let r = guest_cpuid(0x4000_0000, 0, host);
        assert_eq!(r.eax, HV_MAX_LEAF);
        let mut sig = Vec::new();
        for w in [r.ebx, r.ecx, r.edx] {
            sig.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(&sig, SIGNATURE);
        assert_eq!(guest_cpuid(0x4000_0001, 0, host), Regs::default());
        assert_eq!(guest_cpuid(0x4000_1234, 0, host), Regs::default());
        let l1 = guest_cpuid(1, 0, host);
        assert_ne!(l1.ecx & L1_ECX_HYPERVISOR, 0);
        assert_eq!(l1.ecx & (L1_ECX_VMX | L1_ECX_MONITOR | L1_ECX_X2APIC), 0);
        assert_eq!(l1.edx & L1_EDX_APIC, 0);
        assert_eq!(l1.ecx & 1, 1, "other features pass");
    }

    #[test]
    fn xsave_and_avx_are_hidden() {
        let host_all = |_: u32, _: u32| Regs {
            eax: u32::MAX,
            ebx: u32::MAX,
            ecx: u32::MAX,
            edx: u32::MAX,
        };
        let l1 = guest_cpuid(1, 0, host_all);
        assert_eq!(
            l1.ecx & (1 << 26 | 1 << 27 | 1 << 28),
            0,
            "XSAVE, OSXSAVE, AVX"
        );
        let l7 = guest_cpuid(7, 0, host_all);
        assert_eq!(l7.ebx & (1 << 5 | 1 << 16), 0, "AVX2, AVX-512F");
        assert_eq!(l7.ecx & (1 << 3 | 1 << 4), 0, "PKU, OSPKE");
        assert_eq!(guest_cpuid(0xd, 0, host_all), Regs::default());
        assert_eq!(guest_cpuid(0xd, 1, host_all), Regs::default());
        assert_eq!(
            guest_cpuid(7, 1, host_all),
            host_all(7, 1),
            "only subleaf 0 is filtered"
        );
    }

    #[test]
    fn svm_is_hidden() {
        assert_eq!(guest_cpuid(0x8000_0001, 0, host).ecx & EXT1_ECX_SVM, 0);
        assert_eq!(guest_cpuid(0x8000_0001, 0, host).ecx, 0x21);
        assert_eq!(guest_cpuid(0x8000_000a, 0, host), Regs::default());
        assert_eq!(
            guest_cpuid(6, 0, host),
            host(6, 0),
            "other leaves pass unchanged"
        );
    }
}
