//! `multicall` (hypercall 13): run a batch of hypercalls with one entry into the hypervisor.
//!
//! `multicall(entries, nr)`: each 64-byte `multicall_entry` names a hypercall and up to six arguments (five
//! are used); its result is written back into the entry. A nested `multicall` is refused in its entry
//! (-EINVAL), and so is a `domctl`. An entry that changes the caller's flow — a yield or a shutdown — ends the batch there. When a
//! call inside the batch is preempted, its progress is written back into that entry's arguments and the
//! whole multicall is continued from that entry, as Xen does.

use abi::errno::Errno;
use abi::hypercall::nr;
use abi::types::Gva;
use abi::xen::MulticallEntry;

use zerocopy::{FromZeros, IntoBytes};

use super::MachineMem;
use super::{Action, HypercallCtx, dispatch};
use crate::mm::guest_mem::PageCursor;

/// Size of one `multicall_entry`.
const ENTRY_SIZE: u64 = 64;
/// Offset of its `result` field.
const RESULT_OFFSET: u64 = core::mem::offset_of!(MulticallEntry, result) as u64;

/// Handle `multicall`.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn multicall<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let [entries, count, ..] = ctx.args;
    if count > u64::from(u32::MAX) {
        return Action::Return(Errno::EINVAL.as_ret());
    }
    let saved = ctx.args;
    // One walk per page of the entry array, for reading an entry and writing its result back; dropped
    // after an entry that used the frame table or allocator (see `PageCursor`).
    let mut cursor = PageCursor::default();
    for i in 0..count {
        let Some(at) = Gva(entries).checked_add(i * ENTRY_SIZE) else {
            return Action::Return(Errno::EFAULT.as_ret());
        };
        if !ctx.spend() {
            return Action::Continue([at.0, count - i, 0, 0, 0]);
        }
        let mut e = MulticallEntry::new_zeroed();
        if ctx
            .guest()
            .read_writable_cached(&mut cursor, at, e.as_mut_bytes())
            .is_err()
        {
            // Not in one writable page: read it as it is (writing the result back then fails).
            e = match ctx.guest().read_obj(at) {
                Ok(e) => e,
                Err(err) => return Action::Return(err.as_ret()),
            };
        }
        // A nested multicall, and a domctl (performed by the trap code after the handler), are refused.
        let action = if e.op == nr::MULTICALL || e.op == nr::DOMCTL {
            Action::Return(Errno::EINVAL.as_ret())
        } else {
            ctx.args = [e.args[0], e.args[1], e.args[2], e.args[3], e.args[4]];
            let uses = ctx.machine.uses();
            let a = dispatch(e.op, ctx);
            ctx.args = saved;
            if ctx.machine.uses() != uses {
                // It may have changed a mapping or freed a frame: walk again.
                cursor = PageCursor::default();
            }
            a
        };
        // Only what changed goes back: the result, or (for a preempted call) the arguments too.
        let mut whole = false;
        let stop = match action {
            Action::Return(v) => {
                e.result = v as u64;
                None
            }
            Action::Continue(args) => {
                // Resume this entry where it stopped: its arguments now carry its progress.
                e.args[..5].copy_from_slice(&args);
                whole = true;
                Some(Action::Continue([at.0, count - i, 0, 0, 0]))
            }
            Action::Yield => {
                e.result = 0;
                Some(Action::Yield)
            }
            // A call that changes the caller's flow (a shutdown, an `iret`, a crash) ends the batch.
            Action::Shutdown { .. } | Action::Resume | Action::Crash(_) => Some(action),
            // Not reached (refused above); answered like the refusal.
            Action::Domctl(_) => {
                e.result = Errno::EINVAL.as_ret() as u64;
                None
            }
        };
        let written = if whole {
            ctx.guest().write_obj_cached(&cursor, at, &e)
        } else {
            let result_at = Gva(at.0 + RESULT_OFFSET);
            ctx.guest().write_obj_cached(&cursor, result_at, &e.result)
        };
        if let Err(err) = written {
            return Action::Return(err.as_ret());
        }
        if let Some(a) = stop {
            return a;
        }
    }
    Action::Return(0)
}
