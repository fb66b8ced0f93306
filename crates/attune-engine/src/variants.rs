//! The presentation variant of each slot, learned: a contextual bandit (disjoint LinUCB,
//! [`attune_rank::LinearArm`] per variant) over the decision's device, local hour band, journey
//! stage and engagement, one per slot. Rules that force a variant come first (`decide`); only
//! the variants the bandit chose teach it.
//!
//! **Reward.** An exposure is recorded as a failure when the decision is logged; an engaged event
//! (click or better) that carries the decision's id adds the success, once per decision and
//! slot, so each exposure is one Bernoulli trial. Attribution happens where the event is
//! ingested (the decision is found in this process's log, else in the store), never when
//! another server's event is folded by the sync, so a click is counted once in a cluster.
//!
//! **State.** Per slot, one record in [`Table::Experiments`] under `variants\0<slot>` holds every
//! variant's sums (`Σ x xᵀ`, `Σ r x`) and counters (overall, per context value, forced). They are
//! sums: each process records increments locally and adds them to the stored record with
//! [`Store::update`](attune_store::Store::update) (an atomic read-modify-write: concurrent
//! servers lose none of each other's increments) every second ([`crate::Engine::flush_decisions`]);
//! [`crate::Engine::sync_from_store`] reads the records back, so what other servers learned is used
//! here within one sync period. What a process chooses with is the stored sums plus its own
//! unflushed increments; the choice is a pure function of those sums and the context (UCB, the
//! first configured variant on ties), so servers holding the same state choose the same variant,
//! and a restarted server continues where the store left off.
//!
//! **Privacy.** The records are aggregates over contexts: they name no person. The context of
//! each logged decision (what the reward needs) is stored with the decision, under the person's
//! key, so export shows it and erasure removes it.

use std::collections::BTreeMap;

use attune_core::JourneyStage;
use attune_rank::LinearArm;
use attune_store::Table;
use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use attune_store::Store;

use crate::error::Result;
use crate::records::{scan_records, to_json};

/// Context features: an intercept, device (3), hour band (4), journey stage (5), engagement.
pub const DIM: usize = 14;

/// Exploration strength of the UCB: an arm's bound is its estimated click rate plus `ALPHA`
/// times its standard error (about `1/sqrt(exposures in like contexts)`). At 0.2 a difference of
/// 0.02 in click rate is acted on after about 100 exposures per variant in a context.
pub const ALPHA: f64 = 0.2;

/// Devices with a feature of their own (others count as unknown).
pub const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];

/// Bands of the local hour, in feature order.
pub const HOUR_BANDS: [&str; 4] = ["morning", "midday", "evening", "night"];

/// Decisions whose reward was counted, remembered (a bound on memory; older ones are forgotten).
const REWARDED_CAPACITY: usize = 200_000;

/// Key prefix of the slots' records in [`Table::Experiments`].
const RECORD_PREFIX: &str = "variants\0";

/// The band of a local hour: `morning` 5–9, `midday` 10–16, `evening` 17–20, `night` 21–4.
pub fn hour_band(hour: u8) -> &'static str {
    match hour {
        5..=9 => "morning",
        10..=16 => "midday",
        17..=20 => "evening",
        _ => "night",
    }
}

/// What the bandit sees of a decision: stored with the logged decision so that a later click
/// rewards the context the variant was chosen in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantContext {
    /// `mobile`, `desktop`, `tablet`, or `None` (unknown or other).
    pub device: Option<String>,
    /// One of [`HOUR_BANDS`], if the local hour is known.
    pub hour_band: Option<String>,
    /// The journey stage (wire name).
    pub journey_stage: String,
    /// Engagement, 0–1 (0 without personalization).
    pub engagement: f32,
}

impl VariantContext {
    /// The context of a decision: `device` as sent (only the known devices count), the local
    /// hour if known.
    pub fn new(device: Option<&str>, local_hour: Option<u8>, stage: JourneyStage, engagement: f32) -> VariantContext {
        VariantContext {
            device: device.map(str::to_ascii_lowercase).filter(|d| DEVICES.contains(&d.as_str())),
            hour_band: local_hour.map(|h| hour_band(h).to_owned()),
            journey_stage: stage.as_str().to_owned(),
            engagement: if engagement.is_finite() { engagement.clamp(0.0, 1.0) } else { 0.0 },
        }
    }

    /// The feature vector (length [`DIM`]).
    pub fn features(&self) -> [f64; DIM] {
        let mut x = [0.0; DIM];
        x[0] = 1.0;
        if let Some(k) = self.device.as_deref().and_then(|d| DEVICES.iter().position(|v| *v == d)) {
            x[1 + k] = 1.0;
        }
        if let Some(k) = self.hour_band.as_deref().and_then(|b| HOUR_BANDS.iter().position(|v| *v == b)) {
            x[4 + k] = 1.0;
        }
        if let Some(k) = JourneyStage::ALL.iter().position(|s| s.as_str() == self.journey_stage) {
            x[8 + k] = 1.0;
        }
        x[13] = f64::from(self.engagement);
        x
    }

    /// The context values the counters break down by: `(dimension, value)`.
    pub fn cells(&self) -> [(&'static str, String); 4] {
        let engagement = match self.engagement {
            e if e < 1.0 / 3.0 => "low",
            e if e < 2.0 / 3.0 => "medium",
            _ => "high",
        };
        [
            ("device", self.device.clone().unwrap_or_else(|| "unknown".to_owned())),
            ("hour_band", self.hour_band.clone().unwrap_or_else(|| "unknown".to_owned())),
            ("journey_stage", self.journey_stage.clone()),
            ("engagement", engagement.to_owned()),
        ]
    }
}

/// Exposures and clicks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Times shown.
    pub exposures: u64,
    /// Times clicked (at most once per decision).
    pub clicks: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.exposures += other.exposures;
        self.clicks += other.clicks;
    }

    /// The estimated click rate: the posterior mean under a uniform prior,
    /// `(clicks + 1) / (exposures + 2)` (0.5 before any exposure).
    pub fn estimated_rate(&self) -> f64 {
        (self.clicks as f64 + 1.0) / (self.exposures as f64 + 2.0)
    }

    /// The observed rate `clicks / exposures`, if there were exposures.
    pub fn rate(&self) -> Option<f64> {
        (self.exposures > 0).then(|| self.clicks.min(self.exposures) as f64 / self.exposures as f64)
    }

    /// The 95% Wilson interval of the rate (`(0, 1)` before any exposure).
    pub fn interval(&self) -> (f64, f64) {
        let n = self.exposures as f64;
        if n == 0.0 {
            return (0.0, 1.0);
        }
        let p = self.clicks.min(self.exposures) as f64 / n;
        let z = 1.959_963_984_540_054_f64;
        let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
        let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
        ((centre - half).max(0.0), (centre + half).min(1.0))
    }
}

/// One variant's learned state (all sums, so records add up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ArmRecord {
    model: LinearArm,
    /// Exposures chosen by the bandit, and their clicks.
    counts: Counts,
    /// Exposures forced by a rule, and their clicks (they never reach the model).
    forced: Counts,
    /// Bandit exposures and clicks by `dimension=value`.
    by_context: BTreeMap<String, Counts>,
}

impl Default for ArmRecord {
    fn default() -> Self {
        ArmRecord {
            model: LinearArm::new(DIM),
            counts: Counts::default(),
            forced: Counts::default(),
            by_context: BTreeMap::new(),
        }
    }
}

/// A slot's record: every variant it has shown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SlotRecord {
    arms: BTreeMap<String, ArmRecord>,
}

impl SlotRecord {
    fn merge(&mut self, other: &SlotRecord) {
        for (variant, theirs) in &other.arms {
            let arm = self.arms.entry(variant.clone()).or_default();
            if !theirs.model.is_empty() {
                arm.model.merge(&theirs.model);
            }
            arm.counts.add(theirs.counts);
            arm.forced.add(theirs.forced);
            for (cell, counts) in &theirs.by_context {
                arm.by_context.entry(cell.clone()).or_default().add(*counts);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.arms.is_empty()
    }

    fn record_exposure(&mut self, variant: &str, context: &VariantContext, x: &[f64; DIM]) {
        let arm = self.arms.entry(variant.to_owned()).or_default();
        arm.model.record(x, 0.0);
        arm.counts.exposures += 1;
        for (dimension, value) in context.cells() {
            arm.by_context.entry(format!("{dimension}={value}")).or_default().exposures += 1;
        }
    }

    fn record_click(&mut self, variant: &str, context: &VariantContext, x: &[f64; DIM]) {
        let arm = self.arms.entry(variant.to_owned()).or_default();
        arm.model.add_reward(x, 1.0);
        arm.counts.clicks += 1;
        for (dimension, value) in context.cells() {
            arm.by_context.entry(format!("{dimension}={value}")).or_default().clicks += 1;
        }
    }
}

/// One slot in memory: the stored record as last read or written, the increments recorded here
/// since the last flush, and their sum (what choices use).
#[derive(Default)]
struct SlotState {
    stored: SlotRecord,
    stored_digest: u64,
    pending: SlotRecord,
    view: SlotRecord,
}

impl SlotState {
    fn rebuild_view(&mut self) {
        let mut view = self.stored.clone();
        view.merge(&self.pending);
        self.view = view;
    }
}

/// Every slot's bandit (see the module documentation): the slots' records as this process
/// sees them, and their store access.
pub struct VariantBandits {
    store: Arc<dyn Store>,
    slots: Mutex<FxHashMap<String, SlotState>>,
    /// `(decision id, placement index)` whose click was counted.
    rewarded: Mutex<FxHashSet<(String, usize)>>,
}

impl VariantBandits {
    /// Loads every slot's stored record.
    pub(crate) fn open(store: Arc<dyn Store>) -> Result<VariantBandits> {
        let bandits = VariantBandits {
            store,
            slots: Mutex::new(FxHashMap::default()),
            rewarded: Mutex::new(FxHashSet::default()),
        };
        bandits.load_stats()?;
        Ok(bandits)
    }

    /// The index among `variants` the bandit chooses in `context` (0 with no variants).
    pub(crate) fn choose(&self, slot: &str, variants: &[String], context: &VariantContext) -> usize {
        let x = context.features();
        let slots = self.slots.lock();
        let arms = slots.get(slot).map(|state| &state.view.arms);
        let arm = |variant: &String| arms.and_then(|arms| arms.get(variant)).map(|arm| &arm.model);
        attune_rank::choose_ucb(variants.iter().map(arm), &x, ALPHA).unwrap_or(0)
    }

    fn with_slot(&self, slot: &str, record: impl Fn(&mut SlotRecord)) {
        let mut slots = self.slots.lock();
        let state = match slots.get_mut(slot) {
            Some(state) => state,
            None => slots.entry(slot.to_owned()).or_default(),
        };
        record(&mut state.pending);
        record(&mut state.view);
    }

    pub(crate) fn record_exposure(&self, slot: &str, variant: &str, context: Option<&VariantContext>) {
        match context {
            Some(context) => {
                let x = context.features();
                self.with_slot(slot, |record| record.record_exposure(variant, context, &x));
            }
            None => {
                self.with_slot(slot, |record| record.arms.entry(variant.to_owned()).or_default().forced.exposures += 1)
            }
        }
    }

    /// Counts a click on placement `index` of `decision_id` once; false if it was counted before.
    fn first_reward(&self, decision_id: &str, index: usize) -> bool {
        let mut rewarded = self.rewarded.lock();
        if rewarded.len() >= REWARDED_CAPACITY {
            rewarded.clear();
        }
        rewarded.insert((decision_id.to_owned(), index))
    }

    fn record_click(&self, slot: &str, variant: &str, context: Option<&VariantContext>) {
        match context {
            Some(context) => {
                let x = context.features();
                self.with_slot(slot, |record| record.record_click(variant, context, &x));
            }
            None => {
                self.with_slot(slot, |record| record.arms.entry(variant.to_owned()).or_default().forced.clicks += 1)
            }
        }
    }
}

/// How one variant of a slot performs.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantPerformance {
    /// The variant.
    pub variant: String,
    /// Whether the slot still offers it.
    pub configured: bool,
    /// Exposures the bandit chose, and their clicks.
    pub counts: Counts,
    /// Exposures a rule forced, and their clicks (not learned from).
    pub forced: Counts,
    /// The bandit's counts by context: `(dimension, value, counts)`, dimensions `device`,
    /// `hour_band`, `journey_stage`, `engagement`.
    pub by_context: Vec<(String, String, Counts)>,
}

impl VariantBandits {
    /// Rewards the variant shown at placement `index` of decision `decision_id` (on `slot`,
    /// chosen in `context`, or forced when `None`), once per decision and placement.
    pub(crate) fn reward(
        &self,
        decision_id: &str,
        index: usize,
        slot: &str,
        variant: &str,
        context: Option<&VariantContext>,
    ) {
        if self.first_reward(decision_id, index) {
            self.record_click(slot, variant, context);
        }
    }

    /// Adds the increments recorded here to the stored records (one atomic update per slot) and
    /// takes back the totals. On a store error the increments stay pending for the next flush.
    pub(crate) fn flush_stats(&self) -> Result<usize> {
        let pending: Vec<(String, SlotRecord)> = {
            let mut slots = self.slots.lock();
            slots
                .iter_mut()
                .filter(|(_, state)| !state.pending.is_empty())
                .map(|(slot, state)| (slot.clone(), std::mem::take(&mut state.pending)))
                .collect()
        };
        let n = pending.len();
        let mut pending = pending.into_iter();
        while let Some((slot, increments)) = pending.next() {
            let written = self.store.update(Table::Experiments, &format!("{RECORD_PREFIX}{slot}"), &mut |old| {
                let mut record: SlotRecord =
                    old.and_then(|bytes| serde_json::from_slice(bytes).ok()).unwrap_or_default();
                record.merge(&increments);
                to_json(&record)
            });
            let mut slots = self.slots.lock();
            match written {
                Ok(bytes) => {
                    let state = slots.entry(slot).or_default();
                    if let Ok(record) = serde_json::from_slice(&bytes) {
                        state.stored = record;
                        state.stored_digest = xxhash_rust::xxh3::xxh3_64(&bytes);
                    }
                    state.rebuild_view();
                }
                Err(err) => {
                    // Put this slot's and every later slot's increments back.
                    slots.entry(slot).or_default().pending.merge(&increments);
                    for (slot, increments) in pending {
                        slots.entry(slot).or_default().pending.merge(&increments);
                    }
                    return Err(err.into());
                }
            }
        }
        Ok(n)
    }

    /// Reads every slot's stored record and uses what changed (other servers' increments; at
    /// start, what earlier runs learned).
    pub(crate) fn load_stats(&self) -> Result<()> {
        let records = scan_records(&*self.store, Table::Experiments, RECORD_PREFIX)?;
        let mut slots = self.slots.lock();
        for (key, bytes) in records {
            let slot = &key[RECORD_PREFIX.len()..];
            let digest = xxhash_rust::xxh3::xxh3_64(&bytes);
            if slots.get(slot).is_some_and(|state| state.stored_digest == digest) {
                continue;
            }
            let record: SlotRecord = match serde_json::from_slice(&bytes) {
                Ok(record) => record,
                Err(err) => {
                    tracing::warn!(slot, error = %err, "an unreadable variant record is ignored");
                    continue;
                }
            };
            let state = slots.entry(slot.to_owned()).or_default();
            state.stored = record;
            state.stored_digest = digest;
            state.rebuild_view();
        }
        Ok(())
    }

    /// Every slot among `configured` or that has shown a variant, sorted.
    pub fn slots(&self, configured: Vec<String>) -> Vec<String> {
        let mut slots = configured;
        slots.extend(self.slots.lock().keys().cloned());
        slots.sort();
        slots.dedup();
        slots
    }

    /// How each variant of `slot` performs: the slot's `configured` variants first (in order,
    /// with zero counts if never shown), then variants it showed before its settings changed.
    /// Counts are this server's view: the stored totals plus its own increments not flushed yet.
    pub fn performance(&self, slot: &str, configured: Vec<String>) -> Vec<VariantPerformance> {
        let slots = self.slots.lock();
        let empty = SlotRecord::default();
        let record = slots.get(slot).map_or(&empty, |state| &state.view);
        let mut names: Vec<String> = configured.clone();
        names.extend(record.arms.keys().filter(|v| !configured.contains(v)).cloned());
        names
            .into_iter()
            .map(|variant| {
                let arm = record.arms.get(&variant);
                let by_context = arm
                    .map(|arm| {
                        arm.by_context
                            .iter()
                            .filter_map(|(cell, counts)| {
                                let (dimension, value) = cell.split_once('=')?;
                                Some((dimension.to_owned(), value.to_owned(), *counts))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                VariantPerformance {
                    configured: configured.contains(&variant),
                    counts: arm.map(|a| a.counts).unwrap_or_default(),
                    forced: arm.map(|a| a.forced).unwrap_or_default(),
                    by_context,
                    variant,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(device: &str, hour: u8) -> VariantContext {
        VariantContext::new(Some(device), Some(hour), JourneyStage::Exploring, 0.5)
    }

    #[test]
    fn features_and_cells_name_the_context() {
        let c = VariantContext::new(Some("Mobile"), Some(19), JourneyStage::Customer, 0.9);
        let x = c.features();
        assert_eq!(x.iter().filter(|&&v| v == 1.0).count(), 4, "{x:?}");
        assert_eq!((x[1], x[6], x[12], x[13]), (1.0, 1.0, 1.0, 0.8999999761581421));
        assert_eq!(c.cells()[0], ("device", "mobile".to_owned()));
        assert_eq!(c.cells()[3], ("engagement", "high".to_owned()));
        let unknown = VariantContext::new(Some("fridge"), None, JourneyStage::New, f32::NAN);
        assert_eq!(unknown.features()[1..8], [0.0; 7]);
        assert_eq!(unknown.cells()[0].1, "unknown");
    }

    #[test]
    fn records_add_up_like_one_process() {
        let variants = ["a".to_owned(), "b".to_owned()];
        // In memory only: nothing is flushed, so the three may share one (empty) store.
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(attune_store::EmbeddedStore::open(dir.path()).unwrap());
        let bandits = || VariantBandits::open(store.clone()).unwrap();
        let (one, two, all) = (bandits(), bandits(), bandits());
        for k in 0..30u8 {
            let c = context(if k % 2 == 0 { "mobile" } else { "desktop" }, k % 24);
            let (bandit, variant) = if k % 3 == 0 { (&one, "a") } else { (&two, "b") };
            bandit.record_exposure("s", variant, Some(&c));
            all.record_exposure("s", variant, Some(&c));
            if k % 4 == 0 {
                bandit.record_click("s", variant, Some(&c));
                all.record_click("s", variant, Some(&c));
            }
        }
        let mut stored = SlotRecord::default();
        stored.merge(&one.slots.lock()["s"].pending);
        stored.merge(&two.slots.lock()["s"].pending);
        let all = &all.slots.lock()["s"].view;
        for c in [context("mobile", 8), context("desktop", 22)] {
            let x = c.features();
            for v in &variants {
                assert!((stored.arms[v].model.ucb(&x, ALPHA) - all.arms[v].model.ucb(&x, ALPHA)).abs() < 1e-9);
            }
        }
        assert_eq!(stored.arms["a"].counts, all.arms["a"].counts);
        assert_eq!(stored.arms["b"].by_context, all.arms["b"].by_context);
    }

    #[test]
    fn wilson_interval_and_estimate() {
        let c = Counts { exposures: 100, clicks: 10 };
        let (lo, hi) = c.interval();
        assert!((lo - 0.0552).abs() < 1e-3 && (hi - 0.1744).abs() < 1e-3, "{lo} {hi}");
        assert_eq!(Counts::default().interval(), (0.0, 1.0));
        assert!((c.estimated_rate() - 11.0 / 102.0).abs() < 1e-12);
        assert_eq!(Counts::default().rate(), None);
    }
}
