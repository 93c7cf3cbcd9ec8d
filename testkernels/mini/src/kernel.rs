//! The mini kernel's 64-bit part: UART output, the IDT, the PIC and PIT, the timer and page-fault
//! handlers, and the steps `main` runs (see the crate documentation).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::arch::x86_64 as arch;
use crate::{
    COM1, DEBUG_EXIT_PORT, EXIT_FAILURE, EXIT_SUCCESS, FAULT_ADDR, KERNEL_CS, MULTIBOOT_MAGIC,
    PF_VECTOR, PIC_BASE_VECTOR, ShutdownLine, TICK_HZ, TICKS, pit_divisor,
};

// The runtime symbols (memcpy and friends) the compiler may call.
use rt as _;

/// Timer interrupts taken so far.
static TICKS_SEEN: AtomicU32 = AtomicU32::new(0);
/// Page faults taken, and the last one's address and error code.
static FAULTS: AtomicU32 = AtomicU32::new(0);
static FAULT_CR2: AtomicU64 = AtomicU64::new(0);
static FAULT_ERROR: AtomicU64 = AtomicU64::new(0);

/// Number of IDT entries: the 32 exceptions and the 16 PIC vectors.
const IDT_ENTRIES: usize = 48;

/// One 16-byte interrupt gate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate([u64; 2]);

/// The IDT (filled once by [`install_idt`] with interrupts off, then only read by the CPU).
struct Idt(core::cell::UnsafeCell<[Gate; IDT_ENTRIES]>);
// SAFETY: one CPU; the table is written once before LIDT with interrupts disabled, then never again.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(core::cell::UnsafeCell::new([Gate([0; 2]); IDT_ENTRIES]));

/// A present 64-bit interrupt gate (DPL 0, IST 0) to `handler` through code selector `cs`.
fn gate(handler: u64, cs: u16) -> Gate {
    let low = (handler & 0xffff)
        | (u64::from(cs) << 16)
        | (0x8e << 40)
        | ((handler >> 16) & 0xffff) << 48;
    Gate([low, handler >> 32])
}

fn install_idt() {
    // The gates name the code segment of the kernel's own GDT, not the CS register: under a trap-and-
    // emulate VMM `mov from CS` shows the real, deprivileged selector (ring 1), which the kernel's GDT
    // does not hold.
    let cs = KERNEL_CS;
    // SAFETY: interrupts are off and nothing else references the table before LIDT below.
    let table = unsafe { &mut *IDT.0.get() };
    for (vector, entry) in table.iter_mut().enumerate() {
        let handler = match vector {
            v if v == usize::from(PF_VECTOR) => arch::isr_page_fault(),
            v if v < 32 => arch::isr_exception(v),
            v if v == usize::from(PIC_BASE_VECTOR) => arch::isr_timer(),
            _ => arch::isr_ignore(),
        };
        *entry = gate(handler, cs);
    }
    arch::lidt(
        IDT.0.get() as u64,
        (core::mem::size_of::<[Gate; IDT_ENTRIES]>() - 1) as u16,
    );
}

/// COM1, polled.
struct Uart;

impl Uart {
    fn init() {
        arch::outb(COM1 + 1, 0x00); // no UART interrupts
        arch::outb(COM1 + 3, 0x80); // DLAB
        arch::outb(COM1, 0x01); // 115200 baud
        arch::outb(COM1 + 1, 0x00);
        arch::outb(COM1 + 3, 0x03); // 8N1
        arch::outb(COM1 + 2, 0xc7); // FIFOs on and cleared
        arch::outb(COM1 + 4, 0x03); // DTR, RTS
    }

    fn put(byte: u8) {
        // Wait (boundedly) for the transmit holding register to empty.
        for _ in 0..100_000 {
            if arch::inb(COM1 + 5) & 0x20 != 0 {
                break;
            }
        }
        arch::outb(COM1, byte);
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                Uart::put(b'\r');
            }
            Uart::put(b);
        }
        Ok(())
    }
}

macro_rules! println {
    ($($arg:tt)*) => {{
        let _ = writeln!(Uart, $($arg)*);
    }};
}

/// Remaps the two 8259As to vectors 0x20–0x2f (edge triggered, cascaded on IRQ2) and masks every IRQ
/// but the timer's.
fn init_pic() {
    let (master, slave) = (0x20, 0xa0);
    arch::outb(master, 0x11); // ICW1: edge, cascade, ICW4 follows
    arch::outb(slave, 0x11);
    arch::outb(master + 1, PIC_BASE_VECTOR); // ICW2: vector base
    arch::outb(slave + 1, PIC_BASE_VECTOR + 8);
    arch::outb(master + 1, 0x04); // ICW3: slave on IRQ2
    arch::outb(slave + 1, 0x02); // ICW3: cascade identity
    arch::outb(master + 1, 0x01); // ICW4: 8086 mode, normal EOI
    arch::outb(slave + 1, 0x01);
    arch::outb(master + 1, 0xfe); // OCW1: only IRQ0
    arch::outb(slave + 1, 0xff);
}

/// PIT channel 0, mode 2 (rate generator), lobyte/hibyte, at [`TICK_HZ`].
fn init_pit() {
    let divisor = pit_divisor(TICK_HZ);
    arch::outb(0x43, 0x34);
    arch::outb(0x40, divisor as u8);
    arch::outb(0x40, (divisor >> 8) as u8);
}

/// Writes `code` to isa-debug-exit after the shutdown line; halts if the machine does not stop.
fn exit(code: u32) -> ! {
    println!("{}", ShutdownLine(code));
    arch::outl(DEBUG_EXIT_PORT, code);
    arch::halt_forever()
}

/// The 64-bit kernel: called by `_start64` with the loader's magic and information address.
pub extern "C" fn main(magic: u64, _info: u64) -> ! {
    Uart::init();
    println!("mini: hello from the mini test kernel (not ring1pv's guest kernel)");
    if magic != u64::from(MULTIBOOT_MAGIC) {
        println!("mini: not booted by a multiboot loader (magic {magic:#x})");
        exit(EXIT_FAILURE);
    }
    println!("mini: long mode, ring {}", arch::cs() & 3);
    install_idt();
    init_pic();
    init_pit();
    println!(
        "mini: PIC remapped to {:#x}, PIT channel 0 at {} Hz",
        PIC_BASE_VECTOR, TICK_HZ
    );
    // The tenth timer interrupt masks IRQ0, so exactly TICKS are taken.
    while TICKS_SEEN.load(Ordering::Relaxed) < TICKS {
        arch::wait_for_interrupt();
    }
    arch::cli();
    let ticks = TICKS_SEEN.load(Ordering::Relaxed);
    println!("mini: {ticks} timer interrupts");

    // SAFETY: the page is a static this kernel writes only here, before mapping it.
    unsafe { (*FAULT_PAGE.0.get()).0[0] = FAULT_PAGE_MAGIC };
    let value = arch::touch(FAULT_ADDR);
    let (faults, cr2, error) = (
        FAULTS.load(Ordering::Relaxed),
        FAULT_CR2.load(Ordering::Relaxed),
        FAULT_ERROR.load(Ordering::Relaxed),
    );
    let mapped = MAPPED.load(Ordering::Relaxed);
    if mapped {
        println!(
            "mini: page fault at {cr2:#x} (error code {error:#x}): mapped a page there, the read gives {value:#x}"
        );
    } else {
        println!(
            "mini: page fault at {cr2:#x} (error code {error:#x}) handled, resumed after the read (not its tables)"
        );
    }
    let read_ok = if mapped {
        value == FAULT_PAGE_MAGIC
    } else {
        value == u64::MAX
    };
    let ok = ticks == TICKS && read_ok && faults == 1 && cr2 == FAULT_ADDR && error & 1 == 0;
    let code = if ok { EXIT_SUCCESS } else { EXIT_FAILURE };
    println!(
        "mini: summary: {ticks} ticks, {faults} page fault at {cr2:#x}, {}",
        if ok { "all as expected" } else { "UNEXPECTED" }
    );
    exit(code)
}

/// The timer handler: count, mask IRQ0 at the last expected tick, acknowledge.
pub extern "C" fn timer(_frame: &mut arch::Frame) {
    let n = TICKS_SEEN.fetch_add(1, Ordering::Relaxed) + 1;
    if n >= TICKS {
        arch::outb(0x21, 0xff);
    }
    arch::outb(0x20, 0x20); // non-specific EOI
}

/// What the page mapped at [`FAULT_ADDR`] holds in its first word ("mini pf!").
const FAULT_PAGE_MAGIC: u64 = u64::from_le_bytes(*b"mini pf!");

/// A page-aligned page of this kernel's image (identity-mapped: its address is its physical address).
#[repr(C, align(4096))]
struct Page([u64; 512]);

/// A page written once by `main` or the page-fault handler, then only read through the tables.
struct PageCell(core::cell::UnsafeCell<Page>);
// SAFETY: one CPU; each page is written by `main` before the fault or by the page-fault handler, never
// concurrently.
unsafe impl Sync for PageCell {}

/// The page directory and page table the handler links under the boot PDPT, and the page it maps.
static FAULT_PD: PageCell = PageCell(core::cell::UnsafeCell::new(Page([0; 512])));
static FAULT_PT: PageCell = PageCell(core::cell::UnsafeCell::new(Page([0; 512])));
static FAULT_PAGE: PageCell = PageCell(core::cell::UnsafeCell::new(Page([0; 512])));
/// The handler mapped [`FAULT_ADDR`] (instead of skipping the read).
static MAPPED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Maps [`FAULT_ADDR`] to [`FAULT_PAGE`] (read-only) through new PD and PT pages under the boot PDPT, if
/// the running tables are the boot ones `_start32` built (a loader entering `_start64` brings its own,
/// which this kernel does not know how to extend); true if it did.
fn map_fault_page() -> bool {
    let (pml4, pdpt) = arch::boot_tables();
    if arch::cr3() & !0xfff != pml4 {
        return false;
    }
    const P: u64 = 1;
    const W: u64 = 2;
    let index = |shift: u32| ((FAULT_ADDR >> shift) & 511) as usize;
    // The fault address shares PML4 slot 0 with the identity GiB (a higher PDPT index).
    if index(39) != 0 || index(30) == 0 {
        return false;
    }
    // SAFETY: identity-mapped: the boot PDPT and these statics are at their physical addresses; the PDPT
    // entry is empty (only entry 0 maps the first GiB); nothing else uses these pages; a single CPU in
    // the page-fault handler with interrupts off.
    unsafe {
        let pd = FAULT_PD.0.get();
        let pt = FAULT_PT.0.get();
        (*pt).0[index(12)] = FAULT_PAGE.0.get() as u64 | P;
        (*pd).0[index(21)] = pt as u64 | P | W;
        let pdpt = pdpt as *mut u64;
        pdpt.add(index(30)).write_volatile(pd as u64 | P | W);
    }
    arch::invlpg(FAULT_ADDR);
    true
}

/// The page-fault handler: only the probe's read of [`FAULT_ADDR`] is expected; the handler maps the
/// page and lets the read run again (or, on tables it does not own, resumes after it). Any other page
/// fault is fatal.
pub extern "C" fn page_fault(frame: &mut arch::Frame) {
    let cr2 = arch::cr2();
    let (insn, fixup) = arch::touch_labels();
    if frame.rip != insn || cr2 != FAULT_ADDR || FAULTS.load(Ordering::Relaxed) != 0 {
        println!(
            "mini: unexpected page fault at {cr2:#x} (error code {:#x}, rip {:#x})",
            frame.error, frame.rip
        );
        exit(EXIT_FAILURE);
    }
    FAULTS.fetch_add(1, Ordering::Relaxed);
    FAULT_CR2.store(cr2, Ordering::Relaxed);
    FAULT_ERROR.store(frame.error, Ordering::Relaxed);
    if map_fault_page() {
        MAPPED.store(true, Ordering::Relaxed);
    } else {
        frame.rip = fixup;
    }
}

/// Any other exception: report and stop.
pub extern "C" fn unexpected(vector: u64) -> ! {
    println!("mini: unexpected exception {vector}");
    exit(EXIT_FAILURE)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("mini: panic: {}", info.message());
    exit(EXIT_FAILURE)
}
