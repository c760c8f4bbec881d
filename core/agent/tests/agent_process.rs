//! The agent as separate processes: three agents form a cluster, a killed one is declared failed,
//! one stopped with SIGTERM is seen as left, and `shoal-agent members` lists the survivors.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const AGENT: &str = env!("CARGO_BIN_EXE_shoal-agent");

struct Agent {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Agent {
    fn start(args: &[&str]) -> Agent {
        let mut child = Command::new(AGENT)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shoal-agent");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Agent { child, lines, seen: Vec::new() }
    }

    /// Waits for a line containing every fragment; returns it.
    fn wait_for(&mut self, fragments: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        if let Some(l) = self.seen.iter().find(|l| fragments.iter().all(|f| l.contains(f))) {
            return l.clone();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if fragments.iter().all(|f| line.contains(f)) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {fragments:?} within {limit:?}; saw:\n{}", self.seen.join("\n"));
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nconnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn agents_form_a_cluster_detect_a_kill_and_see_a_graceful_leave() {
    let limit = Duration::from_secs(15);
    // Port 0 for both: the `started` line reports the addresses bound.
    let mut a = Agent::start(&[
        "--name",
        "a",
        "--bind",
        "127.0.0.1:0",
        "--preset",
        "local",
        "--http",
        "127.0.0.1:0",
        "--meta",
        "role=seed",
    ]);
    let started = a.wait_for(&["started", "a"], limit);
    let seed = started.split_whitespace().find(|w| w.starts_with("udp://")).expect("advertised address").to_string();
    let http = started.split_whitespace().find_map(|w| w.strip_prefix("http=")).expect("http address").to_string();
    assert!(!http.ends_with(":0"), "{started}");
    let mut b = Agent::start(&["--name", "b", "--bind", "127.0.0.1:0", "--preset", "local", "--join", &seed, "--json"]);
    let c = Agent::start(&["--name", "c", "--bind", "127.0.0.1:0", "--preset", "local", "--join", &seed]);
    a.wait_for(&[" join ", " b "], limit);
    a.wait_for(&[" join ", " c "], limit);
    let json = b.wait_for(&["\"event\":\"join\"", "\"member\":\"c\""], limit);
    assert!(json.starts_with('{') && json.contains("\"ts\":"), "{json}");
    // Our own join is `joined` (as in the npm package), another member's is `join`.
    let ours = b.wait_for(&["\"event\":\"joined\""], limit);
    assert!(ours.contains(&format!("\"via\":\"{seed}\"")), "{ours}");

    let table = Command::new(AGENT).args(["members", "--http", &http]).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(table.contains("NAME") && table.contains("role=seed"), "{table}");
    assert_eq!(table.lines().filter(|l| l.contains("alive")).count(), 3, "{table}");

    c.signal("-KILL");
    a.wait_for(&[" fail ", " c "], limit);
    let failed = b.wait_for(&["\"event\":\"fail\"", "\"member\":\"c\""], limit);
    assert!(failed.contains("\"by\":\"a\"") || failed.contains("\"by\":\"b\""), "names who declared it: {failed}");

    b.signal("-TERM");
    a.wait_for(&[" leave ", " b "], limit);
    let status = b.child.wait().unwrap();
    assert!(status.success(), "SIGTERM leads to a graceful exit, got {status}");

    let metrics = http_get(&http, "/metrics");
    assert!(metrics.contains("shoal_probes_total"), "{metrics}");
    assert!(metrics.contains("shoal_members{state=\"left\"} 1"), "{metrics}");
}

#[test]
fn an_agent_stopped_while_its_join_is_still_pending_leaves_gracefully() {
    // A seed that accepts connections and datagrams but never answers: the join waits out the
    // LAN preset's 5 s join timeout.
    let silent_tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let seed = silent_tcp.local_addr().unwrap();
    let _silent_udp = std::net::UdpSocket::bind(seed).unwrap();
    let mut a = Agent::start(&["--name", "a", "--bind", "127.0.0.1:0", "--join", &seed.to_string(), "--json"]);
    a.wait_for(&["\"event\":\"started\""], Duration::from_secs(15));
    let sent = Instant::now();
    a.signal("-TERM");
    let status = a.child.wait().unwrap();
    assert!(status.success(), "SIGTERM during the join leads to a graceful exit, got {status}");
    assert!(sent.elapsed() < Duration::from_secs(4), "exited {:?} after SIGTERM, not at once", sent.elapsed());
    a.wait_for(&["\"event\":\"note\"", "leaving"], Duration::from_secs(1));
    assert!(!a.seen.iter().any(|l| l.contains("\"event\":\"joined\"")), "the join never completed: {:?}", a.seen);
}
