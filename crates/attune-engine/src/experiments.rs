//! Experiments: assignment that never moves people, durable person-level exposures, metrics
//! computed from the stored event log, and the analysis of [`crate::stats`] (GrowthBook's stats
//! engine). `docs/experiments.md` is the reference.
//!
//! **Assignment.** A person's bucket in an experiment is GrowthBook's hash version 2 over the
//! resolved person id with the experiment id as the salt (seed):
//! `fnv1a32(decimal(fnv1a32(salt ‖ person))) mod 10 000`, one of 10 000 buckets (FNV-1a over the
//! UTF-8 bytes). Each arm (and the experiment's holdout, named `holdout`) *owns* bucket ranges,
//! stored with the experiment ([`Segment`]). When a weight or the coverage grows, the owner's
//! ranges grow at their ends into free buckets (and, when its neighbour is in the way, a new
//! range starts in free buckets): buckets never change owner, so raising a weight or the coverage
//! never moves an assigned person. Shrinking gives up buckets at the end of the owner's last
//! range (those people leave the experiment). A person merged from anonymous to known is
//! assigned by the known id (the decide pipeline resolves aliases first), so they keep the known
//! id's arm.
//!
//! **Exposure.** The person's first decision on the experiment's slot, stored durably (flushed
//! with the decision log) twice: `Table::Decisions` key `<person>\0x\0<experiment>` (the record
//! that export, erasure and the 90-day retention find by the privacy layer's conventions) and the
//! index `Table::Experiments` key `xp\0<experiment>\0<person>` that the analysis scans; erasure
//! deletes the index entry too ([`Experiments::forget_exposures_of`], called from `privacy/`).

use attune_core::{BuiltinType, Event};
use attune_store::Table;
use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use attune_store::Store;

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::error::{Result, UserError};
use crate::people::People;
use crate::records::{decode_event, from_json, scan_records, to_json, try_events};
use crate::stats::{self, Moments, TestResult};

/// The bucket space.
pub const BUCKETS: u32 = 10_000;
/// The default attribution window: 7 days.
pub const WINDOW_MS: i64 = 7 * DAY_MS;
const DAY_MS: i64 = 86_400_000;
/// The salt of the global holdout.
pub const GLOBAL_HOLDOUT_SALT: &str = "attune-global-holdout";

/// What an arm shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    /// The full pipeline.
    Default,
    /// The non-personalized default: exactly what a person without personalization consent gets.
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
    /// Share of everyone, 0–1 (times the coverage).
    pub weight: f64,
    /// What it shows.
    pub policy: Policy,
}

/// An experiment's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Status {
    /// Assigning and exposing.
    #[default]
    Running,
    /// No longer assigning (everyone gets the full pipeline); results stay.
    Stopped,
    /// Stopped and hidden from the console's list.
    Archived,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Archived => "archived",
        }
    }
}

/// An experiment on one slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Its id (also the assignment salt).
    pub id: String,
    /// The slot it runs on.
    pub slot: String,
    /// The arms; the first is the control for lift.
    pub arms: Vec<Arm>,
    /// Share held out (shown the non-personalized default), 0–1 (times the coverage).
    pub holdout: f64,
    /// Metrics shown first (names of [`METRICS`]; other names are kept and ignored).
    pub metrics: Vec<String>,
    /// Share of everyone who may enter, 0–1 (default 1): each arm's share is coverage × weight.
    #[serde(default = "one")]
    pub coverage: f64,
}

fn one() -> f64 {
    1.0
}

/// A bucket range `[start, end)` owned by an arm (or `holdout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The arm's name.
    pub owner: String,
    /// First bucket.
    pub start: u32,
    /// One past the last bucket.
    pub end: u32,
}

/// What is stored per experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredExperiment {
    /// The definition.
    pub experiment: Experiment,
    /// Who owns which buckets.
    #[serde(default)]
    pub allocation: Vec<Segment>,
    /// Running, stopped or archived.
    #[serde(default)]
    pub status: Status,
    /// When it was first defined (ms).
    #[serde(default)]
    pub created_ms: i64,
}

/// The global holdout (`PUT /v1/holdout`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Holdout {
    /// Share of everyone kept on the non-personalized default, 0–1.
    pub share: f64,
    /// Its buckets (owner `holdout`).
    pub allocation: Vec<Segment>,
}

/// One exposure (the person's first decision on the experiment's slot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// The experiment.
    pub experiment: String,
    /// The arm.
    pub arm: String,
    /// When (ms).
    pub at_ms: i64,
}

/// In-memory experiment state: definitions (the store has the truth) and exposures waiting for
/// the flush.
pub struct Experiments {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    by_id: Mutex<FxHashMap<String, StoredExperiment>>,
    holdout: Mutex<Holdout>,
    /// (experiment, person) → exposure, waiting for the flush.
    pending: Mutex<FxHashMap<(String, String), Exposure>>,
    /// (experiment, person) known stored: no store read needed.
    stored: Mutex<FxHashSet<(String, String)>>,
    /// The analysis state per (experiment, window), brought up to date at each query.
    tallies: Mutex<FxHashMap<(String, i64), SharedTally>>,
}

/// One experiment's analysis state, locked while a query brings it up to date.
type SharedTally = std::sync::Arc<Mutex<Tally>>;

/// Analysis states kept at once (one per experiment and window asked for).
const MAX_TALLIES: usize = 16;

/// The `Meta` record that changes whenever stored events are deleted (see [`Tally`]).
const EVENTS_DELETED_KEY: &str = "events:deleted";

/// `Table::Meta`: a new value after every write or deletion of exposure index entries (any
/// experiment, any server), so that a query whose experiment saw none since the last one skips
/// reading the index. Written after the entries, read before them.
const EXPOSURES_CHANGED_KEY: &str = "exposures:changed";

/// `Table::Experiments`: the erasure count of an experiment's arm, a counter of
/// [`Store::add_counters`] (`erasures\0<experiment>\0<arm>`; it names no one).
fn erasure_counter(experiment: &str, arm: &str) -> String {
    format!("erasures\0{experiment}\0{arm}")
}

/// Where builds before the atomic counter kept an arm's erasure count, as JSON
/// (`erased\0<experiment>\0<arm>`): still read and added, never written.
const LEGACY_ERASURE_PREFIX: &str = "erased\0";

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The bucket (0–9 999) of `person` under `salt`: GrowthBook's hash version 2 times 10 000.
pub fn bucket(salt: &str, person: &str) -> u32 {
    let inner = fnv1a32(format!("{salt}{person}").as_bytes());
    fnv1a32(inner.to_string().as_bytes()) % BUCKETS
}

/// Buckets for a share (rounded to the nearest bucket).
fn buckets_for(share: f64) -> u32 {
    ((share.clamp(0.0, 1.0) * f64::from(BUCKETS)) + 0.5).floor() as u32
}

/// The owners of an experiment with their target sizes and home starts (GrowthBook's layout:
/// each owner's home region starts at the cumulative weight before it, so growing the coverage
/// extends every range at its end).
fn targets(experiment: &Experiment) -> Vec<(String, u32, u32)> {
    let mut owners: Vec<(String, f64)> = Vec::new();
    if experiment.holdout > 0.0 {
        owners.push(("holdout".into(), experiment.holdout));
    }
    owners.extend(experiment.arms.iter().map(|a| (a.name.clone(), a.weight)));
    let total: f64 = owners.iter().map(|(_, w)| w).sum::<f64>().max(1.0);
    let mut cumulative = 0.0;
    owners
        .into_iter()
        .map(|(name, weight)| {
            let home = (cumulative / total * f64::from(BUCKETS)).floor() as u32;
            cumulative += weight;
            (name, buckets_for(experiment.coverage * weight), home.min(BUCKETS))
        })
        .collect()
}

/// The new allocation: `previous` with owners resized to their targets. Buckets never change
/// owner; an owner grows at the end of its ranges into free buckets, else from its home start,
/// else into the lowest free buckets; it shrinks from the end of its last range.
pub fn reallocate(previous: &[Segment], targets: &[(String, u32, u32)]) -> Vec<Segment> {
    let mut owner_of: Vec<Option<u16>> = vec![None; BUCKETS as usize];
    let index = |name: &str| targets.iter().position(|(n, _, _)| n == name);
    // Keep the previous ranges of owners that still exist, in their order of creation.
    let mut order: Vec<Vec<(u32, u32)>> = vec![Vec::new(); targets.len()];
    for segment in previous {
        if let Some(i) = index(&segment.owner) {
            for b in segment.start..segment.end.min(BUCKETS) {
                owner_of[b as usize] = Some(i as u16);
            }
            order[i].push((segment.start, segment.end.min(BUCKETS)));
        }
    }
    for (i, (_, target, home)) in targets.iter().enumerate() {
        let mut size: u32 = order[i].iter().map(|(s, e)| e - s).sum();
        // Shrink from the end of the last ranges.
        while size > *target {
            let Some(last) = order[i].last_mut() else { break };
            let cut = (size - target).min(last.1 - last.0);
            for b in last.1 - cut..last.1 {
                owner_of[b as usize] = None;
            }
            last.1 -= cut;
            size -= cut;
            if last.0 == last.1 {
                order[i].pop();
            }
        }
        // Grow at the ends of existing ranges.
        for range in order[i].iter_mut() {
            while size < *target && range.1 < BUCKETS && owner_of[range.1 as usize].is_none() {
                owner_of[range.1 as usize] = Some(i as u16);
                range.1 += 1;
                size += 1;
            }
        }
        // New ranges: from the home start, then the lowest free buckets.
        let starts = std::iter::once(*home).chain(0..BUCKETS);
        for start in starts {
            if size >= *target {
                break;
            }
            if start >= BUCKETS || owner_of[start as usize].is_some() {
                continue;
            }
            let mut end = start;
            while size < *target && end < BUCKETS && owner_of[end as usize].is_none() {
                owner_of[end as usize] = Some(i as u16);
                end += 1;
                size += 1;
            }
            order[i].push((start, end));
        }
    }
    let mut segments: Vec<Segment> = Vec::new();
    for (i, ranges) in order.into_iter().enumerate() {
        let mut ranges = ranges;
        ranges.sort();
        for (start, end) in ranges {
            if let Some(last) = segments.last_mut()
                && last.owner == targets[i].0
                && last.end == start
            {
                last.end = end;
                continue;
            }
            segments.push(Segment { owner: targets[i].0.clone(), start, end });
        }
    }
    segments.sort_by_key(|s| s.start);
    segments
}

fn owner_of(allocation: &[Segment], b: u32) -> Option<&str> {
    allocation.iter().find(|s| s.start <= b && b < s.end).map(|s| s.owner.as_str())
}

/// The arm of `person` (`holdout` included), if they are in the experiment.
pub fn assign<'a>(stored: &'a StoredExperiment, person: &str) -> Option<(&'a str, Policy)> {
    let owner = owner_of(&stored.allocation, bucket(&stored.experiment.id, person))?;
    if owner == "holdout" {
        return Some(("holdout", Policy::Popular));
    }
    stored.experiment.arms.iter().find(|a| a.name == owner).map(|a| (a.name.as_str(), a.policy))
}

/// The metrics computed per person for every experiment.
pub const METRICS: [(&str, &str); 9] = [
    ("click_through", "Share of people who clicked"),
    ("purchase_conversion", "Share of people who bought"),
    ("revenue_per_person", "Revenue (purchase `value`) per person"),
    ("dwell_seconds", "Reading time (dwell and view `dwell_ms`) per person, in seconds"),
    ("return_7d", "Share of people back between 1 and 7 days after exposure"),
    ("survey_mean", "Mean survey score (1–10), over the people who answered"),
    ("opt_out_or_pause", "Guardrail: share of people who withdrew personalization consent or paused it"),
    ("not_interested", "Guardrail: share of people who said not interested"),
    ("erasures", "Guardrail: people erased after exposure (a count; their data is gone)"),
];

/// Whether a metric is a proportion (0/1 per person).
fn is_proportion(metric: &str) -> bool {
    matches!(metric, "click_through" | "purchase_conversion" | "return_7d" | "opt_out_or_pause" | "not_interested")
}

/// One stored event as the analysis needs it: when, its place in the log, what kind, and its
/// value (a purchase's `value`, a dwell's seconds, a survey's score).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mark {
    ts_ms: i64,
    seq: u64,
    kind: MarkKind,
    value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkKind {
    Click,
    Purchase,
    Dwell,
    NotInterested,
    Survey,
    Other,
}

impl Mark {
    fn of(seq: u64, event: &Event) -> Mark {
        let (kind, value) = match event.kind.builtin() {
            Some(BuiltinType::Click) => (MarkKind::Click, 0.0),
            Some(BuiltinType::Purchase) => (MarkKind::Purchase, event.prop_f64("value").unwrap_or(0.0)),
            Some(BuiltinType::Dwell | BuiltinType::View) => {
                (MarkKind::Dwell, event.prop_f64("dwell_ms").unwrap_or(0.0) / 1000.0)
            }
            Some(BuiltinType::NotInterested) => (MarkKind::NotInterested, 0.0),
            Some(BuiltinType::Survey) => match event.prop_f64("score") {
                Some(score) => (MarkKind::Survey, score),
                None => (MarkKind::Other, 0.0),
            },
            _ => (MarkKind::Other, 0.0),
        };
        Mark { ts_ms: event.ts_ms, seq, kind, value }
    }
}

/// One person's value of every metric (index as in [`METRICS`], erasures excluded), `None` for a
/// survey without an answer. `marks` are the person's events in (time, sequence) order.
fn person_values(marks: &[Mark], from_ms: i64, to_ms: i64, at_ms: i64) -> [Option<f64>; 8] {
    let (mut click, mut bought, mut revenue, mut dwell, mut back, mut not_interested) =
        (false, false, 0.0, 0.0, false, false);
    let (mut survey_sum, mut survey_n) = (0.0, 0u32);
    let start = marks.partition_point(|m| m.ts_ms < from_ms);
    for mark in &marks[start..] {
        if mark.ts_ms >= to_ms {
            break;
        }
        if mark.ts_ms >= at_ms + DAY_MS && mark.ts_ms < at_ms + 7 * DAY_MS {
            back = true;
        }
        match mark.kind {
            MarkKind::Click => click = true,
            MarkKind::Purchase => {
                bought = true;
                revenue += mark.value;
            }
            MarkKind::Dwell => dwell += mark.value,
            MarkKind::NotInterested => not_interested = true,
            MarkKind::Survey => {
                survey_sum += mark.value;
                survey_n += 1;
            }
            MarkKind::Other => {}
        }
    }
    let b = |v: bool| Some(if v { 1.0 } else { 0.0 });
    [
        b(click),
        b(bought),
        Some(revenue),
        Some(dwell),
        b(back),
        (survey_n > 0).then(|| survey_sum / f64::from(survey_n)),
        None,
        b(not_interested),
    ]
}

/// The analysis state of one experiment and attribution window, brought up to date from the
/// store at each query instead of rebuilt: the stored exposures (the index is scanned by key, and
/// only exposures not seen before are decoded) and, per exposed person, the marks of their events
/// (their own and their merged anonymous ids') within a window around their exposure. Events are
/// read once: the log after `watermark` (sequence numbers follow commit order on both backends),
/// plus the history of people exposed since the last query. A deletion of events anywhere
/// (erasure, consent withdrawal, a forgotten item, retention) changes the store's deletion
/// generation ([`Experiments::note_events_deleted`]) and the state starts over; so the answer is always
/// the one a fresh computation over the store gives, on every server of one database.
#[derive(Default)]
struct Tally {
    /// The deletion generation this state was built under.
    generation: Option<Vec<u8>>,
    /// The alias count when last refreshed (a merge adds aliases whose events must be read).
    n_aliases: usize,
    /// Whether the log was read once (else the next refresh reads all of it).
    built: bool,
    /// Every event with a sequence number up to here has been seen.
    watermark: u64,
    /// Exposed person → (arm, exposure time).
    exposed: FxHashMap<String, (String, i64)>,
    /// Exposed people sorted by id (the order sums are taken in, so every server adds alike).
    order: Vec<String>,
    /// Subject (a person or one of their aliases) → exposed person.
    subjects: FxHashMap<String, String>,
    /// Exposed person → marks in (time, sequence) order.
    marks: FxHashMap<String, Vec<Mark>>,
    /// [`EXPOSURES_CHANGED_KEY`] when the index was last read.
    exposures_seen: Option<Vec<u8>>,
    /// Exposed person → their metric values after and before exposure, computed from their
    /// marks; dropped when their marks change, so a query recomputes only those.
    values: FxHashMap<String, PersonValues>,
}

/// One person's values of every metric (`NaN`: none), after exposure and before it (the CUPED
/// covariate).
#[derive(Debug, Clone, Copy)]
struct PersonValues {
    post: [f64; METRICS.len() - 1],
    pre: [f64; METRICS.len() - 1],
}

impl PersonValues {
    fn of(marks: &[Mark], at_ms: i64, window_ms: i64) -> PersonValues {
        let nan = |values: [Option<f64>; METRICS.len() - 1]| values.map(|v| v.unwrap_or(f64::NAN));
        PersonValues {
            post: nan(person_values(marks, at_ms, at_ms + window_ms, at_ms)),
            pre: nan(person_values(marks, at_ms - window_ms, at_ms, at_ms - window_ms)),
        }
    }
}

/// A value of [`PersonValues`] back as an option.
fn value(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// Sufficient statistics of one metric in one arm.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ArmStats {
    /// People.
    pub n: u64,
    /// Sum of the per-person values.
    pub sum: f64,
    /// Sum of their squares.
    pub sum_squares: f64,
    /// Sum of the pre-exposure values (the CUPED covariate, over the window before exposure).
    pub pre_sum: f64,
    /// Sum of their squares.
    pub pre_sum_squares: f64,
    /// Sum of post × pre.
    pub post_pre_sum_of_products: f64,
}

impl ArmStats {
    fn add(&mut self, post: f64, pre: f64) {
        self.n += 1;
        self.sum += post;
        self.sum_squares += post * post;
        self.pre_sum += pre;
        self.pre_sum_squares += pre * pre;
        self.post_pre_sum_of_products += post * pre;
    }

    /// As gbstats' statistic of the post-exposure values.
    pub fn post(&self, proportion: bool) -> Moments {
        Moments { n: self.n as f64, sum: self.sum, sum_squares: self.sum_squares, proportion }
    }

    /// As gbstats' statistic of the pre-exposure values.
    pub fn pre(&self, proportion: bool) -> Moments {
        Moments { n: self.n as f64, sum: self.pre_sum, sum_squares: self.pre_sum_squares, proportion }
    }
}

/// One metric in one arm, with its analysis against the control.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricArm {
    /// The arm.
    pub arm: String,
    /// Sufficient statistics.
    pub stats: ArmStats,
    /// Mean per person.
    pub mean: f64,
    /// Relative lift over the control: fixed-horizon test (none for the control or when it
    /// cannot be computed: a zero control mean, zero variance).
    pub lift: Option<TestResult>,
    /// The same with always-valid (sequential) intervals.
    pub sequential: Option<TestResult>,
    /// CUPED-adjusted lift (pre-exposure covariate), fixed horizon.
    pub cuped: Option<TestResult>,
}

/// One metric across arms.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricResult {
    /// Its name.
    pub name: String,
    /// `proportion`, `mean` or `count`.
    pub kind: &'static str,
    /// Per arm, control first, holdout last.
    pub arms: Vec<MetricArm>,
}

/// Results of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentResults {
    /// Exposed people per arm, control first, holdout last.
    pub exposed: Vec<(String, u64)>,
    /// Metrics.
    pub metrics: Vec<MetricResult>,
    /// Chi-square p-value of exposed people against the configured weights (GrowthBook's
    /// `check_srm`).
    pub srm_p: f64,
    /// Whether the sample ratio mismatches (p < 0.001).
    pub srm_mismatch: bool,
    /// The attribution window (ms).
    pub window_ms: i64,
    /// The experiment's status.
    pub status: Status,
}

/// One point of an experiment's cumulative lift: the analysis as it stood at `at_ms`, over the
/// people exposed by then and their events up to then.
#[derive(Debug, Clone, PartialEq)]
pub struct LiftPoint {
    /// The moment (ms).
    pub at_ms: i64,
    /// People exposed by then, per arm (as [`ExperimentResults::exposed`]).
    pub exposed: Vec<u64>,
    /// Per arm, the lift over the control with its always-valid (sequential) interval: the one
    /// that stays valid when someone looks at every point (`None` for the control, and while it
    /// cannot be computed yet).
    pub sequential: Vec<Option<TestResult>>,
}

/// An experiment's cumulative lift over time on one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct LiftTimeline {
    /// The metric (a name of [`METRICS`]).
    pub metric: String,
    /// The arms, control first, holdout last.
    pub arms: Vec<String>,
    /// The points, oldest first.
    pub points: Vec<LiftPoint>,
}

/// The metric an experiment's chart follows: the first of its `metrics` that names one of
/// [`METRICS`] (or its short name: `click`, `purchase`, `revenue`, `dwell`, `return`, `survey`),
/// else click-through.
pub fn primary_metric(experiment: &Experiment) -> &'static str {
    experiment
        .metrics
        .iter()
        .find_map(|name| {
            let full = match name.as_str() {
                "click" | "clicks" => "click_through",
                "purchase" | "purchases" | "conversion" => "purchase_conversion",
                "revenue" => "revenue_per_person",
                "dwell" | "completion" => "dwell_seconds",
                "return" => "return_7d",
                "survey" => "survey_mean",
                other => other,
            };
            METRICS.iter().map(|(n, _)| *n).find(|n| *n == full && !matches!(*n, "opt_out_or_pause" | "erasures"))
        })
        .unwrap_or("click_through")
}

impl ExperimentResults {
    /// A metric by name.
    pub fn metric(&self, name: &str) -> Option<&MetricResult> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

impl Experiments {
    /// Loads the stored experiments and the global holdout.
    pub(crate) fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>, audit: AuditLog) -> Result<Experiments> {
        let experiments = Experiments {
            store,
            clock,
            audit,
            by_id: Mutex::default(),
            holdout: Mutex::default(),
            pending: Mutex::default(),
            stored: Mutex::default(),
            tallies: Mutex::default(),
        };
        experiments.load()?;
        Ok(experiments)
    }

    /// Reads the experiments and the holdout again (another server may have changed them).
    pub(crate) fn load(&self) -> Result<()> {
        let mut all: FxHashMap<String, StoredExperiment> = FxHashMap::default();
        for (_, bytes) in scan_records(&*self.store, Table::Experiments, "exp\0")? {
            let value: serde_json::Value = from_json("experiment", &bytes)?;
            // Before allocations were stored, the record was the bare definition.
            let stored = if value.get("experiment").is_some() {
                from_json::<StoredExperiment>("experiment", &bytes)?
            } else {
                let experiment: Experiment = from_json("experiment", &bytes)?;
                let allocation = reallocate(&[], &targets(&experiment));
                StoredExperiment { experiment, allocation, status: Status::Running, created_ms: 0 }
            };
            all.insert(stored.experiment.id.clone(), stored);
        }
        *self.by_id.lock() = all;
        if let Some(bytes) = self.store.get(Table::Experiments, "holdout")? {
            *self.holdout.lock() = from_json("holdout", &bytes)?;
        }
        Ok(())
    }

    /// Adds or changes an experiment. Its bucket ranges are resized, never reassigned: raising a
    /// weight or the coverage moves nobody.
    pub fn put_experiment(&self, experiment: Experiment, key_id: &str) -> Result<StoredExperiment> {
        self.load()?; // another server may have changed it: resize the stored ranges
        let previous = self.by_id.lock().get(&experiment.id).cloned();
        let allocation = reallocate(previous.as_ref().map_or(&[][..], |p| &p.allocation[..]), &targets(&experiment));
        let stored = StoredExperiment {
            experiment,
            allocation,
            status: previous.as_ref().map_or(Status::Running, |p| p.status),
            created_ms: previous.as_ref().map_or(self.clock.now_ms(), |p| p.created_ms),
        };
        self.save_experiment(&stored)?;
        self.audit.record(key_id, "experiments.put", &stored.experiment.id)?;
        Ok(stored)
    }

    fn save_experiment(&self, stored: &StoredExperiment) -> Result<()> {
        self.store.put(Table::Experiments, &format!("exp\0{}", stored.experiment.id), &to_json(stored))?;
        self.by_id.lock().insert(stored.experiment.id.clone(), stored.clone());
        Ok(())
    }

    /// Stops (no more assignment or exposure; results stay) or archives an experiment.
    pub fn set_experiment_status(&self, id: &str, status: Status, key_id: &str) -> Result<StoredExperiment> {
        let mut stored = self.stored_experiment(id).ok_or_else(|| UserError::not_found("experiment", id))?;
        stored.status = status;
        self.save_experiment(&stored)?;
        self.audit.record(key_id, &format!("experiments.{}", status.as_str()), id)?;
        Ok(stored)
    }

    /// Every experiment, by id.
    pub fn experiments(&self) -> Vec<Experiment> {
        self.stored_experiments().into_iter().map(|s| s.experiment).collect()
    }

    /// Every experiment with its allocation and status, by id.
    pub fn stored_experiments(&self) -> Vec<StoredExperiment> {
        let mut all: Vec<StoredExperiment> = self.by_id.lock().values().cloned().collect();
        all.sort_by(|a, b| a.experiment.id.cmp(&b.experiment.id));
        all
    }

    /// An experiment by id.
    pub fn experiment(&self, id: &str) -> Option<Experiment> {
        self.stored_experiment(id).map(|s| s.experiment)
    }

    /// An experiment with its allocation and status.
    pub fn stored_experiment(&self, id: &str) -> Option<StoredExperiment> {
        self.by_id.lock().get(id).cloned()
    }

    /// Sets the global holdout: a stable share of everyone kept on the non-personalized default
    /// on every slot (and out of experiments). Growing it moves nobody out of it.
    pub fn put_holdout(&self, share: f64, key_id: &str) -> Result<Holdout> {
        let previous = match self.store.get(Table::Experiments, "holdout")? {
            Some(bytes) => from_json::<Holdout>("holdout", &bytes)?,
            None => Holdout::default(),
        };
        let allocation = reallocate(&previous.allocation, &[("holdout".into(), buckets_for(share), 0)]);
        let holdout = Holdout { share, allocation };
        self.store.put(Table::Experiments, "holdout", &to_json(&holdout))?;
        *self.holdout.lock() = holdout.clone();
        self.audit.record(key_id, "holdout.put", &format!("{share}"))?;
        Ok(holdout)
    }

    /// The global holdout.
    pub fn holdout(&self) -> Holdout {
        self.holdout.lock().clone()
    }

    /// Whether a (resolved) person is in the global holdout.
    pub fn in_global_holdout(&self, person: &str) -> bool {
        let holdout = self.holdout.lock();
        !holdout.allocation.is_empty() && owner_of(&holdout.allocation, bucket(GLOBAL_HOLDOUT_SALT, person)).is_some()
    }

    /// The running experiment on a slot (the first by id), with the person's arm.
    pub(crate) fn experiment_arm(&self, slot: &str, person: Option<&str>) -> Option<(String, String, Policy)> {
        let person = person?;
        let all = self.by_id.lock();
        let mut on_slot: Vec<&StoredExperiment> =
            all.values().filter(|e| e.experiment.slot == slot && e.status == Status::Running).collect();
        on_slot.sort_by(|a, b| a.experiment.id.cmp(&b.experiment.id));
        let stored = on_slot.first()?;
        assign(stored, person).map(|(arm, policy)| (stored.experiment.id.clone(), arm.to_owned(), policy))
    }

    /// Notes a person's exposure (stored at the next flush unless one is stored already).
    pub(crate) fn expose(&self, experiment: &str, arm: &str, person: &str, at_ms: i64) {
        let key = (experiment.to_owned(), person.to_owned());
        if self.stored.lock().contains(&key) {
            return;
        }
        self.pending.lock().entry(key).or_insert_with(|| Exposure {
            experiment: experiment.to_owned(),
            arm: arm.to_owned(),
            at_ms,
        });
    }

    /// Stores pending exposures (first exposure wins: one already stored is kept). Called with
    /// the decision log's flush.
    pub(crate) fn flush_exposures(&self) -> Result<usize> {
        let pending: Vec<((String, String), Exposure)> =
            std::mem::take(&mut *self.pending.lock()).into_iter().collect();
        let mut entries = Vec::new();
        for ((experiment, person), exposure) in pending {
            let record_key = format!("{person}\0x\0{experiment}");
            if self.store.get(Table::Decisions, &record_key)?.is_none() {
                let bytes = to_json(&exposure);
                entries.push((format!("xp\0{experiment}\0{person}"), bytes.clone(), record_key, bytes));
            }
            let mut stored = self.stored.lock();
            if stored.len() > 1_000_000 {
                stored.clear();
            }
            stored.insert((experiment, person));
        }
        if entries.is_empty() {
            return Ok(0);
        }
        let records: Vec<(String, Vec<u8>)> = entries.iter().map(|e| (e.2.clone(), e.3.clone())).collect();
        let index: Vec<(String, Vec<u8>)> = entries.iter().map(|e| (e.0.clone(), e.1.clone())).collect();
        self.store.put_many(Table::Decisions, &records)?;
        self.store.put_many(Table::Experiments, &index)?;
        self.note_exposures_changed()?;
        Ok(entries.len())
    }

    /// Erasure: deletes the exposure index entries naming any of `ids` and counts the erasure
    /// against the experiment's arm (a count, no id). Returns the entries deleted.
    pub(crate) fn forget_exposures_of(&self, ids: &[String]) -> Result<u64> {
        let mut deleted = 0;
        {
            let mut pending = self.pending.lock();
            pending.retain(|(_, person), _| !ids.contains(person));
            self.stored.lock().retain(|(_, person)| !ids.contains(person));
        }
        let experiments: Vec<String> = self.by_id.lock().keys().cloned().collect();
        let mut erased = Vec::new();
        for experiment in experiments {
            for id in ids {
                let key = format!("xp\0{experiment}\0{id}");
                let Some(bytes) = self.store.get(Table::Experiments, &key)? else { continue };
                // Counted by whoever deletes the entry (two servers erasing one person count
                // once), with the store's atomic counters (two servers erasing two people lose
                // no count).
                if !self.store.delete(Table::Experiments, &key)? {
                    continue;
                }
                deleted += 1;
                if let Ok(exposure) = from_json::<Exposure>("exposure", &bytes) {
                    erased.push((erasure_counter(&experiment, &exposure.arm), 1));
                }
            }
        }
        if !erased.is_empty() {
            self.store.add_counters(Table::Experiments, &erased)?;
        }
        if deleted > 0 {
            self.note_exposures_changed()?;
        }
        Ok(deleted)
    }

    /// People of an experiment's arm erased after their exposure: the atomic counter
    /// ([`erasure_counter`]) plus what a build before it counted in a JSON record
    /// ([`LEGACY_ERASURE_PREFIX`], read, never written).
    pub(crate) fn erasures(&self, experiment: &str, arm: &str) -> Result<u64> {
        let counted = match self.store.get(Table::Experiments, &erasure_counter(experiment, arm))? {
            Some(bytes) => attune_store::counter_value(&bytes)?,
            None => 0,
        };
        let legacy = match self.store.get(Table::Experiments, &format!("{LEGACY_ERASURE_PREFIX}{experiment}\0{arm}"))? {
            Some(bytes) => from_json::<u64>("erasure count", &bytes).unwrap_or(0),
            None => 0,
        };
        Ok(counted.saturating_add(legacy))
    }

    /// Records that exposure index entries were written or deleted (see
    /// [`EXPOSURES_CHANGED_KEY`]).
    fn note_exposures_changed(&self) -> Result<()> {
        self.store.put(Table::Meta, EXPOSURES_CHANGED_KEY, ulid::Ulid::generate().to_string().as_bytes())?;
        Ok(())
    }

    /// Retention: exposure index entries older than `cutoff_ms` (their records in
    /// `Table::Decisions` are swept with the decisions).
    pub(crate) fn sweep_exposures(&self, cutoff_ms: i64) -> Result<u64> {
        let mut expired = Vec::new();
        for (key, bytes) in scan_records(&*self.store, Table::Experiments, "xp\0")? {
            if from_json::<Exposure>("exposure", &bytes).is_ok_and(|e| e.at_ms < cutoff_ms) {
                expired.push(key);
            }
        }
        for key in &expired {
            self.store.delete(Table::Experiments, key)?;
        }
        if !expired.is_empty() {
            self.note_exposures_changed()?;
        }
        Ok(expired.len() as u64)
    }

    /// The stored exposures of an experiment: (person, exposure).
    pub fn exposures(&self, id: &str) -> Result<Vec<(String, Exposure)>> {
        let prefix = format!("xp\0{id}\0");
        let mut all = Vec::new();
        for (key, bytes) in scan_records(&*self.store, Table::Experiments, &prefix)? {
            let person = key[prefix.len()..].to_owned();
            all.push((person, from_json::<Exposure>("exposure", &bytes)?));
        }
        Ok(all)
    }

    /// Records that stored events were deleted (erasure, consent withdrawal, a forgotten item,
    /// retention): analysis state built before it starts over. Written after the deletion, so a
    /// reader that saw the old generation reads the new one at its next query.
    pub(crate) fn note_events_deleted(&self) -> Result<()> {
        self.store.put(Table::Meta, EVENTS_DELETED_KEY, ulid::Ulid::generate().to_string().as_bytes())?;
        Ok(())
    }

    /// Brings the analysis state of `id` and `window_ms` up to date with the store (see
    /// [`Tally`]). Cost: the exposure index's keys, the events appended since the last query,
    /// and the histories of people exposed since then.
    fn refresh_tally(&self, people: &People, id: &str, window_ms: i64, tally: &mut Tally) -> Result<()> {
        let generation = self.store.get(Table::Meta, EVENTS_DELETED_KEY)?;
        if tally.generation != generation || !tally.built {
            *tally = Tally { generation, ..Tally::default() };
        }
        let fresh = !tally.built;
        // The exposures, in key order; only new ones are decoded. Skipped when no exposure was
        // written or deleted anywhere since the last read.
        let exposures_changed = self.store.get(Table::Meta, EXPOSURES_CHANGED_KEY)?;
        let index_unchanged = !fresh && exposures_changed.is_some() && tally.exposures_seen == exposures_changed;
        let prefix = format!("xp\0{id}\0");
        let mut new_people = Vec::new();
        if !index_unchanged {
            let mut seen = 0usize;
            let mut failure = None;
            self.store.scan(Table::Experiments, &prefix, &mut |key, bytes| {
                let person = &key[prefix.len()..];
                seen += 1;
                if !tally.exposed.contains_key(person) {
                    match from_json::<Exposure>("exposure", bytes) {
                        Ok(exposure) => {
                            tally.exposed.insert(person.to_owned(), (exposure.arm, exposure.at_ms));
                            new_people.push(person.to_owned());
                        }
                        Err(err) => {
                            failure = Some(err);
                            return false;
                        }
                    }
                }
                true
            })?;
            if let Some(err) = failure {
                return Err(err);
            }
            if seen != tally.exposed.len() {
                // Exposures swept by retention or erased since the last query (rare: both delete
                // events too, which starts the analysis over): the index is read again for the
                // people still exposed.
                let mut present = Vec::with_capacity(seen);
                self.store.scan(Table::Experiments, &prefix, &mut |key, _| {
                    let person = &key[prefix.len()..];
                    if tally.exposed.contains_key(person) {
                        present.push(person.to_owned());
                    }
                    true
                })?;
                let kept: FxHashSet<&str> = present.iter().map(String::as_str).collect();
                tally.exposed.retain(|person, _| kept.contains(person.as_str()));
                tally.marks.retain(|person, _| kept.contains(person.as_str()));
                tally.values.retain(|person, _| kept.contains(person.as_str()));
                tally.subjects.retain(|_, person| kept.contains(person.as_str()));
                present.sort_unstable();
                tally.order = present;
            } else if !new_people.is_empty() {
                // The newly exposed merged into the order (both sorted by id), without copying
                // the ids already there.
                let mut added = new_people.clone();
                added.sort_unstable();
                let old = std::mem::take(&mut tally.order);
                let mut order = Vec::with_capacity(old.len() + added.len());
                let (mut old, mut added) = (old.into_iter().peekable(), added.into_iter().peekable());
                while let (Some(a), Some(b)) = (old.peek(), added.peek()) {
                    order.push(if a <= b { old.next() } else { added.next() }.expect("peeked"));
                }
                order.extend(old);
                order.extend(added);
                tally.order = order;
            }
            tally.exposures_seen = exposures_changed;
        }
        // Subjects whose history must be read: newly exposed people, and anonymous ids merged
        // into an exposed person since the last query.
        let mut new_subjects: Vec<(String, String)> = Vec::new();
        for person in new_people {
            if !tally.subjects.contains_key(&person) {
                new_subjects.push((person.clone(), person));
            }
        }
        let aliases = people.aliases.read();
        if !new_subjects.is_empty() || aliases.len() != tally.n_aliases {
            for (alias, person) in aliases.iter() {
                if tally.exposed.contains_key(person) && !tally.subjects.contains_key(alias) {
                    new_subjects.push((alias.clone(), person.clone()));
                }
            }
        }
        tally.n_aliases = aliases.len();
        drop(aliases);
        let mut touched: FxHashSet<String> = FxHashSet::default();
        for (subject, person) in new_subjects {
            if !fresh {
                // Their events up to the watermark; later ones come with the log below.
                let (watermark, at) = (tally.watermark, tally.exposed[&person].1);
                let mut marks = Vec::new();
                try_events(
                    |visit| self.store.subject_events(&subject, visit),
                    |row| {
                        if row.seq <= watermark && row.ts_ms >= at - window_ms && row.ts_ms < at + window_ms {
                            marks.push(Mark::of(row.seq, &decode_event(&row.payload)?));
                        }
                        Ok(true)
                    },
                )?;
                tally.marks.entry(person.clone()).or_default().extend(marks);
                touched.insert(person.clone());
            }
            tally.subjects.insert(subject, person);
        }
        // The log since the watermark (all of it when fresh). Only events of exposed people
        // within the window around their exposure are decoded.
        let mut watermark = tally.watermark;
        try_events(
            |visit| self.store.scan_events(tally.watermark, visit),
            |row| {
                watermark = watermark.max(row.seq);
                let Some(person) = tally.subjects.get(&row.subject) else { return Ok(true) };
                let at = tally.exposed.get(person).map_or(i64::MIN, |e| e.1);
                if row.ts_ms < at.saturating_sub(window_ms) || row.ts_ms >= at.saturating_add(window_ms) {
                    return Ok(true);
                }
                let event = decode_event(&row.payload)?;
                tally.marks.entry(person.clone()).or_default().push(Mark::of(row.seq, &event));
                if !touched.contains(person) {
                    touched.insert(person.clone());
                }
                Ok(true)
            },
        )?;
        tally.watermark = watermark;
        tally.built = true;
        for person in touched {
            if let Some(marks) = tally.marks.get_mut(&person) {
                marks.sort_by_key(|m| (m.ts_ms, m.seq));
            }
            tally.values.remove(&person);
        }
        // Values of people exposed or touched since the last query.
        let Tally { order, exposed, marks, values, .. } = &mut *tally;
        for person in order.iter() {
            if !values.contains_key(person)
                && let Some(&(_, at)) = exposed.get(person)
            {
                let of = PersonValues::of(marks.get(person).map_or(&[][..], Vec::as_slice), at, window_ms);
                values.insert(person.clone(), of);
            }
        }
        Ok(())
    }

    /// Runs `f` over the up-to-date analysis state of an experiment (one query at a time per
    /// experiment and window).
    fn with_tally<T>(&self, people: &People, id: &str, window_ms: i64, f: impl FnOnce(&Tally) -> T) -> Result<T> {
        let tally = {
            let mut tallies = self.tallies.lock();
            tallies.retain(|(experiment, _), _| self.by_id.lock().contains_key(experiment));
            if tallies.len() >= MAX_TALLIES {
                // Many windows asked for: keep memory bounded, rebuild on demand.
                tallies.clear();
            }
            tallies.entry((id.to_owned(), window_ms)).or_default().clone()
        };
        let mut tally = tally.lock();
        self.refresh_tally(people, id, window_ms, &mut tally)?;
        Ok(f(&tally))
    }

    /// Brings the analysis state of every running experiment (default window) up to date, so
    /// that a query finds little to read: `attune serve` calls it every few seconds, and right
    /// after start, off the request path. Returns the experiments refreshed.
    pub fn refresh_results(&self, people: &People) -> Result<usize> {
        self.flush_exposures()?;
        let running: Vec<String> = self
            .by_id
            .lock()
            .values()
            .filter(|e| e.status == Status::Running)
            .map(|e| e.experiment.id.clone())
            .collect();
        for id in &running {
            self.with_tally(people, id, WINDOW_MS, |_| ())?;
        }
        Ok(running.len())
    }

    /// Whether a person withdrew personalization consent or paused it (the opt-out guardrail).
    fn opted_out(people: &People, person: &str) -> bool {
        people.personalization_off(person)
    }

    /// The cumulative lift of an experiment's [`primary_metric`] at up to `n_points` moments
    /// evenly spaced from its first exposure to now, with always-valid intervals (the chart on
    /// the console). Each person counts from their exposure, with their events up to the moment.
    pub fn timeline(&self, people: &People, id: &str, window_ms: i64, n_points: usize) -> Result<LiftTimeline> {
        let stored = self.stored_experiment(id).ok_or_else(|| UserError::not_found("experiment", id))?;
        self.flush_exposures()?;
        let experiment = &stored.experiment;
        let metric = primary_metric(experiment);
        let m = METRICS.iter().position(|(n, _)| *n == metric).unwrap_or(0);
        let proportion = is_proportion(metric);
        let mut arms: Vec<String> = experiment.arms.iter().map(|a| a.name.clone()).collect();
        if experiment.holdout > 0.0 {
            arms.push("holdout".into());
        }
        let now_ms = self.clock.now_ms();
        let points = self.with_tally(people, id, window_ms, |tally| {
            let Some(first) = tally.exposed.values().map(|(_, at)| *at).min() else { return Vec::new() };
            let span = (now_ms - first).max(1);
            let n_points = n_points.clamp(1, 100) as i64;
            let people: Vec<(usize, i64, &[Mark])> = tally
                .order
                .iter()
                .filter_map(|person| {
                    let (arm, at) = tally.exposed.get(person)?;
                    let arm = arms.iter().position(|a| a == arm)?;
                    Some((arm, *at, tally.marks.get(person).map_or(&[][..], Vec::as_slice)))
                })
                .collect();
            (1..=n_points)
                .map(|j| {
                    let at_ms = first + span * j / n_points;
                    let mut moments = vec![Moments { n: 0.0, sum: 0.0, sum_squares: 0.0, proportion }; arms.len()];
                    let mut exposed = vec![0u64; arms.len()];
                    for (arm, at, marks) in &people {
                        if *at > at_ms {
                            continue;
                        }
                        exposed[*arm] += 1;
                        let value = person_values(marks, *at, (at + window_ms).min(at_ms + 1), *at)[m];
                        let value = match (value, metric) {
                            (Some(v), _) => v,
                            (None, "survey_mean") => continue,
                            (None, _) => 0.0,
                        };
                        let s = &mut moments[*arm];
                        s.n += 1.0;
                        s.sum += value;
                        s.sum_squares += value * value;
                    }
                    let sequential = (0..arms.len())
                        .map(|i| {
                            (i > 0)
                                .then(|| {
                                    stats::sequential(&moments[0].into(), &moments[i].into(), stats::SEQUENTIAL_TUNING)
                                })
                                .flatten()
                        })
                        .collect();
                    LiftPoint { at_ms, exposed, sequential }
                })
                .collect()
        })?;
        Ok(LiftTimeline { metric: metric.to_owned(), arms, points })
    }

    /// Per metric and arm: sufficient statistics over exposed people (each person's events in
    /// the attribution window after their exposure; the CUPED covariate is the same metric over
    /// the window before it), the analysis against the control, and the sample-ratio check.
    /// Computed from the store at query time (see [`Tally`] for how the work stays proportional
    /// to what changed): every server of one database answers the same.
    pub fn results(&self, people: &People, id: &str, window_ms: i64) -> Result<ExperimentResults> {
        let stored = self.stored_experiment(id).ok_or_else(|| UserError::not_found("experiment", id))?;
        self.flush_exposures()?;
        let experiment = &stored.experiment;
        let mut names: Vec<(String, f64)> = experiment.arms.iter().map(|a| (a.name.clone(), a.weight)).collect();
        if experiment.holdout > 0.0 {
            names.push(("holdout".into(), experiment.holdout));
        }
        let k = names.len();
        let (per_metric, exposed) = self.with_tally(people, id, window_ms, |tally| {
            let mut per_metric: Vec<Vec<ArmStats>> = vec![vec![ArmStats::default(); k]; METRICS.len()];
            let mut exposed = vec![0u64; k];
            for person in &tally.order {
                let Some((arm_name, at)) = tally.exposed.get(person) else { continue };
                let Some(arm) = names.iter().position(|(n, _)| n == arm_name) else { continue };
                exposed[arm] += 1;
                let values = match tally.values.get(person) {
                    Some(values) => *values,
                    None => PersonValues::of(tally.marks.get(person).map_or(&[][..], Vec::as_slice), *at, window_ms),
                };
                let post = values.post.map(value);
                let pre = values.pre.map(value);
                let opted_out = Experiments::opted_out(people, person);
                for (m, (name, _)) in METRICS.iter().enumerate() {
                    match *name {
                        "erasures" => {}
                        "opt_out_or_pause" => per_metric[m][arm].add(if opted_out { 1.0 } else { 0.0 }, 0.0),
                        "survey_mean" => {
                            if let Some(v) = post[m] {
                                per_metric[m][arm].add(v, pre[m].unwrap_or(0.0));
                            }
                        }
                        _ => per_metric[m][arm].add(post[m].unwrap_or(0.0), pre[m].unwrap_or(0.0)),
                    }
                }
            }
            (per_metric, exposed)
        })?;
        let mut per_metric = per_metric;
        // Erasures: a count per arm, kept without ids.
        let erasures_index = METRICS.iter().position(|(n, _)| *n == "erasures").unwrap_or(0);
        for (arm, (name, _)) in names.iter().enumerate() {
            let n = self.erasures(id, name)?;
            if n > 0 {
                let s = &mut per_metric[erasures_index][arm];
                s.n = n;
                s.sum = n as f64;
                s.sum_squares = n as f64;
            }
        }
        let mut metrics = Vec::new();
        for (m, (name, _)) in METRICS.iter().enumerate() {
            let proportion = is_proportion(name);
            let kind = if *name == "erasures" {
                "count"
            } else if proportion {
                "proportion"
            } else {
                "mean"
            };
            let control = per_metric[m][0];
            let arms = names
                .iter()
                .enumerate()
                .map(|(i, (arm, _))| {
                    let s = per_metric[m][i];
                    let analysed = i > 0 && kind != "count";
                    let post_a = control.post(proportion);
                    let post_b = s.post(proportion);
                    MetricArm {
                        arm: arm.clone(),
                        stats: s,
                        mean: if kind == "count" { s.sum } else { post_b.mean() },
                        lift: analysed.then(|| stats::two_sided(&post_a.into(), &post_b.into())).flatten(),
                        sequential: analysed
                            .then(|| stats::sequential(&post_a.into(), &post_b.into(), stats::SEQUENTIAL_TUNING))
                            .flatten(),
                        cuped: analysed
                            .then(|| {
                                let (a, b) = stats::regression_adjusted(
                                    (post_a, control.pre(proportion), control.post_pre_sum_of_products),
                                    (post_b, s.pre(proportion), s.post_pre_sum_of_products),
                                );
                                stats::two_sided(&a, &b)
                            })
                            .flatten(),
                    }
                })
                .collect();
            metrics.push(MetricResult { name: (*name).to_owned(), kind, arms });
        }
        let weights: Vec<f64> = names.iter().map(|(_, w)| *w).collect();
        let srm_p = stats::srm_p_value(&exposed, &weights);
        Ok(ExperimentResults {
            exposed: names.iter().map(|(n, _)| n.clone()).zip(exposed).collect(),
            metrics,
            srm_p,
            srm_mismatch: srm_p < 0.001,
            window_ms,
            status: stored.status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(weights: &[f64], holdout: f64, coverage: f64) -> Experiment {
        Experiment {
            id: "exp-1".into(),
            slot: "home_feed".into(),
            arms: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Arm { name: format!("arm-{i}"), weight: *w, policy: Policy::Default })
                .collect(),
            holdout,
            metrics: vec![],
            coverage,
        }
    }

    fn stored(e: Experiment, previous: Option<&StoredExperiment>) -> StoredExperiment {
        let allocation = reallocate(previous.map_or(&[][..], |p| &p.allocation[..]), &targets(&e));
        StoredExperiment { experiment: e, allocation, status: Status::Running, created_ms: 0 }
    }

    /// GrowthBook's published hash version 2 vectors (`packages/sdk-js/test/cases.json`) and
    /// Attune's own (docs/experiments.md).
    #[test]
    fn hash_test_vectors() {
        for (seed, value, n) in [
            ("seed", "a", 0.0505),
            ("seed", "b", 0.2696),
            ("foo", "ab", 0.2575),
            ("foo", "def", 0.2019),
            ("89123klj", "8952klfjas09ujkasdf", 0.124),
            ("90850943850283058242805", "123", 0.7516),
            ("()**(%$##$%#$#", "___)((*\":&", 0.0128),
        ] {
            assert_eq!(f64::from(bucket(seed, value)) / f64::from(BUCKETS), n, "{seed} {value}");
        }
        for (salt, person, b) in [
            ("home-feed-personalized", "u-1", 8035),
            ("home-feed-personalized", "u-2", 8973),
            ("home-feed-personalized", "anon-7f3a", 6954),
            (GLOBAL_HOLDOUT_SALT, "u-1", 6028),
            (GLOBAL_HOLDOUT_SALT, "u-2", 9808),
        ] {
            assert_eq!(bucket(salt, person), b, "{salt} {person}");
        }
    }

    #[test]
    fn assignment_is_deterministic_and_follows_weights() {
        let e = stored(experiment(&[0.5, 0.45], 0.05, 1.0), None);
        let mut counts: FxHashMap<String, u32> = FxHashMap::default();
        for i in 0..20_000 {
            let id = format!("u-{i}");
            let arm = assign(&e, &id).map(|(a, _)| a.to_owned());
            assert_eq!(arm, assign(&e, &id).map(|(a, _)| a.to_owned()));
            *counts.entry(arm.unwrap_or_default()).or_insert(0) += 1;
        }
        assert!((f64::from(counts["holdout"]) / 20_000.0 - 0.05).abs() < 0.01, "{counts:?}");
        assert!((f64::from(counts["arm-0"]) / 20_000.0 - 0.5).abs() < 0.02, "{counts:?}");
    }

    /// Grows each arm's weight, the holdout and the coverage in turn: nobody assigned moves.
    #[test]
    fn growing_any_weight_or_the_coverage_moves_nobody() {
        let mut current = stored(experiment(&[0.1, 0.1, 0.1], 0.02, 0.5), None);
        let steps: [fn(&mut Experiment); 7] = [
            |e| e.arms[0].weight = 0.2,
            |e| e.arms[1].weight = 0.25,
            |e| e.holdout = 0.05,
            |e| e.arms[2].weight = 0.3,
            |e| e.coverage = 0.8,
            |e| e.arms[0].weight = 0.3,
            |e| e.coverage = 1.0,
        ];
        let people: Vec<String> = (0..20_000).map(|i| format!("u-{i}")).collect();
        for step in steps {
            let mut next_def = current.experiment.clone();
            step(&mut next_def);
            let next = stored(next_def.clone(), Some(&current));
            let mut sizes: FxHashMap<&str, u32> = FxHashMap::default();
            for s in &next.allocation {
                *sizes.entry(s.owner.as_str()).or_default() += s.end - s.start;
            }
            for (name, target, _) in targets(&next_def) {
                assert_eq!(sizes.get(name.as_str()).copied().unwrap_or(0), target, "{name}");
            }
            for person in &people {
                if let Some((arm, _)) = assign(&current, person) {
                    assert_eq!(Some(arm), assign(&next, person).map(|(a, _)| a), "{person} moved");
                }
            }
            current = next;
        }
    }
}
