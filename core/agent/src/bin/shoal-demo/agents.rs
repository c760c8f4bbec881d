//! The demo's native members: child `shoal-agent` processes with fixed addresses, so a restarted
//! member comes back at the same place under the same name (the core lets it take its identity over
//! above the incarnation it was declared dead at).
//!
//! Faults go through each agent's `--faults` endpoint (`POST /faults?loss=..&block=..`); the
//! supervisor remembers what it asked for and applies it again after a restart. That endpoint
//! takes state changes only with the agent's HTTP token: each member gets a fresh random one,
//! handed over in `SHOAL_HTTP_TOKEN` (not on the command line, where `ps` shows it) and sent back
//! as `Authorization: Bearer`.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One native member.
#[derive(Debug)]
pub struct Agent {
    pub name: String,
    pub bind: SocketAddr,
    pub http: SocketAddr,
    pub role: String,
    /// The token its `POST /faults` needs.
    http_token: String,
    state: Mutex<AgentState>,
}

#[derive(Debug, Default)]
struct AgentState {
    child: Option<Child>,
    loss: f64,
    block: Vec<String>,
    restarts: u32,
}

/// How every agent is started.
#[derive(Clone, Debug)]
pub struct Launch {
    pub agent_bin: PathBuf,
    pub preset: String,
    pub publish_view: f64,
    pub logs: PathBuf,
}

/// A free loopback port for both UDP and TCP (the agent binds both on one port), not in `taken`.
pub fn free_port(taken: &mut Vec<u16>) -> std::io::Result<u16> {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if !taken.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.push(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no free port"))
}

impl Agent {
    /// A member with two free ports (protocol, HTTP) not in `taken`, which records them.
    pub fn new(name: String, role: String, taken: &mut Vec<u16>) -> std::io::Result<Agent> {
        let bind = SocketAddr::from(([127, 0, 0, 1], free_port(taken)?));
        let http = SocketAddr::from(([127, 0, 0, 1], free_port(taken)?));
        Ok(Agent { name, bind, http, role, http_token: fresh_token()?, state: Mutex::default() })
    }

    pub fn addr(&self) -> String {
        format!("udp://{}", self.bind)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the process (a no-op when it runs); `seeds` are the other members' addresses.
    pub fn start(&self, launch: &Launch, seeds: &[String]) -> std::io::Result<()> {
        if self.running() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(launch.logs.join(&self.name))?;
        let mut cmd = Command::new(&launch.agent_bin);
        cmd.args(["--name", &self.name, "--bind", &self.bind.to_string(), "--http", &self.http.to_string()])
            .args(["--preset", &launch.preset, "--meta", &format!("role={}", self.role), "--json", "--faults"])
            .args(["--publish-view", &launch.publish_view.to_string()])
            .env("SHOAL_HTTP_TOKEN", &self.http_token)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if !seeds.is_empty() {
            cmd.arg("--join").arg(seeds.join(","));
        }
        let child = cmd.spawn()?;
        let mut state = self.state();
        state.child = Some(child);
        Ok(())
    }

    /// True while the process runs.
    pub fn running(&self) -> bool {
        let mut state = self.state();
        match state.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                state.child = None;
                false
            }
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.running().then(|| self.state().child.as_ref().map(Child::id)).flatten()
    }

    /// SIGKILL: the member vanishes without leaving.
    pub fn kill(&self) {
        if let Some(mut child) = self.state().child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: the member leaves gracefully. Waits up to `grace` for it to exit, then kills it.
    pub fn terminate(&self, grace: Duration) {
        let Some(mut child) = self.state().child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn note_restart(&self) {
        self.state().restarts += 1;
    }

    /// `(loss, blocked prefixes, restarts)` as last asked for.
    pub fn faults(&self) -> (f64, Vec<String>, u32) {
        let s = self.state();
        (s.loss, s.block.clone(), s.restarts)
    }

    /// Remembers and applies faults; `None` keeps the current value.
    pub async fn set_faults(&self, loss: Option<f64>, block: Option<Vec<String>>) -> Result<(), String> {
        {
            let mut s = self.state();
            if let Some(l) = loss {
                s.loss = l;
            }
            if let Some(b) = block {
                s.block = b;
            }
        }
        self.push_faults().await
    }

    /// Sends the remembered faults to the agent.
    pub async fn push_faults(&self) -> Result<(), String> {
        let (loss, block, _) = self.faults();
        let query = format!("loss={loss}&block={}", block.join(","));
        post(self.http, &format!("/faults?{query}"), &self.http_token).await.map(drop)
    }

    /// Pushes the remembered faults once the (re)started agent answers, for up to 10 s.
    pub async fn push_faults_when_up(&self) {
        for _ in 0..100 {
            if self.push_faults().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// 32 hex digits from the operating system's random source.
fn fresh_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A bodiless POST with a bearer token to a local HTTP endpoint; the response body on 2xx.
async fn post(addr: SocketAddr, path: &str, token: &str) -> Result<String, String> {
    let io = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-length: 0\r\n\
                 connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
        let mut response = Vec::new();
        s.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(3), io)
        .await
        .map_err(|_| format!("{addr}: timeout"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if head.starts_with("HTTP/1.1 2") {
        Ok(body.to_string())
    } else {
        Err(format!("{addr}: {}", head.lines().next().unwrap_or("no answer")))
    }
}
