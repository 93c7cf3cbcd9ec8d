//! `--accel kvm` on a host whose KVM cannot run this guest (here: no vmx/svm flags, where QEMU would abort
//! with "failed to set MSR 0x10a"): `cargo xtask run` and `cargo xtask bench` explain it and suggest TCG,
//! exiting non-zero before building or booting anything. SKIP on a host where KVM may work.

use std::process::{Command, Stdio};

#[test]
fn run_and_bench_refuse_kvm_before_doing_any_work() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let kvm = std::path::Path::new("/dev/kvm").exists();
    if xtask::kvm::problem(kvm, &cpuinfo).is_none() {
        println!("Test result: SKIP (KVM may run the guest on this host)");
        return;
    }
    let bin = xtask::selfbin::xtask_binary().expect("the xtask binary");
    for args in [
        &["run", "--accel", "kvm", "--", "demo"][..],
        &["bench", "--accel", "kvm", "--mode", "wall"][..],
        &["run", "--mode", "hvm", "--accel", "kvm"][..],
    ] {
        let out = Command::new(&bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run xtask");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{args:?} must fail\n{stderr}");
        assert!(
            stderr.contains("--accel kvm:") && stderr.contains("use TCG instead"),
            "{args:?}: a clear explanation and the TCG suggestion\n{stderr}"
        );
        for work in ["xtask: QEMU:", "booting", "Compiling", "bench: "] {
            assert!(
                !stderr.contains(work) && !stdout.contains(work),
                "{args:?}: refused before any work ({work:?} seen)\n{stderr}{stdout}"
            );
        }
    }
    // An icount-only bench does not use KVM at all: no refusal needed (not run here: it would boot).
}
