//! The hypercall ABI: numbers, structures and error codes shared by hypervisor and guest.
//!
//! This crate is the single source of truth for the interface between the hypervisor (ring 0) and its
//! paravirtualised guests (kernel in ring 1, user code in ring 3). It follows Xen's x86_64 PV ABI: hypercall
//! numbers, sub-command numbers, error numbers, structure layouts and field names are Xen's, so that a reader
//! who knows Xen recognises every call, and the few places where the ring-1 design forces a difference are
//! listed below. It contains no code with side effects: only constants, `#[repr(C)]` structures (zerocopy
//! `FromBytes`/`IntoBytes`, with every size and field offset pinned at compile time) and small pure helpers.
//!
//! | module | contents |
//! |---|---|
//! | [`hypercall`] | hypercall numbers ([`hypercall::nr`]), the register convention, [`hypercall::name`] |
//! | [`errno`] | [`errno::Errno`]: Xen's error numbers, returned negated |
//! | [`xen`] | `start_info`, `shared_info`, `vcpu_info`, `trap_info`, `mmu_update`, `cpu_user_regs`…; domain ids |
//! | [`sched`] | `SCHEDOP_*`, `SHUTDOWN_*`, [`sched::ShutdownReason`] |
//! | [`console`] | `CONSOLEIO_*`, [`console::CONSOLE_IO_MAX`] |
//! | [`version`] | `XENVER_*`, `XENFEAT_*`, our version |
//! | [`event_channel`] | `EVTCHNOP_*`, `VIRQ_*`, 2-level port layout, `evtchn_*` structures |
//! | [`vcpu`] | `VCPUOP_*` and their structures |
//! | [`mm`] | `MMU_*`, `MMUEXT_*`, `UVMF_*`, `XENMEM_*`, `VMASST_*` |
//! | [`callback`] | `CALLBACKOP_*`, `CALLBACKTYPE_*` |
//! | [`grant_table`] | `GNTTABOP_*`, `grant_entry_v1` |
//! | [`sysctl`] | `sysctl` envelope, `XEN_SYSCTL_*`, `XEN_DOMINF_*`, the domain list and its per-domain record |
//! | [`layout`] | our selectors, reserved virtual range, entry region, hypercall vector |
//! | [`types`] | machine/pseudo-physical/virtual address and frame newtypes |
//! | [`exit`] | exit statuses reported to QEMU |
//! | [`counters`] | the per-domain entry counters (our `counters` hypercall) |
//!
//! Naming: Xen's names, upper-cased for Rust constants (Xen's `SCHEDOP_yield` is [`sched::SCHEDOP_YIELD`])
//! and camel-cased for structures (`start_info` is [`xen::StartInfo`]). Types: a constant that travels in a
//! register (hypercall and sub-command numbers, flags arguments) is `u64`; a constant stored in a structure
//! field has that field's type (e.g. `SHUTDOWN_*` is `u32` like `sched_shutdown.reason`, `MMUEXT_*` is `u32`
//! like `mmuext_op.cmd`).
//!
//! # Register convention
//!
//! The guest kernel executes `int 0x82` with the hypercall number in `RAX` and up to five arguments in `RDI`,
//! `RSI`, `RDX`, `R10`, `R8` (Xen's 64-bit order: `R10` not `RCX`, `R8` not `R9`). The result comes back in
//! `RAX`: non-negative on success, `-errno` ([`errno::Errno::as_ret`]) on failure. Argument registers may be
//! clobbered. See [`hypercall`] for details.
//!
//! # Deviations from Xen
//!
//! a. **Hypercall instruction.** `int 0x82` through an IDT gate with DPL 1 (the precedent of Xen's 32-bit PV
//!    ABI) instead of `SYSCALL` from a hypercall page: the guest kernel runs in ring 1, and `SYSCALL` from
//!    ring 1 would enter ring 0 without a stack switch. There is no hypercall page
//!    ([`layout::HYPERCALL_VECTOR`], [`hypercall`]).
//! b. **Guest kernel in ring 1.** Xen's 64-bit PV kernels run in ring 3 with Xen-provided flat selectors
//!    (`FLAT_KERNEL_CS64 = 0xe033` etc.). Our guest kernel runs in ring 1 and uses the selectors in
//!    [`layout`] ([`layout::GUEST_KERNEL_CS`], [`layout::GUEST_KERNEL_SS`], [`layout::GUEST_USER_CS`],
//!    [`layout::GUEST_USER_SS`]). Trap-table and iret `cs` values are therefore ours.
//! c. **`NULL` hypercall.** [`hypercall::nr::NULL`] = 55 (Xen's unused `__HYPERVISOR_arch_7`) does nothing
//!    and returns 0, to measure the cost of a hypercall.
//! d. **Exit code.** `SCHEDOP_shutdown` takes a guest exit code in `RDX` ([`sched`]); Xen ignores the
//!    register, so Xen guests are unaffected.
//! e. **Bounded console write.** `CONSOLEIO_write` of more than [`console::CONSOLE_IO_MAX`] bytes fails with
//!    `-EINVAL`, where Xen would process it in chunks with preemption ([`console`]).
//! f. **Shared-info mapping at boot.** The domain builder maps the shared-info page into the guest's
//!    start-of-day region, in the page directly after the start-info page, so the guest can use it from its
//!    first instruction. Xen leaves mapping it to the guest (by machine address, with `update_va_mapping`).
//!    As in Xen, [`xen::StartInfo::shared_info`] still holds the page's *machine* address.
//! g. **Entry region.** The hypervisor maps a read-only entry region (entry code, GDT, IDT, TSS) at
//!    [`layout::ENTRY_REGION_VA`] in every address space, inside the reserved L4 slots 256..=271 that Xen
//!    also keeps for itself and refuses to guests.
//! h. **Domain id in the start-info page.** A `u32` at [`xen::START_INFO_DOMID_OFFSET`] (just past Xen's
//!    1168-byte `start_info`) holds the domain's id, since there is no xenstore to ask.
//! i. **`sysctl`: the domain list only, all or nothing, stopped domains already destroyed.** Of Xen's
//!    `sysctl` commands only `XEN_SYSCTL_getdomaininfolist` exists (the rest are `-ENOSYS`); a `-EFAULT`
//!    writes nothing (Xen may have written some records); a domain that stopped has already given its memory
//!    back (and is reaped soon after, deviation n), so until then it is listed as shut down *and* dying,
//!    with no pages and no shared-info frame; fields with
//!    nothing behind them (XSM label, handle, CPU pool, paging counts) are 0 ([`sysctl`]).
//! j. **No foreign memory.** `mmu_update`/`mmuext_op` with a `foreigndom` other than `DOMID_SELF` or the
//!    caller's own id return `-EPERM` even for the privileged domain (Xen lets a privileged domain map
//!    others' frames): the toolstack here asks the hypervisor to build domains (deviation n) instead of
//!    building them through foreign mappings, and every frame a guest can name stays its own ([`mm`]). Grant tables and `XENMAPSPACE_gmfn_foreign` are likewise not implemented.
//! k. **Segment bases.** The hypervisor does not swap GS bases between guest kernel and guest user mode
//!    (a ring-1 kernel cannot execute `SWAPGS`, and the hypervisor does not do it for it on a bounce): the
//!    GS base set with `SEGBASE_GS_USER` is the one in force in both rings, `SEGBASE_GS_KERNEL` sets the
//!    inactive `KERNEL_GS_BASE` MSR, and `SEGBASE_GS_USER_SEL` is refused with `-ENOSYS` — ring 1 loads a
//!    selector itself ([`xen::SEGBASE_GS_USER_SEL`]).
//! l. **`xen_version`.** `XENVER_compile_info`, `XENVER_changeset`, `XENVER_build_id` and the
//!    variable-length `*2` forms return `-ENOSYS` ([`version`]).
//! m. **`counters` hypercall.** [`hypercall::nr::COUNTERS`] = 54 (Xen's unused `__HYPERVISOR_arch_6`)
//!    copies the caller's own entry counters ([`counters::DomainCounters`]: hypercalls made, exceptions,
//!    system calls and event upcalls bounced to it) to a guest buffer, so a benchmark can say where the
//!    hypervisor's share of a workload went. Read-only, own domain only; Xen has no equivalent.
//! n. **`domctl`: the hypervisor builds the domains it creates.** `XEN_DOMCTL_createdomain` names an
//!    available kernel image (a boot module kept by the hypervisor), a memory size and a command line, and
//!    the hypervisor builds and starts the domain; destroy finishes at once; one vCPU; ids below
//!    [`domctl::MAX_DOMAINS`]; stopped domains are reaped; of `XEN_DOMCTL_shadow_op` only the log-dirty operations exist, for PV
//!    domains, one domain at a time (deviation p); console input
//!    is switched with our command `XEN_DOMCTL_CONSOLE_INPUT` ([`domctl`]). The save-image format is
//!    ours ([`save`]).
//! o. **Save and restore without foreign memory.** Xen's toolstack saves a domain by mapping its frames;
//!    here the hypervisor does it (`domctl` commands 0x8001..=0x8006, [`domctl::XEN_DOMCTL_SAVE`]) into
//!    an image store of its own, and a guest is asked to suspend by [`domctl::VIRQ_SUSPEND`] (Xen uses
//!    xenstore). The guest's side is Xen's: `SHUTDOWN_suspend` with the start-info MFN in RDX; the call
//!    returns 1 if the domain continues in place ([`domctl::XEN_DOMCTL_RESUMEDOMAIN`]) and 0 in a restored
//!    domain, whose page tables, start info and P2M (the `mfn_list` array of `nr_pages` entries) the
//!    hypervisor has rewritten for the new frames; VIRQ and IPI ports are kept, interdomain ones closed.
//! p. **Log-dirty by write protection of the guest's own tables.** Xen tracks a PV domain's writes with
//!    shadow page tables; here, while log-dirty is on ([`domctl::SHADOW_OP_ENABLE_LOGDIRTY`]), the
//!    hypervisor clears RW in the writable entries of the domain's validated L1 tables themselves after each
//!    `CLEAN` and puts it back on the first write fault (which the guest never sees). The guest's logical
//!    entry is remembered in the hypervisor (no PTE bit is taken) and is what `mmu_update` and the reference
//!    counts see. What the guest can observe: reading an entry of a validated L1 table (its tables are mapped
//!    read-only) may show RW clear for an entry it made writable; writing such a value back through
//!    `mmu_update` makes the entry read-only for real, as it asked (a later write then faults to the guest).
//!    A table that stops being one (unpinned, unlinked) gets its RW bits back at once, so data the guest
//!    reads from a former table is what it wrote. `mmu_update` returns what it would without log-dirty.
#![no_std]
#![forbid(unsafe_code)]

/// Pins a structure's size and the offsets of the listed fields at compile time:
/// `layout!(Type, size; field @ offset, ...)`.
macro_rules! layout {
    ($ty:ty, $size:expr $(; $($field:ident @ $offset:expr),* $(,)?)?) => {
        ::static_assertions::const_assert_eq!(::core::mem::size_of::<$ty>(), $size);
        $($(::static_assertions::const_assert_eq!(::core::mem::offset_of!($ty, $field), $offset);)*)?
    };
}

pub mod bench;
pub mod callback;
pub mod console;
pub mod counters;
pub mod domctl;
pub mod errno;
pub mod event_channel;
pub mod exit;
pub mod grant_table;
pub mod hypercall;
pub mod layout;
pub mod mm;
pub mod save;
pub mod sched;
pub mod sysctl;
pub mod traps;
pub mod types;
pub mod vcpu;
pub mod version;
pub mod xen;
