//! Members on `WsTransport` through a real `shoal-relay` on loopback, whose relay goes away for 3 s
//! and comes back at the same address. A member whose only link is its relay connection knows when
//! that link is down, and must not blame the others for it: it accuses nobody while it is away, and
//! the cluster converges soon after it is back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shoal::{Addr, Cluster, Transport};
use shoal_core::{Config, Event};
use shoal_relay::{BoundRelay, Relay, RelayConfig, RelayHandle};
use shoal_tcp::{TcpOptions, TcpTransport};
use shoal_testkit::eventually;
use shoal_udp::UdpTransport;
use shoal_websocket::WsTransport;

/// How long the relay stays away: the length of the outage under test, not a wait for something.
const OUTAGE: Duration = Duration::from_secs(3);
/// Every member sees every other alive within this of the last reconnection.
const CONVERGED_WITHIN: Duration = Duration::from_secs(2);

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.expect("test timed out")
}

/// Binds a relay at `addr` (port 0 for a new one), retrying while the old one's port is released.
async fn bind_relay(addr: SocketAddr) -> BoundRelay {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Relay::bind(addr, RelayConfig::default()) {
            Ok(bound) => return bound,
            Err(e) if Instant::now() < deadline => {
                eprintln!("binding the relay at {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot bind the relay at {addr}: {e}"),
        }
    }
}

async fn serve_relay(addr: SocketAddr) -> (SocketAddr, RelayHandle, tokio::task::JoinHandle<std::io::Result<()>>) {
    let bound = bind_relay(addr).await;
    let (local, handle) = (bound.local_addr(), bound.handle());
    (local, handle, tokio::spawn(bound.serve()))
}

/// Every suspicion and failure a member reports, as `"<id> by <by>"` lines, in the background.
#[derive(Clone, Default)]
struct Accusations(Arc<Mutex<Vec<String>>>);

impl Accusations {
    fn record(&self, cluster: &Cluster) {
        let mut events = cluster.events();
        let (sink, me) = (self.0.clone(), cluster.name());
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                let line = match e {
                    Event::Suspected { id, by, .. } => format!("{me}: suspect {id} by {by}"),
                    Event::Failed { id, by, .. } => format!("{me}: fail {id} by {by}"),
                    _ => continue,
                };
                sink.lock().unwrap_or_else(PoisonError::into_inner).push(line);
            }
        });
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A member whose only transport is a WebSocket to the relay, with the default reconnect schedule:
/// after a 3 s outage, members come back up to seconds apart.
async fn ws_member(relay: SocketAddr, name: &str, seed: u64) -> (Cluster, Arc<WsTransport>) {
    let ws = WsTransport::connect(&format!("ws://{relay}/ws?peer={name}")).await.expect("connect");
    let transports: Vec<Arc<dyn Transport>> = vec![ws.clone()];
    let cluster = Cluster::builder(name).unwrap().config(Config::browser()).seed(seed).spawn(transports).unwrap();
    (cluster, ws)
}

/// A native member on UDP + TCP (same loopback port), which cannot tell a dead relay from dead peers.
async fn udp_member(name: &str, seed: u64) -> Cluster {
    for _ in 0..20 {
        let udp = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind udp");
        let sa = udp.local_socket_addr();
        let options = TcpOptions { advertise: Some(Addr::udp(sa)), ..TcpOptions::default() };
        if let Ok(tcp) = TcpTransport::bind(sa, options).await {
            let transports: Vec<Arc<dyn Transport>> = vec![udp, tcp];
            return Cluster::builder(name).unwrap().config(Config::browser()).seed(seed).spawn(transports).unwrap();
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

fn all_alive(members: &[&Cluster]) -> bool {
    members.iter().all(|m| m.alive_members().len() == members.len() - 1)
}

/// What the outage did: the time from the last reconnection to convergence, and each member's
/// reports.
struct Outage {
    converged_after_reconnect: Duration,
    accusations: Vec<String>,
}

/// Forms the cluster, stops the relay for [`OUTAGE`], restarts it at the same address, and waits
/// until every WebSocket transport is back and every member sees every other alive; then until
/// every member has probed a few more times, so that late accusations would be caught too.
async fn ride_out_a_relay_restart(
    relay: SocketAddr,
    handle: RelayHandle,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    members: &[&Cluster],
    sockets: &[&Arc<WsTransport>],
) -> Outage {
    assert!(eventually(Duration::from_secs(15), || all_alive(members)).await, "the cluster formed");
    let accusations = Accusations::default();
    for m in members {
        accusations.record(m);
    }

    handle.shutdown();
    served.await.expect("the relay task").expect("the relay served");
    assert!(eventually(Duration::from_secs(5), || sockets.iter().all(|s| !s.is_connected())).await);
    let down_at = Instant::now();
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    let (_, handle, _served) = serve_relay(relay).await;
    let restarted = Instant::now();
    assert!(eventually(Duration::from_secs(10), || sockets.iter().all(|s| s.is_connected())).await, "reconnected");
    let reconnected = Instant::now();
    eprintln!("the last member reconnected {:?} after the restart", reconnected - restarted);
    let converged = eventually(Duration::from_secs(10), || all_alive(members)).await;
    let converged_after_reconnect = reconnected.elapsed();
    assert!(converged, "the cluster converged again: {:?}", members.iter().map(|m| m.members()).collect::<Vec<_>>());
    let pings: Vec<u64> = members.iter().map(|m| m.metrics().stats.pings_sent).collect();
    let probed_again = || members.iter().zip(&pings).all(|(m, before)| m.metrics().stats.pings_sent >= before + 4);
    assert!(eventually(Duration::from_secs(10), probed_again).await, "every member probed again");
    handle.shutdown();
    Outage { converged_after_reconnect, accusations: accusations.lines() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_websocket_member_whose_relay_restarts_for_3_s_suspects_nobody_and_is_suspected_by_nobody() {
    bounded(async {
        let (relay, handle, served) = serve_relay("127.0.0.1:0".parse().unwrap()).await;
        let (a, a_ws) = ws_member(relay, "ws-a", 1).await;
        let (b, b_ws) = ws_member(relay, "ws-b", 2).await;
        let (c, c_ws) = ws_member(relay, "ws-c", 3).await;
        b.join(&[a.local_addr()]).await.expect("b joins a");
        c.join(&[a.local_addr()]).await.expect("c joins a");

        let outage = ride_out_a_relay_restart(relay, handle, served, &[&a, &b, &c], &[&a_ws, &b_ws, &c_ws]).await;
        eprintln!("converged {:?} after the last reconnection", outage.converged_after_reconnect);
        assert_eq!(outage.accusations, Vec::<String>::new(), "nobody suspected or declared failed anywhere");
        assert!(outage.converged_after_reconnect <= CONVERGED_WITHIN, "{:?}", outage.converged_after_reconnect);
        for m in [&a, &b, &c] {
            assert_eq!(m.metrics().stats.link_outages, 1, "{}", m.name());
        }
        for m in [a, b, c] {
            m.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_members_cut_off_by_a_relay_restart_accuse_nobody_and_nobody_suspects_the_udp_member() {
    bounded(async {
        let (relay, handle, served) = serve_relay("127.0.0.1:0".parse().unwrap()).await;
        let native = udp_member("native", 1).await;
        let (a, a_ws) = ws_member(relay, "ws-a", 2).await;
        let (b, b_ws) = ws_member(relay, "ws-b", 3).await;
        a.join(&[native.local_addr()]).await.expect("a joins the native member");
        b.join(&[native.local_addr()]).await.expect("b joins the native member");

        let outage = ride_out_a_relay_restart(relay, handle, served, &[&native, &a, &b], &[&a_ws, &b_ws]).await;
        eprintln!("converged {:?} after the last reconnection", outage.converged_after_reconnect);
        // The native member cannot tell a dead relay from dead peers: what it thought of the
        // relayed members meanwhile is its own business, and is printed, not checked.
        let (by_native, by_relayed): (Vec<_>, Vec<_>) =
            outage.accusations.iter().partition(|line| line.ends_with(" by native"));
        eprintln!("accusations raised by the native member: {by_native:?}");
        assert_eq!(by_relayed, Vec::<&String>::new(), "the relayed members accused nobody");
        assert!(!by_native.iter().any(|line| line.contains(" native by ")), "nobody suspected the native member");
        assert!(outage.converged_after_reconnect <= CONVERGED_WITHIN, "{:?}", outage.converged_after_reconnect);
        for m in [native, a, b] {
            m.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_udp_socket_beside_its_relay_connection_is_not_cut_off_when_the_relay_goes() {
    bounded(async {
        let (relay, handle, served) = serve_relay("127.0.0.1:0".parse().unwrap()).await;
        let ws = WsTransport::connect(&format!("ws://{relay}/ws?peer=both")).await.expect("connect");
        let udp = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind udp");
        let transports: Vec<Arc<dyn Transport>> = vec![ws.clone(), udp];
        let member = Cluster::builder("both").unwrap().config(Config::local()).spawn(transports).unwrap();
        handle.shutdown();
        served.await.unwrap().unwrap();
        assert!(eventually(Duration::from_secs(5), || !ws.is_connected()).await);
        let (_, handle, _served) = serve_relay(relay).await;
        assert!(eventually(Duration::from_secs(10), || ws.is_connected()).await, "reconnected");
        assert_eq!(member.metrics().stats.link_outages, 0, "its UDP socket may still reach others");
        member.shutdown().await;
        handle.shutdown();
    })
    .await;
}
