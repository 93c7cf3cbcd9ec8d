//! The guest kernel's first instruction.
//!
//! The hypervisor enters here in ring 1 with RSP at the top of the start-of-day stack and RSI pointing at
//! the `start_info` page (Xen's PV convention); events are masked (`evtchn_upcall_mask = 1`).

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.start, "ax"
    .global _start
_start:
    xor %ebp, %ebp
    mov %rsi, %rdi
    call {main}
    ud2
    "#,
    main = sym crate::boot::kernel_main,
    options(att_syntax)
);
