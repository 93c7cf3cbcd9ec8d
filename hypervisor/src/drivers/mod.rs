//! Device drivers of the hypervisor itself (polled, no interrupts): the pure virtqueue logic, and on bare
//! metal the virtio console that carries live migration.

#[cfg(feature = "baremetal")]
pub mod dma;
#[cfg(feature = "baremetal")]
pub mod virtio_console;
pub mod virtq;
