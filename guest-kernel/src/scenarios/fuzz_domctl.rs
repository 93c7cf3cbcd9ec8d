//! The fuzzer's domain-control calls (it runs as domain 0, the only domain they are for): the lifecycle
//! domctls — create, destroy, pause, unpause, info, vCPU context, max memory, suspend and resume, save and
//! restore (snapshot and clone are these), the image store, and migration phases with no peer (the fuzz
//! machine has no COM2: they end in -ENODEV or earlier) — with random arguments.
//!
//! Guards, so the run can go on and end normally: no call acts on domain 1 (the neighbour the run must
//! see power off normally) unless a domain of the fuzzer's got that id after the neighbour finished; max
//! memory is never set for domain 0 (its own reservations must keep working); what the hypervisor writes
//! back (the domctl itself, a vCPU context, an image list) goes to the arena or to an address nothing can
//! be written at, never elsewhere in this kernel; dumps to the console only for names the store cannot
//! hold; at most [`MAX_OWNED`] domains of its own exist at once, and all are destroyed at the end
//! ([`Fuzzer::domctl_cleanup`]) so the machine can power off.

use abi::domctl::*;
use abi::hypercall::nr;
use abi::xen::DOMID_SELF;

use super::fuzz::Fuzzer;
use crate::fuzz::dist;

/// Commands and their relative weights.
const CMDS: [(u32, u32); 20] = [
    (XEN_DOMCTL_CREATEDOMAIN, 6),
    (XEN_DOMCTL_DESTROYDOMAIN, 4),
    (XEN_DOMCTL_PAUSEDOMAIN, 4),
    (XEN_DOMCTL_UNPAUSEDOMAIN, 4),
    (XEN_DOMCTL_GETDOMAININFO, 3),
    (XEN_DOMCTL_MAX_MEM, 3),
    (XEN_DOMCTL_GETVCPUCONTEXT, 3),
    (XEN_DOMCTL_SETVCPUCONTEXT, 3),
    (XEN_DOMCTL_SUSPEND_REQUEST, 5),
    (XEN_DOMCTL_RESUMEDOMAIN, 4),
    (XEN_DOMCTL_SAVE, 5),
    (XEN_DOMCTL_RESTORE, 4),
    (XEN_DOMCTL_IMAGE_PUT, 4),
    (XEN_DOMCTL_IMAGE_DELETE, 3),
    (XEN_DOMCTL_IMAGE_LIST, 2),
    (XEN_DOMCTL_IMAGE_DUMP, 1),
    (XEN_DOMCTL_MIGRATE, 5),
    (XEN_DOMCTL_MIGRATE_RECEIVE, 1),
    (XEN_DOMCTL_SHADOW_OP, 2),
    // Unknown commands (a random number).
    (u32::MAX, 2),
];

/// Image names the fuzzer saves under and restores from (the store holds 8).
const NAMES: [&str; 4] = ["f0", "f1", "f2", "f3"];
/// Most domains of its own at once.
const MAX_OWNED: usize = 3;
/// The neighbour: never a target (unless the id was given to a domain of the fuzzer's after the
/// neighbour finished).
const NEIGHBOUR: u16 = 1;

impl Fuzzer {
    /// Does domain `d` exist?
    fn domain_exists(&mut self, d: u16) -> bool {
        let mut op = XenDomctl::new(XEN_DOMCTL_GETDOMAININFO, d);
        self.keep(nr::DOMCTL, [&raw mut op as u64, 0, 0, 0, 0]) == 0
    }

    /// Forget own domains that are gone; true if another may be made.
    fn room_for_one(&mut self) -> bool {
        let mut owned = core::mem::take(&mut self.owned);
        owned.retain(|&d| self.domain_exists(d));
        self.owned = owned;
        self.owned.len() < MAX_OWNED
    }

    /// A target: one of its own domains, itself, a free or out-of-range id, Xen's special ids; never the
    /// neighbour.
    fn target(&mut self) -> u16 {
        let d = match self.rng.below(8) {
            0..=2 if !self.owned.is_empty() => self.rng.pick(&self.owned),
            0 | 3 => 0,
            1 => DOMID_SELF,
            2 => MAX_DOMAINS as u16 + self.rng.below(16) as u16,
            4 => 2 + self.rng.below(MAX_DOMAINS as u64 - 2) as u16,
            _ => dist::domid(&mut self.rng),
        };
        if d == NEIGHBOUR && !self.owned.contains(&NEIGHBOUR) {
            0
        } else {
            d
        }
    }

    fn image_arg(&mut self) -> DomctlImage {
        let mut a = if self.rng.chance(7, 8) {
            let n = self.rng.pick(&NAMES);
            DomctlImage::named(n).unwrap_or_default()
        } else {
            // A name that is empty, full length, with a bad byte, or random.
            let mut a = DomctlImage::default();
            match self.rng.below(4) {
                0 => {}
                1 => a.name = [b'a'; SAVED_NAME_MAX],
                2 => a.name[..3].copy_from_slice(b"a b"),
                _ => a
                    .name
                    .copy_from_slice(&self.rng.next_u64().to_le_bytes().repeat(2)),
            }
            a
        };
        a.flags = match self.rng.below(4) {
            0 => DOMCTL_RESTORE_PAUSED,
            1 => dist::int(&mut self.rng) as u32,
            _ => 0,
        };
        a
    }

    /// Where the hypervisor may write: the arena (`ptr`) mostly, else an address nothing can be written at.
    fn out_ptr(&mut self, ptr: u64) -> u64 {
        if self.rng.chance(7, 8) {
            ptr
        } else {
            self.unreadable_addr()
        }
    }

    /// One random domctl.
    pub(super) fn domctl_step(&mut self) {
        let weights: [u32; CMDS.len()] = core::array::from_fn(|i| CMDS[i].1);
        let mut cmd = CMDS[self.rng.weighted(&weights)].0;
        if cmd == u32::MAX {
            cmd = dist::int(&mut self.rng) as u32;
        }
        let mut op = XenDomctl::new(cmd, self.target());
        if self.rng.chance(1, 16) {
            op.interface_version = dist::int(&mut self.rng) as u32;
        }
        match cmd {
            XEN_DOMCTL_CREATEDOMAIN => {
                let room = self.room_for_one();
                let image = if room && self.rng.chance(3, 4) {
                    "guest"
                } else {
                    "nope"
                };
                let kb = match self.rng.below(4) {
                    0 => 4096,
                    1 => 2048,
                    2 => 8192,
                    _ => dist::int(&mut self.rng),
                };
                let cmdline = if self.rng.chance(1, 2) {
                    "shell"
                } else {
                    "test=idle-forever"
                };
                let flags = (self.rng.below(2) as u32) | (dist::int(&mut self.rng) as u32 & !1);
                let flags = if self.rng.chance(3, 4) {
                    flags & 1
                } else {
                    flags
                };
                if let Some(c) = DomctlCreate::new(image, kb, cmdline, flags) {
                    op.set_arg(&c);
                }
            }
            XEN_DOMCTL_MAX_MEM => {
                if op.domain == 0 {
                    op.domain = DOMID_SELF;
                }
                op.set_arg(&XenDomctlMaxMem {
                    max_memkb: dist::int(&mut self.rng),
                });
            }
            XEN_DOMCTL_GETVCPUCONTEXT | XEN_DOMCTL_SETVCPUCONTEXT => {
                let size = core::mem::size_of::<VcpuGuestContext>();
                let buf = if cmd == XEN_DOMCTL_SETVCPUCONTEXT {
                    let p = self.put_random(size / 8);
                    self.buf_or_addr(p)
                } else {
                    let p = self.put_bytes(&alloc::vec![0u8; size], false);
                    self.out_ptr(p)
                };
                op.set_arg(&XenDomctlVcpucontext {
                    vcpu: if self.rng.chance(7, 8) {
                        0
                    } else {
                        dist::int(&mut self.rng) as u32
                    },
                    ctxt: if self.rng.chance(1, 16) { 0 } else { buf },
                    ..Default::default()
                });
            }
            XEN_DOMCTL_SUSPEND_REQUEST
            | XEN_DOMCTL_RESUMEDOMAIN
            | XEN_DOMCTL_SAVE
            | XEN_DOMCTL_IMAGE_DELETE
            | XEN_DOMCTL_MIGRATE => {
                let mut a = self.image_arg();
                if cmd == XEN_DOMCTL_MIGRATE {
                    a.flags = if self.rng.chance(7, 8) {
                        self.rng.below(5) as u32
                    } else {
                        dist::int(&mut self.rng) as u32
                    };
                }
                op.set_arg(&a);
            }
            XEN_DOMCTL_RESTORE => {
                let mut a = self.image_arg();
                if !self.room_for_one() {
                    a = DomctlImage::named("nx").unwrap_or_default();
                }
                op.set_arg(&a);
            }
            XEN_DOMCTL_IMAGE_PUT => {
                let mut a = self.image_arg();
                let words = self.rng.below(1024) as usize;
                let p = self.put_random(words);
                a.buf = self.buf_or_addr(p);
                a.len = match self.rng.below(4) {
                    0 => words as u64 * 8,
                    1 => dist::count(&mut self.rng),
                    _ => dist::int(&mut self.rng),
                };
                op.set_arg(&a);
            }
            XEN_DOMCTL_IMAGE_LIST => {
                let n = MAX_SAVED_IMAGES;
                let p = self.put_bytes(
                    &[0u8; MAX_SAVED_IMAGES * core::mem::size_of::<SavedImageInfo>()],
                    false,
                );
                let a = DomctlImage {
                    buf: self.out_ptr(p),
                    len: if self.rng.chance(3, 4) {
                        self.rng.below(n as u64 + 1)
                    } else {
                        dist::int(&mut self.rng)
                    },
                    ..DomctlImage::default()
                };
                op.set_arg(&a);
            }
            XEN_DOMCTL_IMAGE_DUMP => {
                // Only names the store cannot hold: a stored image would be written to the console.
                let a = if self.rng.chance(1, 2) {
                    DomctlImage::named("nx").unwrap_or_default()
                } else {
                    DomctlImage::default()
                };
                op.set_arg(&a);
            }
            XEN_DOMCTL_SHADOW_OP if op.domain == 0 => op.domain = DOMID_SELF,
            _ => {
                // Random argument bytes.
                let mut u = [0u8; 128];
                for c in u.chunks_mut(8) {
                    c.copy_from_slice(&dist::any(&mut self.rng, &self.t).to_le_bytes());
                }
                op.u = u;
            }
        }
        let p = self.put(&op);
        let at = self.out_ptr(p);
        let r = self.call(nr::DOMCTL, [at, 0, 0, 0, 0]);
        if r == 0 && at == p && matches!(cmd, XEN_DOMCTL_CREATEDOMAIN | XEN_DOMCTL_RESTORE) {
            // SAFETY: `p` is in the arena, mapped and ours, and holds the XenDomctl just put there (the
            // hypervisor wrote the new domain's id into it).
            let back = unsafe { (p as *const XenDomctl).read_unaligned() };
            // Id 1 too once the neighbour has finished and its slot was given to a new domain.
            if back.domain != 0 && !self.owned.contains(&back.domain) {
                self.owned.push(back.domain);
            }
        }
    }

    /// Destroy every domain but itself and the neighbour, and drop the images it stored.
    pub(super) fn domctl_cleanup(&mut self) {
        let mut gone = 0;
        let first = if self.owned.contains(&NEIGHBOUR) {
            1
        } else {
            2
        };
        for d in first..MAX_DOMAINS as u16 {
            let mut op = XenDomctl::new(XEN_DOMCTL_DESTROYDOMAIN, d);
            if self.keep(nr::DOMCTL, [&raw mut op as u64, 0, 0, 0, 0]) == 0 {
                gone += 1;
            }
        }
        for n in NAMES {
            let mut op = XenDomctl::new(XEN_DOMCTL_IMAGE_DELETE, 0);
            op.set_arg(&DomctlImage::named(n).unwrap_or_default());
            let _ = self.keep(nr::DOMCTL, [&raw mut op as u64, 0, 0, 0, 0]);
        }
        self.owned.clear();
        crate::println!("fuzz: cleanup: {gone} domains of its own destroyed");
    }
}
