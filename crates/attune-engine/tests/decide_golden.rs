//! Golden tests of the decide pipeline: a fixture in, the expected answer out (rust-analyzer's
//! `check(fixture, expect)` style; `UPDATE_EXPECT=1 cargo test -p attune-engine --test
//! decide_golden` rewrites the expectations after an intended change — review the diff).
//!
//! A fixture is one statement per line:
//! - `item ID KIND TAG,TAG "Title"` — a catalog item;
//! - `event PERSON TYPE ITEM DAYS_AGO` — an event (`view`, `click`, `purchase`, `not_interested`);
//! - `goals PERSON TAG,TAG` — declared goals;
//! - `slot SLOT key=value …` — slot settings (`editorial`, `serendipity`, `repeats`; one variant);
//! - `pick ID ITEM "note"` — an editor's pick for everyone;
//! - `train` — train the models;
//! - `decide PERSON SLOT COUNT` — the decision rendered below, one line per item:
//!   `slot/variant: item source score | reason kind [item]: text`.

use std::sync::Arc;

use attune_core::{Item, Preferences, validate::RawEvent};
use attune_engine::{
    Engine, EngineConfig, IngestItem, ManualClock, SequentialIds,
    decide::{DecideRequest, PlacementRequest},
    editorial::{Pick, SlotSettings},
};
use attune_store::EmbeddedStore;
use expect_test::{Expect, expect};

const NOW_MS: i64 = 1_795_852_800_000;
const DAY_MS: i64 = 86_400_000;

fn words(line: &str) -> Vec<String> {
    // Split on spaces, keeping "quoted text" together.
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if let Some(stripped) = rest.strip_prefix('"') {
            let end = stripped.find('"').expect("closing quote");
            out.push(stripped[..end].to_owned());
            rest = stripped[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            out.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        }
    }
    out
}

fn check(fixture: &str, expect: Expect) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let engine = Engine::open(store, Arc::new(ManualClock::new(NOW_MS)), EngineConfig::default())
        .expect("engine")
        .with_ids(Arc::new(SequentialIds::default()));
    let mut out = String::new();
    let mut n_events = 0;
    for line in fixture.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let w = words(line);
        match w[0].as_str() {
            "item" => {
                let item = Item {
                    id: w[1].clone(),
                    kind: w[2].clone(),
                    title: w[4].clone(),
                    tags: w[3].split(',').map(str::to_owned).collect(),
                    attributes: serde_json::Map::new(),
                    available: true,
                    published_at: None,
                    variants: serde_json::Map::new(),
                };
                engine.upsert_items(vec![item]).expect("item");
            }
            "event" => {
                n_events += 1;
                let days: i64 = w[4].parse().expect("days ago");
                let ts = jiff::Timestamp::from_millisecond(NOW_MS - days * DAY_MS - n_events).expect("ts");
                let report = engine
                    .ingest(vec![IngestItem::Raw(RawEvent {
                        id: Some(format!("e-{n_events}")),
                        kind: Some(w[2].clone()),
                        user: Some(w[1].clone()),
                        item: Some(w[3].clone()),
                        ts: Some(ts.to_string()),
                        ..RawEvent::default()
                    })])
                    .expect("ingest");
                assert!(report.rejected.is_empty(), "{line}: {:?}", report.rejected);
            }
            "goals" => {
                let goals = w[2].split(',').map(str::to_owned).collect();
                engine.put_preferences(&w[1], Preferences { goals, ..Preferences::default() }, "test").expect("goals");
            }
            "slot" => {
                let mut settings = SlotSettings { variants: vec!["calm_list".into()], ..SlotSettings::default() };
                for kv in &w[2..] {
                    let (key, value) = kv.split_once('=').expect("key=value");
                    match key {
                        "editorial" => settings.editorial_share = value.parse().expect("share"),
                        "serendipity" => settings.serendipity_share = value.parse().expect("share"),
                        "repeats" => settings.repeats = value.parse().expect("bool"),
                        _ => panic!("unknown slot setting {key}"),
                    }
                }
                engine.put_slot(&w[1], settings, "test").expect("slot");
            }
            "pick" => {
                let pick = Pick {
                    id: w[1].clone(),
                    item: w[2].clone(),
                    audience: Default::default(),
                    slots: Vec::new(),
                    from_ms: None,
                    until_ms: None,
                    note: w.get(3).cloned(),
                };
                engine.put_pick(pick, "test").expect("pick");
            }
            "train" => {
                engine.train().expect("train");
            }
            "decide" => {
                let request = DecideRequest {
                    subject: Some(w[1].clone()),
                    placements: vec![PlacementRequest { slot: w[2].clone(), count: w[3].parse().expect("count") }],
                    explain: true,
                    ..DecideRequest::default()
                };
                let decision = engine.decide(&request).expect("decide");
                out.push_str(&format!(
                    "{} {} personalized={} stage={}\n",
                    decision.id,
                    w[1],
                    decision.personalized,
                    decision.journey_stage.as_str()
                ));
                for p in &decision.placements {
                    for item in &p.items {
                        let reasons: Vec<String> = item
                            .reasons
                            .iter()
                            .map(|r| {
                                let about = r
                                    .item
                                    .as_deref()
                                    .or(r.tag.as_deref())
                                    .map(|a| format!(" [{a}]"))
                                    .unwrap_or_default();
                                format!("{}{about}: {}", r.kind.as_str(), r.text)
                            })
                            .collect();
                        out.push_str(&format!(
                            "  {}/{}: {} {} {:.2} | {}\n",
                            p.slot,
                            p.variant,
                            item.item.id,
                            item.source.as_str(),
                            item.score,
                            reasons.join(" | ")
                        ));
                    }
                }
            }
            other => panic!("unknown fixture statement {other:?}"),
        }
    }
    expect.assert_eq(&out);
}

/// Two reading clusters; a sleep reader is offered the rest of the sleep shelf, each item
/// explained by the history items that carried it; what they read does not come back.
const SHELVES: &str = r#"
    item s1 article sleep "Sleep without screens"
    item s2 article sleep "The wind-down hour"
    item s3 meditation sleep "Body scan for sleep"
    item s4 article sleep "Why we wake at 3am"
    item f1 article focus "Deep work mornings"
    item f2 article focus "One thing at a time"
    item f3 meditation focus "Breath for focus"
    item f4 article focus "The attention budget"
    event a view s1 9
    event a view s2 8
    event a view s3 7
    event a view s4 6
    event b view s1 9
    event b view s2 8
    event b view s4 7
    event c view s2 9
    event c view s3 8
    event c view s4 7
    event d view f1 9
    event d view f2 8
    event d view f3 7
    event d view f4 6
    event e view f1 9
    event e view f3 8
    event e view f4 7
    event r view s1 2
    event r view s2 1
    slot feed editorial=0 serendipity=0
    slot again editorial=0 serendipity=0 repeats=true
"#;

#[test]
fn a_sleep_reader_gets_the_sleep_shelf_with_its_evidence() {
    check(
        &format!("{SHELVES}\ntrain\ndecide r feed 3\ndecide r again 3\ndecide nobody feed 2"),
        expect![[r#"
            dec-1 r personalized=true stage=new
              feed/calm_list: s4 collaborative 1.00 | similar_to [s2]: Because you read “The wind-down hour” and “Sleep without screens”
              feed/calm_list: s3 collaborative 0.62 | similar_to [s2]: Because you read “The wind-down hour” and “Sleep without screens”
              feed/calm_list: f1 predictive 0.05 | popular_with_similar: Popular with people whose interests match yours
            dec-2 r personalized=true stage=new
              again/calm_list: s4 collaborative 1.00 | similar_to [s2]: Because you read “The wind-down hour” and “Sleep without screens”
              again/calm_list: s2 collaborative 0.80 | similar_to [s1]: Because you read “Sleep without screens”
              again/calm_list: s1 collaborative 0.75 | similar_to [s2]: Because you read “The wind-down hour”
            dec-3 nobody personalized=false stage=new
              feed/calm_list: s2 popular 1.00 | trending: Popular this week
              feed/calm_list: s1 popular 0.74 | trending: Popular this week
        "#]],
    );
}

/// An editor's pick takes its share of the slot and says the editor's note.
#[test]
fn an_editors_pick_shows_its_note() {
    check(
        &format!(
            "{SHELVES}\nslot picks editorial=0.34 serendipity=0\npick p1 f2 \"Our favourite this month\"\ntrain\ndecide r picks 3"
        ),
        expect![[r#"
            dec-1 r personalized=true stage=new
              picks/calm_list: s4 collaborative 1.00 | similar_to [s2]: Because you read “The wind-down hour” and “Sleep without screens”
              picks/calm_list: f2 editorial 0.00 | editor_pick: Editor's pick: Our favourite this month
              picks/calm_list: s3 collaborative 0.62 | similar_to [s2]: Because you read “The wind-down hour” and “Sleep without screens”
        "#]],
    );
}

/// Declared goals shape the feed of someone without a history (the cold start).
#[test]
fn declared_goals_lead_the_cold_start() {
    check(
        &format!("{SHELVES}\ngoals newcomer focus\ntrain\ndecide newcomer feed 3"),
        expect![[r#"
            dec-1 newcomer personalized=true stage=new
              feed/calm_list: f4 content 0.79 | goal [focus]: Matches your goal: focus
              feed/calm_list: s2 popular 0.40 | trending: Popular this week
              feed/calm_list: f3 content 0.75 | goal [focus]: Matches your goal: focus
        "#]],
    );
}

/// Bought and dismissed items never come back, even on a slot that allows repeats.
#[test]
fn bought_and_dismissed_never_come_back() {
    check(
        &format!("{SHELVES}\nevent r purchase s3 1\nevent r not_interested s4 1\ntrain\ndecide r again 8"),
        expect![[r#"
            dec-1 r personalized=true stage=customer
              again/calm_list: s2 collaborative 1.00 | similar_to [s3]: Because you listened to “Body scan for sleep” and read “Sleep without screens”
              again/calm_list: s1 collaborative 0.82 | similar_to [s3]: Because you listened to “Body scan for sleep” and read “The wind-down hour”
              again/calm_list: f2 predictive 0.65 | popular_with_similar: Popular with people whose interests match yours
              again/calm_list: f1 predictive 0.00 | popular_with_similar: Popular with people whose interests match yours
              again/calm_list: f3 predictive 0.00 | popular_with_similar: Popular with people whose interests match yours
              again/calm_list: f4 predictive 0.00 | popular_with_similar: Popular with people whose interests match yours
        "#]],
    );
}
