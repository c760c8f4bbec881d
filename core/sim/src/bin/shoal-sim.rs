//! `shoal-sim`: runs a standard simulation scenario and prints its figures.
//!
//! ```text
//! shoal-sim detect          [--nodes 100] [--trials 50] [--preset lan] [--loss 0] [--seed 1]
//! shoal-sim false-positives [--nodes 100] [--secs 300] [--loss 0.05] [--stalled 0.1] [--stall-ms 300] [--seed 1]
//! shoal-sim partition       [--nodes 6] [--secs 60] [--preset lan] [--seed 1]
//! shoal-sim broadcast       [--nodes 1000] [--loss 0.05] [--seed 1]
//! shoal-sim steady          [--nodes 1000] [--periods 100] [--seed 1]
//! shoal-sim detection-curve [--nodes 50] [--alphas 1,2,3,4] [--loss 0.05] [--trials 40] [--secs 300] [--stall-ms 300] [--checks on|off|both] [--k K]
//! shoal-sim traffic         [--nodes 1000] [--periods 2] [--preset lan] [--digests on|off|both] [--seed 1]
//! shoal-sim swarm           [--seeds 500] [--from S] [--threads 2]     random scenarios, every oracle
//! shoal-sim swarm           --seed S [--shrink]                       replay one seed (and shrink it)
//! shoal-sim swarm           --replay SPEC                             replay a shrunk scenario
//! ```
//!
//! `swarm` without `--from` starts at a fresh seed (from the clock) and prints it; a failing seed
//! prints its scenario, what failed and the command that replays it. Exit status 1 if any failed.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant as WallClock};

use shoal_core::{Config, Lifeguard};
use shoal_sim::{scenario, swarm, LinkModel};

struct Args {
    command: String,
    flags: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1);
        let command = it.next().ok_or("missing scenario name")?;
        let mut flags = HashMap::new();
        let mut it = it.peekable();
        while let Some(flag) = it.next() {
            let name = flag.strip_prefix("--").ok_or_else(|| format!("unexpected argument {flag}"))?;
            // A flag followed by another flag (or nothing) is a switch.
            let value = match it.peek() {
                Some(v) if !v.starts_with("--") => it.next().unwrap_or_default(),
                _ => String::from("true"),
            };
            flags.insert(name.to_string(), value);
        }
        Ok(Args { command, flags })
    }

    /// A switch given as `--NAME on|off|both` (`default` when absent): the settings to run, off first.
    fn on_off_both(&self, name: &str, default: &str) -> Result<&'static [bool], String> {
        match self.flags.get(name).map_or(default, String::as_str) {
            "on" => Ok(&[true]),
            "off" => Ok(&[false]),
            "both" => Ok(&[false, true]),
            other => Err(format!("--{name}: on, off or both, not {other}")),
        }
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.flags.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: cannot parse {v:?}")),
        }
    }

    fn preset(&self) -> Result<Config, String> {
        match self.flags.get("preset").map(String::as_str).unwrap_or("lan") {
            "lan" => Ok(Config::lan()),
            "wan" => Ok(Config::wan()),
            "local" => Ok(Config::local()),
            "browser" => Ok(Config::browser()),
            other => Err(format!("unknown preset {other}")),
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let seed: u64 = args.get("seed", 1)?;
    let wall = WallClock::now();
    match args.command.as_str() {
        "detect" => {
            let nodes = args.get("nodes", 100)?;
            let trials = args.get("trials", 50)?;
            let loss = args.get("loss", 0.0)?;
            let config = args.preset()?;
            let r = scenario::crash_detection(nodes, config, LinkModel { loss, ..LinkModel::LAN }, trials, seed);
            println!("crash detection: {nodes} members, {} trials, loss {loss}", r.trials);
            println!(
                "  first detection (periods): median {:.2}  p90 {:.2}  max {:.2}",
                scenario::median(&r.first_detection_periods),
                scenario::percentile(&r.first_detection_periods, 0.9),
                scenario::percentile(&r.first_detection_periods, 1.0)
            );
            println!(
                "  declared failed by all (s): median {:.2}  p90 {:.2}  undetected {}",
                scenario::median(&r.all_failed_secs),
                scenario::percentile(&r.all_failed_secs, 0.9),
                r.undetected
            );
            println!("  false positives: {}", r.false_positives);
        }
        "false-positives" => {
            let nodes = args.get("nodes", 100)?;
            let secs = args.get("secs", 300)?;
            let loss = args.get("loss", 0.05)?;
            let share = args.get("stalled", 0.1)?;
            let stall = Duration::from_millis(args.get("stall-ms", 300)?);
            let pattern = match args.flags.get("pattern").map(String::as_str).unwrap_or("slow") {
                "slow" => scenario::StallPattern::SlowMembers,
                "rotating" => scenario::StallPattern::Rotating,
                "slow-receive" => scenario::StallPattern::SlowReceive,
                other => return Err(format!("unknown stall pattern {other} (slow, rotating or slow-receive)")),
            };
            println!("false positives: {nodes} members, {secs} s, loss {loss}, {share} of members stalled {stall:?} at a time ({pattern:?})");
            for (name, lg) in [("lifeguard on ", Lifeguard::ON), ("lifeguard off", Lifeguard::OFF)] {
                let r = scenario::false_positives(
                    nodes,
                    args.preset()?,
                    lg,
                    loss,
                    share,
                    stall,
                    pattern,
                    Duration::from_secs(secs),
                    seed,
                );
                println!(
                    "  {name}: false positives {:>6} (of healthy members {:>6})  suspicions of live members {:>7}  stalls {}",
                    r.false_positives, r.false_positives_of_healthy, r.suspicions_of_live, r.stalls
                );
            }
        }
        "partition" => {
            let nodes = args.get("nodes", 6)?;
            let secs = args.get("secs", 60)?;
            let r = scenario::partition_heal(nodes, args.preset()?, Duration::from_secs(secs), seed);
            println!("partition {}+{} for {secs} s", nodes / 2, nodes - nodes / 2);
            println!("  split seen by all after: {:?}", r.split_detected);
            println!("  converged after heal in: {:?}", r.heal_converged);
            for (t, a) in r.curve.iter().step_by(5) {
                println!("    t+{t:>5.1}s agreement {:.3}", a);
            }
        }
        "broadcast" => {
            let nodes = args.get("nodes", 1000)?;
            let loss = args.get("loss", 0.05)?;
            let r = scenario::broadcast_spread(nodes, loss, seed);
            println!("broadcast to {nodes} members at loss {loss}");
            println!(
                "  delivered {}/{}  all after {:?}  = {:.1} gossip rounds (3 log2 n = {:.1})",
                r.delivered,
                nodes - 1,
                r.all_delivered,
                r.rounds.unwrap_or(f64::NAN),
                3.0 * (nodes as f64).log2()
            );
        }
        "steady" => {
            let nodes = args.get("nodes", 1000)?;
            let periods = args.get("periods", 100)?;
            let r = scenario::steady_state(nodes, periods, seed);
            let secs = f64::from(periods) * Config::lan().probe_interval.as_secs_f64();
            println!("steady state: {nodes} members x {periods} periods");
            println!(
                "  packets/member/s {:.2}  bytes/member/s {:.1}  false positives {}",
                r.packets as f64 / nodes as f64 / secs,
                r.bytes as f64 / nodes as f64 / secs,
                r.false_positives
            );
        }
        "detection-curve" => {
            // Detection time against accuracy as the suspicion multiplier α varies, Lifeguard on
            // and off, same seeds: crashes in a lossy network (time until every member declared the
            // crashed one failed), and false positives among members that stall briefly.
            let nodes = args.get("nodes", 50)?;
            let trials = args.get("trials", 40)?;
            let loss = args.get("loss", 0.05)?;
            let secs = args.get("secs", 300)?;
            let stall = Duration::from_millis(args.get("stall-ms", 300)?);
            let alphas: Vec<u32> = args
                .flags
                .get("alphas")
                .map_or("1,2,3,4", String::as_str)
                .split(',')
                .map(|a| a.trim().parse().map_err(|_| format!("--alphas: cannot parse {a:?}")))
                .collect::<Result<_, _>>()?;
            println!(
                "detection curve: {nodes} members, loss {loss}, {trials} crashes; false positives over {secs} s with 10% of members stalled {stall:?} at a time"
            );
            println!(
                "  {:<15} {:>5} {:>14} {:>11} {:>16} {:>22}",
                "lifeguard", "alpha", "all failed (s)", "p90 (s)", "false positives", "of healthy members"
            );
            let k: Option<u32> = args.flags.get("k").map(|v| v.parse()).transpose().map_err(|_| "--k: not a number")?;
            let checks = args.on_off_both("checks", "on")?;
            let modes = [("on", Lifeguard::ON), ("off", Lifeguard::OFF)]
                .into_iter()
                .flat_map(|(name, lg)| checks.iter().map(move |&c| (name, lg, c)));
            for (lifeguard, lg, check) in modes {
                let name = format!("{lifeguard}{}", if check { "" } else { ", no checks" });
                for &alpha in &alphas {
                    let mut config = args.preset()?;
                    config.suspicion_mult = alpha;
                    if let Some(k) = k {
                        config.suspicion_confirmations = k;
                    }
                    config.lifeguard = lg;
                    config.suspect_checks = check;
                    config.validate().map_err(|e| format!("alpha {alpha}: {e:?}"))?;
                    let d = scenario::crash_detection(
                        nodes,
                        config.clone(),
                        LinkModel { loss, ..LinkModel::LAN },
                        trials,
                        seed,
                    );
                    let f = scenario::false_positives(
                        nodes,
                        config,
                        lg,
                        loss,
                        0.1,
                        stall,
                        scenario::StallPattern::SlowMembers,
                        Duration::from_secs(secs),
                        seed,
                    );
                    println!(
                        "  {:<15} {:>5} {:>14.2} {:>11.2} {:>16} {:>22}",
                        name,
                        alpha,
                        scenario::median(&d.all_failed_secs),
                        scenario::percentile(&d.all_failed_secs, 0.9),
                        f.false_positives + d.false_positives,
                        f.false_positives_of_healthy
                    );
                }
            }
        }
        "traffic" => {
            let nodes = args.get("nodes", 1000)?;
            let periods = args.get("periods", 2)?;
            let preset = args.preset()?;
            let modes = args.on_off_both("digests", "both")?;
            println!("traffic: {nodes} members, {periods} push-pull periods after a warm-up, per member per second");
            println!(
                "  {:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  {:>8}",
                "digests", "ping", "ack", "ping-req", "nack", "gossip", "push-pull", "direct", "all", "packets"
            );
            for &digests in modes {
                let mut config = preset.clone();
                config.push_pull_digests = digests;
                let r = scenario::traffic(nodes, config, periods, seed);
                let per = |b: u64| b as f64 / nodes as f64 / r.secs;
                let by_kind: Vec<String> = r.bytes.iter().map(|&b| format!("{:>9.1}", per(b))).collect();
                println!(
                    "  {:<8} {} {:>9.1}  {:>8.2}   (bytes; {} digest requests, {} of {} push-pulls as packets, {} false positives)",
                    if digests { "on" } else { "off" },
                    by_kind.join(" "),
                    r.bytes_per_member_s(),
                    r.packets_per_member_s(),
                    r.member_digests,
                    r.push_pulls_as_packets,
                    r.push_pulls,
                    r.false_positives
                );
            }
        }
        "swarm" => return swarm(args),
        other => return Err(format!("unknown scenario {other}")),
    }
    println!("  wall time {:.2} s", wall.elapsed().as_secs_f64());
    Ok(())
}

/// Prints a failed outcome: what failed, the scenario, and how to replay it.
fn print_failure(o: &swarm::Outcome) {
    let oracles: Vec<String> = o.failed_oracles().iter().map(|x| x.to_string()).collect();
    println!("FAIL seed {}: {}", o.scenario.seed, oracles.join(", "));
    println!("  scenario: {}", o.scenario.summary());
    for v in &o.violations {
        println!("  {v}");
    }
    println!("  replay: shoal-sim swarm --replay {}", o.scenario.spec());
}

fn print_faults(s: &swarm::Scenario) {
    for f in &s.faults {
        println!("    {:>9} ms  {:?}", f.at_ms, f.kind);
    }
}

fn swarm(args: &Args) -> Result<(), String> {
    let wall = WallClock::now();
    // A panic inside a scenario is caught and reported as a violation; say where it happened in one
    // line instead of a backtrace per seed.
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("panic at {at}: {info}");
    }));
    let single = match (args.flags.get("replay"), args.flags.get("seed")) {
        (Some(spec), _) => Some(swarm::Scenario::from_spec(spec)?),
        (None, Some(seed)) => Some(swarm::Scenario::draw(seed.parse().map_err(|_| "--seed: not a number")?)),
        _ => None,
    };
    if let Some(scenario) = single {
        println!("swarm scenario {}: {}", scenario.spec(), scenario.summary());
        print_faults(&scenario);
        let outcome = swarm::run(&scenario);
        println!(
            "  simulated {:.1} s, {} packets, {} broadcasts, {} reliable messages, wall {:.2} s",
            outcome.simulated_ms as f64 / 1000.0,
            outcome.packets,
            outcome.broadcasts,
            outcome.reliable_messages,
            wall.elapsed().as_secs_f64()
        );
        if outcome.passed() {
            println!("PASS");
            return Ok(());
        }
        print_failure(&outcome);
        if args.flags.contains_key("shrink") {
            let oracle = outcome.failed_oracles()[0];
            let budget: usize = args.get("budget", 200)?;
            println!("shrinking (oracle {oracle}, at most {budget} runs)...");
            if let Some((smaller, o)) = swarm::shrink(&scenario, oracle, budget) {
                println!("smallest failing scenario: {}", smaller.summary());
                print_faults(&smaller);
                print_failure(&o);
            }
        }
        return Err(String::from("the scenario failed"));
    }
    let count: usize = args.get("seeds", 500)?;
    let threads: usize = args.get("threads", std::thread::available_parallelism().map_or(2, |n| n.get()))?;
    let fresh = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().wrapping_mul(1_000_003));
    let from: u64 = args.get("from", fresh)?;
    println!("swarm: {count} seeds from {from} on {threads} threads");
    let seeds: Vec<u64> = (0..count as u64).map(|k| from.wrapping_add(k)).collect();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let report = swarm::campaign(&seeds, threads, &|o| {
        let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if !o.passed() {
            print_failure(o);
        } else if k % 1000 == 0 {
            println!("  {k} seeds done");
        }
    });
    let mut by_oracle: HashMap<String, usize> = HashMap::new();
    for f in &report.failures {
        for o in f.failed_oracles() {
            *by_oracle.entry(o.to_string()).or_default() += 1;
        }
    }
    println!(
        "swarm: {} seeds, {} failed {:?}; simulated {:.0} s, {} packets, {} broadcasts, {} reliable messages; wall {:.1} s",
        report.seeds,
        report.failures.len(),
        by_oracle,
        report.simulated_ms as f64 / 1000.0,
        report.packets,
        report.broadcasts,
        report.reliable_messages,
        wall.elapsed().as_secs_f64()
    );
    if report.failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {} seeds failed", report.failures.len(), report.seeds))
    }
}

fn main() -> ExitCode {
    match Args::parse().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.contains("failed") => {
            eprintln!("shoal-sim: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!(
                "shoal-sim: {e}\nusage: shoal-sim detect|false-positives|partition|broadcast|steady|traffic|detection-curve|swarm [--flag value]..."
            );
            ExitCode::from(2)
        }
    }
}
