//! End to end: Shoal members on UDP (best effort) plus TCP on the same port (reliable frames).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal::{Addr, Cluster, TokioRuntime, Transport};
use shoal_core::{Config, MemberState};
use shoal_tcp::{TcpOptions, TcpTransport};
use shoal_testkit::eventually;
use shoal_udp::UdpTransport;
use tokio::time::timeout;

/// A member with UDP and TCP bound to the same loopback port (retrying if TCP's is taken).
async fn member(name: &str, seed: u64) -> (Cluster, Arc<UdpTransport>, Arc<TcpTransport>) {
    for _ in 0..20 {
        let udp = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind udp");
        let sa: SocketAddr = udp.local_socket_addr();
        let options = TcpOptions { advertise: Some(Addr::udp(sa)), ..TcpOptions::default() };
        let Ok(tcp) = TcpTransport::bind(sa, options).await else { continue };
        let transports: Vec<Arc<dyn Transport>> = vec![udp.clone(), tcp.clone()];
        let (cluster, driver) = Cluster::builder(name)
            .unwrap()
            .config(Config::local())
            .seed(seed)
            .build(transports, Arc::new(TokioRuntime::new()))
            .expect("build");
        tokio::spawn(driver.run());
        return (cluster, udp, tcp);
    }
    panic!("no loopback port free for both UDP and TCP");
}

fn state_of(observer: &Cluster, name: &str) -> Option<MemberState> {
    observer.members().into_iter().find(|m| m.id.as_str() == name).map(|m| m.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_join_over_udp_with_push_pull_over_tcp() {
    timeout(Duration::from_secs(15), async {
        let (a, a_udp, a_tcp) = member("a", 1).await;
        let (b, b_udp, _b_tcp) = member("b", 2).await;
        assert_eq!(a.local_addr(), a_udp.local_addr());
        let via = b.join(&[a.local_addr()]).await.expect("join");
        assert_eq!(via, a.local_addr(), "the push-pull reply came from the seed's member address");
        let formed = eventually(Duration::from_secs(5), || {
            state_of(&a, "b") == Some(MemberState::Alive) && state_of(&b, "a") == Some(MemberState::Alive)
        });
        assert!(formed.await, "a sees {:?}, b sees {:?}", a.members(), b.members());
        assert!(a.members().iter().chain(b.members().iter()).all(|m| m.addr.scheme() == "udp"));
        // Probes went over UDP, the join's push-pull over TCP.
        assert!(eventually(Duration::from_secs(2), || a_udp.counters().packets_in > 0).await);
        assert!(b_udp.counters().packets_out > 0);
        assert!(a_tcp.counters().packets_in >= 1, "{:?}", a_tcp.counters());
        a.shutdown().await;
        b.shutdown().await;
    })
    .await
    .expect("test timed out");
}
