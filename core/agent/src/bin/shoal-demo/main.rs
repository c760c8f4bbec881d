//! `shoal-demo`: the local demo supervisor behind `www/demo.sh`.
//!
//! ```text
//! shoal-demo --static www/dist --port 8080 --members 5
//! ```
//!
//! It copies the dashboard (`--static`) to a temporary directory with a `demo.json` describing the
//! demo (the seeds the page joins through and the control API's URL), starts `shoal-relay` serving
//! that directory, starts the native members (`shoal-agent --faults --publish-view 1`, each with
//! its own random `SHOAL_HTTP_TOKEN` for `POST /faults`) as child processes with fixed loopback
//! addresses, serves the control API ([`control`]) and prints
//! `dashboard: http://...` once everything runs. Ctrl-C or SIGTERM stops it all: the members leave
//! gracefully, the relay stops, the temporary directory is removed.

mod agents;
mod control;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use agents::{Agent, Launch};
use control::Demo;

/// Runs the Shoal demo: relay + dashboard + native members, with a control API.
#[derive(Debug, Parser)]
#[command(name = "shoal-demo", version, about)]
struct Args {
    /// The built dashboard (www/dist).
    #[arg(long = "static")]
    static_dir: PathBuf,
    /// Relay (and dashboard) port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Number of native members.
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// Protocol preset of the members (lan, wan, local).
    #[arg(long, default_value = "lan")]
    preset: String,
    /// Control API address; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Directory of shoal-relay and shoal-agent (default: this program's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe().map_err(|e| e.to_string())?.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    if !args.static_dir.join("index.html").is_file() {
        return Err(format!(
            "{} has no index.html: build the dashboard first (bash www/demo.sh)",
            args.static_dir.display()
        ));
    }
    let root = std::env::temp_dir().join(format!("shoal-demo-{}", std::process::id()));
    let site = root.join("site");
    let logs = root.join("logs");
    copy_dir(&args.static_dir, &site).map_err(|e| format!("copy {}: {e}", args.static_dir.display()))?;
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let result = supervise(&args.control, args.port, args.members, &args.preset, &bin_dir, &site, &logs).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn supervise(
    control: &SocketAddr,
    port: u16,
    members: usize,
    preset: &str,
    bin_dir: &Path,
    site: &Path,
    logs: &Path,
) -> Result<(), String> {
    let mut taken = Vec::new();
    let agents = (1..=members.max(1))
        .map(|i| Agent::new(format!("native-{i}"), if i == 1 { "seed" } else { "worker" }.into(), &mut taken))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("pick ports: {e}"))?;
    let listener = tokio::net::TcpListener::bind(control).await.map_err(|e| format!("bind {control}: {e}"))?;
    let control_addr = listener.local_addr().map_err(|e| e.to_string())?;

    let relay_bin = bin_dir.join("shoal-relay");
    let mut relay = Command::new(&relay_bin)
        .args(["--bind", &format!("127.0.0.1:{port}"), "--static"])
        .arg(site)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start {}: {e}", relay_bin.display()))?;
    let stdout = relay.stdout.take().ok_or("relay stdout")?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let (Some(a), Some(tx)) = (line.strip_prefix("listening on "), tx.take()) {
                let _ = tx.send(a.trim().to_string());
            }
        }
    });
    let relay_addr = match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(addr)) => addr,
        _ => {
            let _ = relay.kill();
            return Err("the relay did not start (port in use? try PORT=0)".into());
        }
    };

    let seeds: Vec<String> = agents.iter().map(Agent::addr).collect();
    let config = serde_json::json!({
        "seeds": seeds, "control": format!("http://{control_addr}"), "members": agents.iter().map(|a| &a.name).collect::<Vec<_>>(),
    });
    std::fs::write(site.join("demo.json"), config.to_string()).map_err(|e| e.to_string())?;

    let launch =
        Launch { agent_bin: bin_dir.join("shoal-agent"), preset: preset.into(), publish_view: 1.0, logs: logs.into() };
    let demo = Arc::new(Demo { agents, launch, relay: relay_addr.clone(), partitioned: Default::default() });
    for (i, a) in demo.agents.iter().enumerate() {
        // The first member founds the cluster; the others join through every member before them.
        let seeds = demo.agents[..i].iter().map(Agent::addr).collect::<Vec<_>>();
        a.start(&demo.launch, &seeds).map_err(|e| format!("start {}: {e}", demo.launch.agent_bin.display()))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::spawn(control::serve(listener, Arc::clone(&demo)));

    println!("relay: {relay_addr}");
    println!("control: http://{control_addr}/demo");
    println!(
        "members: {}",
        demo.agents.iter().map(|a| format!("{} {}", a.name, a.addr())).collect::<Vec<_>>().join(", ")
    );
    println!("logs: {}", logs.display());
    println!("dashboard: http://{relay_addr}/");

    let relay_exit = async {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Ok(Some(status)) = relay.try_wait() {
                return status;
            }
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        status = relay_exit => eprintln!("shoal-demo: the relay exited ({status})"),
    }
    println!("stopping: the members leave");
    let demo2 = Arc::clone(&demo);
    let _ = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            for a in &demo2.agents {
                s.spawn(|| a.terminate(Duration::from_secs(6)));
            }
        })
    })
    .await;
    let _ = relay.kill();
    let _ = relay.wait();
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
