//! [`RelayConfig`]: what a relay admits, how large its frames and queues may be, what it serves.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use shoal_core::relay::relay_addr;

use crate::cidr::Cidr;
use crate::link::RelayKey;
use crate::rate::{BudgetLimit, RateLimit};

/// Default [`RelayConfig::max_frame`]: 64 KiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 10;
/// Default [`RelayConfig::queue_frames`].
pub const DEFAULT_QUEUE_FRAMES: usize = 512;
/// Default [`RelayConfig::queue_bytes`]: 256 KiB.
pub const DEFAULT_QUEUE_BYTES: usize = 256 << 10;
/// Default [`RelayConfig::stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`RelayConfig::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`RelayConfig::ping_interval`].
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(15);
/// Default [`RelayConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Default [`RelayConfig::max_connections_per_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// File descriptors kept back from the connection cap derived from the process's limit: the UDP
/// socket, the listener, static files, logs.
const FD_RESERVE: usize = 64;

/// Settings of a relay. `Default` gives an open relay (no token) with 64 KiB frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Admission token: a WebSocket client must pass `token=<this>` in its URL (compared in
    /// constant time). `None` admits everyone who can reach the port.
    pub token: Option<String>,
    /// The `host:port` written into `relay://<host:port>/<peer>` addresses, that is, how members
    /// reach this relay. Empty (the default) means the bound address. Native members accept a
    /// relay datagram only from the socket address named here, so behind a wildcard bind
    /// (`0.0.0.0`) or NAT set it to the `ip:port` members see. A host name is resolved once, when
    /// the relay binds, and the addresses carry the resulting `ip:port` (an address of the bound
    /// IP's family; the bound IP itself if the name resolves to it); a name that does not resolve
    /// is refused then. Members must reach the relay at the address the relay's own resolver gives.
    pub public_addr: String,
    /// Largest frame forwarded, in bytes, address header included (default 64 KiB, at least 256).
    /// Larger WebSocket messages and UDP datagrams are dropped and counted; a WebSocket message
    /// over four times this closes the connection (the WebSocket layer refuses to buffer it).
    pub max_frame: usize,
    /// Most frames waiting for one WebSocket member (default 512, at least 1).
    pub queue_frames: usize,
    /// Most bytes waiting for one WebSocket member (default 256 KiB, at least 1). A frame that
    /// finds the queue full is dropped and counted (`queue_full`); the member stays connected.
    pub queue_bytes: usize,
    /// A directory served under `/` (`index.html` at `/`), for the dashboard or a demo page.
    pub static_dir: Option<PathBuf>,
    /// A member whose connection took nothing from its queue for this long while frames waited
    /// (its socket does not drain: it stopped reading) is a slow consumer and is disconnected with
    /// code 4002. Default 10 s: long enough for a few 60 KiB push-pull replies on a slow link.
    pub stall_timeout: Duration,
    /// A client must send a complete HTTP request head within this (from connecting, or from the
    /// previous response on a kept-alive connection), or the connection is closed. Default 10 s.
    pub header_timeout: Duration,
    /// How often the relay pings a WebSocket member (default 15 s).
    pub ping_interval: Duration,
    /// A WebSocket member from which nothing arrived (no frame, no pong) for this long is closed
    /// with code 4003 (default 45 s: three pings unanswered). Ends half-open connections.
    pub idle_timeout: Duration,
    /// Most TCP connections (HTTP and WebSocket) open at once. `None` (the default): the process's
    /// open-file limit less 64, so that the relay refuses connections cleanly before the OS
    /// refuses it sockets.
    pub max_connections: Option<usize>,
    /// Most TCP connections open at once from one IP address (default 256: many browsers can share
    /// one NAT address, and one address must not take every file descriptor).
    pub max_connections_per_ip: usize,
    /// IP networks trusted on the UDP port: datagrams from them reach members at full rate, and
    /// members may send to them at full rate, loopback included. `None` (the default): loopback
    /// when the relay's public address is loopback (tests, the local demo: everything is on one
    /// host), nothing otherwise. See the crate's threat model.
    pub udp_allow: Option<Vec<Cidr>>,
    /// Only ever exchange datagrams with addresses inside [`udp_allow`](Self::udp_allow): for a
    /// cluster whose native members all live in known networks. Default false.
    pub udp_allow_only: bool,
    /// Rate limits (see [`Limits`]).
    pub limits: Limits,
    /// The key shared by the relays of one fleet, at least
    /// [`MIN_RELAY_KEY_LEN`](crate::MIN_RELAY_KEY_LEN) (16) bytes: relays holding it link to each
    /// other and forward frames for each other's members (see the crate's threat model). `None` (the default): no links; `GET /relay-link` answers 404 and
    /// [`peer_relays`](Self::peer_relays) must be empty. Use a long random string.
    pub relay_key: Option<String>,
    /// Relays to keep a link to, as `ws://host:port` (the address their HTTP port is reached at
    /// from here, not necessarily their public address). This relay dials each one and redials
    /// with a bounded, jittered backoff when the link drops. Links work both ways once up, so one
    /// side of each pair is enough; both sides may list each other. Needs
    /// [`relay_key`](Self::relay_key). Default: none.
    pub peer_relays: Vec<String>,
}

/// The relay's rate limits. A frame or datagram over a limit is dropped and counted by reason; the
/// member stays connected. The defaults are many times what a SWIM member sends (a few packets a
/// second per peer, and 60 KiB push-pull replies every few seconds) and far under what a flood
/// sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Per sender (a WebSocket member, or a UDP source socket): 1,000 frames/s in bursts of 2,000,
    /// and 1 MiB/s in bursts of 2 MiB (thirty-odd push-pull replies at once).
    pub source: BudgetLimit,
    /// Per receiver (a WebSocket member, or a UDP target socket), all senders together: 2,000
    /// frames/s in bursts of 4,000, and 2 MiB/s in bursts of 4 MiB. Larger than `source` so that
    /// one flooding sender cannot use up a member's share alone.
    pub destination: BudgetLimit,
    /// Datagrams from an unknown source (not trusted, and not a socket the destination member sent
    /// to within `known_ttl`), per source IP: 1 a second in bursts of 4. Enough for a new native
    /// member's first probes; SWIM's indirect probes through known members do the rest.
    pub unknown_source: RateLimit,
    /// Datagrams from unknown sources, all together: 20 a second in bursts of 50.
    pub unknown_sources: RateLimit,
    /// Datagrams to an unverified target (not trusted, and no datagram from it within
    /// `known_ttl`), per target: 2 a second in bursts of 10. Enough to join through a seed or
    /// probe a new member, which then answers and is verified.
    pub unverified_target: RateLimit,
    /// Datagrams to unverified targets, all together: 50 a second in bursts of 100.
    pub unverified_targets: RateLimit,
    /// How long a source stays known to a member after the member sent to it, and a target
    /// verified after it sent a datagram to the relay (default 5 minutes: every pair of SWIM
    /// members exchanges packets far more often than that).
    pub known_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            source: BudgetLimit { frames: RateLimit::new(1_000, 2_000), bytes: RateLimit::new(1 << 20, 2 << 20) },
            destination: BudgetLimit { frames: RateLimit::new(2_000, 4_000), bytes: RateLimit::new(2 << 20, 4 << 20) },
            unknown_source: RateLimit::new(1, 4),
            unknown_sources: RateLimit::new(20, 50),
            unverified_target: RateLimit::new(2, 10),
            unverified_targets: RateLimit::new(50, 100),
            known_ttl: Duration::from_secs(300),
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            token: None,
            public_addr: String::new(),
            max_frame: DEFAULT_MAX_FRAME,
            queue_frames: DEFAULT_QUEUE_FRAMES,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            static_dir: None,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: None,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            udp_allow: None,
            udp_allow_only: false,
            limits: Limits::default(),
            relay_key: None,
            peer_relays: Vec::new(),
        }
    }
}

/// A [`RelayConfig`] field out of range: the protocol's [`shoal_core::ConfigError`], one type
/// for every configuration error of Shoal. The caller's fault; nothing was bound.
pub use shoal_core::ConfigError;

impl RelayConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason| Err(ConfigError::new(field, reason));
        if self.max_frame < 256 {
            return err("max_frame", "must be at least 256 bytes");
        }
        if self.queue_frames == 0 {
            return err("queue_frames", "must be at least 1");
        }
        if self.queue_bytes == 0 {
            return err("queue_bytes", "must be at least 1");
        }
        if self.token.as_deref() == Some("") {
            return err("token", "must not be empty (use None for an open relay)");
        }
        if !self.public_addr.is_empty() && !valid_public_addr(&self.public_addr) {
            return err("public_addr", "must be host:port without scheme or path");
        }
        for (field, d) in [
            ("stall_timeout", self.stall_timeout),
            ("header_timeout", self.header_timeout),
            ("ping_interval", self.ping_interval),
        ] {
            if d.is_zero() {
                return err(field, "must be longer than zero");
            }
        }
        if self.idle_timeout <= self.ping_interval {
            return err("idle_timeout", "must be longer than ping_interval");
        }
        if self.max_connections == Some(0) {
            return err("max_connections", "must be at least 1");
        }
        if self.max_connections_per_ip == 0 {
            return err("max_connections_per_ip", "must be at least 1");
        }
        let l = &self.limits;
        if [l.source, l.destination].iter().any(|b| b.frames.burst == 0 || b.bytes.burst == 0) {
            return err("limits", "source and destination bursts must be at least 1");
        }
        if self.relay_key.as_deref().is_some_and(|k| RelayKey::new(k).is_none()) {
            return err("relay_key", "must be at least 16 bytes (use None for a relay without links)");
        }
        if !self.peer_relays.is_empty() && self.relay_key.is_none() {
            return err("peer_relays", "links need a relay_key");
        }
        if self.peer_relays.iter().any(|url| peer_relay_target(url).is_none()) {
            return err("peer_relays", "each must be ws://host:port");
        }
        Ok(())
    }

    /// The relay key in force, if any (validated).
    pub(crate) fn link_key(&self) -> Option<RelayKey> {
        self.relay_key.as_deref().and_then(RelayKey::new)
    }

    /// The connection cap in force: [`max_connections`](Self::max_connections), or the process's
    /// open-file limit less a reserve.
    pub fn effective_max_connections(&self) -> usize {
        self.max_connections.unwrap_or_else(|| open_file_limit().saturating_sub(FD_RESERVE).max(16))
    }

    /// The trusted networks in force for a relay whose public address is `public`: the configured
    /// [`udp_allow`](Self::udp_allow), or loopback for a relay on loopback.
    pub(crate) fn effective_udp_allow(&self, public: &str) -> Vec<Cidr> {
        match &self.udp_allow {
            Some(list) => list.clone(),
            None if public_is_loopback(public) => Cidr::loopback().to_vec(),
            None => Vec::new(),
        }
    }
}

/// The `host:port` of a peer relay's `ws://host:port` URL (a trailing `/` allowed), if it is one.
pub(crate) fn peer_relay_target(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("ws://")?;
    let host_port = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = host_port.rsplit_once(':')?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':');
    (!host.is_empty() && host.chars().all(plain) && port.parse::<u16>().is_ok()).then_some(host_port)
}

/// Whether the relay's public `ip:port` is a loopback address.
pub(crate) fn public_is_loopback(public: &str) -> bool {
    public.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
}

/// The soft limit on open files: from `/proc/self/limits` on Linux, 1,024 where it cannot be read
/// (the usual default).
fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            line["Max open files".len()..].split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(1_024)
}

/// The `ip:port` to write into `relay://` addresses for the configured `public` address (already
/// validated) of a relay bound to `bound`. An `ip:port` is kept as it is. A host name is resolved
/// with the system resolver (blocking): native members compare the socket a relay datagram came
/// from with the one its `relay://` source names, so the addresses must name an IP. Of the
/// results, the bound IP wins, then the first of the bound IP's family (any, behind an IPv6
/// wildcard bind, which also receives IPv4).
pub(crate) fn resolve_public_addr(public: &str, bound: SocketAddr) -> Result<String, String> {
    if public.parse::<SocketAddr>().is_ok() {
        return Ok(public.to_string());
    }
    let found: Vec<SocketAddr> = public
        .to_socket_addrs()
        .map_err(|e| {
            format!(
                "relay config: public_addr {public} does not resolve ({e}); give the ip:port members reach the \
                 relay at, or a host name this machine resolves"
            )
        })?
        .collect();
    pick_public_addr(&found, bound).map(|a| a.to_string()).ok_or_else(|| {
        format!(
            "relay config: public_addr {public} resolves to {found:?}, none of them an address of the bound \
             {bound}'s family; give the ip:port members reach the relay at"
        )
    })
}

fn pick_public_addr(found: &[SocketAddr], bound: SocketAddr) -> Option<SocketAddr> {
    let dual_stack = bound.ip().is_unspecified() && bound.is_ipv6();
    found
        .iter()
        .find(|a| a.ip() == bound.ip())
        .or_else(|| found.iter().find(|a| a.is_ipv4() == bound.is_ipv4() || dual_stack))
        .copied()
}

/// Whether `addr` makes valid `relay://<addr>/<peer>` addresses that end in `:port`.
pub(crate) fn valid_public_addr(addr: &str) -> bool {
    !addr.contains('/')
        && addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        && relay_addr(addr, "p").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid() {
        assert_eq!(RelayConfig::default().validate(), Ok(()));
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let bad = |c: RelayConfig| c.validate().unwrap_err().field;
        assert_eq!(bad(RelayConfig { max_frame: 10, ..Default::default() }), "max_frame");
        assert_eq!(bad(RelayConfig { queue_frames: 0, ..Default::default() }), "queue_frames");
        assert_eq!(bad(RelayConfig { queue_bytes: 0, ..Default::default() }), "queue_bytes");
        assert_eq!(bad(RelayConfig { token: Some(String::new()), ..Default::default() }), "token");
        assert_eq!(bad(RelayConfig { public_addr: "relay.example".into(), ..Default::default() }), "public_addr");
        assert_eq!(bad(RelayConfig { public_addr: "ws://h:1".into(), ..Default::default() }), "public_addr");
        assert_eq!(bad(RelayConfig { public_addr: "h:1/x".into(), ..Default::default() }), "public_addr");
        assert_eq!(bad(RelayConfig { header_timeout: Duration::ZERO, ..Default::default() }), "header_timeout");
        let idle = RelayConfig {
            ping_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        assert_eq!(bad(idle), "idle_timeout");
        assert_eq!(bad(RelayConfig { max_connections_per_ip: 0, ..Default::default() }), "max_connections_per_ip");
        assert_eq!(bad(RelayConfig { max_connections: Some(0), ..Default::default() }), "max_connections");
        assert_eq!(bad(RelayConfig { relay_key: Some("fifteen bytes..".into()), ..Default::default() }), "relay_key");
        let peers = vec!["ws://10.0.0.2:8080".to_string()];
        assert_eq!(bad(RelayConfig { peer_relays: peers.clone(), ..Default::default() }), "peer_relays");
        let key = Some("sixteen bytes...".to_string());
        for url in ["http://10.0.0.2:8080", "ws://10.0.0.2", "ws://10.0.0.2:8080/path", "ws://:80", "ws://a b:1"] {
            let c = RelayConfig { relay_key: key.clone(), peer_relays: vec![url.into()], ..Default::default() };
            assert_eq!(bad(c), "peer_relays", "{url}");
        }
        let ok = RelayConfig { relay_key: key, peer_relays: peers, ..Default::default() };
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn peer_relay_urls_name_a_host_and_port() {
        assert_eq!(peer_relay_target("ws://relay-2.internal:8080"), Some("relay-2.internal:8080"));
        assert_eq!(peer_relay_target("ws://10.0.0.2:8080/"), Some("10.0.0.2:8080"));
        assert_eq!(peer_relay_target("ws://[::1]:8080"), Some("[::1]:8080"));
        assert_eq!(peer_relay_target("wss://10.0.0.2:8080"), None);
    }

    #[test]
    fn a_relay_on_loopback_trusts_loopback_unless_told_otherwise() {
        let auto = RelayConfig::default();
        assert_eq!(auto.effective_udp_allow("127.0.0.1:8080"), Cidr::loopback().to_vec());
        assert_eq!(auto.effective_udp_allow("[::1]:8080"), Cidr::loopback().to_vec());
        assert!(auto.effective_udp_allow("203.0.113.7:8080").is_empty());
        let none = RelayConfig { udp_allow: Some(vec![]), ..Default::default() };
        assert!(none.effective_udp_allow("127.0.0.1:8080").is_empty());
    }

    #[test]
    fn the_default_connection_cap_leaves_room_under_the_open_file_limit() {
        let cap = RelayConfig::default().effective_max_connections();
        assert!(cap >= 16 && cap < open_file_limit().max(80), "{cap}");
        assert_eq!(RelayConfig { max_connections: Some(7), ..Default::default() }.effective_max_connections(), 7);
    }

    #[test]
    fn a_public_ip_is_kept_and_a_host_name_becomes_an_ip_of_the_bound_family() {
        let bound: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(resolve_public_addr("203.0.113.7:9000", bound).unwrap(), "203.0.113.7:9000");
        assert_eq!(resolve_public_addr("[2001:db8::1]:9000", bound).unwrap(), "[2001:db8::1]:9000");
        assert_eq!(resolve_public_addr("localhost:9000", bound).unwrap(), "127.0.0.1:9000");
        let e = resolve_public_addr("no-such-relay.invalid:9000", bound).unwrap_err();
        assert!(e.contains("public_addr no-such-relay.invalid:9000 does not resolve"), "{e}");
    }

    #[test]
    fn of_several_resolved_addresses_the_bound_ip_then_its_family_is_picked() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let found = [sa("[::1]:80"), sa("10.0.0.1:80"), sa("127.0.0.1:80")];
        assert_eq!(pick_public_addr(&found, sa("127.0.0.1:80")), Some(sa("127.0.0.1:80")));
        assert_eq!(pick_public_addr(&found, sa("0.0.0.0:80")), Some(sa("10.0.0.1:80")));
        assert_eq!(pick_public_addr(&found, sa("[::]:80")), Some(sa("[::1]:80")));
        assert_eq!(pick_public_addr(&found[1..], sa("[::]:80")), Some(sa("10.0.0.1:80")), "dual stack");
        assert_eq!(pick_public_addr(&found[1..], sa("[::1]:80")), None);
    }

    #[test]
    fn public_addresses_may_be_names_or_ips() {
        for ok in ["relay.example:443", "203.0.113.7:8080", "[2001:db8::1]:8080"] {
            let c = RelayConfig { public_addr: ok.into(), ..Default::default() };
            assert_eq!(c.validate(), Ok(()), "{ok}");
        }
    }
}
