//! [`ConnectionCaps`]: how many TCP connections the relay holds, per client IP and in all, and
//! whether it may accept one more. No I/O.
//!
//! Connections are counted from accept to close, whatever they turn out to be (an HTTP request,
//! a WebSocket member, or nothing at all yet), because each holds a file descriptor. The total
//! cap keeps the relay under its open-file limit, so it refuses connections itself, cleanly and
//! counted, instead of having the OS refuse it the sockets members need; the per-IP cap keeps one
//! address (one attacker, or one misbehaving NAT) from taking the whole total. Idle and slowloris
//! connections are also closed by time (the server's header timeout, the WebSocket idle timeout);
//! the caps bound how many there can be meanwhile.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::cidr::canonical;
use crate::metrics::ConnectionDrop;

/// Open connections per IP and in all, against their caps. See the module documentation.
#[derive(Debug)]
pub(crate) struct ConnectionCaps {
    per_ip: usize,
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
    open: usize,
}

impl ConnectionCaps {
    pub(crate) fn new(per_ip: usize, total: usize) -> ConnectionCaps {
        ConnectionCaps { per_ip: per_ip.max(1), total: total.max(1), by_ip: HashMap::new(), open: 0 }
    }

    /// Counts a new connection from `ip` if both caps allow it. Call on accept; every `Ok` must be
    /// matched by one [`close`](Self::close) with the same IP.
    pub(crate) fn try_open(&mut self, ip: IpAddr) -> Result<(), ConnectionDrop> {
        let ip = canonical(ip);
        if self.open >= self.total {
            return Err(ConnectionDrop::TotalCap);
        }
        let n = self.by_ip.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return Err(ConnectionDrop::PerIpCap);
        }
        *n += 1;
        self.open += 1;
        Ok(())
    }

    /// Counts a connection from `ip` as closed.
    pub(crate) fn close(&mut self, ip: IpAddr) {
        let ip = canonical(ip);
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n -= 1;
            self.open -= 1;
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_ip_cannot_take_more_than_its_share_and_others_still_get_in() {
        let mut caps = ConnectionCaps::new(2, 10);
        assert_eq!(caps.try_open(ip("10.0.0.1")), Ok(()));
        assert_eq!(caps.try_open(ip("::ffff:10.0.0.1")), Ok(()), "the same IP seen by a dual-stack socket");
        assert_eq!(caps.try_open(ip("10.0.0.1")), Err(ConnectionDrop::PerIpCap));
        assert_eq!(caps.try_open(ip("10.0.0.2")), Ok(()));
        caps.close(ip("10.0.0.1"));
        assert_eq!(caps.try_open(ip("10.0.0.1")), Ok(()), "a closed connection frees its place");
        assert_eq!(caps.open(), 3);
    }

    #[test]
    fn the_total_cap_holds_across_addresses_and_closing_releases_it() {
        let mut caps = ConnectionCaps::new(5, 2);
        assert_eq!(caps.try_open(ip("10.0.0.1")), Ok(()));
        assert_eq!(caps.try_open(ip("10.0.0.2")), Ok(()));
        assert_eq!(caps.try_open(ip("10.0.0.3")), Err(ConnectionDrop::TotalCap));
        caps.close(ip("10.0.0.2"));
        caps.close(ip("10.0.0.9"));
        assert_eq!(caps.open(), 1, "closing an address never opened changes nothing");
        assert_eq!(caps.try_open(ip("10.0.0.3")), Ok(()));
        assert!(caps.by_ip.len() <= 2, "addresses with no connection are forgotten");
    }
}
