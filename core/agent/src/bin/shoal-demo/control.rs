//! The demo's control API, called by the dashboard. One request per connection, no body:
//! parameters are in the query string.
//!
//! The page is served by the relay on another port, so the API answers cross-origin requests, but
//! from the dashboard's origin only (`http://<relay address>`, or `localhost` with its port): any
//! other page could otherwise kill or partition the demo's members with a plain cross-site POST,
//! which browsers send without asking first. A request with another `Origin` is refused (403), and
//! so is one whose `Host` is not a loopback name or address (421: a DNS-rebinding page). Requests
//! without `Origin` (curl, scripts on this machine) are served.
//!
//! | request | effect |
//! |---|---|
//! | `GET /demo` | `{relay, partitioned, members: [{name, addr, http, role, running, pid, loss, blocked, restarts}]}` |
//! | `POST /demo/kill?name=N` | SIGKILL the member: it vanishes without leaving |
//! | `POST /demo/restart?name=N` | start it again, same name and address (killed first if running) |
//! | `POST /demo/loss?loss=F[&name=N]` | packet loss on one member, or all |
//! | `POST /demo/partition` | split the members in two halves; the second half also loses the relay (the page stays with the first) |
//! | `POST /demo/heal` | remove every partition |

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::agents::{Agent, Launch};

/// Everything the API acts on.
pub struct Demo {
    pub agents: Vec<Agent>,
    pub launch: Launch,
    pub relay: String,
    pub partitioned: std::sync::atomic::AtomicBool,
}

impl Demo {
    fn agent(&self, name: &str) -> Result<&Agent, (u16, String)> {
        self.agents.iter().find(|a| a.name == name).ok_or((404, format!("no member named {name:?}")))
    }

    /// Seeds for agent `me`: every other member.
    pub fn seeds_for(&self, me: &str) -> Vec<String> {
        self.agents.iter().filter(|a| a.name != me).map(Agent::addr).collect()
    }

    fn status(&self) -> String {
        let members: Vec<serde_json::Value> = self
            .agents
            .iter()
            .map(|a| {
                let (loss, blocked, restarts) = a.faults();
                serde_json::json!({
                    "name": a.name, "addr": a.addr(), "http": a.http.to_string(), "role": a.role,
                    "running": a.running(), "pid": a.pid(), "loss": loss, "blocked": blocked, "restarts": restarts,
                })
            })
            .collect();
        let partitioned = self.partitioned.load(std::sync::atomic::Ordering::Relaxed);
        serde_json::json!({ "relay": self.relay, "partitioned": partitioned, "members": members }).to_string()
    }

    async fn handle(self: &Arc<Self>, method: &str, path: &str, query: &str) -> Result<String, (u16, String)> {
        let param = |key: &str| {
            query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()))
        };
        let name = || param("name").ok_or((400, "name= is required".to_string()));
        match (method, path) {
            ("GET", "/demo") => return Ok(self.status()),
            ("POST", "/demo/kill") => self.agent(&name()?)?.kill(),
            ("POST", "/demo/restart") => {
                let agent = self.agent(&name()?)?;
                agent.kill();
                agent.note_restart();
                agent.start(&self.launch, &self.seeds_for(&agent.name)).map_err(|e| (500, e.to_string()))?;
                let demo = Arc::clone(self);
                let name = agent.name.clone();
                tokio::spawn(async move {
                    if let Ok(a) = demo.agent(&name) {
                        a.push_faults_when_up().await;
                    }
                });
            }
            ("POST", "/demo/loss") => {
                let loss: f64 = param("loss").and_then(|l| l.parse().ok()).ok_or((400, "loss=F is required".into()))?;
                if !(0.0..=1.0).contains(&loss) {
                    return Err((400, "loss must be between 0 and 1".into()));
                }
                let targets: Vec<&Agent> = match param("name") {
                    Some(n) => vec![self.agent(&n)?],
                    None => self.agents.iter().collect(),
                };
                for a in targets {
                    a.set_faults(Some(loss), None).await.map_err(|e| (502, e))?;
                }
            }
            ("POST", "/demo/partition") => {
                let half = self.agents.len().div_ceil(2);
                let (first, second) = self.agents.split_at(half);
                let addrs = |side: &[Agent]| side.iter().map(Agent::addr).collect::<Vec<_>>();
                let mut second_blocks = addrs(first);
                second_blocks.push("relay://".into());
                self.partitioned.store(true, std::sync::atomic::Ordering::Relaxed);
                for a in first {
                    let _ = a.set_faults(None, Some(addrs(second))).await;
                }
                for a in second {
                    let _ = a.set_faults(None, Some(second_blocks.clone())).await;
                }
            }
            ("POST", "/demo/heal") => {
                self.partitioned.store(false, std::sync::atomic::Ordering::Relaxed);
                for a in &self.agents {
                    let _ = a.set_faults(None, Some(Vec::new())).await;
                }
            }
            ("OPTIONS", _) => return Ok(String::new()),
            _ => return Err((404, format!("no such request: {method} {path}"))),
        }
        Ok(self.status())
    }
}

/// The value of the request head's header `name` (lower case), trimmed.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A `Host` (or the host of an `Origin`) that names this machine's loopback: `127.0.0.1`,
/// `localhost` or `[::1]`, with any port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(']') => {
            name
        }
        _ => host,
    };
    matches!(name, "localhost" | "[::1]") || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

impl Demo {
    /// The dashboard's origins: the relay that serves the page, by its address and as localhost.
    fn dashboard_origins(&self) -> Vec<String> {
        let port = self.relay.rsplit_once(':').map_or("", |(_, p)| p);
        vec![format!("http://{}", self.relay), format!("http://localhost:{port}")]
    }

    /// Admits a request by its `Host` and `Origin` headers (see the module docs), or says why not.
    fn admit(&self, host: Option<&str>, origin: Option<&str>) -> Result<(), (u16, String)> {
        if let Some(host) = host.filter(|h| !is_loopback_host(h)) {
            return Err((421, format!("this API answers on loopback only, not for host {host:?}")));
        }
        match origin {
            Some(o) if !self.dashboard_origins().iter().any(|d| d == o) => {
                Err((403, format!("requests from origin {o:?} are refused; only the dashboard's are served")))
            }
            _ => Ok(()),
        }
    }
}

/// Serves the API until the listener fails.
pub async fn serve(listener: TcpListener, demo: Arc<Demo>) {
    while let Ok((stream, _)) = listener.accept().await {
        let demo = Arc::clone(&demo);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), respond(stream, demo)).await;
        });
    }
}

async fn respond(mut stream: TcpStream, demo: Arc<Demo>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() + n > 8 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let origin = header(&text, "origin");
    let (status, body) = match demo.admit(header(&text, "host"), origin) {
        Err(refusal) => refusal,
        Ok(()) => match demo.handle(method, path, query).await {
            Ok(body) => (200, body),
            Err(error) => error,
        },
    };
    let body = if status == 200 { body } else { serde_json::json!({ "error": body }).to_string() };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        421 => "Misdirected Request",
        _ => "Error",
    };
    // Only the dashboard's origin may read the answers (and was admitted above).
    let cors = origin
        .filter(|_| status != 403)
        .map(|o| format!("access-control-allow-origin: {o}\r\nvary: origin\r\naccess-control-allow-methods: GET, POST, OPTIONS\r\n"))
        .unwrap_or_default();
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n{cors}cache-control: no-store\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Arc<Demo> {
        let mut taken = Vec::new();
        let agents = ["a", "b", "c"].map(|n| Agent::new(n.into(), "worker".into(), &mut taken).unwrap()).into();
        let launch = Launch {
            agent_bin: "/nonexistent/shoal-agent".into(),
            preset: "lan".into(),
            publish_view: 1.0,
            logs: std::env::temp_dir(),
        };
        Arc::new(Demo { agents, launch, relay: "127.0.0.1:1".into(), partitioned: Default::default() })
    }

    #[tokio::test]
    async fn the_status_lists_every_member_with_its_address_and_process_state() {
        let d = demo();
        let v: serde_json::Value = serde_json::from_str(&d.handle("GET", "/demo", "").await.unwrap()).unwrap();
        let names: Vec<&str> = v["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(v["members"][0]["running"], false);
        assert!(v["members"][0]["addr"].as_str().unwrap().starts_with("udp://127.0.0.1:"));
        assert_eq!(d.seeds_for("b"), [d.agents[0].addr(), d.agents[2].addr()]);
    }

    #[tokio::test]
    async fn bad_requests_name_the_problem_and_change_nothing() {
        let d = demo();
        assert_eq!(d.handle("POST", "/demo/kill", "").await.unwrap_err().0, 400);
        assert_eq!(d.handle("POST", "/demo/kill", "name=zz").await.unwrap_err().0, 404);
        assert_eq!(d.handle("POST", "/demo/loss", "loss=2").await.unwrap_err().0, 400);
        assert_eq!(d.handle("POST", "/demo/loss", "").await.unwrap_err().0, 400);
        assert_eq!(d.handle("DELETE", "/demo", "").await.unwrap_err().0, 404);
        assert!(d.agents.iter().all(|a| a.faults() == (0.0, Vec::new(), 0)));
    }

    #[tokio::test]
    async fn a_cross_site_post_or_a_rebinding_host_is_refused_and_changes_nothing_while_the_dashboard_is_served() {
        let d = demo();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::clone(&d)));
        let ask = |head: String| async move {
            let mut s = TcpStream::connect(at).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let post = |origin: &str, host: &str| {
            format!("POST /demo/partition HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nContent-Length: 0\r\n\r\n")
        };
        let here = at.to_string();
        let evil = ask(post("https://evil.example", &here)).await;
        assert!(evil.starts_with("HTTP/1.1 403"), "{evil}");
        assert!(!evil.contains("access-control-allow-origin"), "{evil}");
        let rebound = ask(post("http://evil.example:8080", "evil.example:8080")).await;
        assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
        let read = ask(format!("GET /demo HTTP/1.1\r\nHost: evil.example:{}\r\n\r\n", at.port())).await;
        assert!(read.starts_with("HTTP/1.1 421"), "a rebinding page cannot read the status either: {read}");
        assert!(d.agents.iter().all(|a| a.faults().1.is_empty()), "nothing was partitioned");
        // The dashboard (served by the relay) and local tools without an Origin are served.
        let dashboard = ask(post("http://127.0.0.1:1", &here)).await;
        assert!(dashboard.starts_with("HTTP/1.1 200"), "{dashboard}");
        assert!(dashboard.contains("access-control-allow-origin: http://127.0.0.1:1"), "{dashboard}");
        let curl = ask(format!("POST /demo/heal HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", at.port())).await;
        assert!(curl.starts_with("HTTP/1.1 200"), "{curl}");
    }

    #[tokio::test]
    async fn a_partition_blocks_the_other_half_and_the_relay_for_the_second_half_until_healed() {
        let d = demo();
        d.handle("POST", "/demo/partition", "").await.unwrap();
        let (a, b, c) = (d.agents[0].addr(), d.agents[1].addr(), d.agents[2].addr());
        assert_eq!(d.agents[0].faults().1, vec![c.clone()]);
        assert_eq!(d.agents[1].faults().1, vec![c]);
        assert_eq!(d.agents[2].faults().1, [a, b, "relay://".to_string()]);
        d.handle("POST", "/demo/heal", "").await.unwrap();
        assert!(d.agents.iter().all(|x| x.faults().1.is_empty()));
    }

    #[tokio::test]
    async fn the_members_get_distinct_free_ports() {
        let d = demo();
        let mut ports: Vec<u16> = d.agents.iter().flat_map(|a| [a.bind.port(), a.http.port()]).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }
}
