//! `attune eval --replay`: the served path measured end to end. The dataset's train part goes in
//! through the engine's import path (as `view` events with their own timestamps), the models are
//! trained as `attune serve` trains them, and `Engine::decide` is asked for ten items for every
//! test person on a slot with no editorial and no serendipity share. The answers are scored on
//! the EVAL.md protocol against the same held-out items as the offline evaluation.

use std::sync::Arc;

use anyhow::Context;
use attune_core::validate::RawEvent;
use attune_engine::decide::{DecideRequest, PlacementRequest};
use attune_engine::editorial::SlotSettings;
use attune_engine::{Engine, EngineConfig, IngestItem, ManualClock};
use attune_rank::eval::{Fold, K, Metrics, Row, metrics};
use attune_store::{EmbeddedOptions, EmbeddedStore};
use rayon::prelude::*;

/// The slot the replay asks for: nothing but the ranking.
pub const REPLAY_SLOT: &str = "replay";

/// What a replay measured.
pub struct ReplayOutcome {
    /// The served answers, scored.
    pub metrics: Metrics,
    /// Seconds to load the train part through the import path.
    pub load_s: f64,
    /// Seconds of `Engine::train`.
    pub train_s: f64,
    /// Seconds for every test person's decision.
    pub decide_s: f64,
    /// The ranker the engine trained, in one line.
    pub ranker: String,
}

/// Runs the replay of `train` (with the catalog from `docs`, if any) and scores it on `fold`'s
/// test people.
pub fn replay(
    train: &[Row],
    docs: Option<&rustc_hash::FxHashMap<String, attune_rank::ItemDoc>>,
    fold: &Fold,
) -> anyhow::Result<ReplayOutcome> {
    let dir = tempfile::tempdir().context("a temporary data directory")?;
    let store =
        EmbeddedStore::open_with(dir.path(), EmbeddedOptions { bulk_load: true }).context("opening the store")?;
    // The engine's clock stands just after the last train interaction, as a server's would.
    let last_ts = train.iter().map(|r| r.ts).max().unwrap_or(0);
    let clock = Arc::new(ManualClock::new((last_ts + 3_600) * 1000));
    let engine = Engine::open(Arc::new(store), clock, EngineConfig::default()).context("opening the engine")?;

    // The catalog: items.tsv when given, else every item of the train part.
    // In the fold's order (numeric ids numerically), so that the engine numbers items as the
    // offline evaluation does and ties break alike.
    let mut ids: Vec<&str> = train.iter().map(|r| r.item.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.iter().all(|id| id.parse::<i64>().is_ok()) {
        ids.sort_by_key(|id| id.parse::<i64>().unwrap_or(0));
    }
    let items: Vec<attune_core::Item> = ids
        .iter()
        .map(|id| {
            let doc = docs.and_then(|d| d.get(*id));
            attune_core::Item {
                id: (*id).to_owned(),
                kind: "item".into(),
                title: doc.map_or_else(|| (*id).to_owned(), |d| d.title.chars().take(512).collect()),
                tags: doc
                    .map(|d| d.tags.iter().filter(|t| t.chars().count() <= 64).take(50).cloned().collect())
                    .unwrap_or_default(),
                attributes: serde_json::Map::new(),
                available: true,
                published_at: None,
                variants: serde_json::Map::new(),
            }
        })
        .collect();
    engine.upsert_items(items).context("storing the catalog")?;

    let started = std::time::Instant::now();
    for chunk in train.chunks(50_000) {
        let batch: Vec<IngestItem> = chunk
            .iter()
            .map(|r| {
                let ts = jiff::Timestamp::from_second(r.ts).map(|t| t.to_string()).unwrap_or_default();
                IngestItem::Raw(RawEvent {
                    id: Some(format!("replay-{}-{}-{}", r.user, r.item, r.ts)),
                    kind: Some("view".into()),
                    user: Some(r.user.clone()),
                    item: Some(r.item.clone()),
                    ts: Some(ts),
                    ..RawEvent::default()
                })
            })
            .collect();
        let report = engine.store_batch(engine.prepare_batch(batch), true).context("storing events")?;
        if let Some((_, rejection)) = report.rejected.first() {
            anyhow::bail!("the replay's events were rejected: {}", rejection.message);
        }
    }
    let load_s = started.elapsed().as_secs_f64();

    let started = std::time::Instant::now();
    let models = engine.train().context("training")?;
    let train_s = started.elapsed().as_secs_f64();
    let ranker = models.ranker.as_ref().map_or_else(|| "none".into(), crate::cmd_eval::describe_ranker);

    let settings = SlotSettings { editorial_share: 0.0, serendipity_share: 0.0, ..SlotSettings::default() };
    engine.put_slot(REPLAY_SLOT, settings, "replay").context("the replay slot")?;
    let started = std::time::Instant::now();
    let recs: Vec<Vec<u32>> = fold
        .test_users
        .par_iter()
        .map(|&u| -> anyhow::Result<Vec<u32>> {
            let request = DecideRequest {
                subject: Some(fold.users.id(u).to_owned()),
                placements: vec![PlacementRequest { slot: REPLAY_SLOT.into(), count: K }],
                ..DecideRequest::default()
            };
            let decision = engine.decide(&request)?;
            // Items outside the train part can never be a hit (as offline).
            Ok(decision.placements[0].items.iter().filter_map(|d| fold.items.get(&d.item.id)).collect())
        })
        .collect::<anyhow::Result<_>>()?;
    let decide_s = started.elapsed().as_secs_f64();
    Ok(ReplayOutcome {
        metrics: metrics(&recs, &fold.test_items, fold.items.len(), K),
        load_s,
        train_s,
        decide_s,
        ranker,
    })
}
