//! The agent's side of queries: it answers the agents' own ones (topics under [`RESERVED`]), as
//! Serf's agent answers its internal queries.
//!
//! - `_shoal/ping`: answers `pong` (a reachability check of every agent at once).
//! - `_shoal/keys`: `install`, `use` or `remove` a key (64 hex digits) in this agent's keyring,
//!   answered `ok` or `error: ...`. This is how `shoal-agent keys --cluster` rotates the key of a
//!   running cluster from one agent. An agent acts on it only when its security mode is
//!   `encrypted`: then only a member holding the cluster's key could have sent the query. In any
//!   other mode a packet may be plaintext and forged, and the agent answers with an error.
//!
//! Queries on other topics are acked by the protocol and left unanswered.

use shoal::{Cluster, ClusterEvent, SecurityMode};

/// Topics that start with this are the agents' own; `POST /query` refuses them.
pub const RESERVED: &str = "_shoal/";
/// Every agent answers `pong`.
pub const PING: &str = "_shoal/ping";
/// A key operation for every agent's keyring (see the module docs).
pub const KEYS: &str = "_shoal/keys";

/// Answers the agents' own queries until the member shuts down.
pub fn spawn_responder(cluster: Cluster) -> tokio::task::JoinHandle<()> {
    let mut events = cluster.events();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let ClusterEvent::Query { inquiry, topic, payload } = event else { continue };
            let answer = match topic.as_str() {
                PING => "pong".to_string(),
                KEYS => apply_key_operation(&cluster, &String::from_utf8_lossy(&payload)),
                _ => continue,
            };
            if let Err(e) = cluster.respond(&inquiry, answer.as_bytes()) {
                tracing::debug!(%topic, error = %e, "query not answered");
            }
        }
    })
}

/// Applies `install KEY`, `use KEY` or `remove KEY` to our keyring; `ok` or `error: ...`.
fn apply_key_operation(cluster: &Cluster, operation: &str) -> String {
    if cluster.config().security != SecurityMode::Encrypted {
        return "error: key changes by query need security mode encrypted".into();
    }
    let Some((op, key)) = operation.split_once(' ') else {
        return format!("error: expected \"install|use|remove KEY\", got {operation:?}");
    };
    let key = match crate::settings::parse_key(key) {
        Ok(k) => k,
        Err(e) => return format!("error: {e}"),
    };
    let done = match op {
        "install" => cluster.install_key(key),
        "use" => cluster.use_key(key),
        "remove" => cluster.remove_key(key),
        other => return format!("error: unknown key operation {other:?}"),
    };
    match done {
        Ok(()) => {
            tracing::info!(op, "key operation by query");
            "ok".into()
        }
        Err(e) => format!("error: {e}"),
    }
}
