//! End to end: a native member (UDP + TCP) and members on WebSocket only form one cluster through
//! a relay, gossip both ways, and detect a WebSocket member's crash.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, eventually, native_member, start, start_named, state_of, ws_member};
use shoal::Cluster;
use shoal_core::{MemberState, MessageKind};
use shoal_relay::RelayConfig;

fn counting(cluster: &Cluster, topic: &'static str) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    cluster.on_message(move |m| {
        if m.kind == MessageKind::Broadcast && m.topic == topic {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_websocket_members_form_one_cluster_through_the_relay() {
    bounded(Duration::from_secs(30), async {
        let (relay, handle) = start(RelayConfig::default()).await;
        let native = native_member("native", 1).await;
        let tab1 = ws_member(relay, "tab1", None, 2).await.0;
        let tab2 = ws_member(relay, "tab2", None, 3).await.0;
        assert_eq!(tab1.local_addr().as_str(), format!("relay://{relay}/tab1"));

        // A WebSocket member joins through the native member's udp:// address ...
        let via = tab1.join(&[native.local_addr()]).await.expect("tab1 joins through the native member");
        assert_eq!(via, native.local_addr());
        // ... and the native member joins a WebSocket member through its relay:// address.
        let via = native.join(&[tab2.local_addr()]).await.expect("the native member joins tab2");
        assert_eq!(via, tab2.local_addr());

        let all = [&native, &tab1, &tab2];
        let formed = eventually(Duration::from_secs(10), || all.iter().all(|m| m.alive_members().len() == 2)).await;
        assert!(formed, "alive: {:?}", all.iter().map(|m| m.alive_members().len()).collect::<Vec<_>>());
        let tab1_seen_by_native = native.members().into_iter().find(|m| m.id.as_str() == "tab1").unwrap();
        assert_eq!(tab1_seen_by_native.addr, tab1.local_addr());

        // Broadcasts cross the relay both ways.
        let from_native = [counting(&tab1, "from-native"), counting(&tab2, "from-native")];
        let from_tab = [counting(&native, "from-tab"), counting(&tab2, "from-tab")];
        native.broadcast("from-native", b"hello tabs").unwrap();
        tab1.broadcast("from-tab", b"hello native").unwrap();
        let delivered = eventually(Duration::from_secs(5), || {
            from_native.iter().chain(&from_tab).all(|c| c.load(Ordering::SeqCst) == 1)
        })
        .await;
        assert!(delivered, "{:?} {:?}", from_native, from_tab);

        let stats = handle.stats();
        assert!(stats.ws_to_udp.frames > 0 && stats.udp_to_ws.frames > 0 && stats.ws_to_ws.frames > 0, "{stats:?}");

        // A WebSocket member that stops without leaving is declared failed.
        tab1.shutdown().await;
        let failed = eventually(Duration::from_secs(10), || {
            state_of(&native, "tab1") == Some(MemberState::Dead) && state_of(&tab2, "tab1") == Some(MemberState::Dead)
        })
        .await;
        assert!(failed, "native sees {:?}, tab2 sees {:?}", state_of(&native, "tab1"), state_of(&tab2, "tab1"));
        assert_eq!(state_of(&native, "tab2"), Some(MemberState::Alive));
        native.shutdown().await;
        tab2.shutdown().await;
    })
    .await;
}

/// Issue 13, defect 6: a relay configured with a host name (`localhost:PORT`) used to write the
/// name into `relay://` addresses; native members then had no transport for those addresses and
/// dropped every datagram from the relay, so they never met the relay's members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_public_address_is_a_host_name_still_connects_native_and_websocket_members() {
    bounded(Duration::from_secs(30), async {
        let (relay, handle) = start_named("localhost").await;
        let native = native_member("native", 1).await;
        let tab = ws_member(relay, "tab", None, 2).await.0;

        let via = native.join(&[tab.local_addr()]).await.expect("the native member reaches the tab through the relay");
        assert_eq!(via, tab.local_addr());
        let formed = eventually(Duration::from_secs(10), || {
            state_of(&native, "tab") == Some(MemberState::Alive) && state_of(&tab, "native") == Some(MemberState::Alive)
        })
        .await;
        assert!(formed, "native sees {:?}, tab sees {:?}", state_of(&native, "tab"), state_of(&tab, "native"));
        let stats = handle.stats();
        assert!(stats.ws_to_udp.frames > 0 && stats.udp_to_ws.frames > 0, "{stats:?}");
        // The name was resolved once, at startup, to the address the relay's datagrams come from.
        assert_eq!(handle.public_addr(), relay.to_string());
        assert_eq!(tab.local_addr().as_str(), format!("relay://{relay}/tab"));
        native.shutdown().await;
        tab.shutdown().await;
    })
    .await;
}
