//! `GET /v1/slots/{slot}/variants` through the real server: each presentation variant's
//! exposures, clicks and estimated rate, overall and by context; its errors; the console's table.

mod common;

use common::TestServer;
use serde_json::{Value, json};

const ADMIN: &str = "variants-admin-key-0123456789abcdef";

async fn seed(server: &TestServer) {
    let items: Vec<Value> = (0..4)
        .map(|i| json!({"id": format!("i-{i}"), "kind": "article", "title": format!("Item {i}"), "tags": ["calm"]}))
        .collect();
    server.ok("PUT", "/v1/items", Some(json!({ "items": items }))).await;
    server.ok("PUT", "/v1/slots/hero", Some(json!({"variants": ["calm_list", "grid"]}))).await;
}

fn variant<'a>(out: &'a Value, name: &str) -> &'a Value {
    out["variants"].as_array().expect("variants").iter().find(|v| v["variant"] == name).expect(name)
}

#[tokio::test]
async fn variants_report_exposures_clicks_and_rates_by_context() {
    let server = TestServer::start(Some(ADMIN)).await;
    seed(&server).await;

    // Nothing shown yet: the slot's variants in order, no exposures, the prior's estimate.
    let empty = server.ok("GET", "/v1/slots/hero/variants", None).await;
    assert_eq!(empty["slot"], "hero");
    assert_eq!(empty["policy"], "linucb");
    let names: Vec<&str> =
        empty["variants"].as_array().unwrap().iter().map(|v| v["variant"].as_str().unwrap()).collect();
    assert_eq!(names, ["calm_list", "grid"]);
    let calm = variant(&empty, "calm_list");
    assert_eq!((calm["exposures"].as_u64(), calm["clicks"].as_u64()), (Some(0), Some(0)));
    assert_eq!((calm["rate"].clone(), calm["estimated_rate"].as_f64()), (Value::Null, Some(0.5)));
    assert_eq!(calm["interval"], json!([0.0, 1.0]));
    assert_eq!(calm["by_context"], json!([]));
    assert_eq!(calm["configured"], true);

    // One decision on a phone at 07:30 local time, and a click on its item.
    let request = json!({"anonymous_id": "anon-1", "context": {"device": "mobile", "local_time": "2026-11-28T07:30:00+01:00"},
        "placements": [{"slot": "hero", "count": 1}]});
    let decision = server.ok("POST", "/v1/decide", Some(request)).await;
    let shown = decision["placements"][0]["variant"].as_str().expect("a variant").to_owned();
    let item = decision["placements"][0]["items"][0]["id"].as_str().expect("an item").to_owned();
    let click = json!({"events": [{"id": "c-1", "type": "click", "anonymous_id": "anon-1", "item": item,
        "decision_id": decision["decision_id"]}]});
    assert_eq!(server.ok("POST", "/v1/events", Some(click)).await["accepted"], 1);

    let out = server.ok("GET", "/v1/slots/hero/variants", None).await;
    let v = variant(&out, &shown);
    assert_eq!((v["exposures"].as_u64(), v["clicks"].as_u64(), v["rate"].as_f64()), (Some(1), Some(1), Some(1.0)));
    assert!((v["estimated_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9, "{v}");
    let interval = v["interval"].as_array().unwrap();
    assert!(interval[0].as_f64().unwrap() > 0.0 && interval[1].as_f64().unwrap() == 1.0, "{v}");
    let cell = |dimension: &str| {
        v["by_context"].as_array().unwrap().iter().find(|c| c["dimension"] == dimension).map(|c| {
            (c["value"].as_str().unwrap().to_owned(), c["exposures"].as_u64().unwrap(), c["clicks"].as_u64().unwrap())
        })
    };
    assert_eq!(cell("device"), Some(("mobile".to_owned(), 1, 1)));
    assert_eq!(cell("hour_band"), Some(("morning".to_owned(), 1, 1)));
    assert_eq!(cell("journey_stage"), Some(("new".to_owned(), 1, 1)));
    assert_eq!(cell("engagement"), Some(("low".to_owned(), 1, 1)));
    assert_eq!(v["forced"]["exposures"], 0);
    let other = variant(&out, if shown == "grid" { "calm_list" } else { "grid" });
    assert_eq!(other["exposures"], 0);

    // A variant the slot no longer offers stays listed, marked.
    server.ok("PUT", "/v1/slots/hero", Some(json!({"variants": ["cards", "grid"]}))).await;
    let out = server.ok("GET", "/v1/slots/hero/variants", None).await;
    let names: Vec<(&str, bool)> = out["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["variant"].as_str().unwrap(), v["configured"].as_bool().unwrap()))
        .collect();
    assert!(names.starts_with(&[("cards", true), ("grid", true)]), "{names:?}");
    if shown == "calm_list" {
        assert_eq!(names[2], ("calm_list", false));
    }
}

#[tokio::test]
async fn unknown_slots_answer_with_the_defaults_and_bad_requests_are_refused() {
    let mut server = TestServer::start(Some(ADMIN)).await;
    // Slots need no declaration: a slot never configured nor shown has the default variants.
    let out = server.ok("GET", "/v1/slots/never-seen/variants", None).await;
    let names: Vec<&str> = out["variants"].as_array().unwrap().iter().map(|v| v["variant"].as_str().unwrap()).collect();
    assert_eq!(names, ["calm_list", "grid"]);
    assert!(out["variants"].as_array().unwrap().iter().all(|v| v["exposures"] == 0));

    let too_long = "s".repeat(129);
    let reply = server.call("GET", &format!("/v1/slots/{too_long}/variants"), None).await;
    assert_eq!((reply.status, reply.json["error"]["code"].as_str()), (400, Some("invalid_id")), "{}", reply.json);
    let reply = server.call("GET", "/v1/slots/hero/variants?extra=1", None).await;
    assert!(reply.status == 200 || reply.status == 400, "a query is ignored or refused, never a 5xx");

    // Editors' scope: `catalog:write`.
    let reader = server.ok("POST", "/v1/keys", Some(json!({"name": "reader", "scopes": ["decide"]}))).await;
    server.with_key(reader["key"].as_str());
    let reply = server.call("GET", "/v1/slots/hero/variants", None).await;
    assert_eq!((reply.status, reply.json["error"]["code"].as_str()), (403, Some("forbidden")), "{}", reply.json);
    server.with_key(None);
    assert_eq!(server.call("GET", "/v1/slots/hero/variants", None).await.status, 401);
}

#[tokio::test]
async fn the_console_shows_the_variants_table() {
    let server = TestServer::start(Some(ADMIN)).await;
    seed(&server).await;
    let request = json!({"anonymous_id": "anon-1", "context": {"device": "tablet"}, "placements": [{"slot": "hero", "count": 1}]});
    server.ok("POST", "/v1/decide", Some(request)).await;
    let page = common::console_page(&server.base, ADMIN, "/console/editorial").await;
    assert!(page.contains("Presentation variants"), "{page}");
    assert!(page.contains("tablet: 0/1"), "the exposure by device: {page}");
}
