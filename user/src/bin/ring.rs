//! `ring`: shows the privilege rings at work: this program's CS (read with `mov %cs`), the guest kernel's
//! CS and the hypervisor's version and features (from `ringinfo`; none when the kernel was booted
//! natively), and the user CS the kernel saw in the system call's frame.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::arch::x86_64::cpu;
use user::{println, sys};

user::main!(main);

fn main(_args: &str) -> i32 {
    let cs = cpu::read_cs();
    println!("user program: CS={cs:#x} -> CPL {}", cs & 3);
    let info = match sys::ringinfo() {
        Ok(info) => info,
        Err(e) => {
            println!("ring: ringinfo: {}", e.name());
            return 1;
        }
    };
    println!(
        "guest kernel: CS={:#x} -> CPL {} (RingInfo.kernel_cs)",
        info.kernel_cs,
        info.kernel_cs & 3
    );
    let caps = uapi::name_str(&info.hv_caps);
    let (major, minor) = (info.hv_version >> 16, info.hv_version & 0xffff);
    let smk = info.hv_features & (1 << uapi::XENFEAT_SUPERVISOR_MODE_KERNEL) != 0;
    if info.hv_version == 0 && caps.is_empty() {
        // The kernel reports no hypervisor: it was booted natively (`cargo xtask run --mode native`).
        println!("hypervisor: none; the guest kernel runs in ring 0 on the bare machine");
    } else if smk {
        println!(
            "hypervisor: {caps} version {major}.{minor}; XENFEAT_supervisor_mode_kernel set: the guest \
             kernel runs in ring 0 beside the hypervisor"
        );
    } else {
        println!(
            "hypervisor: {caps} version {major}.{minor}; XENFEAT_supervisor_mode_kernel not set: the \
             guest kernel is deprivileged, the hypervisor alone runs in ring 0"
        );
    }
    println!(
        "syscall frame: user CS as the kernel saw it = {:#x}",
        info.user_cs
    );
    0
}
