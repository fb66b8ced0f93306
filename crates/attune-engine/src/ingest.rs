//! The event path: validate → minimize by consent → store durably (group commit) → fold into
//! profiles. An event is acknowledged only after the store said it is on disk.

use attune_core::{
    Event,
    validate::{RawEvent, Rejection, validate_event},
};
use attune_store::{Appended, NewEvent, Store, Table};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::cluster::ClusterState;
use crate::decisions::DecisionLog;
use crate::error::Result;
use crate::fold::FoldCtx;
use crate::people::People;
use crate::variants::VariantBandits;

/// One event of a batch as the server parsed it: fields to validate, or already refused because
/// its JSON did not have the right shape.
#[derive(Debug, Clone)]
pub enum IngestItem {
    /// Parsed; the engine validates it.
    Raw(RawEvent),
    /// Refused while parsing.
    Rejected(Rejection),
}

/// What happened to a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    /// Events newly stored (or, without analytics consent, counted in aggregates).
    pub accepted: usize,
    /// Events whose id was accepted before.
    pub duplicates: usize,
    /// Refused events by index in the batch.
    pub rejected: Vec<(usize, Rejection)>,
    /// Dropped fields by index in the batch.
    pub dropped: Vec<(usize, String)>,
}

const DAY_MS: i64 = 86_400_000;

/// Batches at least this large are validated and folded on all cores.
const PARALLEL_BATCH: usize = 2048;

/// A validated batch, ready to store ([`crate::Engine::prepare_batch`]).
#[derive(Debug)]
pub struct PreparedBatch {
    now_ms: i64,
    /// Rejections, dropped fields and aggregated events so far.
    report: IngestReport,
    to_store: Vec<NewEvent>,
    /// The person (resolved) and event of each entry of `to_store`.
    stored_events: Vec<(String, Box<Event>)>,
    /// Counts of events kept only as aggregates, by day and type.
    aggregate: FxHashMap<String, u64>,
}

/// What validation decided for one event.
enum Prepared {
    Rejected(Rejection),
    Aggregated { key: String, dropped: Vec<String> },
    Store { person: String, event: Box<Event>, new_event: NewEvent, dropped: Vec<String> },
}

/// What the event path reads and writes.
pub(crate) struct IngestCtx<'a> {
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    pub catalog: &'a Catalog,
    pub people: &'a People,
    pub cluster: &'a ClusterState,
    pub decisions: &'a DecisionLog,
    pub variants: &'a VariantBandits,
}

impl IngestCtx<'_> {
    fn fold(&self) -> FoldCtx<'_> {
        FoldCtx { store: self.store, catalog: self.catalog, people: self.people, cluster: self.cluster }
    }

    /// Ingests a batch. Refused events never fail the others. Returns after accepted events are
    /// durable.
    ///
    /// Three stages: validate and encode every event (in parallel for large batches, e.g.
    /// `attune import`), append durably (one store call, one fsync), then fold the new events
    /// into profiles (in parallel across people shards, each person's events in batch order).
    pub fn ingest(&self, batch: Vec<IngestItem>) -> Result<IngestReport> {
        self.ingest_with(batch, false)
    }

    /// [`ingest`](crate::Engine::ingest) for bulk loads (`attune import`): the same validation, consent
    /// rules, deduplication and durability, stored with the backend's bulk path, which is faster
    /// per event for large batches (tens of thousands of events) and slower for small ones.
    pub fn ingest_bulk(&self, batch: Vec<IngestItem>) -> Result<IngestReport> {
        self.ingest_with(batch, true)
    }

    fn ingest_with(&self, batch: Vec<IngestItem>, bulk: bool) -> Result<IngestReport> {
        self.store_batch(self.prepare_batch(batch), bulk)
    }

    /// The first half of [`ingest_bulk`](crate::Engine::ingest_bulk): validates and encodes a batch (on
    /// all cores when it is large) without storing anything, so that a bulk load can prepare the
    /// next batch while the previous one is stored. Consent and identity are read now: a batch
    /// prepared before a change to them is stored as prepared.
    pub fn prepare_batch(&self, batch: Vec<IngestItem>) -> PreparedBatch {
        let now_ms = self.clock.now_ms();
        let schemas = self.catalog.schemas.read().clone();
        let declared = |name: &str| schemas.get(name).cloned();
        let prepare = |item: IngestItem| self.prepare(item, &declared, now_ms);
        let prepared: Vec<Prepared> = if batch.len() >= PARALLEL_BATCH {
            batch.into_par_iter().map(prepare).collect()
        } else {
            batch.into_iter().map(prepare).collect()
        };

        let mut ready = PreparedBatch {
            now_ms,
            report: IngestReport::default(),
            to_store: Vec::with_capacity(prepared.len()),
            stored_events: Vec::with_capacity(prepared.len()),
            aggregate: FxHashMap::default(),
        };
        for (index, outcome) in prepared.into_iter().enumerate() {
            match outcome {
                Prepared::Rejected(rejection) => ready.report.rejected.push((index, rejection)),
                Prepared::Aggregated { key, dropped } => {
                    ready.report.dropped.extend(dropped.into_iter().map(|field| (index, field)));
                    *ready.aggregate.entry(key).or_default() += 1;
                    ready.report.accepted += 1;
                }
                Prepared::Store { person, event, new_event, dropped } => {
                    ready.report.dropped.extend(dropped.into_iter().map(|field| (index, field)));
                    ready.to_store.push(new_event);
                    ready.stored_events.push((person, event));
                }
            }
        }
        ready
    }

    /// The second half of [`ingest_bulk`](crate::Engine::ingest_bulk) (`bulk`) or of
    /// [`ingest`](crate::Engine::ingest): stores a prepared batch durably, then folds its new events.
    pub fn store_batch(&self, batch: PreparedBatch, bulk: bool) -> Result<IngestReport> {
        let PreparedBatch { now_ms, mut report, to_store, stored_events, aggregate } = batch;
        if !aggregate.is_empty() {
            add_aggregates(self.store, aggregate)?;
        }
        let outcomes =
            if bulk { self.store.append_events_bulk(to_store)? } else { self.store.append_events(to_store)? };
        let mut new_events = Vec::with_capacity(outcomes.len());
        let mut answers = Vec::new();
        for (outcome, stored) in outcomes.into_iter().zip(stored_events) {
            match outcome {
                Appended::Duplicate => report.duplicates += 1,
                Appended::New(seq) => {
                    report.accepted += 1;
                    // Attributed here, where the event was stored, and nowhere else: another
                    // server folding it through its sync does not count it again.
                    if let Some(decision_id) = &stored.1.decision_id {
                        answers.push((
                            stored.1.subject.id().to_owned(),
                            stored.0.clone(),
                            decision_id.clone(),
                            stored.1.item.clone(),
                            stored.1.kind.clone(),
                        ));
                    }
                    // With cluster sync a concurrent sync may have seen (and folded) it already.
                    if self.cluster.claim(seq) {
                        new_events.push(stored);
                    }
                }
            }
        }
        self.fold().apply_events(new_events, now_ms);
        for (subject, person, decision_id, item, kind) in answers {
            self.decisions.attribute(
                self.people,
                self.variants,
                &subject,
                &person,
                &decision_id,
                item.as_deref(),
                &kind,
            );
        }
        Ok(report)
    }

    /// Validates one event and decides what is kept of it.
    fn prepare(
        &self,
        item: IngestItem,
        declared: &dyn Fn(&str) -> Option<attune_core::Schema>,
        now_ms: i64,
    ) -> Prepared {
        let raw = match item {
            IngestItem::Raw(raw) => raw,
            IngestItem::Rejected(rejection) => return Prepared::Rejected(rejection),
        };
        let subject_id = raw.user.as_deref().or(raw.anonymous_id.as_deref()).unwrap_or("");
        let person = self.people.resolve(subject_id);
        let consent = self.people.consent_of(&person);
        let validated = match validate_event(raw, declared, &consent, now_ms) {
            Ok(validated) => validated,
            Err(rejection) => return Prepared::Rejected(rejection),
        };
        let event = validated.event;
        if !(consent.analytics || consent.allows(validated.schema.purpose)) {
            // Without consent for the purpose or for analytics only a count per day and type is
            // kept: no id, no person, no item.
            let day = jiff::Timestamp::from_millisecond(event.ts_ms)
                .map(|ts| ts.strftime("%Y-%m-%d").to_string())
                .unwrap_or_default();
            return Prepared::Aggregated { key: format!("{day}\0{}", event.kind.as_str()), dropped: validated.dropped };
        }
        let retention_days = i64::from(validated.schema.retention_days);
        let new_event = NewEvent {
            id: event.id.clone(),
            subject: event.subject.id().to_owned(),
            ts_ms: event.ts_ms,
            expires_ms: event.ts_ms.saturating_add(retention_days * DAY_MS),
            payload: postcard::to_stdvec(&event).expect("events always encode"),
        };
        Prepared::Store { person, event: Box::new(event), new_event, dropped: validated.dropped }
    }
}

/// Adds to the daily counts of events kept only as aggregates. The store adds atomically,
/// so servers sharing it lose none of each other's counts.
pub(crate) fn add_aggregates(store: &dyn Store, counts: FxHashMap<String, u64>) -> Result<()> {
    let counts: Vec<(String, u64)> = counts.into_iter().collect();
    store.add_counters(Table::Aggregates, &counts)?;
    Ok(())
}
