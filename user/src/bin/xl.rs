//! `xl`: domain 0's toolstack — list, create, destroy, pause and unpause domains, give one the console,
//! save, snapshot, restore and clone them (see `user::xl`).
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
        Xl::List => list().map_err(Failure::Plain),
        Xl::Create {
            image,
            mem_kb,
            paused,
            cmdline,
            count,
        } => create(image, mem_kb, paused, cmdline, count).map_err(Failure::Plain),
        Xl::Destroy(ids) => {
            each(ids, uapi::domctl::op::DESTROY, "destroyed").map_err(Failure::Plain)
        }
        Xl::Pause(ids) => each(ids, uapi::domctl::op::PAUSE, "paused").map_err(Failure::Plain),
        Xl::Unpause(ids) => {
            each(ids, uapi::domctl::op::UNPAUSE, "unpaused").map_err(Failure::Plain)
        }
        Xl::MemMax(d, kb) => {
            control(uapi::domctl::op::MAX_MEM, d, kb, "memory ceiling set").map_err(Failure::Plain)
        }
        Xl::Console(d) => control(
            uapi::domctl::op::CONSOLE,
            d,
            0,
            "has the console input now (Ctrl-] c brings it back to domain 0)",
        )
        .map_err(Failure::Plain),
        Xl::Save { id, name, keep } => save(id, name, keep).map_err(Failure::Image),
        Xl::Restore { name, paused } => restore(name, paused).map_err(Failure::Image),
        Xl::Clone(id) => clone(id).map_err(Failure::Image),
        Xl::Images => images().map_err(Failure::Image),
        Xl::ImageRm(name) => sys::dom_image(uapi::domctl::image::DELETE, 0, name, 0)
            .map(|_| println!("xl: image '{name}' removed"))
            .map_err(Failure::Image),
        Xl::ImageDump(name) => sys::dom_image(uapi::domctl::image::DUMP, 0, name, 0)
            .map(|_| println!("xl: image '{name}' written to the serial line"))
            .map_err(Failure::Image),
        Xl::Migrate { id, verify } => migrate(id, verify).map_err(Failure::Image),
        Xl::MigrateReceive => sys::dom_image(uapi::domctl::image::MIGRATE_RECEIVE, 0, "m", 0)
            .map(|r| {
                println!(
                    "xl: migrate-receive: domain {} runs here ({} pages received)",
                    r & 0xffff,
                    r >> 32
                )
            })
            .map_err(Failure::Image),
    };
    match result {
        Ok(()) => 0,
        Err(Failure::Plain(e)) => {
            eprintln!("xl: {} ({e})", xl::error_text(e));
            1
        }
        Err(Failure::Image(e)) => {
            eprintln!("xl: {} ({e})", xl::image_error_text(e));
            1
        }
    }
}

/// An error and which table explains it.
enum Failure {
    Plain(uapi::Errno),
    Image(uapi::Errno),
}

/// How long a domain has to answer a suspend request.
const SUSPEND_TIMEOUT_NS: u64 = 10_000_000_000;

/// The state flags of domain `id`, if it exists.
fn flags_of(id: u16) -> Result<Option<u32>, uapi::Errno> {
    let mut buf = [uapi::DomInfo::default(); 1];
    let n = sys::dom_list(id, &mut buf)?;
    Ok((n == 1 && buf[0].domid == u32::from(id)).then_some(buf[0].flags))
}

/// Ask domain `id` to suspend and wait until it has (Xen's toolstack waits the same way); on a timeout
/// the request is withdrawn.
fn suspend(id: u16) -> Result<(), uapi::Errno> {
    sys::dom_control(uapi::domctl::op::SUSPEND, u64::from(id), 0)?;
    let start = sys::uptime()?;
    loop {
        match flags_of(id)? {
            Some(f) if xl::suspended(f) => return Ok(()),
            Some(_) => {}
            None => return Err(uapi::Errno::ESRCH),
        }
        if sys::uptime()?.saturating_sub(start) > SUSPEND_TIMEOUT_NS {
            let _ = sys::dom_control(uapi::domctl::op::RESUME, u64::from(id), 0);
            return Err(uapi::Errno::ETIMEDOUT);
        }
        // The guest suspends at its next scheduling decision, usually well within a millisecond: a
        // coarser poll added its whole period to a migration's downtime.
        let _ = sys::sleep_ns(1_000_000);
    }
}

/// Suspend `id`, save it as `name`; then resume it (`keep`: a snapshot) or destroy it (a save). If the save
/// fails the domain is resumed: the source is never lost.
fn save_as(id: u16, name: &str, keep: bool) -> Result<u64, uapi::Errno> {
    suspend(id)?;
    let saved = sys::dom_image(uapi::domctl::image::SAVE, id, name, 0);
    if keep || saved.is_err() {
        sys::dom_control(uapi::domctl::op::RESUME, u64::from(id), 0)?;
    } else {
        sys::dom_control(uapi::domctl::op::DESTROY, u64::from(id), 0)?;
    }
    saved
}

fn save(id: u16, name: &str, keep: bool) -> Result<(), uapi::Errno> {
    let t0 = sys::uptime()?;
    let bytes = save_as(id, name, keep)?;
    let ms = (sys::uptime()? - t0) / 1_000_000;
    if keep {
        println!(
            "xl: snapshot of domain {id} saved as '{name}' ({} KiB, {ms} ms); domain {id} continues",
            bytes / 1024
        );
    } else {
        println!(
            "xl: domain {id} saved as '{name}' ({} KiB, {ms} ms) and destroyed",
            bytes / 1024
        );
    }
    Ok(())
}

fn restore(name: &str, paused: bool) -> Result<(), uapi::Errno> {
    let t0 = sys::uptime()?;
    let id = sys::dom_image(uapi::domctl::image::RESTORE, 0, name, u64::from(paused))?;
    let ms = (sys::uptime()? - t0) / 1_000_000;
    println!(
        "xl: restored domain {id} from image '{name}' ({ms} ms{})",
        if paused { ", paused" } else { "" }
    );
    Ok(())
}

/// A snapshot of `id` restored as a new domain; the snapshot image is dropped afterwards.
fn clone(id: u16) -> Result<(), uapi::Errno> {
    let mut name = user::io::StrBuf::<16>::new();
    let _ = core::fmt::Write::write_fmt(&mut name, format_args!(".clone-{id}"));
    let name = name.as_str();
    save_as(id, name, true)?;
    let made = sys::dom_image(uapi::domctl::image::RESTORE, 0, name, 0);
    let _ = sys::dom_image(uapi::domctl::image::DELETE, 0, name, 0);
    println!("xl: domain {id} cloned as domain {}", made?);
    Ok(())
}

fn images() -> Result<(), uapi::Errno> {
    let mut buf = [uapi::domctl::ImageInfo::default(); uapi::domctl::MAX_SAVED_IMAGES];
    let n = sys::dom_images(&mut buf)?;
    println!("{:<16} {:>10} {:>7} {:>6}", "NAME", "KiB", "PAGES", "FROM");
    for i in &buf[..n] {
        let len = i.name.iter().position(|&b| b == 0).unwrap_or(i.name.len());
        let name = core::str::from_utf8(&i.name[..len]).unwrap_or("?");
        println!(
            "{name:<16} {:>10} {:>7} {:>6}",
            i.bytes / 1024,
            i.pages,
            i.source
        );
    }
    println!("{n} image(s)");
    Ok(())
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

/// Most pre-copy rounds after the first: round 0, at most 3 more and the stop-and-copy are 5 rounds in all.
const MAX_ROUNDS: u64 = 3;
/// A round that sends at most this many pages ends the pre-copy (converged).
const CONVERGED_PAGES: u64 = 64;
/// The domain runs this long between two rounds.
const ROUND_GAP_NS: u64 = 200_000_000;

fn migrate_phase(id: u16, phase: u32) -> Result<u64, uapi::Errno> {
    sys::dom_image(uapi::domctl::image::MIGRATE, id, "m", u64::from(phase))
}

/// `xl migrate`: pre-copy rounds while the domain runs (until one sends at most [`CONVERGED_PAGES`], the
/// dirty set stops shrinking, or [`MAX_ROUNDS`]: `xl::precopy_stop`), then suspend, the stop-and-copy and the
/// destination's confirmation; the domain is destroyed here only after it. On any failure the domain
/// continues here (resumed if it was suspended).
fn migrate(id: u16, verify: bool) -> Result<(), uapi::Errno> {
    let t0 = sys::uptime()?;
    let mut pages = match migrate_phase(id, uapi::domctl::image::MIGRATE_START) {
        Ok(p) => p,
        Err(e) => {
            if e != uapi::Errno::ESRCH {
                println!("xl: migrate: round 0 failed; domain {id} continues here");
            }
            return Err(e);
        }
    };
    println!("xl: migrate: round 0: {pages} pages");
    let mut round = 0;
    let mut before = None;
    let stop = loop {
        if let Some(stop) = xl::precopy_stop(round, before, pages, MAX_ROUNDS, CONVERGED_PAGES) {
            break stop;
        }
        let _ = sys::sleep_ns(ROUND_GAP_NS);
        round += 1;
        before = Some(pages);
        pages = match migrate_phase(id, uapi::domctl::image::MIGRATE_ROUND) {
            Ok(p) => p,
            Err(e) => {
                println!("xl: migrate: round {round} failed; domain {id} continues here");
                return Err(e);
            }
        };
        println!("xl: migrate: round {round}: {pages} pages");
    };
    println!("xl: migrate: pre-copy {stop}");
    let _ = sys::sleep_ns(ROUND_GAP_NS);
    let t_suspend = sys::uptime()?;
    if let Err(e) = suspend(id) {
        let _ = migrate_phase(id, uapi::domctl::image::MIGRATE_CANCEL);
        println!("xl: migrate: domain {id} did not suspend; it continues here");
        return Err(e);
    }
    let verify = if verify {
        uapi::domctl::image::MIGRATE_VERIFY
    } else {
        0
    };
    match migrate_phase(id, uapi::domctl::image::MIGRATE_FINAL | verify) {
        Ok(r) => {
            let t1 = sys::uptime()?;
            sys::dom_control(uapi::domctl::op::DESTROY, u64::from(id), 0)?;
            println!(
                "xl: migrate: stop-and-copy: {} pages; domain {id} runs on the destination as domain {}; downtime {} us (suspend to confirmation, source clock); {} rounds, {} ms in all",
                r & 0xffff_ffff,
                r >> 32,
                (t1 - t_suspend) / 1000,
                round + 2,
                (t1 - t0) / 1_000_000
            );
            Ok(())
        }
        Err(e) => {
            let _ = sys::dom_control(uapi::domctl::op::RESUME, u64::from(id), 0);
            println!("xl: migrate: the destination did not take domain {id}; it continues here");
            Err(e)
        }
    }
}
