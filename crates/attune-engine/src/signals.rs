//! Declared signals: what a custom event type means for personalization (`PUT /v1/schemas/{type}`
//! with a `signal`). The schema says which tags the event speaks for (fixed tags, a string
//! property such as a quiz answer, or the item's tags), how strongly and in which direction, and
//! which journey step it stands for; this module resolves that for one event, so profile folding
//! ([`attune_core::Profile::fold`]) and training ([`crate::models::training_weight`]) read it
//! like the built-in types.
//!
//! A changed signal refolds the profiles of everyone with stored events of that type
//! (`profiles.rs`), so what a profile says never depends on when the schema was declared.

use attune_core::{Event, EventType, ItemIdx, JourneySignal, Signal, TagIdx};
use rustc_hash::FxHashMap;

use crate::catalog::Catalog;

/// A declared event's signal, resolved for one event.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResolvedSignal {
    pub strength: f32,
    pub journey: Option<JourneySignal>,
    pub tags: Vec<TagIdx>,
}

/// The most tags one property value may name (a quiz answer `"sleep, focus"`).
const MAX_PROPERTY_TAGS: usize = 8;

/// A tag as people write it in a free-text answer: trimmed, lower case, spaces and dashes as `_`.
fn normalized_tag(text: &str) -> String {
    text.trim().to_lowercase().replace([' ', '-'], "_")
}

impl Catalog {
    /// The signal of a declared type, if its schema declares one.
    pub(crate) fn signal_of(&self, kind: &EventType) -> Option<Signal> {
        match kind {
            EventType::Declared(name) => self.schemas.read().get(name).and_then(|schema| schema.signal.clone()),
            EventType::Builtin(_) => None,
        }
    }

    /// Resolves `event`'s declared signal: fixed tags (interned: a schema names few), the tags a
    /// string property names (only tags the catalog knows, so free text cannot grow the tag
    /// table), and the item's tags.
    pub(crate) fn resolve_signal(&self, event: &Event, item: Option<ItemIdx>) -> Option<ResolvedSignal> {
        let signal = self.signal_of(&event.kind)?;
        let mut tags: Vec<TagIdx> = Vec::new();
        for tag in &signal.tags.fixed {
            let known = self.read().lookup_tag(tag);
            tags.push(known.unwrap_or_else(|| self.write().intern_tag(tag)));
        }
        let catalog = self.read();
        if let Some(property) = &signal.tags.from_property
            && let Some(text) = event.prop(property).and_then(|value| value.as_str())
        {
            for part in text.split(',').filter(|p| !p.trim().is_empty()).take(MAX_PROPERTY_TAGS) {
                let found = catalog.lookup_tag(part.trim()).or_else(|| catalog.lookup_tag(&normalized_tag(part)));
                tags.extend(found);
            }
        }
        if signal.tags.item
            && let Some(item) = item
        {
            tags.extend_from_slice(catalog.tags_of(item));
        }
        tags.sort_unstable();
        tags.dedup();
        Some(ResolvedSignal { strength: signal.strength, journey: signal.journey, tags })
    }

    /// The training weight of each declared type with a positive signal (see
    /// [`crate::models::training_weight`]).
    pub(crate) fn declared_weights(&self) -> FxHashMap<String, f32> {
        self.schemas
            .read()
            .iter()
            .filter_map(|(name, schema)| {
                schema.signal.as_ref().filter(|s| s.strength > 0.0).map(|s| (name.clone(), s.strength))
            })
            .collect()
    }
}
