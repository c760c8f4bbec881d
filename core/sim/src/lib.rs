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
