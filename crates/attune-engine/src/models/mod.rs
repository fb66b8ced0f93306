//! Trained models and their hot swap. Training reads the event log (only people with
//! personalization consent shape models), fits item-kNN, iALS, popularity, trending and the content
//! model, and swaps one immutable [`ModelSnapshot`] in; decisions hold an `Arc` of the snapshot they
//! started with, so a swap never pauses or tears a request. A failed training keeps the old one.
//!
//! Item indices in every model are the catalog's [`attune_core::ItemIdx`] (dense, stable for the
//! process), so no mapping happens at decide time.

use std::{sync::Arc, time::Instant};

use attune_core::{BuiltinType, Event, EventType, Purpose};
use attune_rank::{Content, ContentParams, Interactions, ItemDoc, ItemKnn, Ranker, Trending, TrendingParams};
use rustc_hash::FxHashMap;

use std::sync::atomic::{AtomicBool, Ordering};

use attune_store::{Store, Table};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::error::Result;
use crate::people::People;
use crate::records::{decode_event, from_json, to_json, try_events};

mod general;
mod publish;

pub(crate) use general::{GENERAL_PERIOD_MS, GeneralCache, GeneralKey, GeneralOrder};

/// Figures of one model at its last training.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStats {
    /// `served` (the [`Ranker`] decisions rank with), `popularity`, `trending`, `content`.
    pub name: &'static str,
    /// Wall time of the fit (for `served`: the validation search and the final fit).
    pub fit_seconds: f64,
    /// Its offline metrics on the validation split of the training data (EVAL.md protocol).
    pub metrics: Option<OfflineMetrics>,
}

/// Top-10 metrics of the EVAL.md protocol on the served ranker's validation split.
pub use attune_rank::ValidationMetrics as OfflineMetrics;

/// Everything decisions read from training, immutable once built.
pub struct ModelSnapshot {
    /// Increases with every training.
    pub version: u64,
    /// When it was trained (0: never; the empty snapshot).
    pub trained_at_ms: i64,
    /// People in the training data.
    pub n_users: usize,
    /// Item indices covered.
    pub n_items: usize,
    /// Interactions (person, item pairs) trained on.
    pub n_interactions: usize,
    /// Events read.
    pub n_events: usize,
    /// Per-model figures.
    pub stats: Vec<ModelStats>,
    /// The served ranker: the personal ranking of everyone with a history (see
    /// [`attune_rank::Ranker`]; its report holds the validation figures and chosen parameters).
    pub ranker: Option<Ranker>,
    /// Popularity by item, scaled to 0–1 (the general ranking of people without a history).
    pub popularity: Vec<f32>,
    /// Time-decayed popularity by item, scaled to 0–1.
    pub trending: Vec<f32>,
    /// TF-IDF over tags, title words, kind and level: declared goals and tag affinities (the
    /// cold start) and similar items the other models have not seen.
    pub content: Option<Content>,
    /// Engaged events by the person's local hour, over everyone who consented (24 entries, or
    /// empty before training): the prior of each person's learned send hour.
    pub hour_prior: Vec<f32>,
    /// The standard deviation of the general ranking's popularity mix over items: the scale
    /// on which the learned context effects (validated against standardized popularity) enter
    /// the general ranking.
    pub general_scale: f32,
    /// The general ranking's orders computed from this snapshot (see [`general`]).
    pub(crate) general: GeneralCache,
}

impl ModelSnapshot {
    /// The snapshot before any training: no models, so decisions fall back to the catalog.
    pub fn empty() -> ModelSnapshot {
        ModelSnapshot {
            version: 0,
            trained_at_ms: 0,
            n_users: 0,
            n_items: 0,
            n_interactions: 0,
            n_events: 0,
            stats: Vec::new(),
            ranker: None,
            popularity: Vec::new(),
            trending: Vec::new(),
            content: None,
            hour_prior: Vec::new(),
            general_scale: 0.0,
            general: GeneralCache::default(),
        }
    }

    /// The ranker's item-kNN part, if it has one (the neighbours behind `GET /v1/items/{id}/similar`).
    pub fn knn(&self) -> Option<&ItemKnn> {
        self.ranker.as_ref()?.parts().iter().find_map(|p| match &p.model {
            attune_rank::Model::ItemKnn(m) => Some(m),
            _ => None,
        })
    }
}

/// Distinct values a context dimension may have in training (the first seen; a free-form
/// `device` or `weather` string beyond them is ignored).
const MAX_CONTEXT_VALUES: usize = 16;

/// A pair whose latest event had no context.
const NO_CONTEXT: u32 = u32::MAX;

/// The name of a context feature, `dimension=value` (the value lower-cased, at most 32
/// characters): what training counts and decisions look up.
pub(crate) fn context_feature(dimension: &str, value: &str) -> String {
    let value: String = value.trim().chars().take(32).collect::<String>().to_lowercase();
    format!("{dimension}={value}")
}

/// The contexts of the training interactions: features and distinct feature sets, interned.
#[derive(Default)]
struct ContextInterner {
    features: Vec<String>,
    feature_ids: FxHashMap<String, u32>,
    per_dimension: FxHashMap<&'static str, usize>,
    contexts: Vec<Vec<u32>>,
    context_ids: FxHashMap<Vec<u32>, u32>,
}

impl ContextInterner {
    fn feature(&mut self, dimension: &'static str, value: &str) -> Option<u32> {
        let name = context_feature(dimension, value);
        if let Some(&id) = self.feature_ids.get(&name) {
            return Some(id);
        }
        let seen = self.per_dimension.entry(dimension).or_default();
        if *seen >= MAX_CONTEXT_VALUES || value.trim().is_empty() {
            return None;
        }
        *seen += 1;
        let id = self.features.len() as u32;
        self.features.push(name.clone());
        self.feature_ids.insert(name, id);
        Some(id)
    }

    /// The context id of an event: its local hour band and device, and its weather when the
    /// person allows contextual use now (it was stored only with that consent, too).
    fn context_of(&mut self, event: &Event, contextual: bool) -> Option<u32> {
        let mut features = Vec::with_capacity(3);
        if let Some(hour) = crate::clock::local_hour_of(event).filter(|h| *h < 24) {
            features.extend(self.feature("hour_band", crate::variants::hour_band(hour)));
        }
        if let Some(device) = event.context.device.as_deref() {
            features.extend(self.feature("device", device));
        }
        if contextual && let Some(weather) = event.context.weather.as_deref() {
            features.extend(self.feature("weather", weather));
        }
        if features.is_empty() {
            return None;
        }
        if let Some(&id) = self.context_ids.get(&features) {
            return Some(id);
        }
        let id = self.contexts.len() as u32;
        self.contexts.push(features.clone());
        self.context_ids.insert(features, id);
        Some(id)
    }
}

/// How much an event says about liking its item (0: nothing; not used for training).
/// `declared` holds the positive signal strength of declared types (see `signals.rs`): such an
/// event with an item is an interaction of that weight.
pub fn training_weight(event: &Event, declared: &FxHashMap<String, f32>) -> f32 {
    let Some(builtin) = event.kind.builtin() else {
        return declared.get(event.kind.as_str()).copied().unwrap_or(0.0);
    };
    match builtin {
        BuiltinType::View => 1.0,
        BuiltinType::Click => 1.5,
        BuiltinType::Dwell => {
            let minutes = event.prop_f64("dwell_ms").unwrap_or(0.0) / 60_000.0;
            (0.5 + minutes.min(4.0) * 0.5) as f32
        }
        BuiltinType::AddToCart => 3.0,
        BuiltinType::Purchase => 5.0,
        BuiltinType::Rating => {
            let rating = event.prop_f64("rating").unwrap_or(0.0);
            let scale = if rating <= 5.0 { 5.0 } else { 10.0 };
            if rating / scale >= 0.5 { (1.0 + 2.0 * rating / scale) as f32 } else { 0.0 }
        }
        BuiltinType::EmailOpen | BuiltinType::NotificationOpen => 0.5,
        BuiltinType::NotInterested | BuiltinType::Search | BuiltinType::Survey => 0.0,
    }
}

fn scale_to_unit(values: &mut [f32]) {
    let max = values.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        for v in values.iter_mut() {
            *v /= max;
        }
    }
}

/// Content documents for every catalog index (empty for items only seen in events).
pub(crate) fn item_docs(catalog: &crate::catalog::ItemIndex) -> Vec<ItemDoc> {
    (0..catalog.len() as u32)
        .map(|i| match catalog.item(attune_core::ItemIdx(i)) {
            Some(item) => {
                let mut attributes = vec![Content::term("kind", &item.kind)];
                if let Some(level) = item.attributes.get("level").and_then(|v| v.as_str()) {
                    attributes.push(Content::term("level", level));
                }
                ItemDoc { title: item.title.clone(), tags: item.tags.clone(), attributes }
            }
            None => ItemDoc::default(),
        })
        .collect()
}

/// The `meta` record asking for a training by a time (an erasure, a forgotten item, an
/// operator's request).
const META_RETRAIN_DUE: &str = "retrain_due";

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct RetrainDue {
    due_ms: i64,
    requested_ms: i64,
}

/// The models component: the snapshot decisions read, one training at a time, whether the
/// model layer has settled (readiness), who trains on a shared store, the forced-retrain
/// marker and publishing (`publish.rs`).
pub struct Models {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    options: attune_rank::RankerOptions,
    /// Other processes share the store: only the training lock's holder trains.
    cluster: bool,
    snapshot: RwLock<Arc<ModelSnapshot>>,
    /// One training at a time.
    training: Mutex<()>,
    /// Set once a training attempt has finished or published models were looked for.
    settled: AtomicBool,
    /// Whether this process holds the cluster's training lock.
    trainer: AtomicBool,
}

impl Models {
    /// No models yet (decisions fall back to the catalog until a training or a load).
    pub(crate) fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        options: attune_rank::RankerOptions,
        cluster: bool,
    ) -> Models {
        Models {
            store,
            clock,
            options,
            cluster,
            snapshot: RwLock::new(Arc::new(ModelSnapshot::empty())),
            training: Mutex::new(()),
            settled: AtomicBool::new(false),
            trainer: AtomicBool::new(false),
        }
    }

    /// The models decisions use now.
    pub fn current(&self) -> Arc<ModelSnapshot> {
        Arc::clone(&self.snapshot.read())
    }

    /// Whether a first training has finished (even one that failed or found nothing) or
    /// published models were looked for.
    pub fn settled(&self) -> bool {
        self.settled.load(Ordering::SeqCst)
    }

    /// Whether this process trains the models: always on its own store; on a shared one, while
    /// it holds the training lock.
    pub fn is_trainer(&self) -> bool {
        !self.cluster || self.trainer.load(Ordering::SeqCst)
    }

    /// Records whether this process holds the cluster's training lock.
    pub fn set_trainer(&self, holds_the_lock: bool) {
        self.trainer.store(holds_the_lock, Ordering::SeqCst);
    }

    /// When the next training must have started (ms since the epoch), if one was asked for.
    pub fn retrain_due_ms(&self) -> Result<Option<i64>> {
        Ok(self.retrain_due()?.map(|due| due.due_ms))
    }

    /// Clears the retrain marker after a training that read the store from `training_started_ms`
    /// on; a marker set later (an erasure during the training) stays.
    pub fn clear_retrain_due(&self, training_started_ms: i64) -> Result<()> {
        if let Some(due) = self.retrain_due()?
            && due.requested_ms <= training_started_ms
        {
            self.store.delete(Table::Meta, META_RETRAIN_DUE)?;
        }
        Ok(())
    }

    fn retrain_due(&self) -> Result<Option<RetrainDue>> {
        match self.store.get(Table::Meta, META_RETRAIN_DUE)? {
            Some(bytes) => Ok(Some(from_json("retrain marker", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Leaves (or moves earlier) the durable marker asking whichever process trains for a
    /// training that starts by `due_ms`.
    pub fn request_retrain_by(&self, due_ms: i64) -> Result<()> {
        let now_ms = self.clock.now_ms();
        let due_ms = match self.retrain_due()? {
            Some(due) => due.due_ms.min(due_ms),
            None => due_ms,
        };
        self.store.put(Table::Meta, META_RETRAIN_DUE, &to_json(&RetrainDue { due_ms, requested_ms: now_ms }))?;
        Ok(())
    }

    /// Trains every model from the event log (people as `people` resolves them, with the
    /// consent they give now; items interned into `catalog`) and swaps them in. On error the
    /// previous models stay.
    pub fn train(&self, catalog: &Catalog, people: &People) -> Result<Arc<ModelSnapshot>> {
        let trained = self.train_once(catalog, people);
        // Failed or not, the model layer has had its first say: readiness does not wait for more.
        self.settled.store(true, Ordering::SeqCst);
        trained
    }

    fn train_once(&self, catalog: &Catalog, people: &People) -> Result<Arc<ModelSnapshot>> {
        let _one_at_a_time = self.training.lock();
        let started = Instant::now();
        let now_ms = self.clock.now_ms();
        // Interactions: (person, item) → (weight sum, latest ts), only with personalization consent.
        let mut users: FxHashMap<String, u32> = FxHashMap::default();
        // (person, item) → (weight sum, latest ts, the latest event's context or NO_CONTEXT).
        let mut pairs: FxHashMap<(u32, u32), (f32, i64, u32)> = FxHashMap::default();
        let mut contexts = ContextInterner::default();
        let mut n_events = 0usize;
        let mut hour_prior = vec![0f32; 24];
        let mut consent_cache: FxHashMap<String, attune_core::Consent> = FxHashMap::default();
        let declared = catalog.declared_weights();
        try_events(
            |visit| self.store.scan_events(0, visit),
            |row| {
                let event: Event = decode_event(&row.payload)?;
                n_events += 1;
                let weight = training_weight(&event, &declared);
                if weight > 0.0
                    && let Some(hour) = crate::clock::local_hour_of(&event).filter(|h| *h < 24)
                {
                    hour_prior[hour as usize] += 1.0;
                }
                let Some(item_id) = event.item.as_deref() else { return Ok(true) };
                if weight <= 0.0 {
                    return Ok(true);
                }
                let person = people.resolve(event.subject.id());
                let consent = *consent_cache.entry(person.clone()).or_insert_with(|| people.consent_of(&person));
                if !consent.allows(Purpose::Personalization) {
                    return Ok(true);
                }
                let item = catalog.intern_item(item_id);
                let n_users = users.len() as u32;
                let user = *users.entry(person).or_insert(n_users);
                let entry = pairs.entry((user, item.0)).or_insert((0.0, i64::MIN, NO_CONTEXT));
                entry.0 += weight;
                if event.ts_ms >= entry.1 {
                    entry.1 = event.ts_ms;
                    entry.2 = contexts.context_of(&event, consent.allows(Purpose::Contextual)).unwrap_or(NO_CONTEXT);
                }
                Ok(true)
            },
        )?;
        let (n_items, docs, item_tags, tag_names) = {
            let catalog = catalog.read();
            let item_tags: Vec<Vec<u32>> = (0..catalog.len() as u32)
                .map(|i| catalog.tags_of(attune_core::ItemIdx(i)).iter().map(|t| t.0).collect())
                .collect();
            let tag_names: Vec<String> =
                (0..catalog.n_tags() as u32).map(|t| catalog.tag_name(attune_core::TagIdx(t)).to_owned()).collect();
            (catalog.len(), item_docs(&catalog), item_tags, tag_names)
        };
        let mut triples = Vec::with_capacity(pairs.len());
        let mut timestamps = Vec::with_capacity(pairs.len());
        for ((user, item), (weight, ts, _)) in &pairs {
            // Diminishing returns: the tenth view says less than the first.
            triples.push((*user, *item, (1.0 + weight).ln()));
            timestamps.push(ts / 1000);
        }
        let data = Interactions::from_triples_with_ts(users.len(), n_items, &triples, &timestamps);
        let mut stats = Vec::new();
        let timed = |name: &'static str, stats: &mut Vec<ModelStats>, started: Instant| {
            stats.push(ModelStats { name, fit_seconds: started.elapsed().as_secs_f64(), metrics: None });
        };

        let t = Instant::now();
        let mut popularity: Vec<f32> = data.item_counts().into_iter().map(|c| c as f32).collect();
        scale_to_unit(&mut popularity);
        timed("popularity", &mut stats, t);

        let t = Instant::now();
        let trending_model = Trending::fit(&data, &TrendingParams { now: now_ms / 1000, half_life_s: 7.0 * 86_400.0 });
        let mut trending = vec![0f32; n_items];
        attune_rank::Scorer::score_into(&trending_model, &attune_rank::Query::anonymous(&[], &[]), &mut trending);
        scale_to_unit(&mut trending);
        timed("trending", &mut stats, t);

        // The general ranking's popularity mix, whose spread scales the context effects there.
        let general_scale = {
            let mix: Vec<f64> = popularity.iter().zip(&trending).map(|(p, t)| f64::from(0.6 * t + 0.4 * p)).collect();
            let n = mix.len().max(1) as f64;
            let mean = mix.iter().sum::<f64>() / n;
            (mix.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt() as f32
        };

        let t = Instant::now();
        let context_of = |user: u32, item: u32| pairs.get(&(user, item)).map(|p| p.2).filter(|&c| c != NO_CONTEXT);
        let context = attune_rank::ContextData {
            features: &contexts.features,
            item_tags: &item_tags,
            tags: &tag_names,
            contexts: &contexts.contexts,
            context_of: &context_of,
        };
        let ranker = (data.nnz() > 0).then(|| {
            Ranker::train_with_context(
                &data,
                Some(&context),
                &self.options,
                &mut |line| tracing::debug!(target: "attune::ranker", "{line}"),
            )
        });
        stats.push(ModelStats {
            name: "served",
            fit_seconds: t.elapsed().as_secs_f64(),
            metrics: ranker.as_ref().and_then(|r| r.report().validation),
        });

        let t = Instant::now();
        let content = (!docs.is_empty()).then(|| Content::fit(&docs, &ContentParams::default()));
        timed("content", &mut stats, t);

        let version = self.snapshot.read().version + 1;
        let snapshot = Arc::new(ModelSnapshot {
            version,
            trained_at_ms: now_ms,
            n_users: users.len(),
            n_items,
            n_interactions: data.nnz(),
            n_events,
            stats,
            ranker,
            popularity,
            trending,
            content,
            hour_prior,
            general_scale,
            general: GeneralCache::default(),
        });
        *self.snapshot.write() = Arc::clone(&snapshot);
        if let Err(err) = self.clear_retrain_due(now_ms) {
            tracing::warn!(error = %err, "clearing the forced-retrain marker failed; the next check retrains again");
        }
        tracing::info!(
            version,
            seconds = started.elapsed().as_secs_f64(),
            interactions = snapshot.n_interactions,
            validation_ndcg = snapshot.ranker.as_ref().and_then(|r| r.report().validation).map(|v| v.ndcg),
            "models trained"
        );
        Ok(snapshot)
    }
}

/// Whether an event type is one decisions attribute to their items (a click or better).
pub fn is_engagement(kind: &EventType) -> bool {
    matches!(
        kind.builtin(),
        Some(BuiltinType::Click | BuiltinType::AddToCart | BuiltinType::Purchase | BuiltinType::Dwell)
    )
}
