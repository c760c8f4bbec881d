//! [`RelayStats`]: the relay's counters, and their Prometheus text rendering for `/metrics`.

use std::fmt::Write;

/// Why the relay dropped a frame or datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Larger than `max_frame`.
    Oversized,
    /// Not a relay frame: truncated, bad address text, a datagram without the marker, an invalid
    /// destination peer id.
    Malformed,
    /// The destination is not a connected peer of this relay (or not a `relay://` address of this
    /// relay nor a `udp://ip:port` address).
    UnknownDestination,
    /// A WebSocket text message (the relay speaks binary messages only).
    NotBinary,
    /// The destination's queue was full: the frame is dropped and the destination disconnected.
    SlowConsumer,
    /// The relay's UDP socket refused the datagram.
    UdpSend,
}

impl DropReason {
    /// Every reason, in the order of [`RelayStats::dropped`].
    pub const ALL: [DropReason; 6] = [
        DropReason::Oversized,
        DropReason::Malformed,
        DropReason::UnknownDestination,
        DropReason::NotBinary,
        DropReason::SlowConsumer,
        DropReason::UdpSend,
    ];

    /// The `reason` label in metrics.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Oversized => "oversized",
            DropReason::Malformed => "malformed",
            DropReason::UnknownDestination => "unknown_destination",
            DropReason::NotBinary => "not_binary",
            DropReason::SlowConsumer => "slow_consumer",
            DropReason::UdpSend => "udp_send",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Frames and bytes forwarded along one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    pub frames: u64,
    /// Bytes as sent on (WebSocket frame or UDP datagram, relay header included).
    pub bytes: u64,
}

impl Forwarded {
    pub(crate) fn add(&mut self, bytes: usize) {
        self.frames += 1;
        self.bytes += bytes as u64;
    }
}

/// Counters of a relay since it was bound, and the connection gauge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// WebSocket members connected now.
    pub connections: u64,
    /// WebSocket members admitted since start.
    pub accepted: u64,
    /// Connections closed because a newer connection took over their peer id.
    pub replaced: u64,
    /// Admissions refused for a missing or wrong token.
    pub rejected_token: u64,
    /// Admissions refused for a missing or invalid peer id.
    pub rejected_peer_id: u64,
    /// WebSocket member to WebSocket member.
    pub ws_to_ws: Forwarded,
    /// WebSocket member to a native member's UDP socket (handed to the relay's socket).
    pub ws_to_udp: Forwarded,
    /// Native member's UDP datagram to a WebSocket member.
    pub udp_to_ws: Forwarded,
    /// WebRTC signalling frames between two WebSocket members.
    pub signals: Forwarded,
    /// Frames dropped, indexed like [`DropReason::ALL`].
    pub dropped: [u64; 6],
    /// Members disconnected because their queue was full.
    pub slow_consumers: u64,
}

impl RelayStats {
    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }

    /// Frames forwarded on every path.
    pub fn forwarded_frames(&self) -> u64 {
        self.ws_to_ws.frames + self.ws_to_udp.frames + self.udp_to_ws.frames + self.signals.frames
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(2_048);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric("shoal_relay_connections", "gauge", "WebSocket members connected now.", &[("", self.connections)]);
        metric(
            "shoal_relay_connections_accepted_total",
            "counter",
            "WebSocket members admitted.",
            &[("", self.accepted)],
        );
        metric(
            "shoal_relay_connections_replaced_total",
            "counter",
            "Connections closed because a newer connection took over their peer id.",
            &[("", self.replaced)],
        );
        metric(
            "shoal_relay_rejected_total",
            "counter",
            "Admissions refused, by reason.",
            &[("{reason=\"token\"}", self.rejected_token), ("{reason=\"peer_id\"}", self.rejected_peer_id)],
        );
        let paths = [
            ("ws_ws", self.ws_to_ws),
            ("ws_udp", self.ws_to_udp),
            ("udp_ws", self.udp_to_ws),
            ("signal", self.signals),
        ];
        let frames: Vec<(String, u64)> = paths.iter().map(|(p, f)| (format!("{{path=\"{p}\"}}"), f.frames)).collect();
        let bytes: Vec<(String, u64)> = paths.iter().map(|(p, f)| (format!("{{path=\"{p}\"}}"), f.bytes)).collect();
        let frames: Vec<(&str, u64)> = frames.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        let bytes: Vec<(&str, u64)> = bytes.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric("shoal_relay_forwarded_frames_total", "counter", "Frames forwarded, by path.", &frames);
        metric("shoal_relay_forwarded_bytes_total", "counter", "Bytes forwarded, by path.", &bytes);
        let dropped: Vec<(String, u64)> =
            DropReason::ALL.iter().map(|r| (format!("{{reason=\"{}\"}}", r.label()), self.dropped(*r))).collect();
        let dropped: Vec<(&str, u64)> = dropped.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric("shoal_relay_dropped_frames_total", "counter", "Frames dropped, by reason.", &dropped);
        metric(
            "shoal_relay_slow_consumers_disconnected_total",
            "counter",
            "Members disconnected because their outbound queue was full.",
            &[("", self.slow_consumers)],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_are_indexed_in_declaration_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn stats_render_every_family_with_type_lines() {
        let mut s = RelayStats { connections: 3, slow_consumers: 1, ..Default::default() };
        s.ws_to_udp.add(100);
        s.drop(DropReason::Oversized);
        let text = s.to_prometheus();
        assert!(text.contains("# TYPE shoal_relay_connections gauge\nshoal_relay_connections 3\n"));
        assert!(text.contains("shoal_relay_forwarded_frames_total{path=\"ws_udp\"} 1\n"));
        assert!(text.contains("shoal_relay_forwarded_bytes_total{path=\"ws_udp\"} 100\n"));
        assert!(text.contains("shoal_relay_dropped_frames_total{reason=\"oversized\"} 1\n"));
        assert!(text.contains("shoal_relay_slow_consumers_disconnected_total 1\n"));
        assert!(text.contains("shoal_relay_rejected_total{reason=\"token\"} 0\n"));
        assert_eq!(text.matches("# TYPE").count(), 8);
    }
}
