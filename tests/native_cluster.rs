//! Members on real loopback sockets (UDP + TCP, and TCP only), driven by tokio.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal::{Addr, ClusterError};
use shoal_core::{Event, MemberState, MessageKind};
use shoal_testkit::{alive_count, encrypted_member, eventually, member, state_of, tcp_only_member};

const FORM: Duration = Duration::from_secs(10);

async fn five_members() -> Vec<shoal::Cluster> {
    let seed = member("m0", 1).await;
    let mut all = vec![seed.clone()];
    for i in 1..5 {
        let m = member(&format!("m{i}"), 10 + i).await;
        m.join(&[seed.local_addr()]).await.expect("join through the seed");
        all.push(m);
    }
    let formed = eventually(FORM, || all.iter().all(|m| alive_count(m) == 4)).await;
    assert!(formed, "members see {:?}", all.iter().map(alive_count).collect::<Vec<_>>());
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_form_a_cluster_over_udp_and_tcp() {
    let all = five_members().await;
    for m in &all {
        assert!(m.members().iter().all(|x| x.addr.scheme() == "udp"));
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_without_leaving_is_declared_failed_by_all() {
    let all = five_members().await;
    let mut events = all[0].events();
    all[4].shutdown().await;
    let failed =
        eventually(Duration::from_secs(10), || all[..4].iter().all(|m| state_of(m, "m4") == Some(MemberState::Dead)))
            .await;
    assert!(failed, "states: {:?}", all[..4].iter().map(|m| state_of(m, "m4")).collect::<Vec<_>>());
    let mut saw_failed = false;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), events.next()).await {
        saw_failed |= matches!(&e, Event::Failed { id, .. } if id.as_str() == "m4");
    }
    assert!(saw_failed, "m0's event stream reported the failure");
    for m in &all[..4] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_member_once() {
    let all = five_members().await;
    let received = Arc::new(AtomicUsize::new(0));
    for m in &all[1..] {
        let received = received.clone();
        m.on_message(move |msg| {
            if msg.kind == MessageKind::Broadcast && msg.topic == "deploy" && msg.payload == b"v42" {
                received.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    all[0].broadcast("deploy", b"v42").unwrap();
    assert!(eventually(Duration::from_secs(5), || received.load(Ordering::SeqCst) >= 4).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(received.load(Ordering::SeqCst), 4, "each member got it exactly once");
    for m in &all {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_arrive_best_effort_and_reliably() {
    let a = member("a", 1).await;
    let b = member("b", 2).await;
    b.join(&[a.local_addr()]).await.unwrap();
    assert!(eventually(FORM, || alive_count(&a) == 1 && alive_count(&b) == 1).await);
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    b.on_message(move |m| sink.lock().unwrap().push((m.topic.clone(), m.payload.len())));
    let to_b = b.name();
    a.send(&to_b, "hello", b"small").unwrap();
    let big = vec![7u8; 300_000];
    a.send_reliable(&to_b, "blob", &big).unwrap();
    assert!(eventually(Duration::from_secs(5), || got.lock().unwrap().len() == 2).await, "{:?}", got.lock().unwrap());
    let got = got.lock().unwrap().clone();
    assert!(got.contains(&("hello".to_string(), 5)));
    assert!(got.contains(&("blob".to_string(), 300_000)));
    assert!(matches!(
        a.send(&to_b, "too-big", &big),
        Err(ClusterError::Command(shoal_core::CommandError::TooLarge { .. }))
    ));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_only_cluster_forms_and_gossips() {
    let a = tcp_only_member("t0", 1).await;
    let b = tcp_only_member("t1", 2).await;
    let c = tcp_only_member("t2", 3).await;
    assert_eq!(a.local_addr().scheme(), "tcp");
    b.join(&[a.local_addr()]).await.unwrap();
    c.join(&[a.local_addr()]).await.unwrap();
    assert!(eventually(FORM, || [&a, &b, &c].iter().all(|m| alive_count(m) == 2)).await);
    let received = Arc::new(AtomicUsize::new(0));
    let r = received.clone();
    c.on_message(move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    a.broadcast("t", b"over tcp").unwrap();
    assert!(eventually(Duration::from_secs(5), || received.load(Ordering::SeqCst) == 1).await);
    // Probes over TCP keep everyone alive for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!([&a, &b, &c].iter().all(|m| alive_count(m) == 2));
    for m in [a, b, c] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_leaves_is_seen_as_left_not_failed() {
    let all = five_members().await;
    all[2].leave(Duration::from_secs(3)).await.expect("leave disseminated");
    let left = eventually(Duration::from_secs(5), || {
        [0, 1, 3, 4].iter().all(|&i| state_of(&all[i], "m2") == Some(MemberState::Left))
    })
    .await;
    assert!(left);
    // Stays left: nobody later declares it failed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!([0, 1, 3, 4].iter().all(|&i| state_of(&all[i], "m2") == Some(MemberState::Left)));
    for i in [0, 1, 3, 4] {
        all[i].shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_fails_when_no_seed_answers() {
    let a = member("lonely", 1).await;
    // A port nobody listens on: bind and drop a socket to find one.
    let unused = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let started = std::time::Instant::now();
    let r = a.join(&[Addr::udp(unused)]).await;
    assert!(matches!(r, Err(ClusterError::JoinFailed { .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_render_as_prometheus_text() {
    let a = member("p0", 1).await;
    let b = member("p1", 2).await;
    b.join(&[a.local_addr()]).await.unwrap();
    assert!(eventually(FORM, || a.metrics().stats.acks_received > 2).await);
    let text = a.metrics().to_prometheus();
    assert!(text.contains("shoal_probes_total "));
    assert!(text.contains("shoal_members{state=\"alive\"} 1"));
    assert!(text.contains("# TYPE shoal_local_health gauge"));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_members_work_over_sockets_and_a_wrong_key_cannot_join() {
    let a = encrypted_member("e0", 1, "prod", [7; 32]).await;
    let b = encrypted_member("e1", 2, "prod", [7; 32]).await;
    b.join(&[a.local_addr()]).await.expect("same key and label");
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    b.on_message(move |m| {
        if m.payload == b"secret" {
            g.fetch_add(1, Ordering::SeqCst);
        }
    });
    a.broadcast("t", b"secret").unwrap();
    assert!(eventually(Duration::from_secs(5), || got.load(Ordering::SeqCst) == 1).await);
    let intruder = encrypted_member("x", 3, "prod", [8; 32]).await;
    assert!(matches!(intruder.join(&[a.local_addr()]).await, Err(ClusterError::JoinFailed { .. })));
    assert!(a.metrics().security.unauthenticated > 0);
    assert!(a.metrics().to_prometheus().contains("shoal_security_unauthenticated_total"));
    assert_eq!(alive_count(&a), 1, "the intruder never became a member");
    for m in [a, b, intruder] {
        m.shutdown().await;
    }
}
