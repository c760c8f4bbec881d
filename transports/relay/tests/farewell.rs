//! Farewells over real sockets: a member asks for a secret when it connects (`farewell=1`), and
//! its page's `POST /farewell` (what `navigator.sendBeacon` sends as the tab closes) is forwarded
//! as if the member had sent the frames over its WebSocket; everything else is refused and
//! counted.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{bounded, http_get, http_post, next_binary, raw_client, start, ws_url, RawClient};
use shoal::relay::{
    accept_relay_datagram, decode_ws_frame, encode_farewell, encode_ws_frame, FarewellSecret, FAREWELL_SECRET_LEN,
    MAX_FAREWELL_BODY,
};
use shoal_relay::{FarewellRefusal, RelayConfig};
use tokio::net::UdpSocket;

const LIMIT: Duration = Duration::from_secs(10);

/// Connects `peer` with `query` appended to its URL and returns the welcome's packet.
async fn connect_with(relay: SocketAddr, peer: &str, query: &str) -> (RawClient, Vec<u8>) {
    let url = format!("{}{query}", ws_url(relay, peer, None));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    let welcome = next_binary(&mut ws).await.expect("welcome");
    let (addr, packet) = decode_ws_frame(&welcome).unwrap();
    assert_eq!(addr, format!("relay://{relay}/{peer}"));
    (ws, packet.to_vec())
}

/// Connects `peer` asking for a farewell secret, and returns it (from the welcome).
async fn connect_for_farewell(relay: SocketAddr, peer: &str) -> (RawClient, FarewellSecret) {
    let (ws, packet) = connect_with(relay, peer, "&farewell=1").await;
    let secret = FarewellSecret::try_from(&packet[..]).expect("a 16-byte secret in the welcome");
    (ws, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farewell_with_the_connections_secret_is_forwarded_as_if_the_member_sent_it() {
    bounded(LIMIT, async {
        let (relay, handle) = start(RelayConfig::default()).await;
        let (_a, secret) = connect_for_farewell(relay, "tab-a").await;
        let mut b = raw_client(relay, "tab-b").await;
        let native = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let frames = [
            encode_ws_frame(&format!("relay://{relay}/tab-b"), b"\x01leave").unwrap(),
            encode_ws_frame(&format!("udp://{}", native.local_addr().unwrap()), b"\x01leave").unwrap(),
        ];
        let body = encode_farewell("tab-a", &secret, &frames).unwrap();
        // As a beacon with an ArrayBuffer body sends it: no Content-Type.
        assert_eq!(http_post(relay, "/farewell", None, &body).await.0, 204);
        let got = next_binary(&mut b).await.expect("the farewell's frame");
        assert_eq!(decode_ws_frame(&got).unwrap(), (format!("relay://{relay}/tab-a").as_str(), &b"\x01leave"[..]));
        let mut buf = vec![0u8; 2_048];
        let (n, from) =
            tokio::time::timeout(Duration::from_secs(5), native.recv_from(&mut buf)).await.unwrap().unwrap();
        let (source, packet) = accept_relay_datagram(from, &buf[..n]).expect("from the relay's UDP port");
        assert_eq!((source, packet), (handle.member_addr("tab-a").unwrap(), &b"\x01leave"[..]));
        // The same body again: the secret was spent.
        assert_eq!(http_post(relay, "/farewell", None, &body).await.0, 403);
        let stats = handle.stats();
        assert_eq!((stats.farewells_accepted, stats.farewells_refused(FarewellRefusal::AlreadyUsed)), (1, 1));
        assert_eq!((stats.ws_to_ws.frames, stats.ws_to_udp.frames), (1, 1));
        let (_, metrics) = http_get(relay, "/metrics").await;
        for line in [
            "shoal_relay_farewells_accepted_total 1\n",
            "shoal_relay_farewells_refused_total{reason=\"already_used\"} 1\n",
            "shoal_relay_farewells_refused_total{reason=\"wrong_secret\"} 0\n",
        ] {
            assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_does_not_ask_for_a_farewell_gets_an_empty_welcome_and_no_farewell() {
    bounded(LIMIT, async {
        let (relay, handle) = start(RelayConfig::default()).await;
        // raw_client checks the welcome's packet is empty, as members that predate farewells need.
        let mut b = raw_client(relay, "tab-b").await;
        let (_c, packet) = connect_with(relay, "tab-c", "&farewell=0").await;
        assert!(packet.is_empty(), "only farewell=1 asks for a secret");
        let frame = encode_ws_frame(&format!("relay://{relay}/tab-b"), b"\x01leave").unwrap();
        let any = [7u8; FAREWELL_SECRET_LEN];
        for peer in ["tab-b", "tab-c", "nobody"] {
            let body = encode_farewell(peer, &any, &[&frame]).unwrap();
            assert_eq!(http_post(relay, "/farewell", None, &body).await.0, 403, "{peer}");
        }
        // Nothing reached b: the next thing it gets is what it sends itself.
        let to_self = encode_ws_frame(&format!("relay://{relay}/tab-b"), b"\x01self").unwrap();
        futures_util::SinkExt::send(&mut b, tokio_tungstenite::tungstenite::Message::Binary(to_self.into()))
            .await
            .unwrap();
        assert_eq!(decode_ws_frame(&next_binary(&mut b).await.unwrap()).unwrap().1, b"\x01self");
        let stats = handle.stats();
        assert_eq!(stats.farewells_refused(FarewellRefusal::NoSecret), 2);
        assert_eq!(stats.farewells_refused(FarewellRefusal::UnknownPeer), 1);
        assert_eq!(stats.farewells_accepted, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_wrong_or_oversized_farewells_are_refused_with_their_status_and_counted() {
    bounded(LIMIT, async {
        let (relay, handle) = start(RelayConfig::default()).await;
        let (_a, secret) = connect_for_farewell(relay, "tab-a").await;
        let mut wrong = secret;
        wrong[0] ^= 0xff;
        let wrong_body = encode_farewell::<&[u8]>("tab-a", &wrong, &[]).unwrap();
        assert_eq!(http_post(relay, "/farewell", None, &wrong_body).await, (403, "Forbidden".to_string()));
        assert_eq!(http_post(relay, "/farewell", Some("text/plain"), b"garbage").await.0, 400);
        let oversized = vec![5u8; MAX_FAREWELL_BODY + 1];
        assert_eq!(http_post(relay, "/farewell", Some("application/octet-stream"), &oversized).await.0, 413);
        assert_eq!(http_get(relay, "/farewell").await.0, 405, "POST only");
        let stats = handle.stats();
        for (reason, n) in
            [(FarewellRefusal::WrongSecret, 1), (FarewellRefusal::Malformed, 1), (FarewellRefusal::TooLarge, 1)]
        {
            assert_eq!(stats.farewells_refused(reason), n, "{reason:?}");
        }
        // None of that spent the secret.
        let body = encode_farewell::<&[u8]>("tab-a", &secret, &[]).unwrap();
        assert_eq!(http_post(relay, "/farewell", Some("text/plain;charset=UTF-8"), &body).await.0, 204);
        assert_eq!(handle.stats().farewells_accepted, 1);
    })
    .await;
}
