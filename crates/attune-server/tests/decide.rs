//! The decision engine through the real server: the scenarios of issue 5 and the invariants every
//! answer keeps (no duplicates, filters, counts, reasons).

mod common;

use common::TestServer;
use serde_json::{Value, json};

/// A small catalog with clear themes: sleep, stress relief, movement, focus; two products.
fn catalog() -> Value {
    let mut items = Vec::new();
    for (theme, kind, n) in [
        ("sleep", "article", 8),
        ("stress_relief", "meditation", 8),
        ("movement", "article", 8),
        ("focus", "course", 6),
    ] {
        for i in 0..n {
            items.push(json!({"id": format!("{theme}-{i}"), "kind": kind, "title": format!("{theme} piece {i}"),
                "tags": [theme, format!("{theme}_topic_{}", i % 3)],
                "variants": {"foundational": {"headline": format!("About {theme} {i}")}, "emotional": {"headline": format!("Feel {theme} {i}")}}}));
        }
    }
    items.push(json!({"id": "prd-mask", "kind": "product", "title": "Silk eye mask", "tags": ["sleep", "product"], "attributes": {"price": 24}}));
    items.push(json!({"id": "prd-mat", "kind": "product", "title": "Cork yoga mat", "tags": ["movement", "product"], "attributes": {"price": 60}}));
    json!({ "items": items })
}

/// A crowd whose members each read within one theme, so co-consumption has a signal.
async fn seed(server: &TestServer) {
    server.ok("PUT", "/v1/items", Some(catalog())).await;
    let mut events = Vec::new();
    let themes = [("sleep", 8), ("stress_relief", 8), ("movement", 8), ("focus", 6)];
    for person in 0..40 {
        let (theme, n) = themes[person % themes.len()];
        for k in 0..5 {
            let item = format!("{theme}-{}", (person + k * 3) % n);
            events.push(
                json!({"id": format!("s-{person}-{k}"), "type": "view", "user": format!("crowd-{person}"), "item": item,
                "ts": format!("2026-11-2{}T10:00:00Z", k + 1)}),
            );
        }
    }
    for chunk in events.chunks(500) {
        let reply = server.ok("POST", "/v1/events", Some(json!({ "events": chunk }))).await;
        assert_eq!(reply["rejected"], json!([]), "{reply}");
    }
    let job = server.ok("POST", "/v1/models/train?wait=true", None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

async fn decide(server: &TestServer, body: Value) -> Value {
    server.ok("POST", "/v1/decide", Some(body)).await
}

fn items(decision: &Value, slot: usize) -> Vec<Value> {
    decision["placements"][slot]["items"].as_array().cloned().unwrap_or_default()
}

fn theme_share(decision: &Value, theme: &str) -> f64 {
    let items = items(decision, 0);
    items
        .iter()
        .filter(|i| i["id"].as_str().unwrap().starts_with(theme) || i["id"] == "prd-mask" && theme == "sleep")
        .count() as f64
        / items.len().max(1) as f64
}

#[tokio::test]
async fn a_sleep_reader_gets_sleep_content() {
    let server = TestServer::start(None).await;
    seed(&server).await;
    let events: Vec<Value> = (0..6)
        .map(|k| {
            json!({"id": format!("r-{k}"), "type": "dwell", "user": "reader", "item": format!("sleep-{k}"),
            "properties": {"dwell_ms": 120000, "scroll_depth": 0.9}})
        })
        .collect();
    server.ok("POST", "/v1/events", Some(json!({ "events": events }))).await;
    server.ok("PUT", "/v1/slots/home_feed", Some(json!({"editorial_share": 0.0, "serendipity_share": 0.0}))).await;
    let decision =
        decide(&server, json!({"user": "reader", "placements": [{"slot": "home_feed", "count": 3}], "explain": true}))
            .await;
    assert_eq!(decision["personalized"], true);
    let list = items(&decision, 0);
    let ids: Vec<&str> = list.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert!(theme_share(&decision, "sleep") >= 2.0 / 3.0, "mostly sleep content: {ids:?}");
    let reasons = decision.to_string();
    assert!(reasons.contains("Because you read") || reasons.contains("Because you often explore sleep"), "{reasons}");
    // Already read items are not offered again.
    assert!(
        ids.iter().all(|id| !["sleep-0", "sleep-1", "sleep-2", "sleep-3", "sleep-4", "sleep-5"].contains(id)),
        "{ids:?}"
    );
}

#[tokio::test]
async fn a_new_visitor_with_a_goal_gets_that_goal_first() {
    let server = TestServer::start(None).await;
    seed(&server).await;
    server.ok("PUT", "/v1/users/a-new/preferences", Some(json!({"goals": ["stress_relief"]}))).await;
    let decision = decide(
        &server,
        json!({"anonymous_id": "a-new", "placements": [{"slot": "home_feed", "count": 5}], "explain": true}),
    )
    .await;
    let first = &items(&decision, 0)[0];
    assert!(first["id"].as_str().unwrap().starts_with("stress_relief"), "{decision}");
    assert_eq!(first["reasons"][0]["kind"], "goal");
    assert_eq!(first["reasons"][0]["text"], "Matches your goal: stress relief");
    assert_eq!(decision["journey_stage"], "new");
    // Without a goal, a new visitor gets the non-personalized default.
    let default = decide(
        &server,
        json!({"anonymous_id": "a-other", "placements": [{"slot": "home_feed", "count": 5}], "explain": true}),
    )
    .await;
    assert_eq!(default["personalized"], false);
    assert!(
        items(&default, 0)
            .iter()
            .all(|i| ["popular", "explore", "contextual", "editorial"].contains(&i["source"].as_str().unwrap()))
    );
}

#[tokio::test]
async fn dismissed_bought_unavailable_and_flagged_items_never_come_back() {
    let server = TestServer::start(None).await;
    seed(&server).await;
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [
        {"id": "d1", "type": "view", "user": "picky", "item": "sleep-0"},
        {"id": "d2", "type": "not_interested", "user": "picky", "item": "sleep-1"},
        {"id": "d3", "type": "purchase", "user": "picky", "item": "prd-mask", "properties": {"value": 24}}]})),
        )
        .await;
    server.ok("DELETE", "/v1/items/sleep-2", None).await;
    server.ok("POST", "/v1/review/flags", Some(json!({"item": "sleep-3", "note": "off-brand"}))).await;
    for _ in 0..20 {
        let decision = decide(
            &server,
            json!({"user": "picky", "placements": [{"slot": "a", "count": 30}, {"slot": "b", "count": 10}]}),
        )
        .await;
        let text = decision.to_string();
        for banned in ["\"sleep-1\"", "\"prd-mask\"", "\"sleep-2\"", "\"sleep-3\""] {
            assert!(!text.contains(banned), "{banned} came back: {text}");
        }
    }
    server.ok("DELETE", "/v1/review/flags/sleep-3", None).await;
    let decision = decide(&server, json!({"placements": [{"slot": "a", "count": 40}]})).await;
    assert!(decision.to_string().contains("\"sleep-3\""), "a cleared flag releases the item");
}

#[tokio::test]
async fn editorial_share_holds_within_one_item() {
    let server = TestServer::start(None).await;
    seed(&server).await;
    for (i, item) in ["focus-0", "focus-1", "movement-5", "sleep-7", "stress_relief-6"].iter().enumerate() {
        server
            .ok(
                "PUT",
                &format!("/v1/editorial/picks/p{i}"),
                Some(json!({"item": item, "audience": {}, "note": "winter"})),
            )
            .await;
    }
    server
        .ok("PUT", "/v1/editorial/picks/sleepers", Some(json!({"item": "sleep-6", "audience": {"goals": ["sleep"]}})))
        .await;
    server.ok("PUT", "/v1/slots/home_feed", Some(json!({"editorial_share": 0.3, "serendipity_share": 0.1}))).await;
    for (who, count) in [("crowd-1", 10), ("crowd-2", 7), ("nobody", 4), ("crowd-3", 20)] {
        let decision = decide(
            &server,
            json!({"user": who, "placements": [{"slot": "home_feed", "count": count}], "explain": true}),
        )
        .await;
        let list = items(&decision, 0);
        let editorial = list.iter().filter(|i| i["source"] == "editorial").count() as f64;
        let expected = (count as f64 * 0.3).round().min(5.0);
        assert!((editorial - expected).abs() <= 1.0, "{who}: {editorial} editorial of {count}, expected {expected}");
        for item in list.iter().filter(|i| i["source"] == "editorial") {
            assert_eq!(item["reasons"][0]["kind"], "editor_pick");
        }
        assert!(!list.iter().any(|i| i["id"] == "sleep-6"), "the sleep pick's audience is people with the sleep goal");
    }
}

#[tokio::test]
async fn invariants_hold_for_every_answer() {
    let server = TestServer::start(None).await;
    seed(&server).await;
    server.ok("PUT", "/v1/users/crowd-5/preferences", Some(json!({"goals": ["focus"], "less_of": ["movement"]}))).await;
    server.ok("PUT", "/v1/users/crowd-6/consent", Some(json!({"personalization": false}))).await;
    server.ok("PUT", "/v1/users/crowd-7/preferences", Some(json!({"personalization": "off"}))).await;
    let kinds = [
        "similar_to",
        "goal",
        "affinity",
        "context",
        "popular_with_similar",
        "editor_pick",
        "explore",
        "trending",
        "default",
    ];
    let sources = ["collaborative", "predictive", "contextual", "content", "editorial", "explore", "popular"];
    for who in ["crowd-1", "crowd-5", "crowd-6", "crowd-7", "never-seen"] {
        let decision = decide(&server, json!({"user": who, "context": {"timezone": "Europe/Berlin", "device": "mobile"},
            "placements": [{"slot": "home_feed", "count": 12}, {"slot": "hero", "count": 1}, {"slot": "side", "count": 5}], "explain": true})).await;
        let mut seen = std::collections::HashSet::new();
        for (p, expected) in [(0, 12), (1, 1), (2, 5)] {
            let list = items(&decision, p);
            assert_eq!(list.len(), expected, "{who}: placement {p} is full");
            for item in list {
                let id = item["id"].as_str().unwrap().to_owned();
                assert!(seen.insert(id.clone()), "{who}: {id} twice");
                assert!(sources.contains(&item["source"].as_str().unwrap()));
                let reasons = item["reasons"].as_array().unwrap();
                assert!(!reasons.is_empty(), "{who}: {id} has a reason");
                assert!(
                    reasons.iter().all(
                        |r| kinds.contains(&r["kind"].as_str().unwrap()) && !r["text"].as_str().unwrap().is_empty()
                    )
                );
                if who == "crowd-5" {
                    assert!(!id.starts_with("movement") && id != "prd-mat", "less_of movement: {id}");
                }
            }
        }
        let personalized = decision["personalized"].as_bool().unwrap();
        match who {
            "crowd-6" | "crowd-7" | "never-seen" => assert!(!personalized, "{who} is not personalized"),
            _ => assert!(personalized, "{who} is personalized"),
        }
        assert!(decision["decision_id"].as_str().unwrap().starts_with("dec-"));
    }
    // Counts beyond the contract are refused, never clamped.
    for body in [
        json!({"placements": [{"slot": "a", "count": 0}]}),
        json!({"placements": [{"slot": "a", "count": 101}]}),
        json!({"placements": (0..11).map(|i| json!({"slot": format!("s{i}"), "count": 1})).collect::<Vec<_>>()}),
        json!({"placements": []}),
    ] {
        let reply = server.call("POST", "/v1/decide", Some(body)).await;
        assert_eq!((reply.status, reply.json["error"]["code"].as_str()), (400, Some("invalid_count")));
    }
    let both = server
        .call(
            "POST",
            "/v1/decide",
            Some(json!({"user": "a", "anonymous_id": "b", "placements": [{"slot": "a", "count": 1}]})),
        )
        .await;
    assert_eq!(both.status, 400);
}

#[tokio::test]
async fn decisions_are_reviewed_attributed_and_similar_items_work() {
    let server = TestServer::start(None).await;
    seed(&server).await;
    let decision =
        decide(&server, json!({"user": "crowd-1", "placements": [{"slot": "home_feed", "count": 4}], "explain": true}))
            .await;
    let id = decision["decision_id"].as_str().unwrap();
    let shown = items(&decision, 0)[0]["id"].as_str().unwrap().to_owned();
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [
        {"id": "click-1", "type": "click", "user": "crowd-1", "item": shown, "decision_id": id}]})),
        )
        .await;
    let review = server.ok("GET", "/v1/review/decisions?slot=home_feed&limit=10", None).await;
    let logged = &review["decisions"][0];
    assert_eq!(logged["decision_id"], id);
    // Editors see a keyed pseudonym, never the id.
    assert_eq!(logged["user"], server.engine.pseudonym("crowd-1").as_str());
    assert!(logged["user"].as_str().unwrap().starts_with("p_"));
    assert!(!logged["placements"][0]["items"][0]["reasons"].as_array().unwrap().is_empty());

    let similar = server.ok("GET", "/v1/items/sleep-0/similar?count=3", None).await;
    let similar = similar["items"].as_array().unwrap();
    assert!(!similar.is_empty() && similar.len() <= 3);
    assert!(similar.iter().all(|i| i["id"] != "sleep-0"));
    assert!(similar[0]["id"].as_str().unwrap().starts_with("sleep"), "{similar:?}");
    assert_eq!(server.call("GET", "/v1/items/nothing/similar", None).await.status, 404);
    assert_eq!(server.call("GET", "/v1/items/sleep-0/similar?count=0", None).await.status, 400);

    let models = server.ok("GET", "/v1/models", None).await;
    let names: Vec<&str> = models["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    for name in ["popularity", "trending", "served", "content"] {
        assert!(names.contains(&name), "{names:?}");
    }
    assert!(models["models"][0]["trained_at"].is_string());
    let served = models["models"].as_array().unwrap().iter().find(|m| m["name"] == "served").unwrap();
    let ndcg = served["metrics"]["ndcg"].as_f64().expect("validation metrics at training");
    assert!((0.0..=1.0).contains(&ndcg));
    let parts = served["params"]["parts"].as_array().expect("the chosen parts");
    assert!(parts.iter().any(|p| p["model"] == "item_knn"), "{parts:?}");
    let levels = served["params"]["levels"].as_array().expect("weights per engagement level");
    assert!(levels.iter().all(|l| l["weights"].as_array().unwrap().len() == parts.len()));
}

#[tokio::test]
async fn rules_shape_decisions_and_fall_due() {
    let server = TestServer::start(None).await;
    seed(&server).await;
    let rule = server.ok("PUT", "/v1/rules/no-focus-for-new", Some(json!({"when": {"journey_stage": "new"},
        "then": {"exclude_tags": ["focus"], "variant": "grid"}, "owner": "editor@calm.example", "review_by": "2026-01-01"}))).await;
    assert_eq!(rule["due"], true, "the review date has passed (the test clock is 2026-11-28)");
    server
        .ok("PUT", "/v1/rules/later", Some(json!({"when": {}, "then": {}, "owner": "x", "review_by": "2027-03-01"})))
        .await;
    let due = server.ok("GET", "/v1/rules?due=true", None).await;
    assert_eq!(due["rules"].as_array().unwrap().len(), 1);
    let decision =
        decide(&server, json!({"anonymous_id": "fresh", "placements": [{"slot": "home_feed", "count": 20}]})).await;
    assert_eq!(decision["placements"][0]["variant"], "grid");
    assert!(!decision.to_string().contains("\"focus-"), "excluded by the rule");
}
