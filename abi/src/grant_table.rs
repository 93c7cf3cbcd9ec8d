//! Grant tables (`grant_table.h`): `GNTTABOP_*` sub-commands and the version-1 grant entry.
//!
//! `grant_table_op(cmd, args, count)`: `RDI` = `GNTTABOP_*`, `RSI` = guest pointer to an array of the
//! command's structures, `RDX` = number of elements.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::xen::DomId;

/// A grant reference: an index into the granting domain's table (`grant_ref_t`).
pub type GrantRef = u32;

/// Map a granted frame.
pub const GNTTABOP_MAP_GRANT_REF: u64 = 0;
/// Unmap a granted frame.
pub const GNTTABOP_UNMAP_GRANT_REF: u64 = 1;
/// Set up the caller's grant table and learn its frames.
pub const GNTTABOP_SETUP_TABLE: u64 = 2;
/// Dump a table to the hypervisor console (debugging).
pub const GNTTABOP_DUMP_TABLE: u64 = 3;
/// Transfer a frame to another domain.
pub const GNTTABOP_TRANSFER: u64 = 4;
/// Copy between granted frames.
pub const GNTTABOP_COPY: u64 = 5;
/// Query the current and maximum table size.
pub const GNTTABOP_QUERY_SIZE: u64 = 6;
/// Unmap and replace with another mapping.
pub const GNTTABOP_UNMAP_AND_REPLACE: u64 = 7;
/// Select the table format version.
pub const GNTTABOP_SET_VERSION: u64 = 8;
/// Frames of the v2 status table.
pub const GNTTABOP_GET_STATUS_FRAMES: u64 = 9;
/// The table format version in use.
pub const GNTTABOP_GET_VERSION: u64 = 10;
/// Swap two grant entries.
pub const GNTTABOP_SWAP_GRANT_REF: u64 = 11;
/// Cache maintenance on granted frames.
pub const GNTTABOP_CACHE_FLUSH: u64 = 12;

/// [`GrantEntryV1::flags`] type: the entry grants nothing.
pub const GTF_INVALID: u16 = 0;
/// [`GrantEntryV1::flags`] type: `domid` may map or access `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// [`GrantEntryV1::flags`] type: `domid` may transfer a frame to the granter.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// The type bits of [`GrantEntryV1::flags`].
pub const GTF_TYPE_MASK: u16 = 3;
/// Access is read-only (set by the granter).
pub const GTF_READONLY: u16 = 1 << 2;
/// The grant is currently mapped for reading (set by the hypervisor).
pub const GTF_READING: u16 = 1 << 3;
/// The grant is currently mapped for writing (set by the hypervisor).
pub const GTF_WRITING: u16 = 1 << 4;

/// One entry of a version-1 grant table (`grant_entry_v1`), 8 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*`.
    pub flags: u16,
    /// The domain being granted access.
    pub domid: DomId,
    /// The granted frame.
    pub frame: u32,
}

layout!(GrantEntryV1, 8; domid @ 2, frame @ 4);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_xens() {
        let ops = [
            GNTTABOP_MAP_GRANT_REF,
            GNTTABOP_UNMAP_GRANT_REF,
            GNTTABOP_SETUP_TABLE,
            GNTTABOP_DUMP_TABLE,
            GNTTABOP_TRANSFER,
            GNTTABOP_COPY,
            GNTTABOP_QUERY_SIZE,
            GNTTABOP_UNMAP_AND_REPLACE,
            GNTTABOP_SET_VERSION,
            GNTTABOP_GET_STATUS_FRAMES,
            GNTTABOP_GET_VERSION,
            GNTTABOP_SWAP_GRANT_REF,
            GNTTABOP_CACHE_FLUSH,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(op, i as u64);
        }
        assert_eq!(
            (
                GTF_INVALID,
                GTF_PERMIT_ACCESS,
                GTF_ACCEPT_TRANSFER,
                GTF_TYPE_MASK
            ),
            (0, 1, 2, 3)
        );
        assert_eq!((GTF_READONLY, GTF_READING, GTF_WRITING), (4, 8, 16));
    }
}
