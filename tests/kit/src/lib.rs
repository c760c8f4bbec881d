//! Test helpers shared by the Shoal test trees (the workspace's `tests` crate and each crate's
//! `tests/`): members on real loopback sockets, and waiting on a condition instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

use shoal::{Cluster, Transport};
use shoal_core::{Config, MemberState};
use shoal_tcp::{TcpOptions, TcpTransport};
use shoal_udp::UdpTransport;

/// Binds UDP and TCP on one free loopback port (see [`shoal::bind::udp_and_tcp`]).
pub async fn udp_and_tcp() -> (Arc<UdpTransport>, Arc<TcpTransport>) {
    shoal::bind::udp_and_tcp("127.0.0.1:0".parse().unwrap(), None).await.expect("bind udp and tcp on loopback")
}

/// A member on UDP + TCP with the `local` preset, driver spawned on tokio.
pub async fn member(name: &str, seed: u64) -> Cluster {
    member_with(name, seed, Config::local()).await
}

/// As [`member`] with a given configuration.
pub async fn member_with(name: &str, seed: u64, config: Config) -> Cluster {
    let (udp, tcp) = udp_and_tcp().await;
    let transports: Vec<Arc<dyn Transport>> = vec![udp, tcp];
    Cluster::builder(name).unwrap().config(config).seed(seed).spawn(transports).expect("start member")
}

/// A member on UDP + TCP that encrypts everything with `key` under `label`.
pub async fn encrypted_member(name: &str, seed: u64, label: &str, key: [u8; 32]) -> Cluster {
    let (udp, tcp) = udp_and_tcp().await;
    let transports: Vec<Arc<dyn Transport>> = vec![udp, tcp];
    let config = {
        let mut c = Config::local();
        c.security = shoal_core::SecurityMode::Encrypted;
        c.label = label.into();
        c
    };
    Cluster::builder(name)
        .unwrap()
        .config(config)
        .seed(seed)
        .keyring(shoal_core::Keyring::new(key))
        .spawn(transports)
        .expect("start member")
}

/// A member that speaks only TCP (for networks that drop UDP).
pub async fn tcp_only_member(name: &str, seed: u64) -> Cluster {
    let options = TcpOptions { best_effort: true, ..TcpOptions::default() };
    let tcp = TcpTransport::bind("127.0.0.1:0".parse().unwrap(), options).await.expect("bind tcp");
    let transports: Vec<Arc<dyn Transport>> = vec![tcp];
    Cluster::builder(name).unwrap().config(Config::local()).seed(seed).spawn(transports).expect("start member")
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// As [`eventually`], for tests that wait from a plain thread (on agent processes, say): polls
/// `check` every 20 ms until it holds or `limit` passes.
pub fn eventually_blocking(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// How `observer` sees the member named `name`.
pub fn state_of(observer: &Cluster, name: &str) -> Option<MemberState> {
    observer.members().into_iter().find(|m| m.id.as_str() == name).map(|m| m.state)
}

/// Members `observer` believes alive.
pub fn alive_count(observer: &Cluster) -> usize {
    observer.alive_members().len()
}
