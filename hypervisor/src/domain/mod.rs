//! Domains: the unit of isolation, and the builder that creates them from boot modules.

pub mod builder;
#[cfg(feature = "baremetal")]
pub mod control;
pub mod images;
pub mod kind;
#[cfg(feature = "baremetal")]
pub mod lifecycle;
#[cfg(feature = "baremetal")]
pub mod logdirty_ctl;
#[cfg(feature = "baremetal")]
pub mod migrate;
#[cfg(feature = "baremetal")]
pub mod migrate_link;
pub mod migrate_track;
#[cfg(feature = "baremetal")]
pub mod save;
pub mod save_canon;
#[cfg(feature = "baremetal")]
pub mod save_images;
#[cfg(feature = "baremetal")]
pub mod save_restore;
pub mod save_store;
pub mod state;
#[cfg(feature = "baremetal")]
pub mod teardown_check;
