//! The guest kernel's first instruction.
//!
//! The hypervisor enters here in ring 1 with RSP at the top of the start-of-day stack and RSI pointing at
//! the `start_info` page (Xen's PV convention); events are masked (`evtchn_upcall_mask = 1`).
//! `kernel_main(start_info, stack_top)` gets that initial RSP too: the memory manager reads the end of the
//! start-of-day region from it.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.start, "ax"
    .global _start
_start:
    xor %ebp, %ebp
    mov %rsi, %rdi
    mov %rsp, %rsi
    call {main}
    ud2
    "#,
    main = sym crate::boot::kernel_main,
    options(att_syntax)
);
