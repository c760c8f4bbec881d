//! [`RelayConfig`]: what a relay admits, how large its frames and queues may be, what it serves.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use shoal_core::driver::relay::relay_addr;

/// Default [`RelayConfig::max_frame`]: 64 KiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 10;
/// Default [`RelayConfig::queue_frames`].
pub const DEFAULT_QUEUE_FRAMES: usize = 512;
/// Default [`RelayConfig::queue_bytes`]: 256 KiB.
pub const DEFAULT_QUEUE_BYTES: usize = 256 << 10;

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
    /// Most bytes waiting for one WebSocket member (default 256 KiB, at least 1). A member whose
    /// queue is full when a frame arrives for it is a slow consumer: it is disconnected.
    pub queue_bytes: usize,
    /// A directory served under `/` (`index.html` at `/`), for the dashboard or a demo page.
    pub static_dir: Option<PathBuf>,
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
        }
    }
}

/// A [`RelayConfig`] field out of range. The caller's fault; nothing was bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "relay config: {} {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl RelayConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason| Err(ConfigError { field, reason });
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
        Ok(())
    }
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
