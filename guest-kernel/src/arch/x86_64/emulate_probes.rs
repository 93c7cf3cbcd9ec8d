//! Hostile privileged operations for the native kernel run under the hypervisor's `emulate` kind (the
//! `hostile=` word, `platform::native::hostile`): each hands the emulator a value no real machine of this
//! domain could honour. Natively (ring 0) they would take the machine down; they are only meant for
//! emulate domains, whose crash must stay contained.

use core::arch::asm;

use super::native::TableRegister;

/// Load CR3 with `root` (a guest-physical address outside the domain, for instance).
pub fn load_cr3(root: u64) {
    // SAFETY: deliberately hostile; under the emulator this traps and the domain is stopped.
    unsafe { asm!("mov cr3, {}", in(reg) root, options(nostack)) };
}

/// Load IDTR from `t`, then raise a breakpoint through it.
pub fn lidt_and_int3(t: &TableRegister) {
    // SAFETY: deliberately hostile (see the module comment).
    unsafe { asm!("lidt [{}]", "int3", in(reg) t, options(nostack)) };
}

/// Load GDTR from `t`, then load DS with `sel` from it.
pub fn lgdt_and_load_ds(t: &TableRegister, sel: u16) {
    // SAFETY: deliberately hostile (see the module comment).
    unsafe { asm!("lgdt [{}]", "mov ds, {:x}", in(reg) t, in(reg) sel, options(nostack)) };
}

/// Execute MONITOR (`0f 01 c8`), which traps in ring 1 and which the emulator does not implement.
pub fn unknown_instruction() {
    // SAFETY: deliberately hostile (see the module comment).
    unsafe { asm!(".byte 0x0f, 0x01, 0xc8", options(nostack)) };
}

/// IRETQ to a frame whose CS is `cs` (and SS `ss`), returning to the next instruction.
pub fn iretq_to(cs: u16, ss: u16) {
    // SAFETY: deliberately hostile (see the module comment); the frame returns to the label on the current
    // stack if the CPU (or emulator) accepts it.
    unsafe {
        asm!(
            "mov {tmp}, rsp",
            "push {ss}",
            "push {tmp}",
            "pushfq",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "iretq",
            "2:",
            cs = in(reg) u64::from(cs),
            ss = in(reg) u64::from(ss),
            tmp = out(reg) _,
        )
    };
}
