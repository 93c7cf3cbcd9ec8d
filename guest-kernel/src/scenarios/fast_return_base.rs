//! Part of `evtchn-prompt` (see `fast_return`): light hypercalls right after an address-space switch
//! return into the address space just switched to, not with the CR3 the hypervisor's fast path recorded
//! before the switch.

use abi::hypercall::nr;

use crate::mm::{AddressSpace, MmEnv, Prot};
use crate::platform::Mmu;
use crate::platform::xen_pv::raw;
use crate::println;
use crate::xtf::Results;

use super::memory::check;

/// Rounds of the check.
const ROUNDS: u64 = 20;

/// Where the second address space maps its page (unmapped in the kernel's).
const USER_VA: u64 = 0x40_0000;
/// What the page holds.
const MARKER: u64 = 0x5eed_fa57_0000_0001;

/// Light hypercalls right after `NEW_BASEPTR` (to a second address space and back) return into the
/// address space just switched to: reading a page that only the second one maps gives its marker. A fast
/// path that returned with the CR3 recorded before the switch would come back in the kernel's address
/// space, where the read faults.
#[inline(never)]
pub(super) fn light_after_base_switch(r: &mut Results) {
    let Some(env) = crate::mm::kernel::env() else {
        check(r, "the memory manager came up at boot", false);
        return;
    };
    let mut space = match AddressSpace::new(&env) {
        Ok(s) => s,
        Err(e) => {
            check(r, &alloc::format!("a second address space: {e}"), false);
            return;
        }
    };
    let mapped = space
        .map_zeroed(&env, USER_VA, Prot::WRITE)
        .and_then(|_| space.flush(&env));
    let (_, kernel) = env.kernel_base();
    let mut same = mapped.is_ok();
    if same {
        for round in 0..ROUNDS {
            // Two light calls: the second finds the state the first one's return recorded.
            raw(nr::NULL, [0; 5]);
            raw(nr::NULL, [0; 5]);
            if space.switch_to(&env).is_err() {
                same = false;
                break;
            }
            raw(nr::NULL, [0; 5]);
            raw(nr::XEN_VERSION, [abi::version::XENVER_VERSION, 0, 0, 0, 0]);
            // SAFETY: the second address space (current since the switch) maps a writable zeroed page
            // at USER_VA that nothing else uses.
            let seen = unsafe {
                if round == 0 {
                    core::ptr::write_volatile(USER_VA as *mut u64, MARKER);
                }
                core::ptr::read_volatile(USER_VA as *const u64)
            };
            let back = env.switch_address_space(kernel);
            raw(nr::NULL, [0; 5]);
            if seen != MARKER || back.is_err() {
                println!("round {round}: read {seen:#x} at {USER_VA:#x}, switch back {back:?}");
                same = false;
                break;
            }
        }
    }
    check(
        r,
        "light hypercalls after NEW_BASEPTR return into the new address space",
        same,
    );
    if let Err(e) = space.destroy(&env) {
        check(
            r,
            &alloc::format!("tear down the address space: {e}"),
            false,
        );
    }
}
