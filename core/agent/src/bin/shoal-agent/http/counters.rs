//! What the HTTP endpoint counts, exported with the member's metrics on `/metrics`: every
//! connection it drops and every request it refuses, by reason, so an attack shows up as a rising
//! counter rather than as silence.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::access::Refusal;

/// Why the endpoint closed a connection without answering a request on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Over a cap with no idle connection to evict: refused at once (503).
    AtCapacity,
    /// Evicted while idle to make room under the per-source-IP cap.
    EvictedPerIp,
    /// Evicted while idle to make room under the total cap.
    EvictedTotal,
    /// Evicted while idle to free a descriptor after an accept error.
    EvictedAcceptError,
    /// No complete head before the deadline: idle, or trickling it (slowloris).
    HeadTimeout,
    /// A head over the size cap (431).
    HeadTooLarge,
    /// A head that does not parse (400).
    BadRequest,
}

impl Dropped {
    const ALL: [Dropped; 7] = [
        Dropped::AtCapacity,
        Dropped::EvictedPerIp,
        Dropped::EvictedTotal,
        Dropped::EvictedAcceptError,
        Dropped::HeadTimeout,
        Dropped::HeadTooLarge,
        Dropped::BadRequest,
    ];

    fn label(self) -> &'static str {
        match self {
            Dropped::AtCapacity => "at_capacity",
            Dropped::EvictedPerIp => "evicted_per_ip",
            Dropped::EvictedTotal => "evicted_total",
            Dropped::EvictedAcceptError => "evicted_accept_error",
            Dropped::HeadTimeout => "head_timeout",
            Dropped::HeadTooLarge => "head_too_large",
            Dropped::BadRequest => "bad_request",
        }
    }
}

/// The endpoint's counters.
#[derive(Debug, Default)]
pub struct HttpCounters {
    accepted: AtomicU64,
    accept_errors: AtomicU64,
    served: AtomicU64,
    dropped: [AtomicU64; Dropped::ALL.len()],
    refused: [AtomicU64; Refusal::ALL.len()],
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl HttpCounters {
    pub fn accepted(&self) {
        bump(&self.accepted);
    }

    pub fn accept_error(&self) {
        bump(&self.accept_errors);
    }

    pub fn served(&self) {
        bump(&self.served);
    }

    pub fn dropped(&self, why: Dropped) {
        bump(&self.dropped[Dropped::ALL.iter().position(|d| *d == why).unwrap_or(0)]);
    }

    pub fn refused(&self, why: Refusal) {
        bump(&self.refused[Refusal::ALL.iter().position(|r| *r == why).unwrap_or(0)]);
    }

    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    /// Prometheus text, metric names prefixed `shoal_agent_http_`; `open` is the gauge of
    /// connections open now.
    pub fn to_prometheus(&self, open: usize) -> String {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2_048);
        for (name, help, value) in [
            ("connections_accepted_total", "Connections accepted by the HTTP endpoint", load(&self.accepted)),
            (
                "accept_errors_total",
                "Accept errors (such as EMFILE), each retried after a backoff",
                load(&self.accept_errors),
            ),
            ("requests_served_total", "Requests answered (any status but a refusal)", load(&self.served)),
        ] {
            let _ = writeln!(out, "# HELP shoal_agent_http_{name} {help}\n# TYPE shoal_agent_http_{name} counter");
            let _ = writeln!(out, "shoal_agent_http_{name} {value}");
        }
        let name = "shoal_agent_http_connections_dropped_total";
        let _ = writeln!(out, "# HELP {name} Connections closed without an answered request, by reason");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (why, count) in Dropped::ALL.iter().zip(&self.dropped) {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {}", why.label(), load(count));
        }
        let name = "shoal_agent_http_requests_refused_total";
        let _ = writeln!(out, "# HELP {name} Requests refused by the access checks, by reason");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (why, count) in Refusal::ALL.iter().zip(&self.refused) {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {}", why.label(), load(count));
        }
        let name = "shoal_agent_http_connections_open";
        let _ = writeln!(out, "# HELP {name} Connections open now\n# TYPE {name} gauge\n{name} {open}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drop_and_refusal_is_exported_under_its_reason() {
        let c = HttpCounters::default();
        c.dropped(Dropped::HeadTimeout);
        c.dropped(Dropped::HeadTimeout);
        c.refused(Refusal::CrossOrigin);
        c.accept_error();
        let text = c.to_prometheus(3);
        assert!(text.contains("shoal_agent_http_connections_dropped_total{reason=\"head_timeout\"} 2\n"), "{text}");
        assert!(text.contains("shoal_agent_http_connections_dropped_total{reason=\"evicted_per_ip\"} 0\n"));
        assert!(text.contains("shoal_agent_http_requests_refused_total{reason=\"cross_origin\"} 1\n"));
        assert!(text.contains("shoal_agent_http_requests_refused_total{reason=\"token_not_configured\"} 0\n"));
        assert!(text.contains("shoal_agent_http_accept_errors_total 1\n"));
        assert!(text.contains("shoal_agent_http_connections_open 3\n"));
        let labelled = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(labelled("shoal_agent_http_connections_dropped_total{"), Dropped::ALL.len());
        assert_eq!(labelled("shoal_agent_http_requests_refused_total{"), Refusal::ALL.len());
    }
}
