//! Seeds: where a member finds the cluster it joins. A seed is an address (`udp://10.0.0.5:7946`,
//! or a bare `10.0.0.5:7946`, read as UDP), or a DNS name with a port (`seeds.internal:7946`,
//! `tcp://seeds.internal:7946`). A name stands for every address its A and AAAA records list, as
//! a Kubernetes headless service or a DNS round robin does.
//!
//! Names are resolved through the [`Runtime`] at every [`crate::Cluster::join`] and again every
//! `reannounce_interval` while the member runs: the protocol re-announces itself to the seeds that
//! are not live members, so a member cut off from its cluster finds it again at the addresses the
//! name lists now, not at the ones it listed at the first join.

use std::fmt;
use std::net::SocketAddr;
use std::string::{String, ToString};
use std::vec::Vec;

use crate::{Addr, ClusterError, Runtime};

/// A place to find the cluster: an address, or a DNS name and port resolved at each join and
/// re-announce. Parsed from text with [`IntoSeed`] (`"seeds.internal:7946"`), or built from an
/// [`Addr`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seed {
    /// A member's address, used as it is.
    Addr(Addr),
    /// A DNS name: each address it resolves to, as `scheme://ip:port`.
    Name {
        /// The scheme of the addresses it stands for (`udp` or `tcp`).
        scheme: String,
        /// The name.
        host: String,
        /// The port every address gets.
        port: u16,
    },
}

impl Seed {
    /// Reads `udp://10.0.0.5:7946`, `10.0.0.5:7946` (UDP), `seeds.internal:7946` (a name, UDP) or
    /// `tcp://seeds.internal:7946`. Any other scheme must be a full address (`relay://…`).
    pub fn parse(text: &str) -> Result<Seed, ClusterError> {
        let invalid = || ClusterError::InvalidSeed(text.to_string());
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("udp", text),
        };
        if scheme != "udp" && scheme != "tcp" {
            return Addr::parse(text).map(Seed::Addr).map_err(|_| invalid());
        }
        if let Ok(socket) = rest.parse::<SocketAddr>() {
            return Ok(Seed::Addr(if scheme == "udp" { Addr::udp(socket) } else { Addr::tcp(socket) }));
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(invalid());
        }
        Ok(Seed::Name { scheme: scheme.to_string(), host: host.to_string(), port })
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seed::Addr(a) => write!(f, "{a}"),
            Seed::Name { scheme, host, port } => write!(f, "{scheme}://{host}:{port}"),
        }
    }
}

impl From<Addr> for Seed {
    fn from(a: Addr) -> Seed {
        Seed::Addr(a)
    }
}

/// What [`crate::Cluster::join`] accepts as a seed: an [`Addr`], a [`Seed`], or text that
/// [`Seed::parse`] reads.
pub trait IntoSeed {
    /// The seed, or [`ClusterError::InvalidSeed`] for text that is neither an address nor a name
    /// with a port.
    fn into_seed(self) -> Result<Seed, ClusterError>;
}

impl IntoSeed for Seed {
    fn into_seed(self) -> Result<Seed, ClusterError> {
        Ok(self)
    }
}
impl IntoSeed for &Seed {
    fn into_seed(self) -> Result<Seed, ClusterError> {
        Ok(self.clone())
    }
}
impl IntoSeed for Addr {
    fn into_seed(self) -> Result<Seed, ClusterError> {
        Ok(Seed::Addr(self))
    }
}
impl IntoSeed for &Addr {
    fn into_seed(self) -> Result<Seed, ClusterError> {
        Ok(Seed::Addr(self.clone()))
    }
}
impl IntoSeed for &str {
    fn into_seed(self) -> Result<Seed, ClusterError> {
        Seed::parse(self)
    }
}
impl IntoSeed for &&str {
    fn into_seed(self) -> Result<Seed, ClusterError> {
        Seed::parse(self)
    }
}
impl IntoSeed for String {
    fn into_seed(self) -> Result<Seed, ClusterError> {
        Seed::parse(&self)
    }
}
impl IntoSeed for &String {
    fn into_seed(self) -> Result<Seed, ClusterError> {
        Seed::parse(self)
    }
}

/// Addresses taken from one name, at most: a join asks every seed at once, and a DNS answer (a
/// hostile one included) should not make it ask thousands.
pub(crate) const MAX_ADDRS_PER_NAME: usize = 64;

/// Longest a name's resolution may take before the name counts as failed for this round.
pub(crate) const RESOLVE_TIMEOUT: core::time::Duration = core::time::Duration::from_secs(10);

/// Every address `seeds` stand for now, each once, in order: addresses as they are, names
/// resolved through `runtime` (all of them at once). A name that fails to resolve is left out and
/// returned with its error.
pub(crate) async fn resolve(runtime: &dyn Runtime, seeds: &[Seed]) -> (Vec<Addr>, Vec<(Seed, std::io::Error)>) {
    let lookups = seeds.iter().map(|seed| async move {
        match seed {
            Seed::Addr(a) => (seed, Ok(std::vec![a.clone()])),
            Seed::Name { scheme, host, port } => {
                let lookup = runtime.resolve(host, *port);
                let found = match futures_util::future::select(lookup, runtime.sleep(RESOLVE_TIMEOUT)).await {
                    futures_util::future::Either::Left((found, _)) => found,
                    futures_util::future::Either::Right(_) => {
                        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 10 s"))
                    }
                };
                let found = found.map(|sockets| {
                    let udp = scheme == "udp";
                    let addr = |s| if udp { Addr::udp(s) } else { Addr::tcp(s) };
                    sockets.into_iter().take(MAX_ADDRS_PER_NAME).map(addr).collect()
                });
                (seed, found)
            }
        }
    });
    let mut addrs: Vec<Addr> = Vec::new();
    let mut failed = Vec::new();
    for (seed, found) in futures_util::future::join_all(lookups).await {
        match found {
            Ok(list) => {
                for a in list {
                    if !addrs.contains(&a) {
                        addrs.push(a);
                    }
                }
            }
            Err(e) => failed.push((seed.clone(), e)),
        }
    }
    (addrs, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_read_as_addresses_or_names_as_documented() {
        let udp = |s: &str| Seed::Addr(Addr::udp(s.parse().unwrap()));
        let name = |scheme: &str, host: &str, port| Seed::Name { scheme: scheme.into(), host: host.into(), port };
        assert_eq!(Seed::parse("10.0.0.5:7946").unwrap(), udp("10.0.0.5:7946"));
        assert_eq!(Seed::parse("udp://10.0.0.5:7946").unwrap(), udp("10.0.0.5:7946"));
        assert_eq!(Seed::parse("[::1]:7946").unwrap(), udp("[::1]:7946"));
        assert_eq!(Seed::parse("tcp://10.0.0.5:1").unwrap(), Seed::Addr(Addr::tcp("10.0.0.5:1".parse().unwrap())));
        assert_eq!(Seed::parse("seeds.internal:7946").unwrap(), name("udp", "seeds.internal", 7946));
        assert_eq!(Seed::parse("tcp://seeds.internal.:7946").unwrap(), name("tcp", "seeds.internal", 7946));
        assert_eq!(Seed::parse("shoal-0.shoal.default.svc:1").unwrap(), name("udp", "shoal-0.shoal.default.svc", 1));
        assert!(matches!(Seed::parse("relay://relay.example:8080/p").unwrap(), Seed::Addr(_)));
        // Another scheme is an address for whichever plugin claims it.
        assert!(matches!(Seed::parse("ftp://x:1").unwrap(), Seed::Addr(_)));
        for bad in
            ["seeds.internal", "seeds.internal:", "seeds.internal:70000", ":7946", "a..b:1", "-a:1", "a b:1", "ftp:/x"]
        {
            assert!(matches!(Seed::parse(bad), Err(ClusterError::InvalidSeed(t)) if t == bad), "{bad}");
        }
    }
}
