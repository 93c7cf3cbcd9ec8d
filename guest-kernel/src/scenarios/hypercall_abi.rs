//! Hypercall ABI scenarios: unknown numbers, and hostile buffers handed to the first hypercalls.

use abi::console::{CONSOLE_IO_MAX, CONSOLEIO_WRITE};
use abi::errno::Errno;
use abi::hypercall::nr;
use abi::sched::SCHEDOP_SHUTDOWN;
use abi::version::{
    XENVER_BUILD_ID, XENVER_CHANGESET, XENVER_COMPILE_INFO, XENVER_EXTRAVERSION,
    XENVER_GET_FEATURES, XENVER_PLATFORM_PARAMETERS, XENVER_VERSION,
};
use abi::xen::{DOMID_SELF, SEGBASE_GS_USER_SEL};

use crate::boot::facts;
use crate::platform::xen_pv::raw;
use crate::println;
use crate::xtf::Results;

fn expect(r: &mut Results, what: &str, got: i64, want: i64) {
    let show = |v: i64| Errno::from_ret(v).map_or("", |e| e.name());
    if r.check(got == want) {
        println!("  ok   {what}: {got} {}", show(got));
    } else {
        println!(
            "  FAIL {what}: got {got} {}, expected {want} {}",
            show(got),
            show(want)
        );
    }
}

/// Hypercall numbers the hypervisor does not implement must return -ENOSYS, and known ones still work.
pub fn unknown_hypercall(_: &str, r: &mut Results) {
    let enosys = Errno::ENOSYS.as_ret();
    for n in [11u64, 19, 47, 53, 56, 63, 64, 0x82, 4096, 1 << 32, u64::MAX] {
        expect(r, &label(n), raw(n, [0; 5]), enosys);
    }
    // 54 is our `counters` extension (abi deviation m): it answers, and checks its arguments.
    expect(
        r,
        "counters to address 0",
        raw(nr::COUNTERS, [0; 5]),
        Errno::EFAULT.as_ret(),
    );
    expect(
        r,
        "counters with an unknown command",
        raw(nr::COUNTERS, [7, 0, 0, 0, 0]),
        Errno::EINVAL.as_ret(),
    );
    expect(r, "null hypercall", raw(nr::NULL, [u64::MAX; 5]), 0);
    expect(
        r,
        "xen_version(version)",
        raw(nr::XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0]),
        1,
    );
    // The documented refusals (abi deviations j, k, l) and the platform parameters.
    for (what, cmd) in [
        ("xen_version(compile_info)", XENVER_COMPILE_INFO),
        ("xen_version(changeset)", XENVER_CHANGESET),
        ("xen_version(build_id)", XENVER_BUILD_ID),
    ] {
        let mut buf = [0u8; 1024];
        let got = raw(nr::XEN_VERSION, [cmd, buf.as_mut_ptr() as u64, 0, 0, 0]);
        expect(r, what, got, enosys);
    }
    let mut virt_start = 0u64;
    let got = raw(
        nr::XEN_VERSION,
        [
            XENVER_PLATFORM_PARAMETERS,
            &raw mut virt_start as u64,
            0,
            0,
            0,
        ],
    );
    expect(r, "xen_version(platform_parameters)", got, 0);
    expect(
        r,
        "platform_parameters.virt_start",
        virt_start as i64,
        abi::layout::RESERVED_VA_START as i64,
    );
    expect(
        r,
        "set_segment_base(GS_USER_SEL) is refused",
        raw(nr::SET_SEGMENT_BASE, [SEGBASE_GS_USER_SEL, 0x2b, 0, 0, 0]),
        enosys,
    );
    let foreign = raw(nr::MMU_UPDATE, [0, 0, 0, u64::from(DOMID_SELF) - 1, 0]);
    expect(
        r,
        "mmu_update with a foreign domain",
        foreign,
        Errno::EPERM.as_ret(),
    );
}

fn label(n: u64) -> heapless::String<40> {
    let mut s = heapless::String::new();
    let _ = core::fmt::write(&mut s, format_args!("hypercall {n:#x}"));
    s
}

fn console_write(buf: u64, len: u64) -> i64 {
    raw(nr::CONSOLE_IO, [CONSOLEIO_WRITE, len, buf, 0, 0])
}

/// Hostile pointers and lengths get -EFAULT/-EINVAL, never a crash, and the hypervisor keeps serving.
pub fn console_hostile(cmdline: &str, r: &mut Results) {
    let efault = Errno::EFAULT.as_ret();
    let einval = Errno::EINVAL.as_ret();
    let msg = b"console_io: a valid buffer still prints\n";
    expect(
        r,
        "valid buffer",
        console_write(msg.as_ptr() as u64, msg.len() as u64),
        0,
    );
    let hv = crate::cmdline::option(cmdline, "addr")
        .and_then(crate::cmdline::parse_u64)
        .unwrap_or(0x20_0000);
    expect(r, "hypervisor image address", console_write(hv, 16), efault);
    expect(
        r,
        "entry region (mapped, but the hypervisor's)",
        console_write(abi::layout::ENTRY_REGION_VA, 16),
        efault,
    );
    expect(
        r,
        "reserved range end",
        console_write(abi::layout::RESERVED_VA_END - 8, 16),
        efault,
    );
    expect(
        r,
        "non-canonical address",
        console_write(0x0000_8000_0000_0000, 16),
        efault,
    );
    expect(
        r,
        "non-canonical (high)",
        console_write(0xdead_beef_0000_0000, 16),
        efault,
    );
    expect(r, "unmapped address", console_write(0x1000, 16), efault);
    expect(r, "null pointer", console_write(0, 1), efault);
    let kernel_start = 0xffff_ffff_8000_0000u64;
    expect(
        r,
        "buffer starting below the kernel image",
        console_write(kernel_start - 2, 4),
        efault,
    );
    expect(
        r,
        "buffer wrapping the address space",
        console_write(u64::MAX - 3, 16),
        efault,
    );
    expect(
        r,
        "huge length",
        console_write(msg.as_ptr() as u64, u64::MAX),
        einval,
    );
    expect(
        r,
        "length 2^32",
        console_write(msg.as_ptr() as u64, 1 << 32),
        einval,
    );
    expect(
        r,
        "length just over the limit",
        console_write(msg.as_ptr() as u64, CONSOLE_IO_MAX + 1),
        einval,
    );
    expect(
        r,
        "length 0 with a bad pointer",
        console_write(0xdead_beef_0000_0000, 0),
        0,
    );

    // Output parameters: read-only kernel text and hypervisor addresses are refused for writing.
    let text = unknown_hypercall as *const () as u64;
    let xv = |arg: u64| raw(nr::XEN_VERSION, [XENVER_EXTRAVERSION, arg, 0, 0, 0]);
    expect(
        r,
        "xen_version into read-only kernel text",
        xv(text),
        efault,
    );
    expect(
        r,
        "xen_version into the entry region",
        xv(abi::layout::ENTRY_REGION_VA),
        efault,
    );
    expect(
        r,
        "xen_version into a non-canonical address",
        xv(0x0000_8000_0000_0000),
        efault,
    );
    expect(
        r,
        "xen_version(get_features) from unmapped",
        raw(nr::XEN_VERSION, [XENVER_GET_FEATURES, 0x1000, 0, 0, 0]),
        efault,
    );
    let pt_base = facts().start_info.pt_base;
    expect(
        r,
        "xen_version into this domain's own L4 (read-only)",
        xv(pt_base),
        efault,
    );
    expect(
        r,
        "sched_op(shutdown) with an unmapped argument",
        raw(nr::SCHED_OP, [SCHEDOP_SHUTDOWN, 0x1000, 0, 0, 0]),
        efault,
    );
    // Still alive and served correctly after all of that.
    expect(
        r,
        "xen_version(version) afterwards",
        raw(nr::XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0]),
        1,
    );
    expect(
        r,
        "valid buffer afterwards",
        console_write(msg.as_ptr() as u64, msg.len() as u64),
        0,
    );
}
