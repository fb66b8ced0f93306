//! What works, end to end through the real server: ingest, duplicates, minimization, profiles,
//! consent, preferences, identity merges, restarts, the OpenAPI document and metrics.

mod common;

use common::{NOW_MS, TestServer};
use serde_json::json;

fn catalog() -> serde_json::Value {
    json!({"items": [
        {"id": "art-sleep", "kind": "article", "title": "Sleep without screens", "tags": ["sleep", "evening"],
         "attributes": {"reading_minutes": 6}, "variants": {"foundational": {"headline": "Sleep basics"}}},
        {"id": "med-calm", "kind": "meditation", "title": "Ten calm minutes", "tags": ["stress_relief", "breathing"]},
        {"id": "prd-mask", "kind": "product", "title": "Silk eye mask", "tags": ["sleep"], "attributes": {"price": 24}},
    ]})
}

#[tokio::test]
async fn ingest_profile_and_duplicates() {
    let server = TestServer::start(None).await;
    assert_eq!(server.ok("PUT", "/v1/items", Some(catalog())).await["upserted"], 3);
    let item = server.ok("GET", "/v1/items/art-sleep", None).await;
    assert_eq!(item["title"], "Sleep without screens");
    assert_eq!(item["available"], true);

    let events = json!({"events": [
        {"id": "e1", "type": "view", "user": "u-42", "item": "art-sleep", "ts": "2026-11-28T07:30:00Z",
         "context": {"device": "mobile", "timezone": "Europe/Berlin", "geo": "DE", "weather": "rain"},
         "properties": {"dwell_ms": 53000, "scroll_depth": 0.8, "email": "x@example.com"}},
        {"id": "e2", "type": "dwell", "user": "u-42", "item": "art-sleep", "properties": {"dwell_ms": 120000}},
        {"id": "e3", "type": "click", "user": "u-42", "item": "prd-mask"},
    ]});
    let reply = server.ok("POST", "/v1/events", Some(events.clone())).await;
    assert_eq!(reply["accepted"], 3);
    assert_eq!(reply["duplicates"], 0);
    let dropped: Vec<&str> =
        reply["dropped_fields"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(dropped, ["context.geo", "context.weather", "properties.email"]);

    let again = server.ok("POST", "/v1/events", Some(events)).await;
    assert_eq!((again["accepted"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(3)));

    let user = server.ok("GET", "/v1/users/u-42", None).await;
    assert_eq!(user["personalization"], "on");
    assert_eq!(user["events"], 3);
    assert_eq!(user["affinities"][0]["tag"], "sleep");
    assert_eq!(user["affinities"][0]["weight"], 1.0);
    assert_eq!(user["recent"][0], "prd-mask");
    assert!(user["engagement"].as_f64().unwrap() > 0.0);
    assert_eq!(user["journey_stage"], "researching");

    // Minimized fields never reached disk.
    let mut found = Vec::new();
    server
        .engine
        .store()
        .scan_events(0, &mut |row| {
            found.push(String::from_utf8_lossy(&row.payload).to_string());
            true
        })
        .unwrap();
    assert!(found.iter().all(|p| !p.contains("x@example.com") && !p.contains("rain")));

    server.ok("DELETE", "/v1/items/prd-mask", None).await;
    assert_eq!(server.ok("GET", "/v1/items/prd-mask", None).await["available"], false);
}

#[tokio::test]
async fn consent_gates_the_profile() {
    let server = TestServer::start(None).await;
    server.ok("PUT", "/v1/items", Some(catalog())).await;
    // Consent comes first, before any event (the banner).
    let consent =
        server.ok("PUT", "/v1/users/u-7/consent", Some(json!({"personalization": false, "contextual": true}))).await;
    assert_eq!(
        consent,
        json!({"personalization": false, "contextual": true, "analytics": true, "email": false, "push": false})
    );
    let reply = server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [
        {"id": "c1", "type": "view", "user": "u-7", "item": "art-sleep", "context": {"weather": "rain"}}]})),
        )
        .await;
    assert_eq!(reply["dropped_fields"], json!([]), "contextual consent keeps the weather");
    let user = server.ok("GET", "/v1/users/u-7", None).await;
    assert_eq!(user["personalization"], "off");
    assert_eq!(user["affinities"], json!([]));
    assert_eq!(user["recent"], json!([]));

    // Granting personalization rebuilds the profile from what is stored.
    server.ok("PUT", "/v1/users/u-7/consent", Some(json!({"personalization": true}))).await;
    let user = server.ok("GET", "/v1/users/u-7", None).await;
    assert_eq!(user["recent"], json!(["art-sleep"]));

    // Neither analytics nor personalization: accepted, but only counted, never stored individually.
    server.ok("PUT", "/v1/users/u-8/consent", Some(json!({"personalization": false, "analytics": false}))).await;
    let before = server.engine.store().event_count().unwrap();
    let reply = server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [
        {"id": "c2", "type": "view", "user": "u-8", "item": "art-sleep"}]})),
        )
        .await;
    assert_eq!(reply["accepted"], 1);
    assert_eq!(server.engine.store().event_count().unwrap(), before);
}

#[tokio::test]
async fn preferences_round_trip() {
    let server = TestServer::start(None).await;
    let prefs = json!({"goals": ["stress_relief"], "less_of": ["fitness"], "personalization": "off",
        "quiet_hours": {"start": "21:00", "end": "08:00"}});
    let stored = server.ok("PUT", "/v1/users/u-9/preferences", Some(prefs)).await;
    assert_eq!(stored["quiet_hours"], json!({"start": "21:00", "end": "08:00"}));
    let user = server.ok("GET", "/v1/users/u-9", None).await;
    assert_eq!(user["preferences"]["goals"], json!(["stress_relief"]));
    assert_eq!(user["preferences"]["personalization"], "off");
    assert_eq!(user["personalization"], "off");
    assert_eq!(user["journey_stage"], "new");
}

#[tokio::test]
async fn identify_merges_history_and_can_be_undone() {
    let server = TestServer::start(None).await;
    server.ok("PUT", "/v1/items", Some(catalog())).await;
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [
        {"id": "a1", "type": "view", "anonymous_id": "a-9", "item": "med-calm"},
        {"id": "a2", "type": "view", "anonymous_id": "a-9", "item": "art-sleep"},
        {"id": "u1", "type": "view", "user": "u-42", "item": "prd-mask"}]})),
        )
        .await;
    let merged = server.ok("POST", "/v1/identify", Some(json!({"anonymous_id": "a-9", "user": "u-42"}))).await;
    assert_eq!(merged["merged_events"], 2);
    // The same identify again (a retry, a second login) moves nothing and says so.
    let again = server.ok("POST", "/v1/identify", Some(json!({"anonymous_id": "a-9", "user": "u-42"}))).await;
    assert_eq!(again["merged_events"], 0);
    let user = server.ok("GET", "/v1/users/u-42", None).await;
    assert_eq!(user["events"], 3);
    assert_eq!(user["aliases"], json!(["a-9"]));
    let mut recent: Vec<String> = serde_json::from_value(user["recent"].clone()).unwrap();
    recent.sort();
    assert_eq!(recent, ["art-sleep", "med-calm", "prd-mask"]);
    // Later events from the device land on the person.
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [
        {"id": "a3", "type": "click", "anonymous_id": "a-9", "item": "med-calm"}]})),
        )
        .await;
    assert_eq!(server.ok("GET", "/v1/users/u-42", None).await["events"], 4);
    // Same merge again is fine; merging the device into someone else is a conflict.
    server.ok("POST", "/v1/identify", Some(json!({"anonymous_id": "a-9", "user": "u-42"}))).await;
    let conflict = server.call("POST", "/v1/identify", Some(json!({"anonymous_id": "a-9", "user": "u-43"}))).await;
    assert_eq!(conflict.status, 409);
    // An admin undoes it.
    server.ok("DELETE", "/v1/identify/a-9", None).await;
    let user = server.ok("GET", "/v1/users/u-42", None).await;
    assert_eq!(user["recent"], json!(["prd-mask"]));
    let audit = server.ok("GET", "/v1/audit", None).await.to_string();
    assert!(audit.contains("identify.merge") && audit.contains("identify.unmerge"));
}

#[tokio::test]
async fn declared_types_follow_their_schema() {
    let server = TestServer::start(None).await;
    let schema = server.ok("PUT", "/v1/schemas/meditation_done", Some(json!({
        "purpose": "personalization", "properties": {"minutes": "number", "technique": "string"}, "retention_days": 30}))).await;
    assert_eq!(schema["retention_days"], 30);
    let reply = server.ok("POST", "/v1/events", Some(json!({"events": [
        {"id": "m1", "type": "meditation_done", "user": "u-1", "properties": {"minutes": 10, "technique": "box", "heart_rate": 61}},
        {"id": "m2", "type": "meditation_done", "user": "u-1", "properties": {"minutes": "ten"}}]}))).await;
    assert_eq!(reply["accepted"], 1);
    assert_eq!(reply["dropped_fields"], json!([{"index": 0, "field": "properties.heart_rate"}]));
    assert_eq!(reply["rejected"][0]["code"], "invalid_property");
    let all = server.ok("GET", "/v1/schemas", None).await;
    assert!(all["schemas"].as_array().unwrap().iter().any(|s| s["type"] == "meditation_done"));
    assert_eq!(server.engine.store().count_expired_events(NOW_MS + 31 * 86_400_000).unwrap(), 1);
}

#[tokio::test]
async fn state_survives_a_restart() {
    let server = TestServer::start(None).await;
    server.ok("PUT", "/v1/items", Some(catalog())).await;
    server.ok("PUT", "/v1/users/u-1/preferences", Some(json!({"goals": ["sleep"]}))).await;
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [
        {"id": "r1", "type": "view", "anonymous_id": "a-1", "item": "art-sleep"},
        {"id": "r2", "type": "purchase", "user": "u-1", "item": "prd-mask", "properties": {"value": 24}}]})),
        )
        .await;
    server.ok("POST", "/v1/identify", Some(json!({"anonymous_id": "a-1", "user": "u-1"}))).await;
    let before = server.ok("GET", "/v1/users/u-1", None).await;
    let server = server.restart().await;
    let after = server.ok("GET", "/v1/users/u-1", None).await;
    assert_eq!(before, after, "the profile folded at start equals the live one");
    assert_eq!(after["journey_stage"], "customer");
    assert_eq!(after["aliases"], json!(["a-1"]));
    assert_eq!(server.ok("GET", "/v1/items/art-sleep", None).await["title"], "Sleep without screens");
    let again = server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [{"id": "r1", "type": "view", "anonymous_id": "a-1", "item": "art-sleep"}]})),
        )
        .await;
    assert_eq!(again["duplicates"], 1, "ids are remembered across restarts");
}

#[tokio::test]
async fn openapi_metrics_and_health() {
    let server = TestServer::start(None).await;
    assert_eq!(server.ok("GET", "/healthz", None).await["status"], "ok");
    // Not ready until the models are: `attune serve` trains right at start.
    let starting = server.call("GET", "/readyz", None).await;
    assert_eq!((starting.status, starting.json["status"].as_str()), (503, Some("starting")), "{}", starting.json);
    assert_eq!(server.ok("POST", "/v1/models/train?wait=true", None).await["status"], "succeeded");
    assert_eq!(server.ok("GET", "/readyz", None).await["status"], "ready");
    let doc = server.ok("GET", "/v1/openapi.json", None).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/v1/events", "/v1/items", "/v1/users/{id}", "/v1/identify", "/v1/keys", "/v1/audit"] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    assert_eq!(doc["x-error-codes"]["too_many_events"]["status"], 413);
    // Query parameters are documented as such (generated clients put them in the query string),
    // path ids carry the id rule, and every protected operation documents the error envelope
    // (tests/openapi_document.rs checks the whole document).
    for parameter in doc["paths"]["/v1/audit"]["get"]["parameters"].as_array().unwrap() {
        assert_eq!(parameter["in"], "query", "{parameter}");
    }
    assert_eq!(doc["paths"]["/v1/items/{id}"]["get"]["parameters"][0]["schema"]["maxLength"], 128);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation.get("security").is_some() {
                assert_eq!(
                    operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} documents 401"
                );
            }
        }
    }
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [{"id": "x", "type": "search", "user": "u", "properties": {"query": "sleep"}}]})),
        )
        .await;
    let reply = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap();
    let text = reply.text().await.unwrap();
    assert!(text.contains("attune_http_requests_total"), "{text}");
    assert!(text.contains("attune_http_request_duration_seconds_bucket"));
    assert!(text.contains("attune_events_accepted_total"));
    assert!(text.contains("attune_store_disk_bytes"));
}
