//! The relay's own cluster member on loopback: it joins a native cluster and announces the relay
//! with its tags, leaves when the relay stops, joins an encrypted cluster with its keys, and makes
//! a member that reconnects through another relay of the fleet move there instead of failing.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{bounded, eventually, http_get, native_member, raw_client, state_of, RawClient};
use futures_util::{SinkExt, StreamExt};
use shoal::relay::{decode_ws_frame, encode_ws_frame};
use shoal::{Addr, Cluster, Config, MemberFilter, MemberState, NodeId};
use shoal_core::{Instant, Node};
use shoal_relay::{FleetMemberConfig, Relay, RelayConfig, RelayHandle, RELAY_TAG, RELAY_URL_TAG};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(30);
/// How long the cluster may take to agree on something (a join, a leave, a move).
const CONVERGE: Duration = Duration::from_secs(10);
const KEY: &str = "the fleet's relay key, 32 bytes";

/// A relay on loopback port 0 with its cluster member started (joining `join`), serving.
struct Running {
    addr: SocketAddr,
    handle: RelayHandle,
    member: Cluster,
    task: JoinHandle<std::io::Result<()>>,
}

async fn relay_with_member(config: RelayConfig, member: FleetMemberConfig) -> Running {
    let bound = Relay::bind("127.0.0.1:0".parse().unwrap(), config).expect("bind relay");
    let member = bound.start_member(member).await.expect("start the relay's member");
    let (addr, handle) = (bound.local_addr(), bound.handle());
    Running { addr, handle, member, task: tokio::spawn(bound.serve()) }
}

/// A member on a free loopback port with the `local` preset (as the native members of the tests),
/// joining `seed`.
fn member_config(seed: &Cluster) -> FleetMemberConfig {
    let mut member = FleetMemberConfig::new("127.0.0.1:0".parse().unwrap()).preset("local").unwrap();
    member.join = vec![seed.local_addr().to_string()];
    member
}

/// The live members `cluster` knows that announce a relay: the discovery query.
fn relays_seen_by(cluster: &Cluster) -> Vec<shoal::Member<Addr>> {
    cluster.members_matching(&MemberFilter::new().states(&[MemberState::Alive]).tag(RELAY_TAG, "*"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_a_member_is_seen_alive_by_a_native_member_with_its_role_relay_and_url_tags() {
    bounded(LIMIT, async {
        let native = native_member("native", 1).await;
        let relay = relay_with_member(RelayConfig::default(), member_config(&native)).await;
        let found = eventually(CONVERGE, || relays_seen_by(&native).len() == 1).await;
        assert!(found, "native knows {:?}", native.members());
        let seen = relays_seen_by(&native).remove(0);
        assert_eq!(seen.id.as_str(), format!("relay-127.0.0.1-{}", relay.addr.port()));
        assert_eq!(seen.id, relay.member.name());
        let tags = seen.tags();
        assert_eq!(tags.get("role"), Some("relay"));
        assert_eq!(tags.get(RELAY_TAG), Some(relay.addr.to_string().as_str()));
        assert_eq!(tags.get(RELAY_URL_TAG), Some(format!("ws://{}", relay.addr).as_str()));
        assert_eq!(tags.len(), 3, "{tags:?}");
        assert_eq!(relay.handle.public_addr(), relay.addr.to_string(), "the tag names the relay:// host");

        // The relay's member sees the native one, and says so on /metrics; /health is unchanged.
        let member = relay.handle.cluster_member().expect("the handle knows the member");
        assert!(eventually(CONVERGE, || state_of(&member, "native") == Some(MemberState::Alive)).await);
        let (status, metrics) = http_get(relay.addr, "/metrics").await;
        assert_eq!(status, 200);
        for line in [
            "\nshoal_relay_cluster_member_up 1\n",
            "\nshoal_relay_cluster_members{state=\"alive\"} 1\n",
            "\nshoal_relay_cluster_members{state=\"failed\"} 0\n",
        ] {
            assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
        }
        assert_eq!(http_get(relay.addr, "/health").await, (200, "ok".to_string()));
        relay.handle.shutdown();
        native.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_stops_has_its_member_leave_so_the_cluster_sees_it_left_not_failed() {
    bounded(LIMIT, async {
        let native = native_member("native", 1).await;
        let relay = relay_with_member(RelayConfig::default(), member_config(&native)).await;
        let name = relay.member.name();
        assert!(eventually(CONVERGE, || relays_seen_by(&native).len() == 1).await);

        relay.handle.shutdown();
        relay.task.await.expect("serve ends").expect("serve ends cleanly");
        // Serving ended only after the leave went out: the native member has it, or has it soon.
        let left = eventually(CONVERGE, || state_of(&native, name.as_str()) == Some(MemberState::Left)).await;
        assert!(left, "native sees the relay's member {:?}", state_of(&native, name.as_str()));
        assert_eq!(relay.member.closed().await, shoal::CloseReason::Left);
        assert!(relays_seen_by(&native).is_empty());
        assert_eq!(native.metrics().stats.failures_declared, 0);
        native.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_member_with_the_cluster_key_and_label_joins_an_encrypted_cluster() {
    bounded(LIMIT, async {
        let key = [0x5a; 32];
        let native = shoal_testkit::encrypted_member("native", 1, "prod", key).await;
        let mut member = member_config(&native).cluster_keys(&["5a".repeat(32)]).unwrap();
        member.config.label = "prod".into();
        member.name = Some("relay-one".into());
        let relay = relay_with_member(RelayConfig::default(), member).await;
        let found = eventually(CONVERGE, || state_of(&native, "relay-one") == Some(MemberState::Alive)).await;
        assert!(found, "native sees the relay's member {:?}", state_of(&native, "relay-one"));
        assert_eq!(relays_seen_by(&native).len(), 1);
        relay.handle.shutdown();
        native.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_runs_one_member_and_none_unless_asked() {
    bounded(LIMIT, async {
        let bare = Relay::bind("127.0.0.1:0".parse().unwrap(), RelayConfig::default()).unwrap();
        let (addr, handle) = (bare.local_addr(), bare.handle());
        let first = bare.start_member(FleetMemberConfig::new("127.0.0.1:0".parse().unwrap())).await.unwrap();
        let second = bare.start_member(FleetMemberConfig::new("127.0.0.1:0".parse().unwrap())).await;
        assert!(matches!(second, Err(shoal_relay::FleetMemberError::AlreadyRunning)), "{second:?}");
        tokio::spawn(bare.serve());
        let (_, metrics) = http_get(addr, "/metrics").await;
        assert!(metrics.contains("\nshoal_relay_cluster_member_up 1\n"), "{metrics}");
        handle.shutdown();
        assert_eq!(first.closed().await, shoal::CloseReason::Left);

        let (plain, plain_handle) = common::start(RelayConfig::default()).await;
        let (_, metrics) = http_get(plain, "/metrics").await;
        assert!(!metrics.contains("shoal_relay_cluster_member"), "{metrics}");
        assert!(plain_handle.cluster_member().is_none());
        plain_handle.shutdown();
    })
    .await;
}

/// What woke a tab's loop.
enum Step {
    Received(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Timer,
    Switch(Option<(Box<RawClient>, Addr)>),
}

/// A browser tab's protocol, driven by hand over a raw WebSocket to a relay: the sans-IO node of
/// shoal-core, as the npm package drives it. `Switch` hands it a connection to another relay of
/// the fleet, with the address that relay welcomed it at: it moves there (`Node::move_to`).
struct Tab {
    node: Arc<Mutex<Node<Addr>>>,
    switch: mpsc::Sender<(Box<RawClient>, Addr)>,
}

impl Tab {
    fn start(name: &str, ws: RawClient, addr: Addr, seed: &Cluster) -> Tab {
        let clock = std::time::Instant::now();
        let now = move || Instant::from_millis(clock.elapsed().as_millis() as u64);
        let mut node = Node::new(now(), Config::local(), NodeId::new(name).unwrap(), addr, 7).expect("a tab node");
        node.join(now(), &[seed.local_addr()]).expect("join");
        let node = Arc::new(Mutex::new(node));
        let (switch, mut switches) = mpsc::channel::<(Box<RawClient>, Addr)>(1);
        let shared = node.clone();
        tokio::spawn(async move {
            let mut ws = Some(ws);
            loop {
                let (out, deadline) = {
                    let mut node = shared.lock().unwrap();
                    let out: Vec<_> = std::iter::from_fn(|| node.poll_transmit()).collect();
                    while node.poll_event().is_some() {}
                    (out, node.poll_timeout())
                };
                if let Some(ws) = ws.as_mut() {
                    for t in out {
                        let frame = encode_ws_frame(t.to.as_str(), &t.bytes).expect("a frame");
                        let _ = ws.send(Message::Binary(Bytes::from(frame))).await;
                    }
                }
                let wait = deadline.map_or(Duration::from_millis(50), |d| {
                    Duration::from_millis(d.as_millis().saturating_sub(now().as_millis()))
                });
                let received = async {
                    match ws.as_mut() {
                        Some(ws) => ws.next().await,
                        None => std::future::pending().await,
                    }
                };
                let step = tokio::select! {
                    message = received => Step::Received(message),
                    () = tokio::time::sleep(wait) => Step::Timer,
                    switched = switches.recv() => Step::Switch(switched),
                };
                match step {
                    Step::Received(Some(Ok(Message::Binary(frame)))) => {
                        if let Ok((from, packet)) = decode_ws_frame(&frame) {
                            if let Ok(from) = Addr::parse(from) {
                                let _ = shared.lock().unwrap().handle_packet(now(), from, packet);
                            }
                        }
                    }
                    Step::Received(Some(Ok(_))) => {}
                    Step::Received(Some(Err(_)) | None) => ws = None,
                    Step::Timer => shared.lock().unwrap().handle_timeout(now()),
                    Step::Switch(Some((new, addr))) => {
                        if let Some(mut old) = ws.replace(*new) {
                            let _ = old.close(None).await;
                        }
                        shared.lock().unwrap().move_to(now(), addr);
                    }
                    Step::Switch(None) => return,
                }
            }
        });
        Tab { node, switch }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_that_reconnects_through_another_relay_of_the_fleet_moves_there_and_is_never_declared_failed() {
    bounded(LIMIT, async {
        let native = native_member("native", 1).await;
        let fleet = |peers: &[SocketAddr]| RelayConfig {
            relay_key: Some(KEY.into()),
            peer_relays: peers.iter().map(|p| format!("ws://{p}")).collect(),
            ..RelayConfig::default()
        };
        let b = relay_with_member(fleet(&[]), member_config(&native)).await;
        let a = relay_with_member(fleet(&[b.addr]), member_config(&native)).await;
        let both = eventually(CONVERGE, || relays_seen_by(&native).len() == 2).await;
        assert!(both, "native knows {:?}", native.members());

        let at = |relay: SocketAddr| Addr::parse(&format!("relay://{relay}/tab")).unwrap();
        let tab = Tab::start("tab", raw_client(a.addr, "tab").await, at(a.addr), &native);
        let joined = eventually(CONVERGE, || {
            native.members().iter().any(|m| m.id.as_str() == "tab" && m.state == MemberState::Alive)
        })
        .await;
        assert!(joined, "native sees the tab {:?}", state_of(&native, "tab"));

        // Relay A goes away for this tab: it reconnects through B with the same peer id.
        tab.switch.send((Box::new(raw_client(b.addr, "tab").await), at(b.addr))).await.unwrap();
        let tab_at = |m: &Cluster| m.members().into_iter().find(|m| m.id.as_str() == "tab").map(|m| (m.addr, m.state));
        let moved = eventually(CONVERGE, || tab_at(&native) == Some((at(b.addr), MemberState::Alive))).await;
        assert!(moved, "native sees the tab at {:?}", tab_at(&native));
        assert!(native.metrics().stats.relay_moves >= 1);
        // The relays' members take the move too, and the tab still hears from the cluster.
        for relay in [&a, &b] {
            let seen = eventually(CONVERGE, || tab_at(&relay.member) == Some((at(b.addr), MemberState::Alive))).await;
            assert!(seen, "{} sees the tab at {:?}", relay.member.name(), tab_at(&relay.member));
        }
        let tab_sees_native = eventually(CONVERGE, || {
            tab.node.lock().unwrap().members().any(|m| m.id.as_str() == "native" && m.state == MemberState::Alive)
        })
        .await;
        assert!(tab_sees_native);
        assert_eq!(native.metrics().stats.failures_declared, 0, "nobody was declared failed");
        a.handle.shutdown();
        b.handle.shutdown();
        native.shutdown().await;
    })
    .await;
}
