//! Starting members with one call: `Cluster::bind` and `ClusterBuilder::bind` on real loopback
//! sockets.

use std::time::Duration;

use shoal::{Cluster, ClusterError, Config, MemberState};
use shoal_testkit::{eventually, state_of};

const SETTLE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn two_members_started_with_one_bind_call_each_see_each_other_alive() {
    let a = Cluster::builder("a").unwrap().config(Config::local()).seed(1).bind("127.0.0.1:0").await.unwrap();
    let b = Cluster::builder("b").unwrap().config(Config::local()).seed(2).bind("127.0.0.1:0").await.unwrap();
    b.join(&[a.local_addr()]).await.unwrap();
    let formed = eventually(SETTLE, || {
        state_of(&a, "b") == Some(MemberState::Alive) && state_of(&b, "a") == Some(MemberState::Alive)
    })
    .await;
    assert!(formed, "a sees {:?}, b sees {:?}", a.members(), b.members());
    // Push-pull and reliable messages ride the TCP half of the pair.
    let sent = b.send_reliable(&"a".try_into().unwrap(), "t", &[7; 4_000]).unwrap();
    assert!(sent > 0);
    assert!(eventually(SETTLE, || a.metrics().stats.direct_delivered >= 1).await, "{:?}", a.metrics().stats);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_member_bound_to_every_interface_advertises_an_address_others_can_reach() {
    let a = Cluster::builder("wide").unwrap().config(Config::local()).bind("0.0.0.0:0").await.unwrap();
    let advertised = a.local_addr().socket_addr().expect("a udp address");
    assert!(!advertised.ip().is_unspecified(), "advertised {advertised}");
    assert_ne!(advertised.port(), 0);
    let b = Cluster::builder("near").unwrap().config(Config::local()).bind("127.0.0.1:0").await.unwrap();
    b.join(&[a.local_addr()]).await.unwrap();
    assert!(eventually(SETTLE, || state_of(&b, "wide") == Some(MemberState::Alive)).await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn the_one_line_start_names_the_member_after_the_host() {
    let a = Cluster::bind("127.0.0.1:0").await.unwrap();
    assert!(!a.name().as_str().is_empty());
    assert_eq!(a.local_addr().scheme(), "udp");
    a.shutdown().await;
}

#[tokio::test]
async fn binding_a_port_another_member_holds_fails_with_a_bind_error_naming_the_address() {
    let a = Cluster::builder("first").unwrap().bind("127.0.0.1:0").await.unwrap();
    let taken = a.local_addr().socket_addr().unwrap().to_string();
    let err = Cluster::builder("second").unwrap().bind(&taken).await.unwrap_err();
    assert!(matches!(err, ClusterError::Bind(ref e) if e.kind() == std::io::ErrorKind::AddrInUse), "{err:?}");
    assert!(err.to_string().contains(&taken), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    let err = Cluster::builder("third").unwrap().bind("not an address").await.unwrap_err();
    assert!(matches!(err, ClusterError::Bind(_)), "{err:?}");
    a.shutdown().await;
}

#[tokio::test]
async fn a_member_joins_through_a_dns_name_that_the_system_resolver_knows() {
    let a = Cluster::builder("named").unwrap().config(Config::local()).seed(1).bind("127.0.0.1:0").await.unwrap();
    let port = a.local_addr().socket_addr().unwrap().port();
    let b = Cluster::builder("asker").unwrap().config(Config::local()).seed(2).bind("127.0.0.1:0").await.unwrap();
    // `localhost` lists 127.0.0.1 (and ::1 where the host has IPv6, which nobody answers at).
    b.join([format!("localhost:{port}")]).await.unwrap();
    assert!(eventually(SETTLE, || state_of(&b, "named") == Some(MemberState::Alive)).await, "{:?}", b.members());
    a.shutdown().await;
    b.shutdown().await;
}
