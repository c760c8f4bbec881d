//! End to end: Shoal members whose only transport is TCP (TCP-only mode).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal::Cluster;
use shoal_core::MemberState;
use shoal_testkit::{eventually, tcp_only_member};
use tokio::time::timeout;

fn state_of(observer: &Cluster, name: &str) -> Option<MemberState> {
    observer.members().into_iter().find(|m| m.id.as_str() == name).map(|m| m.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tcp_only_members_join_exchange_messages_and_detect_a_failure() {
    timeout(Duration::from_secs(15), async {
        let a = tcp_only_member("a", 1).await;
        let b = tcp_only_member("b", 2).await;
        assert_eq!(a.local_addr().scheme(), "tcp");
        let via = b.join(&[a.local_addr()]).await.expect("join over tcp");
        assert_eq!(via, a.local_addr());
        let formed = eventually(Duration::from_secs(5), || {
            state_of(&a, "b") == Some(MemberState::Alive) && state_of(&b, "a") == Some(MemberState::Alive)
        });
        assert!(formed.await, "a sees {:?}, b sees {:?}", a.members(), b.members());

        let got = Arc::new(AtomicUsize::new(0));
        let sink = got.clone();
        a.on_message(move |m| {
            sink.fetch_add(m.payload.len(), Ordering::SeqCst);
        });
        b.send(&a.name(), "small", b"12345").unwrap();
        b.send_reliable(&a.name(), "large", &vec![9u8; 1 << 20]).unwrap();
        assert!(eventually(Duration::from_secs(5), || got.load(Ordering::SeqCst) == 5 + (1 << 20)).await);

        // Probes over TCP keep both alive...
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(state_of(&a, "b"), Some(MemberState::Alive));
        // ...until one stops without leaving.
        b.shutdown().await;
        let failed = eventually(Duration::from_secs(8), || state_of(&a, "b") == Some(MemberState::Dead));
        assert!(failed.await, "a sees b as {:?}", state_of(&a, "b"));
        a.shutdown().await;
    })
    .await
    .expect("test timed out");
}
