//! Creating a process: the ELF program mapped into a new address space (`elf64` validates it against
//! the user-half policy), a stack page holding the argument string, a kernel stack whose first trap frame
//! enters the program in ring 3.

use abi::errno::Errno;
use abi::layout::{GUEST_USER_CS, GUEST_USER_SS};
use abi::types::PAGE_SIZE;
use uapi::{USER_STACK_LIMIT, USER_STACK_TOP};

use super::kernel::{KStack, Res, env, with};
use super::table::Pid;
use super::vma::Regions;
use crate::arch::x86_64::trap_entry::build_first_frame;
use crate::mm::kernel::KernelEnv;
use crate::mm::{AddressSpace, Prot, physmap_va};
use crate::println;
use crate::trap::TrapFrame;
use crate::trap::frame::{RFLAGS_IF, VECTOR_INT80};

/// Where programs may lie: the user half above page 0, below the stack's growth area.
const POLICY: elf64::AddressPolicy = elf64::AddressPolicy {
    allows: |first, last| first >= PAGE_SIZE && last < USER_STACK_TOP - USER_STACK_LIMIT,
    max_span: 64 << 20,
    refusal: "outside the user program area",
};

fn page_up(a: u64) -> u64 {
    a.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// Map every segment of `image` into `space`, recording the regions; returns the entry point.
fn load_image(
    env: &KernelEnv,
    space: &mut AddressSpace,
    regions: &mut Regions,
    image: &[u8],
) -> Result<u64, Errno> {
    let elf = elf64::parse(image, &POLICY).map_err(|e| {
        println!("kernel: bad program image: {e}");
        Errno::ENOEXEC
    })?;
    for seg in &elf.segments {
        let start = seg.vaddr & !(PAGE_SIZE - 1);
        let end = page_up(seg.end());
        let mut prot = Prot::empty();
        if seg.writable {
            prot |= Prot::WRITE;
        }
        if seg.executable {
            prot |= Prot::EXEC;
        }
        regions.add_image(start, end, prot)?;
        let file_end = seg.vaddr + seg.filesz;
        for page in (start..end).step_by(PAGE_SIZE as usize) {
            let pfn = space
                .map_zeroed(env, page, prot)
                .map_err(|_| Errno::ENOMEM)?;
            // The file bytes that fall in this page.
            let lo = page.max(seg.vaddr);
            let hi = (page + PAGE_SIZE).min(file_end);
            if lo < hi {
                let src = (seg.offset + (lo - seg.vaddr)) as usize;
                let n = (hi - lo) as usize;
                // SAFETY: `pfn` was just allocated for this mapping; its physmap alias is writable and
                // `lo - page + n <= PAGE_SIZE`; `elf64::parse` proved `offset + filesz` inside the image.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        image[src..src + n].as_ptr(),
                        (physmap_va(pfn) + (lo - page)) as *mut u8,
                        n,
                    )
                };
            }
        }
    }
    Ok(elf.entry)
}

/// The first stack page with the argument string at its top; returns (user RSP, args address).
fn build_stack(
    env: &KernelEnv,
    space: &mut AddressSpace,
    args: &[u8],
) -> Result<(u64, u64), Errno> {
    let page = USER_STACK_TOP - PAGE_SIZE;
    let pfn = space
        .map_zeroed(env, page, Prot::WRITE)
        .map_err(|_| Errno::ENOMEM)?;
    let at = USER_STACK_TOP - args.len() as u64;
    // SAFETY: the page was just allocated; `args` (at most MAX_ARGS bytes) fits at its end.
    unsafe {
        core::ptr::copy_nonoverlapping(
            args.as_ptr(),
            (physmap_va(pfn) + (at - page)) as *mut u8,
            args.len(),
        )
    };
    Ok(((at & !0xf) - 16, at))
}

/// Create process `name` (an embedded program) as a child of `ppid` with argument string `args`, runnable.
pub fn spawn(ppid: Pid, name: &str, args: &[u8]) -> Result<Pid, Errno> {
    if args.len() > uapi::MAX_ARGS {
        return Err(Errno::EINVAL);
    }
    let image = super::programs::find(name).ok_or(Errno::ENOENT)?;
    if with(|p| p.table.len()) >= super::table::MAX_PROCS {
        return Err(Errno::EAGAIN);
    }
    let env = env();
    let kstack = KStack::new(&env).ok_or(Errno::ENOMEM)?;
    let mut space = AddressSpace::new(&env).map_err(|_| Errno::ENOMEM)?;
    // The pid is known only at insertion; the mmap window is fixed up below.
    let mut regions = Regions::new(0);
    let built = load_image(&env, &mut space, &mut regions, image).and_then(|entry| {
        let (rsp, args_at) = build_stack(&env, &mut space, args)?;
        space.flush(&env).map_err(|_| Errno::ENOMEM)?;
        Ok((entry, rsp, args_at))
    });
    let (entry, rsp, args_at) = match built {
        Ok(v) => v,
        Err(e) => {
            let _ = space.destroy(&env);
            return Err(e);
        }
    };
    let frame = TrapFrame {
        rip: entry,
        cs: u64::from(GUEST_USER_CS),
        rflags: RFLAGS_IF | 2,
        rsp,
        ss: u64::from(GUEST_USER_SS),
        rdi: args_at,
        rsi: args.len() as u64,
        vector: VECTOR_INT80,
        ..TrapFrame::default()
    };
    // SAFETY: the kernel stack's pages are ours (just allocated) and mapped writable in the physmap; its
    // top is page aligned.
    let ctx_rsp = unsafe { build_first_frame(kstack.top(), &frame) };
    let res = Res {
        space: Some(space),
        regions,
        kstack,
        ctx_rsp,
        ran_since: 0,
        slice_tick: 0,
    };
    with(|p| {
        let pid = p.table.insert(ppid, name, res)?;
        if let Some(q) = p.table.get_mut(pid) {
            q.res.regions.set_pid(pid);
        }
        Ok(pid)
    })
}
