//! What the engine holds in memory, by part: an estimate for operators (`GET /metrics`,
//! `attune_memory_bytes{part=…}`) and for `attune bench scale`, which compares it with the
//! process's resident memory. Counted by capacity from the data structures themselves; the
//! allocator's own overhead and the store's caches are not in it.

use std::mem::size_of;

use crate::catalog::Catalog;
use crate::models::Models;
use crate::people::{People, PersonState};

/// Estimated bytes by part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// People in memory.
    pub n_people: usize,
    /// People's state: the map of people (its slots, by capacity), ids, consent, preferences,
    /// profiles and exclusions.
    pub people: usize,
    /// The catalog: ids, tags, traits and the items.
    pub catalog: usize,
    /// The served models: the ranker's models, popularity, trending and content vectors.
    pub models: usize,
    /// `models` by model: the ranker's parts by name (`item_knn`, `rp3beta`, `ials`, ...), its
    /// `context` effects and `fixed_scores`, then `general_scores` (the general ranking's
    /// popularity and trending and the hour prior, outside the ranker), `general_cache` (its
    /// orders cached per moment) and `content`. Adds up to `models`.
    pub model_parts: Vec<(&'static str, usize)>,
}

/// Walks the people, the catalog and the models once (a few milliseconds per 100,000 people;
/// each shard is read-locked only while it is walked).
pub fn estimate(people: &People, catalog: &Catalog, models: &Models) -> MemoryEstimate {
    let mut estimate = MemoryEstimate::default();
    for shard in people.shards() {
        let shard = shard.read();
        estimate.n_people += shard.len();
        estimate.people += shard.capacity() * (size_of::<(Box<str>, Box<PersonState>)>() + 1);
        estimate.people += shard
            .iter()
            .map(|(id, state)| id.len() + size_of::<PersonState>() + person_heap_bytes(state))
            .sum::<usize>();
    }
    estimate.catalog = catalog.read().approx_bytes();
    let models = models.current();
    let mut parts = models.ranker.as_ref().map_or(Vec::new(), |ranker| ranker.model_bytes_by_part());
    parts.push((
        "general_scores",
        (models.popularity.capacity() + models.trending.capacity() + models.hour_prior.capacity()) * size_of::<f32>(),
    ));
    parts.push(("general_cache", models.general.approx_bytes()));
    parts.push(("content", models.content.as_ref().map_or(0, |content| content.approx_bytes())));
    estimate.models = parts.iter().map(|(_, bytes)| bytes).sum();
    estimate.model_parts = parts;
    estimate
}

/// Bytes a person's state holds outside its map slot.
fn person_heap_bytes(state: &PersonState) -> usize {
    let preferences = state.preferences.as_ref().map_or(0, |p| {
        size_of::<attune_core::Preferences>()
            + p.goals.iter().chain(&p.less_of).map(|t| size_of::<String>() + t.capacity()).sum::<usize>()
            + p.timezone.as_ref().map_or(0, String::capacity)
    });
    preferences
        + state.profile.as_ref().map_or(0, |profile| profile.heap_bytes())
        + state.excluded.capacity() * size_of::<attune_core::ItemIdx>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, EngineConfig, IngestItem, ManualClock};
    use attune_core::validate::RawEvent;
    use std::sync::Arc;

    #[test]
    fn a_person_fits_the_allocators_448_byte_blocks() {
        // mimalloc serves 385–448 bytes from 448-byte blocks and 449–512 from 512-byte ones: a
        // `PersonState` a few bytes over 448 costs 64 more per person (docs/scale.md). Boxed
        // preferences (most people set none) brought it from 496 bytes under 448.
        assert!(size_of::<PersonState>() <= 448, "{}", size_of::<PersonState>());
    }

    #[test]
    fn the_estimate_grows_with_people_and_shrinks_with_erasure() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(attune_store::EmbeddedStore::open(dir.path()).unwrap());
        let clock = Arc::new(ManualClock::new(1_764_316_800_000));
        let engine = Engine::open(store, clock, EngineConfig::default()).unwrap();
        let empty = engine.memory_estimate();
        assert_eq!(empty.n_people, 0);
        let events: Vec<IngestItem> = (0..200)
            .map(|i| {
                IngestItem::Raw(RawEvent {
                    id: Some(format!("e-{i}")),
                    kind: Some("view".into()),
                    user: Some(format!("u-{}", i % 100)),
                    item: Some(format!("i-{}", i % 7)),
                    ts: Some("2025-11-28T07:00:00Z".into()),
                    ..RawEvent::default()
                })
            })
            .collect();
        engine.ingest(events).unwrap();
        let full = engine.memory_estimate();
        assert_eq!(full.n_people, 100);
        // At least the profile struct of each person, and the ids in the catalog.
        assert!(full.people >= 100 * size_of::<PersonState>(), "{full:?}");
        assert!(full.catalog > empty.catalog, "{full:?}");
        engine.erase_person("u-1", "test").unwrap();
        assert_eq!(engine.memory_estimate().n_people, 99);
    }
}
