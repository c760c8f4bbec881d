//! `shoal-agent`: a Shoal cluster member as a process.
//!
//! ```text
//! shoal-agent --name n1 --bind 127.0.0.1:7946 --join 127.0.0.1:7947 --meta role=web
//! shoal-agent --config agent.toml --json
//! shoal-agent members --http 127.0.0.1:8946
//! ```
//!
//! It joins (or founds) a cluster over UDP with a TCP listener on the same port for push-pull and
//! reliable messages (`--tcp-only` for networks that drop UDP; `--websocket ws://relay:8080` to
//! join through a relay, as browsers do, where only outbound HTTP gets through), prints
//! membership changes with timestamps (text or `--json` lines), serves `/members`, `/metrics`
//! (Prometheus) and `/health` on `--http`, and leaves gracefully on Ctrl-C or SIGTERM. Settings come from flags, then `SHOAL_*`
//! environment variables, then the TOML file, then defaults.
//!
//! Port 0 picks free ports: `--bind 127.0.0.1:0` a port free for both UDP and TCP (`shoal::bind`),
//! `--http 127.0.0.1:0` one for the HTTP endpoint. The first line, `started`, reports the
//! addresses bound: the member's address, and with `--http` the endpoint's (JSON `"http"`, text
//! `http=ADDR`), so a script can start an agent on port 0 and read where it listens.
//!
//! The HTTP endpoint ([`http`]) is built to face hostile clients: it caps connections and cuts
//! off slow ones, never stops accepting, answers only requests addressed to it by its own IP,
//! `localhost` or an `--http-allow-host` name (DNS rebinding), and takes state-changing requests
//! (`POST /faults` with `--faults`) only with the `--http-token` (`SHOAL_HTTP_TOKEN`) as
//! `Authorization: Bearer`, same-origin and not form-encoded:
//!
//! ```text
//! SHOAL_HTTP_TOKEN=$(openssl rand -hex 16) shoal-agent --name n1 --http 127.0.0.1:8946 --faults
//! curl -X POST -H "Authorization: Bearer $SHOAL_HTTP_TOKEN" '127.0.0.1:8946/faults?loss=0.2'
//! ```

mod faults;
mod heap;
mod http;
mod output;
mod queries;
mod settings;
mod view;
mod webrtc;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use shoal::{Cluster, Transport};
use shoal_tcp::{TcpOptions, TcpTransport};
use shoal_websocket::WsTransport;

use settings::{Cli, Settings};

/// Counts the live heap for `/metrics` (see `heap`).
#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

fn main() -> ExitCode {
    // Before the runtime starts its worker threads, so that they share the one arena.
    heap::one_arena();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shoal-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(agent_main())
}

async fn agent_main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.clone() {
        Some(command) => http::run_command(command).await,
        None => match Settings::resolve(&cli) {
            Ok(settings) => run(settings).await,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(s: Settings) -> Result<(), String> {
    // Handlers first: a SIGTERM that arrives while we bind or join must lead to a graceful leave,
    // not kill the process.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let mut advertise = s.advertise.clone();
    let (transports, udp): (Vec<Arc<dyn Transport>>, _) = if let Some(urls) = &s.websocket {
        let ws = WsTransport::connect_any(urls).await.map_err(|e| format!("--websocket: {e}"))?;
        (vec![ws], None)
    } else if s.tcp_only {
        // Without --advertise the transport advertises the address it bound (with port 0, the port
        // the OS picked).
        let options = TcpOptions { best_effort: true, advertise: s.advertise.clone(), ..TcpOptions::default() };
        let tcp = TcpTransport::bind(s.bind, options).await.map_err(|e| format!("bind tcp {}: {e}", s.bind))?;
        (vec![tcp], None)
    } else {
        // Without --advertise, TCP advertises the UDP address it got, with an unspecified IP
        // (0.0.0.0) replaced by the host's routable one; the member advertises the same.
        let (udp, tcp) = shoal::bind::udp_and_tcp(s.bind, s.advertise.clone()).await.map_err(|e| e.to_string())?;
        advertise = Some(tcp.local_addr());
        (vec![udp.clone(), tcp], Some(udp))
    };
    let transports = match &s.webrtc {
        // First in the router: it claims a browser's address only while a channel to it is open.
        Some(relay) => {
            let member = advertise.clone().unwrap_or_else(|| transports[0].local_addr());
            let mut all = vec![webrtc::plugin(relay, &s.name, member, s.webrtc_ip).await?];
            all.extend(transports);
            all
        }
        None => transports,
    };
    let faults = s.faults.then(|| faults::Faults::new(std::process::id().into()));
    let transports = match &faults {
        Some(f) => transports.into_iter().map(|t| faults::Faulty::wrap(t, f.clone())).collect(),
        None => transports,
    };
    // Before the `started` line, which reports the address (the port the OS picked for port 0).
    let http_listener = match s.http {
        Some(addr) => {
            let listener = http::bind(addr).map_err(|e| format!("bind http {addr}: {e}"))?;
            let bound = listener.local_addr().map_err(|e| format!("bind http {addr}: {e}"))?;
            Some((listener, bound))
        }
        None => None,
    };
    let mut builder = Cluster::builder(&s.name).map_err(|e| e.to_string())?.config(s.config.clone());
    builder = builder.metadata(s.meta_bytes());
    if let Some(keyring) = s.keyring.clone() {
        builder = builder.keyring(keyring);
    }
    if let Some(a) = advertise {
        builder = builder.advertise(a);
    }
    let cluster = builder.spawn(transports).map_err(|e| e.to_string())?;
    if s.coordinates {
        cluster.set_coordinates(true).map_err(|e| e.to_string())?;
    }
    let printer = output::Printer::new(s.json);
    printer.started(&cluster, http_listener.as_ref().map(|(_, bound)| *bound));

    let events = cluster.events();
    let print_task = tokio::spawn(output::print_events(events, printer));
    queries::spawn_responder(cluster.clone(), s.query_handlers.clone());
    tokio::spawn(heap::trim_every(Duration::from_secs(60)));
    let leave_requested = Arc::new(tokio::sync::Notify::new());
    if let Some((listener, bound)) = http_listener {
        let options = http::Options {
            token: s.http_token.clone(),
            allowed_hosts: s.http_allow_hosts.clone(),
            ..http::Options::default()
        };
        let endpoint = http::Endpoint::new(
            cluster.clone(),
            faults.clone(),
            udp.clone(),
            bound.ip(),
            &options,
            leave_requested.clone(),
        );
        tokio::spawn(http::serve(listener, endpoint));
    }
    if let Some(period) = s.publish_view {
        tokio::spawn(view::publish(cluster.clone(), period));
    }
    let stopped_while_joining = !s.join.is_empty()
        && tokio::select! {
            joined = cluster.join(&s.join) => {
                // Success prints itself: the `joined` event.
                if let Err(e) = joined {
                    printer.note(&format!("join failed ({e}); re-announcing to the seeds in the background"));
                }
                false
            }
            () = &mut shutdown => true,
            () = leave_requested.notified() => true,
        };
    if !stopped_while_joining {
        tokio::select! {
            () = &mut shutdown => {}
            () = leave_requested.notified() => {}
        }
    }
    printer.note("leaving");
    let left = cluster.leave(Duration::from_secs(5)).await;
    if let Err(e) = left {
        printer.note(&format!("leave: {e}"));
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), print_task).await;
    Ok(())
}

/// Completes at the first SIGINT or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so signals are caught from then on.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        async fn first(s: Option<Signal>) {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let (term, int) = (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok());
        async move {
            if term.is_none() && int.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                () = first(term) => {}
                () = first(int) => {}
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
