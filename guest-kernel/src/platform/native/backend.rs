//! The native backend's [`Platform`] implementation: every operation as ring-0 instructions and legacy
//! port I/O.
//!
//! Interrupt sources: the timer is PIC line 0 (the PIT), console input line 4 (COM1); their [`Irq`]
//! numbers are line + 1. Sources this CPU raises itself are software bits (`Irq` 17..33), delivered
//! through the self-interrupt vector. Everything pending is collected in `trap_entry::NATIVE_IRQ_PENDING`
//! by the entry stubs and handed out by [`Platform::irq_dispatch`], which also acknowledges the PIC.
//!
//! Time: system time is TSC cycles since boot scaled by the frequency measured against the PIT at boot;
//! the wall clock is the CMOS RTC read at boot. The PIT interrupts periodically (`set_periodic_timer`)
//! or once (`set_timer`, at most 55 ms ahead: a farther deadline is re-armed until it is reached).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use abi::errno::Errno;
use abi::types::{Gva, Maddr, Mfn, PAGE_SHIFT};

use super::multiboot::Info;
use super::pic_pit::{self, IRQ_BASE};
use super::{DIRECT_MAP_SIZE, desc, devices, direct_va, exit_value, tables, uart};
use crate::arch::x86_64::native as cpu;
use crate::arch::x86_64::trap_entry::{
    NATIVE_EXIT, NATIVE_IRQ_PENDING, NATIVE_KERNEL_RSP, native_irq_stubs,
};
use crate::arch::x86_64::tsc::rdtsc_ordered;
use crate::mm::pte::{ADDR_MASK, Level, Pte, PteFlags, index};
use crate::platform::{
    ClockReading, EntryPoints, Flush, Halt, HypervisorInfo, Irq, IrqSource, IrqState, Mmu,
    Platform, PtTarget, PtWrite, TrapGates,
};

/// The vector of interrupts this CPU sends itself (`arch::x86_64::native::raise_self_interrupt`).
pub const SELF_VECTOR: u8 = 0x30;
/// The PIC line of the timer.
const TIMER_LINE: u8 = 0;
/// The PIC line of COM1.
const COM1_LINE: u8 = 4;
/// First software source bit in the pending word.
const SOFT_BASE: u32 = 16;
/// `IA32_EFER`.
const MSR_EFER: u32 = 0xc000_0080;
/// `IA32_STAR`: SYSCALL/SYSRET selectors.
const MSR_STAR: u32 = 0xc000_0081;
/// `IA32_LSTAR`: the 64-bit SYSCALL entry.
const MSR_LSTAR: u32 = 0xc000_0082;
/// `IA32_FMASK`: RFLAGS bits SYSCALL clears.
const MSR_FMASK: u32 = 0xc000_0084;
/// EFER.SCE: SYSCALL/SYSRET enabled.
const EFER_SCE: u64 = 1;
/// RFLAGS bits SYSCALL clears: IF, DF, TF, AC (the kernel is entered with interrupts masked).
const SYSCALL_FMASK: u64 = (1 << 9) | (1 << 10) | (1 << 8) | (1 << 18);
/// `IA32_FS_BASE`.
const MSR_FS_BASE: u32 = 0xc000_0100;
/// `IA32_GS_BASE`.
const MSR_GS_BASE: u32 = 0xc000_0101;
/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// The native backend (one per machine).
pub struct Native {
    info: spin::Once<Info>,
    /// TSC at boot, and its frequency in Hz (0: not calibrated).
    tsc0: AtomicU64,
    tsc_hz: AtomicU64,
    /// Wall-clock seconds at boot (0: no RTC reading).
    wall0: AtomicU64,
    /// Bound sources (bit `irq`).
    bound: AtomicU64,
    /// Unmasked sources (bit `irq`).
    unmasked: AtomicU64,
    /// The periodic timer's period (0: off) and the one-shot deadline (0: none), in ns.
    period_ns: AtomicU64,
    deadline_ns: AtomicU64,
    /// Next due time of the periodic timer.
    next_tick_ns: AtomicU64,
    /// Stubs are installed (the interrupt gates and SYSCALL MSRs): interrupts may be enabled.
    live: AtomicU32,
}

/// The native backend instance.
pub static NATIVE: Native = Native {
    info: spin::Once::new(),
    tsc0: AtomicU64::new(0),
    tsc_hz: AtomicU64::new(0),
    wall0: AtomicU64::new(0),
    bound: AtomicU64::new(0),
    unmasked: AtomicU64::new(0),
    period_ns: AtomicU64::new(0),
    deadline_ns: AtomicU64::new(0),
    next_tick_ns: AtomicU64::new(0),
    live: AtomicU32::new(0),
};

/// The pending-word bit of a source.
const fn pending_bit(irq: Irq) -> u32 {
    if irq <= 16 {
        1 << (irq - 1)
    } else {
        1 << (irq - 17 + SOFT_BASE)
    }
}

impl Native {
    /// Boot-time setup: remember the multiboot information; program the UART (polled), the PICs (every
    /// line masked); load this backend's GDT, TSS and IDT; calibrate the TSC against the PIT; read the
    /// RTC; make the trap exit return with IRETQ.
    pub fn enter(&self, info: Info) {
        self.info.call_once(|| info);
        let div = uart::divisor(uart::BASE_BAUD).unwrap_or(1);
        for (port, val) in uart::init_sequence(uart::COM1, div) {
            cpu::outb(port, val);
        }
        devices::pic_init();
        tables::install();
        NATIVE_EXIT.store(true, Ordering::Release);
        // 50 ms of PIT input clock.
        let hz = devices::calibrate_tsc(59_659);
        self.tsc_hz.store(hz, Ordering::Relaxed);
        self.tsc0.store(rdtsc_ordered(), Ordering::Relaxed);
        if let Some(s) = devices::rtc_now() {
            self.wall0.store(s, Ordering::Relaxed);
        }
    }

    /// Map the kernel image with 4 KiB pages and its segments' permissions (the boot tables map it with
    /// one writable, executable 2 MiB page) using the free frame `l1` for the page table, and unmap the
    /// rest of the boot mapping's GiB. Returns the image size.
    pub fn protect_image(&self, l1: u64) -> Result<u64, Errno> {
        unsafe extern "C" {
            static __kernel_start: u8;
            static __text_end: u8;
            static __rodata_end: u8;
            static __kernel_end: u8;
        }
        let start = (&raw const __kernel_start) as u64;
        let text_end = (&raw const __text_end) as u64 - start;
        let rodata_end = (&raw const __rodata_end) as u64 - start;
        let size = (&raw const __kernel_end) as u64 - start;
        const TWO_MIB: u64 = 2 << 20;
        let Some(l1_va) = direct_va(l1) else {
            return Err(Errno::EINVAL);
        };
        if size > TWO_MIB || !l1.is_multiple_of(4096) {
            return Err(Errno::E2BIG);
        }
        let pd_entry = Self::pd_entry(start).ok_or(Errno::EINVAL)?;
        // SAFETY: EFER exists in long mode; reading it has no effect.
        let nx = unsafe { cpu::rdmsr(MSR_EFER) } & (1 << 11) != 0;
        let phys = start - crate::arch::x86_64::entry::NATIVE_PHYS_OFFSET;
        for i in 0..512u64 {
            let e = (phys + i * 4096) | super::image_page_flags(i * 4096, text_end, rodata_end, nx);
            // SAFETY: `l1` is a free frame the caller took for this table, below 1 GiB (direct map,
            // writable); nothing else references it until it is linked below.
            unsafe { (l1_va as *mut u64).add(i as usize).write_volatile(e) };
        }
        let mut writes = [PtWrite::default(); 512];
        writes[0] = PtWrite::entry(Maddr(pd_entry), Pte(l1 | 3));
        for (i, w) in writes.iter_mut().enumerate().skip(1) {
            *w = PtWrite::entry(Maddr(pd_entry + 8 * i as u64), Pte::EMPTY);
        }
        self.write_ptes(&writes).1?;
        self.flush_tlb(Flush::All)?;
        Ok(size)
    }

    /// The machine address of the L2 entry (a 2 MiB page, first of its table) that maps `va`.
    fn pd_entry(va: u64) -> Option<u64> {
        let mut table = cpu::read_cr3() & ADDR_MASK;
        for level in [Level::L4, Level::L3] {
            let at = table + (index(va, level) as u64) * 8;
            // SAFETY: a page table of the current address space below 1 GiB, read through the direct map.
            let e = Pte(unsafe { (direct_va(at)? as *const u64).read_volatile() });
            if !e.is_present() || e.flags().contains(PteFlags::HUGE) {
                return None;
            }
            table = e.0 & ADDR_MASK;
        }
        let at = table + (index(va, Level::L2) as u64) * 8;
        (index(va, Level::L2) == 0).then_some(at)
    }

    /// The TSC frequency measured at boot, in Hz.
    pub fn tsc_hz(&self) -> u64 {
        self.tsc_hz.load(Ordering::Relaxed)
    }

    fn now_ns(&self) -> u64 {
        let hz = self.tsc_hz.load(Ordering::Relaxed);
        let cycles = rdtsc_ordered().wrapping_sub(self.tsc0.load(Ordering::Relaxed));
        pic_pit::tsc_to_ns(cycles, hz)
    }

    /// Program the PIT for the timers' state: periodic if a period is set, else one-shot towards the
    /// deadline, else stopped.
    fn program_timer(&self) {
        let period = self.period_ns.load(Ordering::Relaxed);
        let deadline = self.deadline_ns.load(Ordering::Relaxed);
        if period != 0 {
            devices::pit_periodic(pic_pit::pit_count(period));
        } else if deadline != 0 {
            devices::pit_oneshot(pic_pit::pit_count(deadline.saturating_sub(self.now_ns())));
        } else {
            devices::pit_stop();
        }
    }

    /// A timer interrupt arrived: true if the kernel's timer source should see it.
    fn timer_fired(&self) -> bool {
        let now = self.now_ns();
        let period = self.period_ns.load(Ordering::Relaxed);
        let deadline = self.deadline_ns.load(Ordering::Relaxed);
        let oneshot_due = deadline != 0 && now >= deadline;
        if oneshot_due {
            self.deadline_ns.store(0, Ordering::Relaxed);
        }
        let tick_due = period != 0 && now >= self.next_tick_ns.load(Ordering::Relaxed);
        if tick_due {
            self.next_tick_ns.store(now + period, Ordering::Relaxed);
        }
        if period == 0 && deadline != 0 && !oneshot_due {
            // A deadline beyond the PIT's reach: count down again.
            self.program_timer();
        }
        oneshot_due || tick_due
    }

    fn is_bound(&self, irq: Irq) -> bool {
        irq != 0 && irq < 33 && self.bound.load(Ordering::Relaxed) & (1 << irq) != 0
    }

    /// Deliver pending unmasked software sources now if interrupts are enabled.
    fn kick_soft(&self) {
        let soft = NATIVE_IRQ_PENDING.load(Ordering::Acquire) >> SOFT_BASE;
        let unmasked = (self.unmasked.load(Ordering::Relaxed) >> 17) as u32;
        if soft & unmasked != 0 && self.irqs_enabled() {
            cpu::raise_self_interrupt();
        }
    }

    fn put_byte(b: u8) {
        let mut spins = 0u32;
        while !uart::tx_ready(cpu::inb(uart::COM1 + uart::reg::LSR)) && spins < 100_000 {
            spins += 1;
        }
        cpu::outb(uart::COM1 + uart::reg::DATA, b);
    }

    /// The entry that maps `va` in the current address space: `(its machine address, value)`, or `None`
    /// when the walk meets a non-present or large entry or a table outside the physmap.
    fn leaf_entry(va: u64) -> Option<(u64, Pte)> {
        let mut table = cpu::read_cr3() & ADDR_MASK;
        for level in [Level::L4, Level::L3, Level::L2, Level::L1] {
            let at = table + (index(va, level) as u64) * 8;
            let p = direct_va(at)?;
            // SAFETY: `table` is a page table of the current address space below 1 GiB, which the direct
            // map maps; an aligned 8-byte read of it is a plain load.
            let e = Pte(unsafe { (p as *const u64).read_volatile() });
            if level == Level::L1 {
                return Some((at, e));
            }
            if !e.is_present() || e.flags().contains(PteFlags::HUGE) {
                return None;
            }
            table = e.0 & ADDR_MASK;
        }
        None
    }
}

impl Mmu for Native {
    fn write_ptes(&self, writes: &[PtWrite]) -> (usize, Result<(), Errno>) {
        for (done, w) in writes.iter().enumerate() {
            match w.target() {
                PtTarget::Entry(Maddr(at)) if at.is_multiple_of(8) && at < DIRECT_MAP_SIZE => {
                    let va = super::DIRECT_MAP_BASE + at;
                    // SAFETY: the direct map maps physical 0..1 GiB writable; the memory manager only asks
                    // for stores into its own page tables (natively nothing validates them: ring 0 is
                    // trusted).
                    unsafe { (va as *mut u64).write_volatile(w.value()) };
                }
                // Natively a guest frame is its machine frame: recording anything else is refused.
                PtTarget::FrameOwner(Mfn(m)) if m == w.value() => {}
                _ => return (done, Err(Errno::EINVAL)),
            }
        }
        (writes.len(), Ok(()))
    }

    fn pin_table(&self, _level: Level, _mfn: Mfn) -> Result<(), Errno> {
        // Nothing validates page tables natively: there is no pin to take.
        Ok(())
    }

    fn unpin_table(&self, _mfn: Mfn) -> Result<(), Errno> {
        Ok(())
    }

    fn switch_address_space(&self, root: Mfn) -> Result<(), Errno> {
        // SAFETY: the memory manager only switches to L4s that carry the kernel's slots.
        unsafe { cpu::write_cr3(root.0 << PAGE_SHIFT) };
        Ok(())
    }

    fn flush_tlb(&self, what: Flush) -> Result<(), Errno> {
        match what {
            Flush::Page(va) => cpu::invlpg(va.0),
            // SAFETY: reloading the current CR3 keeps the same tables.
            Flush::All => unsafe { cpu::write_cr3(cpu::read_cr3()) },
        }
        Ok(())
    }
}

impl Platform for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn kernel_ring(&self) -> u8 {
        (crate::arch::read_cs() & 3) as u8
    }

    fn hypervisor_info(&self) -> Option<HypervisorInfo> {
        None
    }

    fn machines(&self, _first: u16, _out: &mut [uapi::DomInfo]) -> Result<usize, Errno> {
        Err(Errno::ENOSYS)
    }

    fn console_write(&self, bytes: &[u8]) -> Result<(), Errno> {
        uart::for_each_wire_byte(bytes, Self::put_byte);
        Ok(())
    }

    fn console_read(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut n = 0;
        while n < buf.len() && uart::rx_ready(cpu::inb(uart::COM1 + uart::reg::LSR)) {
            buf[n] = cpu::inb(uart::COM1 + uart::reg::DATA);
            n += 1;
        }
        Ok(n)
    }

    fn remap_page(&self, va: Gva, pte: Pte) -> Result<(), Errno> {
        let (at, _) = Self::leaf_entry(va.0).ok_or(Errno::EINVAL)?;
        let (_, r) = self.write_ptes(&[PtWrite::entry(Maddr(at), pte)]);
        r?;
        cpu::invlpg(va.0);
        Ok(())
    }

    fn frame_table(&self) -> Result<(u64, u64), Errno> {
        // Natively machine and guest frames are the same: there is no table to read (the memory manager
        // uses an identity P2M).
        Err(Errno::ENOSYS)
    }

    fn memory_pages(&self) -> Result<u64, Errno> {
        match self.info.get().map(Info::memory_pages) {
            Some(p) if p > 0 => Ok(p),
            _ => Err(Errno::ENOSYS),
        }
    }

    fn memory_limit(&self) -> Result<u64, Errno> {
        self.memory_pages()
    }

    fn release_frames(&self, _mfns: &[u64]) -> Result<usize, Errno> {
        Err(Errno::ENOSYS)
    }

    fn claim_frames(&self, _mfns: &mut [u64]) -> Result<usize, Errno> {
        Err(Errno::ENOSYS)
    }

    fn irq_disable(&self) -> bool {
        let was = self.irqs_enabled();
        cpu::cli();
        was
    }

    fn irq_restore(&self, enabled: bool) {
        // STI, never POPF (see `arch::x86_64::native`). Until the interrupt gates exist, interrupts stay
        // masked: an interrupt without a gate would take the machine down.
        if enabled && self.live.load(Ordering::Acquire) != 0 {
            cpu::sti();
            self.kick_soft();
        }
    }

    fn irqs_enabled(&self) -> bool {
        cpu::rflags() & RFLAGS_IF != 0
    }

    fn irq_pending(&self) -> bool {
        // What the entry stubs recorded and software sources; a line still waiting in the PIC is
        // delivered by the CPU itself as soon as IF is set, so it needs no look (and the system-call
        // return path, which asks this, does no port I/O).
        let unmasked = self.unmasked.load(Ordering::Relaxed);
        let soft = u64::from(NATIVE_IRQ_PENDING.load(Ordering::Acquire));
        let irqs = ((soft & 0xffff) << 1) | ((soft >> SOFT_BASE) << 17);
        irqs & unmasked != 0
    }

    fn irq_set_flag(&self, enabled: bool) {
        if enabled {
            self.irq_restore(true);
        } else {
            cpu::cli();
        }
    }

    fn irq_bind(&self, what: IrqSource) -> Result<Irq, Errno> {
        let irq = match what {
            IrqSource::Timer => Irq::from(TIMER_LINE) + 1,
            IrqSource::Console => Irq::from(COM1_LINE) + 1,
            IrqSource::SelfIpi => {
                let bound = self.bound.load(Ordering::Relaxed);
                (17..33)
                    .find(|i| bound & (1 << i) == 0)
                    .ok_or(Errno::ENOSPC)?
            }
            // No other machine to talk to.
            IrqSource::PeerOffer { .. } | IrqSource::PeerConnect { .. } | IrqSource::Suspend => {
                return Err(Errno::ENODEV);
            }
        };
        if self.bound.fetch_or(1 << irq, Ordering::AcqRel) & (1 << irq) != 0 {
            return Err(Errno::EBUSY);
        }
        NATIVE_IRQ_PENDING.fetch_and(!pending_bit(irq), Ordering::AcqRel);
        Ok(irq)
    }

    fn irq_close(&self, irq: Irq) -> Result<(), Errno> {
        if !self.is_bound(irq) {
            return Err(Errno::EINVAL);
        }
        self.irq_mask(irq);
        self.bound.fetch_and(!(1 << irq), Ordering::AcqRel);
        NATIVE_IRQ_PENDING.fetch_and(!pending_bit(irq), Ordering::AcqRel);
        Ok(())
    }

    fn irq_send(&self, irq: Irq) -> Result<(), Errno> {
        if !self.is_bound(irq) || irq < 17 {
            return Err(Errno::EINVAL);
        }
        NATIVE_IRQ_PENDING.fetch_or(pending_bit(irq), Ordering::AcqRel);
        self.kick_soft();
        Ok(())
    }

    fn irq_unmask(&self, irq: Irq) -> Result<(), Errno> {
        if !self.is_bound(irq) {
            return Err(Errno::EINVAL);
        }
        self.unmasked.fetch_or(1 << irq, Ordering::AcqRel);
        if irq <= 16 {
            let line = (irq - 1) as u8;
            if line == COM1_LINE {
                for (port, v) in uart::rx_interrupt_sequence(uart::COM1) {
                    cpu::outb(port, v);
                }
            }
            devices::pic_line(line, true);
        } else {
            self.kick_soft();
        }
        Ok(())
    }

    fn irq_mask(&self, irq: Irq) {
        if irq == 0 || irq >= 33 {
            return;
        }
        self.unmasked.fetch_and(!(1 << irq), Ordering::AcqRel);
        if irq <= 16 {
            devices::pic_line((irq - 1) as u8, false);
        }
    }

    fn irq_is_pending(&self, irq: Irq) -> bool {
        if irq == 0 || irq >= 33 {
            return false;
        }
        let soft = NATIVE_IRQ_PENDING.load(Ordering::Acquire) & pending_bit(irq) != 0;
        soft || (irq <= 16 && devices::pic_irr() & (1 << (irq - 1)) != 0)
    }

    fn irq_is_masked(&self, irq: Irq) -> bool {
        irq == 0 || irq >= 33 || self.unmasked.load(Ordering::Relaxed) & (1 << irq) == 0
    }

    fn irq_take_pending(&self, irq: Irq) -> bool {
        if irq == 0 || irq >= 33 {
            return false;
        }
        NATIVE_IRQ_PENDING.fetch_and(!pending_bit(irq), Ordering::AcqRel) & pending_bit(irq) != 0
    }

    fn irq_state(&self, irq: Irq) -> Result<IrqState, Errno> {
        if irq == 0 || irq >= 33 {
            return Err(Errno::EINVAL);
        }
        Ok(if !self.is_bound(irq) {
            IrqState::Free
        } else if irq <= 16 {
            IrqState::Line
        } else {
            IrqState::SelfIpi
        })
    }

    fn irq_dispatch(&self, handler: &mut dyn FnMut(Irq)) {
        let pending = NATIVE_IRQ_PENDING.swap(0, Ordering::AcqRel);
        let unmasked = self.unmasked.load(Ordering::Relaxed);
        // PIC lines: acknowledge (a spurious line 7 or 15, not in service, gets no EOI), then deliver.
        let isr = if pending & 0xffff != 0 {
            devices::pic_isr()
        } else {
            0
        };
        for line in 0..16u8 {
            if pending & (1 << line) == 0 {
                continue;
            }
            if isr & (1 << line) != 0 {
                devices::pic_eoi(line);
            }
            let irq = Irq::from(line) + 1;
            if !self.is_bound(irq) {
                continue;
            }
            if unmasked & (1 << irq) == 0 {
                NATIVE_IRQ_PENDING.fetch_or(pending_bit(irq), Ordering::AcqRel);
                continue;
            }
            if line == TIMER_LINE && !self.timer_fired() {
                continue;
            }
            handler(irq);
        }
        for irq in 17..33 {
            if pending & pending_bit(irq) == 0 {
                continue;
            }
            if unmasked & (1 << irq) == 0 {
                NATIVE_IRQ_PENDING.fetch_or(pending_bit(irq), Ordering::AcqRel);
            } else if self.is_bound(irq) {
                handler(irq);
            }
        }
    }

    fn clock_read(&self) -> Option<ClockReading> {
        if self.tsc_hz.load(Ordering::Relaxed) == 0 {
            return None;
        }
        Some(ClockReading {
            ns: self.now_ns(),
            version: 0,
            retries: 0,
        })
    }

    fn wallclock_base(&self) -> Option<(u64, u32)> {
        match self.wall0.load(Ordering::Relaxed) {
            0 => None,
            s => Some((s, 0)),
        }
    }

    fn set_timer(&self, deadline_ns: u64) -> Result<(), Errno> {
        self.deadline_ns.store(deadline_ns, Ordering::Relaxed);
        if self.period_ns.load(Ordering::Relaxed) == 0 {
            self.program_timer();
        }
        Ok(())
    }

    fn set_periodic_timer(&self, period_ns: u64) -> Result<(), Errno> {
        if period_ns == 0 {
            return Err(Errno::EINVAL);
        }
        self.period_ns.store(period_ns, Ordering::Relaxed);
        self.next_tick_ns
            .store(self.now_ns() + period_ns, Ordering::Relaxed);
        self.program_timer();
        Ok(())
    }

    fn stop_periodic_timer(&self) -> Result<(), Errno> {
        self.period_ns.store(0, Ordering::Relaxed);
        self.program_timer();
        Ok(())
    }

    fn block(&self) -> Result<(), Errno> {
        if self.live.load(Ordering::Acquire) == 0 {
            return Err(Errno::ENOSYS);
        }
        // STI's one-instruction shadow covers the HLT: no interrupt slips in between.
        cpu::sti_hlt();
        Ok(())
    }

    fn yield_cpu(&self) -> Result<(), Errno> {
        // One CPU, no other machine: nobody to yield to.
        Ok(())
    }

    fn poll(&self, irqs: &[Irq], deadline_ns: u64) -> Result<(), Errno> {
        // Interrupts stay masked: watch the PIC's request register and the software bits.
        loop {
            if irqs.iter().any(|&i| self.irq_is_pending(i)) {
                return Ok(());
            }
            if deadline_ns != 0 && self.now_ns() >= deadline_ns {
                return Ok(());
            }
            core::hint::spin_loop();
        }
    }

    fn set_trap_gates(&self, gates: &TrapGates) -> Result<(), Errno> {
        for (v, g) in gates.exceptions.iter().enumerate() {
            if g.handler != 0 {
                tables::set_gate(v as u8, g.handler, if g.user { 3 } else { 0 }, false);
            }
        }
        if let Some(g) = gates.int80 {
            tables::set_gate(0x80, g.handler, if g.user { 3 } else { 0 }, false);
        }
        Ok(())
    }

    fn clear_trap_gates(&self) -> Result<(), Errno> {
        // Without a hypervisor, nobody would handle a fault the kernel leaves to "the platform": the
        // gates stay (the kernel then reports and stops).
        Err(Errno::ENOSYS)
    }

    fn set_entry_points(&self, entries: &EntryPoints) -> Result<(), Errno> {
        if entries.interrupt == 0 || entries.syscall == 0 {
            return Err(Errno::EINVAL);
        }
        for (line, &stub) in native_irq_stubs().iter().enumerate() {
            tables::set_gate(IRQ_BASE + line as u8, stub, 0, true);
        }
        tables::set_gate(SELF_VECTOR, entries.interrupt, 0, true);
        // SAFETY: EFER keeps LME/NXE (read-modify-write adding SCE); STAR's selectors are this GDT's
        // (`desc::star`); LSTAR is the native SYSCALL entry; FMASK clears IF, DF, TF and AC on entry.
        unsafe {
            cpu::wrmsr(MSR_EFER, cpu::rdmsr(MSR_EFER) | EFER_SCE);
            cpu::wrmsr(MSR_STAR, desc::star());
            cpu::wrmsr(MSR_LSTAR, entries.syscall);
            cpu::wrmsr(MSR_FMASK, SYSCALL_FMASK);
        }
        self.live.store(1, Ordering::Release);
        Ok(())
    }

    fn set_kernel_stack(&self, rsp: u64) -> Result<(), Errno> {
        tables::set_rsp0(rsp);
        NATIVE_KERNEL_RSP.store(rsp, Ordering::Relaxed);
        Ok(())
    }

    fn fault_address(&self) -> u64 {
        cpu::read_cr2()
    }

    fn set_user_fs_base(&self, base: u64) -> Result<(), Errno> {
        if !Gva(base).is_canonical() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: FS_BASE exists in long mode and takes any canonical address; the kernel does not use FS.
        unsafe { cpu::wrmsr(MSR_FS_BASE, base) };
        Ok(())
    }

    fn set_user_gs_base(&self, base: u64) -> Result<(), Errno> {
        if !Gva(base).is_canonical() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: GS_BASE exists in long mode and takes any canonical address; the kernel does not use GS.
        unsafe { cpu::wrmsr(MSR_GS_BASE, base) };
        Ok(())
    }

    fn shutdown(&self, how: Halt, code: u32) -> ! {
        // The line xtask reads as this machine's shutdown (`xtask::mode::NATIVE_SHUTDOWN_PREFIX`), in the
        // words of the hypervisor's own shutdown line.
        let reason = match how {
            Halt::Poweroff => "poweroff",
            Halt::Crash => "crash",
        };
        crate::println!("native: shut down: {reason} code {code}");
        cpu::outl(abi::exit::DEBUG_EXIT_PORT, u32::from(exit_value(how, code)));
        // Without the debug-exit device (a real PC), stop here.
        loop {
            cpu::cli();
            cpu::hlt();
        }
    }
}
