//! The decision log and what is learned from it: recent decisions for editors' review
//! (`/v1/review/decisions`), exposures and clicks per slot variant (the Thompson sampler's
//! evidence), and attribution of events that carry a `decision_id`.
//!
//! Decisions are logged in memory (the most recent [`LOG_CAPACITY`]) and persisted in the
//! background by [`Engine::flush_decisions`] under `Table::Decisions` key `person \0 decision id`
//! (`- \0 …` for anonymous requests), so that export and erasure find a person's decisions by
//! prefix. A decision is not acknowledged data: it is never fsynced on the hot path.
//!
//! **The review index.** Beside each decision, the flush writes index entries ordered by time:
//! `\u{1}t\0<at_ms, 13 digits>\0<decision id>` and, per slot of the decision,
//! `\u{1}s\0<slot>\0<at_ms>\0<decision id>`, whose value is the decision's key. The review log
//! reads an index newest first (`Store::scan_rev`) and stops after a page, so a request costs
//! its page, not the table. (`\u{1}` is no character of an id, so no person's prefix meets it.)
//! Erasure deletes a person's index entries from their decisions' keys and times
//! ([`Engine::forget_review_index`]); retention sweeps the index by its time order.

use std::collections::VecDeque;

use attune_store::Table;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::{Engine, Result, decide::Decision, to_json};

/// The prefix of the review index over every slot.
const REVIEW_ALL: &str = "\u{1}t\0";
/// The prefix of the per-slot review indexes.
const REVIEW_SLOT: &str = "\u{1}s\0";
/// The `Meta` record saying the review index covers the decisions stored before it existed.
const REVIEW_INDEX_BUILT: &str = "decisions:review_index";

/// Index keys of a decision: every slot's, and the one over all slots.
fn review_keys(decision: &LoggedDecision) -> Vec<String> {
    let time = format!("{:013}\0{}", decision.at_ms.max(0), decision.id);
    let mut keys = vec![format!("{REVIEW_ALL}{time}")];
    for placement in &decision.placements {
        let key = format!("{REVIEW_SLOT}{}\0{time}", placement.slot);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// The decision's key in `Table::Decisions`.
fn record_key(decision: &LoggedDecision) -> String {
    format!("{}\0{}", decision.person.as_deref().unwrap_or("-"), decision.id)
}

/// The time in a review index key (after its prefix).
fn review_time(rest: &str) -> Option<i64> {
    rest.split('\0').next()?.parse().ok()
}

/// Decisions kept in memory for review and attribution.
pub const LOG_CAPACITY: usize = 50_000;

/// One logged decision (ids only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedDecision {
    /// `dec-…`.
    pub id: String,
    /// The person (pseudonymous id), if known.
    pub person: Option<String>,
    /// When.
    pub at_ms: i64,
    /// Whether it was personalized.
    pub personalized: bool,
    /// The journey stage.
    pub journey_stage: String,
    /// Per slot: variant and items with source and reason texts.
    pub placements: Vec<LoggedPlacement>,
    /// Experiment assignments.
    pub experiments: Vec<(String, String)>,
}

/// One slot of a logged decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedPlacement {
    /// The slot.
    pub slot: String,
    /// The variant shown.
    pub variant: String,
    /// (item id, source, reason texts).
    pub items: Vec<(String, String, Vec<String>)>,
}

/// In-memory decision state.
#[derive(Default)]
pub struct Decisions {
    log: Mutex<DecisionLog>,
    /// Per slot: the variants' bandit and counts.
    variants: Mutex<FxHashMap<String, SlotBandit>>,
}

/// Exposures and clicks of one slot's variants, and the Thompson sampler over them. An exposure
/// counts as a failure and a later click as a success, so each arm's posterior is
/// Beta(1 + clicks, 1 + exposures): clicks per exposure, slightly pessimistic for every arm alike.
struct SlotBandit {
    variants: Vec<String>,
    exposures: Vec<u64>,
    clicks: Vec<u64>,
    bandit: attune_rank::ThompsonBandit,
}

impl SlotBandit {
    fn new(variants: &[String]) -> SlotBandit {
        SlotBandit {
            variants: variants.to_vec(),
            exposures: vec![0; variants.len()],
            clicks: vec![0; variants.len()],
            bandit: attune_rank::ThompsonBandit::new(variants.len()),
        }
    }

    fn arm(&self, variant: &str) -> Option<usize> {
        self.variants.iter().position(|v| v == variant)
    }
}

#[derive(Default)]
struct DecisionLog {
    recent: VecDeque<LoggedDecision>,
    by_id: FxHashMap<String, usize>,
    offset: usize,
    unflushed: VecDeque<LoggedDecision>,
}

impl Decisions {
    /// Thompson sampling over a slot's variants.
    pub fn choose_variant(&self, slot: &str, variants: &[String]) -> String {
        let mut slots = self.variants.lock();
        let bandit = slots.entry(slot.to_owned()).or_insert_with(|| SlotBandit::new(variants));
        if bandit.variants != variants {
            // The slot's variants changed: start their evidence afresh.
            *bandit = SlotBandit::new(variants);
        }
        let arm = bandit.bandit.choose(&mut rand::rng()).unwrap_or(0);
        variants.get(arm).cloned().unwrap_or_else(|| crate::editorial::DEFAULT_VARIANTS[0].to_owned())
    }

    fn expose(&self, slot: &str, variant: &str) {
        let mut slots = self.variants.lock();
        if let Some(bandit) = slots.get_mut(slot)
            && let Some(arm) = bandit.arm(variant)
        {
            bandit.exposures[arm] += 1;
            bandit.bandit.update(arm, 0.0);
        }
    }

    fn click(&self, slot: &str, variant: &str) {
        let mut slots = self.variants.lock();
        if let Some(bandit) = slots.get_mut(slot)
            && let Some(arm) = bandit.arm(variant)
        {
            bandit.clicks[arm] += 1;
            bandit.bandit.update(arm, 1.0);
        }
    }

    /// (slot, variant, exposures, clicks) for every slot seen.
    pub fn variant_stats(&self) -> Vec<(String, String, u64, u64)> {
        let slots = self.variants.lock();
        let mut all: Vec<_> = slots
            .iter()
            .flat_map(|(slot, b)| {
                b.variants
                    .iter()
                    .enumerate()
                    .map(move |(arm, v)| (slot.clone(), v.clone(), b.exposures[arm], b.clicks[arm]))
            })
            .collect();
        all.sort();
        all
    }
}

impl Engine {
    pub(crate) fn log_decision(&self, person: Option<&str>, decision: &Decision, now_ms: i64) {
        let logged = LoggedDecision {
            id: decision.id.clone(),
            person: person.map(str::to_owned),
            at_ms: now_ms,
            personalized: decision.personalized,
            journey_stage: decision.journey_stage.as_str().to_owned(),
            placements: decision
                .placements
                .iter()
                .map(|p| LoggedPlacement {
                    slot: p.slot.clone(),
                    variant: p.variant.clone(),
                    items: p
                        .items
                        .iter()
                        .map(|i| {
                            (
                                i.item.id.clone(),
                                i.source.as_str().to_owned(),
                                i.reasons.iter().map(|r| r.text.clone()).collect(),
                            )
                        })
                        .collect(),
                })
                .collect(),
            experiments: decision.experiments.clone(),
        };
        for placement in &logged.placements {
            self.decisions.expose(&placement.slot, &placement.variant);
        }
        let mut log = self.decisions.log.lock();
        let position = log.offset + log.recent.len();
        log.by_id.insert(logged.id.clone(), position);
        log.unflushed.push_back(logged.clone());
        log.recent.push_back(logged);
        while log.recent.len() > LOG_CAPACITY {
            if let Some(old) = log.recent.pop_front() {
                log.by_id.remove(&old.id);
            }
            log.offset += 1;
        }
        if log.unflushed.len() > LOG_CAPACITY {
            // The flusher fell behind; keep the log bounded (the in-memory copy still serves review).
            log.unflushed.pop_front();
        }
    }

    /// A logged decision still in memory.
    pub fn logged_decision(&self, id: &str) -> Option<LoggedDecision> {
        let log = self.decisions.log.lock();
        let position = *log.by_id.get(id)?;
        log.recent.get(position - log.offset).cloned()
    }

    /// Recent decisions, newest first: for a slot (if given), at or after `since_ms` — read
    /// from the store (after flushing this server's), so the log survives restarts, every server
    /// of one database shows the same, and erasure and retention reach it. Reads the review
    /// index newest first and stops after `limit` decisions (or at `since_ms`).
    pub fn recent_decisions(&self, slot: Option<&str>, since_ms: i64, limit: usize) -> Result<Vec<LoggedDecision>> {
        self.flush_decisions()?;
        let prefix = match slot {
            Some(slot) => format!("{REVIEW_SLOT}{slot}\0"),
            None => REVIEW_ALL.to_owned(),
        };
        let mut keys: Vec<String> = Vec::new();
        if limit > 0 {
            self.store.scan_rev(Table::Decisions, &prefix, &mut |key, value| {
                if review_time(&key[prefix.len()..]).is_some_and(|at| at < since_ms) {
                    return false;
                }
                keys.push(String::from_utf8_lossy(value).into_owned());
                keys.len() < limit
            })?;
        }
        let mut all = Vec::with_capacity(keys.len());
        for key in keys {
            // An entry whose decision is gone (erased between the two reads) is skipped.
            if let Some(bytes) = self.store.get(Table::Decisions, &key)?
                && let Ok(decision) = serde_json::from_slice::<LoggedDecision>(&bytes)
            {
                all.push(decision);
            }
        }
        all.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then_with(|| b.id.cmp(&a.id)));
        Ok(all)
    }

    /// Writes the review index of decisions stored before it existed (once per store: the
    /// `decisions:review_index` record in `Meta` says it is done).
    pub(crate) fn build_review_index(&self) -> Result<()> {
        if self.store.get(Table::Meta, REVIEW_INDEX_BUILT)?.is_some() {
            return Ok(());
        }
        let mut entries = Vec::new();
        self.store.scan(Table::Decisions, "", &mut |key, bytes| {
            if !key.starts_with('\u{1}')
                && !key.contains("\0x\0")
                && let Ok(decision) = serde_json::from_slice::<LoggedDecision>(bytes)
            {
                for index in review_keys(&decision) {
                    entries.push((index, key.as_bytes().to_vec()));
                }
            }
            true
        })?;
        for chunk in entries.chunks(10_000) {
            self.store.put_many(Table::Decisions, chunk)?;
        }
        self.store.put(Table::Meta, REVIEW_INDEX_BUILT, b"1")?;
        Ok(())
    }

    /// Erasure: deletes the review index entries of the decisions stored under `records` (key
    /// and value of the person's `Table::Decisions` records; exposures are skipped).
    pub(crate) fn forget_review_index(&self, records: &[(String, Vec<u8>)]) -> Result<()> {
        for (key, bytes) in records {
            if key.contains("\0x\0") {
                continue;
            }
            if let Ok(decision) = serde_json::from_slice::<LoggedDecision>(bytes) {
                for index in review_keys(&decision) {
                    self.store.delete(Table::Decisions, &index)?;
                }
            }
        }
        Ok(())
    }

    /// Retention: deletes review index entries older than `cutoff_ms` (their decisions are swept
    /// by time too). Reads the index in time order and stops at the cutoff; the per-slot
    /// indexes are read slot by slot.
    pub(crate) fn sweep_review_index(&self, cutoff_ms: i64) -> Result<u64> {
        let mut expired = Vec::new();
        self.store.scan(Table::Decisions, REVIEW_ALL, &mut |key, _| {
            let old = review_time(&key[REVIEW_ALL.len()..]).is_some_and(|at| at < cutoff_ms);
            if old {
                expired.push(key.to_owned());
            }
            old
        })?;
        let mut slot_expired = Vec::new();
        self.store.scan(Table::Decisions, REVIEW_SLOT, &mut |key, _| {
            let rest = &key[REVIEW_SLOT.len()..];
            if let Some((_, after_slot)) = rest.split_once('\0')
                && review_time(after_slot).is_some_and(|at| at < cutoff_ms)
            {
                slot_expired.push(key.to_owned());
            }
            true
        })?;
        let n = expired.len() + slot_expired.len();
        for key in expired.iter().chain(&slot_expired) {
            self.store.delete(Table::Decisions, key)?;
        }
        Ok(n as u64)
    }

    /// A person's stored decisions, newest first (found by key prefix).
    pub fn decisions_of(&self, person: &str, limit: usize) -> Result<Vec<LoggedDecision>> {
        self.flush_decisions()?;
        let mut all: Vec<LoggedDecision> = self
            .scan_records(Table::Decisions, &format!("{person}\0"))?
            .into_iter()
            .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
            .collect();
        all.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then_with(|| b.id.cmp(&a.id)));
        all.truncate(limit);
        Ok(all)
    }

    /// The keyed pseudonym editors see instead of a person id: `p_` and the first 16 hex digits
    /// of HMAC-SHA256 under the server's secret (stable, not reversible without the secret).
    pub fn pseudonym(&self, person: &str) -> String {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.link_secret()).expect("HMAC takes keys of any length");
        mac.update(b"decision-log-pseudonym\0");
        mac.update(person.as_bytes());
        format!("p_{}", hex::encode(&mac.finalize().into_bytes()[..8]))
    }

    /// Persists decisions logged since the last flush (one durable batch). Called every second by
    /// the server and at shutdown.
    pub fn flush_decisions(&self) -> Result<usize> {
        self.flush_exposures()?;
        let pending: Vec<LoggedDecision> = std::mem::take(&mut self.decisions.log.lock().unflushed).into();
        if pending.is_empty() {
            return Ok(0);
        }
        let mut entries: Vec<(String, Vec<u8>)> = Vec::with_capacity(pending.len() * 3);
        for decision in &pending {
            let key = record_key(decision);
            for index in review_keys(decision) {
                entries.push((index, key.as_bytes().to_vec()));
            }
            entries.push((key, to_json(decision)));
        }
        // One atomic batch: an index entry never exists without its decision.
        self.store.put_many(Table::Decisions, &entries)?;
        Ok(pending.len())
    }

    /// Drops a person's decisions from memory (erasure).
    pub fn forget_decisions_of(&self, ids: &[String]) {
        let mut log = self.decisions.log.lock();
        for decision in log.recent.iter_mut() {
            if decision.person.as_ref().is_some_and(|p| ids.contains(p)) {
                decision.person = None;
                decision.placements.iter_mut().for_each(|p| p.items.iter_mut().for_each(|i| i.2.clear()));
            }
        }
        log.unflushed.retain(|d| d.person.as_ref().is_none_or(|p| !ids.contains(p)));
    }

    /// Attributes an event to the decision it answers: a click (or better) on a shown item counts
    /// for that slot's variant. (Experiments measure people from the stored event log instead:
    /// see `experiments.rs`.)
    pub(crate) fn attribute(&self, decision_id: &str, item: Option<&str>, kind: &attune_core::EventType) {
        let Some(decision) = self.logged_decision(decision_id) else { return };
        if crate::models::is_engagement(kind)
            && let Some(placement) =
                decision.placements.iter().find(|p| item.is_none_or(|item| p.items.iter().any(|(id, _, _)| id == item)))
        {
            self.decisions.click(&placement.slot, &placement.variant);
        }
    }
}
