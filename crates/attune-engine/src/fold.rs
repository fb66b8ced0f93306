//! Folding stored events into people's state: counts, exclusions and (with personalization
//! consent) the profile. Used by ingest (new events), the start-up replay, cluster sync (other
//! servers' events) and profile rebuilds. A fold never touches storage except the replay, which
//! reads the event log.

use attune_core::{Event, FoldEvent, Profile, Purpose};
use attune_store::Store;
use rayon::prelude::*;

use crate::catalog::Catalog;
use crate::cluster::ClusterState;
use crate::error::Result;
use crate::people::{N_SHARDS, People};
use crate::records::{decode_event, try_events};

/// Batches at least this large are folded on all cores.
const PARALLEL_BATCH: usize = 2048;

/// What a fold reads and writes.
pub(crate) struct FoldCtx<'a> {
    pub store: &'a dyn Store,
    pub catalog: &'a Catalog,
    pub people: &'a People,
    pub cluster: &'a ClusterState,
}

impl FoldCtx<'_> {
    /// Counts and folds newly stored events: in parallel across people shards for large batches,
    /// each person's events in batch order.
    pub(crate) fn apply_events(&self, events: Vec<(String, Box<Event>)>, now_ms: i64) {
        if events.len() < PARALLEL_BATCH {
            for (person, event) in &events {
                self.apply_event(person, event, now_ms);
            }
            return;
        }
        let mut by_shard: Vec<Vec<(String, Box<Event>)>> = (0..N_SHARDS).map(|_| Vec::new()).collect();
        for (person, event) in events {
            by_shard[People::shard_index(&person)].push((person, event));
        }
        by_shard.into_par_iter().for_each(|events| {
            for (person, event) in &events {
                self.apply_event(person, event, now_ms);
            }
        });
    }

    /// Counts a newly stored (or replayed) event and folds it into its person's state.
    /// `updated_ms` is when the person's state changed: now for live events, the event's time on
    /// replay.
    pub(crate) fn apply_event(&self, person: &str, event: &Event, updated_ms: i64) {
        let subject = event.subject.id();
        let as_user = matches!(event.subject, attune_core::Subject::User(_));
        if subject != person {
            self.people.update(subject, |state| {
                state.n_events += 1;
                state.known_user |= as_user;
            });
        }
        self.fold_into(person, event, updated_ms, subject == person);
        if as_user && subject == person && !self.people.read(person, |state| state.is_some_and(|s| s.known_user)) {
            self.people.update(person, |state| state.known_user = true);
        }
    }

    /// Folds an event into `person`'s profile (only with personalization consent), and counts it
    /// among the person's events if `count`.
    pub(crate) fn fold_into(&self, person: &str, event: &Event, updated_ms: i64, count: bool) {
        let item = event.item.as_deref().map(|id| self.catalog.intern_item(id));
        let signal = self.catalog.resolve_signal(event, item);
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
            timezone: event.context.timezone.as_deref().filter(|z| jiff::tz::TimeZone::get(z).is_ok()),
            local_hour: crate::clock::local_hour_of(event),
            channel: event.channel(),
            signal: signal.as_ref().map(|signal| attune_core::FoldSignal {
                strength: signal.strength,
                tags: &signal.tags,
                journey: signal.journey,
            }),
        };
        let excludes = matches!(
            event.kind.builtin(),
            Some(attune_core::BuiltinType::Purchase | attune_core::BuiltinType::NotInterested)
        );
        let default_consent = self.people.default_consent();
        self.people.update(person, |state| {
            state.n_events += u64::from(count);
            state.updated_ms = state.updated_ms.max(updated_ms);
            if excludes
                && let Some(item) = item
                && let Err(at) = state.excluded.binary_search(&item)
            {
                state.excluded.insert(at, item);
            }
            if state.consent.unwrap_or(default_consent).allows(Purpose::Personalization) {
                state.profile.get_or_insert_with(Profile::default).fold(&fold);
            }
        });
    }

    /// Folds every stored event, in order, into profiles (at start).
    pub(crate) fn replay_events(&self) -> Result<()> {
        try_events(
            |visit| self.store.scan_events(0, visit),
            |row| {
                let event = decode_event(&row.payload)?;
                self.cluster.replayed(row.seq);
                let person = self.people.resolve(event.subject.id());
                self.apply_event(&person, &event, event.ts_ms);
                Ok(true)
            },
        )
    }
}
