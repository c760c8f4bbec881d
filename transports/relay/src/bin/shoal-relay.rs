//! `shoal-relay`: run a relay server.
//!
//! ```text
//! shoal-relay --bind 0.0.0.0:8080 --public-addr 203.0.113.7:8080 --token s3cret --static www/dist
//! ```
//!
//! A fleet of relays serving one cluster: give each the same relay key and let each dial the
//! others (one side of each pair is enough), on a network the members do not need to reach:
//!
//! ```text
//! SHOAL_RELAY_KEY=<32 random characters> shoal-relay --bind 0.0.0.0:8080 --public-addr 203.0.113.7:8080 \
//!     --peer-relay ws://10.0.0.2:8080 --peer-relay ws://10.0.0.3:8080
//! ```
//!
//! Each relay of a fleet runs a member of the cluster it serves, which announces the relay (tags
//! `role=relay`, `shoal-relay=<public addr>`, `shoal-relay-url=<public url>`): members may then
//! move to it from another relay of the fleet, and pages list the fleet from those tags. `--join`
//! (or `--member-bind`) starts it, with the cluster's preset, keys and label:
//!
//! ```text
//! SHOAL_RELAY_CLUSTER_KEY=<64 hex digits> shoal-relay --bind 0.0.0.0:8080 --public-addr 203.0.113.7:8080 \
//!     --public-url wss://relay-1.example --join 10.0.0.5:7946 --member-bind 0.0.0.0:7946 --preset browser
//! ```
//!
//! Every option also reads an environment variable (`SHOAL_RELAY_BIND`, `SHOAL_RELAY_PUBLIC_ADDR`,
//! `SHOAL_RELAY_TOKEN`, `SHOAL_RELAY_STATIC`, `SHOAL_RELAY_KEY`, `SHOAL_RELAY_PEERS`,
//! `SHOAL_RELAY_JOIN`, `SHOAL_RELAY_CLUSTER_KEY`, ...). Logs go to stderr (`RUST_LOG` filters
//! them); the bound address is printed on stdout as `listening on <ip:port>` once the sockets are
//! bound, then `member <name> at <address>` once the cluster member runs. SIGTERM or ctrl-c stops
//! the relay: members are disconnected (1001) and the cluster member leaves the cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shoal_relay::{
    Cidr, FleetMemberConfig, FleetMemberError, Limits, Relay, RelayConfig, DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS_PER_IP, DEFAULT_MAX_FRAME, DEFAULT_MEMBER_PORT,
    DEFAULT_PING_INTERVAL, DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_FRAMES, DEFAULT_STALL_TIMEOUT,
};

#[derive(Debug, Parser)]
#[command(
    name = "shoal-relay",
    version,
    about = "Shoal relay: WebSocket members, UDP forwarding, relay fleets, /metrics"
)]
struct Args {
    /// TCP (HTTP, WebSocket) and UDP address to bind; port 0 picks a free port.
    #[arg(long, env = "SHOAL_RELAY_BIND", default_value = "0.0.0.0:8080")]
    bind: SocketAddr,
    /// host:port members reach this relay at, written into relay:// addresses (default: --bind).
    /// Needed when binding 0.0.0.0 or behind NAT. A host name is resolved once, at startup.
    #[arg(long, env = "SHOAL_RELAY_PUBLIC_ADDR")]
    public_addr: Option<String>,
    /// Admission token WebSocket members must pass as `token=` (default: none, an open relay).
    #[arg(long, env = "SHOAL_RELAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Directory served under / (index.html at /).
    #[arg(long = "static", env = "SHOAL_RELAY_STATIC")]
    static_dir: Option<PathBuf>,
    /// Largest frame forwarded, in bytes.
    #[arg(long, env = "SHOAL_RELAY_MAX_FRAME", default_value_t = DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// Most frames queued for one member; more are dropped (and counted).
    #[arg(long, env = "SHOAL_RELAY_QUEUE_FRAMES", default_value_t = DEFAULT_QUEUE_FRAMES)]
    queue_frames: usize,
    /// Most bytes queued for one member; more are dropped (and counted).
    #[arg(long, env = "SHOAL_RELAY_QUEUE_BYTES", default_value_t = DEFAULT_QUEUE_BYTES)]
    queue_bytes: usize,
    /// Seconds a member may take nothing from its queue while frames wait before it is closed as a
    /// slow consumer (4002).
    #[arg(long, env = "SHOAL_RELAY_STALL_TIMEOUT", default_value_t = DEFAULT_STALL_TIMEOUT.as_secs())]
    stall_timeout: u64,
    /// Seconds a client has to send a complete HTTP request head.
    #[arg(long, env = "SHOAL_RELAY_HEADER_TIMEOUT", default_value_t = DEFAULT_HEADER_TIMEOUT.as_secs())]
    header_timeout: u64,
    /// Seconds between the relay's pings to each member.
    #[arg(long, env = "SHOAL_RELAY_PING_INTERVAL", default_value_t = DEFAULT_PING_INTERVAL.as_secs())]
    ping_interval: u64,
    /// Seconds without anything from a member (no frame, no pong) before it is closed (4003).
    #[arg(long, env = "SHOAL_RELAY_IDLE_TIMEOUT", default_value_t = DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout: u64,
    /// Most TCP connections open at once (default: the open-file limit less 64).
    #[arg(long, env = "SHOAL_RELAY_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most TCP connections open at once from one IP address.
    #[arg(long, env = "SHOAL_RELAY_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    max_connections_per_ip: usize,
    /// IP networks trusted on the UDP port (e.g. 10.0.0.0/8,fd00::/8): their datagrams reach members
    /// at full rate and members may send to them at full rate. Repeat or separate with commas; an
    /// empty value trusts nothing. Default: loopback if the public address is loopback, else none.
    #[arg(long, env = "SHOAL_RELAY_UDP_ALLOW", value_delimiter = ',', num_args = 0..)]
    udp_allow: Option<Vec<String>>,
    /// Exchange datagrams only with addresses inside --udp-allow.
    #[arg(long, env = "SHOAL_RELAY_UDP_ALLOW_ONLY")]
    udp_allow_only: bool,
    /// Key shared by the relays of a fleet (at least 16 bytes; prefer the environment variable to
    /// the command line). Relays holding it link to each other (GET /relay-link, authenticated by
    /// HMAC-SHA256 challenge-response) and forward frames and WebRTC signals between their
    /// members. Without it /relay-link answers 404 and no links are made. Anyone holding it can
    /// link as a relay of the fleet: keep it to the fleet.
    #[arg(long, env = "SHOAL_RELAY_KEY", hide_env_values = true)]
    relay_key: Option<String>,
    /// A relay to keep a link to, as ws://host:port (its HTTP port as reached from here). Repeat,
    /// or separate with commas. Needs --relay-key. The link is redialed with backoff when it
    /// drops; one side of each pair is enough, both may list each other.
    #[arg(long = "peer-relay", env = "SHOAL_RELAY_PEERS", value_delimiter = ',')]
    peer_relays: Vec<String>,
    /// Start the relay's own cluster member and join the cluster through these seeds: ip:port,
    /// name:port (every address the name lists) or udp://, tcp:// addresses. Repeat, or separate
    /// with commas. The member announces this relay (tags role=relay, shoal-relay=<public addr>,
    /// shoal-relay-url=<public url>), which lets members move here from another relay of the fleet
    /// and lets pages discover the fleet. It leaves the cluster when the relay stops.
    #[arg(long, env = "SHOAL_RELAY_JOIN", value_delimiter = ',')]
    join: Vec<String>,
    /// UDP and TCP address of the relay's cluster member: a port of its own, not --bind's (port 0
    /// picks one). Given alone, starts the member without seeds (the cluster joins it).
    /// Default when --join is given: --bind's IP, port 7946.
    #[arg(long, env = "SHOAL_RELAY_MEMBER_BIND")]
    member_bind: Option<SocketAddr>,
    /// ip:port other members reach the relay's cluster member at (behind NAT). Default: the bound
    /// address, a wildcard IP replaced by the IP of the interface the host routes from.
    #[arg(long, env = "SHOAL_RELAY_MEMBER_ADVERTISE")]
    member_advertise: Option<SocketAddr>,
    /// Name of the relay's cluster member, unique in the cluster. Default: relay-<public addr>, with
    /// ':' written '-' (relay-203.0.113.7-8080).
    #[arg(long, env = "SHOAL_RELAY_MEMBER_NAME")]
    member_name: Option<String>,
    /// The cluster's AES-256-GCM key, 64 hex digits, for an encrypted cluster (repeat or separate
    /// with commas: the first encrypts, all decrypt). Prefer the environment variable to the
    /// command line.
    #[arg(long = "cluster-key", env = "SHOAL_RELAY_CLUSTER_KEY", value_delimiter = ',', hide_env_values = true)]
    cluster_keys: Vec<String>,
    /// The cluster's label, bound into every encrypted packet (as the other members have it).
    #[arg(long, env = "SHOAL_RELAY_CLUSTER_LABEL")]
    cluster_label: Option<String>,
    /// Protocol preset of the relay's cluster member, as the cluster's other members: lan (the
    /// default), wan, local, or browser (clusters with browser members).
    #[arg(long, env = "SHOAL_RELAY_PRESET")]
    preset: Option<String>,
    /// URL pages should open a WebSocket to for this relay, announced by its cluster member as
    /// shoal-relay-url: ws:// or wss:// (behind a TLS terminator). Default: ws://<public addr>.
    #[arg(long, env = "SHOAL_RELAY_PUBLIC_URL")]
    public_url: Option<String>,
}

impl Args {
    /// The relay's cluster member, if `--join` or `--member-bind` asks for one. Member options
    /// without either are refused: they would silently do nothing.
    fn member(&self) -> Result<Option<FleetMemberConfig>, String> {
        let join: Vec<String> = self.join.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if join.is_empty() && self.member_bind.is_none() {
            let orphans = [
                ("--member-advertise", self.member_advertise.is_some()),
                ("--member-name", self.member_name.is_some()),
                ("--cluster-key", !self.cluster_keys.is_empty()),
                ("--cluster-label", self.cluster_label.is_some()),
                ("--preset", self.preset.is_some()),
                ("--public-url", self.public_url.is_some()),
            ];
            return match orphans.iter().find(|(_, given)| *given) {
                Some((option, _)) => {
                    Err(format!("{option} is for the relay's cluster member: give --join or --member-bind"))
                }
                None => Ok(None),
            };
        }
        let bind = self.member_bind.unwrap_or_else(|| SocketAddr::new(self.bind.ip(), DEFAULT_MEMBER_PORT));
        let mut member = FleetMemberConfig::new(bind)
            .preset(self.preset.as_deref().unwrap_or("lan"))
            .and_then(|m| m.cluster_keys(&self.cluster_keys))
            .map_err(|e| e.to_string())?;
        member.advertise = self.member_advertise;
        member.name = self.member_name.clone();
        member.join = join;
        member.public_url = self.public_url.clone();
        if let Some(label) = &self.cluster_label {
            member.config.label = label.clone();
        }
        Ok(Some(member))
    }
}

/// The networks of `--udp-allow`; empty strings (from `--udp-allow ''`) are skipped.
fn parse_networks(list: Option<Vec<String>>) -> Result<Option<Vec<Cidr>>, String> {
    let Some(list) = list else { return Ok(None) };
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Cidr>().map_err(|e| format!("--udp-allow: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "shoal_relay=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut args = Args::parse();
    if args.bind.ip().is_unspecified() && args.public_addr.is_none() {
        tracing::warn!(
            bind = %args.bind,
            "binding a wildcard address without --public-addr: relay:// addresses will name {}, which native \
             members cannot check relay datagrams against",
            args.bind
        );
    }
    let (udp_allow, member) = match (parse_networks(args.udp_allow.take()), args.member()) {
        (Ok(list), Ok(member)) => (list, member),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("shoal-relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = RelayConfig {
        token: args.token,
        public_addr: args.public_addr.unwrap_or_default(),
        max_frame: args.max_frame,
        queue_frames: args.queue_frames,
        queue_bytes: args.queue_bytes,
        static_dir: args.static_dir,
        stall_timeout: Duration::from_secs(args.stall_timeout),
        header_timeout: Duration::from_secs(args.header_timeout),
        ping_interval: Duration::from_secs(args.ping_interval),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        udp_allow,
        udp_allow_only: args.udp_allow_only,
        limits: Limits::default(),
        relay_key: args.relay_key,
        peer_relays: args.peer_relays.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
    };
    let bound = match Relay::bind(args.bind, config) {
        Ok(b) => b,
        // The settings (a public address that does not resolve, a frame cap too small, ...).
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("shoal-relay: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("shoal-relay: cannot bind {}: {e}", args.bind);
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", bound.local_addr());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shoal-relay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = bound.handle();
    let result = runtime.block_on(async move {
        // Before the member starts: a signal while it binds or joins must still stop the relay
        // (serve then has the member leave).
        let stop = shutdown_signal();
        tokio::spawn(async move {
            stop.await;
            tracing::info!("interrupted; shutting down");
            handle.shutdown();
        });
        if let Some(member) = member {
            match bound.start_member(member).await {
                Ok(cluster) => println!("member {} at {}", cluster.name(), cluster.local_addr()),
                // Stopped before the member could start: serve returns at once.
                Err(FleetMemberError::Stopping) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        bound.serve().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes at the first SIGTERM or SIGINT (ctrl-c). The handlers are installed when this is
/// called, not when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                    one.recv().await;
                }
                (Err(_), Err(_)) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
