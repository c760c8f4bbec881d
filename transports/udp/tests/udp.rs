//! The UDP transport on real loopback sockets.

use std::sync::Arc;
use std::time::Duration;

use shoal::{Addr, Transport, TransportError};
use shoal_udp::{UdpTransport, MAX_DATAGRAM};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(5);

async fn bind() -> Arc<UdpTransport> {
    UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind loopback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_arrives_with_the_senders_address() {
    let (a, b) = (bind().await, bind().await);
    assert_eq!(a.local_addr(), Addr::udp(a.local_socket_addr()));
    a.send(&b.local_addr(), b"ping").await.unwrap();
    let mut buf = Vec::new();
    let got = timeout(LIMIT, b.recv(&mut buf)).await.expect("in time").unwrap();
    assert_eq!(got.from, a.local_addr());
    assert!(!got.reliable);
    assert_eq!(buf, b"ping");
    assert_eq!(a.counters().packets_out, 1);
    assert_eq!(a.counters().bytes_out, 4);
    assert_eq!(b.counters().packets_in, 1);
    assert_eq!(b.counters().bytes_in, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receive_buffer_is_reused_and_replaced_not_appended() {
    let (a, b) = (bind().await, bind().await);
    let mut buf = b"stale contents".to_vec();
    a.send(&b.local_addr(), b"long first datagram").await.unwrap();
    timeout(LIMIT, b.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(buf, b"long first datagram");
    let capacity = buf.capacity();
    a.send(&b.local_addr(), b"x").await.unwrap();
    timeout(LIMIT, b.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(buf, b"x");
    assert_eq!(buf.capacity(), capacity, "no reallocation once the buffer is large enough");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maximum_size_datagram_arrives_whole() {
    let (a, b) = (bind().await, bind().await);
    let big: Vec<u8> = (0..MAX_DATAGRAM).map(|i| i as u8).collect();
    a.send(&b.local_addr(), &big).await.unwrap();
    let mut buf = Vec::new();
    timeout(LIMIT, b.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(buf, big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_sends_are_refused_before_anything_is_sent() {
    let (a, b) = (bind().await, bind().await);
    let r = a.send(&b.local_addr(), &vec![0u8; MAX_DATAGRAM + 1]).await;
    assert!(
        matches!(r, Err(TransportError::TooLarge { size, max: MAX_DATAGRAM }) if size == MAX_DATAGRAM + 1),
        "{r:?}"
    );
    assert_eq!(a.counters().packets_out, 0);
    assert_eq!(a.counters().send_errors, 1);
    let mut buf = Vec::new();
    assert!(timeout(Duration::from_millis(100), b.recv(&mut buf)).await.is_err(), "nothing arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_best_effort_udp_addresses_are_claimed() {
    let a = bind().await;
    let udp = Addr::parse("udp://127.0.0.1:9").unwrap();
    let tcp = Addr::parse("tcp://127.0.0.1:9").unwrap();
    assert!(a.claims(&udp, false));
    assert!(!a.claims(&udp, true));
    assert!(!a.claims(&tcp, false));
    assert!(!a.claims(&Addr::parse("relay://r.example/p").unwrap(), false));
    assert!(matches!(a.send_reliable(&udp, b"x").await, Err(TransportError::Unreachable(_))));
    assert!(matches!(a.send(&tcp, b"x").await, Err(TransportError::Unreachable(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_makes_pending_and_later_receives_return_closed() {
    let a = bind().await;
    let port = a.local_socket_addr();
    let pending = tokio::spawn({
        let a = a.clone();
        async move { a.recv(&mut Vec::new()).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.close().await;
    let r = timeout(LIMIT, pending).await.expect("pending recv woke").unwrap();
    assert!(matches!(r, Err(TransportError::Closed)), "{r:?}");
    assert!(matches!(a.recv(&mut Vec::new()).await, Err(TransportError::Closed)));
    assert!(matches!(a.send(&Addr::udp(port), b"x").await, Err(TransportError::Closed)));
    // The socket was released: the port can be bound again.
    let again = timeout(LIMIT, async {
        loop {
            if let Ok(t) = UdpTransport::bind(port).await {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("port released after close");
    assert_eq!(again.local_socket_addr(), port);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_to_a_closed_port_does_not_stop_receiving() {
    let (a, b) = (bind().await, bind().await);
    let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    for _ in 0..3 {
        a.send(&Addr::udp(gone), b"to nobody").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    b.send(&a.local_addr(), b"still here").await.unwrap();
    let mut buf = Vec::new();
    let got = timeout(LIMIT, a.recv(&mut buf)).await.expect("in time").expect("no error surfaced");
    assert_eq!((got.from, buf.as_slice()), (b.local_addr(), &b"still here"[..]));
    a.send(&b.local_addr(), b"and sending").await.expect("sends still work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_works_when_the_host_has_it() {
    let Ok(a) = UdpTransport::bind("[::1]:0".parse().unwrap()).await else { return };
    let b = UdpTransport::bind("[::1]:0".parse().unwrap()).await.unwrap();
    assert!(a.local_addr().as_str().starts_with("udp://[::1]:"));
    a.send(&b.local_addr(), b"v6").await.unwrap();
    let mut buf = Vec::new();
    let got = timeout(LIMIT, b.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!((got.from, buf.as_slice()), (a.local_addr(), &b"v6"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_thousand_datagrams_mostly_arrives_and_counters_agree() {
    const N: u64 = 10_000;
    let (a, b) = (bind().await, bind().await);
    let receiver = tokio::spawn({
        let b = b.clone();
        async move {
            let mut buf = Vec::new();
            let mut got = 0u64;
            // Stop once nothing has arrived for 300 ms.
            while let Ok(r) = timeout(Duration::from_millis(300), b.recv(&mut buf)).await {
                r.expect("receive");
                assert_eq!(buf.len(), 100);
                got += 1;
            }
            got
        }
    });
    let to = b.local_addr();
    let payload = [7u8; 100];
    let mut sent = 0u64;
    for i in 0..N {
        // A full send buffer is a lost packet, as on a real network.
        if a.send(&to, &payload).await.is_ok() {
            sent += 1;
        }
        if i % 512 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let got = timeout(Duration::from_secs(10), receiver).await.expect("receiver finished").unwrap();
    assert!(got * 10 >= N * 9, "only {got} of {N} arrived (buffers {:?})", b.buffer_sizes());
    assert_eq!(a.counters().packets_out, sent);
    assert_eq!(a.counters().bytes_out, sent * 100);
    assert_eq!(b.counters().packets_in, got);
    assert_eq!(b.counters().bytes_in, got * 100);
}
