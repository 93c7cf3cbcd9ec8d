//! Instructions a guest kernel under hardware-assisted virtualization must not be able to use, for the
//! native-boot `svm-probe` command (`platform::native::svm_probe`): the SVM instructions, each a function
//! with a label on the instruction and one after it (a #UD handler checks RIP and resumes after it), a
//! read of a physical address through the native direct map, AVX state and protection keys turned on behind CPUID's back, and a
//! deliberate triple fault.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.guest_svm_probes, "ax"
    .irp name, vmrun, vmmcall, vmload, vmsave, stgi, clgi, skinit, invlpga
    .global guest_svm_probe_\name
guest_svm_probe_\name:
    xor %eax, %eax
    xor %ecx, %ecx
    .global guest_svm_probe_\name\()_insn
guest_svm_probe_\name\()_insn:
    .byte 0x0f, 0x01
    .ifc \name, vmrun
    .byte 0xd8
    .endif
    .ifc \name, vmmcall
    .byte 0xd9
    .endif
    .ifc \name, vmload
    .byte 0xda
    .endif
    .ifc \name, vmsave
    .byte 0xdb
    .endif
    .ifc \name, stgi
    .byte 0xdc
    .endif
    .ifc \name, clgi
    .byte 0xdd
    .endif
    .ifc \name, skinit
    .byte 0xde
    .endif
    .ifc \name, invlpga
    .byte 0xdf
    .endif
    .global guest_svm_probe_\name\()_next
guest_svm_probe_\name\()_next:
    ret
    .endr

    // u64 guest_read_u64(va): one load.
    .global guest_read_u64
guest_read_u64:
    mov (%rdi), %rax
    ret

    // u64 guest_enable_avx(): CR4.OSXSAVE on, XCR0 = x87|SSE|AVX, all ones in YMM0; returns XCR0 as read
    // back (what a kernel that ignores CPUID could do).
    .global guest_enable_avx
guest_enable_avx:
    mov %cr4, %rax
    or $(1 << 18), %rax
    mov %rax, %cr4
    xor %ecx, %ecx
    mov $7, %eax
    xor %edx, %edx
    xsetbv
    vpcmpeqd %ymm0, %ymm0, %ymm0
    xor %ecx, %ecx
    xgetbv
    ret

    // u64 guest_enable_pke(): CR4.PKE on, PKRU = 0x55555554; returns PKRU as read back.
    .global guest_enable_pke
guest_enable_pke:
    mov %cr4, %rax
    or $(1 << 22), %rax
    mov %rax, %cr4
    xor %ecx, %ecx
    xor %edx, %edx
    mov $0x55555554, %eax
    wrpkru
    xor %ecx, %ecx
    rdpkru
    ret

    // guest_triple_fault(): an empty IDT, then int3: #BP cannot be delivered (#GP), nor can the #GP (#DF),
    // nor the #DF: the CPU shuts down.
    .global guest_triple_fault
guest_triple_fault:
    sub $16, %rsp
    movw $0, (%rsp)
    movq $0, 2(%rsp)
    lidt (%rsp)
    int3
    ud2
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    /// VMRUN (RAX = 0).
    pub fn guest_svm_probe_vmrun();
    /// Its instruction.
    pub static guest_svm_probe_vmrun_insn: u8;
    /// After it.
    pub static guest_svm_probe_vmrun_next: u8;
    /// VMMCALL.
    pub fn guest_svm_probe_vmmcall();
    /// Its instruction.
    pub static guest_svm_probe_vmmcall_insn: u8;
    /// After it.
    pub static guest_svm_probe_vmmcall_next: u8;
    /// VMLOAD.
    pub fn guest_svm_probe_vmload();
    /// Its instruction.
    pub static guest_svm_probe_vmload_insn: u8;
    /// After it.
    pub static guest_svm_probe_vmload_next: u8;
    /// VMSAVE.
    pub fn guest_svm_probe_vmsave();
    /// Its instruction.
    pub static guest_svm_probe_vmsave_insn: u8;
    /// After it.
    pub static guest_svm_probe_vmsave_next: u8;
    /// STGI.
    pub fn guest_svm_probe_stgi();
    /// Its instruction.
    pub static guest_svm_probe_stgi_insn: u8;
    /// After it.
    pub static guest_svm_probe_stgi_next: u8;
    /// CLGI.
    pub fn guest_svm_probe_clgi();
    /// Its instruction.
    pub static guest_svm_probe_clgi_insn: u8;
    /// After it.
    pub static guest_svm_probe_clgi_next: u8;
    /// SKINIT.
    pub fn guest_svm_probe_skinit();
    /// Its instruction.
    pub static guest_svm_probe_skinit_insn: u8;
    /// After it.
    pub static guest_svm_probe_skinit_next: u8;
    /// INVLPGA.
    pub fn guest_svm_probe_invlpga();
    /// Its instruction.
    pub static guest_svm_probe_invlpga_insn: u8;
    /// After it.
    pub static guest_svm_probe_invlpga_next: u8;
    /// One 8-byte load from `va`.
    pub fn guest_read_u64(va: u64) -> u64;
    /// Turn CR4.OSXSAVE on, enable AVX state in XCR0 and fill YMM0; returns XCR0.
    pub fn guest_enable_avx() -> u64;
    /// Turn CR4.PKE on and write PKRU; returns PKRU.
    pub fn guest_enable_pke() -> u64;
    /// Load an empty IDT and raise #BP: a triple fault.
    pub fn guest_triple_fault() -> !;
}
