//! `--accel kvm` where KVM cannot run this machine: decided before any work (no `/dev/kvm`, or a CPU
//! without VT-x/AMD-V flags in `/proc/cpuinfo`, as in a VM without nested virtualization), and recognized
//! afterwards in QEMU's stderr (`failed to set MSR`: QEMU's KVM accelerator aborting on an MSR the host's
//! KVM refuses). Either way the user gets an explanation and the suggestion to use TCG, not a QEMU
//! assertion.

/// What QEMU prints when the host's KVM refuses an MSR it sets up (then it aborts).
pub const QEMU_MSR_FAILURE: &str = "failed to set MSR";

/// The advice that ends every message.
pub const USE_TCG: &str = "use TCG instead (the default: leave out --accel, or pass --accel tcg); every mode runs under TCG";

/// Why KVM cannot run here, from whether `/dev/kvm` exists and `/proc/cpuinfo`'s text; `None` if it may.
pub fn problem(dev_kvm_exists: bool, cpuinfo: &str) -> Option<String> {
    let has_flag = |flag: &str| {
        cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|w| w == flag))
    };
    let vt = has_flag("vmx") || has_flag("svm");
    match (dev_kvm_exists, vt) {
        (true, true) => None,
        (false, true) => Some(format!(
            "--accel kvm: /dev/kvm does not exist (the kvm module is not loaded, or this is a container \
             without it); {USE_TCG}"
        )),
        (exists, false) => Some(format!(
            "--accel kvm: this CPU shows neither the vmx (Intel VT-x) nor the svm (AMD-V) flag in /proc/cpuinfo \
             (a virtual machine without nested virtualization){}, so KVM cannot run the guest (QEMU would \
             abort with \"{QEMU_MSR_FAILURE}\"); {USE_TCG}",
            if exists {
                "; /dev/kvm exists but cannot help"
            } else {
                " and /dev/kvm does not exist"
            }
        )),
    }
}

/// Checks this host for `--accel kvm` ([`problem`] on `/dev/kvm` and `/proc/cpuinfo`).
pub fn check_host() -> Result<(), String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    match problem(std::path::Path::new("/dev/kvm").exists(), &cpuinfo) {
        Some(p) => Err(p),
        None => Ok(()),
    }
}

/// The explanation for a QEMU run under KVM whose stderr shows it failed on an MSR; `None` otherwise.
pub fn explain_failure(stderr: &str) -> Option<String> {
    let line = stderr.lines().find(|l| l.contains(QEMU_MSR_FAILURE))?;
    Some(format!(
        "--accel kvm: QEMU's KVM accelerator failed ({}): the host's KVM cannot run this guest CPU; {USE_TCG}",
        line.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_VT: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme de pse tsc msr pae sse sse2 \
                         hypervisor lahf_lm\n\nprocessor\t: 1\nflags\t\t: fpu vme de pse tsc msr\n";
    const VMX: &str = "processor\t: 0\nflags\t\t: fpu vme vmx sse2\n";
    const SVM: &str = "processor\t: 0\nflags\t\t: fpu svm sse2 npt\n";

    #[test]
    fn kvm_needs_the_device_and_a_vt_flag() {
        assert_eq!(problem(true, VMX), None);
        assert_eq!(problem(true, SVM), None);
        let p = problem(true, NO_VT).unwrap();
        assert!(
            p.contains("neither the vmx") && p.contains("--accel tcg"),
            "{p}"
        );
        assert!(p.contains("failed to set MSR"), "{p}");
        let p = problem(false, NO_VT).unwrap();
        assert!(p.contains("/dev/kvm does not exist"), "{p}");
        let p = problem(false, VMX).unwrap();
        assert!(p.starts_with("--accel kvm: /dev/kvm does not exist"), "{p}");
        // A flag name inside another word, or outside the flags line, does not count.
        assert!(problem(true, "model name\t: svm vmx\nflags\t\t: vmxsomething\n").is_some());
        assert!(problem(true, "").is_some());
    }

    #[test]
    fn qemus_msr_abort_is_explained() {
        let stderr = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0\nqemu-system-x86_64: \
                      ../target/i386/kvm/kvm.c:3110: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";
        let e = explain_failure(stderr).unwrap();
        assert!(
            e.contains("failed to set MSR 0x10a") && e.contains("use TCG"),
            "{e}"
        );
        assert_eq!(explain_failure("qemu: some other error"), None);
    }
}
