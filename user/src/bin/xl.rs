//! `xl`: domain 0's toolstack — list, create, destroy, pause and unpause domains, give one the console
//! (see `user::xl`).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use user::xl::{self, Xl};
use user::{eprintln, println, sys};

user::main!(main);

fn main(args: &str) -> i32 {
    let cmd = match xl::parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xl: {e}");
            eprintln!("{}", xl::USAGE);
            return 2;
        }
    };
    let result = match cmd {
        Xl::Help => {
            println!("{}", xl::USAGE);
            Ok(())
        }
        Xl::List => list(),
        Xl::Create {
            image,
            mem_kb,
            paused,
            cmdline,
            count,
        } => create(image, mem_kb, paused, cmdline, count),
        Xl::Destroy(ids) => each(ids, uapi::domctl::op::DESTROY, "destroyed"),
        Xl::Pause(ids) => each(ids, uapi::domctl::op::PAUSE, "paused"),
        Xl::Unpause(ids) => each(ids, uapi::domctl::op::UNPAUSE, "unpaused"),
        Xl::MemMax(d, kb) => control(uapi::domctl::op::MAX_MEM, d, kb, "memory ceiling set"),
        Xl::Console(d) => control(
            uapi::domctl::op::CONSOLE,
            d,
            0,
            "has the console input now (Ctrl-] c brings it back to domain 0)",
        ),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("xl: {} ({e})", xl::error_text(e));
            1
        }
    }
}

fn list() -> Result<(), uapi::Errno> {
    let mut buf = [uapi::DomInfo::default(); 16];
    let mut first = 0u16;
    println!(
        "{:>4} {:<9} {:>8} {:>8} {:>5} {:>12} {}",
        "ID", "STATE", "MEM(KiB)", "MAX(KiB)", "VCPUS", "TIME(s)", "MODE"
    );
    let mut total = 0;
    loop {
        let n = sys::dom_list(first, &mut buf)?;
        for d in &buf[..n] {
            println!(
                "{:>4} {:<9} {:>8} {:>8} {:>5} {:>12} {}",
                d.domid,
                xl::state(d.flags),
                d.tot_pages * 4,
                d.max_pages * 4,
                d.nr_vcpus,
                user::display::Secs(d.cpu_time_ns),
                if d.flags & uapi::dominf::HVM_GUEST != 0 {
                    "hvm"
                } else {
                    "pv"
                }
            );
        }
        total += n;
        if n < buf.len() {
            break;
        }
        first = (buf[n - 1].domid + 1) as u16;
    }
    println!("{total} domain(s)");
    Ok(())
}

fn create(
    image: &str,
    mem_kb: u64,
    paused: bool,
    cmdline: &str,
    count: u32,
) -> Result<(), uapi::Errno> {
    let flags = if paused {
        uapi::domctl::CREATE_PAUSED
    } else {
        0
    };
    let req =
        uapi::domctl::DomCreate::new(image, mem_kb, cmdline, flags).ok_or(uapi::Errno::EINVAL)?;
    for made in 0..count {
        let id = match sys::dom_create(&req) {
            Ok(id) => id,
            Err(e) => {
                if count > 1 {
                    println!("xl: created {made} of {count} domain(s)");
                }
                return Err(e);
            }
        };
        if count == 1 {
            println!(
                "xl: created domain {id} from image '{image}' ({} MiB{}), command line '{cmdline}'",
                mem_kb / 1024,
                if paused { ", paused" } else { "" }
            );
        } else if made + 1 == count {
            println!("xl: created {count} domain(s) from image '{image}', the last is domain {id}");
        }
    }
    Ok(())
}

/// `op` on every domain of `ids`; the first error is returned after trying them all.
fn each(ids: xl::Ids, op: u64, done: &str) -> Result<(), uapi::Errno> {
    let mut first_error = None;
    for d in ids.iter() {
        if let Err(e) = control(op, d, 0, done) {
            if ids.first != ids.last {
                eprintln!("xl: domain {d}: {}", xl::error_text(e));
            }
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn control(op: u64, d: u16, arg: u64, done: &str) -> Result<(), uapi::Errno> {
    sys::dom_control(op, u64::from(d), arg)?;
    println!("xl: domain {d} {done}");
    Ok(())
}
