//! Shrinking: from a failing scenario, a smaller one that fails the same oracle.
//!
//! Greedy and deterministic: try to drop each fault, then halve the cluster, then take away loss,
//! lossy links and encryption, keeping each change that still fails the same way, until nothing more
//! can go or the run budget is spent. The result replays from its spec like any scenario.

use super::oracle::Oracle;
use super::run::{run, Outcome};
use super::scenario::Scenario;

/// A smaller scenario that still fails `oracle`, and its outcome, after at most `budget` runs.
/// Returns `None` if `scenario` does not fail `oracle` in the first place.
pub fn shrink(scenario: &Scenario, oracle: Oracle, budget: usize) -> Option<(Scenario, Outcome)> {
    shrink_by(scenario, budget, |s| {
        let o = run(s);
        o.violations.iter().any(|v| v.oracle == oracle).then_some(o)
    })
}

/// The shrinking search with any failure test: `fails` returns the outcome of a scenario that still
/// fails, `None` otherwise.
pub fn shrink_by(
    scenario: &Scenario,
    budget: usize,
    fails: impl Fn(&Scenario) -> Option<Outcome>,
) -> Option<(Scenario, Outcome)> {
    let mut best_outcome = fails(scenario)?;
    let mut best = scenario.clone();
    let mut runs = 1;
    let mut progress = true;
    while progress && runs < budget {
        progress = false;
        // Drop faults, latest first (later faults rarely cause earlier failures).
        let drawn = Scenario::draw(best.seed).faults.len();
        for i in (0..drawn).rev() {
            if best.removed.contains(&i) || runs >= budget {
                continue;
            }
            let mut candidate = best.clone();
            candidate.remove_faults(&[i]);
            if candidate.faults.len() == best.faults.len() {
                continue;
            }
            runs += 1;
            if let Some(o) = fails(&candidate) {
                best = candidate;
                best_outcome = o;
                progress = true;
            }
        }
        // Fewer members.
        while best.nodes > 3 && runs < budget {
            let mut candidate = best.clone();
            candidate.shrink_nodes(best.nodes.div_ceil(2).max(3));
            runs += 1;
            match fails(&candidate) {
                Some(o) => {
                    best = candidate;
                    best_outcome = o;
                    progress = true;
                }
                None => break,
            }
        }
        // A cleaner network and no encryption.
        let simplifications: [fn(&mut Scenario); 3] = [|s| s.loss = 0.0, |s| s.asymmetric.clear(), |s| s.make_plain()];
        for simplify in simplifications {
            if runs >= budget {
                break;
            }
            let mut candidate = best.clone();
            simplify(&mut candidate);
            if candidate == best {
                continue;
            }
            runs += 1;
            if let Some(o) = fails(&candidate) {
                best = candidate;
                best_outcome = o;
                progress = true;
            }
        }
    }
    Some((best, best_outcome))
}
