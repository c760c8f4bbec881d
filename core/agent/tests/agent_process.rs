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

    fn signal_kill_and_wait(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
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

/// Runs `shoal-agent <args>` with `token` as `SHOAL_HTTP_TOKEN` (and no other).
fn run_command(args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(AGENT);
    cmd.args(args).env_remove("SHOAL_HTTP_TOKEN");
    if let Some(t) = token {
        cmd.env("SHOAL_HTTP_TOKEN", t);
    }
    cmd.output().unwrap()
}

/// Runs `shoal-agent <args>` against an agent; its stdout, or a panic with its stderr.
fn command(args: &[&str], token: Option<&str>) -> String {
    let out = run_command(args, token);
    assert!(out.status.success(), "shoal-agent {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `command` that must fail; its stderr.
fn command_fails(args: &[&str], token: Option<&str>) -> String {
    let out = run_command(args, token);
    assert!(!out.status.success(), "shoal-agent {args:?} should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn started_addrs(agent: &mut Agent, name: &str) -> (String, String) {
    let started = agent.wait_for(&["started", name], Duration::from_secs(15));
    let addr = started.split_whitespace().find(|w| w.starts_with("udp://")).expect("advertised address").to_string();
    let http = started.split_whitespace().find_map(|w| w.strip_prefix("http=")).unwrap_or_default().to_string();
    (addr, http)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Polls `f` until it holds, at most `limit`.
fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn an_operator_runs_the_serf_commands_against_a_running_agent_and_the_cluster_sees_their_effect() {
    let limit = Duration::from_secs(15);
    let token = "operator-token-0123456789abcdef";
    let key1 = "11".repeat(32);
    let key2 = "22".repeat(32);
    let common = ["--bind", "127.0.0.1:0", "--preset", "local", "--key", &key1, "--coordinates"];
    let mut a = Agent::start(
        &[&common[..], &["--name", "a", "--http", "127.0.0.1:0", "--http-token", token, "--meta", "role=seed"]]
            .concat(),
    );
    let (seed, http) = started_addrs(&mut a, "a");
    let mut b = Agent::start(&[&common[..], &["--name", "b", "--meta", "role=web", "--meta", "dc=eu-west"]].concat());
    let (b_addr, _) = started_addrs(&mut b, "b");
    let c = Agent::start(&[&common[..], &["--name", "c", "--join", &seed, "--meta", "role=web"]].concat());
    a.wait_for(&[" join ", " c "], limit);

    // join: a brings b in through b's address.
    let joined = json(&command(&["join", "--http", &http, &b_addr], Some(token)));
    assert_eq!(joined["joined"], true, "{joined}");
    a.wait_for(&[" join ", " b "], limit);

    // members, filtered by tag, name and status.
    let members = |query: &[&str]| -> Vec<String> {
        let rows = json(&command(&[&["members", "--http", &http, "--json"][..], query].concat(), None));
        let mut names: Vec<String> =
            rows.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(members(&[]), ["a", "b", "c"]);
    assert_eq!(members(&["--tag", "role=web"]), ["b", "c"]);
    assert_eq!(members(&["--tag", "dc=eu-*", "--status", "alive"]), ["b"]);
    assert_eq!(members(&["--name", "?"]), ["a", "b", "c"]);
    let table = command(&["members", "--http", &http, "--tag", "role=seed"], None);
    assert!(table.contains("alive (self)") && table.contains("role=seed"), "{table}");

    // tags: a's change reaches b, whose own view of a changes.
    let tags = json(&command(
        &["tags", "--http", &http, "--set", "role=db", "--set", "zone=a,b", "--delete", "none"],
        Some(token),
    ));
    assert_eq!(tags["role"], "db");
    assert_eq!(tags["zone"], "a,b", "a value may hold a comma");
    b.wait_for(&[" update ", " a "], limit);
    assert_eq!(members(&["--tag", "role=db"]), ["a"]);

    // event: a user event reaches the other agents.
    command(&["event", "--http", &http, "deploy", "v1.2.3"], Some(token));
    b.wait_for(&["message", "deploy", "v1.2.3"], limit);

    // info and rtt.
    let info = json(&command(&["info", "--http", &http], None));
    assert_eq!(info["name"], "a");
    assert_eq!(info["members"]["alive"], 3, "{info}");
    assert_eq!(info["encrypted"], true);
    assert!(until(limit, || json(&command(&["rtt", "--http", &http, "b"], None))["rtt_ms"].is_number()), "a probed b");
    let rtt = |name: &str| json(&command(&["rtt", "--http", &http, name], None));
    assert!(until(limit, || rtt("c")["estimated_rtt_ms"].is_number()), "with --coordinates, an estimate too");

    // keys: a rotation on a running member; the list needs the token.
    let listed = json(&command(&["keys", "--http", &http], Some(token)));
    assert_eq!(listed["keys"], serde_json::json!([key1]));
    command(&["keys", "--http", &http, "--install", &key2], Some(token));
    let used = json(&command(&["keys", "--http", &http, "--use", &key2], Some(token)));
    assert_eq!(used["primary"], key2.as_str());
    assert_eq!(used["keys"].as_array().unwrap().len(), 2);
    assert!(command_fails(&["keys", "--http", &http, "--remove", &key2], Some(token)).contains("primary"));
    command(&["keys", "--http", &http, "--use", &key1], Some(token));
    command(&["keys", "--http", &http, "--remove", &key2], Some(token));

    // query: the members selected ack (b and c are the web members now); topics under `_shoal/`
    // are the agents' own.
    let names_in = |v: &serde_json::Value| -> Vec<String> {
        let mut n: Vec<String> = v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
        n.sort();
        n
    };
    let asked =
        json(&command(&["query", "--http", &http, "--tag", "role=web", "--timeout-ms", "1500", "who"], Some(token)));
    assert_eq!(names_in(&asked["acks"]), ["b", "c"], "{asked}");
    assert!(command_fails(&["query", "--http", &http, "_shoal/ping"], Some(token)).contains("agents' own"));

    // keys --cluster: the whole cluster's key rotated from one agent, by query, with no restart.
    for (op, key) in [("--install", &key2), ("--use", &key2), ("--remove", &key1)] {
        let step = json(&command(&["keys", "--http", &http, op, key, "--cluster"], Some(token)));
        let answers: Vec<(String, String)> = step["responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["from"].as_str().unwrap().to_string(), r["payload"].as_str().unwrap().to_string()))
            .collect();
        let mut who: Vec<&str> = answers.iter().map(|(f, _)| f.as_str()).collect();
        who.sort();
        assert_eq!(who, ["a", "b", "c"], "{op}: every agent answers: {step}");
        assert!(answers.iter().all(|(_, p)| p == "ok"), "{op}: {step}");
    }
    assert_eq!(json(&command(&["keys", "--http", &http], Some(token)))["keys"], serde_json::json!([key2]));
    command(&["event", "--http", &http, "rotated", "key2"], Some(token));
    b.wait_for(&["message", "rotated", "key2"], limit);

    // Without the token, every state change and the key list are refused, and nothing changed.
    for args in [&["tags", "--set", "role=x"][..], &["keys"], &["leave"], &["force-leave", "c"], &["event", "t"]] {
        let err = command_fails(&[args, &["--http", &http]].concat(), None);
        assert!(err.contains("401"), "{args:?}: {err}");
    }
    assert!(command_fails(&["tags", "--http", &http, "--set", "role=x"], Some("wrong-token-0123456789abcdef"))
        .contains("401"));
    assert_eq!(members(&["--tag", "role=db"]), ["a"]);

    // monitor: a's events as JSON lines, to a holder of the token only.
    assert!(command_fails(&["monitor", "--http", &http], None).contains("401"));
    let mut monitor = Agent::start(&["monitor", "--http", &http, "--token", token]);

    // force-leave: refused for a live member; a killed one becomes `left` everywhere.
    assert!(command_fails(&["force-leave", "--http", &http, "c"], Some(token)).contains("not failed"));
    c.signal_kill_and_wait();
    a.wait_for(&[" fail ", " c "], limit);
    // `/members` names states as it always has (the netns labs and scripts read them).
    let failed = json(&command(&["members", "--http", &http, "--status", "failed", "--json"], None));
    assert_eq!(failed[0]["name"], "c");
    assert_eq!(failed[0]["state"], "dead", "{failed}");
    let me = json(&command(&["members", "--http", &http, "--name", "a", "--json"], None));
    assert_eq!(me[0]["state"], "alive (self)", "{me}");
    command(&["force-leave", "--http", &http, "c"], Some(token));
    a.wait_for(&[" leave ", " c "], limit);
    b.wait_for(&[" leave ", " c "], limit);
    assert_eq!(members(&["--status", "left"]), ["c"]);
    let failed = monitor.wait_for(&["\"event\":\"fail\"", "\"member\":\"c\""], limit);
    assert!(json(&failed)["ts"].is_string(), "{failed}");
    monitor.wait_for(&["\"event\":\"leave\"", "\"member\":\"c\""], limit);

    // leave: the agent leaves gracefully and exits.
    command(&["leave", "--http", &http], Some(token));
    b.wait_for(&[" leave ", " a "], limit);
    let status = a.child.wait().unwrap();
    assert!(status.success(), "a leaves and exits cleanly: {status}");
}

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");

#[test]
fn the_shipped_systemd_unit_kubernetes_manifest_and_dockerfile_name_only_what_the_agent_has_and_start_a_member() {
    let limit = Duration::from_secs(15);
    let read = |file: &str| std::fs::read_to_string(format!("{DEPLOY}/{file}")).unwrap();
    let help = String::from_utf8(Command::new(AGENT).arg("--help").output().unwrap().stdout).unwrap();

    // Every SHOAL_* variable the manifest sets is one the agent reads.
    let manifest = read("kubernetes.yaml");
    let variables: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .filter(|name| name.starts_with("SHOAL_"))
        .collect();
    assert!(variables.len() >= 5, "{variables:?}");
    for v in &variables {
        assert!(help.contains(&format!("env: {v}=")), "the manifest sets {v}, which the agent does not read");
    }
    assert!(manifest.contains("clusterIP: None"), "a headless service");

    // The Dockerfile builds and runs the binary this test runs, with the variables its usage
    // comment passes (`docker run -e SHOAL_...`), from a build context without build output.
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("-p shoal-agent --bin shoal-agent"));
    assert!(dockerfile.contains("/usr/local/bin/shoal-agent") && dockerfile.contains("STOPSIGNAL SIGTERM"));
    let documented: Vec<&str> = dockerfile
        .split("-e ")
        .skip(1)
        .filter_map(|rest| rest.split('=').next())
        .filter(|name| name.starts_with("SHOAL_"))
        .collect();
    assert!(documented.len() >= 2, "{documented:?}");
    for v in &documented {
        assert!(help.contains(&format!("env: {v}=")), "the Dockerfile's usage sets {v}, which the agent does not read");
    }
    let ignored = std::fs::read_to_string(format!("{DEPLOY}/../.dockerignore")).expect("a .dockerignore at the root");
    for heavy in ["target/", "**/node_modules/"] {
        assert!(ignored.lines().any(|l| l == heavy), ".dockerignore leaves {heavy} in the build context");
    }
    // `cargo build --locked` in the image fails if Cargo.lock is not what the manifests resolve to.
    let locked = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--offline", "-p", "shoal-agent", "--depth", "0"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    assert!(locked.status.success(), "Cargo.lock is stale: {}", String::from_utf8_lossy(&locked.stderr));

    // The unit's command line, with its config file made local (ports 0, a seed of ours), starts
    // a member that joins, and leaves gracefully on the SIGTERM systemd sends.
    let mut seed = Agent::start(&["--name", "seed", "--bind", "127.0.0.1:0", "--preset", "local"]);
    let (seed_addr, _) = started_addrs(&mut seed, "seed");
    let unit = read("shoal-agent.service");
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/shoal-agent"));
    let dir = std::env::temp_dir().join(format!("shoal-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = read("agent.toml")
        .lines()
        .map(|l| match l.split_whitespace().next() {
            Some("bind") => "bind = \"127.0.0.1:0\"".to_string(),
            Some("http") => "http = \"127.0.0.1:0\"".to_string(),
            Some("advertise") => String::new(),
            Some("join") => format!("join = [\"{}\"]", seed_addr.trim_start_matches("udp://")),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config_path = dir.join("agent.toml");
    std::fs::write(&config_path, config).unwrap();
    let args: Vec<String> = words
        .map(|w| if w == "/etc/shoal/agent.toml" { config_path.display().to_string() } else { w.to_string() })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut member = Agent::start(&args);
    member.wait_for(&["\"event\":\"started\"", "\"member\":\"web-1\""], limit);
    seed.wait_for(&[" join ", " web-1 ", "role=web"], limit);
    member.signal("-TERM");
    seed.wait_for(&[" leave ", " web-1 "], limit);
    assert!(member.child.wait().unwrap().success(), "SIGTERM: a graceful exit");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn agents_that_accept_unauthenticated_packets_refuse_key_changes_by_query() {
    // In `transition` mode a packet may be plaintext, hence forged: a key change by query would let
    // anyone who can reach the port install or remove keys.
    let limit = Duration::from_secs(15);
    let token = "operator-token-0123456789abcdef";
    let (key1, key2) = ("11".repeat(32), "22".repeat(32));
    let common = ["--bind", "127.0.0.1:0", "--preset", "local", "--key", &key1, "--security", "transition"];
    let mut a = Agent::start(&[&common[..], &["--name", "a", "--http", "127.0.0.1:0", "--http-token", token]].concat());
    let (seed, http) = started_addrs(&mut a, "a");
    let _b = Agent::start(&[&common[..], &["--name", "b", "--join", &seed]].concat());
    a.wait_for(&[" join ", " b "], limit);
    let step = json(&command(&["keys", "--http", &http, "--install", &key2, "--cluster"], Some(token)));
    let payloads: Vec<&str> =
        step["responses"].as_array().unwrap().iter().map(|r| r["payload"].as_str().unwrap()).collect();
    assert_eq!(payloads.len(), 2, "both agents answer: {step}");
    assert!(payloads.iter().all(|p| p.starts_with("error:") && p.contains("encrypted")), "{step}");
    assert_eq!(json(&command(&["keys", "--http", &http], Some(token)))["keys"], serde_json::json!([key1]));
}

#[test]
fn an_agent_answers_a_query_with_what_its_handler_program_prints_for_the_payload() {
    // Serf's query event handlers. b runs `tr a-z A-Z` for "upper" (from a flag) and, from its
    // file, `printenv SHOAL_QUERY_FROM` for "asker" and `sleep 30` for "slow" with a 300 ms timeout.
    let limit = Duration::from_secs(15);
    let token = "operator-token-0123456789abcdef";
    let key = "33".repeat(32);
    let common = ["--bind", "127.0.0.1:0", "--preset", "local", "--key", &key];
    let dir = std::env::temp_dir().join(format!("shoal-agent-handlers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("b.toml");
    std::fs::write(
        &file,
        "[[query_handlers]]\ntopic = \"asker\"\ncommand = [\"printenv\", \"SHOAL_QUERY_FROM\"]\n\
         [[query_handlers]]\ntopic = \"slow\"\ncommand = [\"sleep\", \"30\"]\ntimeout_ms = 300\n\
         [[query_handlers]]\ntopic = \"held\"\ncommand = [\"sleep\", \"12\"]\ntimeout_ms = 10000\n",
    )
    .unwrap();
    let mut a = Agent::start(&[&common[..], &["--name", "a", "--http", "127.0.0.1:0", "--http-token", token]].concat());
    let (seed, http) = started_addrs(&mut a, "a");
    let file = file.to_str().unwrap();
    let mut b = Agent::start(
        &[&common[..], &["--name", "b", "--join", &seed, "--config", file, "--http", "127.0.0.1:0"]].concat(),
    );
    let (_, b_http) = started_addrs(&mut b, "b");
    a.wait_for(&[" join ", " b "], limit);
    // c's handler comes from the flag.
    let _c =
        Agent::start(&[&common[..], &["--name", "c", "--join", &seed, "--query-handler", "upper=tr a-z A-Z"]].concat());
    a.wait_for(&[" join ", " c "], limit);

    let responses = |topic: &str, payload: &str| -> Vec<(String, String)> {
        let out = json(&command(&["query", "--http", &http, "--timeout-ms", "2000", topic, payload], Some(token)));
        let mut r: Vec<(String, String)> = out["responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["from"].as_str().unwrap().to_string(), r["payload"].as_str().unwrap().to_string()))
            .collect();
        r.sort();
        r
    };
    assert_eq!(responses("upper", "hello, shoal"), [("c".to_string(), "HELLO, SHOAL".to_string())]);
    assert_eq!(responses("asker", ""), [("b".to_string(), "a\n".to_string())]);
    assert_eq!(responses("slow", ""), [], "killed at its timeout: no answer");
    assert_eq!(responses("unhandled", "x"), [], "no handler: acked, not answered");

    let metrics = http_get(&b_http, "/metrics");
    for line in [
        "shoal_agent_query_handler_runs_total{outcome=\"answered\"} 1",
        "shoal_agent_query_handler_runs_total{outcome=\"timed_out\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Six queries at once for a handler that runs 10 s: four run, two find them all busy.
    let askers: Vec<_> = (0..6)
        .map(|i| {
            let http = http.clone();
            std::thread::spawn(move || {
                run_command(&["query", "--http", &http, "--timeout-ms", "1000", "held", &i.to_string()], Some(token))
            })
        })
        .collect();
    for asker in askers {
        let _ = asker.join();
    }
    let busy = "shoal_agent_query_handler_runs_total{outcome=\"busy\"} 2";
    assert!(until(limit, || http_get(&b_http, "/metrics").contains(busy)), "{}", http_get(&b_http, "/metrics"));
    let _ = std::fs::remove_dir_all(&dir);
}
