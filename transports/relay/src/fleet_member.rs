//! The relay's own cluster member: how a cluster discovers the relays of its fleet.
//!
//! A relay can run one member of the cluster it serves ([`BoundRelay::start_member`](crate::BoundRelay::start_member),
//! `shoal-relay --join`). It is a plain Shoal member built with the `shoal` crate, on a UDP + TCP
//! port of its own (not the relay's port: the relay's UDP port speaks the relay envelope), with
//! the preset, keyring and label of the cluster. It carries no application traffic and forwards
//! nothing; it exists to **announce the relay**. Its metadata is tags:
//!
//! | tag | value |
//! |---|---|
//! | `role` | `relay` |
//! | `shoal-relay` ([`RELAY_TAG`]) | the relay's public `host:port`, exactly as its members' addresses name it (`relay://<host:port>/<peer>`; a configured host name appears resolved, as in the addresses) |
//! | `shoal-relay-url` ([`RELAY_URL_TAG`]) | the URL pages should open a WebSocket to, `ws://` or `wss://` (default `ws://<public addr>`; set it when TLS is terminated in front of the relay) |
//!
//! That is the discovery contract:
//!
//! - **Any member lists the fleet** by filtering the members it knows by the tag:
//!   `cluster.members_matching(&MemberFilter::new().states(&[MemberState::Alive]).tag(RELAY_TAG, "*"))`,
//!   and reads each relay's URL from its `shoal-relay-url` tag. A page that lost its relay can
//!   pick another from that list.
//! - **The protocol trusts it for moves**: a member at `relay://R1/P` that reconnects through R2
//!   with the same peer id is accepted at `relay://R2/P` only while some live member announces
//!   `shoal-relay=R2` (see `shoal_core`'s `node::relay_move`). A relay that runs no member still
//!   serves, but a member that fails over to it is an address conflict until its old address is
//!   declared failed.
//! - **Its life is the relay's.** The member joins its seeds in the background (a seed that does
//!   not answer is re-announced to, so the relay may start before the cluster). When the relay
//!   stops ([`RelayHandle::shutdown`](crate::RelayHandle::shutdown), the binary's SIGTERM or
//!   ctrl-c), `serve` has the member leave gracefully, for up to [`MEMBER_LEAVE_TIMEOUT`], beside
//!   disconnecting the relay's WebSocket members: the others see it `left`, and stop counting
//!   its relay as part of the fleet. A relay that dies without stopping (SIGKILL, a crash, its
//!   host gone) is declared failed like any member, with the same effect.
//! - **Counted on `/metrics`** while it exists: `shoal_relay_cluster_member_up` (1 while it
//!   runs, 0 once it stopped) and `shoal_relay_cluster_members{state}` (the other members it
//!   lists: `alive`, `suspect`, `failed`, `left`).
//!
//! Who can announce a relay? Any member: in an encrypted cluster that takes the cluster key (give
//! the relay's member the cluster's keys and label, or it cannot join), in a plaintext one anyone
//! who can reach a member. An announced relay is trusted for moves, and a relay stamps whatever
//! peer id its operator likes under its own address: whoever announces a relay of their own can
//! claim any relayed member's peer id there. The real member refutes from its real address (a
//! newer claim, moved back by the same rule), as with any forged gossip; so announcing a relay is
//! no more than what a key holder can already do to membership (see the move rule's threat model).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal::{
    Addr, CloseReason, Cluster, ClusterError, Config, Key, Keyring, Metrics, SecurityMode, Seed, Tags, Transport,
};
pub use shoal_core::RELAY_TAG;

/// The tag holding the URL pages should connect to: `shoal-relay-url=<ws:// or wss:// URL>`.
pub const RELAY_URL_TAG: &str = "shoal-relay-url";
/// The tag naming the member's role, and its value: `role=relay`.
pub const ROLE_TAG: (&str, &str) = ("role", "relay");
/// The member's port when none is given: the usual Shoal member port, as `shoal-agent`'s.
pub const DEFAULT_MEMBER_PORT: u16 = 7946;
/// How long a stopping relay lets its member spend on leaving: the leave is gossiped until every
/// retransmission went out, or this long.
pub const MEMBER_LEAVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest public URL announced, in bytes.
pub const MAX_PUBLIC_URL_LEN: usize = 512;

/// How the relay's own cluster member is started: the member that announces the relay to the
/// cluster with the tags `role=relay`, [`RELAY_TAG`] and [`RELAY_URL_TAG`] (see the crate's
/// *Relay fleet: discovery*).
#[derive(Clone, Debug)]
pub struct FleetMemberConfig {
    /// The UDP and TCP address the member binds (one port for both). Port 0 picks a free port. A
    /// wildcard IP (`0.0.0.0`) advertises the IP of the interface the host routes from, unless
    /// [`advertise`](Self::advertise) says otherwise.
    pub bind: SocketAddr,
    /// The `ip:port` other members reach the member at (behind NAT, or with several interfaces).
    /// Default: the bound address, a wildcard IP replaced as `bind` says.
    pub advertise: Option<SocketAddr>,
    /// The member's name, unique in the cluster. Default: `relay-<public addr>` with `:` written
    /// `-` and brackets dropped (`relay-203.0.113.7-8080`).
    pub name: Option<String>,
    /// Seeds to join through: `ip:port`, `name:port` (every address the name lists, resolved
    /// again at every re-announce), or `udp://`, `tcp://` addresses. None: the member founds a
    /// cluster, which others join through it.
    pub join: Vec<String>,
    /// The protocol configuration: a preset (default [`Config::lan`]; see
    /// [`preset`](Self::preset)), its security mode and label. Every member of a cluster should
    /// use the same.
    pub config: Config,
    /// The cluster's keys (see [`cluster_keys`](Self::cluster_keys)); needed unless
    /// `config.security` is plaintext.
    pub keyring: Option<Keyring>,
    /// The URL announced in [`RELAY_URL_TAG`]: `ws://` or `wss://`, at most
    /// [`MAX_PUBLIC_URL_LEN`] bytes of visible ASCII. Default: `ws://<public addr>`.
    pub public_url: Option<String>,
}

impl FleetMemberConfig {
    /// A member on `bind` with the defaults: LAN preset, plaintext, named after the relay.
    pub fn new(bind: SocketAddr) -> Self {
        FleetMemberConfig {
            bind,
            advertise: None,
            name: None,
            join: Vec::new(),
            config: Config::lan(),
            keyring: None,
            public_url: None,
        }
    }

    /// Takes the protocol preset named `name`: `lan`, `wan`, `local` or `browser` (the one for
    /// clusters with browser members: a closed tab is declared failed sooner). Keeps the security
    /// mode and label already set.
    pub fn preset(mut self, name: &str) -> Result<Self, FleetMemberError> {
        let mut config = match name {
            "lan" => Config::lan(),
            "wan" => Config::wan(),
            "local" => Config::local(),
            "browser" => Config::browser(),
            other => return Err(invalid("preset", format!("unknown preset {other:?} (lan, wan, local or browser)"))),
        };
        config.security = self.config.security;
        config.label = std::mem::take(&mut self.config.label);
        self.config = config;
        Ok(self)
    }

    /// Encrypts with `keys` (each 64 hex digits, an AES-256 key; the first encrypts, all decrypt),
    /// and sets the security mode to encrypted. No keys: nothing changes.
    pub fn cluster_keys<S: AsRef<str>>(mut self, keys: &[S]) -> Result<Self, FleetMemberError> {
        let keys = keys.iter().map(|k| parse_key(k.as_ref())).collect::<Result<Vec<_>, _>>()?;
        if let Some((primary, rest)) = keys.split_first() {
            let mut ring = Keyring::new(*primary);
            for key in rest {
                ring.install(*key);
            }
            self.keyring = Some(ring);
            self.config.security = SecurityMode::Encrypted;
        }
        Ok(self)
    }

    /// Everything `start` needs, checked, for a relay whose public address is `public`.
    fn plan(&self, public: &str) -> Result<Plan, FleetMemberError> {
        let name = self.name.clone().unwrap_or_else(|| default_name(public));
        let url = self.public_url.clone().unwrap_or_else(|| format!("ws://{public}"));
        if !valid_public_url(&url) {
            return Err(invalid(
                "public_url",
                format!("{url:?} must be ws:// or wss:// and a host, at most {MAX_PUBLIC_URL_LEN} visible ASCII bytes"),
            ));
        }
        let seeds = self
            .join
            .iter()
            .map(|s| Seed::parse(s.trim()).map_err(|e| invalid("join", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if self.config.security != SecurityMode::Plaintext && self.keyring.is_none() {
            return Err(invalid("keyring", "this security mode needs the cluster's keys".into()));
        }
        self.config.validate().map_err(|e| invalid("config", e.to_string()))?;
        Ok(Plan { name, tags: relay_tags(public, &url), seeds })
    }
}

struct Plan {
    name: String,
    tags: Tags,
    seeds: Vec<Seed>,
}

/// Why the relay's member did not start. Nothing was started in any case; the relay itself is
/// unaffected.
#[derive(Debug)]
#[non_exhaustive]
pub enum FleetMemberError {
    /// A setting is malformed or out of range (the caller's): `field` names it.
    Invalid {
        /// The setting: `preset`, `cluster_key`, `public_url`, `join`, `keyring`, `config`, `name`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The member's UDP or TCP socket could not be bound (the port is taken, or the address is
    /// not this host's): the message names the socket and the address.
    Bind(io::Error),
    /// This relay runs its member already: one per relay.
    AlreadyRunning,
    /// The relay is stopping ([`RelayHandle::shutdown`](crate::RelayHandle::shutdown) was called).
    Stopping,
}

impl fmt::Display for FleetMemberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetMemberError::Invalid { field, reason } => write!(f, "relay member: {field}: {reason}"),
            FleetMemberError::Bind(e) => write!(f, "relay member: {e}"),
            FleetMemberError::AlreadyRunning => f.write_str("relay member: this relay runs its member already"),
            FleetMemberError::Stopping => f.write_str("relay member: the relay is stopping"),
        }
    }
}

impl std::error::Error for FleetMemberError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FleetMemberError::Bind(e) => Some(e),
            _ => None,
        }
    }
}

fn invalid(field: &'static str, reason: String) -> FleetMemberError {
    FleetMemberError::Invalid { field, reason }
}

/// A running member and whether it still runs.
pub(crate) struct FleetMember {
    cluster: Cluster,
    up: Arc<AtomicBool>,
}

impl FleetMember {
    /// Binds the member's sockets, spawns it on the current tokio runtime and starts its join in
    /// the background.
    pub(crate) async fn start(public: &str, member: FleetMemberConfig) -> Result<FleetMember, FleetMemberError> {
        let plan = member.plan(public)?;
        let (udp, tcp) = shoal::bind::udp_and_tcp(member.bind, member.advertise.map(Addr::udp))
            .await
            .map_err(FleetMemberError::Bind)?;
        // What TCP advertises: the address given, or the bound one made reachable.
        let advertise = tcp.local_addr();
        let mut builder = Cluster::builder(&plan.name)
            .map_err(|e| invalid("name", e.to_string()))?
            .config(member.config)
            .tags(&plan.tags)
            .advertise(advertise);
        if let Some(ring) = member.keyring {
            builder = builder.keyring(ring);
        }
        let transports: Vec<Arc<dyn Transport>> = vec![udp, tcp];
        let cluster = builder.spawn(transports).map_err(|e| match e {
            ClusterError::InvalidName(e) => invalid("name", e.to_string()),
            other => invalid("config", other.to_string()),
        })?;
        tracing::info!(name = %plan.name, addr = %cluster.local_addr(), "relay's cluster member started");
        let up = Arc::new(AtomicBool::new(true));
        tokio::spawn(watch_close(cluster.clone(), up.clone()));
        if !plan.seeds.is_empty() {
            tokio::spawn(join(cluster.clone(), plan.seeds));
        }
        Ok(FleetMember { cluster, up })
    }

    pub(crate) fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Leaves the cluster gracefully, within [`MEMBER_LEAVE_TIMEOUT`]; logs what went wrong.
    pub(crate) async fn leave(&self) {
        match self.cluster.leave(MEMBER_LEAVE_TIMEOUT).await {
            Ok(()) => tracing::info!("relay's cluster member left"),
            // It stopped anyway; the others learn it from the gossip that did go out, or declare it failed.
            Err(ClusterError::LeaveTimeout) => {
                tracing::warn!("relay's cluster member left before its leave was fully gossiped")
            }
            Err(e) => tracing::debug!(error = %e, "relay's cluster member had stopped already"),
        }
    }

    /// The member's gauges in the Prometheus text format.
    pub(crate) fn to_prometheus(&self) -> String {
        render(&self.cluster.metrics(), self.up.load(Ordering::Relaxed))
    }
}

/// Joins in the background: a join that no seed answers is logged, and the member keeps
/// re-announcing to the seeds.
async fn join(cluster: Cluster, seeds: Vec<Seed>) {
    match cluster.join(&seeds).await {
        Ok(via) => tracing::info!(%via, "relay's cluster member joined"),
        Err(ClusterError::Shutdown) => {}
        Err(e) => tracing::warn!(error = %e, "relay's cluster member: join failed; re-announcing to the seeds"),
    }
}

/// Marks the member down once it stops, and says so if it was not asked to.
async fn watch_close(cluster: Cluster, up: Arc<AtomicBool>) {
    let reason = cluster.closed().await;
    up.store(false, Ordering::Relaxed);
    if !matches!(reason, CloseReason::Left | CloseReason::Shutdown) {
        tracing::warn!(%reason, "relay's cluster member stopped; the relay serves on without announcing itself");
    }
}

/// The tags the relay's member announces (see the [module docs](self)).
pub(crate) fn relay_tags(public: &str, url: &str) -> Tags {
    let mut tags = Tags::new();
    // Keys are constants of the right length: insert cannot refuse them.
    for (key, value) in [ROLE_TAG, (RELAY_TAG, public), (RELAY_URL_TAG, url)] {
        let _ = tags.insert(key, value);
    }
    tags
}

/// `relay-<public addr>`, `:` written `-`, brackets dropped.
fn default_name(public: &str) -> String {
    let addr: String =
        public.chars().filter(|c| !matches!(c, '[' | ']')).map(|c| if c == ':' { '-' } else { c }).collect();
    format!("relay-{addr}")
}

fn valid_public_url(url: &str) -> bool {
    let rest = url.strip_prefix("ws://").or_else(|| url.strip_prefix("wss://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && url.len() <= MAX_PUBLIC_URL_LEN
        && url.bytes().all(|b| b.is_ascii_graphic())
}

/// An AES-256 key from 64 hex digits.
fn parse_key(hex: &str) -> Result<Key, FleetMemberError> {
    let hex = hex.trim().as_bytes();
    let digit = |b: u8| (b as char).to_digit(16);
    if hex.len() != 64 || !hex.iter().all(|b| digit(*b).is_some()) {
        return Err(invalid("cluster_key", "a key is 64 hex digits (32 bytes)".into()));
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        // Both digits were checked above.
        *byte = (digit(pair[0]).unwrap_or(0) * 16 + digit(pair[1]).unwrap_or(0)) as u8;
    }
    Ok(key)
}

fn render(m: &Metrics, up: bool) -> String {
    let mut out = String::from(
        "# HELP shoal_relay_cluster_member_up Whether the relay's own cluster member runs (1) or has stopped (0)\n\
         # TYPE shoal_relay_cluster_member_up gauge\n",
    );
    out.push_str(&format!("shoal_relay_cluster_member_up {}\n", u8::from(up)));
    out.push_str(
        "# HELP shoal_relay_cluster_members Other members the relay's cluster member lists, by state\n\
         # TYPE shoal_relay_cluster_members gauge\n",
    );
    for (state, n) in [
        ("alive", m.members_alive),
        ("suspect", m.members_suspect),
        ("failed", m.members_dead),
        ("left", m.members_left),
    ] {
        out.push_str(&format!("shoal_relay_cluster_members{{state=\"{state}\"}} {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[test]
    fn the_member_announces_its_role_its_relay_and_the_url_pages_use() {
        let plan = FleetMemberConfig::new(bind()).plan("203.0.113.7:8080").unwrap();
        assert_eq!(plan.name, "relay-203.0.113.7-8080");
        let tags: Vec<_> = plan.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let expected =
            [("role", "relay"), ("shoal-relay", "203.0.113.7:8080"), ("shoal-relay-url", "ws://203.0.113.7:8080")];
        assert_eq!(tags, expected.map(|(k, v)| (k.to_string(), v.to_string())));
        // The protocol reads the relay tag from the raw metadata: the address must not be escaped.
        let meta = String::from_utf8(plan.tags.to_metadata()).unwrap();
        assert!(meta.contains("shoal-relay=203.0.113.7:8080"), "{meta}");
        let v6 = FleetMemberConfig::new(bind()).plan("[2001:db8::1]:443").unwrap();
        assert_eq!(v6.name, "relay-2001-db8--1-443");
        assert_eq!(v6.tags.get(RELAY_URL_TAG), Some("ws://[2001:db8::1]:443"));
    }

    #[test]
    fn a_given_name_and_url_replace_the_defaults() {
        let config = FleetMemberConfig {
            name: Some("edge-relay".into()),
            public_url: Some("wss://relay.example/".into()),
            ..FleetMemberConfig::new(bind())
        };
        let plan = config.plan("10.0.0.2:8080").unwrap();
        assert_eq!(plan.name, "edge-relay");
        assert_eq!(plan.tags.get(RELAY_URL_TAG), Some("wss://relay.example/"));
        assert_eq!(plan.tags.get(RELAY_TAG), Some("10.0.0.2:8080"));
    }

    #[test]
    fn bad_settings_are_named_and_nothing_panics() {
        let field = |c: FleetMemberConfig| match c.plan("10.0.0.2:8080") {
            Err(FleetMemberError::Invalid { field, .. }) => field,
            other => panic!("{:?}", other.map(|p| p.name)),
        };
        let long = format!("ws://{}", "a".repeat(MAX_PUBLIC_URL_LEN));
        for url in ["http://relay.example", "ws://", "ws:///path", "wss://a b", "ws://\u{7f}", long.as_str(), "ws://é"]
        {
            let c = FleetMemberConfig { public_url: Some(url.into()), ..FleetMemberConfig::new(bind()) };
            assert_eq!(field(c), "public_url", "{url:?}");
        }
        for seed in ["", "no-port", "udp://", "10.0.0.1:99999", "\u{0}:1"] {
            let c = FleetMemberConfig { join: vec![seed.into()], ..FleetMemberConfig::new(bind()) };
            assert_eq!(field(c), "join", "{seed:?}");
        }
        let mut encrypted = FleetMemberConfig::new(bind());
        encrypted.config.security = SecurityMode::Encrypted;
        assert_eq!(field(encrypted), "keyring");
        let mut zero = FleetMemberConfig::new(bind());
        zero.config.probe_interval = Duration::ZERO;
        assert_eq!(field(zero), "config");
        assert!(matches!(
            FleetMemberConfig::new(bind()).preset("mars"),
            Err(FleetMemberError::Invalid { field: "preset", .. })
        ));
        for key in ["", "00", &"g".repeat(64), &"0".repeat(63), &"é".repeat(32), &"0".repeat(65)] {
            let r = FleetMemberConfig::new(bind()).cluster_keys(&[key]);
            assert!(matches!(r, Err(FleetMemberError::Invalid { field: "cluster_key", .. })), "{key:?}");
        }
    }

    #[test]
    fn cluster_keys_turn_encryption_on_and_a_later_preset_keeps_it() {
        let primary = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let second = "ff".repeat(32);
        let mut config = FleetMemberConfig::new(bind()).cluster_keys(&[primary, second.as_str()]).unwrap();
        config.config.label = "prod".into();
        let config = config.preset("browser").unwrap();
        assert_eq!(config.config.security, SecurityMode::Encrypted);
        assert_eq!(config.config.label, "prod");
        let ring = config.keyring.expect("a keyring");
        let expected: Key = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11,
            0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
        ];
        assert_eq!(ring.primary(), &expected);
        assert_eq!(ring.keys().count(), 2);
        let none: [&str; 0] = [];
        let plain = FleetMemberConfig::new(bind()).cluster_keys(&none).unwrap();
        assert!(plain.keyring.is_none() && plain.config.security == SecurityMode::Plaintext);
    }

    #[test]
    fn the_gauges_render_every_state_with_type_lines() {
        let mut m = Metrics::default();
        (m.members_alive, m.members_suspect, m.members_dead, m.members_left) = (3, 1, 2, 4);
        let text = render(&m, true);
        for line in [
            "# TYPE shoal_relay_cluster_member_up gauge\n",
            "shoal_relay_cluster_member_up 1\n",
            "# TYPE shoal_relay_cluster_members gauge\n",
            "shoal_relay_cluster_members{state=\"alive\"} 3\n",
            "shoal_relay_cluster_members{state=\"suspect\"} 1\n",
            "shoal_relay_cluster_members{state=\"failed\"} 2\n",
            "shoal_relay_cluster_members{state=\"left\"} 4\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(render(&m, false).contains("shoal_relay_cluster_member_up 0\n"));
    }
}
