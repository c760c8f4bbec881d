//! The agent's side of queries: it answers the agents' own ones (topics under [`RESERVED`]), as
//! Serf's agent answers its internal queries, and runs the programs the operator configured for
//! other topics, as Serf's query event handlers.
//!
//! - `_shoal/ping`: answers `pong` (a reachability check of every agent at once).
//! - `_shoal/keys`: `install`, `use` or `remove` a key (64 hex digits) in this agent's keyring,
//!   answered `ok` or `error: ...`. This is how `shoal-agent keys --cluster` rotates the key of a
//!   running cluster from one agent. An agent acts on it only when its security mode is
//!   `encrypted`: then only a member holding the cluster's key could have sent the query. In any
//!   other mode a packet may be plaintext and forged, and the agent answers with an error.
//! - A topic with a [`Handler`] (`--query-handler TOPIC=PROGRAM [ARG...]`, or `[[query_handlers]]`
//!   in the file): the program runs without a shell, the payload on its standard input,
//!   `SHOAL_QUERY_TOPIC` and `SHOAL_QUERY_FROM` in its environment; what it prints (at most
//!   [`MAX_OUTPUT`] bytes) is the response, whatever its exit status. It is killed at its timeout
//!   (then nothing is answered). At most [`MAX_RUNNING`] run at once: a query that finds them all
//!   busy is left unanswered. Every outcome is counted (`shoal_agent_query_handler_runs_total`).
//!   In a plaintext cluster any host that can send us a packet can start a handler; the agent
//!   warns at start, and handlers belong in encrypted clusters.
//!
//! Queries on other topics are acked by the protocol and left unanswered.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use shoal::{Addr, Cluster, ClusterEvent, Inquiry, SecurityMode};

/// Topics that start with this are the agents' own; `POST /query` refuses them.
pub const RESERVED: &str = "_shoal/";
/// Every agent answers `pong`.
pub const PING: &str = "_shoal/ping";
/// A key operation for every agent's keyring (see the module docs).
pub const KEYS: &str = "_shoal/keys";

/// How long a handler may run unless its settings say otherwise.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(5);
/// Handlers running at once, at most.
pub const MAX_RUNNING: usize = 4;
/// Bytes of a handler's output sent as the response, at most (a response fits in one packet).
pub const MAX_OUTPUT: usize = 1_024;

/// A program that answers the queries on one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handler {
    pub topic: String,
    /// The program, then its arguments.
    pub command: Vec<String>,
    pub timeout: Duration,
}

impl Handler {
    /// A handler for `topic`; refused for an empty command, an empty or reserved topic, or a zero
    /// timeout.
    pub fn new(topic: String, command: Vec<String>, timeout: Duration) -> Result<Handler, String> {
        if topic.is_empty() || topic.starts_with(RESERVED) {
            return Err(format!("query handler topic {topic:?}: empty or reserved ({RESERVED}...)"));
        }
        if !command.first().is_some_and(|p| !p.is_empty()) {
            return Err(format!("query handler for {topic:?}: no program"));
        }
        if timeout.is_zero() {
            return Err(format!("query handler for {topic:?}: a zero timeout"));
        }
        Ok(Handler { topic, command, timeout })
    }

    /// `TOPIC=PROGRAM [ARG...]`, split on whitespace, with the default timeout.
    pub fn parse(spec: &str) -> Result<Handler, String> {
        let (topic, command) =
            spec.split_once('=').ok_or_else(|| format!("--query-handler {spec:?}: expected TOPIC=PROGRAM [ARG...]"))?;
        let command = command.split_whitespace().map(str::to_string).collect();
        Handler::new(topic.trim().to_string(), command, HANDLER_TIMEOUT)
    }
}

/// What became of the queries handed to handlers, since the agent started.
#[derive(Debug)]
struct Runs {
    answered: AtomicU64,
    busy: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
}

static RUNS: Runs = Runs {
    answered: AtomicU64::new(0),
    busy: AtomicU64::new(0),
    timed_out: AtomicU64::new(0),
    failed: AtomicU64::new(0),
};

/// The handlers' counters as Prometheus text.
pub fn to_prometheus() -> String {
    let name = "shoal_agent_query_handler_runs_total";
    let mut out = format!("# HELP {name} Queries handed to a query handler, by outcome\n# TYPE {name} counter\n");
    for (outcome, value) in
        [("answered", &RUNS.answered), ("busy", &RUNS.busy), ("timed_out", &RUNS.timed_out), ("failed", &RUNS.failed)]
    {
        out.push_str(&format!("{name}{{outcome=\"{outcome}\"}} {}\n", value.load(Ordering::Relaxed)));
    }
    out
}

/// Runs `handler` for one query: its output (at most [`MAX_OUTPUT`] bytes), or why not.
async fn run(handler: &Handler, from: &str, payload: &[u8]) -> Result<Vec<u8>, Outcome> {
    let mut child = tokio::process::Command::new(&handler.command[0])
        .args(&handler.command[1..])
        .env("SHOAL_QUERY_TOPIC", &handler.topic)
        .env("SHOAL_QUERY_FROM", from)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Outcome::Failed(format!("start {:?}: {e}", handler.command[0])))?;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take().ok_or_else(|| Outcome::Failed("no stdout".into()))?;
    let work = async {
        if let Some(mut input) = stdin.take() {
            // A program that does not read its input may close it early: not an error.
            let _ = input.write_all(payload).await;
        }
        let mut output = Vec::new();
        (&mut stdout)
            .take(MAX_OUTPUT as u64)
            .read_to_end(&mut output)
            .await
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        // Whatever it prints past the limit is read and dropped, so it never blocks on a full pipe.
        let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
        let status = child.wait().await.map_err(|e| Outcome::Failed(e.to_string()))?;
        if !status.success() {
            tracing::debug!(topic = %handler.topic, %status, "query handler exited with an error");
        }
        Ok(output)
    };
    match tokio::time::timeout(handler.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(Outcome::TimedOut),
    }
}

enum Outcome {
    TimedOut,
    Failed(String),
}

/// Answers the agents' own queries, and runs `handlers` for theirs, until the member shuts down.
pub fn spawn_responder(cluster: Cluster, handlers: Vec<Handler>) -> tokio::task::JoinHandle<()> {
    let mut events = cluster.events();
    if !handlers.is_empty() && cluster.config().security != SecurityMode::Encrypted {
        tracing::warn!("query handlers in a cluster that is not encrypted: any host that can reach us can start them");
    }
    let running = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let ClusterEvent::Query { inquiry, topic, payload } = event else { continue };
            let answer = match topic.as_str() {
                PING => "pong".to_string(),
                KEYS => apply_key_operation(&cluster, &String::from_utf8_lossy(&payload)),
                _ => {
                    if let Some(handler) = handlers.iter().find(|h| h.topic == topic) {
                        hand_over(&cluster, handler, &running, inquiry, payload);
                    }
                    continue;
                }
            };
            if let Err(e) = cluster.respond(&inquiry, answer.as_bytes()) {
                tracing::debug!(%topic, error = %e, "query not answered");
            }
        }
    })
}

/// Runs `handler` for one query in a task of its own and sends what it prints as the answer, unless
/// [`MAX_RUNNING`] handlers (counted in `running`) are busy already; counts the outcome either way.
fn hand_over(
    cluster: &Cluster,
    handler: &Handler,
    running: &Arc<AtomicUsize>,
    inquiry: Inquiry<Addr>,
    payload: Vec<u8>,
) {
    let topic = &handler.topic;
    if running.fetch_add(1, Ordering::AcqRel) >= MAX_RUNNING {
        running.fetch_sub(1, Ordering::AcqRel);
        RUNS.busy.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%topic, "query handlers all busy: query left unanswered");
        return;
    }
    let (cluster, handler, running) = (cluster.clone(), handler.clone(), running.clone());
    tokio::spawn(async move {
        let topic = &handler.topic;
        match run(&handler, inquiry.origin.as_str(), &payload).await {
            Ok(output) => match cluster.respond(&inquiry, &output) {
                Ok(()) => {
                    RUNS.answered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    RUNS.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%topic, error = %e, "query handler's answer not sent");
                }
            },
            Err(Outcome::TimedOut) => {
                RUNS.timed_out.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%topic, timeout = ?handler.timeout, "query handler killed at its timeout");
            }
            Err(Outcome::Failed(why)) => {
                RUNS.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%topic, error = %why, "query handler failed");
            }
        }
        running.fetch_sub(1, Ordering::AcqRel);
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_spec_names_a_topic_of_the_users_and_a_program_with_its_arguments() {
        let h = Handler::parse("version = cat /etc/app/version").unwrap();
        assert_eq!(h.topic, "version");
        assert_eq!(h.command, ["cat", "/etc/app/version"]);
        assert_eq!(h.timeout, HANDLER_TIMEOUT);
        assert!(Handler::parse("version").is_err(), "no program");
        assert!(Handler::parse("version=").is_err(), "an empty program");
        assert!(Handler::parse("=cat x").is_err(), "no topic");
        assert!(Handler::parse("_shoal/ping=echo pong").is_err(), "the agents' own topics are not for handlers");
        assert!(Handler::new("t".into(), vec!["true".into()], Duration::ZERO).is_err(), "a zero timeout");
    }
}
