//! Shoal tcp transport (in progress).
