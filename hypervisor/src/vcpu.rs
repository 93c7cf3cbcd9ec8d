//! The virtual-CPU state a PV guest sets up for itself (trap table, callbacks, kernel stack, segment
//! bases) and the bounce frame that delivers an exception, event or system call to it (pure, host-tested;
//! the layout is specified in `abi::traps`).

use abi::layout::{GUEST_KERNEL_CS, GUEST_KERNEL_SS, guest_va_allowed};
use abi::traps::{RED_ZONE, SAVED_MASK_SHIFT};
use abi::xen::TrapInfo;

use crate::regs::{EntryFrame, frame_ring, rflags, va_allowed};

/// One virtual trap-table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapEntry {
    /// Handler address (0: none).
    pub address: u64,
    /// Who may raise it with `int n` (0..=3).
    pub dpl: u8,
    /// Mask events on entry (`TI_IF`).
    pub mask_events: bool,
}

/// The guest-registered parts of a vCPU.
#[derive(Clone, Copy, Debug)]
pub struct VcpuState {
    /// The virtual IDT.
    pub traps: [TrapEntry; 256],
    /// Event upcall handler (0: none).
    pub event_callback: u64,
    /// Failsafe callback (registered; this hypervisor never reloads guest segments, so it is never used).
    pub failsafe_callback: u64,
    /// SYSCALL-from-user handler (0: none).
    pub syscall_callback: u64,
    /// Ring-1 stack for traps from ring 3 (`stack_switch`; TSS.RSP1 while the domain runs). 0: none.
    pub kernel_sp: u64,
    /// FS base, GS base (user), and the kernel GS base (`set_segment_base`).
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// The kernel GS base (kept in IA32_KERNEL_GS_BASE; ring 1 cannot SWAPGS, so it is not swapped).
    pub gs_kernel: u64,
    /// The segment bases above changed and must be loaded into the CPU before the guest runs.
    pub segments_dirty: bool,
    /// DS, ES, FS, GS while the domain is not on the CPU.
    pub selectors: [u16; 4],
    /// The trap table or kernel stack changed: reinstall the direct gate and TSS.RSP1 before running.
    pub gates_dirty: bool,
    /// Entries on the domain's behalf, by kind (read with the `counters` hypercall).
    pub counters: abi::counters::DomainCounters,
    /// The `vcpu_time_info` record last published to the domain's shared_info page, as the page's four
    /// words (`time::pvclock::vcpu0_time_words`), and the system time (ns) from which it is published
    /// again anyway (`sched::schedule`): a switch to the vCPU republishes only if the page no longer
    /// holds exactly that record (first run, a new or restored page, the guest wrote it) or that time
    /// has come. A publication stays exact however old it is (`time::pvclock`'s module docs).
    pub time_record: [u64; 4],
    /// See [`VcpuState::time_record`]; 0: publish at the next switch.
    pub time_due: u64,
}

impl Default for VcpuState {
    fn default() -> Self {
        VcpuState {
            traps: [TrapEntry::default(); 256],
            event_callback: 0,
            failsafe_callback: 0,
            syscall_callback: 0,
            kernel_sp: 0,
            fs_base: 0,
            gs_base: 0,
            gs_kernel: 0,
            segments_dirty: false,
            selectors: [0; 4],
            gates_dirty: true,
            counters: abi::counters::DomainCounters::default(),
            time_record: [0; 4],
            time_due: 0,
        }
    }
}

impl VcpuState {
    /// The handler the direct `int 0x80` gate should enter, if the guest registered one with DPL 3.
    pub fn direct_gate(&self) -> Option<u64> {
        let t = self.traps[usize::from(abi::traps::DIRECT_SYSCALL_VECTOR)];
        (t.address != 0 && t.dpl == 3).then_some(t.address)
    }
}

/// Why a trap-table entry or callback is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapError {
    /// The handler address is non-canonical or in the hypervisor's range.
    BadAddress(u64),
    /// The code selector is not the guest kernel's.
    BadSelector(u16),
}

/// Check a handler address (0 is allowed: "no handler").
pub fn check_handler(address: u64) -> Result<u64, TrapError> {
    if address == 0 || guest_va_allowed(address) {
        Ok(address)
    } else {
        Err(TrapError::BadAddress(address))
    }
}

/// Decode one `trap_info` into an entry (pure).
pub fn decode_trap(t: &TrapInfo) -> Result<TrapEntry, TrapError> {
    // Xen's guests pass their kernel CS; 0 is accepted as "the default".
    if t.cs != 0 && t.cs & !3 != GUEST_KERNEL_CS & !3 {
        return Err(TrapError::BadSelector(t.cs));
    }
    Ok(TrapEntry {
        address: check_handler(t.address)?,
        dpl: t.flags & abi::xen::TI_DPL_MASK,
        mask_events: t.flags & abi::xen::TI_IF != 0,
    })
}

/// A bounce frame: where it goes and its words, kept as named values (not an array to copy) so the
/// one writer, `deliver::write_bounce`, stores each straight into the guest stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounce {
    /// The new guest RSP (the frame's lowest address).
    pub rsp: u64,
    /// The interrupted RCX (the frame's lowest word).
    pub rcx: u64,
    /// The interrupted R11.
    pub r11: u64,
    /// The error code, if the vector has one (the word after R11).
    pub error: Option<u64>,
    /// The IRETQ words RIP, CS (with the saved event mask), RFLAGS (virtual IF), RSP, SS (the top five).
    pub iret: [u64; 5],
}

impl Bounce {
    /// How many words the frame has (7, or 8 with an error code).
    pub fn word_count(&self) -> usize {
        7 + usize::from(self.error.is_some())
    }

    /// The frame's words, lowest address first.
    pub fn words(&self) -> heapless::Vec<u64, 8> {
        let mut w = heapless::Vec::new();
        let all = [self.rcx, self.r11]
            .into_iter()
            .chain(self.error)
            .chain(self.iret);
        for x in all {
            // At most 8 words: never full.
            let _ = w.push(x);
        }
        w
    }
}

/// Why a bounce cannot be built.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BounceError {
    /// From ring 3 with no `stack_switch` stack registered.
    NoKernelStack,
    /// The target stack is not a usable guest address.
    BadStack(u64),
}

impl core::fmt::Debug for BounceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BounceError::NoKernelStack => f.write_str("no kernel stack registered (stack_switch)"),
            BounceError::BadStack(sp) => write!(f, "unusable guest stack {sp:#x}"),
        }
    }
}

/// Build the bounce frame for the interrupted state `regs` (abi::traps layout): its place
/// ([`bounce_sp`]) and its words ([`bounce_at`]).
pub fn bounce_frame(
    regs: &EntryFrame,
    error_code: Option<u64>,
    events_masked: bool,
    kernel_sp: u64,
) -> Result<Bounce, BounceError> {
    let rsp = bounce_sp(regs, error_code.is_some(), kernel_sp)?;
    Ok(bounce_at(regs, rsp, error_code, events_masked))
}

/// Where the bounce frame for `regs` goes (its lowest address, the handler's RSP): on the stack the
/// handler runs on (ring 1: the interrupted stack below the red zone; ring 3: the registered kernel
/// stack), 16-byte aligned at the top, 7 words or 8 with an error code (`with_error`). The whole frame
/// passes `regs::va_allowed` (canonical, outside the reserved slots); from ring 1 the interrupted RSP
/// must be canonical too.
///
/// Each case is two address tests and one comparison: a range no longer than the refused range
/// `[FIRST_NONCANONICAL, RESERVED_VA_END)` (here at most 207 bytes) whose two ends pass
/// `regs::va_allowed` cannot meet it, and `lo < end` rules out a subtraction that wrapped. So from ring 1
/// `[lo, rsp]` is tested (the frame, the red zone and the interrupted RSP itself), from ring 3
/// `[lo, top - 1]` — the same answers as checking the interrupted RSP for canonical form and the frame
/// with checked subtractions (`bounce_sp_reference` in the tests compares both).
#[inline(always)]
pub fn bounce_sp(regs: &EntryFrame, with_error: bool, kernel_sp: u64) -> Result<u64, BounceError> {
    let size = if with_error { 64 } else { 56 };
    if frame_ring(regs) == 3 {
        if kernel_sp == 0 {
            return Err(BounceError::NoKernelStack);
        }
        let top = kernel_sp & !0xf;
        let lo = top.wrapping_sub(size);
        // `lo < top`: no wrap, so `top >= 1` and `top - 1` does not wrap either.
        if lo < top && va_allowed(lo) && va_allowed(top - 1) {
            return Ok(lo);
        }
        return Err(BounceError::BadStack(top));
    }
    let rsp = regs.rsp;
    let lo = (rsp.wrapping_sub(RED_ZONE) & !0xf).wrapping_sub(size);
    if lo < rsp && va_allowed(lo) && va_allowed(rsp) {
        Ok(lo)
    } else {
        Err(BounceError::BadStack(rsp))
    }
}

/// The bounce frame at `rsp` (from [`bounce_sp`]) for the interrupted state `regs`: the saved event mask
/// in the CS slot and the virtual interrupt flag in RFLAGS.
#[inline(always)]
pub fn bounce_at(
    regs: &EntryFrame,
    rsp: u64,
    error_code: Option<u64>,
    events_masked: bool,
) -> Bounce {
    // Branch-free: the mask as a bit, into CS's saved-mask byte and (inverted) into IF (set, then
    // cleared again if masked; written unlike the CS expression so that the two stay scalar).
    let m = u64::from(events_masked);
    let fl = (regs.rflags | rflags::IF) ^ (m * rflags::IF);
    let cs = (regs.cs & 0xffff) | (m << SAVED_MASK_SHIFT);
    Bounce {
        rsp,
        rcx: regs.rcx,
        r11: regs.r11,
        error: error_code,
        iret: [regs.rip, cs, fl, regs.rsp, regs.ss & 0xffff],
    }
}

/// The registers after a bounce: the handler runs in ring 1 on the bounce frame with the real interrupt
/// flag on, single-stepping and direction/alignment flags off.
pub fn enter_handler(regs: &mut EntryFrame, b: &Bounce, handler: u64) {
    enter_handler_at(regs, b.rsp, handler);
}

/// [`enter_handler`] with the frame at `rsp`.
#[inline(always)]
pub fn enter_handler_at(regs: &mut EntryFrame, rsp: u64, handler: u64) {
    regs.rip = handler;
    regs.rsp = rsp;
    regs.cs = u64::from(GUEST_KERNEL_CS);
    regs.ss = u64::from(GUEST_KERNEL_SS);
    regs.rflags = rflags::IF | rflags::FIXED1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(cs: u64, rsp: u64) -> EntryFrame {
        EntryFrame {
            cs,
            ss: if cs & 3 == 3 { 0x2b } else { 0x21 },
            rsp,
            rip: 0x1234,
            rcx: 0xc,
            r11: 0x11,
            rflags: rflags::IF | rflags::FIXED1 | rflags::CF,
            ..Default::default()
        }
    }

    #[test]
    fn ring1_frame_respects_red_zone_and_alignment() {
        let b = bounce_frame(&regs(0x19, 0xffff_ffff_8001_0008), Some(0x7), false, 0).unwrap();
        // 0x...10008 - 128 = 0x...fff88, aligned down to 0x...fff80; 8 words = 64 bytes.
        assert_eq!(b.rsp, 0xffff_ffff_8000_ff80 - 64);
        assert_eq!(
            b.words().as_slice(),
            &[
                0xc,
                0x11,
                0x7,
                0x1234,
                0x19,
                0x203,
                0xffff_ffff_8001_0008,
                0x21
            ]
        );
    }

    #[test]
    fn ring3_frame_uses_kernel_stack_and_saves_mask() {
        let b = bounce_frame(&regs(0x33, 0x7000), None, true, 0xffff_ffff_8002_0000).unwrap();
        assert_eq!(b.rsp, 0xffff_ffff_8002_0000 - 56);
        assert_eq!(b.words().len(), 7);
        assert_eq!(b.word_count(), 7);
        assert_eq!(b.words()[3], 0x33 | 1 << 32);
        assert_eq!(b.words()[4] & rflags::IF, 0);
        assert_eq!(
            bounce_frame(&regs(0x33, 0x7000), None, false, 0),
            Err(BounceError::NoKernelStack)
        );
    }

    #[test]
    fn hostile_stacks_are_refused() {
        for sp in [
            0,
            0x40,
            abi::layout::RESERVED_VA_END + 0x20,
            0x0000_8000_0000_0040,
        ] {
            assert!(
                bounce_frame(&regs(0x19, sp), None, false, 0).is_err(),
                "{sp:#x}"
            );
        }
        assert!(
            bounce_frame(
                &regs(0x33, 0),
                None,
                false,
                abi::layout::ENTRY_REGION_VA + 0x100
            )
            .is_err()
        );
    }

    /// `bounce_sp` as it was written first: the interrupted RSP canonical, checked subtractions, and the
    /// frame's range tested with `short_range_allowed`.
    fn bounce_sp_reference(regs: &EntryFrame, with_error: bool, kernel_sp: u64) -> Option<u64> {
        let top = if frame_ring(regs) == 3 {
            if kernel_sp == 0 {
                return None;
            }
            kernel_sp
        } else if abi::types::Gva(regs.rsp).is_canonical() {
            regs.rsp.checked_sub(RED_ZONE)?
        } else {
            return None;
        } & !0xf;
        let size = if with_error { 64 } else { 56 };
        top.checked_sub(size)
            .filter(|&s| crate::regs::short_range_allowed(s, top))
    }

    /// Addresses near every boundary the checks care about, and some anywhere.
    fn interesting_sps() -> Vec<u64> {
        let edges = [
            0u64,
            0x8000_0000_0000,
            abi::layout::RESERVED_VA_START,
            abi::layout::RESERVED_VA_END,
            abi::layout::ENTRY_REGION_VA,
            u64::MAX,
            0xffff_ffff_8000_0000,
            0x7fff_ffff_f000,
        ];
        let mut v = Vec::new();
        for e in edges {
            for d in 0..=300u64 {
                v.push(e.wrapping_add(d));
                v.push(e.wrapping_sub(d));
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(x);
            v.push(x & 0x0000_ffff_ffff_ffff);
            v.push(x | 0xffff_0000_0000_0000);
        }
        v
    }

    #[test]
    fn bounce_sp_matches_the_checked_formulation() {
        for sp in interesting_sps() {
            for with_error in [false, true] {
                let r1 = regs(0x19, sp);
                assert_eq!(
                    bounce_sp(&r1, with_error, 0).ok(),
                    bounce_sp_reference(&r1, with_error, 0),
                    "ring 1, rsp {sp:#x}, error {with_error}"
                );
                let r3 = regs(0x33, 0x7000);
                assert_eq!(
                    bounce_sp(&r3, with_error, sp).ok(),
                    bounce_sp_reference(&r3, with_error, sp),
                    "ring 3, kernel_sp {sp:#x}, error {with_error}"
                );
            }
        }
    }

    #[test]
    fn trap_entries_are_checked() {
        let t = |cs, address, flags| TrapInfo {
            vector: 14,
            flags,
            cs,
            address,
            ..Default::default()
        };
        assert_eq!(
            decode_trap(&t(0x19, 0xffff_ffff_8000_1000, 3 | 4)),
            Ok(TrapEntry {
                address: 0xffff_ffff_8000_1000,
                dpl: 3,
                mask_events: true
            })
        );
        assert_eq!(decode_trap(&t(0, 0, 0)), Ok(TrapEntry::default()));
        assert_eq!(
            decode_trap(&t(0x08, 0x1000, 0)),
            Err(TrapError::BadSelector(0x08))
        );
        for a in [
            0x0000_8000_0000_0000,
            abi::layout::ENTRY_REGION_VA,
            u64::MAX - 0xffff_0000_0000_0000 + 0x1000_0000_0000,
        ] {
            assert!(decode_trap(&t(0x19, a, 0)).is_err(), "{a:#x}");
        }
    }

    #[test]
    fn handler_entry_state() {
        let mut r = regs(0x33, 0x7000);
        r.rflags |= rflags::TF | rflags::DF;
        let b = bounce_frame(&r, None, false, 0xffff_ffff_8002_0000).unwrap();
        enter_handler(&mut r, &b, 0xffff_ffff_8000_2000);
        assert_eq!(
            (r.cs, r.ss, r.rip, r.rsp),
            (0x19, 0x21, 0xffff_ffff_8000_2000, b.rsp)
        );
        assert_eq!(r.rflags, rflags::IF | rflags::FIXED1);
    }
}
