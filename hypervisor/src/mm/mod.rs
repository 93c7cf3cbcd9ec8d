//! Memory management: frames, page-table entries, guest page-table walks.
