//! Soak: real `shoal-agent` processes in network namespaces (the lab of `netns/mod.rs`) under
//! random packet loss for a long time, sampling what each agent costs and what it believes.
//!
//! ```text
//! cargo build --release -p shoal-agent
//! cargo bench -p shoal-tests --bench soak -- --agents 200 --minutes 60 --loss 0.02 --sample-secs 60
//! ```
//!
//! Needs root, `ip` and `nft` (otherwise it prints one `SKIP` line). The agents are the release
//! build of the same target directory (or `$SHOAL_AGENT_BIN`), LAN preset, all joining through
//! m0-m2. Steps: start every agent, wait (bounded by `--form-secs`) until every agent lists every
//! other alive, then add the loss (an nftables rule on the bridge dropping each IPv4 packet between
//! members with probability `--loss`, each way independently) and start the clock. Every
//! `--sample-secs` one line: each agent's RSS (`VmRSS`) and CPU time (`utime + stime`) from
//! `/proc`, and the cumulative `suspect` and `fail` events the agents printed since the clock
//! started. Every member runs the whole time, so every `fail` is a false failure; events are
//! counted as printed (each observer prints its own) and distinct by (member, incarnation, by).
//! At the end: every agent's `/members` must list everyone alive (polled once, then again for up
//! to a minute if not), and a summary with the RSS slope after the first 10 minutes (least squares
//! over the samples; over the second half when the run is shorter than 20 minutes) and the goals:
//! slope under 1 KB/min, no false failure. It samples each agent's live heap too (`shoal_agent_heap_bytes` on
//! `/metrics`), which tells a leak (the heap grows) from memory the allocator keeps (RSS grows, the heap not).
//!
//! Ctrl-C, SIGTERM or SIGHUP end the soak early with a summary of the samples taken so far (a
//! terminal's Ctrl-C also reaches the agents, which then leave); a second one kills the process
//! at once, and then the agents die with it (`PR_SET_PDEATHSIG`) and the next lab deletes the
//! namespaces left behind. A panic unwinds through the lab, which kills the agents and deletes the
//! namespaces.

#[path = "../netns/mod.rs"]
mod netns;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netns::{Event, Lab, LabSpec, Row};

/// The RSS slope goal, KB per minute, and when the fit starts.
const SLOPE_GOAL: f64 = 1.0;
const WARM_UP_MIN: f64 = 10.0;
/// How often formation and the final check poll every agent's `/members` (a poll of 200 agents
/// reads 200 lists of 200 rows).
const POLL_EVERY: Duration = Duration::from_secs(2);
/// How long the final check keeps polling when its first poll finds someone not alive.
const FINAL_CHECK: Duration = Duration::from_secs(60);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// The first SIGINT, SIGTERM or SIGHUP sets [`STOP`]; the handler is then reset, so a second
/// one has its default effect.
fn install_signal_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// One line on stdout; write errors (a closed terminal) are ignored so the cleanup still runs.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "soak: {line}");
    let _ = out.flush();
}

struct Args {
    agents: usize,
    minutes: f64,
    loss: f64,
    sample_secs: f64,
    form_secs: f64,
}

impl Args {
    /// `--name value` or `--name=value`; unknown flags (cargo passes `--bench`) are ignored.
    fn parse() -> Args {
        let mut args = Args { agents: 200, minutes: 60.0, loss: 0.02, sample_secs: 60.0, form_secs: 300.0 };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let known = ["--agents", "--minutes", "--loss", "--sample-secs", "--form-secs"];
            if !known.contains(&flag.as_str()) {
                continue;
            }
            let value = inline.or_else(|| it.next()).unwrap_or_else(|| panic!("{flag} needs a value"));
            let number = |v: &str| v.parse::<f64>().unwrap_or_else(|_| panic!("{flag}: not a number: {v}"));
            match flag.as_str() {
                "--agents" => args.agents = value.parse().unwrap_or_else(|_| panic!("--agents: not a count: {value}")),
                "--minutes" => args.minutes = number(&value),
                "--loss" => args.loss = number(&value),
                "--sample-secs" => args.sample_secs = number(&value),
                _ => args.form_secs = number(&value),
            }
        }
        assert!((1..=250).contains(&args.agents), "--agents: 1 to 250");
        assert!(args.minutes > 0.0 && args.sample_secs > 0.0 && args.form_secs > 0.0, "durations must be positive");
        assert!((0.0..1.0).contains(&args.loss), "--loss is a fraction (0.02 for 2 %)");
        args
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "?".into(), |s| s.trim().to_string())
}

/// A KB field (`VmRSS`, `RssAnon`) of a process's status; `None` once it is gone.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `VmRSS` of a process, KB: everything resident, pages of the binary and libraries included
/// (which grow as code paths run for the first time).
fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS")
}

/// `RssAnon` of a process, KB: resident heap and stacks, what a leak would grow.
fn anon_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "RssAnon")
}

/// User plus system CPU time of a process, clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain. utime and stime are
    // fields 14 and 15, so the 12th and 13th after the name.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// A field of `/proc/self/status` (`Threads`, `VmRSS`).
fn own_status(field: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().to_string()))
        .unwrap_or_else(|| "?".into())
}

fn own_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Least-squares slope of `y` over `x`, or `None` with fewer than two distinct `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Accusations as printed and as distinct (member, incarnation, by).
#[derive(Default)]
struct Tally {
    printed: usize,
    distinct: HashSet<(String, u64, String)>,
}

impl Tally {
    fn add(&mut self, e: &Event) -> bool {
        self.printed += 1;
        self.distinct.insert((e.member.clone(), e.incarnation, e.by.clone().unwrap_or_default()))
    }

    fn show(&self) -> String {
        format!("{} ({} printed)", self.distinct.len(), self.printed)
    }
}

#[derive(Default)]
struct Counts {
    suspicions: Tally,
    failures: Tally,
    /// Distinct failures in the order they came: (minutes since the clock started, member,
    /// incarnation, by).
    failure_list: Vec<(f64, String, u64, String)>,
    /// Events of other kinds, as printed.
    others: BTreeMap<String, usize>,
}

impl Counts {
    fn add(&mut self, e: &Event, t0: Instant) {
        match e.kind.as_str() {
            "suspect" => {
                self.suspicions.add(e);
            }
            "fail" => {
                if self.failures.add(e) {
                    let t = e.at.saturating_duration_since(t0).as_secs_f64() / 60.0;
                    self.failure_list.push((t, e.member.clone(), e.incarnation, e.by.clone().unwrap_or_default()));
                }
            }
            kind => *self.others.entry(kind.to_string()).or_default() += 1,
        }
    }
}

struct Sample {
    /// Minutes since the loss was added.
    t: f64,
    at: Instant,
    rss: Vec<Option<u64>>,
    anon: Vec<Option<u64>>,
    cpu: Vec<Option<u64>>,
    /// Live heap, bytes (`shoal_agent_heap_bytes` on `/metrics`): what a leak would grow.
    heap: Vec<Option<f64>>,
    threads: Vec<Option<u64>>,
}

impl Sample {
    fn take(lab: &Lab, t0: Instant) -> Sample {
        let at = Instant::now();
        let pids: Vec<Option<u32>> = (0..lab.len()).map(|i| lab.pid(i)).collect();
        Sample {
            t: at.saturating_duration_since(t0).as_secs_f64() / 60.0,
            at,
            rss: pids.iter().map(|p| p.and_then(rss_kb)).collect(),
            anon: pids.iter().map(|p| p.and_then(anon_kb)).collect(),
            cpu: pids.iter().map(|p| p.and_then(cpu_ticks)).collect(),
            heap: lab.metric(&lab.all(), "shoal_agent_heap_bytes"),
            threads: pids.iter().map(|p| p.and_then(|p| status_kb(p, "Threads"))).collect(),
        }
    }

    /// Mean live heap per agent, KB.
    fn mean_heap(&self) -> Option<f64> {
        mean(self.heap.iter().flatten().map(|&b| b / 1024.0))
    }

    fn max_threads(&self) -> u64 {
        self.threads.iter().flatten().copied().max().unwrap_or(0)
    }

    fn gone(&self) -> usize {
        self.rss.iter().filter(|r| r.is_none()).count()
    }

    fn mean_rss(&self) -> Option<f64> {
        mean(self.rss.iter().flatten().map(|&r| r as f64))
    }

    fn mean_anon(&self) -> Option<f64> {
        mean(self.anon.iter().flatten().map(|&r| r as f64))
    }

    /// Each agent's CPU use between `earlier` and this sample, percent of one core.
    fn cpu_percent(&self, earlier: &Sample, hz: f64) -> Vec<f64> {
        let secs = (self.at - earlier.at).as_secs_f64();
        if secs <= 0.0 {
            return Vec::new();
        }
        self.cpu
            .iter()
            .zip(&earlier.cpu)
            .filter_map(|(now, then)| Some(now.as_ref()?.saturating_sub(*then.as_ref()?) as f64 / hz / secs * 100.0))
            .collect()
    }
}

/// Polls `check` every [`POLL_EVERY`] until it holds, `limit` passes, or a signal stops the run.
fn poll_until(limit: Duration, mut check: impl FnMut() -> Result<(), String>) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let result = check();
        let elapsed = start.elapsed();
        match result {
            Ok(()) => return Ok(elapsed),
            Err(e) if elapsed >= limit => return Err(format!("not within {limit:?}: {e}")),
            Err(_) if stopped() => return Err("interrupted".into()),
            Err(_) => std::thread::sleep(POLL_EVERY),
        }
    }
}

/// What every agent's `/members` says about every member: pairs (observer, member) by state.
fn census(lab: &Lab) -> (BTreeMap<String, usize>, Option<String>) {
    let all = lab.all();
    let mut states = BTreeMap::new();
    let mut example = None;
    for (o, view) in all.iter().zip(lab.views(&all)) {
        match view {
            Err(e) => {
                *states.entry("no answer".to_string()).or_default() += all.len();
                example.get_or_insert(e);
            }
            Ok(rows) => {
                for &s in &all {
                    let row: Option<&Row> = rows.iter().find(|r| r.name == lab.name(s));
                    let state = row.map_or("missing", |r| if r.alive() { "alive" } else { r.state.as_str() });
                    *states.entry(state.to_string()).or_default() += 1;
                    if state != "alive" {
                        example.get_or_insert_with(|| format!("{} lists {} as {state}", lab.name(*o), lab.name(s)));
                    }
                }
            }
        }
    }
    (states, example)
}

fn main() -> ExitCode {
    let args = Args::parse();
    install_signal_handlers();
    let n = args.agents;
    let soak = Duration::from_secs_f64(args.minutes * 60.0);
    let interval = Duration::from_secs_f64(args.sample_secs);
    let form = Duration::from_secs_f64(args.form_secs);
    // The lab cuts its own waits (the seeds' start-up) to this; the soak's are its own.
    let budget = form + soak + FINAL_CHECK + Duration::from_secs(300);
    say(&format!(
        "{n} agents, {} min, loss {:.2} % each way, a sample every {} s; load average at start: {}",
        args.minutes,
        args.loss * 100.0,
        args.sample_secs,
        loadavg()
    ));
    let Some(mut lab) = Lab::new(LabSpec::new("soak", n, budget)) else { return ExitCode::SUCCESS };
    let namespaces = lab.namespaces().to_vec();
    let code = run(&mut lab, &args, soak, interval, form);
    drop(lab);
    let listed = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    let left: Vec<&String> = {
        let listed = String::from_utf8_lossy(&listed);
        let names: HashSet<&str> = listed.lines().filter_map(|l| l.split_whitespace().next()).collect();
        namespaces.iter().filter(|ns| names.contains(ns.as_str())).collect()
    };
    say(&format!(
        "cleanup: agents killed, {} of the lab's {} namespaces left{}",
        left.len(),
        namespaces.len(),
        left.first().map_or_else(String::new, |ns| format!(" (first: {ns})"))
    ));
    code
}

fn run(lab: &mut Lab, args: &Args, soak: Duration, interval: Duration, form: Duration) -> ExitCode {
    let n = lab.len();
    let all = lab.all();
    let hz = clock_ticks_per_sec();
    let started = Instant::now();
    lab.start_all();
    let spawned = started.elapsed();

    // The lab at this size: processes, namespaces, bridge ports, this process's descriptors.
    // Each pid is `ip netns exec` until it has entered the namespace and executed the agent.
    let pids: Vec<Option<u32>> = (0..n).map(|i| lab.pid(i)).collect();
    let is_agent =
        |p: &u32| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "shoal-agent");
    let _ = poll_until(Duration::from_secs(10), || match pids.iter().flatten().filter(|p| !is_agent(p)).count() {
        0 => Ok(()),
        k => Err(format!("{k} not yet")),
    });
    let agents = pids.iter().flatten().filter(|p| is_agent(p)).count();
    let listed = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    let listed = String::from_utf8_lossy(&listed);
    let present =
        lab.namespaces().iter().filter(|ns| listed.lines().any(|l| l.split_whitespace().next() == Some(ns))).count();
    say(&format!(
        "lab: {agents} of {n} pids are shoal-agent processes (started in {:.1} s); {present} of {} namespaces \
         present; bridge ports up: {}; this process: {} threads, {} open descriptors",
        spawned.as_secs_f64(),
        lab.namespaces().len(),
        lab.bridge_ports_up().map_or_else(|e| format!("? ({e})"), |p| p.to_string()),
        own_status("Threads"),
        own_fds(),
    ));
    if agents != n {
        say("FAILED: not every member runs a shoal-agent");
        return ExitCode::FAILURE;
    }

    let formed = poll_until(form.saturating_sub(started.elapsed()), || lab.all_alive(&all, &all));
    let formed = match formed {
        Ok(_) => started.elapsed(),
        Err(e) => {
            say(&format!("FAILED: all {n} alive everywhere: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let poll_cost = {
        let t = Instant::now();
        let _ = lab.views(&all);
        t.elapsed()
    };
    let mut forming = Counts::default();
    let events = lab.events_from(0);
    let mut cursor = events.len();
    for e in &events {
        forming.add(e, started);
    }
    say(&format!(
        "formed: every agent lists all {n} alive {:.1} s after the first start (one poll of every /members took \
         {:.2} s); while forming: suspicions {}, failed {}",
        formed.as_secs_f64(),
        poll_cost.as_secs_f64(),
        forming.suspicions.show(),
        forming.failures.show(),
    ));

    lab.set_loss(args.loss);
    let t0 = Instant::now();
    let mut counts = Counts::default();
    let mut samples = vec![Sample::take(lab, t0)];
    say(&format!(
        "t = 0: loss on; RSS mean {:.0} KB max {} KB",
        samples[0].mean_rss().unwrap_or(0.0),
        samples[0].rss.iter().flatten().max().copied().unwrap_or(0)
    ));
    let mut k = 1u32;
    while !stopped() {
        let due = (t0 + interval * k).min(t0 + soak);
        while !stopped() && Instant::now() < due {
            std::thread::sleep(Duration::from_millis(250).min(due.saturating_duration_since(Instant::now())));
        }
        if stopped() {
            break;
        }
        let sample = Sample::take(lab, t0);
        let fresh = lab.events_from(cursor);
        cursor += fresh.len();
        for e in &fresh {
            counts.add(e, t0);
        }
        let previous = samples.last().expect("the t = 0 sample");
        let cpu = sample.cpu_percent(previous, hz);
        let measured = lab.loss_counters().map_or_else(
            || "?".into(),
            |(seen, dropped)| format!("{:.2} %", dropped as f64 * 100.0 / seen.max(1) as f64),
        );
        say(&format!(
            "t = {:5.1} min  RSS mean {:.0} KB max {} KB (anon mean {:.0} KB, live heap mean {:.1} KB, threads max {})  CPU per agent mean {:.2} % max {:.2} %  suspicions {}  \
             failed {}  loss {measured}  load {}{}",
            sample.t,
            sample.mean_rss().unwrap_or(0.0),
            sample.rss.iter().flatten().max().copied().unwrap_or(0),
            sample.mean_anon().unwrap_or(0.0),
            sample.mean_heap().unwrap_or(0.0),
            sample.max_threads(),
            mean(cpu.iter().copied()).unwrap_or(0.0),
            cpu.iter().copied().fold(0.0, f64::max),
            counts.suspicions.show(),
            counts.failures.show(),
            loadavg().split_whitespace().next().unwrap_or("?"),
            match sample.gone() {
                0 => String::new(),
                g => format!("  AGENTS GONE: {g}"),
            },
        ));
        samples.push(sample);
        if due >= t0 + soak {
            break;
        }
        k += 1;
    }
    let interrupted = stopped();

    // Everyone must still list everyone alive (the loss stays on; a suspicion may be under way).
    let final_check = if interrupted {
        "skipped (interrupted)".to_string()
    } else {
        let (states, example) = census(lab);
        let alive = states.get("alive").copied().unwrap_or(0);
        if alive == n * n {
            format!("every agent lists all {n} alive")
        } else {
            let settled = poll_until(FINAL_CHECK, || lab.all_alive(&all, &all));
            format!(
                "first poll: {states:?} of {} (observer, member) pairs, e.g. {}; {}",
                n * n,
                example.unwrap_or_default(),
                settled.map_or_else(
                    |e| format!("NOT all alive since: {e}"),
                    |t| format!("all alive everywhere {:.1} s later", t.as_secs_f64())
                ),
            )
        }
    };
    // The loss is still on: an accusation during the final check counts too.
    for e in lab.events_from(cursor) {
        counts.add(&e, t0);
    }
    let loss = lab.loss_counters();

    // The summary.
    let last = samples.last().expect("samples");
    let span = last.t;
    let from = if args.minutes >= 2.0 * WARM_UP_MIN { WARM_UP_MIN } else { span / 2.0 };
    let window: Vec<&Sample> = samples.iter().filter(|s| s.t >= from - 1e-9).collect();
    let mean_points: Vec<(f64, f64)> = window.iter().filter_map(|s| Some((s.t, s.mean_rss()?))).collect();
    let mean_slope = slope(&mean_points);
    let mut agent_slopes: Vec<(f64, usize)> = (0..n)
        .filter_map(|i| {
            let points: Option<Vec<(f64, f64)>> = window.iter().map(|s| Some((s.t, s.rss[i]? as f64))).collect();
            Some((slope(&points?)?, i))
        })
        .collect();
    agent_slopes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let cpu_all = last.cpu_percent(&samples[0], hz);
    let cpu_after_warm_up = window.first().map(|w| last.cpu_percent(w, hz)).unwrap_or_default();
    let kb = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.2} KB/min"));
    let slope_held = mean_slope.map(|s| s < SLOPE_GOAL);
    let failures = counts.failures.distinct.len();

    say("summary:");
    if interrupted {
        say(&format!("  INTERRUPTED at t = {span:.1} min of {}: the figures cover the samples taken", args.minutes));
    }
    say(&format!(
        "  {n} agents, loss {:.2} % set ({}), {:.1} min under loss, {} samples",
        args.loss * 100.0,
        loss.map_or_else(
            || "measured: ?".into(),
            |(seen, dropped)| format!(
                "measured {:.3} %: {dropped} of {seen} IPv4 packets dropped",
                dropped as f64 * 100.0 / seen.max(1) as f64
            )
        ),
        span,
        samples.len()
    ));
    say(&format!(
        "  false failures: {} distinct (member, incarnation, by), {} failed events printed; goal 0: {}",
        failures,
        counts.failures.printed,
        if failures == 0 { "HELD" } else { "MISSED" }
    ));
    for (t, member, incarnation, by) in counts.failure_list.iter().take(10) {
        say(&format!("    t = {t:.1} min: {member} (incarnation {incarnation}) declared failed by {by}"));
    }
    say(&format!(
        "  suspicions: {} distinct ({} suspect events printed); other events since t = 0: {:?}",
        counts.suspicions.distinct.len(),
        counts.suspicions.printed,
        counts.others
    ));
    say(&format!(
        "  CPU per agent: mean {:.2} % of a core over the soak, {:.2} % from t = {from:.1} min (max agent {:.2} %)",
        mean(cpu_all.iter().copied()).unwrap_or(0.0),
        mean(cpu_after_warm_up.iter().copied()).unwrap_or(0.0),
        cpu_after_warm_up.iter().copied().fold(0.0, f64::max),
    ));
    say(&format!(
        "  RSS per agent (mean): {:.0} KB at t = 0, {:.0} KB at t = {from:.1} min, {:.0} KB at t = {span:.1} min",
        samples[0].mean_rss().unwrap_or(0.0),
        window.first().and_then(|s| s.mean_rss()).unwrap_or(0.0),
        last.mean_rss().unwrap_or(0.0),
    ));
    if args.minutes < 2.0 * WARM_UP_MIN {
        say(&format!(
            "  (the run is shorter than {} min: the slope is fitted over its second half, t >= {from:.1} min, not \
             after the first {WARM_UP_MIN} min)",
            2.0 * WARM_UP_MIN
        ));
    }
    say(&format!(
        "  RSS slope from t = {from:.1} min ({} samples): mean RSS {}; per agent: median {}, max {}; goal < {SLOPE_GOAL} \
         KB/min: {}",
        mean_points.len(),
        kb(mean_slope),
        kb(agent_slopes.get(agent_slopes.len() / 2).map(|a| a.0)),
        agent_slopes.last().map_or_else(|| "n/a".into(), |&(v, i)| format!("{v:.2} KB/min ({})", lab.name(i))),
        match slope_held {
            Some(true) => "HELD",
            Some(false) => "MISSED",
            None => "n/a (too few samples)",
        }
    ));
    let anon_points: Vec<(f64, f64)> = window.iter().filter_map(|s| Some((s.t, s.mean_anon()?))).collect();
    say(&format!(
        "  anonymous memory (heap and stacks, RssAnon) per agent: {:.0} KB at t = 0, {:.0} KB at the end; slope from \
         t = {from:.1} min: {} (the rest of RSS is pages of the binary and libraries)",
        samples[0].mean_anon().unwrap_or(0.0),
        last.mean_anon().unwrap_or(0.0),
        kb(slope(&anon_points)),
    ));
    let heap_points: Vec<(f64, f64)> = window.iter().filter_map(|s| Some((s.t, s.mean_heap()?))).collect();
    say(&format!(
        "  live heap per agent (shoal_agent_heap_bytes): {:.1} KB at t = 0, {:.1} KB at the end; slope from t = \
         {from:.1} min: {}; threads per agent at most {}",
        samples[0].mean_heap().unwrap_or(0.0),
        last.mean_heap().unwrap_or(0.0),
        kb(slope(&heap_points)),
        samples.iter().map(Sample::max_threads).max().unwrap_or(0),
    ));
    say(&format!("  final check: {final_check}"));
    say(&format!(
        "  agents gone during the soak: {}; this process: {} threads, {} descriptors, RSS {}",
        last.gone(),
        own_status("Threads"),
        own_fds(),
        own_status("VmRSS")
    ));
    say(&format!("  load average at end: {}", loadavg()));
    ExitCode::SUCCESS
}
