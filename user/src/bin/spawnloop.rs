//! `spawnloop N`: spawns `exitcode <i % 200>` N times, one after the other, reaping each and checking its
//! status; finally checks that no child is left (`wait` gives -ECHILD). Exercises process creation and
//! teardown (pages, pids, table slots) N times over.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::fmt::Write;

use user::io::StrBuf;
use user::{Errno, eprintln, num, println, sys};

user::main!(main);

fn main(args: &str) -> i32 {
    let Some(n) = num::single_arg(args, num::parse_u64) else {
        eprintln!("usage: spawnloop N");
        return 2;
    };
    let mut arg = StrBuf::<8>::new();
    for i in 0..n {
        let want = (i % 200) as u32;
        arg.clear();
        let _ = write!(arg, "{want}");
        let pid = match sys::spawn("exitcode", arg.as_str(), 0) {
            Ok(pid) => pid,
            Err(e) => return failed(format_args!("spawn #{i}: {e}")),
        };
        match sys::wait(u64::from(pid), 0) {
            Ok((got, status)) if got == pid && status == want => {}
            Ok((got, status)) => {
                return failed(format_args!(
                    "child #{i}: wait gave pid {got} status {status}, expected pid {pid} status {want}"
                ));
            }
            Err(e) => return failed(format_args!("wait for child #{i} (pid {pid}): {e}")),
        }
    }
    match sys::wait(sys::ANY_CHILD, uapi::WNOHANG) {
        Err(Errno::ECHILD) => {}
        other => return failed(format_args!("final wait gave {other:?}, expected ECHILD")),
    }
    println!("spawnloop: {n} children spawned and reaped, every exit status right");
    0
}

fn failed(detail: core::fmt::Arguments<'_>) -> i32 {
    println!("spawnloop: FAILED {detail}");
    1
}
