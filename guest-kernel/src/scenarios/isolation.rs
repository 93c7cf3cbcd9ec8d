//! Isolation scenarios: each one tries something the hypervisor must stop by crashing this domain.
//! Reaching the end of one of these tests is a FAILURE.

use crate::arch;
use crate::boot::facts;
use crate::cmdline::{option, parse_u64};
use crate::println;
use crate::xtf::{Outcome, Results};

/// The hypervisor's load address (phys = virt in the hypervisor's identity map): its multiboot header.
const HV_IMAGE: u64 = 0x20_0000;

fn target(cmdline: &str) -> u64 {
    option(cmdline, "addr")
        .and_then(parse_u64)
        .unwrap_or(HV_IMAGE)
}

fn survived(r: &mut Results, what: &str) {
    println!("{what} did not fault: isolation is broken");
    r.report(Outcome::Failure);
}

/// Read the hypervisor's image through its own virtual address (which is also its physical address).
pub fn hv_read(cmdline: &str, r: &mut Results) {
    let a = target(cmdline);
    println!("reading hypervisor memory at {a:#x}; the hypervisor must crash this domain");
    // SAFETY: expected to fault; the hypervisor stops this domain.
    let v = unsafe { arch::read_byte(a) };
    println!("read {v:#x}");
    survived(r, "the read");
}

/// Write to the hypervisor's image.
pub fn hv_write(cmdline: &str, r: &mut Results) {
    let a = target(cmdline);
    println!("writing hypervisor memory at {a:#x}; the hypervisor must crash this domain");
    // SAFETY: expected to fault; the hypervisor stops this domain.
    unsafe { arch::write_byte(a, 0xcc) };
    survived(r, "the write");
}

/// The entry region is mapped read-only in every address space: reading works, writing must not.
pub fn entry_write(_: &str, r: &mut Results) {
    let a = abi::layout::ENTRY_REGION_VA;
    // SAFETY: the entry region is mapped read-only in this address space (that is the design).
    let first = unsafe { arch::read_byte(a) };
    println!(
        "entry region at {a:#x} is readable (first byte {first:#04x}), as designed; now writing it"
    );
    // SAFETY: expected to fault (read-only mapping, CR0.WP set).
    unsafe { arch::write_byte(a, first ^ 0xff) };
    survived(r, "the write to the entry region");
}

/// The domain's page tables are mapped read-only to it; writing its own L4 must fault.
pub fn pt_write(_: &str, r: &mut Results) {
    let l4 = facts().start_info.pt_base;
    // SAFETY: the L4 is mapped (read-only) at pt_base by the domain builder.
    let e = unsafe { (l4 as *const u64).read_volatile() };
    println!(
        "own L4 at {l4:#x} is readable (entry 0 = {e:#x}); writing an entry that would map machine frame 0x200"
    );
    // SAFETY: expected to fault: page tables are never writable by their guest.
    unsafe { (l4 as *mut u64).write_volatile(0x20_0000 | 0x3) };
    survived(r, "the page-table write");
}

/// A privileged instruction in ring 1 raises #GP; the hypervisor crashes this domain and only this one.
pub fn privileged(_: &str, r: &mut Results) {
    println!(
        "executing HLT in ring {}; the hypervisor must crash this domain",
        arch::read_cs() & 3
    );
    arch::privileged_hlt();
    survived(r, "HLT");
}
