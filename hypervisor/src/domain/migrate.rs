//! Live migration of a PV domain over the link `migrate_link` opens (a virtio console, else the second
//! serial line; frames of `abi::save::mig`), see docs/ARCHITECTURE.md, "Live migration".
//!
//! Source ([`migrate`], one phase per `XEN_DOMCTL_MIGRATE` from domain 0's `xl migrate`, the domain running
//! between calls): START turns log-dirty on (`mm::logdirty`: the domain's writable mappings are
//! write-protected) and sends every page (round 0); each ROUND harvests the pages written since the last
//! harvest (`logdirty_ctl::clean`) and sends those that are data pages, each round answered by the
//! destination's ACK; FINAL, once the domain has suspended through the save protocol, harvests a last
//! time, turns log-dirty off and sends the tail — a save image (`save::encode`) holding everything except
//! the data pages the destination already has (not written since they were sent) — and waits for DONE
//! (the caller then destroys its copy) or REFUSED / silence (the caller resumes it). With
//! `MIGRATE_VERIFY` the tail also carries every data page's digest ([`mig::VERIFY`]), which the
//! destination checks against the pages it joined. Every way out turns log-dirty off. Destination
//! ([`receive`], `xl migrate-receive`): keeps the pages by pfn in a run of frames, then restores the tail's
//! records on top of them through `save_restore` (the checks of `xl restore`), the new domain adopting the
//! received frames in place; every failure frees all it received.

use abi::domctl::{
    MIGRATE_CANCEL, MIGRATE_FINAL, MIGRATE_ROUND, MIGRATE_START, MIGRATE_VERIFY, VIRQ_SUSPEND,
};
use abi::errno::Errno;
use abi::save::RecordKind;
use abi::save::mig;
use abi::types::Mfn;

use super::logdirty_ctl;
use super::migrate_link::{
    self as link, ACK_TIMEOUT_NS, DONE_TIMEOUT_NS, FIRST_TIMEOUT_NS, IDLE_TIMEOUT_NS, SEC, next,
    open, send,
};
use super::migrate_track::{Pfns, digest};
use super::save::{encode, frame, free_run, image_bound, is_zero_page, now, run_mut};
use super::save_restore::{Frames, Restored, restore};
use super::state::Suspend;
use crate::mm::machine::Machine;
use crate::setup::{DOMAINS, EVENTS, MACHINE, MAX_DOMAIN_PAGES};

/// The migration under way on the source: domain, next round.
static SOURCE: spin::Mutex<Option<(u16, u64)>> = spin::Mutex::new(None);
/// Per pfn, the destination holds the page as a data page (source side): sent since it last was a page
/// table, and every write since then is in the log-dirty harvest.
static SENT: spin::Mutex<[u64; MAX_DOMAIN_PAGES / 64]> =
    spin::Mutex::new([0; MAX_DOMAIN_PAGES / 64]);
/// Per pfn, written since the last harvest (source side).
static DIRTY: spin::Mutex<[u64; MAX_DOMAIN_PAGES / 64]> =
    spin::Mutex::new([0; MAX_DOMAIN_PAGES / 64]);
/// Source, verifying tail: (pfn, digest) of every data page.
static VERIFY_OUT: spin::Mutex<[(u64, u64); MAX_DOMAIN_PAGES]> =
    spin::Mutex::new([(0, 0); MAX_DOMAIN_PAGES]);
/// Destination: per pfn, the digest the source's verifying tail gave (0: none).
static VERIFY_IN: spin::Mutex<[u64; MAX_DOMAIN_PAGES]> = spin::Mutex::new([0; MAX_DOMAIN_PAGES]);
/// Per pfn, received (destination side), and in the tail.
static HAVE: spin::Mutex<[u64; MAX_DOMAIN_PAGES / 64]> =
    spin::Mutex::new([0; MAX_DOMAIN_PAGES / 64]);
static IN_TAIL: spin::Mutex<[u64; MAX_DOMAIN_PAGES / 64]> =
    spin::Mutex::new([0; MAX_DOMAIN_PAGES / 64]);
/// Destination: per pfn, its received frame was handed to the restored domain.
static TAKEN: spin::Mutex<[u64; MAX_DOMAIN_PAGES / 64]> =
    spin::Mutex::new([0; MAX_DOMAIN_PAGES / 64]);
/// Source: pfn → mfn of the round being sent.
static MFN_OF: spin::Mutex<[u64; MAX_DOMAIN_PAGES]> = spin::Mutex::new([0; MAX_DOMAIN_PAGES]);
/// Destination: (digest, frame) of the receiving machine's domain-0 pages, sorted: a page sent by digest
/// ([`mig::HASH`]) is copied from there (the same kernel runs on both machines).
static INDEX: spin::Mutex<[(u64, u64); MAX_INDEX]> = spin::Mutex::new([(0, 0); MAX_INDEX]);
const MAX_INDEX: usize = 16384;
/// Destination: pfns of the round not matched by digest.
static MISSED: spin::Mutex<[u64; MAX_DOMAIN_PAGES]> = spin::Mutex::new([0; MAX_DOMAIN_PAGES]);

/// `XEN_DOMCTL_MIGRATE` phase `phase` for domain `id`: (pages sent, destination's domain id).
pub fn migrate(id: u16, phase: u32) -> Result<(u64, u16), Errno> {
    let verify = phase & MIGRATE_VERIFY != 0;
    let phase = phase & !MIGRATE_VERIFY;
    let mut src = SOURCE.lock();
    match phase {
        MIGRATE_START => {
            if let Some((other, _)) = *src {
                let alive = DOMAINS
                    .lock()
                    .slots
                    .get(usize::from(other))
                    .and_then(Option::as_ref)
                    .is_some_and(|d| d.runnable());
                if alive {
                    log::warn!("migrate: domain {other} is being migrated already");
                    return Err(Errno::EBUSY);
                }
            }
            {
                let table = DOMAINS.lock();
                let d = table.live(id)?;
                if d.kind() != super::kind::DomainKind::Pv
                    || EVENTS.lock().virq_port(id, VIRQ_SUSPEND).is_none()
                {
                    return Err(Errno::EOPNOTSUPP);
                }
                if d.suspend != Suspend::No {
                    return Err(Errno::EBUSY);
                }
            }
            open()?;
            SENT.lock().fill(0);
            let nr = scan_nr(id)?;
            // Log-dirty first: a page written while round 0 runs is sent again in round 1.
            logdirty_ctl::enable_for_migration(id)?;
            if let Err(e) = send(mig::START, &[&nr.to_le_bytes()]) {
                logdirty_ctl::disable(id);
                return Err(e);
            }
            *src = Some((id, 0));
            log::info!("migrate: domain {id} ({nr} pfns) to {}", link::name());
        }
        MIGRATE_ROUND | MIGRATE_FINAL | MIGRATE_CANCEL => {
            if src.map(|s| s.0) != Some(id) {
                return Err(Errno::EINVAL);
            }
        }
        _ => return Err(Errno::EINVAL),
    }
    let round = src.map_or(0, |s| s.1);
    let result = match phase {
        MIGRATE_CANCEL => Err(Errno::EINTR),
        MIGRATE_FINAL => tail(id, verify).map(|(p, d)| (p, d, true)),
        _ => precopy(id, round).map(|p| (p, 0, false)),
    };
    match result {
        Ok((pages, dest, done)) => {
            if done {
                logdirty_ctl::disable(id);
            }
            *src = if done { None } else { Some((id, round + 1)) };
            Ok((pages, dest))
        }
        Err(e) => {
            let _ = send(mig::ABORT, &[]);
            // The domain stays here: never left write-protected.
            logdirty_ctl::disable(id);
            *src = None;
            if phase == MIGRATE_CANCEL {
                log::info!("migrate: domain {id}: migration cancelled; it stays here");
                return Ok((0, 0));
            }
            log::warn!("migrate: domain {id}: migration abandoned ({e:?}); it stays here");
            Err(e)
        }
    }
}

/// The P2M length to announce: one past the highest pfn of the domain's frames.
fn scan_nr(id: u16) -> Result<u64, Errno> {
    let machine = MACHINE.lock();
    let m = machine.as_ref().ok_or(Errno::EIO)?;
    let mut nr = 0;
    for f in 0..m.ft.len() as u64 {
        if m.ft.owner(Mfn(f)) == Some(id)
            && let Some(p) = m.m2p.get(Mfn(f))
            && p.0 < MAX_DOMAIN_PAGES as u64
        {
            nr = nr.max(p.0 + 1);
        }
    }
    if nr == 0 { Err(Errno::EINVAL) } else { Ok(nr) }
}

fn is_table(m: &Machine<'_>, mfn: Mfn) -> bool {
    m.ft.info(mfn)
        .is_some_and(|i| i.ty.level().is_some() && i.type_count > 0 && i.is_validated())
}

/// The harvest: the pfns written since the last one into [`DIRTY`]; how many.
fn harvest(id: u16) -> Result<u64, Errno> {
    let mut dirty = DIRTY.lock();
    dirty.fill(0);
    let mut set = Pfns(&mut dirty[..]);
    let (n, faults) = logdirty_ctl::clean(id, false, |pfn| set.set(pfn))?;
    log::debug!("migrate: domain {id}: harvest: {n} pages written, {faults} write faults");
    Ok(u64::from(n))
}

/// One pre-copy round: round 0 every data page, later rounds the data pages written since the last
/// harvest (and any the destination does not hold: a former page table, a new frame); then ROUND_END and
/// the ACK.
fn precopy(id: u16, round: u64) -> Result<u64, Errno> {
    let t0 = now();
    let mut pages = 0u64;
    if round > 0 {
        harvest(id)?;
    }
    {
        let table = DOMAINS.lock();
        let d = table
            .slots
            .get(usize::from(id))
            .and_then(Option::as_ref)
            .filter(|d| d.runnable() && d.suspend == Suspend::No)
            .ok_or(Errno::ESRCH)?;
        let shared = d.mm.shared_info;
        let machine = MACHINE.lock();
        let m = machine.as_ref().ok_or(Errno::EIO)?;
        let mut sent = SENT.lock();
        let mut sent = Pfns(&mut sent[..]);
        let mut dirty = DIRTY.lock();
        let dirty = Pfns(&mut dirty[..]);
        let mut mfn_of = MFN_OF.lock();
        for f in 0..m.ft.len() as u64 {
            let mfn = Mfn(f);
            if m.ft.owner(mfn) != Some(id) || mfn == shared {
                continue;
            }
            let Some(pfn) = m.m2p.get(mfn).map(|p| p.0) else {
                continue;
            };
            if is_table(m, mfn) {
                sent.clear(pfn);
                continue;
            }
            if sent.get(pfn) && !dirty.get(pfn) {
                continue;
            }
            sent.set(pfn);
            let bytes = frame(mfn);
            if is_zero_page(bytes) {
                send(mig::ZERO, &[&pfn.to_le_bytes()])?;
            } else {
                if let Some(slot) = mfn_of.get_mut(pfn as usize) {
                    *slot = f;
                }
                send(
                    mig::HASH,
                    &[&pfn.to_le_bytes(), &digest(bytes).to_le_bytes()],
                )?;
            }
            pages += 1;
        }
    }
    send(
        mig::ROUND_END,
        &[&round.to_le_bytes(), &pages.to_le_bytes()],
    )?;
    let t_sent = now();
    // The pages the destination could not match by digest, as PAGEs, until its ACK.
    let mut resent = 0u64;
    let ack = loop {
        let mut list = [0u64; 512];
        let (k, w, n) = next(ACK_TIMEOUT_NS, |k, p| {
            let n = if k == mig::MISSING { p.len() / 8 } else { 0 };
            for (i, l) in list.iter_mut().enumerate().take(n) {
                *l = mig::word(p, i * 8);
            }
            (k, mig::word(p, 0), n)
        })
        .inspect_err(|_| {
            log::warn!(
                "migrate: round {round}: {pages} pages written in {} ms; no answer for {} ms",
                (t_sent - t0) / 1_000_000,
                (now() - t_sent) / 1_000_000
            )
        })?;
        if k != mig::MISSING {
            break (k, w);
        }
        let mfn_of = MFN_OF.lock();
        for &pfn in &list[..n] {
            let f = mfn_of.get(pfn as usize).copied().unwrap_or(0);
            if f == 0 {
                return Err(Errno::EIO);
            }
            send(mig::PAGE, &[&pfn.to_le_bytes(), &frame(Mfn(f))[..]])?;
            resent += 1;
        }
    };
    if ack != (mig::ACK, round) {
        log::warn!("migrate: round {round}: the destination answered {ack:?}");
        return Err(Errno::EIO);
    }
    log::info!(
        "migrate: domain {id}: round {round}: {pages} pages ({resent} not found by digest at the destination), {} ms",
        (now() - t0) / 1_000_000
    );
    Ok(pages)
}

/// The stop-and-copy: the last harvest, log-dirty off (the tables go as the guest wrote them), the
/// suspended domain's tail image (with `verify`, every data page's digest too), then the destination's
/// verdict.
fn tail(id: u16, verify: bool) -> Result<(u64, u16), Errno> {
    let t0 = now();
    let mut data = 0u64;
    harvest(id)?;
    logdirty_ctl::disable(id);
    let mut nverify = 0usize;
    let (len, tables) = {
        let table = DOMAINS.lock();
        let d = table.live(id)?;
        let Suspend::Suspended(si) = d.suspend else {
            return Err(Errno::EINVAL);
        };
        let mut machine = MACHINE.lock();
        let m = machine.as_mut().ok_or(Errno::EIO)?;
        let mut sent = SENT.lock();
        let sent = Pfns(&mut sent[..]);
        let mut dirty = DIRTY.lock();
        let dirty = Pfns(&mut dirty[..]);
        let si_pfn = m.m2p.get(si).map(|p| p.0);
        // Written since sent, never sent as data, or the start info (the suspend wrote it).
        let goes = |pfn: u64| dirty.get(pfn) || !sent.get(pfn) || Some(pfn) == si_pfn;
        // The buffer for the tail only (a whole image's bound read every page of the domain).
        let frames = image_bound(m, id, d.mm.shared_info, goes).div_ceil(4096);
        let first = m.frames.alloc_run(frames).ok_or(Errno::ENOMEM)?;
        let buf = run_mut(first, frames);
        let mut digests = VERIFY_OUT.lock();
        let (r, _, tables) = encode(d, si, m, buf, &mut |pfn, bytes| {
            if verify && let Some(slot) = digests.get_mut(nverify) {
                *slot = (pfn, digest(bytes));
                nverify += 1;
            }
            let c = goes(pfn);
            data += u64::from(c);
            c
        });
        let r = r.and_then(|len| {
            let img = &buf[..len];
            send(mig::TAIL_BEGIN, &[&(len as u64).to_le_bytes()])?;
            // Only the runs of non-zero 64-byte blocks (canonical page tables are mostly zeros); the
            // destination starts from zeros and checks the whole image's FNV-1a at the end.
            let mut at = 0;
            while at < img.len() {
                let blk = |i: usize| {
                    img[i..(i + 64).min(img.len())]
                        .chunks(8)
                        .fold(0u64, |a, w| {
                            let mut b = [0u8; 8];
                            b[..w.len()].copy_from_slice(w);
                            a | u64::from_le_bytes(b)
                        })
                        != 0
                };
                if !blk(at) {
                    at += 64;
                    continue;
                }
                let mut end = at;
                while end < img.len() && end - at < 4096 && blk(end) {
                    end = (end + 64).min(img.len());
                }
                send(mig::TAIL, &[&(at as u64).to_le_bytes(), &img[at..end]])?;
                at = end;
            }
            for chunk in digests[..nverify].chunks(256) {
                let mut b = [0u8; 4096];
                for (i, (pfn, d)) in chunk.iter().enumerate() {
                    b[i * 16..i * 16 + 8].copy_from_slice(&pfn.to_le_bytes());
                    b[i * 16 + 8..i * 16 + 16].copy_from_slice(&d.to_le_bytes());
                }
                send(mig::VERIFY, &[&b[..chunk.len() * 16]])?;
            }
            let sum = abi::save::wire::fnv(abi::save::wire::FNV_START, img);
            send(
                mig::TAIL_END,
                &[&(len as u64).to_le_bytes(), &sum.to_le_bytes()],
            )?;
            Ok(len)
        });
        free_run(m, first, frames);
        (r?, tables)
    };
    let sent_ms = (now() - t0) / 1_000_000;
    let (kind, word) = next(DONE_TIMEOUT_NS, |k, p| (k, mig::word(p, 0)))?;
    match kind {
        mig::DONE => {
            log::info!(
                "migrate: domain {id}: stop-and-copy: {data} data pages + {tables} page tables, {len} bytes sent in {sent_ms} ms{}; running on the destination as domain {word} ({} ms after the suspend)",
                if verify {
                    " (every data page verified at the destination)"
                } else {
                    ""
                },
                (now() - t0) / 1_000_000
            );
            Ok((data + tables, word as u16))
        }
        mig::REFUSED => {
            log::warn!("migrate: the destination refused the image (errno {word})");
            Err(Errno::EINVAL)
        }
        k => {
            log::warn!("migrate: the destination answered kind {k}");
            Err(Errno::EIO)
        }
    }
}

fn bit(map: &mut [u64], i: u64, set: bool) -> bool {
    let (w, b) = ((i / 64) as usize, i % 64);
    let was = map[w] & (1 << b) != 0;
    if set {
        map[w] |= 1 << b;
    }
    was
}

/// What the destination holds so far.
struct Incoming {
    pages: Option<(Mfn, u64)>,
    tail: Option<(Mfn, u64, u64, u64)>,
    received: u64,
    indexed: usize,
    missed: usize,
    /// Digests received in [`mig::VERIFY`] frames.
    verify: usize,
}

impl Incoming {
    fn free(&mut self) {
        let mut machine = MACHINE.lock();
        if let Some(m) = machine.as_mut() {
            if let Some((first, n)) = self.pages.take() {
                // Every frame of the run the restored domain did not adopt.
                let taken = TAKEN.lock();
                for pfn in (0..n).filter(|&p| !test(&taken[..], p)) {
                    free_run(m, Mfn(first.0 + pfn), 1);
                }
            }
            if let Some((first, n, _, _)) = self.tail.take() {
                free_run(m, first, n);
            }
        }
    }
}

/// `XEN_DOMCTL_MIGRATE_RECEIVE`: take one migration from the link; (new domain id, pages received).
pub fn receive() -> Result<(u16, u64), Errno> {
    open()?;
    HAVE.lock().fill(0);
    VERIFY_IN.lock().fill(0);
    TAKEN.lock().fill(0);
    log::info!("migrate: waiting for a migration on {}", link::name());
    let mut inc = Incoming {
        pages: None,
        tail: None,
        received: 0,
        indexed: 0,
        missed: 0,
        verify: 0,
    };
    let r = receive_into(&mut inc);
    inc.free();
    if let Err(e) = r {
        log::warn!("migrate: incoming migration dropped ({e:?}); nothing of it is kept");
    }
    r
}

enum Step {
    More,
    Tail(u64, u64),
    Abort,
}

fn receive_into(inc: &mut Incoming) -> Result<(u16, u64), Errno> {
    let mut timeout = FIRST_TIMEOUT_NS;
    let mut t_tail = 0;
    loop {
        let t0 = now();
        let step = next(timeout, |k, p| {
            receive_frame(inc, k, p)
                .inspect_err(|e| log::warn!("migrate: a frame of kind {k} refused ({e:?})"))
        })
        .inspect_err(|_| {
            if now().saturating_sub(t0) >= timeout {
                log::warn!(
                    "migrate: the stream went silent ({} s without a frame)",
                    timeout / SEC
                );
            }
        })??;
        timeout = IDLE_TIMEOUT_NS;
        match step {
            Step::More => {
                if t_tail == 0 && inc.tail.is_some() {
                    t_tail = now();
                }
            }
            Step::Abort => return Err(Errno::EINTR),
            Step::Tail(len, sum) => {
                let t_end = now();
                let mut checked = 0;
                let r = restore_received(inc, len, sum, &mut checked);
                let t_restored = now();
                let _ = match &r {
                    Ok(d) => send(mig::DONE, &[&u64::from(d.id).to_le_bytes()]),
                    Err(e) => send(mig::REFUSED, &[&(*e as i64 as u64).to_le_bytes()]),
                };
                let t_done = now();
                // Logged after the confirmation: the serial console is slow.
                let r = r?;
                r.log(&"the migration stream");
                let id = r.id;
                let us = |a: u64, b: u64| b.saturating_sub(a) / 1000;
                log::info!(
                    "migrate: domain {id} runs here: {} pages received, tail to resume {} ms (receiving the tail {} us, checking it {} us, restoring {} us, confirming {} us)",
                    inc.received,
                    (t_done - t_tail) / 1_000_000,
                    us(t_tail, t_end),
                    checked,
                    us(t_end, t_restored).saturating_sub(checked),
                    us(t_restored, t_done),
                );
                return Ok((id, inc.received));
            }
        }
    }
}

fn receive_frame(inc: &mut Incoming, kind: u8, p: &[u8]) -> Result<Step, Errno> {
    let w0 = mig::word(p, 0);
    match kind {
        mig::START if inc.pages.is_none() => {
            if w0 == 0 || w0 > MAX_DOMAIN_PAGES as u64 {
                return Err(Errno::EINVAL);
            }
            let mut machine = MACHINE.lock();
            let m = machine.as_mut().ok_or(Errno::EIO)?;
            let first = m.frames.alloc_run(w0).ok_or(Errno::ENOMEM)?;
            inc.pages = Some((first, w0));
            // The receiving domain 0's pages by digest.
            let mut index = INDEX.lock();
            let mut n = 0;
            for f in 0..m.ft.len() as u64 {
                if n < MAX_INDEX && m.ft.owner(Mfn(f)) == Some(0) && !is_table(m, Mfn(f)) {
                    index[n] = (digest(frame(Mfn(f))), f);
                    n += 1;
                }
            }
            index[..n].sort_unstable();
            inc.indexed = n;
            log::info!(
                "migrate: incoming domain of {w0} pfns (t={} ms)",
                now() / 1_000_000
            );
        }
        mig::PAGE | mig::ZERO => {
            let (first, n) = inc.pages.ok_or(Errno::EINVAL)?;
            if w0 >= n {
                return Err(Errno::EINVAL);
            }
            let dst = frame(Mfn(first.0 + w0));
            if kind == mig::PAGE {
                dst.copy_from_slice(&p[8..]);
            } else {
                dst.fill(0);
            }
            bit(&mut HAVE.lock()[..], w0, true);
            inc.received += 1;
        }
        mig::HASH => {
            let (first, n) = inc.pages.ok_or(Errno::EINVAL)?;
            if w0 >= n {
                return Err(Errno::EINVAL);
            }
            let want = mig::word(p, 8);
            let index = INDEX.lock();
            let idx = &index[..inc.indexed];
            let at = idx.partition_point(|&(d, _)| d < want);
            match idx.get(at) {
                Some(&(d, f)) if d == want => {
                    let src = *frame(Mfn(f));
                    frame(Mfn(first.0 + w0)).copy_from_slice(&src);
                    bit(&mut HAVE.lock()[..], w0, true);
                }
                _ => {
                    *MISSED.lock().get_mut(inc.missed).ok_or(Errno::EINVAL)? = w0;
                    inc.missed += 1;
                }
            }
            inc.received += 1;
        }
        mig::ROUND_END => {
            let missed = core::mem::take(&mut inc.missed);
            for chunk in MISSED.lock()[..missed].chunks(512) {
                let mut b = [0u8; 4096];
                for (i, pfn) in chunk.iter().enumerate() {
                    b[i * 8..i * 8 + 8].copy_from_slice(&pfn.to_le_bytes());
                }
                send(mig::MISSING, &[&b[..chunk.len() * 8]])?;
            }
            log::info!(
                "migrate: round {w0} received: {} pages (t={} ms)",
                mig::word(p, 8),
                now() / 1_000_000
            );
            send(mig::ACK, &[&w0.to_le_bytes()])?;
        }
        mig::TAIL_BEGIN if inc.pages.is_some() && inc.tail.is_none() => {
            if w0 < abi::save::HEADER_LEN as u64 || w0 > abi::domctl::SAVED_IMAGES_MAX_FRAMES * 4096
            {
                return Err(Errno::EINVAL);
            }
            let n = w0.div_ceil(4096);
            let mut machine = MACHINE.lock();
            let m = machine.as_mut().ok_or(Errno::EIO)?;
            let first = m.frames.alloc_run(n).ok_or(Errno::ENOMEM)?;
            run_mut(first, n).fill(0);
            inc.tail = Some((first, n, w0, 0));
        }
        mig::TAIL => {
            let (first, n, len, got) = inc.tail.as_mut().ok_or(Errno::EINVAL)?;
            let data = &p[8..];
            // In order, zero runs left out.
            let end = w0.checked_add(data.len() as u64).ok_or(Errno::EINVAL)?;
            if w0 < *got || end > *len {
                return Err(Errno::EINVAL);
            }
            run_mut(*first, *n)[w0 as usize..end as usize].copy_from_slice(data);
            *got = end;
        }
        mig::VERIFY if inc.tail.is_some() => {
            let (_, n) = inc.pages.ok_or(Errno::EINVAL)?;
            let mut want = VERIFY_IN.lock();
            for pair in p.chunks_exact(16) {
                let (pfn, d) = (mig::word(pair, 0), mig::word(pair, 8));
                if pfn >= n || d == 0 || want[pfn as usize] != 0 {
                    return Err(Errno::EINVAL);
                }
                want[pfn as usize] = d;
                inc.verify += 1;
            }
        }
        mig::TAIL_END => return Ok(Step::Tail(w0, mig::word(p, 8))),
        mig::ABORT => return Ok(Step::Abort),
        _ => return Err(Errno::EINVAL),
    }
    Ok(Step::More)
}

/// `xl migrate --verify`: every data page the joined image would hold (the tail's, then the kept ones)
/// has the digest the source sent, and every page the source listed is there. `-EIO` otherwise.
fn verify<'p>(
    img: &abi::save::Image<'_>,
    pn: u64,
    page: impl Fn(u64) -> &'p [u8; 4096],
    extra: &dyn Fn(u64) -> bool,
    listed: usize,
) -> Result<(), Errno> {
    let want = VERIFY_IN.lock();
    let zero = digest(&[0; 4096]);
    let mut checked = 0usize;
    let mut check = |pfn: u64, d: u64| {
        if want.get(pfn as usize) != Some(&d) {
            log::warn!("migrate: verify: pfn {pfn:#x} differs from the source's page");
            return Err(Errno::EIO);
        }
        checked += 1;
        Ok(())
    };
    for (k, p) in img.records() {
        match k {
            RecordKind::Page => {
                let mut b = [0u8; 4096];
                b.copy_from_slice(p.get(8..8 + 4096).ok_or(Errno::EINVAL)?);
                check(mig::word(p, 0), digest(&b))?;
            }
            RecordKind::ZeroPage => check(mig::word(p, 0), zero)?,
            _ => {}
        }
    }
    for pfn in (0..pn).filter(|&p| extra(p)) {
        check(pfn, digest(page(pfn)))?;
    }
    if checked != listed {
        log::warn!("migrate: verify: {listed} pages listed by the source, {checked} joined");
        return Err(Errno::EIO);
    }
    log::info!("migrate: verify: all {checked} data pages match the source's");
    Ok(())
}

/// The destination's pages as the restore's frame source: pfn N's frame is the run's N-th; it holds N's
/// page if one was received and the tail has no record of it (the tail's records are written over it).
struct Received<'a> {
    first: Mfn,
    n: u64,
    have: &'a [u64],
    in_tail: &'a [u64],
    taken: &'a mut [u64],
}

fn test(map: &[u64], i: u64) -> bool {
    map.get((i / 64) as usize)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

impl Frames for Received<'_> {
    fn holds(&self, pfn: u64) -> bool {
        pfn < self.n && !test(self.taken, pfn)
    }
    fn take(&mut self, pfn: u64) -> Option<Mfn> {
        if !self.holds(pfn) {
            return None;
        }
        bit(self.taken, pfn, true);
        Some(Mfn(self.first.0 + pfn))
    }
    fn kept(&self, pfn: u64) -> bool {
        pfn < self.n && test(self.have, pfn) && !test(self.in_tail, pfn)
    }
    fn end(&self) -> u64 {
        self.n
    }
}

/// Check the tail (length, checksum, codec) and restore it on top of the pages received: the new domain
/// adopts their frames by pfn (no joined image, no copy) and passes `save_restore`'s checks, the same as
/// `xl restore`. The frames it did not take are freed by [`Incoming::free`], a failed restore's by the
/// restore itself. The time to check the tail, in microseconds, goes to `checked_us`.
fn restore_received(
    inc: &mut Incoming,
    len: u64,
    sum: u64,
    checked_us: &mut u64,
) -> Result<Restored, Errno> {
    let t0 = now();
    let (tfirst, tn, tlen, got) = inc.tail.ok_or(Errno::EINVAL)?;
    let (pfirst, pn) = inc.pages.ok_or(Errno::EINVAL)?;
    if len != tlen || got > tlen {
        return Err(Errno::EINVAL);
    }
    let tail = &run_mut(tfirst, tn)[..tlen as usize];
    if abi::save::wire::fnv(abi::save::wire::FNV_START, tail) != sum {
        log::warn!("migrate: the tail's checksum is wrong");
        return Err(Errno::EINVAL);
    }
    let img = abi::save::decode(tail).map_err(|e| {
        log::warn!("migrate: the tail image is refused: {e:?}");
        Errno::EINVAL
    })?;
    let mut in_tail = IN_TAIL.lock();
    in_tail.fill(0);
    for (k, p) in img.records() {
        if matches!(
            k,
            RecordKind::Page | RecordKind::ZeroPage | RecordKind::PageTable
        ) {
            let pfn = mig::word(p, 0);
            if pfn >= pn {
                return Err(Errno::EINVAL);
            }
            bit(&mut in_tail[..], pfn, true);
        }
    }
    let have = HAVE.lock();
    let mut taken = TAKEN.lock();
    let mut received = Received {
        first: pfirst,
        n: pn,
        have: &have[..],
        in_tail: &in_tail[..],
        taken: &mut taken[..],
    };
    if inc.verify > 0 {
        verify(
            &img,
            pn,
            |pfn| &*frame(Mfn(pfirst.0 + pfn)),
            &|pfn| received.kept(pfn),
            inc.verify,
        )?;
    }
    *checked_us = (now() - t0) / 1000;
    restore(&img, &mut received, false, &"the migration stream")
}
