//! Shoal udp transport (in progress).
