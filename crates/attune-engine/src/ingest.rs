//! The event path: validate → minimize by consent → store durably (group commit) → fold into
//! profiles. An event is acknowledged only after the store said it is on disk.

use attune_core::{
    Event, FoldEvent, ItemIdx, Profile, Purpose,
    validate::{RawEvent, Rejection, validate_event},
};
use attune_store::{Appended, NewEvent, Table};
use rustc_hash::FxHashMap;

use crate::{Engine, Result, error::corrupt};

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

impl Engine {
    /// Ingests a batch. Refused events never fail the others. Returns after accepted events are
    /// durable.
    pub fn ingest(&self, batch: Vec<IngestItem>) -> Result<IngestReport> {
        let now_ms = self.now_ms();
        let mut report = IngestReport::default();
        let mut to_store: Vec<NewEvent> = Vec::with_capacity(batch.len());
        let mut stored_events: Vec<(String, Event)> = Vec::with_capacity(batch.len());
        let mut aggregate: FxHashMap<String, u64> = FxHashMap::default();
        let schemas = self.schemas.read().clone();
        let declared = |name: &str| schemas.get(name).cloned();
        for (index, item) in batch.into_iter().enumerate() {
            let raw = match item {
                IngestItem::Raw(raw) => raw,
                IngestItem::Rejected(rejection) => {
                    report.rejected.push((index, rejection));
                    continue;
                }
            };
            let subject_id = raw.user.as_deref().or(raw.anonymous_id.as_deref()).unwrap_or("");
            let person = self.resolve(subject_id);
            let consent = self.consent_of(&person);
            let validated = match validate_event(raw, &declared, &consent, now_ms) {
                Ok(validated) => validated,
                Err(rejection) => {
                    report.rejected.push((index, rejection));
                    continue;
                }
            };
            report.dropped.extend(validated.dropped.into_iter().map(|field| (index, field)));
            let event = validated.event;
            let keep_individually = consent.analytics || consent.allows(validated.schema.purpose);
            if !keep_individually {
                // Without consent for the purpose or for analytics only a count per day and type
                // is kept: no id, no person, no item.
                let day = jiff::Timestamp::from_millisecond(event.ts_ms)
                    .map(|ts| ts.strftime("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                *aggregate.entry(format!("{day}\0{}", event.kind.as_str())).or_default() += 1;
                report.accepted += 1;
                continue;
            }
            let retention_days = i64::from(validated.schema.retention_days);
            to_store.push(NewEvent {
                id: event.id.clone(),
                subject: event.subject.id().to_owned(),
                ts_ms: event.ts_ms,
                expires_ms: event.ts_ms.saturating_add(retention_days * DAY_MS),
                payload: postcard::to_stdvec(&event).expect("events always encode"),
            });
            stored_events.push((person, event));
        }
        if !aggregate.is_empty() {
            self.add_aggregates(aggregate)?;
        }
        let outcomes = self.store.append_events(to_store)?;
        for (outcome, (person, event)) in outcomes.into_iter().zip(stored_events) {
            match outcome {
                Appended::Duplicate => report.duplicates += 1,
                Appended::New(_) => {
                    report.accepted += 1;
                    self.apply_event(&person, &event, now_ms);
                }
            }
        }
        Ok(report)
    }

    fn add_aggregates(&self, counts: FxHashMap<String, u64>) -> Result<()> {
        let _guard = self.aggregates.lock();
        let mut entries = Vec::with_capacity(counts.len());
        for (key, n) in counts {
            let before = match self.store.get(Table::Aggregates, &key)? {
                Some(bytes) => u64::from_le_bytes(bytes.try_into().map_err(|_| corrupt("aggregate", "length"))?),
                None => 0,
            };
            entries.push((key, (before + n).to_le_bytes().to_vec()));
        }
        self.store.put_many(Table::Aggregates, &entries)?;
        Ok(())
    }

    /// Counts a newly stored (or replayed) event and folds it into its person's state.
    /// `updated_ms` is when the person's state changed: now for live events, the event's time on
    /// replay.
    pub(crate) fn apply_event(&self, person: &str, event: &Event, updated_ms: i64) {
        self.people.update(event.subject.id(), |state| state.n_events += 1);
        self.fold_into(person, event, updated_ms);
    }

    /// Folds an event into `person`'s profile (only with personalization consent).
    pub(crate) fn fold_into(&self, person: &str, event: &Event, updated_ms: i64) {
        let consent = self.consent_of(person);
        let item = event.item.as_deref().map(|id| self.intern_item(id));
        let catalog = self.catalog.read();
        let tags = item.map_or(&[][..], |idx| catalog.tags_of(idx));
        let purchasable = item.and_then(|idx| catalog.item(idx)).is_some_and(|item| item.is_purchasable());
        let fold = FoldEvent {
            kind: &event.kind,
            item,
            tags,
            purchasable,
            ts_ms: event.ts_ms,
            dwell_ms: event.prop_f64("dwell_ms"),
            scroll_depth: event.prop_f64("scroll_depth"),
            value: event.prop_f64("value"),
            rating: event.prop_f64("rating"),
            score: event.prop_f64("score"),
        };
        self.people.update(person, |state| {
            state.updated_ms = state.updated_ms.max(updated_ms);
            if consent.allows(Purpose::Personalization) {
                state.profile.get_or_insert_with(Profile::default).fold(&fold);
            }
        });
    }

    pub(crate) fn intern_item(&self, id: &str) -> ItemIdx {
        if let Some(idx) = self.catalog.read().lookup(id) {
            return idx;
        }
        self.catalog.write().intern_item(id)
    }

    /// Folds every stored event, in order, into profiles (at start).
    pub(crate) fn replay_events(&self) -> Result<()> {
        let mut failure = None;
        self.store.scan_events(0, &mut |row| match postcard::from_bytes::<Event>(&row.payload) {
            Ok(event) => {
                let person = self.resolve(event.subject.id());
                self.apply_event(&person, &event, event.ts_ms);
                true
            }
            Err(err) => {
                failure = Some(corrupt("event payload", err));
                false
            }
        })?;
        match failure {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Decodes a stored event payload.
    pub fn decode_event(payload: &[u8]) -> Result<Event> {
        postcard::from_bytes(payload).map_err(|err| corrupt("event payload", err))
    }
}
