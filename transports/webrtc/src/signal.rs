//! The signalling connection: a WebSocket to a `shoal-relay` that carries only signalling frames
//! (`[0x00][len][address][kind][body]`, see [`shoal_transport::relay`]).
//!
//! [`SignalConnection::connect`] opens `ws://relay/ws?peer=<id>[&token=...]`, waits for the
//! relay's welcome frame (which names our own `relay://` signalling address) and returns the
//! connection. [`SignalConnection::next`] yields incoming signals (anything else is ignored: this
//! connection is never a member's packet path) and [`SignalConnection::send`] sends one. Bodies are
//! JSON text: `{"sdp": ...}` for offers and answers, the browser's `RTCIceCandidate.toJSON()` for
//! candidates, `{"member": ...}` for invites, empty for byes.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shoal_transport::relay::{decode_signal_frame, decode_ws_frame, encode_signal_frame, SignalKind};
use shoal_transport::Addr;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One signalling message received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    /// The sender's `relay://` address, stamped by the relay.
    pub from: Addr,
    /// What the signal is: offer, answer, ICE candidate, bye or invite.
    pub kind: SignalKind,
    /// The signal's JSON text (see the module documentation); empty for a bye.
    pub body: String,
}

/// A signalling-only WebSocket connection to a relay.
pub struct SignalConnection {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    local: Addr,
}

impl std::fmt::Debug for SignalConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalConnection").field("local", &self.local).finish_non_exhaustive()
    }
}

/// `ws://host:port` (or `http://`, or with a path) -> `.../ws?peer=<peer>` (with `&` when the URL
/// already has a query, e.g. `?token=...`).
pub fn signalling_url(relay: &str, peer: &str) -> String {
    let relay = relay.trim().trim_end_matches('/');
    let relay = match relay.strip_prefix("http://") {
        Some(rest) => format!("ws://{rest}"),
        None => match relay.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => relay.to_owned(),
        },
    };
    let (base, query) = match relay.split_once('?') {
        Some((b, q)) => (b.to_owned(), Some(q.to_owned())),
        None => (relay, None),
    };
    let has_path = base.split_once("://").is_some_and(|(_, rest)| rest.contains('/'));
    let mut url = if has_path { base } else { format!("{base}/ws") };
    url.push('?');
    if let Some(q) = query {
        url.push_str(&q);
        url.push('&');
    }
    url.push_str("peer=");
    url.push_str(peer);
    url
}

impl SignalConnection {
    /// Connects as `peer` (a valid relay peer id) and waits up to `timeout` for the welcome.
    pub async fn connect(relay: &str, peer: &str, timeout: Duration) -> Result<SignalConnection, String> {
        let url = signalling_url(relay, peer);
        let connect = async {
            let (mut socket, _) =
                tokio_tungstenite::connect_async(url.as_str()).await.map_err(|e| format!("connect {url}: {e}"))?;
            loop {
                match socket.next().await {
                    Some(Ok(Message::Binary(frame))) => {
                        let (addr, _) = decode_ws_frame(&frame).map_err(|e| format!("bad welcome: {e}"))?;
                        let local = Addr::parse(addr).map_err(|e| format!("bad welcome address: {e}"))?;
                        return Ok(SignalConnection { socket, local });
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("relay {url}: {e}")),
                    None => return Err(format!("relay {url} closed before its welcome")),
                }
            }
        };
        tokio::time::timeout(timeout, connect).await.map_err(|_| format!("no welcome from {url}"))?
    }

    /// Our signalling address, `relay://<relay>/<peer>`.
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// The next signal, or `None` once the connection is closed. Malformed frames and packet
    /// frames are skipped.
    pub async fn next(&mut self) -> Option<Signal> {
        loop {
            let frame = match self.socket.next().await? {
                Ok(Message::Binary(frame)) => frame,
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            };
            let Ok((from, kind, body)) = decode_signal_frame(&frame) else { continue };
            let (Ok(from), Ok(body)) = (Addr::parse(from), std::str::from_utf8(body)) else { continue };
            return Some(Signal { from, kind, body: body.to_owned() });
        }
    }

    /// Sends one signal to `to`.
    pub async fn send(&mut self, to: &Addr, kind: SignalKind, body: &str) -> Result<(), String> {
        let frame = encode_signal_frame(to.as_str(), kind, body.as_bytes()).ok_or("address too long")?;
        self.socket.send(Message::Binary(frame.into())).await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signalling_urls_get_the_ws_path_and_the_peer_id() {
        assert_eq!(signalling_url("ws://127.0.0.1:8080", "a.rtc"), "ws://127.0.0.1:8080/ws?peer=a.rtc");
        assert_eq!(signalling_url("http://h:1/", "p"), "ws://h:1/ws?peer=p");
        assert_eq!(signalling_url("ws://h:1?token=t", "p"), "ws://h:1/ws?token=t&peer=p");
        assert_eq!(signalling_url("wss://h/relay/ws", "p"), "wss://h/relay/ws?peer=p");
    }
}
