//! Part of `evtchn-prompt` (see `fast_return`): what the hypervisor's fast hypercall path (light calls
//! answered in its entry code) returns. RFLAGS come back sanitized (NT, which POPF may set in ring 1,
//! cleared; AC, guest-controlled, kept); and a light number whose request needs more than the registers
//! (`xen_version(XENVER_extraversion)`, declined by the light handler) is still answered right after a
//! light call, on the general path; and the callee-saved registers come back unchanged from a light call
//! answered on the fast path and from one whose return has work (`stack_switch` dirties the gates, so
//! its answer leaves through the general return).

use abi::hypercall::nr;
use abi::version::{EXTRAVERSION, XEN_EXTRAVERSION_LEN, XENVER_EXTRAVERSION, XENVER_VERSION};

use crate::arch::hypercall::{hypercall_keeps_callee_saved, hypercall_rflags};
use crate::platform::xen_pv::raw;
use crate::println;
use crate::xtf::Results;

use super::memory::check;

/// Rounds of each check.
const ROUNDS: u64 = 20;
/// RFLAGS.NT: makes a 64-bit IRET fault; never returned to a guest.
const NT: u64 = 1 << 14;
/// RFLAGS.AC: the guest's own.
const AC: u64 = 1 << 18;

/// The checks ([module docs](self)); each round first makes a light call so the next one finds the
/// state its return recorded (the fast path).
#[inline(never)]
pub(super) fn light_returns(r: &mut Results) {
    let mut flags = true;
    let mut declined = true;
    let mut kept = true;
    for round in 0..ROUNDS {
        raw(nr::NULL, [0; 5]);
        // SAFETY: NULL and XENVER_VERSION take no pointer; NT and AC do not disturb this code (no IRET,
        // no ring-3 access) and the helper restores RFLAGS.
        let answers = unsafe {
            [
                hypercall_rflags(nr::NULL, 0, 0, NT | AC),
                hypercall_rflags(nr::XEN_VERSION, XENVER_VERSION, 0, NT | AC),
            ]
        };
        for (i, (ret, after)) in answers.into_iter().enumerate() {
            let want = [0, i64::from(abi::version::VERSION)][i];
            if ret != want || after & NT != 0 || after & AC == 0 {
                println!("round {round}, call {i}: returned {ret:#x}, RFLAGS {after:#x} after");
                flags = false;
            }
        }
        raw(nr::NULL, [0; 5]);
        let mut buf = [0u8; XEN_EXTRAVERSION_LEN];
        let ret = raw(
            nr::XEN_VERSION,
            [XENVER_EXTRAVERSION, buf.as_mut_ptr() as u64, 0, 0, 0],
        );
        let name = &buf[..EXTRAVERSION.len()];
        if ret != 0 || name != EXTRAVERSION.as_bytes() || buf[EXTRAVERSION.len()] != 0 {
            println!("round {round}: extraversion returned {ret}, {name:?}");
            declined = false;
        }
        let kernel_ss = u64::from(abi::layout::GUEST_KERNEL_SS);
        let stack = crate::trap::dispatch::trap_stack_top();
        let seed = 0x5eed_0000_0000_0000 | (round << 8);
        raw(nr::NULL, [0; 5]);
        // SAFETY: NULL takes no pointer; STACK_SWITCH is given the kernel stack the trap setup installs
        // (what the fuzzer's restore gives it too), so nothing changes.
        let calls = unsafe {
            [
                hypercall_keeps_callee_saved(nr::NULL, 0, 0, seed),
                hypercall_keeps_callee_saved(nr::STACK_SWITCH, kernel_ss, stack, seed + 0x10),
                hypercall_keeps_callee_saved(nr::NULL, 0, 0, seed + 0x20),
            ]
        };
        for (i, (ret, same)) in calls.into_iter().enumerate() {
            if ret != 0 || !same {
                println!("round {round}, call {i}: returned {ret}, callee-saved kept: {same}");
                kept = false;
            }
        }
        if !(flags && declined && kept) {
            break;
        }
    }
    check(
        r,
        "light hypercalls return NT cleared and AC kept (fast path sanitizes RFLAGS)",
        flags,
    );
    check(
        r,
        "a light number's request that needs guest memory is answered after a light call",
        declined,
    );
    check(
        r,
        "light calls keep RBX, RBP and R12-R15, on the fast return and on the general one",
        kept,
    );
}
