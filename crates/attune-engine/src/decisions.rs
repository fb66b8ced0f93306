//! The decision log and what is learned from it: recent decisions for editors' review
//! (`/v1/review/decisions`), and attribution of events that carry a `decision_id` (the reward
//! of the slot's variant bandit, [`crate::variants`]).
//!
//! Decisions are logged in memory (the most recent [`LOG_CAPACITY`]) and persisted in the
//! background by [`crate::Engine::flush_decisions`] under `Table::Decisions` key `person \0 decision id`
//! (`- \0 …` for anonymous requests), so that export and erasure find a person's decisions by
//! prefix. A decision is not acknowledged data: it is never fsynced on the hot path.
//!
//! **The review index.** Beside each decision, the flush writes index entries ordered by time:
//! `\u{1}t\0<at_ms, 13 digits>\0<decision id>` and, per slot of the decision,
//! `\u{1}s\0<slot>\0<at_ms>\0<decision id>`, whose value is the decision's key. The review log
//! reads an index newest first (`Store::scan_rev`) and stops after a page, so a request costs
//! its page, not the table. (`\u{1}` is no character of an id, so no person's prefix meets it.)
//! Erasure deletes a person's index entries from their decisions' keys and times
//! ([`DecisionLog::forget_review_index`]); retention sweeps the index by its time order.

use std::collections::VecDeque;

use attune_store::Table;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use attune_store::Store;

use crate::clock::Clock;
use crate::error::Result;
use crate::people::People;
use crate::records::{scan_records, to_json};
use crate::variants::VariantBandits;

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
    /// Where it was shown (`web`, `email`, ...; decisions logged before channels: `web`).
    #[serde(default = "web")]
    pub channel: String,
}

fn web() -> String {
    attune_core::Channel::Web.as_str().to_owned()
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
    /// The context the variant bandit chose the variant in; `None` when a rule forced it (a
    /// forced variant teaches the bandit nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<crate::variants::VariantContext>,
}

/// How long an event answering a decision no server has stored yet is retried (another
/// server's decision reaches the store within its one-second flush).
const ATTRIBUTION_RETRY_MS: i64 = 10_000;

/// Events waiting for their decision to be retried, at most.
const ATTRIBUTION_QUEUE: usize = 10_000;

/// The decision log: recent decisions in memory, their flush to the store, the review index,
/// and attribution of answering events.
pub struct DecisionLog {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Other servers share the store: an answer may arrive before its decision is stored.
    cluster: bool,
    log: Mutex<RecentLog>,
    /// Engaged events whose decision was not found yet (cluster only), retried at each flush.
    unattributed: Mutex<VecDeque<Unattributed>>,
}

/// An engaged event answering a decision not found when it was ingested.
struct Unattributed {
    at_ms: i64,
    subject: String,
    person: String,
    decision_id: String,
    item: Option<String>,
}

#[derive(Default)]
struct RecentLog {
    recent: VecDeque<LoggedDecision>,
    by_id: FxHashMap<String, usize>,
    offset: usize,
    unflushed: VecDeque<LoggedDecision>,
}

fn reward_decision(
    people: &People,
    variants: &VariantBandits,
    decision: &LoggedDecision,
    person: &str,
    item: Option<&str>,
) {
    // Only the person the decision was made for (or a device merged into them since) answers it.
    if decision.person.as_deref().is_none_or(|owner| people.resolve(owner) == person) {
        reward_variant(variants, decision, item);
    }
}

/// Rewards the variant of the placement of `decision` that showed `item` (the first placement
/// when the event names no item), once per decision and placement.
fn reward_variant(variants: &VariantBandits, decision: &LoggedDecision, item: Option<&str>) {
    let Some((index, placement)) = decision
        .placements
        .iter()
        .enumerate()
        .find(|(_, p)| item.is_none_or(|item| p.items.iter().any(|(id, _, _)| id == item)))
    else {
        return;
    };
    variants.reward(&decision.id, index, &placement.slot, &placement.variant, placement.learned.as_ref());
}

impl DecisionLog {
    /// An empty log over `store`; `cluster`: other servers share the store.
    pub(crate) fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, cluster: bool) -> DecisionLog {
        DecisionLog {
            store,
            clock,
            cluster,
            log: Mutex::new(RecentLog::default()),
            unattributed: Mutex::new(VecDeque::new()),
        }
    }

    /// Logs a decision (and records its exposures with the variant bandits).
    pub(crate) fn log(&self, logged: LoggedDecision, variants: &VariantBandits) {
        for placement in &logged.placements {
            variants.record_exposure(&placement.slot, &placement.variant, placement.learned.as_ref());
        }
        let mut log = self.log.lock();
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
    pub fn logged(&self, id: &str) -> Option<LoggedDecision> {
        let log = self.log.lock();
        let position = *log.by_id.get(id)?;
        log.recent.get(position - log.offset).cloned()
    }

    /// Recent decisions, newest first: for a slot (if given), at or after `since_ms` — read
    /// from the store (after flushing this server's), so the log survives restarts, every server
    /// of one database shows the same, and erasure and retention reach it. Reads the review
    /// index newest first and stops after `limit` decisions (or at `since_ms`).
    pub fn recent(&self, slot: Option<&str>, since_ms: i64, limit: usize) -> Result<Vec<LoggedDecision>> {
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
    pub fn of_person(&self, person: &str, limit: usize) -> Result<Vec<LoggedDecision>> {
        let mut all: Vec<LoggedDecision> = scan_records(&*self.store, Table::Decisions, &format!("{person}\0"))?
            .into_iter()
            .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
            .collect();
        all.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then_with(|| b.id.cmp(&a.id)));
        all.truncate(limit);
        Ok(all)
    }

    /// Persists decisions logged since the last flush (one durable batch).
    pub(crate) fn flush(&self) -> Result<usize> {
        let pending: Vec<LoggedDecision> = std::mem::take(&mut self.log.lock().unflushed).into();
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

    /// Deletes the stored decisions (and their review index entries) of people erased by another
    /// server. That server deletes them too, but this server may have flushed one of theirs
    /// after it did: applied when the erasure reaches this server's sync, after
    /// [`DecisionLog::forget_decisions_of`] emptied what is still waiting here, nothing comes back.
    pub(crate) fn delete_stored_decisions_of(&self, ids: &[String]) -> Result<()> {
        for id in ids {
            let records = scan_records(&*self.store, Table::Decisions, &format!("{id}\0"))?;
            self.forget_review_index(&records)?;
            for (key, _) in records {
                self.store.delete(Table::Decisions, &key)?;
            }
        }
        Ok(())
    }

    /// Drops a person's decisions from memory (erasure).
    pub fn forget_decisions_of(&self, ids: &[String]) {
        let mut log = self.log.lock();
        for decision in log.recent.iter_mut() {
            if decision.person.as_ref().is_some_and(|p| ids.contains(p)) {
                decision.person = None;
                decision.placements.iter_mut().for_each(|p| p.items.iter_mut().for_each(|i| i.2.clear()));
            }
        }
        log.unflushed.retain(|d| d.person.as_ref().is_none_or(|p| !ids.contains(p)));
        drop(log);
        self.unattributed.lock().retain(|u| !ids.contains(&u.person) && !ids.contains(&u.subject));
    }

    /// Attributes a newly ingested event to the decision it answers: a click (or better) on a
    /// shown item rewards that slot's variant (see [`crate::variants`]). The decision is looked
    /// up in this process's log, else in the store under the person's key (another server's
    /// decision, or one from before a restart). With other servers on the store, an event whose
    /// decision is not stored yet (they flush every second) is retried for ten seconds.
    /// (Experiments measure people from the stored event log instead: see `experiments.rs`.)
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attribute(
        &self,
        people: &People,
        variants: &VariantBandits,
        subject: &str,
        person: &str,
        decision_id: &str,
        item: Option<&str>,
        kind: &attune_core::EventType,
    ) {
        if !crate::models::is_engagement(kind) {
            return;
        }
        match self.find_decision(subject, person, decision_id) {
            Some(decision) => reward_decision(people, variants, &decision, person, item),
            None if self.cluster => {
                // Another server's decision may not be stored yet: retried at the next flushes.
                let mut queue = self.unattributed.lock();
                if queue.len() >= ATTRIBUTION_QUEUE {
                    queue.pop_front();
                }
                queue.push_back(Unattributed {
                    at_ms: self.clock.now_ms(),
                    subject: subject.to_owned(),
                    person: person.to_owned(),
                    decision_id: decision_id.to_owned(),
                    item: item.map(str::to_owned),
                });
            }
            None => {}
        }
    }

    /// A decision by id: in this process's log, else in the store under the person's (or the
    /// event subject's, or no one's) key.
    fn find_decision(&self, subject: &str, person: &str, decision_id: &str) -> Option<LoggedDecision> {
        self.logged(decision_id).or_else(|| {
            [person, subject, "-"].iter().find_map(|owner| {
                let bytes = self.store.get(Table::Decisions, &format!("{owner}\0{decision_id}")).ok()??;
                serde_json::from_slice::<LoggedDecision>(&bytes).ok()
            })
        })
    }

    /// Retries the events whose decision was not stored when they arrived; gives up on those
    /// older than [`ATTRIBUTION_RETRY_MS`].
    pub(crate) fn retry_attributions(&self, people: &People, variants: &VariantBandits) {
        let waiting: Vec<Unattributed> = std::mem::take(&mut *self.unattributed.lock()).into();
        if waiting.is_empty() {
            return;
        }
        let now_ms = self.clock.now_ms();
        let mut still = Vec::new();
        for event in waiting {
            match self.find_decision(&event.subject, &event.person, &event.decision_id) {
                Some(decision) => reward_decision(people, variants, &decision, &event.person, event.item.as_deref()),
                None if now_ms - event.at_ms < ATTRIBUTION_RETRY_MS => still.push(event),
                None => {}
            }
        }
        let mut queue = self.unattributed.lock();
        for event in still.into_iter().rev() {
            queue.push_front(event);
        }
    }
}

/// The keyed pseudonym editors see instead of a person id: `p_` and the first 16 hex digits
/// of HMAC-SHA256 under the server's secret (stable, not reversible without the secret).
pub fn pseudonym(secret: &[u8; 32], person: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"decision-log-pseudonym\0");
    mac.update(person.as_bytes());
    format!("p_{}", hex::encode(&mac.finalize().into_bytes()[..8]))
}
