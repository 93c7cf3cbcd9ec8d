//! `xen_version` (hypercall 17): version number, extra version, capabilities, platform parameters, feature
//! bitmap, page size, guest handle, command line (the refused sub-commands are listed in [`abi::version`]).

use abi::errno::Errno;
use abi::types::Gva;
use abi::version::*;
use abi::xen::XenFeatureInfo;

use super::MachineMem;
use super::{Action, HypercallCtx};

/// A decoded `xen_version` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionRequest {
    /// `(major << 16) | minor`.
    Version,
    /// Copy the extra-version string (16 bytes) to the guest.
    ExtraVersion(Gva),
    /// Copy the capabilities string (1024 bytes) to the guest.
    Capabilities(Gva),
    /// Write a `xen_platform_parameters` (the start of the range reserved for the hypervisor).
    PlatformParameters(Gva),
    /// Write the 16-byte domain handle (all zeroes: no toolstack assigns one).
    GuestHandle(Gva),
    /// Read a `xen_feature_info`, fill in its submap.
    GetFeatures(Gva),
    /// The page size.
    PageSize,
    /// Copy the hypervisor command line (1024 bytes); privileged domains only.
    CommandLine(Gva),
}

/// Decode the registers.
pub fn decode(args: [u64; 5]) -> Result<VersionRequest, Errno> {
    let arg = Gva(args[1]);
    Ok(match args[0] {
        XENVER_VERSION => VersionRequest::Version,
        XENVER_EXTRAVERSION => VersionRequest::ExtraVersion(arg),
        XENVER_CAPABILITIES => VersionRequest::Capabilities(arg),
        XENVER_PLATFORM_PARAMETERS => VersionRequest::PlatformParameters(arg),
        XENVER_GUEST_HANDLE => VersionRequest::GuestHandle(arg),
        XENVER_GET_FEATURES => VersionRequest::GetFeatures(arg),
        XENVER_PAGESIZE => VersionRequest::PageSize,
        XENVER_COMMANDLINE => VersionRequest::CommandLine(arg),
        _ => return Err(Errno::ENOSYS),
    })
}

/// The feature bits this hypervisor offers in word `idx` to a domain.
pub fn feature_word(idx: u32, privileged: bool) -> u32 {
    match idx {
        0 if privileged => 1 << XENFEAT_DOM0,
        _ => 0,
    }
}

fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [0u8; N];
    let n = s.len().min(N - 1);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

/// The answer to a request that needs nothing but its registers (a number, or an unknown sub-command's
/// `-ENOSYS`); `None` for the ones that read or write guest memory.
fn from_registers(args: [u64; 5]) -> Option<i64> {
    match decode(args) {
        Ok(VersionRequest::Version) => Some(i64::from(VERSION)),
        Ok(VersionRequest::PageSize) => Some(4096),
        Err(e) => Some(e.as_ret()),
        Ok(_) => None,
    }
}

/// The light-table entry (`hypercall::light`): what [`from_registers`] answers, without the full context.
pub fn light(f: &crate::regs::EntryFrame, _: &mut crate::domain::state::Domain) -> Option<i64> {
    from_registers(super::args_of(f))
}

/// Handle `xen_version`.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn xen_version<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    if let Some(v) = from_registers(ctx.args()) {
        return Action::Return(v);
    }
    let result = decode(ctx.args()).and_then(|req| match req {
        // Answered from the registers above (kept so the match stays total without a panic).
        VersionRequest::Version => Ok(i64::from(VERSION)),
        VersionRequest::PageSize => Ok(4096),
        VersionRequest::ExtraVersion(va) => ctx
            .guest()
            .write(va, &padded::<XEN_EXTRAVERSION_LEN>(EXTRAVERSION))
            .map(|_| 0),
        VersionRequest::Capabilities(va) => ctx
            .guest()
            .write(va, &padded::<XEN_CAPABILITIES_INFO_LEN>(CAPABILITIES))
            .map(|_| 0),
        VersionRequest::PlatformParameters(va) => {
            let params = XenPlatformParameters {
                virt_start: abi::layout::RESERVED_VA_START,
            };
            ctx.guest().write_obj(va, &params).map(|_| 0)
        }
        VersionRequest::GuestHandle(va) => ctx.guest().write(va, &[0u8; 16]).map(|_| 0),
        VersionRequest::GetFeatures(va) => {
            let mut fi: XenFeatureInfo = ctx.guest().read_obj(va)?;
            fi.submap = feature_word(fi.submap_idx, ctx.privileged);
            ctx.guest().write_obj(va, &fi).map(|_| 0)
        }
        VersionRequest::CommandLine(va) => {
            if !ctx.privileged {
                return Err(Errno::EPERM);
            }
            let line = padded::<XEN_COMMANDLINE_LEN>(ctx.env.hv_cmdline());
            ctx.guest().write(va, &line).map(|_| 0)
        }
    });
    Action::from(result)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use abi::hypercall::nr::XEN_VERSION;

    #[test]
    fn version_and_strings() {
        let (mut m, root) = machine();
        assert_eq!(
            call(&mut m, root, XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0]).0,
            Action::Return(1)
        );
        assert_eq!(
            call(&mut m, root, XEN_VERSION, [XENVER_PAGESIZE, 0, 0, 0, 0]).0,
            Action::Return(4096)
        );
        assert_eq!(
            call(
                &mut m,
                root,
                XEN_VERSION,
                [XENVER_EXTRAVERSION, RW_PAGE, 0, 0, 0]
            )
            .0,
            Action::Return(0)
        );
        let v = crate::mm::guest_mem::GuestView::new(&mut m, root, false);
        let mut b = [0u8; 9];
        v.read(abi::types::Gva(RW_PAGE), &mut b).unwrap();
        assert_eq!(&b, b"-ring1pv\0");
    }

    #[test]
    fn features_and_privilege() {
        let (mut m, root) = machine();
        let r = call(
            &mut m,
            root,
            XEN_VERSION,
            [XENVER_GET_FEATURES, RW_PAGE, 0, 0, 0],
        )
        .0;
        assert_eq!(r, Action::Return(0));
        assert_eq!(feature_word(0, true), 1 << XENFEAT_DOM0);
        assert_eq!(feature_word(0, false), 0);
        assert_eq!(feature_word(7, true), 0);
        let eperm = Action::Return(Errno::EPERM.as_ret());
        assert_eq!(
            call(
                &mut m,
                root,
                XEN_VERSION,
                [XENVER_COMMANDLINE, RW_PAGE, 0, 0, 0]
            )
            .0,
            eperm
        );
    }

    #[test]
    fn platform_parameters_and_handle() {
        let (mut m, root) = machine();
        // Fill the buffer with garbage first, so the test sees what the hypercall wrote.
        {
            let mut v = crate::mm::guest_mem::GuestView::new(&mut m, root, false);
            v.write(abi::types::Gva(RW_PAGE), &[0xa5u8; 24]).unwrap();
        }
        let r = call(
            &mut m,
            root,
            XEN_VERSION,
            [XENVER_PLATFORM_PARAMETERS, RW_PAGE, 0, 0, 0],
        );
        assert_eq!(r.0, Action::Return(0));
        let r = call(
            &mut m,
            root,
            XEN_VERSION,
            [XENVER_GUEST_HANDLE, RW_PAGE + 8, 0, 0, 0],
        );
        assert_eq!(r.0, Action::Return(0));
        let v = crate::mm::guest_mem::GuestView::new(&mut m, root, false);
        let mut b = [0u8; 24];
        v.read(abi::types::Gva(RW_PAGE), &mut b).unwrap();
        assert_eq!(
            u64::from_le_bytes(b[..8].try_into().unwrap()),
            abi::layout::RESERVED_VA_START
        );
        assert_eq!(&b[8..], &[0u8; 16]);
    }

    #[test]
    fn refused_subcommands_are_enosys() {
        let (mut m, root) = machine();
        let enosys = Action::Return(Errno::ENOSYS.as_ret());
        for cmd in [
            XENVER_COMPILE_INFO,
            XENVER_CHANGESET,
            XENVER_BUILD_ID,
            XENVER_EXTRAVERSION2,
            XENVER_CAPABILITIES2,
            XENVER_CHANGESET2,
            XENVER_COMMANDLINE2,
            u64::MAX,
        ] {
            assert_eq!(
                call(&mut m, root, XEN_VERSION, [cmd, RW_PAGE, 0, 0, 0]).0,
                enosys,
                "sub-command {cmd}"
            );
        }
    }

    #[test]
    fn hostile_pointers() {
        let (mut m, root) = machine();
        let efault = Action::Return(Errno::EFAULT.as_ret());
        for va in [
            RO_PAGE,
            0x20_0000,
            abi::layout::ENTRY_REGION_VA,
            0xdead_0000_0000_0000,
            RW_PAGE + 0xffc,
        ] {
            assert_eq!(
                call(
                    &mut m,
                    root,
                    XEN_VERSION,
                    [XENVER_EXTRAVERSION, va, 0, 0, 0]
                )
                .0,
                efault,
                "{va:#x}"
            );
            assert_eq!(
                call(
                    &mut m,
                    root,
                    XEN_VERSION,
                    [XENVER_GET_FEATURES, va, 0, 0, 0]
                )
                .0,
                efault,
                "{va:#x}"
            );
            for cmd in [XENVER_PLATFORM_PARAMETERS, XENVER_GUEST_HANDLE] {
                assert_eq!(
                    call(&mut m, root, XEN_VERSION, [cmd, va, 0, 0, 0]).0,
                    efault,
                    "{cmd} at {va:#x}"
                );
            }
        }
        let enosys = Action::Return(Errno::ENOSYS.as_ret());
        assert_eq!(
            call(&mut m, root, XEN_VERSION, [99, RW_PAGE, 0, 0, 0]).0,
            enosys
        );
    }
}
