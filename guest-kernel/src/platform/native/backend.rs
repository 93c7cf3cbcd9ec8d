//! The native backend's [`Platform`] implementation: every operation as ring-0 instructions and legacy
//! port I/O (see the module documentation of `platform::native` for what is not written yet).

use abi::errno::Errno;
use abi::types::{Gva, Maddr, Mfn, PAGE_SHIFT, Pfn};

use super::multiboot::Info;
use super::{exit_value, uart};
use crate::arch::x86_64::native as cpu;
use crate::mm::physmap_va;
use crate::mm::pte::{ADDR_MASK, Level, Pte, PteFlags, index};
use crate::platform::{
    ClockReading, EntryPoints, Flush, Halt, HypervisorInfo, Irq, IrqSource, IrqState, Mmu,
    Platform, PtTarget, PtWrite, TrapGates,
};

/// Physical memory the boot tables map at the physmap (1 GiB): page tables must lie below it.
const PHYSMAP_MAPPED: u64 = 1 << 30;
/// `IA32_FS_BASE`.
const MSR_FS_BASE: u32 = 0xc000_0100;
/// `IA32_GS_BASE`.
const MSR_GS_BASE: u32 = 0xc000_0101;
/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// The native backend (one per machine; stateless beyond what boot recorded).
pub struct Native {
    info: spin::Once<Info>,
}

/// The native backend instance.
pub static NATIVE: Native = Native {
    info: spin::Once::new(),
};

impl Native {
    /// Boot-time setup: remember the multiboot information and program the UART (polled).
    pub fn enter(&self, info: Info) {
        self.info.call_once(|| info);
        let div = uart::divisor(uart::BASE_BAUD).unwrap_or(1);
        for (port, val) in uart::init_sequence(uart::COM1, div) {
            cpu::outb(port, val);
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
            if table >= PHYSMAP_MAPPED {
                return None;
            }
            let at = table + (index(va, level) as u64) * 8;
            // SAFETY: `table` is a page table of the current address space below 1 GiB, which the physmap
            // maps writable; an aligned 8-byte read of it is a plain load.
            let e = Pte(unsafe {
                (physmap_va(Pfn(at >> PAGE_SHIFT)) as *const u64)
                    .byte_add((at & 0xfff) as usize)
                    .read_volatile()
            });
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
                PtTarget::Entry(Maddr(at)) if at.is_multiple_of(8) && at < PHYSMAP_MAPPED => {
                    let va = physmap_va(Pfn(at >> PAGE_SHIFT)) + (at & 0xfff);
                    // SAFETY: the physmap maps physical 0..1 GiB writable; the memory manager only asks for
                    // stores into its own page tables (natively nothing validates them: ring 0 is trusted).
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
        // Natively machine and guest frames are the same: there is no table to read.
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
        // Not yet: without an IDT and a programmed PIC, an interrupt would triple-fault the machine, so
        // interrupts stay masked until the backend installs them.
        let _ = enabled;
    }

    fn irqs_enabled(&self) -> bool {
        cpu::rflags() & RFLAGS_IF != 0
    }

    fn irq_pending(&self) -> bool {
        false
    }

    fn irq_set_flag(&self, enabled: bool) {
        self.irq_restore(enabled);
    }

    fn irq_bind(&self, _what: IrqSource) -> Result<Irq, Errno> {
        Err(Errno::ENOSYS)
    }

    fn irq_close(&self, _irq: Irq) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn irq_send(&self, _irq: Irq) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn irq_unmask(&self, _irq: Irq) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn irq_mask(&self, _irq: Irq) {}

    fn irq_is_pending(&self, _irq: Irq) -> bool {
        false
    }

    fn irq_is_masked(&self, _irq: Irq) -> bool {
        true
    }

    fn irq_take_pending(&self, _irq: Irq) -> bool {
        false
    }

    fn irq_state(&self, _irq: Irq) -> Result<IrqState, Errno> {
        Err(Errno::ENOSYS)
    }

    fn irq_dispatch(&self, _handler: &mut dyn FnMut(Irq)) {}

    fn clock_read(&self) -> Option<ClockReading> {
        None
    }

    fn wallclock_base(&self) -> Option<(u64, u32)> {
        None
    }

    fn set_timer(&self, _deadline_ns: u64) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn set_periodic_timer(&self, _period_ns: u64) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn stop_periodic_timer(&self) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn block(&self) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn yield_cpu(&self) -> Result<(), Errno> {
        // One CPU, no other machine: nobody to yield to.
        Ok(())
    }

    fn poll(&self, _irqs: &[Irq], _deadline_ns: u64) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn set_trap_gates(&self, _gates: &TrapGates) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn clear_trap_gates(&self) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn set_entry_points(&self, _entries: &EntryPoints) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    fn set_kernel_stack(&self, _rsp: u64) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
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
