//! `shoal-sim`: runs a standard simulation scenario and prints its figures.
//!
//! ```text
//! shoal-sim detect          [--nodes 100] [--trials 50] [--preset lan] [--loss 0] [--seed 1]
//! shoal-sim false-positives [--nodes 100] [--secs 300] [--loss 0.05] [--stalled 0.1] [--stall-ms 300] [--seed 1]
//! shoal-sim partition       [--nodes 6] [--secs 60] [--preset lan] [--seed 1]
//! shoal-sim broadcast       [--nodes 1000] [--loss 0.05] [--seed 1]
//! shoal-sim steady          [--nodes 1000] [--periods 100] [--seed 1]
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant as WallClock};

use shoal_core::sim::{scenario, LinkModel};
use shoal_core::{Config, Lifeguard};

struct Args {
    command: String,
    flags: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1);
        let command = it.next().ok_or("missing scenario name")?;
        let mut flags = HashMap::new();
        while let Some(flag) = it.next() {
            let name = flag.strip_prefix("--").ok_or_else(|| format!("unexpected argument {flag}"))?;
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            flags.insert(name.to_string(), value);
        }
        Ok(Args { command, flags })
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
        other => return Err(format!("unknown scenario {other}")),
    }
    println!("  wall time {:.2} s", wall.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    match Args::parse().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "shoal-sim: {e}\nusage: shoal-sim detect|false-positives|partition|broadcast|steady [--flag value]..."
            );
            ExitCode::from(2)
        }
    }
}
