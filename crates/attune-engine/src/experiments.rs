//! Experiments: deterministic assignment per person, policies that change what a slot shows, and
//! analysis (rate, lift with a confidence interval, sample-ratio mismatch).
//!
//! Assignment hashes (experiment id, person) into 10,000 buckets. The holdout takes the first
//! buckets, then each arm a run of buckets in order, sized by its weight (weights are shares of
//! everyone and add up to at most 1 with the holdout; the rest is not in the experiment). Growing a
//! weight only adds people to that arm: nobody assigned before moves.

use attune_store::Table;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::{Engine, Result, UserError, from_json, to_json};

const BUCKETS: u64 = 10_000;

/// What an arm shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    /// The full pipeline.
    Default,
    /// The non-personalized default (popular, editorial, serendipity).
    Popular,
}

impl Policy {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Default => "default",
            Policy::Popular => "popular",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Policy> {
        [Policy::Default, Policy::Popular].into_iter().find(|p| p.as_str() == name)
    }
}

/// One arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    /// Its name (`control`, `personalized`, …).
    pub name: String,
    /// Share of everyone, 0–1.
    pub weight: f64,
    /// What it shows.
    pub policy: Policy,
}

/// An experiment on one slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Its id.
    pub id: String,
    /// The slot it runs on.
    pub slot: String,
    /// The arms, in bucket order; the first is the control for lift.
    pub arms: Vec<Arm>,
    /// Share held out (shown the non-personalized default), 0–1.
    pub holdout: f64,
    /// Event types that count as conversions (`click`, `purchase`, `survey`, …).
    pub metrics: Vec<String>,
}

/// Exposures and conversions of one arm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmCounts {
    /// Decisions that showed the arm.
    pub exposures: u64,
    /// Attributed events of a metric type.
    pub conversions: u64,
}

/// Results of one arm.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmResult {
    /// The arm (`holdout` for the holdout).
    pub name: String,
    /// Counts.
    pub counts: ArmCounts,
    /// Conversions per exposure.
    pub rate: f64,
    /// Relative lift over the control, with a 95 % confidence interval (none for the control or
    /// without data).
    pub lift: Option<(f64, f64, f64)>,
}

/// Results of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentResults {
    /// Per arm, holdout last.
    pub arms: Vec<ArmResult>,
    /// Chi-square statistic of exposures against the configured weights.
    pub srm_chi2: f64,
    /// Whether the sample ratio mismatches (p < 0.001).
    pub srm_mismatch: bool,
}

/// Counts by arm name.
type Counts = FxHashMap<String, ArmCounts>;

/// In-memory experiment state.
#[derive(Default)]
pub struct Experiments {
    by_id: Mutex<FxHashMap<String, (Experiment, Counts)>>,
}

fn bucket(experiment: &str, subject: &str) -> u64 {
    let mut key = Vec::with_capacity(experiment.len() + subject.len() + 1);
    key.extend_from_slice(experiment.as_bytes());
    key.push(0);
    key.extend_from_slice(subject.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&key) % BUCKETS
}

/// The arm of `subject` (`holdout` included), if they are in the experiment.
pub fn assign<'a>(experiment: &'a Experiment, subject: &str) -> Option<(&'a str, Policy)> {
    let b = bucket(&experiment.id, subject) as f64 / BUCKETS as f64;
    if b < experiment.holdout {
        return Some(("holdout", Policy::Popular));
    }
    let mut edge = experiment.holdout;
    for arm in &experiment.arms {
        edge += arm.weight;
        if b < edge {
            return Some((&arm.name, arm.policy));
        }
    }
    None
}

impl Engine {
    pub(crate) fn load_experiments(&self) -> Result<()> {
        let mut all: FxHashMap<String, (Experiment, Counts)> = self
            .scan_json::<Experiment>(Table::Experiments, "exp\0", "experiment")?
            .into_iter()
            .map(|(_, e)| (e.id.clone(), (e, Counts::default())))
            .collect();
        // Counts are statistics, not records anyone relies on: an unreadable one starts afresh.
        for (key, bytes) in self.scan_records(Table::Experiments, "counts\0")? {
            if let Ok(counts) = from_json::<Counts>("experiment counts", &bytes)
                && let Some((_, stored)) = all.get_mut(key.trim_start_matches("counts\0"))
            {
                *stored = counts;
            }
        }
        *self.experiments.by_id.lock() = all;
        Ok(())
    }

    /// Adds or replaces an experiment (its counts are kept).
    pub fn put_experiment(&self, experiment: Experiment, key_id: &str) -> Result<()> {
        self.store.put(Table::Experiments, &format!("exp\0{}", experiment.id), &to_json(&experiment))?;
        let id = experiment.id.clone();
        let mut all = self.experiments.by_id.lock();
        let counts = all.remove(&id).map(|(_, c)| c).unwrap_or_default();
        all.insert(id.clone(), (experiment, counts));
        drop(all);
        self.audit(key_id, "experiments.put", &id)
    }

    /// Every experiment, by id.
    pub fn experiments(&self) -> Vec<Experiment> {
        let mut all: Vec<Experiment> =
            self.experiments.by_id.lock().values().map(|(experiment, _)| experiment.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// An experiment by id.
    pub fn experiment(&self, id: &str) -> Option<Experiment> {
        self.experiments.by_id.lock().get(id).map(|(e, _)| e.clone())
    }

    /// The experiment running on a slot (the first by id), with the subject's arm.
    pub(crate) fn experiment_arm(&self, slot: &str, subject: Option<&str>) -> Option<(String, String, Policy)> {
        let subject = subject?;
        let all = self.experiments.by_id.lock();
        let mut on_slot: Vec<&Experiment> = all.values().map(|(e, _)| e).filter(|e| e.slot == slot).collect();
        on_slot.sort_by(|a, b| a.id.cmp(&b.id));
        let experiment = on_slot.first()?;
        assign(experiment, subject).map(|(arm, policy)| (experiment.id.clone(), arm.to_owned(), policy))
    }

    pub(crate) fn expose(&self, experiment: &str, arm: &str) {
        if let Some((_, counts)) = self.experiments.by_id.lock().get_mut(experiment) {
            counts.entry(arm.to_owned()).or_default().exposures += 1;
        }
    }

    pub(crate) fn convert(&self, experiment: &str, arm: &str, event_type: &str) {
        if let Some((e, counts)) = self.experiments.by_id.lock().get_mut(experiment)
            && e.metrics.iter().any(|m| m == event_type)
        {
            counts.entry(arm.to_owned()).or_default().conversions += 1;
        }
    }

    /// Persists the counts (called with the decision log flush).
    pub(crate) fn flush_experiment_counts(&self) -> Result<()> {
        let entries: Vec<(String, Vec<u8>)> = self
            .experiments
            .by_id
            .lock()
            .iter()
            .map(|(id, (_, counts))| (format!("counts\0{id}"), to_json(counts)))
            .collect();
        if !entries.is_empty() {
            self.store.put_many(Table::Experiments, &entries)?;
        }
        Ok(())
    }

    /// Per arm: exposures, conversions, rate, lift over the control with a 95 % interval, and a
    /// sample-ratio-mismatch check against the configured weights.
    pub fn experiment_results(&self, id: &str) -> Result<ExperimentResults> {
        let all = self.experiments.by_id.lock();
        let (experiment, counts) = all.get(id).ok_or_else(|| UserError::not_found("experiment", id))?;
        let mut names: Vec<(String, f64)> = experiment.arms.iter().map(|a| (a.name.clone(), a.weight)).collect();
        if experiment.holdout > 0.0 {
            names.push(("holdout".into(), experiment.holdout));
        }
        let count = |name: &str| counts.get(name).copied().unwrap_or_default();
        let rate = |c: ArmCounts| if c.exposures == 0 { 0.0 } else { c.conversions as f64 / c.exposures as f64 };
        let control = count(&names[0].0);
        let p0 = rate(control);
        let arms = names
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let c = count(name);
                let p1 = rate(c);
                let lift = (i > 0 && p0 > 0.0 && c.exposures > 0 && control.exposures > 0).then(|| {
                    let se = (p1 * (1.0 - p1) / c.exposures as f64 + p0 * (1.0 - p0) / control.exposures as f64).sqrt();
                    let diff = p1 - p0;
                    (diff / p0, (diff - 1.96 * se) / p0, (diff + 1.96 * se) / p0)
                });
                ArmResult { name: name.clone(), counts: c, rate: p1, lift }
            })
            .collect();
        let total: u64 = names.iter().map(|(n, _)| count(n).exposures).sum();
        let weight_sum: f64 = names.iter().map(|(_, w)| w).sum();
        let chi2: f64 = if total == 0 || weight_sum <= 0.0 {
            0.0
        } else {
            names
                .iter()
                .map(|(n, w)| {
                    let expected = total as f64 * w / weight_sum;
                    let observed = count(n).exposures as f64;
                    if expected > 0.0 { (observed - expected).powi(2) / expected } else { 0.0 }
                })
                .sum()
        };
        Ok(ExperimentResults {
            arms,
            srm_chi2: chi2,
            srm_mismatch: chi2 > chi2_critical_0001(names.len().saturating_sub(1)),
        })
    }
}

/// The chi-square value exceeded with probability 0.001, by degrees of freedom (Wilson–Hilferty
/// approximation beyond the table).
fn chi2_critical_0001(df: usize) -> f64 {
    const TABLE: [f64; 6] = [f64::INFINITY, 10.828, 13.816, 16.266, 18.467, 20.515];
    match TABLE.get(df) {
        Some(v) => *v,
        None => {
            let k = df as f64;
            let z = 3.0902;
            k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(weights: &[f64], holdout: f64) -> Experiment {
        Experiment {
            id: "exp-1".into(),
            slot: "home_feed".into(),
            arms: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Arm { name: format!("arm-{i}"), weight: *w, policy: Policy::Default })
                .collect(),
            holdout,
            metrics: vec!["click".into()],
        }
    }

    #[test]
    fn assignment_is_deterministic_and_follows_weights() {
        let e = experiment(&[0.5, 0.45], 0.05);
        let mut counts = FxHashMap::default();
        for i in 0..20_000 {
            let id = format!("u-{i}");
            let arm = assign(&e, &id).map(|(a, _)| a.to_owned());
            assert_eq!(arm, assign(&e, &id).map(|(a, _)| a.to_owned()));
            *counts.entry(arm.unwrap_or_default()).or_insert(0) += 1;
        }
        assert!((counts["holdout"] as f64 / 20_000.0 - 0.05).abs() < 0.01);
        assert!((counts["arm-0"] as f64 / 20_000.0 - 0.5).abs() < 0.02);
    }

    #[test]
    fn growing_a_weight_moves_nobody() {
        let before = experiment(&[0.2, 0.2], 0.0);
        let after = experiment(&[0.2, 0.5], 0.0);
        for i in 0..5_000 {
            let id = format!("u-{i}");
            if let Some((arm, _)) = assign(&before, &id) {
                assert_eq!(Some(arm), assign(&after, &id).map(|(a, _)| a));
            }
        }
    }
}
