//! What each system call does, once [`super::decode`] has turned the registers into a request. Runs on the
//! calling process's kernel stack with events masked; blocking calls use `kernel::block_current`.

use abi::errno::Errno;
use zerocopy::IntoBytes;

use super::decode::{Request, UserRange};
use super::kernel::{self, with};
use super::table::{Pid, Wait};
use super::usercopy::{check, copy_in, copy_out};
use super::vma::prot_from_bits;
use crate::boot::domid;
use crate::platform::{Halt, ops};
use crate::trap::TrapFrame;

/// Carry out `req` for the current process; the result goes to its RAX.
pub fn execute(req: Request, f: &mut TrapFrame) -> Result<u64, Errno> {
    match req {
        Request::Exit(code) => kernel::exit_current(code),
        Request::Write(r) => write(r),
        Request::Read(r) => read(r),
        Request::Getpid => Ok(u64::from(kernel::current())),
        Request::Yield => {
            kernel::yield_current();
            Ok(0)
        }
        Request::Sleep(ns) => {
            let deadline = crate::time::now().saturating_add(ns);
            while crate::time::now() < deadline {
                kernel::block_current(Wait::Sleep(deadline));
            }
            Ok(0)
        }
        Request::Spawn {
            name,
            args,
            foreground,
        } => spawn(name, args, foreground),
        Request::Wait {
            pid,
            status,
            nohang,
        } => wait(pid, status, nohang),
        Request::Mmap { len, prot } => {
            let prot = prot_from_bits(prot)?;
            kernel::with_current(|q| q.res.regions.mmap(len, prot)).ok_or(Errno::ESRCH)?
        }
        Request::Munmap { addr, len } => munmap(addr, len),
        Request::Ps { buf, max } => ps(buf, max),
        Request::Meminfo(buf) => meminfo(buf),
        Request::Uptime => Ok(crate::time::now()),
        Request::Domains { buf, max } => domains(buf, max),
        Request::Poweroff(code) => {
            super::ping::close();
            crate::println!(
                "kernel: poweroff requested by pid {} (code {code})",
                kernel::current()
            );
            ops().shutdown(Halt::Poweroff, code)
        }
        Request::Ringinfo(buf) => ringinfo(buf, f),
        Request::Bench {
            iterations,
            filter,
            quiet,
        } => bench(iterations, filter, quiet),
        Request::EvtchnPing(rounds) => super::ping::ping(rounds),
        Request::Hvcounters(buf) => {
            let c = ops().entry_counters().unwrap_or_default();
            copy_out(buf.addr, c.as_bytes())?;
            Ok(0)
        }
        Request::Notify(pid) => with(|p| {
            let cur = p.current;
            p.table.notify(cur, pid)
        })
        .map(|()| 0),
        Request::AwaitNotify => {
            while !with(|p| {
                let cur = p.current;
                p.table.take_notification(cur)
            }) {
                kernel::block_current(Wait::Notify);
            }
            Ok(0)
        }
        Request::FaultHandler(entry) => {
            kernel::with_current(|q| q.fault.register(entry)).ok_or(Errno::ESRCH)??;
            Ok(0)
        }
        Request::FaultReturn(resume) => {
            kernel::with_current(|q| q.fault.finish(f, resume)).ok_or(Errno::ESRCH)??;
            // RAX is the faulting context's again: the caller must not overwrite it.
            Ok(f.rax)
        }
        // The probes run here, in the kernel's ring, on behalf of the caller.
        Request::Sensitive => Ok(u64::from(crate::sensitive::probe::run())),
        Request::Toolstack(t) => super::toolstack::execute(t),
    }
}

fn write(r: UserRange) -> Result<u64, Errno> {
    check(r, false)?;
    let mut buf = [0u8; 256];
    let mut off = 0;
    while off < r.len {
        let n = (r.len - off).min(buf.len() as u64);
        copy_in(
            UserRange {
                addr: r.addr + off,
                len: n,
            },
            &mut buf[..n as usize],
        )?;
        ops().console_write(&buf[..n as usize])?;
        off += n;
    }
    Ok(r.len)
}

fn read(r: UserRange) -> Result<u64, Errno> {
    if !kernel::console_bound() {
        return Err(Errno::ENODEV);
    }
    check(r, true)?;
    let mut buf = [0u8; 256];
    let want = (r.len as usize).min(buf.len());
    loop {
        let got = with(|p| {
            if p.read_interrupted {
                p.read_interrupted = false;
                return Some(Err(Errno::EINTR));
            }
            p.tty.read(&mut buf[..want]).map(Ok)
        });
        match got {
            Some(Ok(n)) => {
                copy_out(r.addr, &buf[..n])?;
                return Ok(n as u64);
            }
            Some(Err(e)) => return Err(e),
            None => kernel::block_current(Wait::Console),
        }
    }
}

fn spawn(name: UserRange, args: UserRange, foreground: bool) -> Result<u64, Errno> {
    let mut nbuf = [0u8; uapi::MAX_NAME];
    let nbuf = &mut nbuf[..name.len as usize];
    copy_in(name, nbuf)?;
    let mut abuf = [0u8; uapi::MAX_ARGS];
    let abuf = &mut abuf[..args.len as usize];
    copy_in(args, abuf)?;
    let name = core::str::from_utf8(nbuf).map_err(|_| Errno::ENOENT)?;
    let pid = super::loader::spawn(kernel::current(), name, abuf)?;
    if foreground {
        with(|p| p.foreground = Some(pid));
    }
    Ok(u64::from(pid))
}

fn wait(want: Option<Pid>, status: Option<UserRange>, nohang: bool) -> Result<u64, Errno> {
    if let Some(s) = status {
        // Checked first, so that a bad pointer does not lose the child's status.
        check(s, true)?;
    }
    loop {
        let r = with(|p| {
            let cur = p.current;
            if let Some(z) = p.table.zombie_child(cur, want) {
                let (st, res) = p.table.reap(z).expect("a zombie child");
                return Some(Ok((z, st, res)));
            }
            if !p.table.has_child(cur, want) {
                return Some(Err(Errno::ECHILD));
            }
            None
        });
        match r {
            Some(Ok((pid, st, res))) => {
                // The kernel stack goes back to the allocator here (the child is not running on it).
                drop(res);
                if let Some(s) = status {
                    copy_out(s.addr, &st.to_le_bytes())?;
                }
                return Ok(u64::from(pid));
            }
            Some(Err(e)) => return Err(e),
            None if nohang => return Ok(0),
            None => kernel::block_current(Wait::Child(want)),
        }
    }
}

fn munmap(addr: u64, len: u64) -> Result<u64, Errno> {
    let env = kernel::env();
    with(|p| {
        let q = p.me().ok_or(Errno::ESRCH)?;
        let removed = q.res.regions.munmap(addr, len)?;
        let space = q.res.space.as_mut().ok_or(Errno::ESRCH)?;
        for (lo, hi) in removed {
            for page in (lo..hi).step_by(abi::types::PAGE_SIZE as usize) {
                if space.lookup(page).is_some() {
                    let pfn = space.unmap(&env, page).map_err(|_| Errno::EFAULT)?;
                    crate::mm::MmEnv::free_page(&env, pfn);
                }
            }
        }
        space.flush(&env).map_err(|_| Errno::EFAULT)?;
        Ok(0)
    })
}

fn ps(buf: UserRange, max: u64) -> Result<u64, Errno> {
    check(buf, true)?;
    let mut infos: heapless::Vec<uapi::ProcInfo, { super::table::MAX_PROCS }> =
        heapless::Vec::new();
    with(|p| {
        for q in p.table.iter() {
            let _ = infos.push(uapi::ProcInfo {
                pid: q.pid,
                ppid: q.ppid,
                state: q.state.code(),
                status: match q.state {
                    super::table::State::Zombie(s) => s,
                    _ => 0,
                },
                pages: q.res.space.as_ref().map_or(0, |s| s.page_count() as u64),
                preemptions: q.stats.preemptions,
                syscalls: q.stats.syscalls,
                cpu_ns: q.stats.cpu_ns,
                mmap_lo: q.res.regions.mmap_lo(),
                name: q.name,
            });
        }
    });
    let n = infos.len().min(max as usize);
    copy_out(buf.addr, infos[..n].as_bytes())?;
    Ok(n as u64)
}

fn meminfo(buf: UserRange) -> Result<u64, Errno> {
    let env = kernel::env();
    let (used, free) = crate::mm::heap::usage();
    let info = uapi::MemInfo {
        total_pages: env.total() as u64,
        free_pages: env.free_count() as u64,
        reservation: ops().memory_pages().unwrap_or(0),
        max_reservation: ops().memory_limit().unwrap_or(0),
        processes: with(|p| p.table.len()) as u64,
        heap_used: used as u64,
        heap_size: (used + free) as u64,
    };
    copy_out(buf.addr, info.as_bytes())?;
    Ok(0)
}

fn domains(buf: UserRange, max: u64) -> Result<u64, Errno> {
    check(buf, true)?;
    let mut out = [<uapi::DomInfo as zerocopy::FromZeros>::new_zeroed(); 16];
    let want = (max as usize).min(out.len());
    let n = ops().machines(0, &mut out[..want])?;
    copy_out(buf.addr, out[..n].as_bytes())?;
    Ok(n as u64)
}

fn ringinfo(buf: UserRange, f: &TrapFrame) -> Result<u64, Errno> {
    let hv = ops().hypervisor_info().unwrap_or_default();
    let info = uapi::RingInfo {
        user_cs: f.cs & 0xffff,
        kernel_cs: u64::from(crate::arch::read_cs()),
        hv_version: hv.version,
        hv_features: hv.features,
        domid: domid(),
        hv_caps: hv.caps,
        ..Default::default()
    };
    copy_out(buf.addr, info.as_bytes())?;
    Ok(0)
}

fn bench(iterations: u64, filter: UserRange, quiet: bool) -> Result<u64, Errno> {
    let mut fbuf = [0u8; super::decode::FILTER_MAX as usize];
    let fbuf = &mut fbuf[..filter.len as usize];
    copy_in(filter, fbuf)?;
    let filter = core::str::from_utf8(fbuf).map_err(|_| Errno::EINVAL)?;
    // The suite measures hypercalls: with no hypervisor underneath (native) there is nothing to measure
    // (the arguments are still checked first, like every system call's).
    if ops().hypervisor_info().is_none() {
        return Err(Errno::ENOSYS);
    }
    let opts = crate::bench::Options {
        iterations: iterations as usize,
        filter: (!filter.is_empty()).then_some(filter),
        solo: true,
        quiet,
    };
    // The suite enters ring 3 itself (its harness) and switches address spaces: give it the boot trap
    // stack, then put the process's stack and address space back.
    let kstack_top = kernel::with_current(|q| q.res.kstack.top()).ok_or(Errno::ESRCH)?;
    ops().set_kernel_stack(crate::trap::dispatch::trap_stack_top())?;
    // The suite runs as the boot context does, with events enabled (its `evtchn_send_self` counts
    // upcalls); event handlers only set flags while it runs, no process is switched in.
    ops().irq_restore(true);
    let code = crate::bench::runner::run(&opts);
    ops().irq_disable();
    ops().set_kernel_stack(kstack_top)?;
    let env = kernel::env();
    kernel::with_current(|q| q.res.space.as_mut().map(|s| s.switch_to(&env)))
        .flatten()
        .ok_or(Errno::ESRCH)?
        .map_err(|_| Errno::EFAULT)?;
    ops().irq_disable();
    Ok(u64::from(code))
}
