//! # shoal-core
//!
//! The Shoal membership protocol as a sans-IO state machine: SWIM failure detection with
//! infection-style dissemination and suspicion, the Lifeguard extensions (local health awareness,
//! nacks, confirmation-shrunk suspicion timeouts, buddy system), push-pull anti-entropy, custom
//! broadcasts and direct messages, and a compact versioned wire format.
//!
//! The crate does no I/O, reads no clock and draws no OS randomness: a driver hands every input to a
//! [`Node`] with the current [`Instant`] and sends what the node asks it to send (see the run-loop
//! contract in [`node`]). The same code therefore runs natively, in a browser, in an edge runtime,
//! and in the deterministic simulator (crate `shoal-sim`), which runs thousands of nodes in one process
//! over a modelled network with a virtual clock.
//!
//! ```
//! use shoal_core::{Config, Instant, Node, NodeId};
//!
//! let now = Instant::from_millis(0);
//! let mut a: Node<u32> = Node::new(now, Config::local(), NodeId::new("a").unwrap(), 1, 7).unwrap();
//! let mut b: Node<u32> = Node::new(now, Config::local(), NodeId::new("b").unwrap(), 2, 8).unwrap();
//! b.join(now, &[1]).unwrap();
//! // Deliver b's join to a, and a's answer back to b (a real driver does this over sockets).
//! let to_a = b.poll_transmit().unwrap();
//! a.handle_packet(now, 2, &to_a.bytes).unwrap();
//! let to_b = a.poll_transmit().unwrap();
//! b.handle_packet(now, 1, &to_b.bytes).unwrap();
//! assert_eq!(a.cluster_size(), 2);
//! assert_eq!(b.cluster_size(), 2);
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
#[macro_use]
extern crate std;

mod broadcast;
pub mod config;
#[cfg(any(feature = "coordinates", test))]
pub mod coordinate;
mod dissemination;
pub mod event;
mod health;
pub mod identity;
pub mod incarnation;
pub mod member;
pub mod node;
pub mod security;
pub mod stats;
mod suspicion;
pub mod tags;
pub mod time;
mod window;
pub mod wire;

#[cfg(feature = "relay")]
pub mod addr;
#[cfg(feature = "relay")]
pub mod relay;
#[cfg(all(feature = "relay", any(test, target_arch = "wasm32")))]
mod socket_syntax;

pub use config::{Config, ConfigError, Lifeguard};
pub use event::{BroadcastId, Event, MessageKind};
pub use identity::{Address, InvalidNodeId, NodeId};
pub use member::{Member, MemberSnapshot, MemberState, Metadata};
#[cfg(any(feature = "admission", test))]
pub use node::{AdmissionPolicy, Candidate, Conflict, ConflictPolicy};
pub use node::{CommandError, Footprint, Node, PacketError, Transmit, TransmitKind, RELAY_TAG};
#[cfg(any(feature = "queries", test))]
pub use node::{Inquiry, QueryId};
pub use security::{Key, Keyring, KeyringError, SecurityError, SecurityMode, SecurityStats};
pub use stats::Stats;
pub use tags::{MemberFilter, TagError, Tags};
pub use time::Instant;
pub use wire::DecodeError;
