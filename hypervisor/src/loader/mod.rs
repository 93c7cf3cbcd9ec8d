//! Loading guest images.
