//! The byte stream live migration runs on (`abi::save::mig` frames): a virtio console if the machine
//! has one (`drivers::virtio_console`: a whole frame per transmit buffer, input from a ring of receive
//! buffers), else the second serial line (COM2, a byte per port access). See docs/ARCHITECTURE.md, "Live
//! migration".

use abi::errno::Errno;
use abi::save::mig::{self, Reader};

use super::save::now;
use crate::arch::serial::com2;
use crate::drivers::virtio_console::{self, Console};

pub(super) const SEC: u64 = 1_000_000_000;
/// How long the source waits for a round's ACK.
pub const ACK_TIMEOUT_NS: u64 = 30 * SEC;
/// How long the source waits for the destination's verdict on the tail (it restores meanwhile).
pub const DONE_TIMEOUT_NS: u64 = 30 * SEC;
/// How long the destination waits for the first frame, and between frames afterwards.
pub const FIRST_TIMEOUT_NS: u64 = 300 * SEC;
/// See [`FIRST_TIMEOUT_NS`].
pub const IDLE_TIMEOUT_NS: u64 = 10 * SEC;
/// How long output may wait for the transmitter (the other side not reading).
const WRITE_TIMEOUT_NS: u64 = 10 * SEC;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Uart,
    Virtio,
}

/// The link [`open`] chose.
static LINK: spin::Mutex<Link> = spin::Mutex::new(Link::Uart);
/// The virtio console, once probed successfully (`None` after it broke the protocol).
static CONSOLE: spin::Mutex<Option<Console>> = spin::Mutex::new(None);
static PROBED: spin::Mutex<bool> = spin::Mutex::new(false);
static READER: spin::Mutex<Reader> = spin::Mutex::new(Reader::new());

/// The link in use, for log lines.
pub fn name() -> &'static str {
    match *LINK.lock() {
        Link::Uart => "COM2",
        Link::Virtio => "the virtio console",
    }
}

/// Choose the link (the virtio console if present and sane, else COM2; one log line says which) and
/// forget any stale input.
pub fn open() -> Result<(), Errno> {
    *READER.lock() = Reader::new();
    {
        let mut probed = PROBED.lock();
        if !*probed {
            *probed = true;
            match virtio_console::probe() {
                Ok(c) => {
                    log::info!(
                        "migrate: virtio console at {} (I/O {:#x}): the migration link",
                        c.bdf(),
                        c.io_base()
                    );
                    *CONSOLE.lock() = Some(c);
                }
                Err(why) => log::info!("migrate: {why}; the migration link is COM2"),
            }
        }
    }
    if let Some(c) = CONSOLE.lock().as_mut() {
        if c.drain().is_ok() {
            *LINK.lock() = Link::Virtio;
            return Ok(());
        }
        c.reset();
    }
    if CONSOLE.lock().take().is_some() {
        log::warn!("migrate: the virtio console broke the protocol; the migration link is COM2");
    }
    *LINK.lock() = Link::Uart;
    if !com2::init() {
        log::warn!("migrate: no second serial port (COM2)");
        return Err(Errno::ENODEV);
    }
    while com2::try_read().is_some() {}
    Ok(())
}

/// A device that broke the virtqueue protocol is stopped and dropped; the migration fails.
fn broken(c: &mut Option<Console>) -> Errno {
    if let Some(mut dev) = c.take() {
        dev.reset();
    }
    log::warn!("migrate: the virtio console broke the protocol; it is no longer used");
    Errno::EIO
}

/// Send one frame of `kind` whose payload is the concatenation of `parts`.
pub fn send(kind: u8, parts: &[&[u8]]) -> Result<(), Errno> {
    if *LINK.lock() == Link::Uart {
        let mut r = Ok(());
        mig::send(kind, parts, |b| {
            if r.is_ok() {
                r = put(b);
            }
        });
        return r;
    }
    let header = mig::header(kind, parts);
    let mut all: [&[u8]; 8] = [&[]; 8];
    all[0] = &header;
    if parts.len() >= all.len() {
        return Err(Errno::EINVAL);
    }
    all[1..=parts.len()].copy_from_slice(parts);
    let all = &all[..=parts.len()];
    let mut console = CONSOLE.lock();
    let mut since = None;
    loop {
        let c = console.as_mut().ok_or(Errno::EIO)?;
        match c.try_send(all) {
            Ok(true) => return Ok(()),
            Ok(false) => {
                let t = *since.get_or_insert_with(now);
                if now().saturating_sub(t) > WRITE_TIMEOUT_NS {
                    return Err(Errno::EIO);
                }
                core::hint::spin_loop();
            }
            Err(crate::drivers::virtq::Error::Empty) => return Err(Errno::EINVAL),
            Err(_) => return Err(broken(&mut console)),
        }
    }
}

fn put(bytes: &[u8]) -> Result<(), Errno> {
    for &b in bytes {
        let mut since = None;
        let mut spins = 0u32;
        while !com2::can_write() {
            backoff();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                let t = *since.get_or_insert_with(now);
                if now().saturating_sub(t) > WRITE_TIMEOUT_NS {
                    return Err(Errno::EIO);
                }
            }
        }
        com2::put(b);
    }
    Ok(())
}

/// Wait up to `timeout` for the next frame and hand it to `f`. `-EIO` on silence or a refused frame.
pub fn next<R>(timeout: u64, f: impl FnOnce(u8, &[u8]) -> R) -> Result<R, Errno> {
    let mut reader = READER.lock();
    let link = *LINK.lock();
    let t0 = now();
    let mut spins = 0u32;
    loop {
        // Some(Ok) a frame is complete, Some(Err) refused, None more bytes needed.
        let mut done = None;
        let got = match link {
            Link::Uart => com2::try_read().map(|b| {
                done = reader.push(b).map(|f| f.then_some(())).transpose();
            }),
            Link::Virtio => {
                let mut console = CONSOLE.lock();
                let c = console.as_mut().ok_or(Errno::EIO)?;
                let r = c.with_input(|bytes| {
                    for (i, &b) in bytes.iter().enumerate() {
                        match reader.push(b) {
                            Ok(false) => {}
                            Ok(true) => {
                                done = Some(Ok(()));
                                return i + 1;
                            }
                            Err(e) => {
                                done = Some(Err(e));
                                return i + 1;
                            }
                        }
                    }
                    bytes.len()
                });
                match r {
                    Ok(any) => any.then_some(()),
                    Err(_) => return Err(broken(&mut console)),
                }
            }
        };
        match done {
            Some(Ok(())) => {
                let (k, p) = reader.frame();
                return Ok(f(k, p));
            }
            Some(Err(e)) => {
                log::warn!("migrate: a frame refused on {}: {e:?}", name());
                return Err(Errno::EIO);
            }
            None if got.is_some() => continue,
            None => {}
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) && now().saturating_sub(t0) > timeout {
            return Err(Errno::EIO);
        }
        if link == Link::Uart {
            backoff();
        } else {
            core::hint::spin_loop();
        }
    }
}

/// Wait a little without touching a port. Under QEMU every port access takes the emulator's global lock:
/// polling the UART back to back starves the thread that moves the socket's bytes into it (measured:
/// about 30 KB/s received without the pause). The virtio link polls memory (its used rings), which
/// takes no lock, and needs no pause.
fn backoff() {
    for _ in 0..2000 {
        core::hint::spin_loop();
    }
}
