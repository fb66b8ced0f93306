//! The slots' variant bandit (`attune_engine::variants`) through the engine's API: clicks on a
//! decision's items move the choice, per context; rules that force a variant teach it nothing;
//! its state survives a restart; two engines on one store (as two servers on one database) add
//! up each other's increments and, holding the same state, choose the same variant.

use std::sync::Arc;

use attune_core::{Item, validate::RawEvent};
use attune_engine::{
    Engine, EngineConfig, IngestItem, ManualClock,
    decide::{DecideContext, DecideRequest, PlacementRequest},
    editorial::{Conditions, SlotSettings, VariantRule},
    variants::Counts,
};
use attune_store::{EmbeddedStore, Store};

const NOW_MS: i64 = 1_795_852_800_000;
const SLOT: &str = "hero";

fn open(store: &Arc<dyn Store>, cluster: bool) -> Engine {
    let config = EngineConfig { cluster, ..EngineConfig::default() };
    Engine::open(Arc::clone(store), Arc::new(ManualClock::new(NOW_MS)), config).expect("engine")
}

fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(dir.path()).expect("store"))
}

fn setup(engine: &Engine, variants: &[&str], rules: Vec<VariantRule>) {
    let items = (0..6)
        .map(|i| Item {
            id: format!("i-{i}"),
            kind: "article".into(),
            title: format!("Item {i}"),
            tags: vec!["calm".into()],
            attributes: Default::default(),
            available: true,
            published_at: None,
            variants: Default::default(),
        })
        .collect();
    engine.upsert_items(items).expect("items");
    let settings =
        SlotSettings { variants: variants.iter().map(|v| (*v).to_owned()).collect(), rules, ..SlotSettings::default() };
    engine.put_slot(SLOT, settings, "test").expect("slot");
}

/// A request for `visitor` on `device` at 08:00 local time.
fn request(visitor: &str, device: &str, preview: bool) -> DecideRequest {
    DecideRequest {
        subject: Some(visitor.to_owned()),
        context: DecideContext {
            device: Some(device.to_owned()),
            local_time: Some("2026-11-28T08:00:00+01:00".into()),
            ..DecideContext::default()
        },
        placements: vec![PlacementRequest { slot: SLOT.into(), count: 2 }],
        preview,
        ..DecideRequest::default()
    }
}

/// Decides for `visitor`; returns the variant and (decision id, first item).
fn decide(engine: &Engine, visitor: &str, device: &str) -> (String, String, String) {
    let decision = engine.decide(&request(visitor, device, false)).expect("decide");
    let placement = &decision.placements[0];
    let item = placement.items.first().map(|i| i.item.id.clone()).expect("an item");
    (placement.variant.clone(), decision.id, item)
}

/// What the bandit would choose now, without showing anything (a preview is never logged).
fn choice(engine: &Engine, device: &str) -> String {
    engine.decide(&request("anon-look", device, true)).expect("decide").placements[0].variant.clone()
}

fn click(engine: &Engine, id: &str, visitor: &str, decision_id: &str, item: &str) {
    let report = engine
        .ingest(vec![IngestItem::Raw(RawEvent {
            id: Some(id.to_owned()),
            kind: Some("click".into()),
            anonymous_id: Some(visitor.to_owned()),
            item: Some(item.to_owned()),
            decision_id: Some(decision_id.to_owned()),
            ..RawEvent::default()
        })])
        .expect("ingest");
    assert_eq!(report.accepted, 1, "{report:?}");
}

/// Per variant: (bandit counts, forced counts).
fn counts(engine: &Engine) -> Vec<(String, Counts, Counts)> {
    engine.variant_performance(SLOT).into_iter().map(|v| (v.variant, v.counts, v.forced)).collect()
}

/// Shows the slot `n` times on `device`; clicks whenever the variant is `rewarded`.
fn play(engine: &Engine, tag: &str, device: &str, n: usize, rewarded: &str) {
    for k in 0..n {
        let visitor = format!("anon-{tag}-{k}");
        let (variant, decision_id, item) = decide(engine, &visitor, device);
        if variant == rewarded {
            click(engine, &format!("click-{tag}-{k}"), &visitor, &decision_id, &item);
        }
    }
}

#[test]
fn rewards_move_the_choice_per_context() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(&store(&dir), false);
    setup(&engine, &["calm_list", "grid"], Vec::new());
    // Nothing learned: the first variant.
    assert_eq!(choice(&engine, "mobile"), "calm_list");
    // On phones people click the grid, on computers the list.
    for round in 0..6 {
        play(&engine, &format!("m{round}"), "mobile", 20, "grid");
        play(&engine, &format!("d{round}"), "desktop", 20, "calm_list");
    }
    assert_eq!(choice(&engine, "mobile"), "grid");
    assert_eq!(choice(&engine, "desktop"), "calm_list");
    let by_variant = engine.variant_performance(SLOT);
    let grid = by_variant.iter().find(|v| v.variant == "grid").expect("grid");
    let mobile = grid.by_context.iter().find(|(d, v, _)| d == "device" && v == "mobile").expect("mobile").2;
    assert!(mobile.exposures > 60 && mobile.clicks == mobile.exposures, "{mobile:?}");
    assert!(mobile.estimated_rate() > 0.9);
    // Every exposure counted once, every click once (a second click on a decision adds nothing).
    let total: u64 = by_variant.iter().map(|v| v.counts.exposures).sum();
    assert_eq!(total, 240);
    let (_, decision_id, item) = decide(&engine, "anon-twice", "mobile");
    let before: u64 = engine.variant_performance(SLOT).iter().map(|v| v.counts.clicks).sum();
    click(&engine, "twice-1", "anon-twice", &decision_id, &item);
    click(&engine, "twice-2", "anon-twice", &decision_id, &item);
    let after: u64 = engine.variant_performance(SLOT).iter().map(|v| v.counts.clicks).sum();
    assert_eq!(after, before + 1);
    // A click that names another person's decision rewards nothing.
    let (_, theirs, item) = decide(&engine, "anon-owner", "mobile");
    click(&engine, "stranger", "anon-stranger", &theirs, &item);
    assert_eq!(engine.variant_performance(SLOT).iter().map(|v| v.counts.clicks).sum::<u64>(), after);
}

#[test]
fn forced_variants_do_not_teach_the_bandit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(&store(&dir), false);
    let rule = VariantRule {
        when: Conditions { device: Some("desktop".into()), ..Conditions::default() },
        variant: "grid".into(),
    };
    setup(&engine, &["calm_list", "grid"], vec![rule]);
    play(&engine, "forced", "desktop", 30, "grid");
    let by_variant = counts(&engine);
    assert_eq!(
        by_variant,
        vec![
            ("calm_list".to_owned(), Counts::default(), Counts::default()),
            ("grid".to_owned(), Counts::default(), Counts { exposures: 30, clicks: 30 }),
        ],
        "forced exposures and clicks are counted apart and never learned from"
    );
    // The bandit still knows nothing: on phones it starts with the first variant.
    assert_eq!(choice(&engine, "mobile"), "calm_list");
}

#[test]
fn the_bandit_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir);
    let (before, choices) = {
        let engine = open(&store, false);
        setup(&engine, &["calm_list", "grid", "cards"], Vec::new());
        play(&engine, "a", "mobile", 25, "cards");
        play(&engine, "b", "tablet", 25, "grid");
        engine.flush_decisions().expect("flush");
        let choices: Vec<String> = ["mobile", "tablet", "desktop"].iter().map(|d| choice(&engine, d)).collect();
        (counts(&engine), choices)
    };
    assert_eq!(choices[0], "cards");
    let engine = open(&store, false);
    assert_eq!(counts(&engine), before, "the stored state is what was learned");
    let after: Vec<String> = ["mobile", "tablet", "desktop"].iter().map(|d| choice(&engine, d)).collect();
    assert_eq!(after, choices, "the same choices after the restart");
    // A click after the restart on a decision made before it still counts (the decision is read
    // back from the store).
    let (_, decision_id, item) = {
        let first = open(&store, false);
        let decided = decide(&first, "anon-late", "mobile");
        first.flush_decisions().expect("flush");
        decided
    };
    let engine = open(&store, false);
    let clicks = |engine: &Engine| engine.variant_performance(SLOT).iter().map(|v| v.counts.clicks).sum::<u64>();
    let before_click = clicks(&engine);
    click(&engine, "late-click", "anon-late", &decision_id, &item);
    assert_eq!(clicks(&engine), before_click + 1);
}

#[test]
fn two_engines_on_one_store_add_up_and_choose_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(&dir);
    let (a, b) = (open(&store, true), open(&store, true));
    setup(&a, &["calm_list", "grid", "cards"], Vec::new());
    b.sync_from_store().expect("sync");
    // Both learn at once, each from its own visitors; B's clicks land on A's decisions too.
    for round in 0..4 {
        play(&a, &format!("a{round}"), "mobile", 10, "grid");
        play(&b, &format!("b{round}"), "mobile", 10, "grid");
        let (_, decision_id, item) = decide(&a, &format!("anon-cross-{round}"), "desktop");
        a.flush_decisions().expect("flush a");
        click(&b, &format!("cross-{round}"), &format!("anon-cross-{round}"), &decision_id, &item);
        // Concurrent flushes: neither loses the other's increments.
        std::thread::scope(|scope| {
            scope.spawn(|| a.flush_decisions().expect("flush a"));
            scope.spawn(|| b.flush_decisions().expect("flush b"));
        });
    }
    a.sync_from_store().expect("sync a");
    b.sync_from_store().expect("sync b");
    let (on_a, on_b) = (counts(&a), counts(&b));
    assert_eq!(on_a, on_b, "both hold the same state");
    assert_eq!(on_a.iter().map(|(_, c, _)| c.exposures).sum::<u64>(), 84, "every exposure of both, once");
    let cross_clicks: u64 = a
        .variant_performance(SLOT)
        .into_iter()
        .flat_map(|v| v.by_context.into_iter())
        .filter(|(d, v, _)| d == "device" && v == "desktop")
        .map(|(_, _, c)| c.clicks)
        .sum();
    assert_eq!(cross_clicks, 4, "a click ingested by B on A's decision counts once");
    for device in ["mobile", "desktop", "tablet"] {
        assert_eq!(choice(&a, device), choice(&b, device), "{device}");
    }
    assert_eq!(choice(&a, "mobile"), "grid");
    // A new engine on the store (a restarted server) starts where they left off.
    let c = open(&store, true);
    assert_eq!(counts(&c), on_a);
    assert_eq!(choice(&c, "mobile"), choice(&a, "mobile"));
}
