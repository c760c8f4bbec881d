//! `--webrtc <relay URL>`: direct WebRTC data channels to the browser members of that relay
//! (feature `webrtc`, crate `shoal-webrtc`). The agent keeps a signalling connection to the relay
//! as `<name>.rtc` (or `rtc-<random>` when the name is not a valid peer id), invites the browsers
//! it has traffic for, and answers their offers. The plugin goes first in the router: it carries
//! packets to a browser while both channels are open, and the relay path (UDP through the relay)
//! carries everything else.

use std::net::IpAddr;
use std::sync::Arc;

use shoal::relay::valid_peer_id;
use shoal::{Addr, Transport};

/// The WebRTC plugin for a member advertised at `member`, signalling through `relay`.
#[cfg(feature = "webrtc")]
pub async fn plugin(relay: &str, name: &str, member: Addr, ip: Option<IpAddr>) -> Result<Arc<dyn Transport>, String> {
    let peer = format!("{name}.rtc");
    let peer = if valid_peer_id(&peer) { peer } else { format!("rtc-{:08x}", std::process::id()) };
    let mut options = shoal_webrtc::WebRtcOptions::new(relay, &peer, member);
    options.ip = ip;
    let transport = shoal_webrtc::WebRtcTransport::connect(options).await.map_err(|e| format!("--webrtc: {e}"))?;
    Ok(transport)
}

/// Without the `webrtc` feature the option is refused.
#[cfg(not(feature = "webrtc"))]
pub async fn plugin(
    _relay: &str,
    _name: &str,
    _member: Addr,
    _ip: Option<IpAddr>,
) -> Result<Arc<dyn Transport>, String> {
    let _ = valid_peer_id;
    Err("--webrtc needs shoal-agent built with `--features webrtc`".into())
}
