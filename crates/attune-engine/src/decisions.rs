//! The decision log and what is learned from it: recent decisions for editors' review
//! (`/v1/review/decisions`), exposures and clicks per slot variant (the Thompson sampler's
//! evidence), and attribution of events that carry a `decision_id`.
//!
//! Decisions are logged in memory (the most recent [`LOG_CAPACITY`]) and persisted in the
//! background by [`Engine::flush_decisions`] under `Table::Decisions` key `person \0 decision id`
//! (`- \0 …` for anonymous requests), so that export and erasure find a person's decisions by
//! prefix. A decision is not acknowledged data: it is never fsynced on the hot path.

use std::collections::VecDeque;

use attune_store::Table;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::{Engine, Result, decide::Decision, to_json};

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
            channel: decision.channel.as_str().to_owned(),
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
    /// of one database shows the same, and erasure and retention reach it.
    pub fn recent_decisions(&self, slot: Option<&str>, since_ms: i64, limit: usize) -> Result<Vec<LoggedDecision>> {
        self.flush_decisions()?;
        let mut all = Vec::new();
        self.store.scan(Table::Decisions, "", &mut |key, bytes| {
            // Exposures (`<person>\0x\0<experiment>`) share the table.
            if !key.contains("\0x\0")
                && let Ok(d) = serde_json::from_slice::<LoggedDecision>(bytes)
                && d.at_ms >= since_ms
                && slot.is_none_or(|s| d.placements.iter().any(|p| p.slot == s))
            {
                all.push(d);
            }
            true
        })?;
        all.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then_with(|| b.id.cmp(&a.id)));
        all.truncate(limit);
        Ok(all)
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
        let entries: Vec<(String, Vec<u8>)> =
            pending.iter().map(|d| (format!("{}\0{}", d.person.as_deref().unwrap_or("-"), d.id), to_json(d))).collect();
        self.store.put_many(Table::Decisions, &entries)?;
        Ok(entries.len())
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
