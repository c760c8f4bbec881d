//! Swarm testing: deterministic simulation over many random scenarios, with oracles.
//!
//! A hand-written test checks what its author imagined. The swarm checks properties instead, over
//! thousands of scenarios nobody wrote: each seed draws a cluster (3 to 200 members, presets alone or
//! mixed, 0-20% loss, latency and jitter, lossy one-way links, encryption with or without a key
//! rotation, a warm or a cold start) and a schedule of faults and workload (crashes, restarts under
//! the same name and address, graceful leaves, stalls, slow receivers, partitions, some longer than
//! the reap time, late joiners, broadcast bursts up to the queue depth, keyed broadcasts, large
//! reliable messages, metadata changes, forged accusations). [`run`] plays it on the simulator and
//! checks every [`Oracle`]; their time bounds derive from the members' configurations.
//!
//! Everything is seeded, so a failing seed replays bit for bit: `shoal-sim swarm --seed S` reruns it
//! and prints what failed, `--shrink` searches for a smaller scenario that fails the same oracle
//! (fewer faults, fewer members, no loss, no encryption) and prints its replay spec, which
//! `--replay SPEC` runs. This is deterministic simulation testing as FoundationDB's simulator and
//! TigerBeetle's VOPR practise it.

mod oracle;
mod run;
mod scenario;
mod shrink;
mod truth;

pub use oracle::{
    convergence_bound, detection_bound, formation_bound, identity_bound, recovery_bound, settle_bound, Oracle,
    Violation,
};
pub use run::{run, Outcome};
pub use scenario::{Encryption, Fault, FaultKind, Preset, Scenario, Start};
pub use shrink::{shrink, shrink_by};

/// Draws the scenario of `seed` and runs it.
pub fn run_seed(seed: u64) -> Outcome {
    run(&Scenario::draw(seed))
}

/// What a campaign of many seeds found.
#[derive(Clone, Debug, Default)]
pub struct CampaignReport {
    /// Scenarios run (one per seed, or per scenario for [`campaign_scenarios`]).
    pub seeds: usize,
    /// Outcomes of the seeds that failed, in seed order.
    pub failures: alloc::vec::Vec<Outcome>,
    /// Virtual time simulated over all seeds, in ms.
    pub simulated_ms: u64,
    /// Packets and frames sent over all seeds (the sum of [`Outcome::packets`]).
    pub packets: u64,
    /// Broadcasts their origin accepted, over all seeds.
    pub broadcasts: usize,
    /// Reliable messages their sender accepted, over all seeds.
    pub reliable_messages: usize,
}

/// Runs every seed in `seeds` on `threads` threads (each seed on one thread, deterministic whatever
/// the thread count). `progress` is called after each seed with its outcome, from the thread that
/// ran it.
pub fn campaign(seeds: &[u64], threads: usize, progress: &(dyn Fn(&Outcome) + Sync)) -> CampaignReport {
    campaign_of(seeds.len(), &|i| Scenario::draw(seeds[i]), threads, progress)
}

/// Runs every scenario in `scenarios` (seeds with what a spec changed, see [`Scenario::from_spec`])
/// as [`campaign`] runs seeds.
pub fn campaign_scenarios(
    scenarios: &[Scenario],
    threads: usize,
    progress: &(dyn Fn(&Outcome) + Sync),
) -> CampaignReport {
    campaign_of(scenarios.len(), &|i| scenarios[i].clone(), threads, progress)
}

fn campaign_of(
    count: usize,
    scenario: &(dyn Fn(usize) -> Scenario + Sync),
    threads: usize,
    progress: &(dyn Fn(&Outcome) + Sync),
) -> CampaignReport {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let report = Mutex::new(CampaignReport::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let outcome = run(&scenario(i));
                progress(&outcome);
                let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                r.seeds += 1;
                r.simulated_ms += outcome.simulated_ms;
                r.packets += outcome.packets;
                r.broadcasts += outcome.broadcasts;
                r.reliable_messages += outcome.reliable_messages;
                if !outcome.passed() {
                    r.failures.push(outcome);
                }
            });
        }
    });
    let mut report = report.into_inner().unwrap_or_else(|e| e.into_inner());
    report.failures.sort_by_key(|o| o.scenario.seed);
    report
}
