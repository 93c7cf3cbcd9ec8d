//! All hypervisor entry and exit assembly: interrupt/exception/hypercall stubs, the address-space switch,
//! and the return to a guest.
//!
//! # Where this code runs
//! The `.entry.text` and `.entry.data` sections form the *entry region*: the only hypervisor memory that is
//! mapped while a guest runs (read-only, at [`abi::layout::ENTRY_REGION_VA`]), together with the current
//! CPU's entry stack and IST stacks (read-write, at [`abi::layout::ENTRY_STACKS_VA`]). The IDT, GDT and TSS
//! live in `.entry.data`, so the CPU finds them in every address space. The code here is position
//! independent within the region (RIP-relative references only to `.entry.*` symbols), so it runs at the
//! alias address in both the guest's address space and the hypervisor's, which maps the region too.
//!
//! # Entry (any vector, from ring 1 or 3)
//! The CPU switches to TSS.RSP0 (the entry stack) or to an IST stack and pushes SS, RSP, RFLAGS, CS, RIP
//! and, for some exceptions, an error code. The stub pushes a zero error code where the CPU did not, then
//! the vector number; `common_entry` pushes the 15 general-purpose registers, loads the hypervisor's CR3,
//! moves to the hypervisor's private stack, saves the guest's FPU/SSE state with FXSAVE (before any Rust
//! code can touch an XMM register), installs a clean MXCSR and calls [`crate::trap::guest_trap`] with a
//! pointer to the frame.
//!
//! # The hypercall vector
//! Its IDT gate points straight at `hypercall_entry` (its stub in the array is an ordinary one, unused),
//! which makes `common_entry`'s checks (on the CPU's frame), makes the vector, error-code and register
//! slots with one `sub`, stores the caller-saved registers (the number stays in RAX; the callee-saved
//! ones go into the frame only on the ways to the general code) and makes `common_entry`'s switches and
//! saves. If the `pending` word is zero (so the state the last
//! same-vCPU return recorded, `pending::Armed`, holds) and the number has a light handler
//! (`hypercall::light::ENTRY`), it calls that with the frame and the recorded domain, with no lock held
//! (the handler takes at most the machine's) and no Rust code of its own around it (see
//! [`crate::trap::fast_hypercall_return`] for why that is sound
//! and which class of calls this serves). Answered with nothing left for the return and no event upcall
//! pending, the frame is sanitized here (RIP range, CS/SS by RPL, RFLAGS: `regs::sanitize_in_place`'s
//! rules) and the entry restores the FPU state, loads the recorded CR3, reloads the nine caller-saved
//! registers from the frame (the callee-saved ones were preserved by the handler and still hold the
//! guest's values) and IRETQs. Otherwise it writes the vector and error code and continues in Rust: an
//! answered call in `trap::fast_hypercall_return` (the general return), anything else in
//! [`crate::trap::guest_hypercall`] (`guest_trap` without the test of the vector).
//!
//! # What stays behind on the guest-visible stacks
//! The entry and IST stacks are mapped (read-write) in *every* domain's address space, so whatever an
//! entry leaves on them, the next domain can read. The entry-stack (RSP0) frame is left where it is: it
//! holds only the entering domain's own registers, and [`exit_to_guest`] overwrites exactly those
//! [`FRAME_SIZE`] bytes with the next guest's own frame before any guest runs again (nothing else ever
//! writes that stack: Rust code runs on the private stack, and the SYSCALL path's RSP slot is the frame's
//! RSP field). The fast hypercall return leaves the frame's vector and error-code slots and its six
//! callee-saved register slots as they were: they hold what the last exit wrote there (the current
//! domain's own registers; vector and error code zero, as sanitization leaves them) or what an entry of
//! that same domain wrote since, for every entry that writes them ends in an exit that rewrites the whole
//! frame, and the fast path itself writes none of them. (So a hypercall's error-code slot is zero on entry:
//! its ways to the general code write the vector alone.) An IST frame (#DB, NMI, #DF, #MC from a guest) is never rewritten by an exit, so
//! `common_entry` copies it to the private stack and zeroes the IST copy (`rep movsq`, `rep stosq`)
//! before any Rust code runs. A #DB from ring 0 (a guest's single-step or breakpoint that the CPU held
//! back across `mov %ss` and delivered on the first instruction of an entry stub, XSA-260) is dropped and
//! the stub resumed through the same copy-and-zero. Any other IST entry from ring 0 (the hypervisor's own
//! registers) only happens on the fatal path, which stops the machine before any guest runs again.
//!
//! # Entries that cannot be trusted
//! "From a guest" is decided by CS's RPL, and then checked: the frame must be exactly where the CPU puts
//! it on a privilege change, at the top of the entry stack or of an IST stack (`EntryWords::rsp0_entry`,
//! `ist_entry`). A guest CS with any other RSP means the CPU delivered the entry *without* a stack switch,
//! i.e. the guest was running at CPL 0 (QEMU TCG's null-SS defect, see docs/ARCHITECTURE.md, "Threat
//! model"), and the frame is on the guest's own stack in guest memory. Nothing of it is used but the
//! vector and RIP (read once, before the CR3 switch): the path moves to the private stack and calls
//! [`untrusted_entry`], which crashes the current domain (or ends the boot-time CPU fidelity probe,
//! [`super::fidelity`]).
//!
//! ```text
//!   entry stack (grows down)                 EntryFrame field   offset
//!   +------------------+ <- TSS.RSP0 / IST top (16-byte aligned)
//!   | SS               |                       ss              0xa8
//!   | RSP              |                       rsp             0xa0
//!   | RFLAGS           |                       rflags          0x98
//!   | CS               |                       cs              0x90
//!   | RIP              |                       rip             0x88
//!   | error code / 0   |  (CPU or stub)        error_code      0x80
//!   | vector           |  (stub)               vector          0x78
//!   | RAX RBX RCX RDX  |  (common_entry)       rax .. rdx      0x70 .. 0x58
//!   | RSI RDI RBP      |                       rsi rdi rbp     0x50 .. 0x40
//!   | R8 .. R15        |                       r8 .. r15       0x38 .. 0x00
//!   +------------------+ <- RDI passed to guest_trap (frame base)
//! ```
//!
//! # Measurement floors
//! Vector [`abi::layout::FASTPATH_VECTOR`] (DPL 1) and `RING0_FLOOR_VECTOR` (DPL 0) have stubs that are a
//! single IRETQ: the cheapest possible round trip through the IDT, for the benchmark's baselines. They touch
//! no memory but the CPU-pushed frame and never change CR3, so a guest learns nothing from them.
//!
//! # Entry from ring 0
//! Only a hypervisor bug (or NMI/#MC) gets here, apart from interrupts in the idle loop (handled on the
//! hypervisor stack and returned from). `common_entry` saves the registers, loads the hypervisor CR3 (the
//! fault may have hit the exit path after the switch to the guest's CR3), moves to a private fatal stack
//! and calls [`hv_fatal`], which reports and stops the machine. Such an entry through an IST vector leaves
//! the hypervisor's registers on a guest-visible IST stack unscrubbed; that is harmless only because no
//! guest runs after it.
//!
//! # Exit
//! [`exit_to_guest`] is given a sanitized frame already written to the top of the entry stack, the guest's
//! CR3 and its FXSAVE area. It restores the FPU state, moves RSP to the frame, loads the guest CR3 (from here
//! on only the entry region is mapped), pops the registers and executes IRETQ.

use core::arch::global_asm;
use core::mem::{offset_of, size_of};

use static_assertions::const_assert_eq;

use super::tables::{ENTRY_TABLES, EntryTables, EntryWords};
use crate::hvm::exits::GuestGprs;
pub use crate::regs::EntryFrame;

/// Size of [`EntryFrame`]; the stubs and the exit path depend on it.
pub const FRAME_SIZE: usize = 22 * 8;
const_assert_eq!(size_of::<EntryFrame>(), FRAME_SIZE);
const_assert_eq!(offset_of!(EntryFrame, rax), 0x70);
const_assert_eq!(offset_of!(EntryFrame, vector), 0x78);
const_assert_eq!(offset_of!(EntryFrame, rip), 0x88);
const_assert_eq!(offset_of!(EntryFrame, cs), 0x90);
const_assert_eq!(offset_of!(EntryFrame, ss), 0xa8);
// The CPU aligns the stack to 16 bytes before pushing SS; the frame base is then 16-byte aligned too.
const_assert_eq!(FRAME_SIZE % 16, 0);

/// Each vector's stub is padded to this many bytes, so stub `n` is at `entry_stubs + n * STUB_SIZE`.
pub const STUB_SIZE: usize = 16;

/// Offset of the CS slot relative to RSP when `common_entry` starts (vector and error code are below it).
const CS_FROM_STUB_RSP: usize = offset_of!(EntryFrame, cs) - offset_of!(EntryFrame, vector);

/// How far below a stack's top RSP is when `common_entry` starts after an entry with a stack switch: the
/// CPU's five words, the error code and the vector.
pub const STUB_ENTRY_DEPTH: u64 = (FRAME_SIZE - offset_of!(EntryFrame, vector)) as u64;
const_assert_eq!(STUB_ENTRY_DEPTH, 56);

/// How far below the entry stack's top RSP is right after the CPU delivered an entry from a guest (its
/// five words), where `hypercall_entry` starts.
pub const CPU_ENTRY_DEPTH: u64 = (FRAME_SIZE - offset_of!(EntryFrame, rip)) as u64;
const_assert_eq!(CPU_ENTRY_DEPTH, 40);

global_asm!(
    r#"
    /* The 15 general-purpose registers in EntryFrame order (R15 ends up at the lowest address). */
    .macro push_gprs
    push %rax; push %rbx; push %rcx; push %rdx; push %rsi; push %rdi; push %rbp
    push %r8; push %r9; push %r10; push %r11; push %r12; push %r13; push %r14; push %r15
    .endm
    /* On an IST stack (readable by every domain): save the registers, switch to the hypervisor's address
       space, copy the whole frame to the top of the private stack whose top is in the entry word at offset
       `top` (RSP then points at the copy) and zero the IST copy. */
    .macro ist_frame_to_private top
    push_gprs
    mov {tables}+{w_cr3}(%rip), %rax
    mov %rax, %cr3
    mov %rsp, %rsi
    mov {tables}+\top(%rip), %rsp
    sub ${frame_size}, %rsp
    mov %rsp, %rdi
    mov ${frame_words}, %ecx
    rep movsq
    lea -{frame_size}(%rsi), %rdi
    xor %eax, %eax
    mov ${frame_words}, %ecx
    rep stosq
    .endm
    /* hypercall_entry: the callee-saved registers (still the guest's) into the frame at RDI. */
    .macro hc_callee_saved
    mov %rbx, {f_rbx}(%rdi)
    mov %rbp, {f_rbp}(%rdi)
    mov %r12, {f_r12}(%rdi)
    mov %r13, {f_r13}(%rdi)
    mov %r14, {f_r14}(%rdi)
    mov %r15, {f_r15}(%rdi)
    .endm
    .macro pop_gprs
    pop %r15; pop %r14; pop %r13; pop %r12; pop %r11; pop %r10; pop %r9; pop %r8
    pop %rbp; pop %rdi; pop %rsi; pop %rdx; pop %rcx; pop %rbx; pop %rax
    .endm

    .section .entry.text, "ax"
    .balign 16
    .global entry_stubs
entry_stubs:
    .set vec, 0
    .rept 256
    .balign {stub_size}
    .if (vec == {fast1}) || (vec == {fast0})
    /* Measurement floors: return at once, before any address-space switch (no state is touched). */
    iretq
    .else
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp common_entry
    .endif
    .set vec, vec + 1
    .endr
    .balign {stub_size}
    .global entry_stubs_end
entry_stubs_end:

common_entry:
    cld
    testb $3, {cs_off}(%rsp)
    jz 2f
    cmp {tables}+{w_rsp0}(%rip), %rsp
    jne 5f
    push_gprs
    mov {tables}+{w_cr3}(%rip), %rax
    mov %rax, %cr3
    mov %rsp, %rdi
    mov {tables}+{w_stack}(%rip), %rsp
    mov {tables}+{w_fpu}(%rip), %rax
    fxsave64 (%rax)
    ldmxcsr {tables}+{w_mxcsr}(%rip)
    movabs ${guest_trap}, %rax
    call *%rax
    ud2

    /* The hypercall vector's gate points here (no stub): common_entry's checks and saves, then the
       light hypercalls of a vCPU that keeps the CPU (see trap::fast_hypercall_return for the class it
       serves). Its vector and error-code slots are made with the register slots, by one `sub`; the
       vector is written only on the ways to the general code, and the error code never: every exit
       leaves both slots zero (see the module docs), and a fast return leaves them as they are. The caller-saved registers are stored in the frame before any is used (RAX, the
       number, stays in RAX); RBX, RBP and R12-R15 are preserved by the light handler (an ordinary
       extern "C" function), so they still hold the guest's values at the fast return, which reloads only
       the other nine, and on the ways to the general code, which store them into the frame first. */
    .global hypercall_entry
hypercall_entry:
    cld
    testb $3, {cpu_cs}(%rsp)
    jz .Lhc_other
    cmp {tables}+{w_cpu_entry}(%rip), %rsp
    jne .Lhc_other
    /* The frame's slots below the CPU's five words: vector and error code, and the registers, of which
       the nine caller-saved ones are stored here; the six callee-saved ones only on the ways to the
       general code (.Lhc_trap, .Lhc_return), which need the whole frame. A fast return leaves those six
       slots as the last exit wrote them (this domain's own registers). */
    sub ${f_rip}, %rsp
    mov %rax, {f_rax}(%rsp)
    mov %rcx, {f_rcx}(%rsp)
    mov %rdx, {f_rdx}(%rsp)
    mov %rsi, {f_rsi}(%rsp)
    mov %rdi, {f_rdi}(%rsp)
    mov %r8, {f_r8}(%rsp)
    mov %r9, {f_r9}(%rsp)
    mov %r10, {f_r10}(%rsp)
    mov %r11, {f_r11}(%rsp)
    mov {tables}+{w_cr3}(%rip), %rcx
    mov %rcx, %cr3
    mov %rsp, %rdi
    mov {tables}+{w_stack}(%rip), %rsp
    mov {tables}+{w_fpu}(%rip), %rcx
    fxsave64 (%rcx)
    ldmxcsr {tables}+{w_mxcsr}(%rip)
    /* Nothing pending (so `Armed` holds: see pending.rs), and a number with a light handler; else the
       general path. The handler gets the frame (RDI) and the recorded domain (RSI). */
    movabs ${pending_state}, %rcx
    cmpl $0, {st_word}(%rcx)
    jne .Lhc_trap
    cmp ${slots}, %rax
    jae .Lhc_trap
    movabs ${light_entry}, %rdx
    mov (%rdx,%rax,8), %rax
    test %rax, %rax
    jz .Lhc_trap
    mov {st_dom}(%rcx), %rsi
    call *%rax
    /* RAX: the status (light::ANSWERED: answered, nothing left for the return), RDX: the result. From
       here on RSP is the frame's vector slot (RSP0: the checks above found the frame there). */
    mov {tables}+{w_rsp0}(%rip), %rsp
    cmp ${answered}, %rax
    jne .Lhc_status
    mov %rdx, {v_rax}(%rsp)
    /* An event upcall pending: the general return delivers it (a guest may make any hypercall just to
       have its events delivered, as Linux's xen_force_evtchn_callback does with xen_version). */
    movabs ${pending_state}, %rcx
    mov {st_upcall}(%rcx), %rax
    cmpb $0, (%rax)
    jne .Lhc_return
    /* Sanitize the frame as regs::sanitize_in_place does (RIP refused in [FIRST_NONCANONICAL,
       RESERVED_VA_END): the general return crashes the domain; CS and SS by the RPL; RFLAGS reduced to
       the guest-controlled bits plus IF). The light handler cannot have changed the frame (it gets it
       shared); this checks what the CPU pushed. */
    mov {v_rip}(%rsp), %rax
    movabs ${neg_first_nc}, %rdx
    add %rdx, %rax
    movabs ${refused_len}, %rdx
    cmp %rdx, %rax
    jb .Lhc_return
    mov {v_cs}(%rsp), %eax
    and $3, %eax
    mov {return_cs}(,%rax,8), %rdx
    mov %rdx, {v_cs}(%rsp)
    mov {return_ss}(,%rax,8), %rdx
    mov %rdx, {v_ss}(%rsp)
    mov {v_rflags}(%rsp), %rax
    and ${guest_controlled}, %eax
    or ${if_fixed1}, %eax
    mov %rax, {v_rflags}(%rsp)
    /* The fast return: the FPU state saved above, the recorded CR3 value, the caller-saved registers
       from the frame, and IRETQ through the sanitized frame. */
    mov {st_cr3}(%rcx), %rax
    mov {tables}+{w_fpu}(%rip), %rdx
    fxrstor64 (%rdx)
    mov %rax, %cr3
    mov {v_rax}(%rsp), %rax
    mov {v_rcx}(%rsp), %rcx
    mov {v_rdx}(%rsp), %rdx
    mov {v_rsi}(%rsp), %rsi
    mov {v_rdi}(%rsp), %rdi
    mov {v_r8}(%rsp), %r8
    mov {v_r9}(%rsp), %r9
    mov {v_r10}(%rsp), %r10
    mov {v_r11}(%rsp), %r11
    add $16, %rsp
    iretq
.Lhc_status:
    /* Declined (nothing changed): the general path. Otherwise answered with work left for the return. */
    test %rax, %rax
    jz .Lhc_declined
    mov %rdx, {v_rax}(%rsp)
.Lhc_return:
    /* Answered (result in the frame's RAX, the frame not yet changed otherwise): the general return. */
    lea -{v_base}(%rsp), %rdi
    hc_callee_saved
    movq ${hypercall_vec}, (%rsp)
    mov {tables}+{w_stack}(%rip), %rsp
    movabs ${fast_return}, %rax
    call *%rax
    ud2
.Lhc_declined:
    lea -{v_base}(%rsp), %rdi
    mov {tables}+{w_stack}(%rip), %rsp
.Lhc_trap:
    /* The general path on the same frame (RDI), like any other entry (known to be a hypercall). */
    hc_callee_saved
    movq ${hypercall_vec}, {f_vector}(%rdi)
    movabs ${guest_hypercall}, %rax
    call *%rax
    ud2
.Lhc_other:
    /* Not from a guest on its entry stack: what the stub would have pushed, then as any other vector. */
    pushq $0
    pushq ${hypercall_vec}
    jmp common_entry

5:  /* A guest CS but not the entry stack: an IST stack, or no stack switch at all. */
    cmp {tables}+{w_ist}(%rip), %rsp
    je 6f
    cmp {tables}+{w_ist}+8(%rip), %rsp
    je 6f
    cmp {tables}+{w_ist}+16(%rip), %rsp
    je 6f
    cmp {tables}+{w_ist}+24(%rip), %rsp
    je 6f
    /* Untrusted: the guest ran at CPL 0 and the CPU pushed the frame on the guest's stack. Take the
       vector and RIP (just written there by the CPU and the stub, so mapped), then leave that stack. */
    mov (%rsp), %rdi
    mov {rip_off}(%rsp), %rsi
    mov {tables}+{w_cr3}(%rip), %rax
    mov %rax, %cr3
    mov {tables}+{w_stack}(%rip), %rsp
    ldmxcsr {tables}+{w_mxcsr}(%rip)
    movabs ${untrusted_entry}, %rax
    call *%rax
    ud2

6:  /* An IST stack, readable by every domain: copy the frame to the private stack, zero the IST copy. */
    ist_frame_to_private {w_stack}
    mov %rsp, %rdi
    mov {tables}+{w_fpu}(%rip), %rax
    fxsave64 (%rax)
    ldmxcsr {tables}+{w_mxcsr}(%rip)
    movabs ${guest_trap}, %rax
    call *%rax
    ud2

2:  /* From ring 0. An interrupt (vector >= 32) can only arrive in the idle loop, the one place the
       hypervisor runs with IF set: handle it on the current (hypervisor) stack and return. The FPU state is
       saved around the handler so it cannot disturb the interrupted code. */
    cmpq $1, (%rsp)
    je 7f
    cmpq $32, (%rsp)
    jb 3f
    push_gprs
    movabs ${idle_fx}, %rax
    fxsave64 (%rax)
    mov %rsp, %rdi
    movabs ${idle_irq}, %rax
    call *%rax
    movabs ${idle_fx}, %rax
    fxrstor64 (%rax)
    pop_gprs
    add $16, %rsp
    iretq

7:  /* #DB in ring 0 (IST). The hypervisor never sets TF or debug registers, so this is a guest's trap
       that the CPU held back across `mov %ss`/`pop %ss` and delivered on the first instruction of an entry
       stub or of syscall_entry (XSA-260 / CVE-2018-8897), still in the guest's address space. Drop it and
       resume the stub: but the frame on the guest-visible IST stack holds the guest's RFLAGS and (after
       SYSCALL) its RSP, so return through a copy on the fatal stack (private, and idle unless the machine
       is dying; the hypervisor stack may be live if the hypervisor itself was interrupted), in the
       hypervisor's address space, after zeroing the IST copy. The stub runs on unchanged in either
       address space. */
    ist_frame_to_private {w_fatal}
    pop_gprs
    add $16, %rsp
    iretq

3:  /* from ring 0: a hypervisor fault */
    push_gprs
    mov {tables}+{w_cr3}(%rip), %rax
    mov %rax, %cr3
    mov %rsp, %rdi
    mov {tables}+{w_fatal}(%rip), %rsp
    movabs ${hv_fatal}, %rax
    call *%rax
    ud2

    /* SYSCALL from ring 3 (LSTAR): the CPU loaded CS/SS from STAR, put the return RIP in RCX and RFLAGS in
       R11, masked IF/TF/DF/AC/NT (FMASK), and left RSP as user RSP. Build the same frame an interrupt from
       ring 3 would have pushed on the entry stack, then join common_entry. The stack slot is reached
       RIP-relative through the entry region's alias: `__entry_start + (slot - ENTRY_REGION_VA)`. */
    .global syscall_entry
syscall_entry:
    mov %rsp, __entry_start + {rsp_slot}(%rip)
    lea __entry_start + {rsp_slot}(%rip), %rsp
    movq ${user_ss}, 8(%rsp)
    push %r11
    pushq ${user_cs}
    push %rcx
    pushq $0
    pushq ${syscall_vec}
    jmp common_entry

    /* exit_to_guest(frame: rdi, guest_cr3: rsi, fxsave_area: rdx) -> ! */
    .global exit_to_guest_stub
exit_to_guest_stub:
    fxrstor64 (%rdx)
    mov %rdi, %rsp
    mov %rsi, %cr3
    pop_gprs
    add $16, %rsp
    iretq

    /* svm_run_stub(vmcb_pa: rdi, gprs: rsi, fxsave_area: rdx, host_save_pa: rcx): one world switch into an
       hvm guest and back (see `svm_run` below for the frame drawing). Ordinary hypervisor text: the hypervisor's
       address space stays loaded, the guest runs under its nested tables. */
    .section .text.svm, "ax"
    .global svm_run_stub
svm_run_stub:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdx
    push %rcx
    push %rsi
    push %rdi
    fxrstor64 (%rdx)
    clgi
    mov %rcx, %rax
    vmsave
    mov {s_vmcb}(%rsp), %rax
    vmload
    mov {g_dr}(%rsi), %rax
    mov %rax, %dr0
    mov {g_dr}+8(%rsi), %rax
    mov %rax, %dr1
    mov {g_dr}+16(%rsi), %rax
    mov %rax, %dr2
    mov {g_dr}+24(%rsi), %rax
    mov %rax, %dr3
    /* RAX stays the VMCB's address for VMRUN. */
    mov {s_vmcb}(%rsp), %rax
    mov {g_rbx}(%rsi), %rbx
    mov {g_rcx}(%rsi), %rcx
    mov {g_rdx}(%rsi), %rdx
    mov {g_rdi}(%rsi), %rdi
    mov {g_rbp}(%rsi), %rbp
    mov {g_r8}(%rsi), %r8
    mov {g_r9}(%rsi), %r9
    mov {g_r10}(%rsi), %r10
    mov {g_r11}(%rsi), %r11
    mov {g_r12}(%rsi), %r12
    mov {g_r13}(%rsi), %r13
    mov {g_r14}(%rsi), %r14
    mov {g_r15}(%rsi), %r15
    mov {g_rsi}(%rsi), %rsi
    /* GIF is clear: IF=1 lets a physical interrupt end the guest's run (INTR intercept, V_INTR_MASKING)
       without being taken here. */
    sti
    vmrun
    /* #VMEXIT: GIF clear; RAX, RSP, RIP and RFLAGS are the host's again, every other GPR the guest's. */
    push %rsi
    mov 8+{s_gprs}(%rsp), %rsi
    mov %rbx, {g_rbx}(%rsi)
    mov %rcx, {g_rcx}(%rsi)
    mov %rdx, {g_rdx}(%rsi)
    mov %rdi, {g_rdi}(%rsi)
    mov %rbp, {g_rbp}(%rsi)
    mov %r8, {g_r8}(%rsi)
    mov %r9, {g_r9}(%rsi)
    mov %r10, {g_r10}(%rsi)
    mov %r11, {g_r11}(%rsi)
    mov %r12, {g_r12}(%rsi)
    mov %r13, {g_r13}(%rsi)
    mov %r14, {g_r14}(%rsi)
    mov %r15, {g_r15}(%rsi)
    pop %rax
    mov %rax, {g_rsi}(%rsi)
    mov %dr0, %rax
    mov %rax, {g_dr}(%rsi)
    mov %dr1, %rax
    mov %rax, {g_dr}+8(%rsi)
    mov %dr2, %rax
    mov %rax, {g_dr}+16(%rsi)
    mov %dr3, %rax
    mov %rax, {g_dr}+24(%rsi)
    mov {s_vmcb}(%rsp), %rax
    vmsave
    mov {s_host}(%rsp), %rax
    vmload
    mov {s_fx}(%rsp), %rdx
    fxsave64 (%rdx)
    fninit
    ldmxcsr {tables}+{w_mxcsr}(%rip)
    /* Let the physical interrupt that ended the run (if any) in: it is taken right here through the ring-0
       interrupt path (`common_entry`, like the idle loop's), which records it for the scheduler. */
    stgi
    cli
    add $32, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    xor %eax, %eax
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %edi, %edi
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    ret

    /* The boot-time CPU fidelity probe (see fidelity.rs); ordinary hypervisor text, not the entry region.
       fidelity_probe_enter(rip: rdi, rsp: rsi, ctx: rdx): save the callee-saved registers and RSP in *ctx,
       then IRETQ to ring 1 (guest kernel CS/SS, IF clear). fidelity_probe_resume(ctx: rdi, value: rsi):
       restore them and SS, and return `value` from fidelity_probe_enter. */
    .section .text.fidelity, "ax"
    .global fidelity_probe_enter
fidelity_probe_enter:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, (%rdx)
    pushq ${kernel_ss}
    push %rsi
    pushq $2
    pushq ${kernel_cs}
    push %rdi
    /* Nothing of the hypervisor's registers goes along (a faithful CPU's #GP pushes them on the entry
       stack, which the first exit to a guest overwrites anyway). */
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %edi, %edi
    xor %ebp, %ebp
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    iretq

    .global fidelity_probe_resume
fidelity_probe_resume:
    mov ${hv_ds}, %eax
    mov %eax, %ss
    mov (%rdi), %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    mov %rsi, %rax
    ret

    /* The ring-1 side: load a null SS (legal at CPL 1 in 64-bit mode), then read CR0. A faithful CPU
       raises #GP there (CPL 1); if the read succeeds the CPU ran it at CPL 0, and `int 0x82` (no stack
       switch at CPL 0) reaches the untrusted-entry path. */
    .global fidelity_probe_ring1
fidelity_probe_ring1:
    mov $1, %ecx
    mov %ecx, %ss
    mov %cr0, %rax
    int ${hypercall_vec}
    ud2
    "#,
    stub_size = const STUB_SIZE,
    kernel_ss = const abi::layout::GUEST_KERNEL_SS,
    kernel_cs = const abi::layout::GUEST_KERNEL_CS,
    hv_ds = const super::tables::HV_DS,
    hypercall_vec = const abi::layout::HYPERCALL_VECTOR,
    w_rsp0 = const offset_of!(EntryTables, words) + offset_of!(EntryWords, rsp0_entry),
    w_ist = const offset_of!(EntryTables, words) + offset_of!(EntryWords, ist_entry),
    rip_off = const offset_of!(EntryFrame, rip) - offset_of!(EntryFrame, vector),
    frame_size = const FRAME_SIZE,
    frame_words = const FRAME_SIZE / 8,
    untrusted_entry = sym untrusted_entry,
    fast1 = const abi::layout::FASTPATH_VECTOR,
    rsp_slot = const super::layout::entry_stack_top() - 16 - abi::layout::ENTRY_REGION_VA,
    user_ss = const abi::layout::GUEST_USER_SS,
    user_cs = const abi::layout::GUEST_USER_CS,
    syscall_vec = const abi::traps::SYSCALL_PSEUDO_VECTOR,
    fast0 = const super::tables::RING0_FLOOR_VECTOR,
    cs_off = const CS_FROM_STUB_RSP,
    tables = sym ENTRY_TABLES,
    w_cr3 = const offset_of!(EntryTables, words) + offset_of!(EntryWords, hv_cr3),
    w_stack = const offset_of!(EntryTables, words) + offset_of!(EntryWords, hv_stack_top),
    w_fatal = const offset_of!(EntryTables, words) + offset_of!(EntryWords, fatal_stack_top),
    w_fpu = const offset_of!(EntryTables, words) + offset_of!(EntryWords, fxsave_area),
    w_mxcsr = const offset_of!(EntryTables, words) + offset_of!(EntryWords, mxcsr),
    guest_trap = sym crate::trap::guest_trap,
    guest_hypercall = sym crate::trap::guest_hypercall,
    fast_return = sym fast_hypercall_return,
    f_vector = const offset_of!(EntryFrame, vector),
    f_rip = const offset_of!(EntryFrame, rip),
    cpu_cs = const offset_of!(EntryFrame, cs) - offset_of!(EntryFrame, rip),
    w_cpu_entry = const offset_of!(EntryTables, words) + offset_of!(EntryWords, cpu_entry),
    f_rax = const offset_of!(EntryFrame, rax),
    f_rcx = const offset_of!(EntryFrame, rcx),
    f_rdx = const offset_of!(EntryFrame, rdx),
    f_rsi = const offset_of!(EntryFrame, rsi),
    f_rdi = const offset_of!(EntryFrame, rdi),
    f_r8 = const offset_of!(EntryFrame, r8),
    f_r9 = const offset_of!(EntryFrame, r9),
    f_r10 = const offset_of!(EntryFrame, r10),
    f_r11 = const offset_of!(EntryFrame, r11),
    f_rbx = const offset_of!(EntryFrame, rbx),
    f_rbp = const offset_of!(EntryFrame, rbp),
    f_r12 = const offset_of!(EntryFrame, r12),
    f_r13 = const offset_of!(EntryFrame, r13),
    f_r14 = const offset_of!(EntryFrame, r14),
    f_r15 = const offset_of!(EntryFrame, r15),
    slots = const crate::hypercall::light::SLOTS,
    light_entry = sym crate::hypercall::light::ENTRY,
    answered = const crate::hypercall::light::ANSWERED,
    pending_state = sym crate::pending::STATE,
    st_word = const crate::pending::STATE_WORD,
    st_dom = const crate::pending::STATE_ARMED + offset_of!(crate::pending::Armed, dom),
    st_cr3 = const crate::pending::STATE_ARMED + offset_of!(crate::pending::Armed, cr3),
    st_upcall = const crate::pending::STATE_ARMED + offset_of!(crate::pending::Armed, upcall_pending),
    neg_first_nc = const crate::regs::FIRST_NONCANONICAL.wrapping_neg() as i64,
    refused_len = const (abi::layout::RESERVED_VA_END - crate::regs::FIRST_NONCANONICAL) as i64,
    return_cs = sym crate::regs::RETURN_CS,
    return_ss = sym crate::regs::RETURN_SS,
    guest_controlled = const crate::regs::rflags::GUEST_CONTROLLED,
    if_fixed1 = const crate::regs::rflags::IF | crate::regs::rflags::FIXED1,
    v_rip = const offset_of!(EntryFrame, rip) - offset_of!(EntryFrame, vector),
    v_cs = const offset_of!(EntryFrame, cs) - offset_of!(EntryFrame, vector),
    v_ss = const offset_of!(EntryFrame, ss) - offset_of!(EntryFrame, vector),
    v_rflags = const offset_of!(EntryFrame, rflags) - offset_of!(EntryFrame, vector),
    v_base = const offset_of!(EntryFrame, vector),
    v_rax = const offset_of!(EntryFrame, rax) as isize - offset_of!(EntryFrame, vector) as isize,
    v_rcx = const offset_of!(EntryFrame, rcx) as isize - offset_of!(EntryFrame, vector) as isize,
    v_rdx = const offset_of!(EntryFrame, rdx) as isize - offset_of!(EntryFrame, vector) as isize,
    v_rsi = const offset_of!(EntryFrame, rsi) as isize - offset_of!(EntryFrame, vector) as isize,
    v_rdi = const offset_of!(EntryFrame, rdi) as isize - offset_of!(EntryFrame, vector) as isize,
    v_r8 = const offset_of!(EntryFrame, r8) as isize - offset_of!(EntryFrame, vector) as isize,
    v_r9 = const offset_of!(EntryFrame, r9) as isize - offset_of!(EntryFrame, vector) as isize,
    v_r10 = const offset_of!(EntryFrame, r10) as isize - offset_of!(EntryFrame, vector) as isize,
    v_r11 = const offset_of!(EntryFrame, r11) as isize - offset_of!(EntryFrame, vector) as isize,
    s_vmcb = const SvmFrame::VMCB,
    s_gprs = const SvmFrame::GPRS,
    s_host = const SvmFrame::HOST,
    s_fx = const SvmFrame::FX,
    g_rbx = const offset_of!(GuestGprs, rbx),
    g_rcx = const offset_of!(GuestGprs, rcx),
    g_rdx = const offset_of!(GuestGprs, rdx),
    g_rsi = const offset_of!(GuestGprs, rsi),
    g_rdi = const offset_of!(GuestGprs, rdi),
    g_rbp = const offset_of!(GuestGprs, rbp),
    g_r8 = const offset_of!(GuestGprs, r8),
    g_r9 = const offset_of!(GuestGprs, r9),
    g_r10 = const offset_of!(GuestGprs, r10),
    g_r11 = const offset_of!(GuestGprs, r11),
    g_r12 = const offset_of!(GuestGprs, r12),
    g_r13 = const offset_of!(GuestGprs, r13),
    g_r14 = const offset_of!(GuestGprs, r14),
    g_r15 = const offset_of!(GuestGprs, r15),
    g_dr = const offset_of!(GuestGprs, dr),
    idle_irq = sym idle_irq,
    idle_fx = sym IDLE_FX,
    hv_fatal = sym hv_fatal,
    options(att_syntax)
);

unsafe extern "C" {
    /// First byte of the stub array (its image address; the IDT uses the alias).
    pub static entry_stubs: u8;
    /// End of the stub array; boot checks that every stub fit in [`STUB_SIZE`] bytes.
    pub static entry_stubs_end: u8;
    /// The exit stub (image address; call it through its alias, `EntryWords::exit_stub`).
    pub static exit_to_guest_stub: u8;
    /// The SYSCALL entry (image address; LSTAR holds its alias).
    pub static syscall_entry: u8;
    /// The hypercall vector's entry (image address; its IDT gate holds the alias).
    pub static hypercall_entry: u8;
    /// Enter the fidelity probe's ring-1 code at `rip` with stack `rsp`; returns what
    /// `fidelity_probe_resume` is given.
    pub fn fidelity_probe_enter(rip: u64, rsp: u64, ctx: *mut u64) -> u64;
    /// Return from `fidelity_probe_enter` with `value` (abandons the current stack).
    pub fn fidelity_probe_resume(ctx: *const u64, value: u64) -> !;
    /// The probe's ring-1 code.
    pub static fidelity_probe_ring1: u8;
    /// One VMRUN round trip ([`svm_run`]).
    fn svm_run_stub(vmcb_pa: u64, gprs: *mut GuestGprs, fxsave: *mut u8, host_save_pa: u64);
}

// The guest registers the VMRUN stub loads and stores (RAX and RSP live in the VMCB).
const_assert_eq!(size_of::<GuestGprs>(), 18 * 8);
const_assert_eq!(offset_of!(GuestGprs, dr), 0x70);
const_assert_eq!(offset_of!(GuestGprs, rbx), 0x00);
const_assert_eq!(offset_of!(GuestGprs, rsi), 0x18);
const_assert_eq!(offset_of!(GuestGprs, r15), 0x68);

/// The words `svm_run_stub` keeps on the hypervisor stack across VMRUN (offsets from RSP after its pushes):
///
/// ```text
///   +0x48 RBX .. +0x20 R15   the caller's callee-saved registers (restored before RET)
///   +0x18 fxsave area        the guest's FXSAVE image (FXRSTOR before, FXSAVE after)
///   +0x10 host save pa       the VMSAVE/VMLOAD area for the host's FS/GS/TR/LDTR/STAR/LSTAR/...
///   +0x08 gprs               the guest's GuestGprs (loaded before VMRUN, stored after)
///   +0x00 vmcb pa            RAX for VMLOAD/VMRUN/VMSAVE of the guest
/// ```
struct SvmFrame;
impl SvmFrame {
    const VMCB: usize = 0;
    const GPRS: usize = 8;
    const HOST: usize = 16;
    const FX: usize = 24;
}
const_assert_eq!(SvmFrame::FX + 8 + 6 * 8, 0x50);

/// Run an hvm guest until its next #VMEXIT: restore its FPU state, save the host's VMLOAD/VMSAVE state,
/// load the guest's, VMRUN, then the reverse; every GPR but RAX/RSP (in the VMCB) goes through `gprs`. A
/// physical interrupt that ended the run is taken (and recorded by `irq`) before this returns. The
/// hypervisor's address space stays loaded throughout: the guest reaches memory only through the nested
/// tables of its VMCB.
///
/// # Safety
/// `vmcb_pa` must be the machine address of a hypervisor-owned VMCB whose nested tables map only the
/// domain's frames, with VMRUN and every intercept the isolation relies on set; `host_save_pa` a
/// hypervisor page for VMSAVE; `fxsave` a 16-byte aligned 512-byte FXSAVE image; EFER.SVME set and
/// VM_HSAVE_PA programmed; no lock that an interrupt handler takes may be held.
pub unsafe fn svm_run(vmcb_pa: u64, gprs: &mut GuestGprs, fxsave: *mut u8, host_save_pa: u64) {
    // SAFETY: the caller guarantees the VMCB, save area and FXSAVE image; the stub preserves the callee-saved
    // registers, returns on the same stack with IF and GIF as on entry (IF clear, GIF set) and declares no
    // other effect visible to Rust but `gprs` and the FXSAVE image.
    unsafe { svm_run_stub(vmcb_pa, gprs, fxsave, host_save_pa) }
}

/// Called by `hypercall_entry` (hypervisor stack and address space, guest FPU state saved) after a light
/// handler answered but the return has work first (an event upcall, gate or segment work, a refused RIP):
/// the general return, on the frame with the result in its RAX
/// ([`crate::trap::fast_hypercall_return`]).
extern "C" fn fast_hypercall_return(frame: *mut EntryFrame) -> ! {
    // SAFETY: the frame `hypercall_entry` built on the entry stack (mapped at the same alias address
    // in the hypervisor's address space); no Rust code runs on the entry stack and nothing else writes it
    // until the next exit, so this is the only reference to it.
    let frame = unsafe { &mut *frame };
    crate::trap::fast_hypercall_return(frame)
}

/// Called by `common_entry` (private stack, hypervisor address space, guest FPU state not saved) for an
/// entry with a guest CS but no stack switch: the guest ran at CPL 0. Only the vector and RIP are known.
extern "C" fn untrusted_entry(vector: u64, rip: u64) -> ! {
    if super::fidelity::probing() {
        super::fidelity::probe_ran_at_cpl0();
    }
    crate::trap::untrusted_entry(vector, rip)
}

/// FXSAVE area for interrupts taken in the idle loop.
#[repr(C, align(16))]
struct IdleFx([u8; 512]);
static mut IDLE_FX: IdleFx = IdleFx([0; 512]);

/// Called by `common_entry` for an interrupt that arrived in the idle loop (ring 0, hypervisor stack).
extern "C" fn idle_irq(frame: *const EntryFrame) {
    // SAFETY: the stub passes the frame it just built on the hypervisor stack.
    let vector = unsafe { (*frame).vector };
    crate::irq::interrupt(vector);
}

/// Called by `common_entry` for an entry from ring 0: a hypervisor fault. Runs on the fatal stack.
extern "C" fn hv_fatal(frame: *const EntryFrame) -> ! {
    // SAFETY: as in `guest_trap`; the frame is on whichever stack the CPU used and is mapped here.
    let frame = unsafe { frame.read() };
    crate::panic::hypervisor_fault(&frame)
}

/// Copy a whole frame with one `rep movsq` (22 iterations), inline: a plain assignment becomes a call to
/// `memcpy`, which costs a few instructions more around the same copy.
#[inline(always)]
pub fn copy_frame(dst: &mut EntryFrame, src: &EntryFrame) {
    // SAFETY: `src` and `dst` are distinct, valid frames of FRAME_SIZE bytes; DF is clear (the Rust ABI
    // guarantees it, and `common_entry` starts with `cld`); the asm touches only those bytes and the three
    // registers it declares.
    unsafe {
        core::arch::asm!(
            "rep movsq",
            inout("rcx") FRAME_SIZE / 8 => _,
            inout("rdi") core::ptr::from_mut(dst) => _,
            inout("rsi") core::ptr::from_ref(src) => _,
            options(nostack, preserves_flags)
        );
    }
}

/// True if `frame` is the entry-stack slot that [`exit_to_guest`] pops (where every entry but an IST
/// vector's leaves it).
pub fn is_exit_slot(frame: &EntryFrame) -> bool {
    core::ptr::from_ref(frame) as u64 == super::layout::entry_stack_top() - FRAME_SIZE as u64
}

/// Write `frame` to the top of the entry stack, where [`exit_to_guest`] pops it. The caller must have
/// sanitized it ([`crate::regs::sanitize_in_place`]).
pub fn stage_frame(frame: &EntryFrame) {
    let slot = super::layout::entry_stack_top() - FRAME_SIZE as u64;
    // SAFETY: `slot` is the top of the current CPU's entry stack, mapped writable in this address space;
    // no Rust code runs on that stack, so nothing else refers to it now.
    copy_frame(unsafe { &mut *(slot as *mut EntryFrame) }, frame);
}

/// Return to a guest: restore FPU state, switch to `guest_cr3` and IRETQ through the frame in the slot
/// ([`stage_frame`], or the live frame of an entry handled in place). The caller must have sanitized it and
/// made sure no lock is held (this function does not return). `fxsave` also becomes the area the next
/// entry saves the guest's FPU state into.
///
/// # Safety
/// `guest_cr3` must be the root of a validated guest address space that maps the entry region and entry
/// stack like every other; `fxsave` must point to a 16-byte aligned, valid FXSAVE image that stays put
/// while the vCPU runs.
#[inline(always)]
pub unsafe fn exit_to_guest(guest_cr3: u64, fxsave: *mut u8) -> ! {
    let slot = super::layout::entry_stack_top() - FRAME_SIZE as u64;
    super::set_fxsave_area(fxsave);
    // SAFETY: the stub is the exit sequence above, reached through its alias (`EntryWords::exit_stub`,
    // set at boot) so it stays mapped after the CR3 switch; the caller guarantees the arguments and
    // staged the frame at `slot`.
    unsafe {
        core::arch::asm!(
            "jmp *{tables}+{w_exit}(%rip)",
            tables = sym ENTRY_TABLES,
            w_exit = const offset_of!(EntryTables, words) + offset_of!(EntryWords, exit_stub),
            in("rdi") slot,
            in("rsi") guest_cr3,
            in("rdx") fxsave,
            options(noreturn, att_syntax)
        )
    }
}
