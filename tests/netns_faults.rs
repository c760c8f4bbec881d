//! Native faults with real `shoal-agent` processes in Linux network namespaces (issue 13):
//! partitions that heal by themselves, crashed members restarted under the same name and address,
//! a rolling restart, and a slow member among healthy ones. See `netns/mod.rs` for the lab.
//!
//! Each test needs root, `ip` and `nft`; elsewhere it prints one `SKIP` line and passes. It needs
//! the `shoal-agent` binary of the same target directory, which `cargo test --workspace` builds:
//!
//! ```text
//! cargo build -p shoal-agent && cargo test -p shoal-tests --test netns_faults
//! ```
//!
//! The agents run the LAN preset. Every bound below is derived from that configuration, and every
//! wait polls the agents' `/members` until its condition holds or its bound passes; the fixed
//! sleeps are the scenarios' own hold times (a partition held 60 s, a restart 2 s after a kill).
//! Measured figures are printed on stderr as `netns_faults: ...` lines (see BENCHMARKS.md).

mod netns;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use netns::{report, Event, Lab, LabSpec};
use shoal_core::Config;

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The longest a suspicion can run before it becomes a failure: `β · α · max(1, log10 n)` probe
/// periods (the timeout starts there and only shrinks with confirmations).
fn suspicion_max(c: &Config, n: usize) -> Duration {
    let periods = f64::from(c.suspicion_mult) * (n as f64).log10().max(1.0) * f64::from(c.suspicion_max_timeout_mult);
    c.probe_interval.mul_f64(periods)
}

/// How long an update keeps being gossiped: its retransmit limit times the gossip period.
fn dissemination(c: &Config, n: usize) -> Duration {
    c.gossip_interval * c.retransmit_limit(n)
}

/// Worst case for every survivor to list a crashed member dead: someone probes it within `n`
/// periods (round robin over a shuffled list), the indirect round ends within one more, the
/// suspicion runs out at its longest, then the death is gossiped.
fn detection_bound(c: &Config, n: usize) -> Duration {
    c.probe_interval * (n as u32 + 1) + suspicion_max(c, n) + dissemination(c, n)
}

/// Worst case for a started member to be listed alive everywhere: its join may wait out one join
/// timeout on a seed that is down, then one re-announcement period, then the news is gossiped.
fn rejoin_bound(c: &Config, n: usize) -> Duration {
    c.join_timeout + c.reannounce_interval + dissemination(c, n)
}

/// The goal for healing a partition (DESIGN.md, "Numbers we must reach").
const HEAL_GOAL: Duration = Duration::from_secs(5);

fn count<'a>(events: impl IntoIterator<Item = &'a Event>) -> usize {
    events.into_iter().count()
}

/// Accusations (`suspect` or `fail`), each counted once however many agents printed it.
fn distinct(events: &[&Event]) -> usize {
    let mut keys: Vec<_> = events.iter().map(|e| (&e.kind, &e.member, e.incarnation, &e.by)).collect();
    keys.sort();
    keys.dedup();
    keys.len()
}

fn partition_heals(title: &'static str, hold: Duration) {
    let c = Config::lan();
    let n = 6;
    let reap = hold > c.dead_member_reap_time;
    let heal_wait = Duration::from_secs(60);
    let budget = rejoin_bound(&c, n)
        + hold
        + if reap { detection_bound(&c, n) } else { Duration::ZERO }
        + heal_wait
        + Duration::from_secs(30);
    let Some(mut lab) = Lab::new(LabSpec::new(title, n, budget)) else { return };
    let (a, b, all) = ([0, 1, 2], [3, 4, 5], lab.all());
    lab.start_all();
    let formed = lab.wait("all 6 alive everywhere", Instant::now(), rejoin_bound(&c, n), || lab.all_alive(&all, &all));

    let cut = lab.partition(&a, &b);
    let detected = lab.wait("each half lists the other dead", cut, detection_bound(&c, n), || {
        lab.all_dead(&a, &b)?;
        lab.all_dead(&b, &a)
    });
    lab.pause_until(cut + hold);
    if reap {
        // The point of holding past the reap time: both halves have forgotten each other.
        lab.wait("each half has forgotten the other", cut, hold + detection_bound(&c, n), || {
            lab.all_forgotten(&a, &b)?;
            lab.all_forgotten(&b, &a)
        });
    }
    let healed = lab.heal();
    let held = healed - cut;
    let result =
        lab.try_wait("every agent lists all 6 alive after the heal", healed, heal_wait, || lab.all_alive(&all, &all));

    let events = lab.events();
    let half = |name: &str| if a.iter().any(|&i| lab.name(i) == name) { 0 } else { 1 };
    let inside: Vec<&Event> =
        events.iter().filter(|e| e.at >= cut && e.kind == "fail" && half(&e.observer) == half(&e.member)).collect();
    report(&format!(
        "{title}: formed in {}; each half listed the other dead {} after the cut; held {}{}; full agreement {} \
         after the heal (goal {}); members declared failed by their own half: {}",
        secs(formed),
        secs(detected),
        secs(held),
        if reap { " (both halves had reaped the other)" } else { "" },
        result.as_ref().map_or_else(|e| format!("NOT reached: {e}"), |t| secs(*t)),
        secs(HEAL_GOAL),
        distinct(&inside),
    ));
    let healed_in = result.unwrap_or_else(|e| panic!("{title}: {e}"));
    assert!(
        healed_in <= HEAL_GOAL,
        "{title}: full agreement {} after the heal, goal {}",
        secs(healed_in),
        secs(HEAL_GOAL)
    );
    assert!(inside.is_empty(), "{title}: members declared failed inside their own half: {inside:?}");
}

#[test]
fn a_three_three_partition_held_60_s_heals_by_itself_within_5_s() {
    partition_heals("partition-60s", Duration::from_secs(60));
}

/// Past the LAN preset's 300 s reap time: both halves have forgotten each other when it heals.
#[test]
fn a_three_three_partition_held_330_s_past_the_reap_time_heals_by_itself_within_5_s() {
    partition_heals("partition-330s", Duration::from_secs(330));
}

fn killed_and_restarted(title: &'static str, wait_until_failed: bool) {
    let c = Config::lan();
    let n = 10;
    let watch = suspicion_max(&c, n) + dissemination(&c, n);
    let budget = rejoin_bound(&c, n) * 3 + detection_bound(&c, n) + watch + Duration::from_secs(30);
    let Some(mut lab) = Lab::new(LabSpec::new(title, n, budget)) else { return };
    let all = lab.all();
    // Seeds are m0-m2: m1 is among the victims.
    let victims = [1, 3, 5, 7, 9];
    let survivors = [0, 2, 4, 6, 8];
    lab.start_all();
    let formed = lab.wait("all 10 alive everywhere", Instant::now(), rejoin_bound(&c, n), || lab.all_alive(&all, &all));

    let killed = Instant::now();
    for &v in &victims {
        lab.kill(v);
    }
    let detected = if wait_until_failed {
        let t = lab.wait("the survivors list the 5 dead", killed, detection_bound(&c, n), || {
            lab.all_dead(&survivors, &victims)
        });
        Some(t)
    } else {
        lab.pause_until(killed + Duration::from_secs(2));
        None
    };
    let restarted = Instant::now();
    for &v in &victims {
        lab.start(v);
    }
    let bound = rejoin_bound(&c, n);
    let result = lab.try_wait("every member lists all 10 alive", restarted, bound, || lab.all_alive(&all, &all));
    let agreed = Instant::now();
    // Never left dead: until any suspicion of the killed processes must have run out, nobody lists
    // a restarted name dead or left, and afterwards everyone still lists all 10 alive.
    let (dead_sightings, end) = if result.is_ok() {
        let sightings = lab.watch(agreed, restarted + watch, || lab.none_dead(&all, &victims));
        (sightings, lab.try_wait("all 10 still alive everywhere", Instant::now(), bound, || lab.all_alive(&all, &all)))
    } else {
        (Vec::new(), Ok(Duration::ZERO))
    };

    let events = lab.events();
    let victim = |name: &str| victims.iter().any(|&v| lab.name(v) == name);
    let late: Vec<&Event> = events.iter().filter(|e| e.at >= agreed && e.kind == "fail" && victim(&e.member)).collect();
    let suspects: Vec<&Event> =
        events.iter().filter(|e| e.at >= restarted && e.kind == "suspect" && victim(&e.member)).collect();
    let wrongly: Vec<&Event> =
        events.iter().filter(|e| matches!(e.kind.as_str(), "fail" | "suspect") && !victim(&e.member)).collect();
    report(&format!(
        "{title}: formed in {}; {}all 10 alive everywhere {} after the restart (bound {}); watched {} more: {} \
         sightings of a restarted name dead, {} failed events about them, {} suspicions of them after the \
         restart; accusations of survivors: {}",
        secs(formed),
        detected.map_or_else(String::new, |t| format!("the survivors listed the 5 dead {} after the kill; ", secs(t))),
        result.as_ref().map_or_else(|e| format!("NOT reached: {e}"), |t| secs(*t)),
        secs(bound),
        secs((restarted + watch).saturating_duration_since(agreed)),
        dead_sightings.len(),
        distinct(&late),
        distinct(&suspects),
        distinct(&wrongly),
    ));
    result.unwrap_or_else(|e| panic!("{title}: {e}"));
    assert!(dead_sightings.is_empty(), "{title}: a restarted name was listed dead: {:?}", &dead_sightings[..1]);
    end.unwrap_or_else(|e| panic!("{title}: {e}"));
    assert!(late.is_empty(), "{title}: restarted members declared failed after rejoining: {late:?}");
}

#[test]
fn five_of_ten_killed_and_restarted_2_s_later_are_alive_everywhere_and_never_left_dead() {
    killed_and_restarted("kill5-restart-2s", false);
}

#[test]
fn five_of_ten_killed_and_restarted_once_declared_failed_are_alive_everywhere_and_never_left_dead() {
    killed_and_restarted("kill5-restart-after-failed", true);
}

#[test]
fn a_rolling_restart_ends_with_everyone_alive_and_only_the_restarting_member_is_ever_failed() {
    let c = Config::lan();
    let n = 10;
    // The agent waits up to 5 s for its leave to be acknowledged, then exits.
    let stop_limit = Duration::from_secs(8);
    let bound = rejoin_bound(&c, n);
    let budget = bound + (stop_limit + bound) * n as u32 + Duration::from_secs(30);
    let Some(mut lab) = Lab::new(LabSpec::new("rolling-restart", n, budget)) else { return };
    let all = lab.all();
    lab.start_all();
    let formed = lab.wait("all 10 alive everywhere", Instant::now(), bound, || lab.all_alive(&all, &all));

    // (member, stop sent, agreement again)
    let mut windows = Vec::new();
    let mut rejoins = Vec::new();
    for i in 0..n {
        let stopping = Instant::now();
        lab.stop(i, stop_limit);
        let started = Instant::now();
        lab.start(i);
        let what = format!("all 10 alive everywhere after restarting {}", lab.name(i));
        rejoins.push(lab.wait(&what, started, bound, || lab.all_alive(&all, &all)));
        windows.push((lab.name(i).to_string(), stopping, Instant::now()));
    }

    let events = lab.events();
    let restarting_then =
        |e: &Event| windows.iter().any(|(name, from, to)| *name == e.member && (*from..=*to).contains(&e.at));
    let wrong: Vec<&Event> = events.iter().filter(|e| e.kind == "fail" && !restarting_then(e)).collect();
    let failed = events.iter().filter(|e| e.kind == "fail").collect::<Vec<_>>();
    let suspects = events.iter().filter(|e| e.kind == "suspect").collect::<Vec<_>>();
    let calm_suspected = suspects.iter().copied().filter(|e| !restarting_then(e)).collect::<Vec<_>>();
    let slowest = rejoins.iter().max().copied().unwrap_or_default();
    let mean = rejoins.iter().sum::<Duration>() / rejoins.len() as u32;
    report(&format!(
        "rolling-restart: formed in {}; {n} restarts (SIGTERM, leave, start), all alive everywhere {} after each \
         start on average, {} at most (bound {}); failed: {} (of a calm member: {}); suspicions: {} (of a calm \
         member: {}); left events: {}",
        secs(formed),
        secs(mean),
        secs(slowest),
        secs(bound),
        distinct(&failed),
        distinct(&wrong),
        distinct(&suspects),
        distinct(&calm_suspected),
        count(events.iter().filter(|e| e.kind == "leave")),
    ));
    assert!(wrong.is_empty(), "a calm member was declared failed during the rolling restart: {wrong:?}");
    lab.all_alive(&all, &all).unwrap_or_else(|e| panic!("after the rolling restart: {e}"));
}

#[test]
fn a_slow_member_among_twenty_is_never_declared_failed_and_the_healthy_never_accuse_each_other() {
    let c = Config::lan();
    let n = 20;
    let slow = 7;
    let observe = Duration::from_secs(60);
    let bound = rejoin_bound(&c, n);
    let budget = bound + observe + Duration::from_secs(30);
    let mut spec = LabSpec::new("slow-member", n, budget);
    // Its healthy members must never accuse each other: no other lab's agents beside it. With the
    // five other labs' agents running too, one healthy member suspected another once, in two runs
    // of the tests beside `stress-ng --cpu 2`.
    spec.alone = true;
    spec.slow = vec![slow];
    spec.delay = Duration::from_millis(300)..=Duration::from_millis(800);
    let Some(mut lab) = Lab::new(spec) else { return };
    let all = lab.all();
    let healthy: Vec<usize> = all.iter().copied().filter(|&i| i != slow).collect();
    let start = Instant::now();
    lab.start_all();
    let formed = lab.wait("all 20 alive everywhere", start, bound, || lab.all_alive(&all, &all));
    let formed_at = Instant::now();
    let sightings = lab.watch(formed_at, formed_at + observe, || lab.none_dead(&all, &[slow]));
    let mut rtts = lab.rtts_to(&healthy, slow);
    rtts.sort_unstable();

    let slow_name = lab.name(slow).to_string();
    let events = lab.events();
    let accusation = |e: &&Event| matches!(e.kind.as_str(), "suspect" | "fail");
    let by_slow = |e: &&Event| e.by.as_deref() == Some(slow_name.as_str());
    let of_slow: Vec<&Event> = events.iter().filter(accusation).filter(|e| e.member == slow_name).collect();
    let failed_slow: Vec<&Event> = of_slow.iter().copied().filter(|e| e.kind == "fail").collect();
    let healthy_by_healthy: Vec<&Event> =
        events.iter().filter(accusation).filter(|e| e.member != slow_name && !by_slow(e)).collect();
    let healthy_by_slow: Vec<&Event> =
        events.iter().filter(accusation).filter(|e| e.member != slow_name && by_slow(e)).collect();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &events {
        *kinds.entry(e.kind.as_str()).or_default() += 1;
    }
    let median = rtts.get(rtts.len() / 2).copied();
    report(&format!(
        "slow-member: 1 of {n} behind 300-800 ms each way; formed in {}; observed {}: the slow member listed dead \
         {} times, declared failed {} times, suspected {} times; healthy members accused by healthy ones: {}, \
         by the slow one: {}; RTT to it as the others measure it: median {:?} ms (min {:?}, max {:?}); delay \
         line {:?}; events printed: {kinds:?}",
        secs(formed),
        secs(observe),
        sightings.len(),
        distinct(&failed_slow),
        distinct(&of_slow) - distinct(&failed_slow),
        distinct(&healthy_by_healthy),
        distinct(&healthy_by_slow),
        median,
        rtts.first(),
        rtts.last(),
        lab.delay_stats(slow),
    ));
    assert!(median.is_some_and(|m| m >= 500), "the delay line is not in effect: RTTs {rtts:?}");
    assert!(sightings.is_empty(), "the slow member was listed dead: {:?}", &sightings[..1]);
    assert!(failed_slow.is_empty(), "the slow member was declared failed: {failed_slow:?}");
    assert!(healthy_by_healthy.is_empty(), "healthy members accused each other: {healthy_by_healthy:?}");
}
