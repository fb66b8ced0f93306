//! Bad input, table-driven, against the real server: every case must come back as our JSON error
//! shape with the documented status and stable code — never a 5xx, never a panic.

mod common;

use common::{Case, TestServer, field, raw};
use serde_json::{Value, json};

const ADMIN: &str = "test-admin-key-0123456789";

/// A case with a JSON body; `Value::Null` means no body and no content type (GET, DELETE).
fn case(name: &'static str, method: &'static str, path: &str, body: Value, status: u16, code: &'static str) -> Case {
    if body.is_null() {
        return Case {
            name,
            method,
            path: path.to_owned(),
            content_type: None,
            body: Vec::new(),
            status,
            code,
            field: None,
        };
    }
    Case {
        name,
        method,
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: serde_json::to_vec(&body).unwrap(),
        status,
        code,
        field: None,
    }
}

fn request_cases() -> Vec<Case> {
    let long_id = "x".repeat(129);
    let big =
        format!(r#"{{"events": [{{"id": "a", "type": "view", "user": "u", "item": "{}"}}]}}"#, "y".repeat(1 << 20));
    let too_many: Vec<Value> =
        (0..1001).map(|i| json!({"id": format!("m{i}"), "type": "view", "user": "u", "item": "i"})).collect();
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    vec![
        raw(
            "truncated json",
            "POST",
            "/v1/events",
            Some("application/json"),
            br#"{"events": ["#,
            400,
            "malformed_json",
        ),
        raw(
            "trailing garbage",
            "POST",
            "/v1/events",
            Some("application/json"),
            br#"{"events": []} {}"#,
            400,
            "malformed_json",
        ),
        raw("empty body", "POST", "/v1/events", Some("application/json"), b"", 400, "malformed_json"),
        raw(
            "not utf-8",
            "POST",
            "/v1/events",
            Some("application/json"),
            b"{\"events\": [\"\xff\xfe\"]}",
            400,
            "malformed_json",
        ),
        raw("deep nesting", "POST", "/v1/events", Some("application/json"), deep.as_bytes(), 400, "nesting_too_deep"),
        raw(
            "text/plain",
            "POST",
            "/v1/events",
            Some("text/plain"),
            br#"{"events": []}"#,
            415,
            "unsupported_media_type",
        ),
        raw(
            "form encoded",
            "POST",
            "/v1/events",
            Some("application/x-www-form-urlencoded"),
            b"events=1",
            415,
            "unsupported_media_type",
        ),
        raw("no content type", "POST", "/v1/events", None, br#"{"events": []}"#, 415, "unsupported_media_type"),
        raw("over 1 MiB", "POST", "/v1/events", Some("application/json"), big.as_bytes(), 413, "payload_too_large"),
        case("1001 events", "POST", "/v1/events", json!({"events": too_many}), 413, "too_many_events"),
        case("array body", "POST", "/v1/events", json!([]), 400, "invalid_type"),
        field(case("no events field", "POST", "/v1/events", json!({}), 400, "missing_field"), "events"),
        field(case("events not an array", "POST", "/v1/events", json!({"events": "x"}), 400, "invalid_type"), "events"),
        field(
            case(
                "unknown top-level field",
                "POST",
                "/v1/events",
                json!({"events": [], "batch": 1}),
                400,
                "unknown_field",
            ),
            "batch",
        ),
        field(
            case("item id too long", "PUT", "/v1/items", json!({"items": [{"id": long_id}]}), 400, "invalid_id"),
            "items[0].id",
        ),
        field(
            case("item without id", "PUT", "/v1/items", json!({"items": [{"title": "t"}]}), 400, "missing_field"),
            "items[0].id",
        ),
        field(
            case("item empty id", "PUT", "/v1/items", json!({"items": [{"id": ""}]}), 400, "invalid_id"),
            "items[0].id",
        ),
        case(
            "item bad variant",
            "PUT",
            "/v1/items",
            json!({"items": [{"id": "a", "variants": {"loud": {}}}]}),
            400,
            "invalid_value",
        ),
        case(
            "item variant not object",
            "PUT",
            "/v1/items",
            json!({"items": [{"id": "a", "variants": {"emotional": "hi"}}]}),
            400,
            "invalid_type",
        ),
        field(
            case(
                "item bad published_at",
                "PUT",
                "/v1/items",
                json!({"items": [{"id": "a", "published_at": "last week"}]}),
                400,
                "invalid_timestamp",
            ),
            "items[0].published_at",
        ),
        field(
            case(
                "item tags not array",
                "PUT",
                "/v1/items",
                json!({"items": [{"id": "a", "tags": "sleep"}]}),
                400,
                "invalid_type",
            ),
            "items[0].tags",
        ),
        field(
            case(
                "item unknown field",
                "PUT",
                "/v1/items",
                json!({"items": [{"id": "a", "colour": "red"}]}),
                400,
                "unknown_field",
            ),
            "items[0].colour",
        ),
        case("item empty tag", "PUT", "/v1/items", json!({"items": [{"id": "a", "tags": [""]}]}), 400, "invalid_value"),
        case("unknown item", "GET", "/v1/items/nothing-here", Value::Null, 404, "not_found"),
        case("item path id too long", "GET", &format!("/v1/items/{long_id}"), Value::Null, 400, "invalid_id"),
        case("delete unknown item", "DELETE", "/v1/items/nothing-here", Value::Null, 404, "not_found"),
        case("redeclare built-in", "PUT", "/v1/schemas/view", json!({"purpose": "analytics"}), 400, "builtin_type"),
        case("bad type name", "PUT", "/v1/schemas/Bad-Name", json!({"purpose": "analytics"}), 400, "invalid_schema"),
        field(
            case("bad purpose", "PUT", "/v1/schemas/breath", json!({"purpose": "marketing"}), 400, "invalid_schema"),
            "purpose",
        ),
        case(
            "bad property type",
            "PUT",
            "/v1/schemas/breath",
            json!({"purpose": "analytics", "properties": {"at": "date"}}),
            400,
            "invalid_schema",
        ),
        field(
            case(
                "retention zero",
                "PUT",
                "/v1/schemas/breath",
                json!({"purpose": "analytics", "retention_days": 0}),
                400,
                "invalid_schema",
            ),
            "retention_days",
        ),
        case(
            "retention negative",
            "PUT",
            "/v1/schemas/breath",
            json!({"purpose": "analytics", "retention_days": -5}),
            400,
            "invalid_type",
        ),
        case("unknown schema", "GET", "/v1/schemas/nothing", Value::Null, 404, "not_found"),
        field(
            case(
                "consent not boolean",
                "PUT",
                "/v1/users/u-1/consent",
                json!({"personalization": "yes"}),
                400,
                "invalid_type",
            ),
            "personalization",
        ),
        field(
            case(
                "consent unknown purpose",
                "PUT",
                "/v1/users/u-1/consent",
                json!({"marketing": true}),
                400,
                "unknown_field",
            ),
            "marketing",
        ),
        field(
            case(
                "personalization maybe",
                "PUT",
                "/v1/users/u-1/preferences",
                json!({"personalization": "maybe"}),
                400,
                "invalid_value",
            ),
            "personalization",
        ),
        field(
            case(
                "quiet hours 25:00",
                "PUT",
                "/v1/users/u-1/preferences",
                json!({"quiet_hours": {"start": "25:00", "end": "08:00"}}),
                400,
                "invalid_value",
            ),
            "quiet_hours",
        ),
        field(
            case(
                "quiet hours missing end",
                "PUT",
                "/v1/users/u-1/preferences",
                json!({"quiet_hours": {"start": "21:00"}}),
                400,
                "missing_field",
            ),
            "quiet_hours.end",
        ),
        field(
            case(
                "bad timezone",
                "PUT",
                "/v1/users/u-1/preferences",
                json!({"timezone": "Moon/Base"}),
                400,
                "invalid_value",
            ),
            "timezone",
        ),
        case(
            "too many goals",
            "PUT",
            "/v1/users/u-1/preferences",
            json!({"goals": (0..21).map(|i| format!("g{i}")).collect::<Vec<_>>()}),
            400,
            "invalid_value",
        ),
        case("unknown person", "GET", "/v1/users/nobody-at-all", Value::Null, 404, "not_found"),
        case("user id too long", "GET", &format!("/v1/users/{long_id}"), Value::Null, 400, "invalid_id"),
        case(
            "identify self",
            "POST",
            "/v1/identify",
            json!({"anonymous_id": "a", "user": "a"}),
            400,
            "invalid_identify",
        ),
        field(
            case("identify without user", "POST", "/v1/identify", json!({"anonymous_id": "a"}), 400, "missing_field"),
            "user",
        ),
        case("identify empty id", "POST", "/v1/identify", json!({"anonymous_id": "", "user": "u"}), 400, "invalid_id"),
        field(
            case(
                "unknown scope",
                "POST",
                "/v1/keys",
                json!({"name": "k", "scopes": ["everything"]}),
                400,
                "invalid_scope",
            ),
            "scopes[0]",
        ),
        case("no scopes", "POST", "/v1/keys", json!({"name": "k", "scopes": []}), 400, "invalid_scope"),
        case("blank key name", "POST", "/v1/keys", json!({"name": " ", "scopes": ["decide"]}), 400, "invalid_value"),
        case("revoke unknown key", "DELETE", "/v1/keys/key_nothing", Value::Null, 404, "not_found"),
        field(
            case("audit since yesterday", "GET", "/v1/audit?since=yesterday", Value::Null, 400, "invalid_timestamp"),
            "since",
        ),
        case("audit limit zero", "GET", "/v1/audit?limit=0", Value::Null, 400, "invalid_count"),
        case("audit limit text", "GET", "/v1/audit?limit=abc", Value::Null, 400, "invalid_query"),
        case("audit unknown param", "GET", "/v1/audit?color=red", Value::Null, 400, "invalid_query"),
        case("unknown route", "GET", "/v1/nothing", Value::Null, 404, "not_found"),
        case("wrong method", "DELETE", "/v1/events", Value::Null, 405, "method_not_allowed"),
        case("undo unknown merge", "DELETE", "/v1/identify/a-none", Value::Null, 404, "not_found"),
        // Editorial settings: the engine's constructors hold the rules and limits.
        field(
            case(
                "slot share above one",
                "PUT",
                "/v1/slots/home",
                json!({"editorial_share": 1.5}),
                400,
                "invalid_value",
            ),
            "editorial_share",
        ),
        field(
            case(
                "slot shares add up past one",
                "PUT",
                "/v1/slots/home",
                json!({"editorial_share": 0.6, "serendipity_share": 0.5}),
                400,
                "invalid_value",
            ),
            "serendipity_share",
        ),
        field(
            case("slot max items", "PUT", "/v1/slots/home", json!({"max_items": 0}), 400, "invalid_count"),
            "max_items",
        ),
        field(
            case(
                "slot four variants",
                "PUT",
                "/v1/slots/home",
                json!({"variants": ["a", "b", "c", "d"]}),
                400,
                "invalid_value",
            ),
            "variants",
        ),
        field(
            case(
                "slot rule variant",
                "PUT",
                "/v1/slots/home",
                json!({"variants": ["a"], "rules": [{"variant": "z"}]}),
                400,
                "invalid_value",
            ),
            "rules[0].variant",
        ),
        field(case("pick empty item", "PUT", "/v1/editorial/picks/p1", json!({"item": ""}), 400, "invalid_id"), "item"),
        case("pick unknown item", "PUT", "/v1/editorial/picks/p1", json!({"item": "i-none"}), 404, "not_found"),
        field(
            case(
                "pick stage",
                "PUT",
                "/v1/editorial/picks/p1",
                json!({"item": "i-none", "audience": {"journey_stage": "asleep"}}),
                400,
                "invalid_value",
            ),
            "audience.journey_stage",
        ),
        field(
            case(
                "pick long note",
                "PUT",
                "/v1/editorial/picks/p1",
                json!({"item": "i-none", "note": "n".repeat(1001)}),
                400,
                "invalid_value",
            ),
            "note",
        ),
        field(
            case(
                "rule review date",
                "PUT",
                "/v1/rules/r1",
                json!({"then": {}, "owner": "ana", "review_by": "soon"}),
                400,
                "invalid_timestamp",
            ),
            "review_by",
        ),
        field(
            case(
                "rule blank owner",
                "PUT",
                "/v1/rules/r1",
                json!({"then": {}, "owner": " ", "review_by": "2027-03-01"}),
                400,
                "invalid_value",
            ),
            "owner",
        ),
        field(
            case(
                "flag long note",
                "POST",
                "/v1/review/flags",
                json!({"item": "i-none", "note": "n".repeat(1001)}),
                400,
                "invalid_value",
            ),
            "note",
        ),
    ]
}

#[tokio::test]
async fn bad_requests_get_stable_codes() {
    let server = TestServer::start(Some(ADMIN)).await;
    let cases = request_cases();
    assert!(cases.len() >= 40, "the table keeps at least 40 cases");
    let failures = common::failed_cases(&server, cases).await;
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn bad_events_are_rejected_one_by_one() {
    let server = TestServer::start(Some(ADMIN)).await;
    let long = "x".repeat(129);
    let events = json!([
        {"type": "view", "user": "u-1", "item": "i-1"},
        {"id": "", "type": "view", "user": "u-1", "item": "i-1"},
        {"id": long, "type": "view", "user": "u-1", "item": "i-1"},
        {"id": "e3", "type": "levitate", "user": "u-1"},
        {"id": "e4", "type": "view", "user": "u-1", "anonymous_id": "a-1", "item": "i-1"},
        {"id": "e5", "type": "view", "item": "i-1"},
        {"id": "e6", "type": "view", "user": "u-1", "item": "i-1", "ts": "28/11/2026"},
        {"id": "e7", "type": "view", "user": "u-1", "item": "i-1", "ts": "2031-01-01T00:00:00Z"},
        {"id": "e8", "type": "view", "user": "u-1", "item": "i-1", "mood": "calm"},
        {"id": 9, "type": "view", "user": "u-1", "item": "i-1"},
        {"id": "e10", "type": "survey", "user": "u-1", "properties": {"score": "great"}},
        {"id": "e11", "type": "view", "user": "u-1", "item": "i-1", "context": {"timezone": "Atlantis/Deep"}},
        5,
        {"id": "e13", "type": "view", "user": "u-1"},
        {"id": "e14", "type": "survey", "user": "u-1", "properties": {"score": 0}},
        {"id": "e15", "type": "view", "user": "u-1", "item": "i-1", "properties": "x"},
        {"id": "ok-1", "type": "view", "user": "u-1", "item": "i-1"},
    ]);
    let reply = server.ok("POST", "/v1/events", Some(json!({"events": events}))).await;
    assert_eq!(reply["accepted"], 1, "{reply}");
    let rejected = reply["rejected"].as_array().unwrap();
    let codes: Vec<(u64, &str)> =
        rejected.iter().map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap())).collect();
    assert_eq!(
        codes,
        vec![
            (0, "missing_field"),
            (1, "invalid_id"),
            (2, "invalid_id"),
            (3, "unknown_event_type"),
            (4, "invalid_subject"),
            (5, "invalid_subject"),
            (6, "invalid_timestamp"),
            (7, "invalid_timestamp"),
            (8, "unknown_field"),
            (9, "invalid_type"),
            (10, "invalid_property"),
            (11, "invalid_context"),
            (12, "invalid_type"),
            (13, "missing_field"),
            (14, "invalid_property"),
            (15, "invalid_type"),
        ]
    );
    assert_eq!(rejected[3]["field"], "events[3].type");
    assert_eq!(rejected[8]["field"], "events[8].mood");
    assert!(rejected.iter().all(|r| !r["message"].as_str().unwrap().is_empty()));
}

#[tokio::test]
async fn auth_is_enforced() {
    let mut server = TestServer::start(Some(ADMIN)).await;
    let events = json!({"events": []});
    server.with_key(None);
    let reply = server.call("POST", "/v1/events", Some(events.clone())).await;
    assert_eq!((reply.status, reply.json["error"]["code"].as_str()), (401, Some("unauthorized")));
    server.with_key(Some("not-a-key"));
    assert_eq!(server.call("POST", "/v1/events", Some(events.clone())).await.status, 401);
    let reply = server.raw("POST", "/v1/events", Some("application/json"), b"not even json".to_vec()).await;
    assert_eq!(reply.status, 401, "auth is checked before the body");

    server.with_key(Some(ADMIN));
    let created = server.ok("POST", "/v1/keys", Some(json!({"name": "site", "scopes": ["events:write"]}))).await;
    let secret = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    let listed = server.ok("GET", "/v1/keys", None).await;
    assert!(!listed.to_string().contains(&secret), "the secret is shown once");

    server.with_key(Some(&secret));
    assert_eq!(server.call("POST", "/v1/events", Some(events.clone())).await.status, 200);
    let reply = server.call("PUT", "/v1/items", Some(json!({"items": []}))).await;
    assert_eq!(reply.status, 403);
    assert!(reply.json["error"]["message"].as_str().unwrap().contains("catalog:write"), "{}", reply.json);
    assert_eq!(server.call("POST", "/v1/keys", Some(json!({"name": "x", "scopes": ["admin"]}))).await.status, 403);

    server.with_key(Some(ADMIN));
    server.ok("DELETE", &format!("/v1/keys/{key_id}"), None).await;
    server.with_key(Some(&secret));
    assert_eq!(server.call("POST", "/v1/events", Some(events)).await.status, 401, "revoked");

    server.with_key(Some(ADMIN));
    let audit = server.ok("GET", "/v1/audit", None).await;
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["keys.create", "keys.revoke"]);
}

#[tokio::test]
async fn rate_limited_keys_get_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(attune_engine::ManualClock::new(common::NOW_MS));
    let store = attune_store::EmbeddedStore::open(dir.path()).unwrap();
    let engine = std::sync::Arc::new(
        attune_engine::Engine::open(std::sync::Arc::new(store), clock, attune_engine::EngineConfig::default()).unwrap(),
    );
    let (_, secret) = engine.create_key("k", vec![attune_engine::Scope::UsersRead]).unwrap();
    let state = attune_server::AppState::new(engine, Some(ADMIN), 1.0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, attune_server::app(state)).await });
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..15 {
        let response = client.get(format!("http://{address}/v1/users/u-1")).bearer_auth(&secret).send().await.unwrap();
        if response.status() == 429 {
            retry_after = response.headers().get("retry-after").cloned();
        }
        statuses.push(response.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(retry_after.is_some());
}
