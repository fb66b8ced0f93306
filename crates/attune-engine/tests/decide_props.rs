//! Properties of every decision over random catalogs, histories and slot settings: counts, no
//! duplicates across placements, the filters (unavailable, bought, dismissed, flagged, `less_of`),
//! and at least one reason per item when asked to explain.

use std::sync::Arc;

use attune_core::{Consent, Item, Preferences, validate::RawEvent};
use attune_engine::{
    Engine, EngineConfig, IngestItem, ManualClock,
    decide::{DecideContext, DecideRequest, PlacementRequest},
    editorial::SlotSettings,
};
use attune_store::EmbeddedStore;
use proptest::prelude::*;

const NOW_MS: i64 = 1_795_852_800_000;
const TAGS: [&str; 6] = ["sleep", "stress_relief", "focus", "movement", "tea", "nature"];

#[derive(Debug, Clone)]
struct World {
    items: Vec<(u8, u8, bool)>,
    events: Vec<(u8, u8, u8)>,
    less_of: Option<u8>,
    flagged: Option<u8>,
    counts: Vec<u8>,
    editorial_share: u8,
    serendipity_share: u8,
    personalization: bool,
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec((0u8..6, 0u8..6, prop::bool::weighted(0.9)), 5..40),
        prop::collection::vec((0u8..4, 0u8..40, 0u8..6), 0..60),
        prop::option::of(0u8..6),
        prop::option::of(0u8..40),
        prop::collection::vec(1u8..15, 1..4),
        0u8..5,
        0u8..4,
        any::<bool>(),
    )
        .prop_map(
            |(items, events, less_of, flagged, counts, editorial_share, serendipity_share, personalization)| World {
                items,
                events,
                less_of,
                flagged,
                counts,
                editorial_share,
                serendipity_share,
                personalization,
            },
        )
}

fn item(i: usize, tags: (u8, u8), available: bool) -> Item {
    Item {
        id: format!("i-{i}"),
        kind: if i.is_multiple_of(5) { "product".into() } else { "article".into() },
        title: format!("Item {i}"),
        tags: vec![TAGS[tags.0 as usize].into(), TAGS[tags.1 as usize].into()],
        attributes: serde_json::Map::new(),
        available,
        published_at: None,
        variants: serde_json::Map::new(),
    }
}

/// The world's events (view, click, purchase, not interested), stored through the engine.
fn ingest_events(engine: &Engine, world: &World) {
    let n_items = world.items.len();
    let kinds = ["view", "click", "purchase", "not_interested"];
    let batch: Vec<IngestItem> = world
        .events
        .iter()
        .enumerate()
        .map(|(k, (kind, target, person))| {
            IngestItem::Raw(RawEvent {
                id: Some(format!("e-{k}")),
                kind: Some(kinds[*kind as usize].into()),
                user: Some(format!("p-{person}")),
                item: Some(format!("i-{}", *target as usize % n_items)),
                ..RawEvent::default()
            })
        })
        .collect();
    engine.ingest(batch).expect("ingest");
}

/// A decision for `person` on one slot per count of the world (`s0`, `s1`, …), explained.
fn request_for(world: &World, person: &str, context: DecideContext, preview: bool) -> DecideRequest {
    DecideRequest {
        subject: Some(person.into()),
        context,
        placements: world
            .counts
            .iter()
            .enumerate()
            .map(|(k, &count)| PlacementRequest { slot: format!("s{k}"), count: count as usize })
            .collect(),
        explain: true,
        preview,
        exclude: Vec::new(),
    }
}

fn check(world: World) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let engine = Engine::open(store, clock, EngineConfig::default()).expect("engine");
    let n_items = world.items.len();
    let items: Vec<Item> =
        world.items.iter().enumerate().map(|(i, (a, b, available))| item(i, (*a, *b), *available)).collect();
    engine.upsert_items(items.clone()).expect("items");
    ingest_events(&engine, &world);
    let consent = Consent { personalization: world.personalization, ..Consent::default() };
    engine.put_consent("p-0", consent, "test").expect("consent");
    let less_of: Vec<String> = world.less_of.map(|t| TAGS[t as usize].to_owned()).into_iter().collect();
    engine
        .put_preferences(
            "p-0",
            Preferences { less_of: less_of.clone(), goals: vec!["sleep".into()], ..Preferences::default() },
            "test",
        )
        .expect("preferences");
    if let Some(flagged) = world.flagged {
        engine.flag_item(&format!("i-{}", flagged as usize % n_items), "off-brand", "test").expect("flag");
    }
    for (i, it) in items.iter().enumerate().filter(|(i, _)| i % 4 == 1) {
        engine
            .put_pick(
                attune_engine::editorial::Pick {
                    id: format!("pick-{i}"),
                    item: it.id.clone(),
                    audience: Default::default(),
                    slots: Vec::new(),
                    from_ms: None,
                    until_ms: None,
                    note: None,
                },
                "test",
            )
            .expect("pick");
    }
    engine
        .put_slot(
            "s0",
            SlotSettings {
                editorial_share: world.editorial_share as f32 * 0.1,
                serendipity_share: world.serendipity_share as f32 * 0.1,
                ..SlotSettings::default()
            },
            "test",
        )
        .expect("slot");
    engine.train().expect("train");

    for person in ["p-0", "p-1", "p-2", "nobody"] {
        let context = DecideContext { timezone: Some("Europe/Berlin".into()), ..DecideContext::default() };
        let request = request_for(&world, person, context, false);
        let decision = engine.decide(&request).expect("decide");
        prop_assert_eq!(decision.placements.len(), world.counts.len());
        // What the person bought or dismissed, from the events.
        let banned: Vec<String> = world
            .events
            .iter()
            .filter(|(kind, _, p)| format!("p-{p}") == person && (*kind == 2 || *kind == 3))
            .map(|(_, target, _)| format!("i-{}", *target as usize % n_items))
            .collect();
        let n_candidates = items.len();
        let mut seen = std::collections::HashSet::new();
        for (placement, &count) in decision.placements.iter().zip(&world.counts) {
            prop_assert!(placement.items.len() <= count as usize);
            for decided in &placement.items {
                prop_assert!(seen.insert(decided.item.id.clone()), "{} twice", decided.item.id);
                prop_assert!(decided.item.available, "{} is unavailable", decided.item.id);
                prop_assert!(!banned.contains(&decided.item.id), "{} was bought or dismissed", decided.item.id);
                if let Some(flagged) = world.flagged {
                    prop_assert_ne!(&decided.item.id, &format!("i-{}", flagged as usize % n_items));
                }
                if person == "p-0" {
                    prop_assert!(!decided.item.tags.iter().any(|t| less_of.contains(t)), "less_of");
                }
                prop_assert!(!decided.reasons.is_empty(), "{} has no reason", decided.item.id);
            }
        }
        let _ = n_candidates;
        if person == "p-0" && !world.personalization {
            prop_assert!(!decision.personalized);
        }
        if person == "nobody" {
            prop_assert!(!decision.personalized);
        }
    }
    Ok(())
}

/// The general ranking is scored once per moment and walked past what a person may not see,
/// unless an editor's tag role (a rule's boost or exclusion, a person's `less_of`) applies: then
/// every item is scored in the decision. The two must decide alike. A `less_of` naming a tag that
/// only a withdrawn item carries takes the second way without changing what may be shown.
fn check_general_order(world: World) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let engine = Engine::open(store, clock, EngineConfig::default()).expect("engine");
    let n_items = world.items.len();
    let mut items: Vec<Item> =
        world.items.iter().enumerate().map(|(i, (a, b, available))| item(i, (*a, *b), *available)).collect();
    for (i, it) in items.iter_mut().enumerate() {
        // New items get the recency prior (one to sixty days old).
        let published_ms = NOW_MS - (1 + i as i64 % 60) * 86_400_000;
        it.published_at = Some(jiff::Timestamp::from_millisecond(published_ms).expect("a time"));
    }
    let mut retired = item(n_items, (0, 1), false);
    retired.tags = vec!["retired".into()];
    items.push(retired);
    engine.upsert_items(items).expect("items");
    ingest_events(&engine, &world);
    if let Some(flagged) = world.flagged {
        engine.flag_item(&format!("i-{}", flagged as usize % n_items), "off-brand", "test").expect("flag");
    }
    engine.train().expect("train");
    let decide = |person: &str| {
        let context = DecideContext { device: Some("mobile".into()), ..DecideContext::default() };
        let request = request_for(&world, person, context, true);
        let decision = engine.decide(&request).expect("decide");
        decision
            .placements
            .iter()
            .map(|p| {
                p.items.iter().map(|d| (d.item.id.clone(), d.source, d.score, d.reasons.clone())).collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    for person in ["p-0", "p-1", "p-2"] {
        let consent = Consent { personalization: world.personalization, ..Consent::default() };
        engine.put_consent(person, consent, "test").expect("consent");
        let cached = decide(person);
        let again = decide(person);
        prop_assert_eq!(&cached, &again, "a cached order decides as the first");
        engine
            .put_preferences(person, Preferences { less_of: vec!["retired".into()], ..Preferences::default() }, "test")
            .expect("preferences");
        let scored = decide(person);
        prop_assert_eq!(&cached, &scored, "the cached order and every item scored disagree for {}", person);
        engine.put_preferences(person, Preferences::default(), "test").expect("preferences");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_decision_keeps_the_invariants(world in world()) {
        check(world)?;
    }

    #[test]
    fn the_cached_general_order_decides_as_scoring_every_item(world in world()) {
        check_general_order(world)?;
    }
}

/// The general ranking's cached order follows the catalog: a withdrawn item leaves the next
/// answer at once, and an item made available again comes back.
#[test]
fn the_general_order_follows_catalog_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let engine = Engine::open(store, clock, EngineConfig::default()).expect("engine");
    let items: Vec<Item> = (0..12).map(|i| item(i, (0, 1), true)).collect();
    engine.upsert_items(items.clone()).expect("items");
    // Item i-0 is the most popular, then i-1, ...
    let batch: Vec<IngestItem> = (0..12)
        .flat_map(|i| (0..(12 - i)).map(move |p| (i, p)))
        .map(|(i, p)| {
            IngestItem::Raw(RawEvent {
                id: Some(format!("e-{i}-{p}")),
                kind: Some("view".into()),
                user: Some(format!("p-{p}")),
                item: Some(format!("i-{i}")),
                ..RawEvent::default()
            })
        })
        .collect();
    engine.ingest(batch).expect("ingest");
    engine.train().expect("train");
    let first = || {
        let request = DecideRequest {
            subject: Some("nobody".into()),
            placements: vec![PlacementRequest { slot: "s".into(), count: 3 }],
            preview: true,
            ..DecideRequest::default()
        };
        let decision = engine.decide(&request).expect("decide");
        decision.placements[0].items.iter().map(|d| d.item.id.clone()).collect::<Vec<_>>()
    };
    let before = first();
    assert_eq!(before[0], "i-0", "{before:?}");
    engine.withdraw_item("i-0").expect("withdraw");
    let after = first();
    assert!(!after.contains(&"i-0".to_owned()), "{after:?}");
    engine.upsert_items(vec![items[0].clone()]).expect("available again");
    assert_eq!(first(), before);
}
