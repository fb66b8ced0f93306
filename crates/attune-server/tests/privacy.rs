//! Privacy and governance (issue 6), end to end through the real server: forgetting an item,
//! export ⊇ everything ingested, erasure with a receipt and a full scan of the data directory,
//! erasure completed after a crash, consent withdrawal, retention with an injected clock, the
//! `/me` page, and a table of bad inputs for these routes.

mod common;

use std::sync::{Arc, Mutex};

use common::{Case, NOW_MS, TestServer, field, raw};
use serde_json::{Value, json};

const ADMIN: &str = "test-admin-key-0123456789";
const DAY_MS: i64 = 86_400_000;

// Distinctive ids, so that finding their bytes in a file cannot be a coincidence.
const PERSON: &str = "person-7f3a9c1e";
const ANON_1: &str = "anon-5b2d8e40";
const ANON_2: &str = "anon-9c4e1f77";
const BYSTANDER: &str = "bystander-3e8a61d2";

fn catalog() -> Value {
    json!({"items": [
        {"id": "art-sleep", "kind": "article", "title": "Sleep without screens", "tags": ["sleep", "evening"]},
        {"id": "med-calm", "kind": "meditation", "title": "Ten calm minutes", "tags": ["stress_relief", "breathing"]},
        {"id": "prd-mask", "kind": "product", "title": "Silk eye mask", "tags": ["sleep"], "attributes": {"price": 24}},
    ]})
}

/// A person with two merged devices, consent, preferences and events of every kind; a bystander
/// with their own events. Returns the ids of the events stored for the person.
async fn populate(server: &TestServer) -> Vec<String> {
    server.ok("PUT", "/v1/items", Some(catalog())).await;
    server
        .ok(
            "PUT",
            "/v1/schemas/meditation_done",
            Some(json!({"purpose": "personalization",
        "properties": {"minutes": "number"}, "retention_days": 30})),
        )
        .await;
    server
        .ok("PUT", &format!("/v1/users/{PERSON}/consent"), Some(json!({"personalization": true, "contextual": true})))
        .await;
    server
        .ok(
            "PUT",
            &format!("/v1/users/{PERSON}/preferences"),
            Some(json!({"goals": ["sleep"], "less_of": ["fitness"]})),
        )
        .await;
    let events = json!({"events": [
        {"id": "p-1", "type": "view", "user": PERSON, "item": "art-sleep", "ts": "2026-11-27T07:30:00Z",
         "context": {"device": "mobile", "geo": "DE", "weather": "rain"}, "properties": {"dwell_ms": 53000}},
        {"id": "p-2", "type": "purchase", "user": PERSON, "item": "prd-mask", "properties": {"value": 24, "currency": "EUR"}},
        {"id": "p-3", "type": "meditation_done", "user": PERSON, "properties": {"minutes": 10}},
        {"id": "p-4", "type": "search", "user": PERSON, "properties": {"query": "sleep"}},
        {"id": "a-1", "type": "view", "anonymous_id": ANON_1, "item": "med-calm"},
        {"id": "a-2", "type": "view", "anonymous_id": ANON_2, "item": "art-sleep"},
        {"id": "b-1", "type": "view", "user": BYSTANDER, "item": "med-calm"},
    ]});
    let reply = server.ok("POST", "/v1/events", Some(events)).await;
    assert_eq!(reply["accepted"], 7, "{reply}");
    server.ok("POST", "/v1/identify", Some(json!({"anonymous_id": ANON_1, "user": PERSON}))).await;
    server.ok("POST", "/v1/identify", Some(json!({"anonymous_id": ANON_2, "user": PERSON}))).await;
    // Records other components write, keyed by the documented `person\0…` convention.
    let store = server.engine.store();
    store
        .put(
            attune_store::Table::Decisions,
            &format!("{PERSON}\0dec-1"),
            br#"{"at_ms": 1795852800000, "items": ["art-sleep"]}"#,
        )
        .unwrap();
    store.put(attune_store::Table::Decisions, &format!("{ANON_1}\0dec-2"), br#"{"at_ms": 1795852800000}"#).unwrap();
    store
        .put(
            attune_store::Table::Notifications,
            &format!("{PERSON}\0plan-1"),
            br#"{"at_ms": 1795852800000, "channel": "email"}"#,
        )
        .unwrap();
    store.put(attune_store::Table::Decisions, &format!("{BYSTANDER}\0dec-3"), br#"{"at_ms": 1795852800000}"#).unwrap();
    ["p-1", "p-2", "p-3", "p-4", "a-1", "a-2"].map(String::from).to_vec()
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Files holding `id`, or its random suffix: the journal and tables compress with LZ4, which
/// may store a repeated prefix (`anon-`) as a back-reference, but the first occurrence of a
/// random suffix in a block is always stored literally.
fn traces_of(dir: &std::path::Path, id: &str) -> Vec<String> {
    let suffix = id.rsplit('-').next().unwrap();
    let mut files = files_holding(dir, id);
    files.extend(files_holding(dir, suffix));
    files.sort();
    files.dedup();
    files
}

fn audit_actions(audit: &Value) -> Vec<(String, String, String)> {
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key_id"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn forgetting_an_item_removes_its_traces() {
    let server = TestServer::start(Some(ADMIN)).await;
    populate(&server).await;
    let before = server.ok("GET", &format!("/v1/users/{PERSON}"), None).await;
    assert!(before["recent"].as_array().unwrap().contains(&json!("art-sleep")), "{before}");

    // Both the person's own view and the merged device's view of the item go.
    let reply = server.ok("DELETE", &format!("/v1/users/{PERSON}/history/art-sleep"), None).await;
    let purge_by = reply["purge_by"].as_str().expect("when the bytes are purged by").to_owned();
    assert_eq!(reply, json!({"forgotten": true, "item": "art-sleep", "events_deleted": 2, "purge_by": purge_by}));
    let after = server.ok("GET", &format!("/v1/users/{PERSON}"), None).await;
    assert!(!after["recent"].as_array().unwrap().contains(&json!("art-sleep")), "{after}");
    assert_eq!(after["events"].as_u64().unwrap(), before["events"].as_u64().unwrap() - 2);
    assert_eq!(server.engine.forgotten_items(PERSON), ["art-sleep"]);
    let due = server.engine.retrain_due_ms().unwrap().expect("a retraining is due");
    assert!(due <= NOW_MS + 15 * 60 * 1000);
    let mut stored = Vec::new();
    server
        .engine
        .store()
        .scan_events(0, &mut |row| {
            stored.push(row.id);
            true
        })
        .unwrap();
    assert!(!stored.contains(&"p-1".to_owned()) && !stored.contains(&"a-2".to_owned()), "{stored:?}");
    // Forgetting twice is fine; an unknown person is a 404.
    let again = server.ok("DELETE", &format!("/v1/users/{PERSON}/history/art-sleep"), None).await;
    assert_eq!(again["events_deleted"], 0);
    assert_eq!(server.call("DELETE", "/v1/users/nobody-here/history/art-sleep", None).await.status, 404);
    let audit = server.ok("GET", "/v1/audit", None).await;
    assert!(audit_actions(&audit).contains(&("admin".into(), "users.forget".into(), PERSON.into())));

    // Forgotten survives a restart, and the refolded profile equals the one rebuilt at start.
    let server = server.restart().await;
    assert_eq!(server.engine.forgotten_items(PERSON), ["art-sleep"]);
    let restarted = server.ok("GET", &format!("/v1/users/{PERSON}"), None).await;
    assert_eq!(restarted["recent"], after["recent"]);
    assert_eq!(restarted["events"], after["events"]);
}

#[tokio::test]
async fn export_holds_everything_ingested() {
    let server = TestServer::start(Some(ADMIN)).await;
    let ingested = populate(&server).await;
    let export = server.ok("GET", &format!("/v1/users/{ANON_1}/export"), None).await;
    assert_eq!(export["format"], "attune-export-v1");
    assert_eq!(export["user"]["id"], PERSON, "an alias exports its person");
    let mut ids: Vec<&str> = export["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected: Vec<&str> = ingested.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(ids, expected, "every stored event of the person and the merged devices, no one else's");
    let first = export["events"].as_array().unwrap().iter().find(|e| e["id"] == "p-1").unwrap();
    assert_eq!(first["type"], "view");
    assert_eq!(first["user"], PERSON);
    assert_eq!(first["item"], "art-sleep");
    assert_eq!(first["ts"], "2026-11-27T07:30:00Z");
    assert_eq!(first["context"], json!({"device": "mobile", "geo": "DE", "weather": "rain"}));
    assert_eq!(first["properties"], json!({"dwell_ms": 53000.0}));
    let device = export["events"].as_array().unwrap().iter().find(|e| e["id"] == "a-1").unwrap();
    assert_eq!(device["anonymous_id"], ANON_1);
    assert_eq!(export["stored_consent"]["contextual"], true);
    assert_eq!(export["stored_preferences"]["goals"], json!(["sleep"]));
    assert_eq!(export["aliases"], json!([ANON_1, ANON_2]));
    let mut merged: Vec<&str> =
        export["merges"].as_array().unwrap().iter().map(|m| m["anonymous_id"].as_str().unwrap()).collect();
    merged.sort();
    assert_eq!(merged, [ANON_1, ANON_2]);
    let decisions: Vec<&str> =
        export["decisions"].as_array().unwrap().iter().map(|d| d["key"].as_str().unwrap()).collect();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert!(!export["decisions"].to_string().contains(BYSTANDER));
    assert_eq!(export["notifications"][0]["value"]["channel"], "email");
    let actions: Vec<&str> =
        export["audit"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"consent.put") && actions.contains(&"preferences.put") && actions.contains(&"identify.merge"),
        "{actions:?}"
    );
    assert_eq!(export["user"]["affinities"][0]["tag"], "sleep");

    server.ok("DELETE", &format!("/v1/users/{PERSON}/history/med-calm"), None).await;
    let export = server.ok("GET", &format!("/v1/users/{PERSON}/export"), None).await;
    assert_eq!(export["forgotten"][0]["item"], "med-calm");
    let audit = server.ok("GET", "/v1/audit", None).await;
    assert!(audit_actions(&audit).contains(&("admin".into(), "users.export".into(), PERSON.into())));
    assert_eq!(server.call("GET", "/v1/users/nobody-here/export", None).await.status, 404);
}

#[tokio::test]
async fn erasure_leaves_no_trace_in_the_data_directory() {
    let server = TestServer::start(Some(ADMIN)).await;
    let erased: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let seen = Arc::clone(&erased);
    server.engine.register_erasure_hook(Box::new(move |ids| seen.lock().unwrap().push(ids.to_vec())));
    populate(&server).await;
    server.ok("DELETE", &format!("/v1/users/{PERSON}/history/med-calm"), None).await;
    server.ok("GET", &format!("/v1/users/{PERSON}/export"), None).await;
    for id in [PERSON, ANON_1, ANON_2, BYSTANDER] {
        assert!(!traces_of(server.dir.path(), id).is_empty(), "{id} is on disk before the erasure");
    }

    let reply = server.ok("DELETE", &format!("/v1/users/{ANON_2}"), None).await;
    assert_eq!(reply["erased"], true);
    let receipt = &reply["receipt"];
    let receipt_id = receipt["receipt_id"].as_str().unwrap().to_owned();
    assert!(receipt_id.starts_with("rcpt_"));
    // p-1..p-4 and a-1, a-2 minus the forgotten a-1; consent, preferences, two merges, one
    // forgotten item, two decisions, one plan.
    assert_eq!(
        (receipt["events"].as_u64(), receipt["aliases"].as_u64(), receipt["records"].as_u64()),
        (Some(5), Some(2), Some(8)),
        "{receipt}"
    );
    assert_eq!(receipt["completed_at_start"], false);
    // The deleted bytes leave the store's files within a minute (one purge for every erasure
    // before it); until then the person is already gone from every answer.
    let purge_by = attune_core::validate::parse_ts_ms(receipt["purge_by"].as_str().expect("purge_by")).unwrap();
    assert!(purge_by > NOW_MS && purge_by <= NOW_MS + 60 * 1000, "{receipt}");
    assert_eq!(server.engine.purge_due_ms().unwrap(), Some(purge_by));
    for id in [PERSON, ANON_1, ANON_2] {
        assert!(!reply.to_string().contains(id), "the receipt holds no id");
        assert_eq!(server.call("GET", &format!("/v1/users/{id}"), None).await.status, 404, "{id} is unknown");
    }
    assert_eq!(server.ok("GET", &format!("/v1/erasures/{receipt_id}"), None).await, *receipt);
    assert_eq!(server.call("GET", "/v1/erasures/rcpt_nothing", None).await.status, 404);
    assert_eq!(*erased.lock().unwrap(), [vec![ANON_1.to_owned(), ANON_2.to_owned(), PERSON.to_owned()]]);
    assert!(server.engine.retrain_due_ms().unwrap().is_some_and(|due| due <= NOW_MS + 15 * 60 * 1000));
    assert!(server.engine.forgotten_items(PERSON).is_empty());

    // The audit log keeps who did what, never to whom.
    let audit = server.ok("GET", "/v1/audit", None).await;
    let actions = audit_actions(&audit);
    assert!(actions.contains(&("admin".into(), "users.erase".into(), receipt_id.clone())), "{actions:?}");
    for id in [PERSON, ANON_1, ANON_2] {
        assert!(!audit.to_string().contains(id), "{audit}");
    }
    assert!(
        actions.iter().any(|(_, action, target)| action == "consent.put" && *target == format!("erased:{receipt_id}"))
    );

    // Once the purge ran (the scheduler's purge job, at `purge_by`), not a byte of the person or
    // their devices is left in any file of the data directory; the bystander's data is all there.
    assert!(!server.engine.purge_if_due(purge_by - 1).unwrap(), "not before it is due");
    assert!(server.engine.purge_if_due(purge_by).unwrap());
    assert_eq!(server.engine.purge_due_ms().unwrap(), None);
    for id in [PERSON, ANON_1, ANON_2] {
        assert_eq!(traces_of(server.dir.path(), id), Vec::<String>::new(), "{id} is gone from disk");
    }
    assert!(!traces_of(server.dir.path(), BYSTANDER).is_empty());
    assert_eq!(server.ok("GET", &format!("/v1/users/{BYSTANDER}"), None).await["events"], 1);

    // The id comes back as a new visitor.
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [{"id": "n-1", "type": "view", "user": PERSON, "item": "med-calm"}]})),
        )
        .await;
    let fresh = server.ok("GET", &format!("/v1/users/{PERSON}"), None).await;
    assert_eq!(
        (fresh["events"].as_u64(), fresh["aliases"].clone(), fresh["consent_given"].clone()),
        (Some(1), json!([]), json!(false))
    );
    assert_eq!(fresh["preferences"]["goals"], json!([]));
    assert_eq!(server.call("GET", &format!("/v1/users/{ANON_1}"), None).await.status, 404);

    // And after a restart too.
    let server = server.restart().await;
    assert_eq!(server.ok("GET", &format!("/v1/users/{PERSON}"), None).await["events"], 1);
    assert_eq!(server.call("GET", &format!("/v1/users/{ANON_2}"), None).await.status, 404);
    assert_eq!(server.ok("GET", &format!("/v1/erasures/{receipt_id}"), None).await["events"], 5);
}

#[tokio::test]
async fn an_erasure_interrupted_by_a_crash_completes_at_start() {
    for steps in [1, 3, 5] {
        let mut server = TestServer::start(Some(ADMIN)).await;
        populate(&server).await;
        let receipt_id = server.engine.erase_interrupted(PERSON, "admin", steps).expect("half an erasure");
        assert_eq!(server.call("GET", &format!("/v1/erasures/{receipt_id}"), None).await.status, 404, "not done yet");
        server = server.restart().await;
        let receipt = server.ok("GET", &format!("/v1/erasures/{receipt_id}"), None).await;
        assert_eq!(receipt["completed_at_start"], true, "steps {steps}");
        assert_eq!(
            (receipt["events"].as_u64(), receipt["aliases"].as_u64(), receipt["records"].as_u64()),
            (Some(6), Some(2), Some(7)),
            "steps {steps}: counts taken before the crash"
        );
        for id in [PERSON, ANON_1, ANON_2] {
            assert_eq!(server.call("GET", &format!("/v1/users/{id}"), None).await.status, 404, "steps {steps}: {id}");
            assert_eq!(traces_of(server.dir.path(), id), Vec::<String>::new(), "steps {steps}: {id} on disk");
        }
        let audit = server.ok("GET", "/v1/audit", None).await;
        assert!(audit_actions(&audit).contains(&("admin".into(), "users.erase".into(), receipt_id.clone())));
        assert_eq!(server.ok("GET", &format!("/v1/users/{BYSTANDER}"), None).await["events"], 1);
    }
}

#[tokio::test]
async fn consent_governs_what_is_stored() {
    let server = TestServer::start(Some(ADMIN)).await;
    server.ok("PUT", "/v1/items", Some(catalog())).await;
    // Consent off → no profile, from the first event.
    server.ok("PUT", "/v1/users/u-off/consent", Some(json!({"personalization": false}))).await;
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [{"id": "o-1", "type": "view", "user": "u-off", "item": "art-sleep"}]})),
        )
        .await;
    let user = server.ok("GET", "/v1/users/u-off", None).await;
    assert_eq!(
        (user["personalization"].as_str(), user["affinities"].clone(), user["recent"].clone()),
        (Some("off"), json!([]), json!([]))
    );
    assert_eq!(user["journey_stage"], "new");

    // A person with everything allowed, then withdrawing.
    server.ok("PUT", "/v1/users/u-w/consent", Some(json!({"contextual": true}))).await;
    server.ok("POST", "/v1/events", Some(json!({"events": [
        {"id": "w-1", "type": "view", "user": "u-w", "item": "art-sleep", "context": {"geo": "DE", "weather": "thunderstorm", "device": "mobile"}},
        {"id": "w-2", "type": "click", "user": "u-w", "item": "med-calm", "context": {"weather": "thunderstorm"}},
    ]}))).await;
    let payloads = |server: &TestServer| {
        let mut all = String::new();
        server
            .engine
            .store()
            .scan_events(0, &mut |row| {
                all.push_str(&String::from_utf8_lossy(&row.payload));
                true
            })
            .unwrap();
        all
    };
    assert!(payloads(&server).contains("thunderstorm"));

    // Withdrawing contextual: geo and weather leave the stored events; the events stay.
    server.ok("PUT", "/v1/users/u-w/consent", Some(json!({"contextual": false}))).await;
    assert!(!payloads(&server).contains("thunderstorm"));
    let export = server.ok("GET", "/v1/users/u-w/export", None).await;
    let ids: Vec<&str> = export["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["w-1", "w-2"]);
    assert_eq!(export["events"][0]["context"], json!({"device": "mobile"}));
    let duplicate = server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [{"id": "w-1", "type": "view", "user": "u-w", "item": "art-sleep"}]})),
        )
        .await;
    assert_eq!(duplicate["duplicates"], 1, "rewritten events keep their ids");
    assert_eq!(server.ok("GET", "/v1/users/u-w", None).await["recent"], json!(["med-calm", "art-sleep"]));

    // Withdrawing analytics and personalization: events are no longer kept individually.
    let before = server.engine.store().event_count().unwrap();
    server.ok("PUT", "/v1/users/u-w/consent", Some(json!({"personalization": false, "analytics": false}))).await;
    assert_eq!(server.engine.store().event_count().unwrap(), before - 2);
    let user = server.ok("GET", "/v1/users/u-w", None).await;
    assert_eq!((user["events"].as_u64(), user["recent"].clone()), (Some(0), json!([])));
    let mut aggregated = 0u64;
    server
        .engine
        .store()
        .scan(attune_store::Table::Aggregates, "", &mut |key, bytes| {
            assert!(!key.contains("u-w"), "aggregates name no one");
            if key.ends_with("\0view") || key.ends_with("\0click") {
                aggregated += u64::from_le_bytes(bytes.try_into().unwrap());
            }
            true
        })
        .unwrap();
    assert_eq!(aggregated, 2, "the withdrawn events are counted per day and type");

    // Consent changes are audited; all of it survives a restart.
    let audit = server.ok("GET", "/v1/audit", None).await;
    assert_eq!(audit_actions(&audit).iter().filter(|(_, a, t)| a == "consent.put" && t == "u-w").count(), 3);
    let server = server.restart().await;
    assert_eq!(server.ok("GET", "/v1/users/u-w", None).await["events"], 0);
    assert!(!payloads(&server).contains("thunderstorm"));
}

#[tokio::test]
async fn retention_sweep_follows_the_clock() {
    let server = TestServer::start(Some(ADMIN)).await;
    populate(&server).await;
    let report = server.engine.privacy_report(NOW_MS).unwrap();
    assert_eq!(report.held_past_retention, 0);
    assert_eq!(report.people, 2, "aliases count with their person");
    assert_eq!(report.consent_rate(attune_core::Purpose::Contextual), 0.5);
    assert_eq!(report.opted_out, 0);

    // 31 days on: the declared type (30 days) is past retention, until the sweep.
    server.clock.advance(31 * DAY_MS);
    assert_eq!(server.engine.privacy_report(server.engine.now_ms()).unwrap().held_past_retention, 1);
    let events_before = server.ok("GET", &format!("/v1/users/{PERSON}"), None).await["events"].as_u64().unwrap();
    let swept = server.ok("POST", "/v1/admin/retention/sweep", None).await;
    assert_eq!(
        (swept["events_deleted"].as_u64(), swept["people_rebuilt"].as_u64(), swept["held_past_retention"].as_u64()),
        (Some(1), Some(1), Some(0)),
        "{swept}"
    );
    assert_eq!(
        server.ok("GET", &format!("/v1/users/{PERSON}"), None).await["events"].as_u64().unwrap(),
        events_before - 1
    );

    // 91 days on: built-in events (90 days) go, and the profiles they shaped are empty again;
    // decisions older than 90 days go, records without a date stay.
    server.engine.store().put(attune_store::Table::Decisions, "u-x\0undated", br#"{"items": []}"#).unwrap();
    server.clock.advance(60 * DAY_MS);
    let swept = server.ok("POST", "/v1/admin/retention/sweep", None).await;
    assert_eq!(swept["events_deleted"], 6, "{swept}");
    assert_eq!(swept["decisions_deleted"], 3, "{swept}");
    assert_eq!(swept["notifications_deleted"], 1, "{swept}");
    assert_eq!(swept["held_past_retention"], 0);
    assert_eq!(server.engine.store().event_count().unwrap(), 0);
    let user = server.ok("GET", &format!("/v1/users/{PERSON}"), None).await;
    assert_eq!(
        (user["events"].as_u64(), user["recent"].clone(), user["affinities"].clone()),
        (Some(0), json!([]), json!([]))
    );
    assert!(server.engine.store().get(attune_store::Table::Decisions, "u-x\0undated").unwrap().is_some());
    assert_eq!(server.engine.privacy_report(server.engine.now_ms()).unwrap().held_past_retention, 0);

    // 401 days on: audit entries past the audit retention (400 days) go.
    server.clock.advance(310 * DAY_MS);
    let swept = server.ok("POST", "/v1/admin/retention/sweep", None).await;
    assert!(swept["audit_deleted"].as_u64().unwrap() >= 5, "{swept}");
    let audit = server.ok("GET", "/v1/audit", None).await;
    let left: Vec<String> = audit_actions(&audit).into_iter().map(|(_, action, _)| action).collect();
    assert_eq!(left, ["retention.sweep"; 3], "only the sweeps of the last 400 days are left");
}

// ---- the /me page ----

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&").into_bytes()
}

async fn me_post(server: &TestServer, path: &str, fields: &[(&str, &str)]) -> (u16, String, Option<String>) {
    let response = plain_client()
        .post(format!("{}{path}", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), location)
}

async fn me_get(server: &TestServer, path_and_query: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = plain_client().get(format!("{}{path_and_query}", server.base)).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// Every visible form control has an `id` with a `<label for=…>`.
fn assert_every_control_is_labelled(html: &str) {
    let mut controls = 0;
    for chunk in html.split("<input").skip(1) {
        let tag = &chunk[..chunk.find('>').unwrap()];
        if tag.contains(r#"type="hidden""#) {
            continue;
        }
        controls += 1;
        let id = tag
            .split(r#"id=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("a control without id: {tag}"));
        assert!(html.contains(&format!(r#"for="{id}""#)), "no label for {id}");
    }
    assert!(controls >= 9, "five consent boxes, two text fields, pause, confirm: {controls}");
    for chunk in html.split("<button").skip(1) {
        let text = &chunk[chunk.find('>').unwrap() + 1..chunk.find("</button>").unwrap()];
        assert!(!text.trim().is_empty(), "every button has text");
    }
}

#[tokio::test]
async fn me_page_works_without_a_key_and_without_javascript() {
    let server = TestServer::start(Some(ADMIN)).await;
    populate(&server).await;
    let link = server.ok("POST", &format!("/v1/users/{PERSON}/me-link"), None).await;
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/me?token="), "{link}");
    assert_eq!(link["expires_at"], "2026-11-28T09:00:00Z");
    let token = url.trim_start_matches("/me?token=").to_owned();

    let (status, headers, html) = me_get(&server, &url).await;
    assert_eq!(status, 200, "{html}");
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(html.starts_with("<!DOCTYPE html><html lang=\"en\">"));
    assert!(!html.contains("<script"), "no JavaScript");
    for expected in [
        "Why am I seeing this?",
        r#"<form method="post" action="/me/consent">"#,
        r#"<form method="post" action="/me/preferences">"#,
        r#"<form method="post" action="/me/forget">"#,
        r#"<form method="post" action="/me/erase">"#,
        r#"<label for="consent-personalization">"#,
        r#"<label for="goals">"#,
        r#"<label for="paused">"#,
        r#"<label for="confirm">"#,
        r#"name="confirm" value="yes" required"#,
        "Sleep without screens",
        "aria-label=\"Forget “Sleep without screens”\"",
        &format!("/me/export?token={token}"),
        "the goals you told us: sleep",
    ] {
        assert!(html.contains(expected), "the page has {expected}:\n{html}");
    }
    assert!(
        html.contains(r#"id="consent-contextual" name="contextual" value="yes" checked"#),
        "current consent is shown"
    );
    assert!(!html.contains(r#"id="consent-email" name="email" value="yes" checked"#));
    assert_every_control_is_labelled(&html);

    // Consent: unchecked boxes mean no. Post/redirect/get back to the page.
    let (status, _, location) =
        me_post(&server, "/me/consent", &[("token", &token), ("personalization", "yes"), ("email", "yes")]).await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some(format!("/me?token={token}&done=consent").as_str()));
    let user = server.ok("GET", &format!("/v1/users/{PERSON}"), None).await;
    assert_eq!(
        user["consent"],
        json!({"personalization": true, "contextual": false, "analytics": false, "email": true, "push": false})
    );
    let (_, _, html) = me_get(&server, location.as_deref().unwrap()).await;
    assert!(html.contains("Your choices were saved."));

    // Preferences, and pausing personalization.
    let (status, _, _) = me_post(
        &server,
        "/me/preferences",
        &[("token", &token), ("goals", "sleep, stress_relief"), ("less_of", ""), ("paused", "yes")],
    )
    .await;
    assert_eq!(status, 303);
    let user = server.ok("GET", &format!("/v1/users/{PERSON}"), None).await;
    assert_eq!(
        (user["preferences"]["goals"].clone(), user["personalization"].clone()),
        (json!(["sleep", "stress_relief"]), json!("off"))
    );
    let (_, _, html) = me_get(&server, &url).await;
    assert!(html.contains("Personalization is off"));
    let too_long = "x".repeat(65);
    let (status, html, _) = me_post(&server, "/me/preferences", &[("token", &token), ("goals", &too_long)]).await;
    assert_eq!(status, 400);
    assert!(html.contains("role=\"alert\""), "{html}");

    // Forget.
    let (status, _, _) = me_post(&server, "/me/forget", &[("token", &token), ("item", "prd-mask")]).await;
    assert_eq!(status, 303);
    assert_eq!(server.engine.forgotten_items(PERSON), ["prd-mask"]);

    // Export as a download.
    let (status, headers, body) = me_get(&server, &format!("/me/export?token={token}")).await;
    assert_eq!(status, 200);
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let export: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(export["user"]["id"], PERSON);

    // Erase needs the confirmation.
    let (status, html, _) = me_post(&server, "/me/erase", &[("token", &token)]).await;
    assert_eq!(status, 400);
    assert!(html.contains("Nothing was erased"));
    assert_eq!(server.call("GET", &format!("/v1/users/{PERSON}"), None).await.status, 200);
    let (status, html, _) = me_post(&server, "/me/erase", &[("token", &token), ("confirm", "yes")]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("rcpt_") && !html.contains(PERSON));
    assert_eq!(server.call("GET", &format!("/v1/users/{PERSON}"), None).await.status, 404);
    // The erasure ended the link's generation: the old link opens nothing (and writes nothing).
    let (status, _, html) = me_get(&server, &url).await;
    assert_eq!(status, 401);
    assert!(html.contains("no longer works"));

    let audit = server.ok("GET", "/v1/audit", None).await;
    let mut by_me: Vec<String> =
        audit_actions(&audit).into_iter().filter(|(k, _, _)| k == "me").map(|(_, a, _)| a).collect();
    by_me.sort();
    assert_eq!(by_me, ["consent.put", "preferences.put", "users.erase", "users.export", "users.forget"]);
}

#[tokio::test]
async fn me_links_are_signed_and_expire() {
    let server = TestServer::start(Some(ADMIN)).await;
    populate(&server).await;
    let link = server.ok("POST", &format!("/v1/users/{PERSON}/me-link?ttl_seconds=60"), None).await;
    let url = link["url"].as_str().unwrap().to_owned();
    let token = url.trim_start_matches("/me?token=").to_owned();
    assert_eq!(me_get(&server, &url).await.0, 200);
    // Another person's id with this signature, a changed expiry, no token, garbage.
    let other = format!("{}.{}", hex_of(BYSTANDER), token.split_once('.').unwrap().1);
    let (expires, tag) = token.split_once('.').unwrap().1.split_once('.').unwrap();
    let later = format!("{}.{}.{tag}", hex_of(PERSON), expires.parse::<i64>().unwrap() + 3_600_000);
    for bad in [
        format!("/me?token={other}"),
        format!("/me?token={later}"),
        "/me".to_owned(),
        "/me?token=abc".to_owned(),
        "/me?token=".to_owned(),
    ] {
        let (status, headers, html) = me_get(&server, &bad).await;
        assert_eq!(status, 401, "{bad}");
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(html.contains("<h1>"), "{html}");
    }
    let (status, _, _) = me_post(&server, "/me/consent", &[("token", &other), ("personalization", "yes")]).await;
    assert_eq!(status, 401, "a forged token changes nothing");
    assert_eq!(server.ok("GET", &format!("/v1/users/{BYSTANDER}"), None).await["consent_given"], false);
    server.clock.advance(60_000);
    let (status, _, html) = me_get(&server, &url).await;
    assert_eq!(status, 401);
    assert!(html.contains("This link has expired"));
    // A restart keeps the secret: fresh links made before it still work after it.
    let link = server.ok("POST", &format!("/v1/users/{PERSON}/me-link"), None).await;
    let server = server.restart().await;
    assert_eq!(me_get(&server, link["url"].as_str().unwrap()).await.0, 200);
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

// ---- bad input, table-driven ----

fn json_case(
    name: &'static str,
    method: &'static str,
    path: &str,
    body: Value,
    status: u16,
    code: &'static str,
) -> Case {
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

fn bare(name: &'static str, method: &'static str, path: &str, status: u16, code: &'static str) -> Case {
    Case { name, method, path: path.to_owned(), content_type: None, body: Vec::new(), status, code, field: None }
}

fn bad_cases() -> Vec<Case> {
    let long = "x".repeat(129);
    let u = format!("/v1/users/{PERSON}");
    vec![
        // consent
        raw(
            "consent truncated json",
            "PUT",
            &format!("{u}/consent"),
            Some("application/json"),
            br#"{"personalization": "#,
            400,
            "malformed_json",
        ),
        raw(
            "consent not json",
            "PUT",
            &format!("{u}/consent"),
            Some("application/json"),
            b"yes please",
            400,
            "malformed_json",
        ),
        raw(
            "consent text/plain",
            "PUT",
            &format!("{u}/consent"),
            Some("text/plain"),
            b"{}",
            415,
            "unsupported_media_type",
        ),
        raw(
            "consent form encoded",
            "PUT",
            &format!("{u}/consent"),
            Some("application/x-www-form-urlencoded"),
            b"personalization=true",
            415,
            "unsupported_media_type",
        ),
        raw("consent no content type", "PUT", &format!("{u}/consent"), None, b"{}", 415, "unsupported_media_type"),
        json_case("consent array", "PUT", &format!("{u}/consent"), json!([true]), 400, "invalid_type"),
        field(
            json_case(
                "consent string flag",
                "PUT",
                &format!("{u}/consent"),
                json!({"analytics": "no"}),
                400,
                "invalid_type",
            ),
            "analytics",
        ),
        field(
            json_case("consent number flag", "PUT", &format!("{u}/consent"), json!({"push": 1}), 400, "invalid_type"),
            "push",
        ),
        field(
            json_case(
                "consent null is not a flag",
                "PUT",
                &format!("{u}/consent"),
                json!({"email": {}}),
                400,
                "invalid_type",
            ),
            "email",
        ),
        field(
            json_case(
                "consent unknown purpose",
                "PUT",
                &format!("{u}/consent"),
                json!({"location": true}),
                400,
                "unknown_field",
            ),
            "location",
        ),
        json_case("consent id too long", "PUT", &format!("/v1/users/{long}/consent"), json!({}), 400, "invalid_id"),
        json_case("consent id with newline", "PUT", "/v1/users/a%0Ab/consent", json!({}), 400, "invalid_id"),
        raw(
            "consent trailing garbage",
            "PUT",
            &format!("{u}/consent"),
            Some("application/json"),
            b"{} {}",
            400,
            "malformed_json",
        ),
        bare("consent wrong method", "POST", &format!("{u}/consent"), 405, "method_not_allowed"),
        // preferences
        field(
            json_case(
                "goals not a list",
                "PUT",
                &format!("{u}/preferences"),
                json!({"goals": "sleep"}),
                400,
                "invalid_type",
            ),
            "goals",
        ),
        field(
            json_case(
                "goal not a string",
                "PUT",
                &format!("{u}/preferences"),
                json!({"goals": [1]}),
                400,
                "invalid_type",
            ),
            "goals[0]",
        ),
        field(
            json_case("empty goal", "PUT", &format!("{u}/preferences"), json!({"goals": [""]}), 400, "invalid_value"),
            "goals[0]",
        ),
        field(
            json_case(
                "goal too long",
                "PUT",
                &format!("{u}/preferences"),
                json!({"goals": ["g".repeat(65)]}),
                400,
                "invalid_value",
            ),
            "goals[0]",
        ),
        field(
            json_case(
                "too many less_of",
                "PUT",
                &format!("{u}/preferences"),
                json!({"less_of": (0..51).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
                400,
                "invalid_value",
            ),
            "less_of",
        ),
        field(
            json_case(
                "personalization true",
                "PUT",
                &format!("{u}/preferences"),
                json!({"personalization": true}),
                400,
                "invalid_type",
            ),
            "personalization",
        ),
        field(
            json_case(
                "personalization paused",
                "PUT",
                &format!("{u}/preferences"),
                json!({"personalization": "paused"}),
                400,
                "invalid_value",
            ),
            "personalization",
        ),
        field(
            json_case(
                "quiet hours string",
                "PUT",
                &format!("{u}/preferences"),
                json!({"quiet_hours": "21-08"}),
                400,
                "invalid_type",
            ),
            "quiet_hours",
        ),
        field(
            json_case(
                "quiet hours 9:00",
                "PUT",
                &format!("{u}/preferences"),
                json!({"quiet_hours": {"start": "9:00", "end": "08:00"}}),
                400,
                "invalid_value",
            ),
            "quiet_hours",
        ),
        field(
            json_case(
                "quiet hours minute 60",
                "PUT",
                &format!("{u}/preferences"),
                json!({"quiet_hours": {"start": "21:60", "end": "08:00"}}),
                400,
                "invalid_value",
            ),
            "quiet_hours",
        ),
        field(
            json_case(
                "quiet hours extra",
                "PUT",
                &format!("{u}/preferences"),
                json!({"quiet_hours": {"start": "21:00", "end": "08:00", "tz": "UTC"}}),
                400,
                "unknown_field",
            ),
            "quiet_hours.tz",
        ),
        field(
            json_case(
                "timezone offset",
                "PUT",
                &format!("{u}/preferences"),
                json!({"timezone": "+01:00"}),
                400,
                "invalid_value",
            ),
            "timezone",
        ),
        field(
            json_case(
                "preferences unknown field",
                "PUT",
                &format!("{u}/preferences"),
                json!({"mood": "calm"}),
                400,
                "unknown_field",
            ),
            "mood",
        ),
        raw(
            "preferences empty body",
            "PUT",
            &format!("{u}/preferences"),
            Some("application/json"),
            b"",
            400,
            "malformed_json",
        ),
        json_case("preferences id empty", "PUT", "/v1/users/%20%0A/preferences", json!({}), 400, "invalid_id"),
        // history
        bare("forget unknown person", "DELETE", "/v1/users/nobody-here/history/art-sleep", 404, "not_found"),
        field(bare("forget item too long", "DELETE", &format!("{u}/history/{long}"), 400, "invalid_id"), "item"),
        field(
            bare("forget person too long", "DELETE", &format!("/v1/users/{long}/history/art-sleep"), 400, "invalid_id"),
            "id",
        ),
        field(bare("forget item with tab", "DELETE", &format!("{u}/history/a%09b"), 400, "invalid_id"), "item"),
        bare("forget without item", "DELETE", &format!("{u}/history/"), 404, "not_found"),
        bare("history wrong method", "GET", &format!("{u}/history/art-sleep"), 405, "method_not_allowed"),
        // export
        bare("export unknown person", "GET", "/v1/users/nobody-here/export", 404, "not_found"),
        field(bare("export id too long", "GET", &format!("/v1/users/{long}/export"), 400, "invalid_id"), "id"),
        bare("export wrong method", "POST", &format!("{u}/export"), 405, "method_not_allowed"),
        // erase
        bare("erase unknown person", "DELETE", "/v1/users/nobody-here", 404, "not_found"),
        field(bare("erase id too long", "DELETE", &format!("/v1/users/{long}"), 400, "invalid_id"), "id"),
        field(bare("erase id with NUL", "DELETE", "/v1/users/a%00b", 400, "invalid_id"), "id"),
        bare("erase with bad percent encoding", "DELETE", "/v1/users/%FF%FE", 400, "invalid_path"),
        bare("unknown receipt", "GET", "/v1/erasures/rcpt_01ARZ3NDEKTSV4RRFFQ69G5FAV", 404, "not_found"),
        bare("receipt that is a pending key", "GET", "/v1/erasures/pending", 404, "not_found"),
        field(bare("receipt id too long", "GET", &format!("/v1/erasures/{long}"), 400, "invalid_id"), "id"),
        bare("erasures list is not a route", "GET", "/v1/erasures", 404, "not_found"),
        // me-link
        bare("me-link unknown person", "POST", "/v1/users/nobody-here/me-link", 404, "not_found"),
        field(
            bare("me-link ttl too short", "POST", &format!("{u}/me-link?ttl_seconds=59"), 400, "invalid_count"),
            "ttl_seconds",
        ),
        field(
            bare("me-link ttl too long", "POST", &format!("{u}/me-link?ttl_seconds=604801"), 400, "invalid_count"),
            "ttl_seconds",
        ),
        bare("me-link ttl negative", "POST", &format!("{u}/me-link?ttl_seconds=-1"), 400, "invalid_query"),
        bare("me-link ttl text", "POST", &format!("{u}/me-link?ttl_seconds=soon"), 400, "invalid_query"),
        bare("me-link unknown param", "POST", &format!("{u}/me-link?valid=forever"), 400, "invalid_query"),
        field(bare("me-link id too long", "POST", &format!("/v1/users/{long}/me-link"), 400, "invalid_id"), "id"),
        bare("me-link wrong method", "GET", &format!("{u}/me-link"), 405, "method_not_allowed"),
        // sweep
        bare("sweep wrong method", "GET", "/v1/admin/retention/sweep", 405, "method_not_allowed"),
        bare("sweep unknown admin route", "POST", "/v1/admin/retention/purge", 404, "not_found"),
        bare("sweep with a trailing slash", "POST", "/v1/admin/retention/sweep/", 404, "not_found"),
        // the person view these routes share
        bare("user wrong method", "POST", &u, 405, "method_not_allowed"),
        field(bare("user id of spaces and a newline", "GET", "/v1/users/%0A", 400, "invalid_id"), "id"),
        bare("erased-looking id is just unknown", "GET", "/v1/users/erased:rcpt_x", 404, "not_found"),
    ]
}

#[tokio::test]
async fn bad_inputs_to_privacy_routes_get_stable_codes() {
    let server = TestServer::start(Some(ADMIN)).await;
    populate(&server).await;
    let cases = bad_cases();
    assert!(cases.len() >= 60, "the table keeps at least 60 cases: {}", cases.len());
    let failures = common::failed_cases(&server, cases).await;
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    // Nothing above changed the person.
    assert_eq!(server.ok("GET", &format!("/v1/users/{PERSON}"), None).await["events"], 6);
}
