//! Hypercall numbers and the register convention used to make a hypercall.
//!
//! # Register convention
//!
//! A guest kernel (ring 1) makes a hypercall by loading registers and executing `int 0x82`
//! ([`HYPERCALL_VECTOR`](crate::layout::HYPERCALL_VECTOR)):
//!
//! | register | meaning |
//! |---|---|
//! | `RAX` | hypercall number (one of [`nr`]) |
//! | `RDI` | argument 1 |
//! | `RSI` | argument 2 |
//! | `RDX` | argument 3 |
//! | `R10` | argument 4 (**not** `RCX`, unlike the System V calling convention) |
//! | `R8`  | argument 5 (**not** `R9`) |
//! | `RAX` on return | result: `>= 0` on success, a negative [`Errno`](crate::errno::Errno) value on failure |
//!
//! This is Xen's 64-bit order exactly ([`ARG_REGISTERS`]); at most [`MAX_ARGS`] arguments are passed. `R10`
//! replaces `RCX` because Xen's 64-bit entry is `SYSCALL`, which overwrites `RCX` (and `R11`); we keep the same
//! order so that a reader who knows Xen's hypercall wrappers recognises ours. Argument registers may be clobbered
//! by the hypervisor; callers must treat them as lost (as Xen allows). Every other register except `RAX` is
//! preserved.
//!
//! Unused arguments should be zero. A number the hypervisor does not implement returns `-ENOSYS`.
//!
//! # Deviation from Xen: the hypercall instruction
//!
//! A 64-bit Xen PV guest runs its kernel in ring 3 and calls `hypercall_page + 32 * nr`, whose stubs execute
//! `SYSCALL`. Our guest kernel runs in **ring 1**, and `SYSCALL` cannot serve it: the instruction loads CS
//! from `STAR` with RPL 0 and performs **no stack switch**, so ring-1 code would enter ring 0 still on its own
//! (guest-controlled) stack, and it does not record the caller's privilege. `SYSCALL` from ring 3 remains the
//! guest *user* system-call path. Instead the hypervisor installs an interrupt gate at vector `0x82` with DPL 1,
//! which is exactly the precedent of Xen's 32-bit PV ABI (`int $0x82`, where the 32-bit guest kernel also runs
//! in ring 1). The gate switches to the ring-0 stack from the TSS, and the saved CS tells the hypervisor the
//! caller's ring; the gate is unreachable from ring 3 (a user `int 0x82` raises `#GP`). There is no hypercall
//! page.

/// The most arguments a hypercall takes (Xen x86_64: 5).
pub const MAX_ARGS: usize = 5;

/// The registers that carry arguments 1 to 5, in order (for documentation and logging).
pub const ARG_REGISTERS: [&str; MAX_ARGS] = ["rdi", "rsi", "rdx", "r10", "r8"];

/// Every hypercall number, including Xen's architecture-specific range 48..=55, is below this. A dispatch
/// table indexed by number needs this many slots (Xen's own table has the same size).
pub const NR_HYPERCALLS: u64 = 64;

/// Hypercall numbers: Xen's `__HYPERVISOR_*` values, with the names upper-cased.
///
/// Numbers that Xen has retired keep their slot and value here, so that a trace of hypercalls reads the same
/// under Xen and under this hypervisor; which of them are implemented is the hypervisor's business.
pub mod nr {
    /// Install the virtual IDT: an array of `TrapInfo` terminated by an entry with address 0.
    pub const SET_TRAP_TABLE: u64 = 0;
    /// Batch of checked page-table (and M2P) writes: `mmu_update(reqs, count, done_out, foreigndom)`.
    pub const MMU_UPDATE: u64 = 1;
    /// Install a new GDT from guest frames: `set_gdt(frames, entries)`.
    pub const SET_GDT: u64 = 2;
    /// Set the kernel stack used when the guest is entered from user mode: `stack_switch(ss, sp)`.
    pub const STACK_SWITCH: u64 = 3;
    /// Register the event and failsafe callbacks (superseded by `CALLBACK_OP`).
    pub const SET_CALLBACKS: u64 = 4;
    /// Set (non-zero) or clear (zero) the virtual CR0.TS: `fpu_taskswitch(set)`.
    pub const FPU_TASKSWITCH: u64 = 5;
    /// The pre-3.0.2 form of `SCHED_OP` (`cmd`, `arg` by value).
    pub const SCHED_OP_COMPAT: u64 = 6;
    /// Platform operations for the control domain (formerly `dom0_op`).
    pub const PLATFORM_OP: u64 = 7;
    /// Write a virtual debug register: `set_debugreg(regno, value)`.
    pub const SET_DEBUGREG: u64 = 8;
    /// Read a virtual debug register: `get_debugreg(regno)`.
    pub const GET_DEBUGREG: u64 = 9;
    /// Checked write of one GDT/LDT descriptor: `update_descriptor(maddr, desc)`.
    pub const UPDATE_DESCRIPTOR: u64 = 10;
    /// Memory reservation and information: `memory_op(XENMEM_*, arg)`.
    pub const MEMORY_OP: u64 = 12;
    /// Run a batch of hypercalls: `multicall(entries, count)`.
    pub const MULTICALL: u64 = 13;
    /// Checked write of the L1 entry that maps `va`: `update_va_mapping(va, pte, UVMF_*)`.
    pub const UPDATE_VA_MAPPING: u64 = 14;
    /// Arm the one-shot timer at an absolute system time in ns (0 cancels): `set_timer_op(deadline)`.
    pub const SET_TIMER_OP: u64 = 15;
    /// The pre-3.0.2 form of `EVENT_CHANNEL_OP` (one `evtchn_op` structure).
    pub const EVENT_CHANNEL_OP_COMPAT: u64 = 16;
    /// Version and feature queries: `xen_version(XENVER_*, arg)`.
    pub const XEN_VERSION: u64 = 17;
    /// Hypervisor console: `console_io(CONSOLEIO_*, count, buffer)`.
    pub const CONSOLE_IO: u64 = 18;
    /// The pre-3.0.2 form of `PHYSDEV_OP`.
    pub const PHYSDEV_OP_COMPAT: u64 = 19;
    /// Grant tables: `grant_table_op(GNTTABOP_*, args, count)`.
    pub const GRANT_TABLE_OP: u64 = 20;
    /// Enable or disable a virtual-machine assist: `vm_assist(VMASST_CMD_*, VMASST_TYPE_*)`.
    pub const VM_ASSIST: u64 = 21;
    /// `UPDATE_VA_MAPPING` with a foreign domain for the mapped frame.
    pub const UPDATE_VA_MAPPING_OTHERDOMAIN: u64 = 22;
    /// Return from a guest exception or event frame; arguments are on the guest kernel stack.
    pub const IRET: u64 = 23;
    /// Per-vCPU operations: `vcpu_op(VCPUOP_*, vcpu, arg)`.
    pub const VCPU_OP: u64 = 24;
    /// Set the FS or GS base: `set_segment_base(SEGBASE_*, base)`.
    pub const SET_SEGMENT_BASE: u64 = 25;
    /// Extended MMU operations (pin, new base pointer, flushes): `mmuext_op(ops, count, done_out, foreigndom)`.
    pub const MMUEXT_OP: u64 = 26;
    /// Xen Security Modules (formerly `acm_op`).
    pub const XSM_OP: u64 = 27;
    /// NMI callback registration.
    pub const NMI_OP: u64 = 28;
    /// Scheduler operations: `sched_op(SCHEDOP_*, arg)`.
    pub const SCHED_OP: u64 = 29;
    /// Register or unregister callbacks: `callback_op(CALLBACKOP_*, arg)`.
    pub const CALLBACK_OP: u64 = 30;
    /// Profiling (removed in recent Xen).
    pub const XENOPROF_OP: u64 = 31;
    /// Event channels: `event_channel_op(EVTCHNOP_*, arg)`.
    pub const EVENT_CHANNEL_OP: u64 = 32;
    /// Physical device operations (IRQs, I/O privilege).
    pub const PHYSDEV_OP: u64 = 33;
    /// HVM guest operations.
    pub const HVM_OP: u64 = 34;
    /// System control (toolstack).
    pub const SYSCTL: u64 = 35;
    /// Domain control (toolstack).
    pub const DOMCTL: u64 = 36;
    /// kexec.
    pub const KEXEC_OP: u64 = 37;
    /// Transcendent memory (removed from Xen).
    pub const TMEM_OP: u64 = 38;
    /// Argo inter-domain messaging.
    pub const ARGO_OP: u64 = 39;
    /// Performance-monitoring unit.
    pub const XENPMU_OP: u64 = 40;
    /// Device-model operations.
    pub const DM_OP: u64 = 41;
    /// Hypervisor file system.
    pub const HYPFS_OP: u64 = 42;
    /// IOMMU operations.
    pub const IOMMU_OP: u64 = 43;
    /// First number of Xen's architecture-specific range (`__HYPERVISOR_arch_0`).
    pub const ARCH_0: u64 = 48;
    /// Xen's `__HYPERVISOR_arch_6`, unused by Xen on x86.
    pub const ARCH_6: u64 = 54;
    /// Last number of Xen's architecture-specific range (`__HYPERVISOR_arch_7`), unused by Xen on x86.
    pub const ARCH_7: u64 = 55;
    /// **Our extension.** `counters(cmd, buf)`: read the calling domain's entry counters (how many
    /// hypercalls it made, exceptions, system calls and upcalls the hypervisor bounced to it) into a
    /// [`crate::counters::DomainCounters`] at `buf`. See [`crate::counters`]. It occupies Xen's unused
    /// `__HYPERVISOR_arch_6`; under Xen it returns `-ENOSYS`.
    pub const COUNTERS: u64 = ARCH_6;
    /// **Our extension.** Does nothing and returns 0; it exists to measure the bare cost of a hypercall
    /// round trip (gate entry, dispatch, return). Takes no arguments and ignores any it is given. It occupies
    /// Xen's unused `__HYPERVISOR_arch_7`, so no Xen hypercall is shadowed; under Xen it returns `-ENOSYS`.
    pub const NULL: u64 = ARCH_7;
}

/// Xen's name for hypercall `nr` (lower case, without the `__HYPERVISOR_` prefix), for logs and traces.
/// `None` for a number with no hypercall.
pub fn name(nr: u64) -> Option<&'static str> {
    Some(match nr {
        nr::SET_TRAP_TABLE => "set_trap_table",
        nr::MMU_UPDATE => "mmu_update",
        nr::SET_GDT => "set_gdt",
        nr::STACK_SWITCH => "stack_switch",
        nr::SET_CALLBACKS => "set_callbacks",
        nr::FPU_TASKSWITCH => "fpu_taskswitch",
        nr::SCHED_OP_COMPAT => "sched_op_compat",
        nr::PLATFORM_OP => "platform_op",
        nr::SET_DEBUGREG => "set_debugreg",
        nr::GET_DEBUGREG => "get_debugreg",
        nr::UPDATE_DESCRIPTOR => "update_descriptor",
        nr::MEMORY_OP => "memory_op",
        nr::MULTICALL => "multicall",
        nr::UPDATE_VA_MAPPING => "update_va_mapping",
        nr::SET_TIMER_OP => "set_timer_op",
        nr::EVENT_CHANNEL_OP_COMPAT => "event_channel_op_compat",
        nr::XEN_VERSION => "xen_version",
        nr::CONSOLE_IO => "console_io",
        nr::PHYSDEV_OP_COMPAT => "physdev_op_compat",
        nr::GRANT_TABLE_OP => "grant_table_op",
        nr::VM_ASSIST => "vm_assist",
        nr::UPDATE_VA_MAPPING_OTHERDOMAIN => "update_va_mapping_otherdomain",
        nr::IRET => "iret",
        nr::VCPU_OP => "vcpu_op",
        nr::SET_SEGMENT_BASE => "set_segment_base",
        nr::MMUEXT_OP => "mmuext_op",
        nr::XSM_OP => "xsm_op",
        nr::NMI_OP => "nmi_op",
        nr::SCHED_OP => "sched_op",
        nr::CALLBACK_OP => "callback_op",
        nr::XENOPROF_OP => "xenoprof_op",
        nr::EVENT_CHANNEL_OP => "event_channel_op",
        nr::PHYSDEV_OP => "physdev_op",
        nr::HVM_OP => "hvm_op",
        nr::SYSCTL => "sysctl",
        nr::DOMCTL => "domctl",
        nr::KEXEC_OP => "kexec_op",
        nr::TMEM_OP => "tmem_op",
        nr::ARGO_OP => "argo_op",
        nr::XENPMU_OP => "xenpmu_op",
        nr::DM_OP => "dm_op",
        nr::HYPFS_OP => "hypfs_op",
        nr::IOMMU_OP => "iommu_op",
        nr::COUNTERS => "counters",
        nr::NULL => "null",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_xens() {
        let expected: [(u64, u64); 45] = [
            (nr::SET_TRAP_TABLE, 0),
            (nr::MMU_UPDATE, 1),
            (nr::SET_GDT, 2),
            (nr::STACK_SWITCH, 3),
            (nr::SET_CALLBACKS, 4),
            (nr::FPU_TASKSWITCH, 5),
            (nr::SCHED_OP_COMPAT, 6),
            (nr::PLATFORM_OP, 7),
            (nr::SET_DEBUGREG, 8),
            (nr::GET_DEBUGREG, 9),
            (nr::UPDATE_DESCRIPTOR, 10),
            (nr::MEMORY_OP, 12),
            (nr::MULTICALL, 13),
            (nr::UPDATE_VA_MAPPING, 14),
            (nr::SET_TIMER_OP, 15),
            (nr::EVENT_CHANNEL_OP_COMPAT, 16),
            (nr::XEN_VERSION, 17),
            (nr::CONSOLE_IO, 18),
            (nr::PHYSDEV_OP_COMPAT, 19),
            (nr::GRANT_TABLE_OP, 20),
            (nr::VM_ASSIST, 21),
            (nr::UPDATE_VA_MAPPING_OTHERDOMAIN, 22),
            (nr::IRET, 23),
            (nr::VCPU_OP, 24),
            (nr::SET_SEGMENT_BASE, 25),
            (nr::MMUEXT_OP, 26),
            (nr::XSM_OP, 27),
            (nr::NMI_OP, 28),
            (nr::SCHED_OP, 29),
            (nr::CALLBACK_OP, 30),
            (nr::XENOPROF_OP, 31),
            (nr::EVENT_CHANNEL_OP, 32),
            (nr::PHYSDEV_OP, 33),
            (nr::HVM_OP, 34),
            (nr::SYSCTL, 35),
            (nr::DOMCTL, 36),
            (nr::KEXEC_OP, 37),
            (nr::TMEM_OP, 38),
            (nr::ARGO_OP, 39),
            (nr::XENPMU_OP, 40),
            (nr::DM_OP, 41),
            (nr::HYPFS_OP, 42),
            (nr::IOMMU_OP, 43),
            (nr::COUNTERS, 54),
            (nr::NULL, 55),
        ];
        for (got, want) in expected {
            assert_eq!(got, want);
            assert!(got < NR_HYPERCALLS);
            assert!(name(got).is_some(), "hypercall {want} has no name");
        }
        assert_eq!(nr::ARCH_0, 48);
    }

    #[test]
    fn register_convention() {
        assert_eq!(MAX_ARGS, 5);
        assert_eq!(ARG_REGISTERS, ["rdi", "rsi", "rdx", "r10", "r8"]);
        assert_eq!(crate::layout::HYPERCALL_VECTOR, 0x82);
    }

    #[test]
    fn names() {
        assert_eq!(name(0), Some("set_trap_table"));
        assert_eq!(name(nr::CONSOLE_IO), Some("console_io"));
        assert_eq!(name(nr::SCHED_OP), Some("sched_op"));
        assert_eq!(name(nr::NULL), Some("null"));
        assert_eq!(name(11), None);
        assert_eq!(name(48), None);
        assert_eq!(name(NR_HYPERCALLS), None);
        assert_eq!(name(u64::MAX), None);
        // Every numbered slot below the table size has at most one name, and names are distinct.
        let mut seen: [Option<&str>; NR_HYPERCALLS as usize] = [None; NR_HYPERCALLS as usize];
        for n in 0..NR_HYPERCALLS {
            seen[n as usize] = name(n);
        }
        for (i, a) in seen.iter().enumerate() {
            for b in &seen[i + 1..] {
                if let (Some(a), Some(b)) = (a, b) {
                    assert_ne!(a, b);
                }
            }
        }
    }
}
