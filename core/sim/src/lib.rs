//! Deterministic simulation of whole clusters of [`shoal_core::Node`]s in one process.
//!
//! A [`Simulation`] holds thousands of [`shoal_core::Node`]s connected by a sans-IO [`Network`] model
//! (latency, jitter, loss, partitions) and drives them with a virtual clock that jumps to the next
//! deadline. Faults are injected between steps: crashes, restarts, stalls, partitions, leaves; and
//! members can be added and removed for good, for churn through a long run.
//! A [`Recorder`] compares what the nodes believe with the ground truth and produces the figures
//! the protocol is judged by: detection times, false positives, convergence, traffic.
//!
//! Everything is seeded: a run is a pure function of its [`SimConfig`] and the faults applied.
//! [`scenario`] holds the standard experiments used by the `shoal-sim` binary, the tests and the
//! benchmarks.
//!
//! # Scale
//!
//! A warm start ([`SimConfig::warm_start`]) gives every node the same table of everyone, a
//! [`shoal_core::MemberSnapshot`] that the nodes share until each changes a member (a state, an
//! incarnation, an address: the changed member's chunk of 64 is copied). What each node owns from
//! the start is its probe order, 4 bytes a member, plus the round-trip times it measures. That is
//! about 5 bytes per (node, member) pair in a steady cluster, against about 70 for a table built
//! member by member (a cold start, or a real deployment), so 10,000 nodes for 100 periods fit in
//! half a GiB and 50,000 in about 10 GiB. Churn and faults make nodes copy chunks and grow toward
//! the cold figure. `cargo bench -p shoal-sim --bench core_figures -- pairs` measures both.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

extern crate alloc;

mod network;
pub mod scenario;
mod stats;
pub mod swarm;
#[cfg(test)]
mod trace_tests;
mod world;

pub use network::{Delivery, Fate, LinkModel, Network, NetworkStats};
pub use stats::{BroadcastTrack, Detection, Recorder, KINDS};
pub use world::{SimConfig, Simulation, TraceEntry};
