//! Relayed members through a relay's UDP port, against a fake relay socket on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal::relay::{decode_datagram, encode_datagram};
use shoal::{Addr, Transport, TransportError};
use shoal_udp::{UdpTransport, MAX_DATAGRAM};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(5);

async fn bind() -> Arc<UdpTransport> {
    UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind loopback")
}

/// A socket playing the relay's UDP port.
async fn fake_relay() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

fn relayed(relay: SocketAddr, peer: &str) -> Addr {
    Addr::parse(&format!("relay://{relay}/{peer}")).unwrap()
}

async fn datagram_at(relay: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = timeout(LIMIT, relay.recv_from(&mut buf)).await.expect("a datagram in time").unwrap();
    buf.truncate(n);
    (buf, from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_addresses_with_an_ip_and_port_are_claimed_both_ways() {
    let t = bind().await;
    let by_ip = Addr::parse("relay://127.0.0.1:8080/tab-7").unwrap();
    assert!(t.claims(&by_ip, false));
    assert!(t.claims(&by_ip, true), "push-pull replies to a relayed member go through the relay too");
    // A relay named by host name cannot be checked against datagram sources: not ours to claim.
    assert!(!t.claims(&Addr::parse("relay://relay.example:8080/tab-7").unwrap(), false));
    assert!(!t.claims(&Addr::parse("relay://127.0.0.1:8080/bad:id").unwrap(), false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_for_a_relayed_member_goes_to_the_relay_wrapped_with_the_peer_id() {
    let t = bind().await;
    let (relay, relay_addr) = fake_relay().await;
    t.send(&relayed(relay_addr, "tab-7"), b"\x01probe").await.unwrap();
    let (datagram, from) = datagram_at(&relay).await;
    assert_eq!(from, t.local_socket_addr());
    assert_eq!(datagram, encode_datagram("tab-7", b"\x01probe").unwrap());
    assert_eq!(decode_datagram(&datagram).unwrap(), ("tab-7", &b"\x01probe"[..]));
    assert_eq!(t.counters().packets_out, 1);
    assert_eq!(t.counters().bytes_out, datagram.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reliable_frame_for_a_relayed_member_travels_as_one_relay_datagram() {
    let t = bind().await;
    let (relay, relay_addr) = fake_relay().await;
    t.send_reliable(&relayed(relay_addr, "tab-7"), b"\x01push-pull").await.unwrap();
    let (datagram, _) = datagram_at(&relay).await;
    assert_eq!(decode_datagram(&datagram).unwrap(), ("tab-7", &b"\x01push-pull"[..]));
    // udp:// members still get reliable frames from shoal-tcp, not from here.
    let r = t.send_reliable(&Addr::udp(relay_addr), b"x").await;
    assert!(matches!(r, Err(TransportError::Unreachable(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_packet_too_large_for_one_datagram_is_refused_before_sending() {
    let t = bind().await;
    let (_relay, relay_addr) = fake_relay().await;
    let too_big = vec![1u8; MAX_DATAGRAM - 2 - "tab-7".len() + 1];
    let r = t.send(&relayed(relay_addr, "tab-7"), &too_big).await;
    assert!(matches!(r, Err(TransportError::TooLarge { .. })), "{r:?}");
    assert_eq!(t.counters().packets_out, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_from_the_relay_is_reported_from_the_relayed_member_with_the_inner_packet() {
    let t = bind().await;
    let (relay, relay_addr) = fake_relay().await;
    let source = relayed(relay_addr, "tab-7");
    let datagram = encode_datagram(source.as_str(), b"\x01ack").unwrap();
    relay.send_to(&datagram, t.local_socket_addr()).await.unwrap();
    let mut buf = Vec::new();
    let got = timeout(LIMIT, t.recv(&mut buf)).await.expect("in time").unwrap();
    assert_eq!(got.from, source);
    assert!(!got.reliable);
    assert_eq!(buf, b"\x01ack");
    assert_eq!(t.counters().packets_in, 1);
    assert_eq!(t.counters().bytes_in, datagram.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwrapping_a_relay_datagram_reuses_the_receive_buffer() {
    let t = bind().await;
    let (relay, relay_addr) = fake_relay().await;
    let source = relayed(relay_addr, "tab-7");
    let mut buf = Vec::new();
    relay.send_to(&encode_datagram(source.as_str(), b"\x01first").unwrap(), t.local_socket_addr()).await.unwrap();
    timeout(LIMIT, t.recv(&mut buf)).await.unwrap().unwrap();
    let (capacity, ptr) = (buf.capacity(), buf.as_ptr());
    relay.send_to(&encode_datagram(source.as_str(), b"\x01second").unwrap(), t.local_socket_addr()).await.unwrap();
    timeout(LIMIT, t.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(buf, b"\x01second");
    assert_eq!((buf.capacity(), buf.as_ptr()), (capacity, ptr), "no new allocation for the packet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_datagram_naming_another_relay_is_dropped_and_counted() {
    let t = bind().await;
    let (impostor, _) = fake_relay().await;
    let (relay, relay_addr) = fake_relay().await;
    // Claims to come from a member of `relay`, but is sent from elsewhere: a spoofing attempt.
    let forged = encode_datagram(relayed(relay_addr, "alice").as_str(), b"\x01forged").unwrap();
    impostor.send_to(&forged, t.local_socket_addr()).await.unwrap();
    // Truncated and garbage relay datagrams from the real relay are dropped too.
    relay.send_to(&[0xF0, 40, b'r'], t.local_socket_addr()).await.unwrap();
    relay.send_to(&encode_datagram("not an address", b"\x01x").unwrap(), t.local_socket_addr()).await.unwrap();
    let genuine = encode_datagram(relayed(relay_addr, "bob").as_str(), b"\x01real").unwrap();
    relay.send_to(&genuine, t.local_socket_addr()).await.unwrap();
    let mut buf = Vec::new();
    let got = timeout(LIMIT, t.recv(&mut buf)).await.expect("the genuine one arrives").unwrap();
    assert_eq!(got.from, relayed(relay_addr, "bob"));
    assert_eq!(buf, b"\x01real");
    assert_eq!(t.relay_dropped(), 3);
    assert_eq!(t.counters().dropped_in, 3);
    assert_eq!(t.counters().packets_in, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_relay_datagrams_are_counted_under_their_reason_malformed_or_spoofed() {
    let t = bind().await;
    let (impostor, _) = fake_relay().await;
    let (relay, relay_addr) = fake_relay().await;
    let to = t.local_socket_addr();
    // Spoofed: readable, with a valid source the datagram cannot have come from.
    let another_relays_member = encode_datagram(relayed(relay_addr, "alice").as_str(), b"\x01forged").unwrap();
    impostor.send_to(&another_relays_member, to).await.unwrap();
    let not_a_relayed_member = encode_datagram(Addr::udp(relay_addr).as_str(), b"\x01forged").unwrap();
    relay.send_to(&not_a_relayed_member, to).await.unwrap();
    // Malformed: shorter than the header says, an empty header, a source that is no address.
    relay.send_to(&[0xF0, 40, b'r'], to).await.unwrap();
    relay.send_to(&[0xF0], to).await.unwrap();
    relay.send_to(&encode_datagram("not an address", b"\x01x").unwrap(), to).await.unwrap();
    let genuine = encode_datagram(relayed(relay_addr, "bob").as_str(), b"\x01real").unwrap();
    relay.send_to(&genuine, to).await.unwrap();
    let mut buf = Vec::new();
    let got = timeout(LIMIT, t.recv(&mut buf)).await.expect("the genuine one arrives").unwrap();
    assert_eq!(got.from, relayed(relay_addr, "bob"));
    let drops = t.relay_drops();
    assert_eq!((drops.malformed, drops.spoofed), (3, 2));
    assert_eq!(t.relay_drops().total(), t.counters().dropped_in);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_datagrams_still_arrive_from_their_udp_address() {
    let (a, b) = (bind().await, bind().await);
    a.send(&b.local_addr(), b"\x01plain").await.unwrap();
    let mut buf = Vec::new();
    let got = timeout(LIMIT, b.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(got.from, a.local_addr());
    assert_eq!(buf, b"\x01plain");
}
