//! The image store's commands besides save and restore (`domain::save`): storing an image from the
//! caller's memory or a boot module, dropping one, listing them, and streaming one over the console in its
//! wire form (`abi::save::wire`) for `cargo xtask save`.

use abi::domctl::SavedImageInfo;
use abi::errno::Errno;
use abi::save::{DomainRecord, HEADER_LEN, RecordKind, decode};

use super::save::{STORE, free_run, now, restore, run_mut};
use super::save_store::Stored;
use crate::setup::{MACHINE, MAX_DOMAIN_PAGES};

/// `XEN_DOMCTL_IMAGE_PUT`: store `bytes` (read from the caller by `read`) as `name` if the codec accepts
/// them and the domain record reads.
pub fn put(
    name: &str,
    len: u64,
    read: impl FnOnce(&mut [u8]) -> Result<(), Errno>,
) -> Result<(), Errno> {
    if len < HEADER_LEN as u64 || len > abi::domctl::SAVED_IMAGES_MAX_FRAMES * 4096 {
        return Err(Errno::EINVAL);
    }
    let frames = len.div_ceil(4096);
    STORE.lock().check_room(name, frames)?;
    let first = {
        let mut machine = MACHINE.lock();
        let m = machine.as_mut().ok_or(Errno::EIO)?;
        m.frames.alloc_run(frames).ok_or(Errno::ENOMEM)?
    };
    let buf = &mut run_mut(first, frames)[..len as usize];
    let checked = read(buf).and_then(|()| {
        let img = decode(buf).map_err(|e| {
            log::warn!("image '{name}' refused: {e:?}");
            Errno::EINVAL
        })?;
        img.single(RecordKind::Domain)
            .and_then(DomainRecord::decode)
            .ok_or(Errno::EINVAL)
    });
    let dr = match checked {
        Ok(dr) => dr,
        Err(e) => {
            let mut machine = MACHINE.lock();
            if let Some(m) = machine.as_mut() {
                free_run(m, first, frames);
            }
            return Err(e);
        }
    };
    STORE.lock().insert(Stored {
        name: heapless::String::try_from(name).map_err(|_| Errno::EINVAL)?,
        first,
        frames,
        len: len as usize,
        pages: dr.nr_pages.min(MAX_DOMAIN_PAGES as u64),
        source: u16::try_from(dr.source).unwrap_or(u16::MAX),
    })?;
    log::info!("image '{name}' stored: {len} bytes");
    Ok(())
}

/// At boot: store the image in boot module `start..end` as `name` and restore it as a new domain (the
/// module's frames are freed with the other modules' afterwards). Returns the new id.
pub fn restore_boot_module(
    name: &str,
    start: abi::types::Maddr,
    end: abi::types::Maddr,
) -> Result<u16, Errno> {
    let name = super::save_store::valid_name(name.as_bytes())?;
    if end.0 > crate::setup::MANAGED_LIMIT || end.0 <= start.0 {
        return Err(Errno::EINVAL);
    }
    // SAFETY: a boot module: reserved frames in the identity map until every boot domain is built (now), only
    // read here.
    let bytes =
        unsafe { core::slice::from_raw_parts(start.0 as *const u8, (end.0 - start.0) as usize) };
    put(name, bytes.len() as u64, |out| {
        out.copy_from_slice(bytes);
        Ok(())
    })?;
    restore(name, false)
}

/// `XEN_DOMCTL_IMAGE_DELETE`.
pub fn delete(name: &str) -> Result<(), Errno> {
    let s = STORE.lock().remove(name).ok_or(Errno::ENOENT)?;
    let mut machine = MACHINE.lock();
    let m = machine.as_mut().ok_or(Errno::EIO)?;
    free_run(m, s.first, s.frames);
    Ok(())
}

/// `XEN_DOMCTL_IMAGE_LIST`: the images into `out`; how many.
pub fn list(out: &mut [SavedImageInfo]) -> usize {
    let store = STORE.lock();
    let mut n = 0;
    for (o, i) in out.iter_mut().zip(store.list()) {
        *o = i;
        n += 1;
    }
    n
}

/// `XEN_DOMCTL_IMAGE_DUMP`: stream stored image `name` over the console in its wire form
/// (`abi::save::wire`). The hypervisor does nothing else meanwhile (seconds for a few MiB on TCG).
pub fn dump(name: &str) -> Result<(), Errno> {
    let (first, frames, len) = {
        let store = STORE.lock();
        let s = store.find(name).ok_or(Errno::ENOENT)?;
        (s.first, s.frames, s.len)
    };
    let t0 = now();
    let mut lines = 0u64;
    abi::save::wire::encode(name, &run_mut(first, frames)[..len], |l| {
        crate::console::print(format_args!("{l}\n"));
        lines += 1;
    });
    log::info!(
        "image '{name}' written to the console: {len} bytes in {lines} lines, {} ms",
        (now() - t0) / 1_000_000
    );
    Ok(())
}
