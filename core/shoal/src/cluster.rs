//! The [`Cluster`] handle applications hold, and the [`Driver`] future that runs the protocol.
//!
//! `ClusterBuilder::build` returns both: the handle is cheap to clone and usable from any task; the
//! driver is a future the caller runs on the executor of its choice (`tokio::spawn(driver.run())`,
//! or any other executor). With feature `tokio`, [`ClusterBuilder::spawn`] does that
//! for you. Commands on the handle apply to the node at once (under a short lock) and wake the
//! driver, which sends what the node asked for and sleeps until the next packet or deadline. It
//! never waits for a send: what cannot leave at once waits, boundedly, for its destination's sender
//! task (see [`super::outbox`]).
//!
//! The plugins' reports reach the node from the plugins' own tasks, not through the driver loop:
//! a link going down or up ([`Transport::watch_link`], `watch_links` below) and a plugin's own
//! address changing ([`Transport::watch_local_addr`], `watch_addrs`). A move is applied to the
//! node inside the plugin's call, under the member's lock, before the plugin carries anything at
//! the new address; the driver then wakes and sends the announcement like any command's output.
//! A transmit the node produced before the move may still leave after it; what it says of us is
//! older than the move (a lower incarnation), and the others keep the newer claim.

use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use super::metrics::Metrics;
use super::outbox::{Lane, Limits, Outbox, Push};
use super::runtime::Runtime;
use super::seeds::{self, IntoSeed, Seed};
use super::signal::{lock, EventQueue, Latch, Rounds, Wakeup};
use super::{CloseReason, ClusterError, EventStream};
use shoal_core::addr::Addr;
use shoal_core::config::Config;
use shoal_core::event::{BroadcastId, Event, MessageKind};
use shoal_core::identity::NodeId;
use shoal_core::member::{Member, MemberState};
use shoal_core::node::{Node, Transmit};
use shoal_transport::{BoxFuture, Packet, Router, Transport, TransportError};

/// An event as the driver reports it.
pub type ClusterEvent = Event<Addr>;

/// A user message (broadcast or direct) handed to [`Cluster::on_message`] callbacks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterMessage {
    /// The member that sent it (a broadcast's origin, not the member that relayed it).
    pub from: NodeId,
    /// The topic it was sent under.
    pub topic: String,
    /// Its bytes, as sent.
    pub payload: Vec<u8>,
    /// Broadcast, best-effort direct message or reliable direct message.
    pub kind: MessageKind,
}

#[cfg(not(target_arch = "wasm32"))]
type MessageHandler = Arc<dyn Fn(&ClusterMessage) + Send + Sync>;
#[cfg(target_arch = "wasm32")]
type MessageHandler = Arc<dyn Fn(&ClusterMessage)>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum RunState {
    Running,
    /// Asked to stop; the driver has not finished yet.
    Stopping(CloseReason),
    /// The driver has finished (or died): commands fail with the reason's error.
    Stopped(CloseReason),
}

impl RunState {
    /// `Err` with what commands return once the member is stopping or stopped.
    fn check(&self) -> Result<(), ClusterError> {
        match self {
            RunState::Running => Ok(()),
            RunState::Stopping(reason) | RunState::Stopped(reason) => Err(reason.error()),
        }
    }
}

struct Inner {
    node: Node<Addr>,
    subscribers: Vec<Arc<EventQueue<ClusterEvent>>>,
    handlers: Vec<MessageHandler>,
    state: RunState,
    transport_errors: u64,
    callback_panics: u64,
    sends_abandoned: u64,
    /// Events dropped for subscribers that are gone (their streams were dropped or closed): with
    /// the live subscribers' drops, the `dropped_events` counter, which never goes down.
    dropped_events_retired: u64,
}

impl Inner {
    /// Events dropped by slow subscribers since the member started, gone ones included.
    fn dropped_events(&self) -> u64 {
        self.dropped_events_retired + self.subscribers.iter().map(|s| s.dropped()).sum::<u64>()
    }

    /// Forgets subscribers whose streams were dropped, keeping count of what they missed.
    fn retire_dropped_subscribers(&mut self) {
        let mut retired = 0;
        self.subscribers.retain(|s| {
            let live = Arc::strong_count(s) > 1;
            if !live {
                retired += s.dropped();
            }
            live
        });
        self.dropped_events_retired += retired;
    }
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    wakeup: Wakeup,
    rounds: Rounds,
    runtime: Arc<dyn Runtime>,
    router: Router,
    /// Set once, with the reason, when the member has stopped (however its driver ended).
    closed: Latch<CloseReason>,
    event_capacity: usize,
    /// Transmits waiting for their destinations' sender tasks.
    outbox: Outbox,
    /// The seeds of the latest join that named a DNS name, resolved again every re-announce
    /// interval (`None` until such a join).
    seed_names: Mutex<Option<Vec<Seed>>>,
}

impl Shared {
    /// Publishes the member's end: commands fail from now on, every event stream ends, and
    /// `shutdown`, `leave`, `flush` and `closed` return. Only the first call counts. Called from a
    /// `Drop` during unwinding too, so it must not panic (the lock recovers from poisoning).
    fn publish_close(&self, reason: CloseReason) {
        let subscribers = {
            let mut inner = lock(&self.inner);
            if matches!(inner.state, RunState::Stopped(_)) {
                return;
            }
            inner.state = RunState::Stopped(reason.clone());
            inner.dropped_events_retired = inner.dropped_events();
            std::mem::take(&mut inner.subscribers)
        };
        for s in subscribers {
            s.close();
        }
        self.rounds.bump();
        self.closed.set(reason);
    }
}

/// Bytes of frames that may wait for their destinations, all destinations together.
const OUTBOX_BACKLOG: usize = 64 << 20;

/// Bytes of best-effort frames that may wait for one destination: about 45 full UDP packets. They
/// wait only behind a send that could not complete at once (a full socket, a TCP-only peer being
/// connected to), and a probe that waited longer than that would be answered too late anyway.
const BEST_EFFORT_PER_DESTINATION: usize = 64 << 10;

/// The outbox's bounds: reliable frames for one destination may take an eighth of the backlog, or
/// one largest frame if that is more. A black-holed peer holds no more than this.
fn outbox_limits(config: &Config) -> Limits {
    let largest = config.max_reliable_size + shoal_core::security::OVERHEAD;
    let per_destination = (OUTBOX_BACKLOG / 8).max(largest);
    Limits {
        total: OUTBOX_BACKLOG.max(per_destination),
        per_destination,
        best_effort_per_destination: BEST_EFFORT_PER_DESTINATION,
    }
}

/// Builds a [`Cluster`]: name, configuration, metadata and transports.
#[derive(Debug)]
pub struct ClusterBuilder {
    name: NodeId,
    config: Config,
    meta: Vec<u8>,
    advertise: Option<Addr>,
    seed: Option<u64>,
    event_capacity: usize,
    keyring: Option<shoal_core::security::Keyring>,
    admission: Option<Admission>,
    conflicts: Option<ConflictPolicy>,
}

/// The builder's admission policy (a closure has no `Debug`).
struct Admission(shoal_core::AdmissionPolicy<Addr>);

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admission(..)")
    }
}

/// The builder's conflict policy.
struct ConflictPolicy(shoal_core::ConflictPolicy<Addr>);

impl std::fmt::Debug for ConflictPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConflictPolicy(..)")
    }
}

impl ClusterBuilder {
    /// A policy asked about every member before it is added or its record replaced (memberlist's
    /// Alive and Merge delegates, `CIDRsAllowed`): return `false` to refuse it. A refused member is
    /// never added and is counted (`Stats::members_refused`), a seed that refuses a joiner does not
    /// answer it, and an admitted member whose new record is refused is declared failed here. See
    /// [`shoal_core::node::admission`]; give every member of a cluster the same policy.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use shoal::{proto::Candidate, Addr, Cluster, Tags};
    ///
    /// let same_cluster = |m: &Candidate<'_, Addr>| {
    ///     m.meta.and_then(|meta| Tags::from_metadata(meta).ok()).is_some_and(|t| t.get("cluster") == Some("blue"))
    /// };
    /// let cluster = Cluster::builder("web-1")?
    ///     .tags(&Tags::from_pairs([("cluster", "blue")])?)
    ///     .admission(same_cluster)
    ///     .bind("10.0.0.5:7946")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn admission(
        mut self,
        policy: impl Fn(&shoal_core::Candidate<'_, Addr>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.admission = Some(Admission(Box::new(policy)));
        self
    }

    /// A policy asked about every alive claim, with a newer incarnation, for a live member's name
    /// from another address (memberlist's ConflictDelegate, with a say): return `true` to move the
    /// member to the claimed address at once, as when a container restarts on a new IP before its
    /// old one is declared failed. Without one such claims are rejected and reported as
    /// `ClusterEvent::AddressConflict`. Take claims only with encryption on, or from addresses you
    /// trust: in plaintext anyone can claim a name. See [`shoal_core::node::admission`].
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use shoal::{proto::Conflict, Addr, Cluster};
    ///
    /// let our_subnet = |c: &Conflict<'_, Addr>| c.claimed.0.as_str().starts_with("udp://10.1.");
    /// let cluster = Cluster::builder("web-1")?.conflict_policy(our_subnet).bind("10.1.0.5:7946").await?;
    /// # Ok(()) }
    /// ```
    pub fn conflict_policy(
        mut self,
        policy: impl Fn(&shoal_core::Conflict<'_, Addr>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.conflicts = Some(ConflictPolicy(Box::new(policy)));
        self
    }

    /// The encryption keyring (needed unless `config.security` is `Plaintext`). The nonce generator
    /// is seeded from the runtime's CSPRNG.
    pub fn keyring(mut self, keyring: shoal_core::security::Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// The protocol configuration (default: [`Config::lan`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Initial metadata as tags (see [`Tags`](crate::Tags)); replaces any `metadata`.
    pub fn tags(self, tags: &crate::Tags) -> Self {
        self.metadata(tags.to_metadata())
    }

    /// Initial metadata (for example `b"role=web"`).
    pub fn metadata(mut self, meta: impl Into<Vec<u8>>) -> Self {
        self.meta = meta.into();
        self
    }

    /// The address other members reach us at (default: the first transport's local address).
    /// Set it when binding to `0.0.0.0` or behind NAT.
    pub fn advertise(mut self, addr: Addr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// A fixed seed for the protocol's randomness (tests); by default the runtime's CSPRNG.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// How many events each `events()` subscriber may fall behind before the oldest are dropped.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n;
        self
    }

    /// Creates the handle and the driver future. Nothing runs until the driver is polled.
    pub fn build(
        self,
        transports: Vec<Arc<dyn Transport>>,
        runtime: Arc<dyn Runtime>,
    ) -> Result<(Cluster, Driver), ClusterError> {
        // Read before the node exists: a plugin that moves from now on is followed (`watch_addrs`).
        let addrs: Vec<Addr> = transports.iter().map(|t| t.local_addr()).collect();
        let first = addrs.first().ok_or(ClusterError::NoTransport)?;
        let advertise = self.advertise.unwrap_or_else(|| first.clone());
        let seed = self.seed.unwrap_or_else(|| runtime.random_seed());
        let now = runtime.now();
        // Its own hash seed, derived from the protocol's without touching the node's random stream.
        let outbox = Outbox::new(outbox_limits(&self.config), seed.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15);
        let mut node = Node::new(now, self.config, self.name, advertise, seed).map_err(ClusterError::Config)?;
        if let Some(Admission(policy)) = self.admission {
            node.set_admission(policy);
        }
        if let Some(ConflictPolicy(policy)) = self.conflicts {
            node.set_conflict_policy(policy);
        }
        if let Some(keyring) = self.keyring {
            let mut entropy = [0u8; 32];
            for chunk in entropy.chunks_mut(8) {
                chunk.copy_from_slice(&runtime.random_seed().to_le_bytes());
            }
            node.set_keyring(keyring, entropy);
        }
        if !self.meta.is_empty() {
            node.set_metadata(&self.meta).map_err(ClusterError::Command)?;
        }
        let router = Router::new(transports);
        // On wasm32 nothing is Send and nothing needs to be: the Arc is shared within one thread.
        #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                node,
                subscribers: Vec::new(),
                handlers: Vec::new(),
                state: RunState::Running,
                transport_errors: 0,
                callback_panics: 0,
                sends_abandoned: 0,
                dropped_events_retired: 0,
            }),
            wakeup: Wakeup::default(),
            rounds: Rounds::default(),
            runtime,
            router: router.clone(),
            closed: Latch::default(),
            event_capacity: self.event_capacity,
            outbox,
            seed_names: Mutex::new(None),
        });
        // The wasm package wires its relay connection to `set_link_up` itself (and counts bytes).
        #[cfg(not(target_arch = "wasm32"))]
        watch_links(&shared);
        watch_addrs(&shared, addrs);
        let exit = PublishOnExit { shared: shared.clone(), reason: None };
        Ok((Cluster { shared: shared.clone() }, Driver { shared, router, exit }))
    }

    /// Builds and spawns the driver on the current tokio runtime.
    #[cfg(feature = "tokio")]
    pub fn spawn(self, transports: Vec<Arc<dyn Transport>>) -> Result<Cluster, ClusterError> {
        let (cluster, driver) = self.build(transports, Arc::new(super::runtime::TokioRuntime::new()))?;
        tokio::spawn(driver.run());
        Ok(cluster)
    }

    /// Binds UDP and TCP on one port of `addr` (`"0.0.0.0:7946"`, `"[::]:7946"`, a host name and
    /// port, or port 0 for any free port) and spawns the member on the current tokio runtime: the
    /// last call of a builder for a member on the usual transports. Without
    /// [`advertise`](Self::advertise), a member bound to an unspecified address advertises the
    /// address of the interface its host routes from (see [`crate::bind`]). Features `udp` and
    /// `tcp` (default).
    #[cfg(all(feature = "udp", feature = "tcp"))]
    pub async fn bind(mut self, addr: &str) -> Result<Cluster, ClusterError> {
        let at = resolve(addr).await?;
        let (udp, tcp) = crate::bind::udp_and_tcp(at, self.advertise.clone()).await.map_err(ClusterError::Bind)?;
        // The address the TCP side advertises: the one given, or the bound one made reachable.
        self.advertise = Some(tcp.local_addr());
        self.spawn(vec![udp, tcp])
    }
}

/// The first address `addr` resolves to (an `ip:port` needs no lookup).
#[cfg(all(feature = "udp", feature = "tcp"))]
async fn resolve(addr: &str) -> Result<std::net::SocketAddr, ClusterError> {
    if let Ok(at) = addr.parse() {
        return Ok(at);
    }
    let not_found = || std::io::Error::new(std::io::ErrorKind::NotFound, format!("{addr}: no address"));
    let mut found = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| ClusterError::Bind(std::io::Error::new(e.kind(), format!("{addr}: {e}"))))?;
    found.next().ok_or_else(|| ClusterError::Bind(not_found()))
}

/// Has every plugin that can tell report its link (see [`Transport::watch_link`]): the member's
/// own link is down while every plugin's is, and up as soon as one is back. A plugin that cannot
/// tell never reports, so a member with one (a UDP socket beside a relay connection) never counts
/// as cut off. The listeners hold the member weakly: they keep nothing alive.
#[cfg(not(target_arch = "wasm32"))]
fn watch_links(shared: &Arc<Shared>) {
    let plugins = shared.router.plugins();
    let down = Arc::new(Mutex::new(vec![false; plugins.len()]));
    for (i, plugin) in plugins.iter().enumerate() {
        let member = Arc::downgrade(shared);
        let down = down.clone();
        plugin.watch_link(Box::new(move |up| {
            // Held while the member is told, so that two plugins' reports reach it in order.
            let mut down = lock(&down);
            down[i] = !up;
            let link_up = !down.iter().all(|d| *d);
            if let Some(shared) = member.upgrade() {
                // Refused only once the member is stopping: nobody left to tell.
                let _ = Cluster { shared }.set_link_up(link_up);
            }
        }));
    }
}

/// Has every plugin report changes of its own address (see [`Transport::watch_local_addr`]) and
/// moves the member along when it advertised the old one. `addrs` are the plugins' addresses as
/// read before the node was built: a plugin that moved between that read and the listener's
/// registration is caught up with here (following the same move twice changes nothing). The
/// listeners hold the member weakly.
fn watch_addrs(shared: &Arc<Shared>, addrs: Vec<Addr>) {
    for (plugin, before) in shared.router.plugins().iter().zip(addrs) {
        let member = Arc::downgrade(shared);
        let name = plugin.name();
        plugin.watch_local_addr(Box::new(move |old, new| {
            if let Some(shared) = member.upgrade() {
                shared.follow_move(name, old, new);
            }
        }));
        let now = plugin.local_addr();
        if now != before {
            shared.follow_move(plugin.name(), &before, &now);
        }
    }
}

/// A handle to a running member. Clone it freely; every clone controls the same member.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("name", &self.name()).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts a member on one UDP + TCP port of `addr` with the LAN preset, named after this host
    /// (as memberlist names its members), on the current tokio runtime; then call
    /// [`join`](Self::join). For another name, preset, metadata or a keyring, use
    /// [`Cluster::builder`] and end it with [`ClusterBuilder::bind`]. Features `udp` and `tcp`
    /// (default).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), shoal::ClusterError> {
    /// let cluster = shoal::Cluster::bind("0.0.0.0:7946").await?;
    /// # Ok(()) }
    /// ```
    #[cfg(all(feature = "udp", feature = "tcp"))]
    pub async fn bind(addr: &str) -> Result<Cluster, ClusterError> {
        Cluster::builder(&crate::bind::host_name())?.bind(addr).await
    }

    /// Starts building a member named `name` (unique in the cluster).
    pub fn builder(name: &str) -> Result<ClusterBuilder, ClusterError> {
        Ok(ClusterBuilder {
            name: NodeId::new(name).map_err(ClusterError::InvalidName)?,
            config: Config::lan(),
            meta: Vec::new(),
            advertise: None,
            seed: None,
            event_capacity: 4_096,
            keyring: None,
            admission: None,
            conflicts: None,
        })
    }

    /// Runs `f` on the node at the current time, then wakes the driver to send what it produced.
    pub(crate) fn command<T>(
        &self,
        f: impl FnOnce(&mut Node<Addr>, shoal_core::Instant) -> T,
    ) -> Result<T, ClusterError> {
        let now = self.shared.runtime.now();
        let out = {
            let mut inner = lock(&self.shared.inner);
            inner.state.check()?;
            f(&mut inner.node, now)
        };
        self.shared.wakeup.notify();
        Ok(out)
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&Node<Addr>) -> T) -> T {
        f(&lock(&self.shared.inner).node)
    }

    /// Our name.
    pub fn name(&self) -> NodeId {
        self.read(|n| n.local_id().clone())
    }

    /// The address we advertise now: the one the member was built with, or the latest it moved
    /// to (a relay connection that failed over to another relay of the fleet, see
    /// [`Cluster::move_to`]).
    pub fn local_addr(&self) -> Addr {
        self.read(|n| n.local_addr().clone())
    }

    /// Joins through `seeds` and waits until one answers (`Ok` with the seed that did) or
    /// `join_timeout` passes (`Err(JoinFailed)`). Re-announcing to the seeds continues afterwards, so
    /// a member that failed to join still finds the cluster once a seed comes up.
    ///
    /// A seed is an [`Addr`], or text: an address (`udp://10.0.0.5:7946`, `10.0.0.5:7946`) or a
    /// DNS name with a port (`seeds.internal:7946`), which stands for every address its A and AAAA
    /// records list, resolved now and again every `reannounce_interval` (see [`Seed`]).
    /// `Err(Resolve)` when no seed could be used because every name failed to resolve.
    pub async fn join<S: IntoSeed>(&self, seeds: impl IntoIterator<Item = S>) -> Result<Addr, ClusterError> {
        let seeds: Vec<Seed> = seeds.into_iter().map(IntoSeed::into_seed).collect::<Result<_, _>>()?;
        let (addrs, failed) = seeds::resolve(&*self.shared.runtime, &seeds).await;
        for (seed, e) in &failed {
            tracing::warn!(%seed, error = %e, "a seed name did not resolve");
        }
        if let (true, Some((seed, source))) = (addrs.is_empty(), failed.into_iter().next()) {
            return Err(ClusterError::Resolve { seed: seed.to_string(), source });
        }
        if seeds.iter().any(|s| matches!(s, Seed::Name { .. })) {
            self.follow_seed_names(seeds);
        }
        let mut events = self.events();
        self.command(|node, now| node.join(now, &addrs))?.map_err(ClusterError::Command)?;
        while let Some(event) = events.next().await {
            match event {
                Event::JoinSucceeded { via } => return Ok(via),
                Event::JoinFailed { seeds } => return Err(ClusterError::JoinFailed { seeds }),
                _ => {}
            }
        }
        // The stream ends only once the member has stopped.
        Err(lock(&self.shared.inner).state.check().err().unwrap_or(ClusterError::Shutdown))
    }

    /// Keeps the addresses the protocol re-announces to in step with the seed names of the latest
    /// join: every `reannounce_interval` the names are resolved again and the addresses handed to
    /// the protocol (a name that fails keeps nothing from the others; a round where all fail
    /// changes nothing). One task per member, holding it weakly; it ends when the member stops.
    fn follow_seed_names(&self, seeds: Vec<Seed>) {
        let every = self.read(|n| n.config().reannounce_interval);
        let first = lock(&self.shared.seed_names).replace(seeds).is_none();
        if !first || every.is_zero() {
            return;
        }
        let member = Arc::downgrade(&self.shared);
        let runtime = self.shared.runtime.clone();
        self.shared.runtime.spawn(Box::pin(async move {
            loop {
                runtime.sleep(every).await;
                let Some(shared) = member.upgrade() else { return };
                let seeds = lock(&shared.seed_names).clone().unwrap_or_default();
                let (addrs, failed) = seeds::resolve(&*runtime, &seeds).await;
                for (seed, e) in &failed {
                    tracing::warn!(%seed, error = %e, "a seed name did not resolve; keeping the other seeds");
                }
                if addrs.is_empty() {
                    continue;
                }
                if (Cluster { shared }).command(|n, _| n.set_seeds(&addrs)).is_err() {
                    return;
                }
            }
        }));
    }

    /// Broadcasts to every member (each receives it once as a message event; one that misses it gets
    /// it from another member's push-pull, or reports it in `Event::BroadcastsMissed`). Returns its id,
    /// which `Event::BroadcastDropped` names if our full queue drops it.
    pub fn broadcast(&self, topic: &str, payload: &[u8]) -> Result<BroadcastId, ClusterError> {
        self.command(|n, _| n.broadcast(topic, payload, None))?.map_err(ClusterError::Command)
    }

    /// Broadcasts under an invalidation key: a newer broadcast from us with the same topic and key
    /// replaces this one wherever it is still queued (latest-value semantics, e.g. presence state),
    /// and members that join later receive the latest value.
    pub fn broadcast_keyed(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<BroadcastId, ClusterError> {
        self.command(|n, _| n.broadcast(topic, payload, Some(key)))?.map_err(ClusterError::Command)
    }

    /// Broadcasts a keyed value that lives `ttl` (chitchat's `set_with_ttl`): every member drops it
    /// and reports `ClusterEvent::StateExpired` `ttl` after it reached them, unless we set the key
    /// again first (presence, leases: refresh well within the time). Members that join meanwhile
    /// get it with what is left of its time. See [`shoal_core::Node::broadcast_with_ttl`].
    pub fn broadcast_with_ttl(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        ttl: Duration,
    ) -> Result<BroadcastId, ClusterError> {
        self.command(|n, _| n.broadcast_with_ttl(topic, payload, key, ttl))?.map_err(ClusterError::Command)
    }

    /// The keyed values this member holds, ours included, as `(origin, topic, key, value)`: the
    /// latest per origin, topic and key. Values of members that left, and values whose time to
    /// live ran out, are gone.
    pub fn keyed_state(&self) -> Vec<(NodeId, String, Vec<u8>, Vec<u8>)> {
        self.read(|n| n.keyed_state())
    }

    /// Sends a best-effort message to a member (must fit in one packet).
    pub fn send(&self, to: &NodeId, topic: &str, payload: &[u8]) -> Result<(), ClusterError> {
        self.command(|n, now| n.send(now, to, topic, payload, false))?.map_err(ClusterError::Command)
    }

    /// Sends a message to a member over the reliable path (large payloads, up to
    /// `max_reliable_size`). The receiver acknowledges it; it is sent again until it does, and
    /// `Event::SendFailed` with the returned id reports it lost after `reliable_attempts` tries.
    pub fn send_reliable(&self, to: &NodeId, topic: &str, payload: &[u8]) -> Result<u64, ClusterError> {
        self.command(|n, now| n.send_reliable(now, to, topic, payload))?.map_err(ClusterError::Command)
    }

    /// Sends a message to an address, member or not (reliable ones acknowledged as
    /// [`Cluster::send_reliable`] says).
    pub fn send_to_addr(&self, to: &Addr, topic: &str, payload: &[u8], reliable: bool) -> Result<(), ClusterError> {
        self.command(|n, now| n.send_to_addr(now, to.clone(), topic, payload, reliable))?.map_err(ClusterError::Command)
    }

    /// Waits until the driver has handed every packet produced so far to the transports (best-effort
    /// ones that could not be sent at once included: they wait for their destination's sender task).
    /// Best-effort sends are not queued by the transports, so a sender that calls this every few
    /// hundred messages never has more than that waiting. A transport whose send never completes
    /// holds it up at most [`super::BEST_EFFORT_SEND_DEADLINE`]: that send is given up and counted
    /// ([`Metrics::sends_abandoned`]), and what waits behind it for the same destination dropped.
    pub async fn flush(&self) {
        loop {
            let seen = self.shared.rounds.current();
            let (running, produced) = {
                let inner = lock(&self.shared.inner);
                (inner.state == RunState::Running, inner.node.pending_transmits() > 0)
            };
            if !running || (!produced && self.shared.outbox.best_effort_waiting() == 0) {
                return;
            }
            self.shared.wakeup.notify();
            self.shared.rounds.after(seen).await;
        }
    }

    /// Calls `f` for every broadcast and direct message received, on the driver's task. Keep it short;
    /// hand heavy work to another task. A panic in `f` does not stop the member: it is logged,
    /// counted in [`Metrics::callback_panics`], and `f` is called again for the next message.
    pub fn on_message(&self, f: impl Fn(&ClusterMessage) + super::MaybeSendSync + 'static) {
        lock(&self.shared.inner).handlers.push(Arc::new(f));
    }

    /// A stream of every event from now on. A subscriber more than `event_capacity` events behind
    /// loses the oldest ones ([`EventStream::dropped`] counts them).
    pub fn events(&self) -> EventStream {
        let queue = EventQueue::new(self.shared.event_capacity);
        let mut inner = lock(&self.shared.inner);
        if matches!(inner.state, RunState::Stopped(_)) {
            queue.close();
        }
        inner.subscribers.push(queue.clone());
        EventStream::new(queue)
    }

    /// Every known member other than ourselves, in any state.
    pub fn members(&self) -> Vec<Member<Addr>> {
        self.read(|n| n.members().cloned().collect())
    }

    /// Members believed alive (not suspect, failed or left).
    pub fn alive_members(&self) -> Vec<Member<Addr>> {
        self.read(|n| n.members().filter(|m| m.state == MemberState::Alive).cloned().collect())
    }

    /// Known members other than ourselves that pass `filter` (by name, state and tags; see
    /// [`MemberFilter`](crate::MemberFilter)), as `serf members -status alive -tag role=web` lists them.
    pub fn members_matching(&self, filter: &crate::MemberFilter) -> Vec<Member<Addr>> {
        self.read(|n| n.members().filter(|m| filter.matches(m)).cloned().collect())
    }

    /// Our own record as others see it.
    pub fn local_member(&self) -> Member<Addr> {
        self.read(|n| Member {
            id: n.local_id().clone(),
            addr: n.local_addr().clone(),
            incarnation: n.incarnation(),
            state: MemberState::Alive,
            meta_complete: true,
            versions: (shoal_core::wire::MIN_PROTOCOL_VERSION, shoal_core::wire::PROTOCOL_VERSION),
            state_since: shoal_core::Instant::ZERO,
            meta: crate::Metadata::new(n.metadata()),
        })
    }

    /// Our tags: our metadata read as [`Tags`](crate::Tags), empty when it is not tags.
    pub fn tags(&self) -> crate::Tags {
        self.read(|n| crate::Tags::from_metadata(n.metadata()).unwrap_or_default())
    }

    /// Replaces our metadata with `tags` and announces them (Serf's `tags -set`): read back,
    /// change, set.
    ///
    /// ```no_run
    /// # fn f(cluster: &shoal::Cluster) -> Result<(), shoal::ClusterError> {
    /// let mut tags = cluster.tags();
    /// tags.insert("role", "db").expect("a short key");
    /// tags.remove("draining");
    /// cluster.set_tags(&tags)?;
    /// # Ok(()) }
    /// ```
    pub fn set_tags(&self, tags: &crate::Tags) -> Result<(), ClusterError> {
        self.set_metadata(&tags.to_metadata())
    }

    /// Replaces our metadata and announces it.
    pub fn set_metadata(&self, meta: &[u8]) -> Result<(), ClusterError> {
        self.command(|n, _| n.set_metadata(meta))?.map_err(ClusterError::Command)
    }

    /// Sets the application state that every push-pull carries, memberlist's `LocalState`: other
    /// members receive it as `ClusterEvent::RemoteState` when they join through us, when we join through
    /// them, and at every push-pull between us (one random member every `push_pull_interval`), and
    /// merge it as they see fit. Call it whenever the state changes; the latest bytes go out. At
    /// most half of `max_reliable_size`, else `ClusterError::Command(CommandError::TooLarge)`.
    /// See [`shoal_core::Node::set_local_state`].
    ///
    /// ```no_run
    /// # async fn f(cluster: shoal::Cluster) -> Result<(), shoal::ClusterError> {
    /// use shoal::ClusterEvent;
    /// cluster.set_local_state(b"schema=7")?;
    /// let mut events = cluster.events();
    /// while let Some(event) = events.next().await {
    ///     if let ClusterEvent::RemoteState { from, join, state } = event {
    ///         println!("{from} holds {:?} (join: {join})", String::from_utf8_lossy(&state));
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn set_local_state(&self, state: &[u8]) -> Result<(), ClusterError> {
        self.command(|n, _| n.set_local_state(state))?.map_err(ClusterError::Command)
    }

    /// Turns network coordinates on or off (off by default): with them on, our acks carry our
    /// coordinate (about 25 bytes) and our probes' acks move it, so that [`Cluster::estimate_rtt`]
    /// and [`Cluster::nearest`] work for every member that has them on too. Serf's coordinates;
    /// see [`shoal_core::coordinate`].
    pub fn set_coordinates(&self, on: bool) -> Result<(), ClusterError> {
        self.command(|n, _| n.set_coordinates(on))
    }

    /// The round trip of our last direct probe of `member` that was acknowledged: measured, not
    /// estimated. `None` until one was (members are probed in turn, one per protocol period).
    pub fn rtt(&self, member: &NodeId) -> Option<Duration> {
        self.read(|n| n.rtt(member))
    }

    /// The estimated round trip to `member` from both members' coordinates: any member, not only
    /// the ones probed already ([`Cluster::rtt`] is the last measured). `None` while coordinates are off
    /// here or there, or before its first ack to one of our probes.
    pub fn estimate_rtt(&self, member: &NodeId) -> Option<Duration> {
        self.read(|n| n.estimate_rtt(member))
    }

    /// Up to `n` live members by estimated round trip, nearest first (see [`Cluster::estimate_rtt`]).
    ///
    /// ```no_run
    /// # fn f(cluster: &shoal::Cluster) -> Result<(), shoal::ClusterError> {
    /// cluster.set_coordinates(true)?;
    /// // ... once members have probed each other for a minute or two:
    /// for (name, rtt) in cluster.nearest(3) {
    ///     println!("{name}: about {rtt:?} away");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn nearest(&self, n: usize) -> Vec<(NodeId, Duration)> {
        self.read(|node| node.nearest(n))
    }

    /// Our network coordinate, while coordinates are on.
    pub fn coordinate(&self) -> Option<shoal_core::coordinate::Coordinate> {
        self.read(|n| n.coordinate().copied())
    }

    /// Sets the bytes every ack we send carries, memberlist's `PingDelegate::AckPayload` (at most
    /// `shoal::proto::wire::MAX_ACK_PAYLOAD`): members that probe us receive them as
    /// `ClusterEvent::PingComplete` with the round trip (a load figure, a build number).
    pub fn set_ack_payload(&self, payload: &[u8]) -> Result<(), ClusterError> {
        self.command(|n, _| n.set_ack_payload(payload))?.map_err(ClusterError::Command)
    }

    /// Retunes the running member's protocol settings (foca's `set_config`): timing, fan-out,
    /// Lifeguard switches, reap and retry times. Settings the cluster relies on (packet and
    /// metadata sizes, queue depths, encryption, the label) are refused with
    /// `ClusterError::Config` naming the field; see [`shoal_core::Node::set_config`].
    pub fn set_config(&self, config: Config) -> Result<(), ClusterError> {
        self.command(|n, _| n.set_config(config))?.map_err(ClusterError::Config)
    }

    /// The member's protocol settings now.
    pub fn config(&self) -> Config {
        self.read(|n| n.config().clone())
    }

    /// Removes a failed member for good (Serf's `force-leave`): call it for a member that failed
    /// and will not come back, so that nobody keeps trying to reach it. Every member reports it
    /// as [`Event::Left`] as the news spreads. Refused with
    /// `ClusterError::Command(CommandError::NotFailed)` for a member that is alive or suspect; see
    /// [`shoal_core::Node::force_leave`].
    pub fn force_leave(&self, name: &NodeId) -> Result<(), ClusterError> {
        self.command(|n, now| n.force_leave(now, name))?.map_err(ClusterError::Command)
    }

    /// Tells the member whether its own link to the cluster is up: call with `false` when a
    /// transport that can tell (a relay connection) drops, and with `true` once it is back. While
    /// it is down the member accuses nobody (see [`shoal_core::Node::set_link_up`]). Plugins that
    /// implement [`Transport::watch_link`] (`shoal-websocket`'s) are wired to this when the member
    /// is built; call it yourself only for a link the plugins cannot see.
    pub fn set_link_up(&self, up: bool) -> Result<(), ClusterError> {
        self.command(|n, now| n.set_link_up(now, up))
    }

    /// Moves the member to a new address of its own and announces it (see
    /// [`shoal_core::Node::move_to`]): its incarnation rises and the others take the new address
    /// when it is a move from `relay://R1/P` to `relay://R2/P` with R2 announced by a live member
    /// ([`proto::RELAY_TAG`](crate::proto::RELAY_TAG)). Call it once the new relay has welcomed the
    /// member, before anything is sent through it. Plugins that report their moves
    /// ([`Transport::watch_local_addr`], `shoal-websocket`'s) are followed by themselves; call it
    /// yourself only for a connection the plugins cannot see. Moving to the address the member
    /// has does nothing.
    pub fn move_to(&self, addr: Addr) -> Result<(), ClusterError> {
        let (old, incarnation) = self.command(|n, now| {
            let old = n.local_addr().clone();
            n.move_to(now, addr.clone());
            (old, n.incarnation())
        })?;
        if old != addr {
            tracing::info!(node = %self.name(), from = %old, to = %addr, incarnation, "moved: our address changed; announcing the new one");
        }
        Ok(())
    }

    /// Adds a decryption key (step 1 of a rotation; see [`crate::Keyring`]). The member must have
    /// been built with a keyring.
    pub fn install_key(&self, key: crate::Key) -> Result<(), ClusterError> {
        self.command(|n, _| {
            n.keyring_mut().ok_or(ClusterError::NoKeyring)?.install(key);
            Ok(())
        })?
    }

    /// Makes an installed key the one that encrypts (step 2 of a rotation).
    pub fn use_key(&self, key: crate::Key) -> Result<(), ClusterError> {
        self.command(|n, _| {
            n.keyring_mut().ok_or(ClusterError::NoKeyring)?.use_key(key).map_err(ClusterError::Keyring)
        })?
    }

    /// Removes a key that no longer encrypts (step 3 of a rotation).
    pub fn remove_key(&self, key: crate::Key) -> Result<(), ClusterError> {
        self.command(|n, _| n.keyring_mut().ok_or(ClusterError::NoKeyring)?.remove(key).map_err(ClusterError::Keyring))?
    }

    /// The installed keys, the one that encrypts first: `Err(NoKeyring)` for a member built
    /// without a keyring.
    pub fn keys(&self) -> Result<Vec<crate::Key>, ClusterError> {
        self.command(|n, _| Ok(n.keyring_mut().ok_or(ClusterError::NoKeyring)?.keys().copied().collect()))?
    }

    /// Changes the security mode (the steps of turning encryption on without downtime).
    pub fn set_security_mode(&self, mode: crate::SecurityMode) -> Result<(), ClusterError> {
        self.command(|n, _| n.set_security_mode(mode))
    }

    /// Counters and gauges for monitoring.
    pub fn metrics(&self) -> Metrics {
        let transport = self.shared.router.counters();
        let inner = lock(&self.shared.inner);
        let mut m = Metrics::collect(&inner.node, transport, inner.transport_errors, inner.dropped_events());
        m.reliable_dropped = self.shared.outbox.dropped(Lane::Reliable);
        m.best_effort_dropped = self.shared.outbox.dropped(Lane::BestEffort);
        m.callback_panics = inner.callback_panics;
        m.sends_abandoned = inner.sends_abandoned;
        m
    }

    /// Leaves gracefully: announces the departure, waits until it has been gossiped (or `timeout`),
    /// then shuts down. Others see us as left, not failed. Returns at once with the member's
    /// closing error if it stops meanwhile for another reason.
    pub async fn leave(&self, timeout: Duration) -> Result<(), ClusterError> {
        self.command(|n, now| n.leave(now))?;
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        let done = loop {
            let disseminated = {
                let inner = lock(&self.shared.inner);
                inner.state.check()?;
                inner.node.leave_disseminated()
            };
            if disseminated {
                break true;
            }
            if waited >= timeout {
                break false;
            }
            self.shared.runtime.sleep(step).await;
            waited += step;
        };
        self.stop(CloseReason::Left).await;
        if done {
            Ok(())
        } else {
            Err(ClusterError::LeaveTimeout)
        }
    }

    /// Stops the driver and closes the transports, without telling anyone (others will detect a
    /// failure). Use [`Cluster::leave`] for a graceful exit. Completes when the driver has stopped
    /// (at once if it already has).
    pub async fn shutdown(&self) {
        self.stop(CloseReason::Shutdown).await;
    }

    async fn stop(&self, reason: CloseReason) {
        {
            let mut inner = lock(&self.shared.inner);
            if inner.state == RunState::Running {
                inner.state = RunState::Stopping(reason);
            }
        }
        self.shared.wakeup.notify();
        self.shared.closed.wait().await;
    }

    /// Completes once the member has stopped, with the reason: shut down, left, or its driver died
    /// (panicked, was dropped, or lost every transport). Completes at once if it already has.
    /// From then on every command fails ([`CloseReason`] says with what) and event streams end.
    pub async fn closed(&self) -> CloseReason {
        self.shared.closed.wait().await
    }
}

/// The future that runs a member's protocol. Poll it to completion on any executor.
pub struct Driver {
    shared: Arc<Shared>,
    router: Router,
    /// Publishes the member's end when the driver is dropped, run to the end or not.
    exit: PublishOnExit,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("transports", &self.router).finish()
    }
}

enum Wake {
    Packet(Option<Packet>),
    Command,
    Timer,
}

impl Driver {
    /// Runs until [`Cluster::shutdown`] or [`Cluster::leave`] (or every transport closes).
    ///
    /// However it ends (finishing, panicking, or dropped unfinished, even unpolled), the member's
    /// handle learns it: [`Cluster::closed`] resolves with the reason and every command fails from
    /// then on. A panic in the protocol loop or in a transport's receive future is caught here and
    /// logged; the future then closes the transports and completes normally.
    pub async fn run(mut self) {
        use futures_util::FutureExt;
        use tracing::Instrument;
        let name = lock(&self.shared.inner).node.local_id().clone();
        let span = tracing::info_span!("shoal", node = %name);
        let outcome = AssertUnwindSafe(self.run_loop()).catch_unwind().instrument(span.clone()).await;
        let reason = match outcome {
            Ok(reason) => reason,
            Err(panic) => {
                let message = panic_message(&*panic);
                span.in_scope(|| tracing::error!(panic = %message, "the driver panicked; the member has stopped"));
                let reason = CloseReason::Panicked(message);
                // At once, before closing the transports: commands fail and waiters return now.
                self.shared.publish_close(reason.clone());
                reason
            }
        };
        if AssertUnwindSafe(self.router.close()).catch_unwind().await.is_err() {
            span.in_scope(|| tracing::error!("a transport panicked while closing"));
        }
        // Published as `self` drops, now.
        self.exit.reason = Some(reason);
    }

    /// The protocol loop. Returns why it stopped.
    async fn run_loop(&self) -> CloseReason {
        let mut receiver = self.router.receiver();
        let mut timer: Option<(Option<shoal_core::Instant>, super::BoxFuture<'static, ()>)> = None;
        loop {
            let (transmits, messages, deadline, stopping) = self.drain();
            self.dispatch(&messages);
            for t in transmits {
                self.transmit(t).await;
            }
            self.shared.rounds.bump();
            if let Some(reason) = stopping {
                return reason;
            }
            // Re-arm the timer only when the deadline moved: most wakeups are packets, and a fresh
            // timer per packet costs more than handling the packet.
            if timer.as_ref().map(|(at, _)| *at) != Some(deadline) {
                let now = self.shared.runtime.now();
                let sleep_for = deadline.map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(now));
                timer = Some((deadline, self.shared.runtime.sleep(sleep_for)));
            }
            let wake = {
                let Some((_, sleep)) = timer.as_mut() else { unreachable!("armed above") };
                let mut next_packet = pin!(receiver.next());
                let mut notified = pin!(self.shared.wakeup.notified());
                poll_fn(|cx| {
                    if let Poll::Ready(p) = next_packet.as_mut().poll(cx) {
                        return Poll::Ready(Wake::Packet(p));
                    }
                    if notified.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Command);
                    }
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Timer);
                    }
                    Poll::Pending
                })
                .await
            };
            let now = self.shared.runtime.now();
            let mut inner = lock(&self.shared.inner);
            match wake {
                Wake::Packet(Some(packet)) => {
                    match &packet.result {
                        Ok(received) => {
                            if let Err(e) = inner.node.handle_packet(now, received.from.clone(), &packet.buf) {
                                tracing::debug!(from = %received.from, error = %e, "dropped packet");
                            }
                        }
                        Err(e) => {
                            inner.transport_errors += 1;
                            tracing::debug!(error = %e, "transport receive error");
                        }
                    }
                    receiver.rearm(packet);
                }
                Wake::Packet(None) => {
                    tracing::warn!("every transport closed; stopping");
                    if inner.state == RunState::Running {
                        inner.state = RunState::Stopping(CloseReason::TransportsClosed);
                    }
                }
                Wake::Timer => {
                    timer = None;
                    inner.node.handle_timeout(now);
                }
                Wake::Command => {}
            }
        }
    }

    /// Takes everything the node produced: transmits, events (fanned out to subscribers here,
    /// messages returned for the callbacks), the next deadline, and the reason to stop if asked to.
    #[allow(clippy::type_complexity)]
    fn drain(
        &self,
    ) -> (
        Vec<Transmit<Addr>>,
        Vec<(ClusterMessage, Vec<MessageHandler>)>,
        Option<shoal_core::Instant>,
        Option<CloseReason>,
    ) {
        let mut inner = lock(&self.shared.inner);
        let mut transmits = Vec::new();
        while let Some(t) = inner.node.poll_transmit() {
            transmits.push(t);
        }
        let mut messages = Vec::new();
        inner.retire_dropped_subscribers();
        while let Some(event) = inner.node.poll_event() {
            if let Event::Message { from, topic, payload, kind } = &event {
                if !inner.handlers.is_empty() {
                    let msg = ClusterMessage {
                        from: from.clone(),
                        topic: topic.clone(),
                        payload: payload.clone(),
                        kind: *kind,
                    };
                    messages.push((msg, inner.handlers.clone()));
                }
            }
            log_event(&event);
            for s in &inner.subscribers {
                s.push(event.clone());
            }
        }
        let stopping = match &inner.state {
            RunState::Running => None,
            RunState::Stopping(reason) | RunState::Stopped(reason) => Some(reason.clone()),
        };
        (transmits, messages, inner.node.poll_timeout(), stopping)
    }

    /// Calls the `on_message` callbacks. A panicking callback is logged and counted; the loop and
    /// the other callbacks carry on.
    fn dispatch(&self, messages: &[(ClusterMessage, Vec<MessageHandler>)]) {
        for (msg, handlers) in messages {
            for h in handlers {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| h(msg))) {
                    lock(&self.shared.inner).callback_panics += 1;
                    tracing::error!(
                        from = %msg.from,
                        topic = %msg.topic,
                        panic = %panic_message(&*panic),
                        "an on_message callback panicked; the member carries on"
                    );
                }
            }
        }
    }

    /// Hands a transmit to the transports without ever waiting for one: a best-effort send is
    /// polled once here and, if it would wait, finished by its destination's sender task; anything
    /// else joins the queue of its destination's lane (see [`super::outbox`]).
    async fn transmit(&self, t: Transmit<Addr>) {
        let lane = if t.reliable { Lane::Reliable } else { Lane::BestEffort };
        if lane == Lane::BestEffort && self.shared.outbox.is_idle(&t.to, lane) {
            let mut send = send_future(self.shared.clone(), t.to.clone(), t.bytes, false);
            match poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
                Poll::Ready(result) => self.shared.sent(&t.to, result),
                Poll::Pending => {
                    self.shared.outbox.claim(t.to.clone(), lane);
                    start_sender(&self.shared, t.to, lane, Some(send));
                }
            }
            return;
        }
        match self.shared.outbox.push(t.to.clone(), lane, t.bytes) {
            Push::Queued => {}
            Push::Dropped => tracing::debug!(to = %t.to, ?lane, "no room waiting for this destination: frame dropped"),
            Push::StartSender => start_sender(&self.shared, t.to, lane, None),
        }
    }
}

/// A send's outcome; `Err` holds the panic of a transport's send future.
type SendOutcome = std::thread::Result<Result<(), TransportError>>;

/// One send through the router, owning what it needs, with a panic of the transport's future
/// caught as its outcome.
fn send_future(shared: Arc<Shared>, to: Addr, bytes: Vec<u8>, reliable: bool) -> BoxFuture<'static, SendOutcome> {
    use futures_util::FutureExt;
    Box::pin(AssertUnwindSafe(async move { shared.router.send(&to, &bytes, reliable).await }).catch_unwind())
}

/// Spawns the sender task of one lane of `to` (already claimed in the outbox): finishes `first`,
/// a send that could not complete at once, then sends what the lane holds until it is empty.
fn start_sender(shared: &Arc<Shared>, to: Addr, lane: Lane, first: Option<BoxFuture<'static, SendOutcome>>) {
    let runtime = shared.runtime.clone();
    let shared = shared.clone();
    let task = async move {
        let mut running = SenderRunning { shared: shared.clone(), to: to.clone(), lane, done: false };
        if let Some(send) = first {
            shared.sent_by_deadline(&to, lane, send).await;
        }
        while let Some(frame) = shared.outbox.pop(&to, lane) {
            let send = send_future(shared.clone(), to.clone(), frame, lane == Lane::Reliable);
            shared.sent_by_deadline(&to, lane, send).await;
        }
        running.done = true;
        // `flush` waits for best-effort lanes to empty.
        shared.rounds.bump();
    };
    runtime.spawn(Box::pin(task));
}

/// Forgets a lane whose sender task is dropped before it drained it (its runtime shut down), so the
/// next frame for that lane starts a new task instead of waiting behind one that is gone.
struct SenderRunning {
    shared: Arc<Shared>,
    to: Addr,
    lane: Lane,
    done: bool,
}

impl Drop for SenderRunning {
    fn drop(&mut self) {
        if !self.done {
            self.shared.outbox.abandon(&self.to, self.lane);
        }
    }
}

impl Shared {
    /// A plugin's address changed from `old` to `new` (see [`Transport::watch_local_addr`]): if
    /// the member advertises `old`, it moves to `new` now, under the member's lock, so that
    /// nothing it produces from here on names `old`; then the driver wakes to announce it. A
    /// member that advertises another address (the plugin sits beside the one it was built on),
    /// or has stopped, stays.
    fn follow_move(&self, plugin: &'static str, old: &Addr, new: &Addr) {
        let now = self.runtime.now();
        let moved = {
            let mut inner = lock(&self.inner);
            if inner.state != RunState::Running || inner.node.local_addr() != old {
                tracing::debug!(plugin, %old, %new, advertised = %inner.node.local_addr(), "a transport's address changed; the member does not advertise it (or has stopped) and stays");
                return;
            }
            inner.node.move_to(now, new.clone());
            (inner.node.local_id().clone(), inner.node.incarnation())
        };
        let (node, incarnation) = moved;
        tracing::info!(%node, plugin, from = %old, to = %new, incarnation, "moved: a transport's address changed; announcing the new one");
        self.wakeup.notify();
    }

    /// Finishes `send` on a sender task, or gives it up at the lane's deadline: a transport whose
    /// send never completes must not hold its destination's lane (and `flush`) forever.
    async fn sent_by_deadline(&self, to: &Addr, lane: Lane, send: BoxFuture<'static, SendOutcome>) {
        use futures_util::future::{select, Either};
        let limit = match lane {
            Lane::BestEffort => super::BEST_EFFORT_SEND_DEADLINE,
            Lane::Reliable => super::RELIABLE_SEND_DEADLINE,
        };
        match select(send, self.runtime.sleep(limit)).await {
            Either::Left((outcome, _)) => self.sent(to, outcome),
            Either::Right(_) => {
                let mut inner = lock(&self.inner);
                inner.sends_abandoned += 1;
                inner.transport_errors += 1;
                drop(inner);
                self.outbox.shed(to, lane);
                tracing::warn!(%to, ?lane, ?limit, "a transport's send did not complete in time; given up");
            }
        }
    }

    /// Counts and logs a failed or panicked send (the protocol treats it as a lost packet).
    fn sent(&self, to: &Addr, outcome: SendOutcome) {
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                lock(&self.inner).transport_errors += 1;
                tracing::debug!(%to, error = %e, "send failed");
            }
            Err(panic) => {
                lock(&self.inner).transport_errors += 1;
                tracing::error!(%to, panic = %panic_message(&*panic), "a transport's send panicked");
            }
        }
    }
}

/// Publishes the member's end when dropped: after the driver finished (with its reason), while a
/// panic unwinds through it, or when the driver (or its future, run or not) is dropped unfinished.
/// A `Drop` runs on every one of those paths, so no handle outlives its driver without knowing.
struct PublishOnExit {
    shared: Arc<Shared>,
    reason: Option<CloseReason>,
}

impl Drop for PublishOnExit {
    fn drop(&mut self) {
        let reason = self.reason.take().unwrap_or_else(|| {
            if std::thread::panicking() {
                CloseReason::Panicked(String::from("panicked while stopping"))
            } else {
                CloseReason::DriverDropped
            }
        });
        self.shared.publish_close(reason);
    }
}

/// The message a panic was raised with (`panic!` with a literal or a format string).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        String::from(*s)
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("a panic without a message")
    }
}

fn log_event(event: &ClusterEvent) {
    match event {
        Event::Joined(m) => tracing::info!(member = %m.id, addr = %m.addr, "member joined"),
        Event::Failed { id, by, .. } => tracing::info!(member = %id, by = %by, "member failed"),
        Event::Left { id, .. } => tracing::info!(member = %id, "member left"),
        Event::Suspected { id, by, .. } => tracing::debug!(member = %id, by = %by, "member suspected"),
        Event::AddressConflict { id, known, claimed } => {
            tracing::warn!(member = %id, %known, %claimed, "address conflict")
        }
        Event::JoinFailed { .. } => tracing::warn!("no seed answered the join"),
        Event::SendFailed { id, to, topic } => tracing::warn!(id, %to, %topic, "reliable message lost"),
        Event::BroadcastsMissed { origin, count, .. } => {
            tracing::warn!(%origin, count, "broadcasts missed and no longer repairable")
        }
        Event::BroadcastDropped { id, topic } => {
            tracing::warn!(seq = id.seq, %topic, "own broadcast dropped from a full queue")
        }
        _ => tracing::trace!(?event, "event"),
    }
}
