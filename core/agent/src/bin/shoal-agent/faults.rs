//! Fault injection for demos and tests (`--faults`): a [`Transport`] wrapper that drops packets.
//!
//! Two knobs, shared by every wrapped plugin through one [`Faults`] handle and changed at run time
//! through the agent's HTTP endpoint (`POST /faults?loss=0.2&block=udp://127.0.0.1:7001,relay://`):
//!
//! - `loss`: probability, 0.0 to 1.0, that a best-effort datagram is dropped, on the way out and on
//!   the way in (so a lossy member loses about `1-(1-loss)²` of its round trips). Reliable frames
//!   are not subject to random loss: they model a stream that retransmits.
//! - `block`: address prefixes (`udp://10.0.0.5:7946`, `relay://`) no packet or frame goes to or is
//!   accepted from; blocking the other side's members on both sides makes a partition.
//!
//! A dropped send reports success, as a packet lost on the wire would; a blocked reliable send
//! fails as an unreachable peer. Every packet or frame the faults drop is counted, by direction, and
//! exported on `/metrics` as `shoal_agent_faults_dropped_total{direction="out"|"in"}`. Without
//! `--faults` nothing is wrapped and none of this costs.
//!
//! Changing the faults is a state-changing request: `POST /faults` needs the agent's HTTP token
//! (see `crate::http`'s access checks); `GET /faults` reads them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use shoal::{Addr, AddrListener, LinkListener, Received, Transport, TransportCounters, TransportError};

/// The current faults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultState {
    pub loss: f64,
    pub block: Vec<String>,
}

/// Shared, mutable fault settings plus the random stream that decides losses.
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<(FaultState, u64)>,
    dropped_out: AtomicU64,
    dropped_in: AtomicU64,
}

impl Faults {
    /// No faults; `seed` drives the loss decisions.
    pub fn new(seed: u64) -> Self {
        Faults(Arc::new(Shared { state: Mutex::new((FaultState::default(), seed | 1)), ..Shared::default() }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (FaultState, u64)> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self) -> FaultState {
        self.lock().0.clone()
    }

    pub fn set(&self, state: FaultState) {
        self.lock().0 = state;
    }

    /// Packets and frames dropped so far, `(out, in)`.
    pub fn dropped(&self) -> (u64, u64) {
        (self.0.dropped_out.load(Ordering::Relaxed), self.0.dropped_in.load(Ordering::Relaxed))
    }

    fn count_out(&self) {
        self.0.dropped_out.fetch_add(1, Ordering::Relaxed);
    }

    fn count_in(&self) {
        self.0.dropped_in.fetch_add(1, Ordering::Relaxed);
    }

    /// `shoal_agent_faults_dropped_total{direction=...}`.
    pub fn to_prometheus(&self) -> String {
        let (out, inbound) = self.dropped();
        let name = "shoal_agent_faults_dropped_total";
        format!(
            "# HELP {name} Packets and frames dropped by injected faults (--faults)\n# TYPE {name} counter\n\
             {name}{{direction=\"out\"}} {out}\n{name}{{direction=\"in\"}} {inbound}\n"
        )
    }

    /// Applies a query string: `loss=F` and/or `block=A,B` (an empty `block=` clears the list).
    pub fn apply_query(&self, query: &str) -> Result<FaultState, String> {
        let mut state = self.get();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match key {
                "loss" => {
                    let loss: f64 = value.parse().map_err(|_| format!("bad loss {value:?}"))?;
                    if !(0.0..=1.0).contains(&loss) {
                        return Err(format!("loss {loss} is not between 0 and 1"));
                    }
                    state.loss = loss;
                }
                "block" => state.block = value.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                other => return Err(format!("unknown fault {other:?} (loss, block)")),
            }
        }
        self.set(state.clone());
        Ok(state)
    }

    fn blocked(&self, addr: &Addr) -> bool {
        let guard = self.lock();
        let text = addr.as_str();
        guard.0.block.iter().any(|prefix| text.starts_with(prefix.as_str()))
    }

    /// True when a best-effort packet to or from `addr` must be dropped.
    fn drop_datagram(&self, addr: &Addr) -> bool {
        let mut guard = self.lock();
        let (state, rng) = &mut *guard;
        if state.block.iter().any(|prefix| addr.as_str().starts_with(prefix.as_str())) {
            return true;
        }
        if state.loss <= 0.0 {
            return false;
        }
        // xorshift64*: plenty for deciding losses.
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        let x = rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 / (1u64 << 53) as f64) < state.loss
    }

    /// The state as JSON.
    pub fn to_json(&self) -> String {
        let s = self.get();
        serde_json::json!({ "loss": s.loss, "block": s.block }).to_string()
    }
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A transport whose traffic passes through [`Faults`].
pub struct Faulty {
    inner: Arc<dyn Transport>,
    faults: Faults,
}

impl Faulty {
    pub fn wrap(inner: Arc<dyn Transport>, faults: Faults) -> Arc<dyn Transport> {
        Arc::new(Faulty { inner, faults })
    }
}

#[async_trait]
impl Transport for Faulty {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn claims(&self, to: &Addr, reliable: bool) -> bool {
        self.inner.claims(to, reliable)
    }

    async fn send(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        if self.faults.drop_datagram(to) {
            self.faults.count_out();
            return Ok(());
        }
        self.inner.send(to, bytes).await
    }

    async fn send_reliable(&self, to: &Addr, bytes: &[u8]) -> Result<(), TransportError> {
        if self.faults.blocked(to) {
            self.faults.count_out();
            return Err(TransportError::Unreachable(to.clone()));
        }
        self.inner.send_reliable(to, bytes).await
    }

    async fn recv(&self, buf: &mut Vec<u8>) -> Result<Received, TransportError> {
        loop {
            let received = self.inner.recv(buf).await?;
            let dropped = if received.reliable {
                self.faults.blocked(&received.from)
            } else {
                self.faults.drop_datagram(&received.from)
            };
            if !dropped {
                return Ok(received);
            }
            self.faults.count_in();
        }
    }

    fn local_addr(&self) -> Addr {
        self.inner.local_addr()
    }

    fn counters(&self) -> TransportCounters {
        self.inner.counters()
    }

    async fn close(&self) {
        self.inner.close().await
    }

    // Injected faults are the network's; the transport's own reports (its relay link went down, it
    // moved to another relay of the fleet) pass through, or the member would never hear them.
    fn watch_link(&self, listener: LinkListener) {
        self.inner.watch_link(listener)
    }

    fn watch_local_addr(&self, listener: AddrListener) {
        self.inner.watch_local_addr(listener)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport that reports its link and a move to whoever watches, at once.
    struct Reporting;

    #[async_trait]
    impl Transport for Reporting {
        fn name(&self) -> &'static str {
            "reporting"
        }
        fn claims(&self, _: &Addr, _: bool) -> bool {
            true
        }
        async fn send(&self, _: &Addr, _: &[u8]) -> Result<(), TransportError> {
            Ok(())
        }
        async fn send_reliable(&self, _: &Addr, _: &[u8]) -> Result<(), TransportError> {
            Ok(())
        }
        async fn recv(&self, _: &mut Vec<u8>) -> Result<Received, TransportError> {
            std::future::pending().await
        }
        fn local_addr(&self) -> Addr {
            Addr::parse("relay://r1:1/a").unwrap()
        }
        async fn close(&self) {}
        fn watch_link(&self, listener: LinkListener) {
            listener(false);
        }
        fn watch_local_addr(&self, listener: AddrListener) {
            listener(&self.local_addr(), &Addr::parse("relay://r2:1/a").unwrap());
        }
    }

    #[test]
    fn the_fault_wrapper_passes_its_transports_link_and_move_reports_on() {
        let faulty = Faulty::wrap(Arc::new(Reporting), Faults::new(1));
        let (link, moved) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(None)));
        let l = link.clone();
        faulty.watch_link(Box::new(move |up| *l.lock().unwrap() = Some(up)));
        let m = moved.clone();
        faulty.watch_local_addr(Box::new(move |_, new| *m.lock().unwrap() = Some(new.to_string())));
        assert_eq!(*link.lock().unwrap(), Some(false), "the link report");
        assert_eq!(moved.lock().unwrap().as_deref(), Some("relay://r2:1/a"), "the move report");
    }

    #[test]
    fn a_query_sets_loss_and_block_and_an_empty_block_clears_it() {
        let f = Faults::new(1);
        let s = f.apply_query("loss=0.25&block=udp://127.0.0.1:7001,relay%3A%2F%2F").unwrap();
        assert_eq!(s, FaultState { loss: 0.25, block: vec!["udp://127.0.0.1:7001".into(), "relay://".into()] });
        assert_eq!(f.apply_query("block=").unwrap().block, Vec::<String>::new());
        assert_eq!(f.get().loss, 0.25);
    }

    #[test]
    fn bad_queries_are_refused_and_change_nothing() {
        let f = Faults::new(1);
        assert!(f.apply_query("loss=2").is_err());
        assert!(f.apply_query("loss=x").is_err());
        assert!(f.apply_query("jitter=3").is_err());
        assert_eq!(f.get(), FaultState::default());
    }

    #[test]
    fn blocked_prefixes_drop_every_datagram_and_others_pass_without_loss() {
        let f = Faults::new(7);
        f.apply_query("block=udp://127.0.0.1:7001").unwrap();
        let blocked = Addr::parse("udp://127.0.0.1:7001").unwrap();
        let other = Addr::parse("udp://127.0.0.1:7002").unwrap();
        assert!((0..100).all(|_| f.drop_datagram(&blocked)));
        assert!((0..100).all(|_| !f.drop_datagram(&other)));
        assert!(f.blocked(&blocked) && !f.blocked(&other));
    }

    #[test]
    fn loss_drops_about_the_configured_share() {
        let f = Faults::new(42);
        f.apply_query("loss=0.2").unwrap();
        let a = Addr::parse("udp://127.0.0.1:7002").unwrap();
        let dropped = (0..10_000).filter(|_| f.drop_datagram(&a)).count();
        assert!((1_700..2_300).contains(&dropped), "{dropped}");
    }

    #[tokio::test]
    async fn a_wrapped_udp_transport_loses_blocked_traffic_both_ways() {
        let a = shoal_udp::UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let b = shoal_udp::UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
        let faults = Faults::new(3);
        let fa = Faulty::wrap(a, faults.clone());
        let b: Arc<dyn Transport> = b;
        let mut buf = Vec::new();
        fa.send(&b_addr, b"one").await.unwrap();
        b.recv(&mut buf).await.unwrap();
        assert_eq!(buf, b"one");
        faults.apply_query(&format!("block={b_addr}")).unwrap();
        fa.send(&b_addr, b"two").await.unwrap();
        b.send(&a_addr, b"three").await.unwrap();
        let wait = std::time::Duration::from_millis(200);
        assert!(tokio::time::timeout(wait, b.recv(&mut buf)).await.is_err(), "outgoing dropped");
        assert!(tokio::time::timeout(wait, fa.recv(&mut buf)).await.is_err(), "incoming dropped");
        faults.apply_query("block=").unwrap();
        b.send(&a_addr, b"four").await.unwrap();
        let got = tokio::time::timeout(wait, fa.recv(&mut buf)).await.unwrap().unwrap();
        assert_eq!((buf.as_slice(), got.from), (&b"four"[..], b_addr));
        assert_eq!(faults.dropped(), (1, 1), "each drop is counted, by direction");
        let text = faults.to_prometheus();
        assert!(text.contains("shoal_agent_faults_dropped_total{direction=\"out\"} 1\n"), "{text}");
        assert!(text.contains("shoal_agent_faults_dropped_total{direction=\"in\"} 1\n"), "{text}");
    }
}
