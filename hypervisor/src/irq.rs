//! Hardware interrupts: the hypervisor's timer and the serial line.
//!
//! An interrupt arrives either while a guest runs (through `trap::guest_trap`, with the domain table
//! locked) or in the idle loop. Either way the handler only records what happened — timer expired, bytes
//! typed, a debug key pressed — and the scheduler acts on it (raising VIRQs, waking vCPUs, preempting,
//! dumping state) at its next decision, with no lock held.
//!
//! Console input goes to domain 0 (raised as VIRQ_CONSOLE, read with `console_io(CONSOLEIO_read)`), except
//! the debug key: Ctrl-] followed by a letter (`h` for the list) makes the hypervisor dump its state;
//! Ctrl-] twice sends one Ctrl-] to the guest.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::arch::{apic, serial};

/// The debug-key prefix (Ctrl-]).
pub const DEBUG_PREFIX: u8 = 0x1d;

/// What the interrupt handlers recorded since the scheduler last looked, one bit per kind ([`TIMER`],
/// [`CONSOLE`], [`DEBUG`]): the return to a guest tests them all with one load ([`any_recorded`]).
static RECORDED: AtomicU8 = AtomicU8::new(0);
/// The timer interrupt fired.
pub const TIMER: u8 = 1;
/// Console input arrived for domain 0.
pub const CONSOLE: u8 = 2;
/// [`DEBUG_KEYS`] is not empty (checked without taking its lock).
pub const DEBUG: u8 = 4;

/// Record that `what` happened (one of [`TIMER`], [`CONSOLE`], [`DEBUG`]).
pub fn record(what: u8) {
    RECORDED.fetch_or(what, Ordering::Relaxed);
    crate::pending::raise(crate::pending::IRQ);
}

/// Everything recorded since the last take (a mask of [`TIMER`], [`CONSOLE`], [`DEBUG`]), clearing it.
pub fn take_all() -> u8 {
    crate::pending::clear(crate::pending::IRQ);
    RECORDED.swap(0, Ordering::Relaxed)
}

/// Whether anything at all was recorded that the scheduler has not taken yet.
#[inline(always)]
pub fn any_recorded() -> bool {
    RECORDED.load(Ordering::Relaxed) != 0
}

/// Debug keys waiting to be acted on, in the order they were pressed.
pub static DEBUG_KEYS: spin::Mutex<heapless::Deque<u8, 8>> =
    spin::Mutex::new(heapless::Deque::new());
static PREFIX_SEEN: AtomicBool = AtomicBool::new(false);

/// Bytes typed for domain 0, not yet read.
pub static CONSOLE_IN: spin::Mutex<heapless::Deque<u8, 1024>> =
    spin::Mutex::new(heapless::Deque::new());

/// Handle interrupt `vector` (called with interrupts disabled).
pub fn interrupt(vector: u64) {
    match vector {
        v if v == u64::from(apic::TIMER_VECTOR) => {
            record(TIMER);
            apic::eoi();
        }
        v if v == u64::from(apic::SPURIOUS_VECTOR) => {}
        v if v == u64::from(apic::PIC_BASE + apic::SERIAL_IRQ) => {
            while let Some(b) = serial::try_read() {
                input_byte(b);
            }
            apic::pic_eoi();
        }
        // Spurious lines of the masked legacy PIC.
        0x27 | 0x2f => {}
        v => log::warn!("unexpected interrupt vector {v:#x}"),
    }
}

fn input_byte(b: u8) {
    if PREFIX_SEEN.swap(false, Ordering::Relaxed) {
        if b != DEBUG_PREFIX {
            let _ = DEBUG_KEYS.lock().push_back(b);
            record(DEBUG);
            return;
        }
    } else if b == DEBUG_PREFIX {
        PREFIX_SEEN.store(true, Ordering::Relaxed);
        return;
    }
    // A full buffer drops the oldest input rather than the newest keystroke.
    let mut q = CONSOLE_IN.lock();
    if q.is_full() {
        q.pop_front();
    }
    let _ = q.push_back(b);
    record(CONSOLE);
}

/// Take up to `buf.len()` typed bytes.
pub fn read_console(buf: &mut [u8]) -> usize {
    let mut q = CONSOLE_IN.lock();
    let mut n = 0;
    while n < buf.len() {
        match q.pop_front() {
            Some(b) => {
                buf[n] = b;
                n += 1;
            }
            None => break,
        }
    }
    n
}
