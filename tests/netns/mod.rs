//! A lab of `shoal-agent` processes in Linux network namespaces, for the fault tests
//! (`netns_faults.rs`).
//!
//! Topology: one namespace per member, whose `eth0` is a veth whose peer is a port of a bridge
//! living in a namespace of its own. Member `i` is `m{i}` at `10.77.0.{i+1}:7946` (an address that
//! exists only inside the lab), with a fixed MAC, and holds permanent neighbour entries for every
//! other member (the kernel's neighbour table is shared by all namespaces and holds about 1,024
//! entries). A slow member's veth ends in a third namespace instead, where a userspace
//! [`DelayLine`] forwards its frames to and from the bridge. Partitions and random loss are
//! nftables rules in the bridge namespace.
//!
//! Every member runs a real `shoal-agent` (`ip netns exec NS shoal-agent --json --http ...`, LAN
//! preset). The test reads each agent's membership by polling its `/members` from a thread that
//! entered the member's namespace, and collects the agents' JSON event lines with the moment they
//! were read.
//!
//! Cleanup: dropping a [`Lab`] (also while a test panics) kills its agents and deletes its
//! namespaces, and with them the veths, the bridge and the nftables table. Names carry the test
//! process id and a counter, so two runs cannot collide; namespaces left by a test process that no
//! longer exists are deleted when the next lab starts. Agents die with the thread that started them
//! (`PR_SET_PDEATHSIG`), so a killed test run leaves no processes behind.
//!
//! `NETNS_DEBUG=1` prints every poll that did not satisfy a wait, with the reason.

// Included by the fault tests and by the soak bench (`benches/soak.rs`), each using part of it.
#![allow(dead_code)]

pub mod delay;
pub mod sys;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use delay::DelayLine;

/// Every namespace of every lab starts with this, then the test process id.
const PREFIX: &str = "shoalnf";
/// The agents' UDP and TCP port, and their HTTP port (each member has its own address).
const PORT: u16 = 7946;
const HTTP_PORT: u16 = 8946;
/// How often the wait helpers poll.
const POLL: Duration = Duration::from_millis(100);
/// The bridge's nftables table of random loss (apart from the partitions' `shoal_partition`).
const LOSS_TABLE: &str = "shoal_loss";

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// Prints one line on the test's stderr, bypassing the test harness's capture, so measured
/// figures and skips show in `cargo test` output.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "netns_faults: {line}");
}

fn command_works(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Why namespaces cannot be used here, if they cannot (checked once per process).
fn skip_reason() -> Option<&'static str> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            if !cfg!(target_os = "linux") {
                return Some("network namespaces are Linux only".into());
            }
            if !sys::is_root() {
                return Some("not root (creating network namespaces needs CAP_SYS_ADMIN)".into());
            }
            if !command_works("ip", &["-V"]) {
                return Some("no `ip` command (iproute2)".into());
            }
            if !command_works("nft", &["--version"]) {
                return Some("no `nft` command (nftables)".into());
            }
            let probe = format!("{PREFIX}{}-probe", std::process::id());
            if !command_works("ip", &["netns", "add", &probe]) {
                return Some("`ip netns add` failed (no permission to create network namespaces?)".into());
            }
            let _ = command_works("ip", &["netns", "del", &probe]);
            None
        })
        .as_deref()
}

/// The `shoal-agent` binary: `$SHOAL_AGENT_BIN`, or `shoal-agent` in the target directory this
/// test runs from (`cargo test --workspace` builds it; so does `cargo build -p shoal-agent`).
fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SHOAL_AGENT_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/netns_faults-<hash> -> target/<profile>/shoal-agent
    let path = exe.parent().and_then(Path::parent).map(|dir| dir.join("shoal-agent")).expect("target directory");
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p shoal-agent`, with `--release` for a \
         bench; `cargo test --workspace` builds it) or point SHOAL_AGENT_BIN at one",
        path.display()
    );
    path
}

/// Deletes namespaces of labs whose test process is gone (killed before its labs were dropped).
fn sweep_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    let mut stale = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            stale.push(format!("netns del {name}"));
        }
    }
    if !stale.is_empty() {
        let _ = ip_batch(None, &stale);
    }
}

/// Runs `ip [-n ns] -batch -` with the given commands; the error names the first one that failed.
fn ip_batch(ns: Option<&str>, commands: &[String]) -> Result<(), String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let text = commands.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().map_err(|e| format!("ip: {e}"))?;
    let _ = writer.join();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip -batch in {ns:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let Some(text) = stdin {
        child.stdin.take().expect("piped").write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// One line an agent printed (`--json`), with the moment the test read it.
#[derive(Clone, Debug)]
pub struct Event {
    pub at: Instant,
    /// The agent that printed it.
    pub observer: String,
    /// `started`, `note`, or an event named as in the npm package: `join`, `suspect`, `alive`, `fail`,
    /// `leave`, `update`, `joined`, `health`, ...
    pub kind: String,
    /// The member it is about.
    pub member: String,
    /// Who raised the suspicion or declared the failure (`suspect` and `fail` only).
    pub by: Option<String>,
    pub incarnation: u64,
}

/// One row of an agent's `/members`.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    /// `alive (self)`, `alive`, `suspect`, `dead` or `left`.
    pub state: String,
    pub rtt_ms: Option<u64>,
}

impl Row {
    pub fn alive(&self) -> bool {
        self.state.starts_with("alive")
    }
}

struct Agent {
    child: Child,
    reader: Option<JoinHandle<()>>,
}

struct Slot {
    name: String,
    ns: String,
    netns: File,
    ip: Ipv4Addr,
    agent: Option<Agent>,
    runs: usize,
}

/// Settings of a lab.
pub struct LabSpec {
    /// Shown in reports and the log directory's name.
    pub title: &'static str,
    pub members: usize,
    /// Members whose every frame is delayed by `delay`, both ways.
    pub slow: Vec<usize>,
    pub delay: RangeInclusive<Duration>,
    /// Members every agent joins through (itself excluded).
    pub seeds: Vec<usize>,
    /// The whole test must finish within this; every wait is cut to it.
    pub budget: Duration,
    /// Runs with no other lab beside it (see [`Turn`]).
    pub alone: bool,
}

impl LabSpec {
    pub fn new(title: &'static str, members: usize, budget: Duration) -> LabSpec {
        LabSpec {
            title,
            members,
            slow: Vec::new(),
            delay: Duration::ZERO..=Duration::ZERO,
            seeds: (0..members.min(3)).collect(),
            budget,
            alone: false,
        }
    }
}

/// Labs share the machine, except one whose spec says `alone`, which waits for the others and runs
/// with none beside it. Each lab runs up to twenty agent processes: a lab whose assertions are
/// about timing (one slow member among twenty, and healthy members that never accuse each other)
/// would otherwise measure how the other labs' agents starve its healthy ones of CPU, which it
/// does not set out to test. Taken before the budget's clock starts.
static TURNS: RwLock<()> = RwLock::new(());

/// A lab's hold on [`TURNS`], released once its agents and namespaces are gone.
enum Turn {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

impl Turn {
    fn take(alone: bool) -> Turn {
        if alone {
            Turn::Alone(TURNS.write().unwrap_or_else(PoisonError::into_inner))
        } else {
            Turn::Shared(TURNS.read().unwrap_or_else(PoisonError::into_inner))
        }
    }
}

/// Namespaces, links, agents and delay lines of one test; all removed on drop.
pub struct Lab {
    title: &'static str,
    tag: String,
    bridge: String,
    slots: Vec<Slot>,
    seeds: Vec<usize>,
    /// Every namespace created, for deletion.
    namespaces: Vec<String>,
    delays: Vec<(usize, DelayLine)>,
    agent: PathBuf,
    logs: PathBuf,
    events: Arc<Mutex<Vec<Event>>>,
    end: Instant,
    budget: Duration,
    /// Dropped after `Drop::drop` has removed everything: the next lab starts on a clean machine.
    _turn: Turn,
}

impl Lab {
    /// Builds the lab, or prints why it cannot (one line) and returns `None`: the caller then
    /// returns, and the test counts as passed.
    pub fn new(spec: LabSpec) -> Option<Lab> {
        if let Some(reason) = skip_reason() {
            report(&format!("SKIP {}: {reason}", spec.title));
            return None;
        }
        let turn = Turn::take(spec.alone);
        let agent = agent_binary();
        sweep_stale_namespaces();
        let tag = format!("{PREFIX}{}-{}", std::process::id(), NEXT_LAB.fetch_add(1, Ordering::Relaxed));
        let logs = std::env::temp_dir().join(format!("{tag}-{}", spec.title));
        std::fs::create_dir_all(&logs).expect("log directory");
        let mut lab = Lab {
            title: spec.title,
            bridge: format!("{tag}-br"),
            tag,
            slots: Vec::new(),
            seeds: spec.seeds.clone(),
            namespaces: Vec::new(),
            delays: Vec::new(),
            agent,
            logs,
            events: Arc::default(),
            end: Instant::now() + spec.budget,
            budget: spec.budget,
            _turn: turn,
        };
        if let Err(e) = lab.build(&spec) {
            panic!("building the lab {}: {e}", spec.title);
        }
        Some(lab)
    }

    fn build(&mut self, spec: &LabSpec) -> Result<(), String> {
        assert!(spec.members <= 250, "one /24 per lab");
        let member_ns = |i: usize| format!("{}-m{i}", self.tag);
        let delay_ns = |i: usize| format!("{}-d{i}", self.tag);
        let mut wanted = vec![self.bridge.clone()];
        wanted.extend((0..spec.members).map(member_ns));
        wanted.extend(spec.slow.iter().map(|&i| delay_ns(i)));
        // Recorded before creation, so a failure half way still deletes what exists.
        self.namespaces = wanted.clone();
        ip_batch(None, &wanted.iter().map(|ns| format!("netns add {ns}")).collect::<Vec<_>>())?;

        let mac = |i: usize| format!("02:77:00:00:{:02x}:{:02x}", i / 256, i % 256);
        let ip = |i: usize| Ipv4Addr::new(10, 77, 0, i as u8 + 1);
        let mut links = Vec::new();
        let mut bridge = vec!["link add br0 type bridge".to_string(), "link set br0 up".to_string()];
        for i in 0..spec.members {
            let (m, port) = (member_ns(i), format!("p{i}"));
            if spec.slow.contains(&i) {
                // member eth0 <-> d-ns "member" ... delay line ... d-ns "bridge" <-> bridge port
                let d = delay_ns(i);
                links.push(format!("link add eth0 netns {m} address {} type veth peer name member netns {d}", mac(i)));
                links.push(format!("link add bridge netns {d} type veth peer name {port} netns {}", self.bridge));
            } else {
                links.push(format!(
                    "link add eth0 netns {m} address {} type veth peer name {port} netns {}",
                    mac(i),
                    self.bridge
                ));
            }
            bridge.push(format!("link set {port} master br0"));
            bridge.push(format!("link set {port} up"));
        }
        ip_batch(None, &links)?;
        ip_batch(Some(&self.bridge), &bridge)?;
        for &i in &spec.slow {
            let d = delay_ns(i);
            let cmds = ["link set member promisc on up", "link set bridge promisc on up"].map(String::from);
            ip_batch(Some(&d), &cmds)?;
        }
        for i in 0..spec.members {
            let m = member_ns(i);
            let mut cmds =
                vec!["link set lo up".into(), format!("addr add {}/24 dev eth0", ip(i)), "link set eth0 up".into()];
            for j in (0..spec.members).filter(|&j| j != i) {
                cmds.push(format!("neigh replace {} lladdr {} dev eth0 nud permanent", ip(j), mac(j)));
            }
            ip_batch(Some(&m), &cmds)?;
            let netns = File::open(format!("/var/run/netns/{m}")).map_err(|e| format!("open netns {m}: {e}"))?;
            self.slots.push(Slot { name: format!("m{i}"), ns: m, netns, ip: ip(i), agent: None, runs: 0 });
        }
        for &i in &spec.slow {
            let d = delay_ns(i);
            let file = File::open(format!("/var/run/netns/{d}")).map_err(|e| format!("open netns {d}: {e}"))?;
            let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |t| t.as_nanos());
            let line = DelayLine::start(&file, "member", "bridge", spec.delay.clone(), seed as u64 ^ i as u64)
                .map_err(|e| format!("delay line in {d}: {e}"))?;
            self.delays.push((i, line));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// All member indices.
    pub fn all(&self) -> Vec<usize> {
        (0..self.len()).collect()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.slots[i].name
    }

    /// Starts member `i`'s agent (again, after a stop: same name, same address).
    pub fn start(&mut self, i: usize) {
        assert!(self.slots[i].agent.is_none(), "{} is already running", self.slots[i].name);
        let join: Vec<String> =
            self.seeds.iter().filter(|&&s| s != i).map(|&s| format!("{}:{PORT}", self.slots[s].ip)).collect();
        let slot = &mut self.slots[i];
        slot.runs += 1;
        let log = |ext: &str| File::create(self.logs.join(format!("{}.{}.{ext}", slot.name, slot.runs)));
        let stderr = log("err").expect("agent log file");
        let mut stdout_log = log("out").expect("agent log file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &slot.ns])
            .arg(&self.agent)
            .args(["--name", &slot.name, "--preset", "lan", "--json"])
            .args(["--bind", &format!("{}:{PORT}", slot.ip), "--http", &format!("{}:{HTTP_PORT}", slot.ip)])
            // `SHOAL_LAB_LOG=shoal_tcp=debug` (say) to read what the agents did in their .err logs.
            .env("SHOAL_LOG", std::env::var("SHOAL_LAB_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if !join.is_empty() {
            cmd.args(["--join", &join.join(",")]);
        }
        if let Ok(path) = std::env::var("SHOAL_LAB_CONFIG") {
            cmd.args(["--config", &path]);
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe { cmd.pre_exec(sys::die_with_parent) };
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start the agent of {}: {e}", slot.name));
        let stdout = child.stdout.take().expect("piped");
        let (events, observer) = (self.events.clone(), slot.name.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = Instant::now();
                let _ = writeln!(stdout_log, "{line}");
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                let text = |k: &str| v[k].as_str().map(str::to_string);
                let event = Event {
                    at,
                    observer: observer.clone(),
                    kind: text("event").unwrap_or_default(),
                    member: text("member").unwrap_or_default(),
                    by: text("by"),
                    incarnation: v["incarnation"].as_u64().unwrap_or(0),
                };
                events.lock().unwrap_or_else(PoisonError::into_inner).push(event);
            }
        });
        slot.agent = Some(Agent { child, reader: Some(reader) });
    }

    /// Starts every agent: the seeds one after the other, each answering `/members` before the
    /// next starts, then all the others at once. (Started all at once, a member whose seeds are
    /// not listening yet waits out its join timeout and a re-announcement period, about 10 s
    /// with the LAN preset: a cold-start effect these scenarios are not about.)
    pub fn start_all(&mut self) {
        let seeds = self.seeds.clone();
        for &s in &seeds {
            self.start(s);
            let what = format!("{} answers /members", self.name(s));
            self.wait(&what, Instant::now(), Duration::from_secs(10), || self.views(&[s]).remove(0).map(drop));
        }
        for i in (0..self.len()).filter(|i| !seeds.contains(i)) {
            self.start(i);
        }
    }

    /// `kill -9` on member `i`'s agent; returns once the process is gone.
    pub fn kill(&mut self, i: usize) {
        let mut agent = self.slots[i].agent.take().unwrap_or_else(|| panic!("{} is not running", self.name(i)));
        let _ = agent.child.kill();
        let _ = agent.child.wait();
        if let Some(r) = agent.reader.take() {
            let _ = r.join();
        }
    }

    /// SIGTERM to member `i`'s agent (a graceful leave); returns once it exited, within `limit`.
    pub fn stop(&mut self, i: usize, limit: Duration) {
        let name = self.name(i).to_string();
        let mut agent = self.slots[i].agent.take().unwrap_or_else(|| panic!("{name} is not running"));
        sys::signal(agent.child.id(), libc::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + limit;
        let status = loop {
            match agent.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = agent.child.kill();
                    let _ = agent.child.wait();
                    panic!("{name} did not exit within {limit:?} of SIGTERM");
                }
            }
        };
        if let Some(r) = agent.reader.take() {
            let _ = r.join();
        }
        assert!(status.success(), "{name} exited with {status} after SIGTERM");
    }

    /// Cuts every packet between the members of `a` and those of `b` (nftables drop rules on the
    /// bridge, both ways, every protocol). Returns when the rules are in place.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) -> Instant {
        let set = |side: &[usize]| side.iter().map(|&i| self.slots[i].ip.to_string()).collect::<Vec<_>>().join(", ");
        let (a, b) = (set(a), set(b));
        let rules = format!(
            "table bridge shoal_partition {{\n  chain halves {{\n    type filter hook forward priority 0; policy accept;\n    \
             ip saddr {{ {a} }} ip daddr {{ {b} }} drop\n    ip saddr {{ {b} }} ip daddr {{ {a} }} drop\n  }}\n}}\n"
        );
        run("ip", &["netns", "exec", &self.bridge, "nft", "-f", "-"], Some(&rules)).expect("nft partition");
        Instant::now()
    }

    /// Removes the partition. Returns when the rules are gone.
    pub fn heal(&mut self) -> Instant {
        run("ip", &["netns", "exec", &self.bridge, "nft", "delete", "table", "bridge", "shoal_partition"], None)
            .expect("nft heal");
        Instant::now()
    }

    /// Drops each IPv4 packet between members with probability `fraction`, independently per
    /// packet and direction (an nftables `numgen random` rule on the bridge, in a table of its own
    /// so that partitions still work alongside). Replaces any previous loss; 0 removes it.
    pub fn set_loss(&mut self, fraction: f64) {
        assert!((0.0..=1.0).contains(&fraction), "a loss rate is a fraction, not {fraction}");
        let ppm = (fraction * 1e6).round() as u32;
        // Declaring the table first makes the delete succeed when there is none yet; the whole
        // file is one transaction.
        let mut rules = format!("table bridge {LOSS_TABLE}\ndelete table bridge {LOSS_TABLE}\n");
        if ppm > 0 {
            rules += &format!(
                "table bridge {LOSS_TABLE} {{\n  chain loss {{\n    type filter hook forward priority -10; policy \
                 accept;\n    ether type ip counter\n    ether type ip numgen random mod 1000000 < {ppm} counter drop\n  \
                 }}\n}}\n"
            );
        }
        run("ip", &["netns", "exec", &self.bridge, "nft", "-f", "-"], Some(&rules)).expect("nft loss");
    }

    /// IPv4 packets between members the loss rule has seen and dropped so far, or `None` without
    /// one (see [`set_loss`](Self::set_loss)).
    pub fn loss_counters(&self) -> Option<(u64, u64)> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.bridge, "nft", "list", "table", "bridge", LOSS_TABLE])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let packets = |line: &str| {
            let (_, after) = line.split_once("counter packets ")?;
            after.split_whitespace().next()?.parse::<u64>().ok()
        };
        let (mut seen, mut dropped) = (None, None);
        for line in text.lines() {
            if let Some(n) = packets(line) {
                *(if line.contains("drop") { &mut dropped } else { &mut seen }) = Some(n);
            }
        }
        seen.zip(dropped)
    }

    /// The process id of member `i`'s agent, while it runs (`ip netns exec` execs the agent, so
    /// this is the agent itself).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.slots[i].agent.as_ref().map(|a| a.child.id())
    }

    /// The namespaces of the lab (members, the bridge, delay lines).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Ports of the bridge that are up.
    pub fn bridge_ports_up(&self) -> Result<usize, String> {
        let out = Command::new("ip")
            .args(["-n", &self.bridge, "-o", "link", "show", "master", "br0", "up"])
            .output()
            .map_err(|e| format!("ip: {e}"))?;
        if !out.status.success() {
            return Err(format!("ip link show master br0: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).lines().count())
    }

    /// The members each of `observers` lists (one entry per observer, in order).
    pub fn views(&self, observers: &[usize]) -> Vec<Result<Vec<Row>, String>> {
        let targets: Vec<(&File, SocketAddr, &str)> = observers
            .iter()
            .map(|&i| {
                let s = &self.slots[i];
                (&s.netns, SocketAddr::from((s.ip, HTTP_PORT)), s.name.as_str())
            })
            .collect();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    targets
                        .iter()
                        .map(|(ns, addr, name)| {
                            sys::enter_netns(ns).map_err(|e| format!("enter {name}'s namespace: {e}"))?;
                            members_of(*addr).map_err(|e| format!("{name}: /members: {e}"))
                        })
                        .collect()
                })
                .join()
                .expect("poller thread")
        })
    }

    /// The value of metric `name` (a line `name value` of `/metrics`) at each of `observers`;
    /// `None` where the agent did not answer or has no such line.
    pub fn metric(&self, observers: &[usize], name: &str) -> Vec<Option<f64>> {
        let targets: Vec<(&File, SocketAddr)> = observers
            .iter()
            .map(|&i| (&self.slots[i].netns, SocketAddr::from((self.slots[i].ip, HTTP_PORT))))
            .collect();
        let prefix = format!("{name} ");
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    targets
                        .iter()
                        .map(|(ns, addr)| {
                            sys::enter_netns(ns).ok()?;
                            let body = get(*addr, "/metrics").ok()?;
                            body.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
                        })
                        .collect()
                })
                .join()
                .expect("poller thread")
        })
    }

    /// Ok when each observer lists each of `subjects` as satisfying `ok` (a missing row is passed
    /// as `None`); otherwise the first disagreement.
    pub fn check(
        &self,
        observers: &[usize],
        subjects: &[usize],
        what: &str,
        ok: impl Fn(Option<&Row>) -> bool,
    ) -> Result<(), String> {
        for (&o, view) in observers.iter().zip(self.views(observers)) {
            let rows = view?;
            for &s in subjects {
                let row = rows.iter().find(|r| r.name == self.slots[s].name);
                if !ok(row) {
                    let seen = row.map_or("nothing", |r| r.state.as_str());
                    return Err(format!("{} lists {} as {seen}, not {what}", self.slots[o].name, self.slots[s].name));
                }
            }
        }
        Ok(())
    }

    /// Every observer lists every subject alive.
    pub fn all_alive(&self, observers: &[usize], subjects: &[usize]) -> Result<(), String> {
        self.check(observers, subjects, "alive", |r| r.is_some_and(Row::alive))
    }

    /// Every observer lists every subject dead (declared failed).
    pub fn all_dead(&self, observers: &[usize], subjects: &[usize]) -> Result<(), String> {
        self.check(observers, subjects, "dead", |r| r.is_some_and(|r| r.state == "dead"))
    }

    /// No observer lists any subject any more (reaped).
    pub fn all_forgotten(&self, observers: &[usize], subjects: &[usize]) -> Result<(), String> {
        self.check(observers, subjects, "forgotten", |r| r.is_none())
    }

    /// Every observer lists every subject, and none as dead or left (alive or suspect).
    pub fn none_dead(&self, observers: &[usize], subjects: &[usize]) -> Result<(), String> {
        self.check(observers, subjects, "alive or suspect", |r| r.is_some_and(|r| r.alive() || r.state == "suspect"))
    }

    fn cap(&self, what: &str, deadline: Instant) -> Instant {
        if deadline > self.end {
            report(&format!("{}: the wait for {what} is cut to the test's budget of {:?}", self.title, self.budget));
        }
        deadline.min(self.end)
    }

    /// Polls `check` until it holds or `limit` has passed since `since`; returns the time from
    /// `since` to the poll that succeeded, or the last reason it did not hold.
    pub fn try_wait(
        &self,
        what: &str,
        since: Instant,
        limit: Duration,
        mut check: impl FnMut() -> Result<(), String>,
    ) -> Result<Duration, String> {
        let deadline = self.cap(what, since + limit);
        loop {
            let result = check();
            let now = Instant::now();
            match result {
                Ok(()) => return Ok(now - since),
                Err(e) if now >= deadline => {
                    return Err(format!("{what}: not within {:?}: {e}", deadline.saturating_duration_since(since)))
                }
                Err(e) => {
                    if std::env::var_os("NETNS_DEBUG").is_some() {
                        report(&format!("DEBUG {what} +{:?}: {e}", now - since));
                    }
                    std::thread::sleep(POLL.min(deadline - now))
                }
            }
        }
    }

    /// As [`try_wait`](Self::try_wait), panicking when the condition is not met in time.
    pub fn wait(
        &self,
        what: &str,
        since: Instant,
        limit: Duration,
        check: impl FnMut() -> Result<(), String>,
    ) -> Duration {
        self.try_wait(what, since, limit, check).unwrap_or_else(|e| panic!("{}: {e}", self.title))
    }

    /// Checks `check` every `POLL` until `until`, collecting every failure (with its time from
    /// `since`); the scenario decides what a failure means.
    pub fn watch(
        &self,
        since: Instant,
        until: Instant,
        mut check: impl FnMut() -> Result<(), String>,
    ) -> Vec<(Duration, String)> {
        let until = self.cap("a watch", until);
        let mut failures = Vec::new();
        loop {
            if let Err(e) = check() {
                failures.push((Instant::now() - since, e));
            }
            let now = Instant::now();
            if now >= until {
                return failures;
            }
            std::thread::sleep(POLL.min(until - now));
        }
    }

    /// Sleeps until `t`: part of a scenario (a hold time), never a synchronisation.
    pub fn pause_until(&self, t: Instant) {
        let t = self.cap("a pause", t);
        if let Some(d) = t.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }

    /// Every event read so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The events read after the first `first` (events are kept in the order they were read), for
    /// a long run that takes them as they come rather than copying them all each time.
    pub fn events_from(&self, first: usize) -> Vec<Event> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.get(first..).unwrap_or_default().to_vec()
    }

    /// Frames the delay line of slow member `i` forwarded, `[from it, to it]`, and its errors.
    pub fn delay_stats(&self, i: usize) -> Option<delay::DelayStats> {
        self.delays.iter().find(|(j, _)| *j == i).map(|(_, d)| d.stats())
    }

    /// Round-trip times (ms) each observer reports for `subject`.
    pub fn rtts_to(&self, observers: &[usize], subject: usize) -> Vec<u64> {
        let name = &self.slots[subject].name;
        self.views(observers)
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|rows| rows.into_iter().find(|r| &r.name == name).and_then(|r| r.rtt_ms))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if let Some(mut agent) = slot.agent.take() {
                let _ = agent.child.kill();
                let _ = agent.child.wait();
                if let Some(r) = agent.reader.take() {
                    let _ = r.join();
                }
            }
        }
        // Stops the forwarding threads and closes their sockets, which hold the namespaces.
        self.delays.clear();
        self.slots.clear();
        let deletions: Vec<String> = self.namespaces.iter().map(|ns| format!("netns del {ns}")).collect();
        if ip_batch(None, &deletions).is_err() {
            // One at a time, so one that is already gone does not keep the others.
            for ns in &self.namespaces {
                let _ = run("ip", &["netns", "del", ns], None);
            }
        }
        if std::thread::panicking() {
            report(&format!("{}: agent logs kept in {}", self.title, self.logs.display()));
        } else {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
    }
}

/// The body of `GET path` from an agent.
fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (_, body) = response.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    Ok(body.to_string())
}

/// `GET /members` from an agent, parsed.
fn members_of(addr: SocketAddr) -> Result<Vec<Row>, String> {
    let body = get(addr, "/members")?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).map_err(|e| format!("bad JSON: {e}"))?;
    Ok(rows
        .into_iter()
        .map(|r| Row {
            name: r["name"].as_str().unwrap_or_default().to_string(),
            state: r["state"].as_str().unwrap_or_default().to_string(),
            rtt_ms: r["rtt_ms"].as_u64(),
        })
        .collect())
}
