//! Experiment results are brought up to date between queries instead of recomputed (see
//! `Tally` in `experiments.rs`). After every kind of change — events appended (some late, some
//! by another engine on the same store), new exposures of people with a history, an anonymous id
//! merged into an exposed person, an erasure on the other engine, a forgotten item — the
//! answer equals the one a freshly opened engine computes from the store. And the review log,
//! read through its time index, pages newest first, filters by slot and time, and loses a
//! person's entries at erasure and old ones at the retention sweep.

mod support;

use std::sync::Arc;

use attune_core::validate::RawEvent;
use attune_engine::{
    Engine, EngineConfig, IngestItem, ManualClock,
    experiments::{ExperimentResults, WINDOW_MS},
};
use attune_store::{Store, Table};
use serde_json::json;
use support::{DAY, HOUR, Setup, T0, event, ingest, two_arms};

fn anonymous_event(id: &str, anonymous: &str, ts: i64) -> IngestItem {
    IngestItem::Raw(RawEvent {
        id: Some(id.into()),
        kind: Some("click".into()),
        anonymous_id: Some(anonymous.into()),
        item: Some("i-1".into()),
        ts: Some(jiff::Timestamp::from_millisecond(ts).unwrap().to_string()),
        ..RawEvent::default()
    })
}

fn items() -> Vec<attune_core::Item> {
    (0..12).map(|i| support::item(format!("i-{i}"), "article", ["sleep", "focus", "tea"][i % 3])).collect()
}

fn decide(engine: &Engine, user: &str, slot: &str) {
    support::decide(engine, user, slot, 2);
}

/// The answer of an engine opened now on `store`: computed from the store alone.
fn fresh(store: &Arc<dyn Store>, clock: &Arc<ManualClock>) -> ExperimentResults {
    let engine = Engine::open(Arc::clone(store), clock.clone(), EngineConfig::default()).expect("fresh engine");
    engine.experiment_results("exp-t", WINDOW_MS).expect("fresh results")
}

fn exposed(results: &ExperimentResults) -> u64 {
    results.exposed.iter().map(|(_, n)| n).sum()
}

#[test]
fn results_kept_up_to_date_equal_a_fresh_computation() {
    let setup = Setup::embedded(T0 - 2 * DAY);
    let (engine, store, clock) = (&setup.engine, &setup.store, &setup.clock);
    engine.upsert_items(items()).expect("items");
    engine.put_experiment(two_arms("exp-t", "feed", &["purchase"]), "test").expect("experiment");
    // A second engine on the same store, as a second server would be.
    let other = setup.open();
    // A history before exposure (the CUPED covariate).
    let pre: Vec<IngestItem> = (0..60)
        .map(|p| {
            event(format!("pre-{p}"), "dwell", &format!("u-{p}"), "i-1", T0 - DAY, json!({"dwell_ms": 1000 * (p + 5)}))
        })
        .collect();
    ingest(engine, pre);
    clock.set(T0);
    for p in 0..40 {
        decide(engine, &format!("u-{p}"), "feed");
    }
    let first = engine.experiment_results("exp-t", WINDOW_MS).unwrap();
    assert_eq!(exposed(&first), 40);
    assert_eq!(first, fresh(store, clock));

    // Outcomes, some appended by the other engine, one late (a purchase five days after).
    clock.set(T0 + 6 * DAY);
    let post: Vec<IngestItem> = (0..40)
        .flat_map(|p| {
            let user = format!("u-{p}");
            let mut events = vec![event(format!("click-{p}"), "click", &user, "i-2", T0 + HOUR, json!({}))];
            if p % 3 == 0 {
                events.push(event(
                    format!("buy-{p}"),
                    "purchase",
                    &user,
                    "i-3",
                    T0 + 5 * DAY,
                    json!({"value": 10 + p}),
                ));
            }
            if p % 4 == 0 {
                events.push(event(
                    format!("survey-{p}"),
                    "survey",
                    &user,
                    "i-3",
                    T0 + 2 * DAY,
                    json!({"score": 3 + p % 7}),
                ));
            }
            events
        })
        .collect();
    let (mine, theirs) = post.split_at(50);
    ingest(engine, mine.to_vec());
    ingest(&other, theirs.to_vec());
    let second = engine.experiment_results("exp-t", WINDOW_MS).unwrap();
    assert_ne!(second, first, "the outcomes count");
    assert_eq!(second, fresh(store, clock));

    // New exposures of people with a history (read from the store for them alone).
    for p in 40..55 {
        decide(engine, &format!("u-{p}"), "feed");
    }
    ingest(
        engine,
        (40..55)
            .map(|p| event(format!("late-{p}"), "click", &format!("u-{p}"), "i-4", T0 + 6 * DAY, json!({})))
            .collect(),
    );
    let third = engine.experiment_results("exp-t", WINDOW_MS).unwrap();
    assert_eq!(exposed(&third), 55);
    assert_eq!(third, fresh(store, clock));

    // An anonymous visitor's clicks, merged into an exposed person afterwards, count for them.
    ingest(engine, vec![anonymous_event("anon-click", "anon-9", T0 + 3 * DAY)]);
    let before_merge = engine.experiment_results("exp-t", WINDOW_MS).unwrap();
    engine.identify("anon-9", "u-50", "test").expect("identify");
    let merged = engine.experiment_results("exp-t", WINDOW_MS).unwrap();
    assert_eq!(merged, fresh(store, clock));
    assert_eq!(before_merge, third, "before the merge the anonymous click is nobody's");

    // An erasure on the other engine (another server) reaches this one's answer.
    // (Opened now: without a cluster sync, an engine knows the people stored when it opened.)
    let other = setup.open();
    other.erase_person("u-3", "test").expect("erase");
    let after_erasure = engine.experiment_results("exp-t", WINDOW_MS).unwrap();
    assert_eq!(exposed(&after_erasure), 54);
    assert_eq!(after_erasure, fresh(store, clock));

    // A forgotten item takes its events out of the metrics.
    engine.forget_item("u-6", "i-3", "test").expect("forget");
    let after_forget = engine.experiment_results("exp-t", WINDOW_MS).unwrap();
    assert_ne!(after_forget, after_erasure, "u-6's purchase is gone");
    assert_eq!(after_forget, fresh(store, clock));

    // The lift chart's last point agrees with the results' exposures.
    let timeline = engine.experiment_timeline("exp-t", WINDOW_MS, 10).unwrap();
    assert_eq!(timeline.metric, "purchase_conversion");
    let last = timeline.points.last().expect("points");
    assert_eq!(last.exposed.iter().sum::<u64>(), exposed(&after_forget));
    assert!(timeline.points.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
}

#[test]
fn the_review_log_reads_its_time_index_newest_first() {
    let setup = Setup::embedded(T0);
    let (engine, store, clock) = (&setup.engine, &setup.store, &setup.clock);
    engine.upsert_items(items()).expect("items");
    ingest(
        engine,
        (0..5).map(|p| event(format!("v-{p}"), "view", &format!("u-{p}"), "i-0", T0 - HOUR, json!({}))).collect(),
    );
    for minute in 0..30 {
        clock.set(T0 + minute * 60_000);
        decide(engine, &format!("u-{}", minute % 5), if minute % 3 == 0 { "email" } else { "feed" });
    }
    let latest = engine.recent_decisions(None, 0, 7).unwrap();
    assert_eq!(latest.len(), 7);
    assert_eq!(latest[0].at_ms, T0 + 29 * 60_000);
    assert!(latest.windows(2).all(|w| w[0].at_ms > w[1].at_ms), "newest first");
    let email = engine.recent_decisions(Some("email"), 0, 100).unwrap();
    assert_eq!(email.len(), 10);
    assert!(email.iter().all(|d| d.placements.iter().any(|p| p.slot == "email")));
    let since = engine.recent_decisions(Some("feed"), T0 + 20 * 60_000, 100).unwrap();
    assert_eq!(since.len(), 7, "minutes 20 to 29 but 21, 24 and 27");
    // A restart keeps it; a second engine on the store sees the same.
    let other = setup.open();
    assert_eq!(other.recent_decisions(None, 0, 7).unwrap(), latest);

    // Erasure takes the person's entries out of the index too: nothing in the table names them.
    engine.erase_person("u-1", "test").expect("erase");
    let mut naming = Vec::new();
    store
        .scan(Table::Decisions, "", &mut |key, value| {
            if key.contains("u-1") || String::from_utf8_lossy(value).contains("u-1\0") {
                naming.push(key.to_owned());
            }
            true
        })
        .unwrap();
    assert!(naming.is_empty(), "{naming:?}");
    let all = engine.recent_decisions(None, 0, 100).unwrap();
    assert_eq!(all.len(), 24);
    assert!(all.iter().all(|d| d.person.as_deref() != Some("u-1")));

    // The retention sweep removes old entries with their decisions (90 days).
    clock.set(T0 + 90 * DAY + 15 * 60_000);
    engine.sweep_retention(T0 + 90 * DAY + 15 * 60_000).expect("sweep");
    let kept = engine.recent_decisions(None, 0, 100).unwrap();
    assert!(kept.iter().all(|d| d.at_ms >= T0 + 15 * 60_000), "{kept:?}");
    let mut index_entries = 0;
    store
        .scan(Table::Decisions, "\u{1}", &mut |_, _| {
            index_entries += 1;
            true
        })
        .unwrap();
    // 12 decisions left of which 4 (minutes 18, 21, 24, 27) are on the email slot; minute 16's and
    // 26's person, u-1, was erased: each has the all-slots entry and its slot's.
    assert_eq!(index_entries, 2 * kept.len(), "{kept:?}");
}

/// Two engines on one store (two servers on one database) erase exposed people at the same
/// time: every erasure is counted against its arm, none lost to the other's write (the counts
/// are the store's atomic counters), and an engine opened afterwards reads the same counts.
fn erasures_counted_at_once_lose_nothing(setup: Setup) {
    const PEOPLE: usize = 40;
    let engine = &setup.engine;
    engine.upsert_items(items()).expect("items");
    engine.put_experiment(two_arms("exp-c", "feed", &[]), "test").expect("experiment");
    let person = |p: usize| format!("c-{p}");
    ingest(
        engine,
        (0..PEOPLE).map(|p| event(format!("v-{p}"), "view", &person(p), "i-0", T0 - HOUR, json!({}))).collect(),
    );
    let mut exposed: std::collections::BTreeMap<String, u64> = Default::default();
    for p in 0..PEOPLE {
        let decision = support::decide(engine, &person(p), "feed", 2);
        *exposed.entry(decision.experiments[0].1.clone()).or_default() += 1;
    }
    engine.flush_decisions().expect("flush");
    assert_eq!(exposed.len(), 2, "both arms exposed: {exposed:?}");
    let other = setup.open();
    std::thread::scope(|scope| {
        for (k, server) in [engine, &other].into_iter().enumerate() {
            scope.spawn(move || {
                for p in (k..PEOPLE).step_by(2) {
                    server.erase_person(&person(p), "test").expect("erase");
                }
            });
        }
    });
    let counted = |engine: &Engine| -> std::collections::BTreeMap<String, u64> {
        let results = engine.experiment_results("exp-c", WINDOW_MS).expect("results");
        assert_eq!(results.exposed.iter().map(|(_, n)| n).sum::<u64>(), 0, "nobody exposed is left");
        let erasures = results.metric("erasures").expect("the erasures guardrail");
        erasures.arms.iter().map(|arm| (arm.arm.clone(), arm.stats.n)).collect()
    };
    assert_eq!(counted(engine), exposed);
    assert_eq!(counted(&other), exposed);
    assert_eq!(counted(&setup.open()), exposed);
}

#[test]
fn erasures_counted_at_once_by_two_engines_lose_nothing() {
    erasures_counted_at_once_lose_nothing(Setup::embedded(T0));
}

#[test]
fn erasures_counted_at_once_by_two_engines_lose_nothing_on_postgres() {
    if let Some(setup) = Setup::postgres(T0) {
        erasures_counted_at_once_lose_nothing(setup);
    }
}

/// A data directory written before the erasure counts were atomic counters kept them as JSON
/// records (`erased\0<experiment>\0<arm>`): they still count, and new erasures add to them.
#[test]
fn erasure_counts_of_an_older_build_still_count() {
    let setup = Setup::embedded(T0);
    let engine = &setup.engine;
    engine.upsert_items(items()).expect("items");
    engine.put_experiment(two_arms("exp-old", "feed", &[]), "test").expect("experiment");
    setup.store.put(Table::Experiments, "erased\0exp-old\0control", b"3").expect("an old count");
    ingest(engine, vec![event("v-x", "view", "x-1", "i-0", T0 - HOUR, json!({}))]);
    let arm = support::decide(engine, "x-1", "feed", 2).experiments[0].1.clone();
    engine.flush_decisions().expect("flush");
    engine.erase_person("x-1", "test").expect("erase");
    let results = engine.experiment_results("exp-old", WINDOW_MS).expect("results");
    let erasures = results.metric("erasures").expect("the erasures guardrail");
    let n = |name: &str| erasures.arms.iter().find(|a| a.arm == name).map_or(0, |a| a.stats.n);
    let erased_in = |name: &str| u64::from(arm == name);
    assert_eq!((n("control"), n("personalized")), (3 + erased_in("control"), erased_in("personalized")));
}
