//! The swarm simulation's own guarantees: a seed replays bit for bit, the shrinker keeps only what a
//! failure needs, a shrunk scenario replays from its spec, and every regression seed passes every
//! oracle. (The campaign of fresh seeds runs from `tests/run-all` with the release build:
//! `shoal-sim swarm --seeds 500`.)

use shoal_sim::swarm::{self, FaultKind, Oracle, Outcome, Scenario, Violation};

/// Seeds whose scenario failed an oracle once, each with what it found (most found again by the
/// swarm with that fix reverted, as BENCHMARKS.md records). They must pass forever. Each is a spec
/// (`shoal-sim swarm --replay SPEC`): a seed, with the network it drew pinned where a later preset
/// change would draw another.
const REGRESSION_SEEDS: &[(&str, &str)] = &[
    ("5", "a broadcast burst above the old 128-wide duplicate window, delivered short without a word"),
    ("14", "a broadcast burst above the old duplicate window"),
    ("4", "a forged suspicion at u32::MAX killed a name for good (saturating incarnations)"),
    ("7", "incarnations that ran out"),
    ("81", "encrypted frames held up behind a slow receiver refused as replays"),
    ("119", "encrypted reliable frames refused as replays"),
    ("79", "members that started together did not know each other until push-pull"),
    ("391", "members that started together missed each other"),
    ("40", "a member that missed a refutation kept a healthy member failed (stale claims unanswered)"),
    ("202", "a false failure nobody answered"),
    ("43611", "a restarted member never heard of the departure it had to refute"),
    ("43802", "the news of a join missed by one member at 0% loss"),
    ("101479", "a repeated suspicion skipped as already seen, so the suspect never refuted it"),
    ("115076", "a member that came back after its death was filtered as a repeat and never rejoined"),
    ("118625", "refuted suspicions left their timers in the heap until it grew without bound"),
    ("119073", "the oracle blamed a sender frozen until it was shut down for a missing failure report"),
    ("22347", "the oracle's push-pull-off bound ignored how far poor local health stretches probing"),
    ("101158", "digests learned for members only: broadcasts of a member reaped during a partition, silently lost"),
    ("206195", "the accuracy oracle judged a failure declared right after a partition again when a stalled member heard of it 15 s later"),
    ("400032", "a departed origin forgotten for a while only: a member that delivered its broadcasts later handed them on, delivered twice"),
    ("400192", "a sender's de-duplication record forgotten while it was a member: a late copy of its message delivered twice"),
    ("411310", "a sender's de-duplication record forgotten by a receiver with a shorter retry schedule: a late copy delivered twice"),
    ("432724", "a slow-preset member answered a fast one's stale claims of its death once per 5 s: at 18% loss it stayed dead for the fast one"),
    (
        "1796232721682010",
        "a suspicion timer shortened into the past read as a stall of the member: accusations deferred again and again, a departed member suspect for good",
    ),
    (
        "1796238738700118:latency=25:jitter=6",
        "browser preset with 25 ms links: the indirect probe had 100 ms for two round trips, so every lost ping made a suspect; one refutation late, a healthy member failed",
    ),
    (
        "1796240581706215:latency=24:jitter=9",
        "browser preset with 24 ms links at 4.7% loss: suspicions several times a second, two healthy members declared failed",
    ),
    (
        "1796240581705925",
        "the oracle owed a member cut off 850 s the broadcasts of an origin that died meanwhile, which its holders (local preset) had forgotten as documented",
    ),
    (
        "902221",
        "the accuracy oracle took a crashed member's failure, declared while it was down, for a false one when a member frozen meanwhile heard of it after the restart",
    ),
    (
        "700010",
        "a member that joined broadcast at once: the seed it found took those broadcasts for ones sent before its time, and dropped them without a word",
    ),
    (
        "700248",
        "a joiner's first broadcasts, listed in a digest before news of its join arrived, were given up as a stranger's and never delivered",
    ),
    (
        "902967",
        "a seed found by a new member took the first digest it got back as where its time began: a member that joined through another in between lost its first broadcasts at the seed, silently",
    ),
    ("903732", "the same"),
    (
        "1796319300942131",
        "wan members asked by local ones (84% loss on one link) held 84 indirect probes: honest, past the oracle's one-preset bound; found that nothing bounded them against a flood",
    ),
    (
        "1796429316272081",
        "the oracle owed the member that found a restarted seed alone the broadcasts the seed sent before anyone was there",
    ),
    (
        "1201112",
        "74 browser members at 4.5% loss: one heard a suspicion eight times and its refutation never, and declared a healthy member failed",
    ),
];

#[test]
fn every_regression_seed_passes_every_oracle() {
    let seeds: Vec<Scenario> =
        REGRESSION_SEEDS.iter().map(|&(spec, _)| Scenario::from_spec(spec).expect("a valid spec")).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let report = swarm::campaign_scenarios(&seeds, threads, &|_| {});
    for o in &report.failures {
        let seed = o.scenario.seed.to_string();
        let what = REGRESSION_SEEDS.iter().find(|&&(s, _)| s.split(':').next() == Some(&seed)).map_or("", |&(_, w)| w);
        eprintln!("seed {} ({what}) failed: {:?}", o.scenario.seed, o.violations);
    }
    assert!(report.failures.is_empty(), "{} regression seeds failed", report.failures.len());
    assert_eq!(report.seeds, seeds.len());
}

#[test]
fn a_seed_replays_bit_for_bit() {
    for seed in [3, 44, 1_000_001] {
        let (a, b) = (swarm::run_seed(seed), swarm::run_seed(seed));
        assert_eq!(a.scenario, b.scenario);
        assert_eq!((a.simulated_ms, a.packets, a.broadcasts), (b.simulated_ms, b.packets, b.broadcasts), "seed {seed}");
        assert_eq!(a.violations, b.violations, "seed {seed}");
        assert!(a.packets > 0, "seed {seed} simulated something");
    }
}

/// A stand-in for a protocol defect: a scenario "fails" whenever it crashes a member.
fn fails_when_a_member_crashes(s: &Scenario) -> Option<Outcome> {
    let crashes = s.faults.iter().any(|f| matches!(f.kind, FaultKind::Crash { .. }));
    crashes.then(|| Outcome {
        scenario: s.clone(),
        violations: vec![Violation { oracle: Oracle::Completeness, at_ms: 0, detail: String::from("a crash") }],
        simulated_ms: 0,
        packets: 0,
        broadcasts: 0,
        reliable_messages: 0,
    })
}

#[test]
fn the_shrinker_keeps_only_what_a_failure_needs() {
    // A large scenario with many faults, among them a crash of one of the first three members.
    let seed = (0..10_000)
        .find(|&s| {
            let sc = Scenario::draw(s);
            sc.nodes > 20
                && sc.faults.len() > 6
                && sc.faults.iter().any(|f| matches!(f.kind, FaultKind::Crash { node } if node < 3))
        })
        .expect("some seed draws a large scenario with such a crash");
    let scenario = Scenario::draw(seed);
    let (smaller, outcome) = swarm::shrink_by(&scenario, 500, fails_when_a_member_crashes).expect("it fails");
    assert_eq!(outcome.violations[0].oracle, Oracle::Completeness);
    assert_eq!(smaller.faults.len(), 1, "only one crash is left: {:?}", smaller.faults);
    assert!(matches!(smaller.faults[0].kind, FaultKind::Crash { .. }));
    assert_eq!(smaller.nodes, 3, "the cluster shrank from {} to the smallest", scenario.nodes);
    assert_eq!(smaller.loss, 0.0);
    assert!(smaller.asymmetric.is_empty());
}

#[test]
fn a_shrunk_scenario_replays_from_its_spec() {
    let seed = (0..10_000).find(|&s| Scenario::draw(s).faults.len() > 4).expect("a scenario with faults");
    let (smaller, _) = swarm::shrink_by(&Scenario::draw(seed), 50, fails_when_a_member_crashes)
        .or_else(|| Some((Scenario::draw(seed), swarm::run_seed(seed))))
        .expect("a scenario");
    let spec = smaller.spec();
    assert_eq!(Scenario::from_spec(&spec).as_ref(), Ok(&smaller), "spec {spec}");
    assert_eq!(Scenario::from_spec(&seed.to_string()), Ok(Scenario::draw(seed)));
    assert!(Scenario::from_spec("12:n=abc").is_err());
    assert!(Scenario::from_spec("12:bogus").is_err());
}

#[test]
fn a_drawn_scenario_stays_within_the_ranges_the_issue_asks_for() {
    let mut sizes = (usize::MAX, 0);
    let (mut long_partitions, mut mixed, mut encrypted, mut cold, mut lossy) = (0, 0, 0, 0, 0);
    for seed in 0..2_000 {
        let s = Scenario::draw(seed);
        sizes = (sizes.0.min(s.nodes), sizes.1.max(s.nodes));
        assert!((0.0..=0.2).contains(&s.loss), "seed {seed}: loss {}", s.loss);
        let reap = s.slowest().dead_member_reap_time.as_millis() as u64;
        long_partitions += usize::from(
            s.faults.iter().any(|f| matches!(&f.kind, FaultKind::Partition { for_ms, .. } if *for_ms > reap)),
        );
        mixed += usize::from(s.presets.len() > 1);
        encrypted += usize::from(s.encryption != swarm::Encryption::Off);
        cold += usize::from(matches!(s.start, swarm::Start::Cold { .. }));
        lossy += usize::from(s.loss > 0.05);
        let depth = s.config_of(0).broadcast_queue_depth as u32;
        for f in &s.faults {
            if let FaultKind::Broadcasts { count, .. } = f.kind {
                assert!(count <= depth, "bursts stay within the queue depth");
            }
        }
    }
    assert_eq!(sizes, (3, 200));
    for (what, count) in [
        ("long partitions", long_partitions),
        ("mixed presets", mixed),
        ("encrypted", encrypted),
        ("cold starts", cold),
        ("lossy", lossy),
    ] {
        assert!(count > 100, "{what}: only {count} of 2,000 seeds");
    }
}
