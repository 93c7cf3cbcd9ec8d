//! The default demonstration: who am I, what is the hypervisor, and a few rounds of yielding so that
//! several domains visibly take turns.

use abi::hypercall::nr;
use abi::version::{XENVER_EXTRAVERSION, XENVER_VERSION, split_version};

use crate::boot::{facts, platform};
use crate::platform::xen_pv::raw;
use crate::println;

/// Run the demo; returns the exit code.
pub fn run() -> u32 {
    let f = facts();
    let v = raw(nr::XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0]);
    let mut extra = [0u8; 16];
    let r = raw(
        nr::XEN_VERSION,
        [XENVER_EXTRAVERSION, extra.as_mut_ptr() as u64, 0, 0, 0],
    );
    let extra_len = extra.iter().position(|&b| b == 0).unwrap_or(extra.len());
    let extra = if r == 0 {
        core::str::from_utf8(&extra[..extra_len]).unwrap_or("?")
    } else {
        "?"
    };
    let (major, minor) = split_version(v as u32);
    println!(
        "hypervisor version {major}.{minor}{extra}; start_info at {:p}",
        f.start_info
    );
    println!(
        "hello from the PV guest kernel of domain {}: privileged instructions are hypercalls here",
        f.domid
    );
    for round in 1..=3 {
        println!("domain {}: round {round}, yielding the CPU", f.domid);
        if let Err(e) = platform().yield_cpu() {
            println!("yield failed: {e:?}");
            return 1;
        }
    }
    println!("domain {}: demo finished, powering off", f.domid);
    0
}
