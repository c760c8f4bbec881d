//! The native side's signalling through a real relay, with a scripted "browser" (a bare signalling
//! connection): invites, refused offers, byes. The data channels themselves are exercised against
//! headless Chromium in tests/webrtc.

use std::net::SocketAddr;
use std::time::Duration;

use shoal::relay::{relay_addr, SignalKind};
use shoal::{Addr, Transport};
use shoal_relay::{Relay, RelayConfig};
use shoal_webrtc::signal::SignalConnection;
use shoal_webrtc::{WebRtcOptions, WebRtcTransport};

async fn relay() -> SocketAddr {
    let bound = Relay::bind("127.0.0.1:0".parse().unwrap(), RelayConfig::default()).expect("bind relay");
    let addr = bound.local_addr();
    tokio::spawn(bound.serve());
    addr
}

fn member() -> Addr {
    Addr::parse("udp://127.0.0.1:7946").unwrap()
}

async fn native(relay: SocketAddr) -> std::sync::Arc<WebRtcTransport> {
    let mut options = WebRtcOptions::new(&format!("ws://{relay}"), "agent.rtc", member());
    options.ip = Some("127.0.0.1".parse().unwrap());
    options.invite_interval = Duration::from_millis(300);
    WebRtcTransport::connect(options).await.expect("connect the native side")
}

async fn next(conn: &mut SignalConnection) -> shoal_webrtc::signal::Signal {
    tokio::time::timeout(Duration::from_secs(5), conn.next()).await.expect("a signal in time").expect("open")
}

#[tokio::test]
async fn a_browser_with_traffic_is_invited_once_per_interval_and_nothing_is_claimed_before_a_channel_opens() {
    let relay = relay().await;
    let native = native(relay).await;
    let mut tab = SignalConnection::connect(&format!("ws://{relay}"), "tab-1", Duration::from_secs(5)).await.unwrap();
    let tab_addr = relay_addr(&relay.to_string(), "tab-1").unwrap();

    assert!(!native.claims(&tab_addr, false), "no channel yet: the relay path carries it");
    let invite = next(&mut tab).await;
    assert_eq!(invite.kind, SignalKind::Invite);
    assert_eq!(invite.from, relay_addr(&relay.to_string(), "agent.rtc").unwrap());
    assert_eq!(invite.body, r#"{"member":"udp://127.0.0.1:7946"}"#);

    // Within the interval: no second invite. After it: one more.
    assert!(!native.claims(&tab_addr, true));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!native.claims(&tab_addr, false));
    assert_eq!(next(&mut tab).await.kind, SignalKind::Invite);
    assert!(tokio::time::timeout(Duration::from_millis(200), tab.next()).await.is_err(), "exactly one");
    assert_eq!(native.local_addr(), member(), "the plugin stands for the member's own address");
}

#[tokio::test]
async fn addresses_outside_the_relay_are_never_claimed_nor_invited() {
    let relay = relay().await;
    let native = native(relay).await;
    let mut tab = SignalConnection::connect(&format!("ws://{relay}"), "tab-1", Duration::from_secs(5)).await.unwrap();
    for other in ["udp://127.0.0.1:9", "relay://elsewhere:1/tab-1", "tcp://127.0.0.1:9"] {
        assert!(!native.claims(&Addr::parse(other).unwrap(), false), "{other}");
    }
    assert!(tokio::time::timeout(Duration::from_millis(300), tab.next()).await.is_err(), "no invite");
    assert!(native.open_peers().is_empty());
}

#[tokio::test]
async fn an_offer_without_a_valid_sdp_is_refused_and_opens_nothing() {
    let relay = relay().await;
    let native = native(relay).await;
    let mut tab = SignalConnection::connect(&format!("ws://{relay}"), "tab-1", Duration::from_secs(5)).await.unwrap();
    let agent = relay_addr(&relay.to_string(), "agent.rtc").unwrap();
    tab.send(&agent, SignalKind::Offer, r#"{"sdp":"not sdp"}"#).await.unwrap();
    tab.send(&agent, SignalKind::Offer, "garbage").await.unwrap();
    tab.send(&agent, SignalKind::Bye, "").await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), tab.next()).await.is_err(), "no answer");
    assert!(native.open_peers().is_empty());
}

#[tokio::test]
async fn the_signalling_connection_comes_back_after_the_relay_restarts() {
    let bound = Relay::bind("127.0.0.1:0".parse().unwrap(), RelayConfig::default()).expect("bind relay");
    let addr = bound.local_addr();
    let handle = bound.handle();
    tokio::spawn(bound.serve());
    let native = native(addr).await;
    handle.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The same address again (the port may take a moment to be free).
    let mut again = None;
    for _ in 0..50 {
        match Relay::bind(addr, RelayConfig::default()) {
            Ok(b) => {
                again = Some(b);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    tokio::spawn(again.expect("rebind the relay").serve());
    let mut tab = SignalConnection::connect(&format!("ws://{addr}"), "tab-1", Duration::from_secs(5)).await.unwrap();
    let tab_addr = relay_addr(&addr.to_string(), "tab-1").unwrap();
    let invited = async {
        loop {
            native.claims(&tab_addr, false);
            if let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(300), tab.next()).await {
                return s;
            }
        }
    };
    let invite = tokio::time::timeout(Duration::from_secs(15), invited).await.expect("an invite after the reconnect");
    assert_eq!(invite.kind, SignalKind::Invite);
}
