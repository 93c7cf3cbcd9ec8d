//! `hostile=WHAT` on the native kernel's command line: a privileged operation an emulate domain's
//! hypervisor must refuse by stopping that domain only (issue 12's hostile list). Run before the rest of
//! the command line; a probe that is survived prints so and the command line continues.
//!
//! | WHAT | the operation |
//! |---|---|
//! | `cr3-outside` | CR3 = guest-physical 3 GiB (outside any domain's memory) |
//! | `cr3-hv` | CR3 = the hypervisor's image address (2 MiB) — inside the domain, so legal: it must see only its own frame |
//! | `idt-hv` | IDTR = the hypervisor's entry region (0xffff_8080_0000_0000), then `int3` |
//! | `gdt-garbage` | GDTR = 64 bytes of garbage on the stack, then `mov ds, 0x10` |
//! | `unknown-insn` | MONITOR, which traps in ring 1 and is not emulated |
//! | `iretq-ring1` | IRETQ to CS 0x09 (ring 1: not a guest ring under the emulator) |
//! | `iretq-ring0` | IRETQ to the kernel's own ring-0 CS 0x08: legal, continues |
//! | `pic-storm` | PIT channel 0 at its fastest rate, IRQ 0 unmasked, interrupts on, forever |

use crate::arch::x86_64::emulate_probes as probe;
use crate::arch::x86_64::native::{self as cpu, TableRegister};

use super::pic_pit;

/// Run the probe named by `hostile=` in `cmdline`, if any.
pub fn run(cmdline: &str) {
    let Some(what) = crate::cmdline::option(cmdline, "hostile") else {
        return;
    };
    crate::println!("hostile: {what}");
    match what {
        "cr3-outside" => probe::load_cr3(3 << 30),
        "cr3-hv" => probe::load_cr3(2 << 20),
        "idt-hv" => probe::lidt_and_int3(&TableRegister {
            limit: 0xfff,
            base: 0xffff_8080_0000_0000,
        }),
        "gdt-garbage" => {
            let garbage = [0x5a5a_5a5a_5a5a_5a5au64; 8];
            let t = TableRegister {
                limit: 63,
                base: garbage.as_ptr() as u64,
            };
            probe::lgdt_and_load_ds(&t, 0x10);
        }
        "unknown-insn" => probe::unknown_instruction(),
        "iretq-ring1" => probe::iretq_to(0x09, 0x11),
        "iretq-ring0" => probe::iretq_to(0x08, 0x10),
        "pic-storm" => {
            cpu::outb(pic_pit::PIT_CMD, pic_pit::PIT_MODE_PERIODIC);
            cpu::outb(pic_pit::PIT_CH0, 2);
            cpu::outb(pic_pit::PIT_CH0, 0);
            cpu::outb(pic_pit::PIC1_DATA, 0xfe);
            // At ~600 kHz the kernel spends all its time in its own timer handler: it livelocks there,
            // as it would on a real machine; the point is that no other domain notices.
            cpu::sti();
            loop {
                core::hint::spin_loop();
            }
        }
        _ => crate::println!("hostile: unknown probe '{what}'"),
    }
    crate::println!("hostile: {what} survived");
}
