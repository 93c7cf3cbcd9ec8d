//! `multicall` (hypercall 13): run a batch of hypercalls with one entry into the hypervisor.
//!
//! `multicall(entries, nr)`: each 64-byte `multicall_entry` names a hypercall and up to six arguments (five
//! are used); its result is written back into the entry. A nested `multicall` is refused in its entry
//! (-EINVAL), and so is a `domctl`. An entry that changes the caller's flow — a yield or a shutdown — ends the batch there. When a
//! call inside the batch is preempted, its progress is written back into that entry's arguments and the
//! whole multicall is continued from that entry, as Xen does.

use abi::errno::Errno;
use abi::hypercall::nr;
use abi::types::{Gva, Maddr, PAGE_SIZE};
use abi::xen::MulticallEntry;

use zerocopy::{FromZeros, IntoBytes};

use super::MachineMem;
use super::{Action, HypercallCtx, dispatch};

/// Size of one `multicall_entry`.
const ENTRY_SIZE: u64 = 64;
/// Offset of its `result` field.
const RESULT_OFFSET: usize = core::mem::offset_of!(MulticallEntry, result);

/// Handle `multicall`.
#[inline(never)] // Out of `dispatch`, so the common path does not pay for the largest handler's frame.
pub fn multicall<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>) -> Action {
    let saved = ctx.args();
    let action = run_entries(ctx, saved);
    // Each entry's arguments were put in the caller's frame while it ran (`run_entry`): the caller's
    // own go back once, on every way out.
    super::set_args(ctx.regs, saved);
    action
}

/// The entries of a `multicall` whose arguments are `args`.
#[inline(always)]
fn run_entries<M: MachineMem>(ctx: &mut HypercallCtx<'_, '_, M>, args: [u64; 5]) -> Action {
    let [entries, count, ..] = args;
    if count > u64::from(u32::MAX) {
        return Action::Return(Errno::EINVAL.as_ret());
    }
    let mut i = 0;
    'pages: while i < count {
        let Some(at) = Gva(entries).checked_add(i * ENTRY_SIZE) else {
            return Action::Return(Errno::EFAULT.as_ret());
        };
        // The entries from `at` to the end of its page, read and written back after one walk for write
        // access: until an entry uses the frame table or the allocator (the only way a call changes a
        // mapping or frees a frame), after which the next entry walks again. An entry across a page
        // boundary, or in a page the guest cannot write, goes on its own through the general copies.
        let n = ((PAGE_SIZE - at.page_offset()) / ENTRY_SIZE).min(count - i);
        let page = match n {
            0 => Err(Errno::EFAULT),
            _ => ctx.guest().translate_in_page(at, n * ENTRY_SIZE, true),
        };
        let Ok(first) = page else {
            match run_entry(ctx, at, None, count - i) {
                Step::Next | Step::Walk => i += 1,
                Step::Stop(a) => return a,
            }
            continue;
        };
        for k in 0..n {
            let (va, ma) = (Gva(at.0 + k * ENTRY_SIZE), Maddr(first.0 + k * ENTRY_SIZE));
            match run_entry(ctx, va, Some(ma), count - i - k) {
                Step::Next => {}
                Step::Walk => {
                    i += k + 1;
                    continue 'pages;
                }
                Step::Stop(a) => return a,
            }
        }
        i += n;
    }
    Action::Return(0)
}

/// What the loop does after an entry.
enum Step {
    /// The next entry.
    Next,
    /// The next entry, after a new walk (this one used the frame table or the allocator).
    Walk,
    /// The multicall ends with this action.
    Stop(Action),
}

/// Run the entry at guest address `at`, the first of the `left` entries still to run. `page`: its machine
/// address, from a walk for write access that is still valid; `None`: read it and write its result
/// through the general copies (a walk each).
#[inline(always)]
fn run_entry<M: MachineMem>(
    ctx: &mut HypercallCtx<'_, '_, M>,
    at: Gva,
    page: Option<Maddr>,
    left: u64,
) -> Step {
    if !ctx.spend() {
        return Step::Stop(Action::Continue([at.0, left, 0, 0, 0]));
    }
    let mut e = MulticallEntry::new_zeroed();
    match page {
        Some(ma) => ctx.mem.read_bytes(ma, e.as_mut_bytes()),
        // Not in one writable page: read it as it is (writing the result back then fails).
        None => match ctx.guest().read_obj(at) {
            Ok(x) => e = x,
            Err(err) => return Step::Stop(Action::Return(err.as_ret())),
        },
    }
    // A nested multicall, and a domctl (performed by the trap code after the handler), are refused.
    let mut moved = false;
    let action = if e.op == nr::MULTICALL || e.op == nr::DOMCTL {
        Action::Return(Errno::EINVAL.as_ret())
    } else {
        // The entry's arguments in the caller's frame while it runs (`HypercallCtx::args`); `multicall`
        // puts the caller's back at the end (no handler changes an argument register: `iret` restores
        // others).
        super::set_args(
            ctx.regs,
            [e.args[0], e.args[1], e.args[2], e.args[3], e.args[4]],
        );
        let uses = ctx.machine.uses();
        let a = dispatch(e.op, ctx);
        // It may have changed a mapping or freed a frame: the result goes back through a new walk.
        moved = ctx.machine.uses() != uses;
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
            Some(Action::Continue([at.0, left, 0, 0, 0]))
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
    let bytes = match whole {
        true => e.as_bytes(),
        false => &e.as_bytes()[RESULT_OFFSET..RESULT_OFFSET + 8],
    };
    let start = if whole { 0 } else { RESULT_OFFSET };
    match page {
        Some(ma) if !moved => {
            // The whole entry lies in the translated page. Each case with its constant length, so the
            // copy is a few moves (a copy of `bytes.len()` bytes is a call to `memcpy` on every entry).
            let frame = ctx.mem.frame_mut(ma.mfn());
            let off = ma.page_offset() as usize + start;
            if whole {
                frame[off..off + ENTRY_SIZE as usize].copy_from_slice(e.as_bytes());
            } else {
                frame[off..off + 8].copy_from_slice(&e.result.to_ne_bytes());
            }
        }
        _ => {
            if let Err(err) = ctx.guest().write(Gva(at.0 + start as u64), bytes) {
                return Step::Stop(Action::Return(err.as_ret()));
            }
        }
    }
    match stop {
        Some(a) => Step::Stop(a),
        None if moved => Step::Walk,
        None => Step::Next,
    }
}
