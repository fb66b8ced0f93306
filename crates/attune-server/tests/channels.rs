//! Issue 14, channels and declared signals, through the real server: `channel` on decide and
//! events (validated, logged, read), rules and slot settings per channel, the email digest
//! (no repeats, consent, the shared budget, erasure and export of its log), in-person events,
//! and declared signals shaping profiles, decisions and models.

mod common;

use common::TestServer;
use serde_json::{Value, json};

/// Three themes of eight items each, and one product.
fn catalog() -> Value {
    let mut items = Vec::new();
    for theme in ["sleep", "movement", "focus"] {
        for i in 0..8 {
            items.push(json!({"id": format!("{theme}-{i}"), "kind": "article", "title": format!("{theme} piece {i}"),
                "tags": [theme]}));
        }
    }
    items.push(json!({"id": "prd-mat", "kind": "product", "title": "Cork yoga mat", "tags": ["movement", "product"],
        "attributes": {"price": 60}}));
    json!({ "items": items })
}

async fn seeded() -> TestServer {
    let server = TestServer::start(None).await;
    server.ok("PUT", "/v1/items", Some(catalog())).await;
    server
}

fn ids(placement: &Value) -> Vec<String> {
    placement["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn unknown_channels_are_refused_with_a_stable_code_and_field() {
    let server = seeded().await;
    let reply = server
        .call("POST", "/v1/decide", Some(json!({"placements": [{"slot": "feed", "count": 2}], "channel": "fax"})))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.json);
    assert_eq!(reply.json["error"]["code"], "invalid_channel");
    assert_eq!(reply.json["error"]["field"], "channel");

    let events = server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [
                {"id": "c-1", "type": "view", "user": "u-1", "item": "sleep-0", "channel": "fax"},
                {"id": "c-2", "type": "view", "user": "u-1", "item": "sleep-1", "channel": "app"},
                {"id": "c-3", "type": "purchase", "anonymous_id": "a-1", "item": "prd-mat", "channel": "offline_purchase"},
                {"id": "c-4", "type": "view", "user": "u-1", "item": "sleep-2", "channel": "Web"}]})),
        )
        .await;
    assert_eq!(events["accepted"], 1, "{events}");
    let rejected = events["rejected"].as_array().unwrap();
    assert_eq!(rejected[0]["code"], "invalid_channel");
    assert_eq!(rejected[0]["field"], "events[0].channel");
    assert_eq!(rejected[1]["code"], "invalid_subject", "in-person and offline events name a known user");
    assert_eq!(rejected[2]["code"], "invalid_channel", "channel names are exact");

    let cases = [
        ("PUT", "/v1/slots/feed", json!({"channels": {"sms": {"max_items": 2}}}), "invalid_channel", "channels.sms"),
        (
            "PUT",
            "/v1/slots/feed",
            json!({"channels": {"email": {"serendipity_share": 2.0}}}),
            "invalid_value",
            "channels.email.serendipity_share",
        ),
        (
            "PUT",
            "/v1/slots/feed",
            json!({"editorial_share": 0.6, "channels": {"email": {"serendipity_share": 0.5}}}),
            "invalid_value",
            "channels.email.serendipity_share",
        ),
        (
            "PUT",
            "/v1/slots/feed",
            json!({"channels": {"app": {"max_items": 0}}}),
            "invalid_count",
            "channels.app.max_items",
        ),
        (
            "PUT",
            "/v1/slots/feed",
            json!({"channels": {"email": {"variants": ["a", "b", "c", "d"]}}}),
            "invalid_value",
            "channels.email.variants",
        ),
        (
            "PUT",
            "/v1/slots/feed",
            json!({"variants": ["calm"], "rules": [{"when": {}, "variant": "bold"}]}),
            "invalid_value",
            "rules[0].variant",
        ),
        (
            "PUT",
            "/v1/rules/r-1",
            json!({"when": {"channel": ["email", "pigeon"]}, "then": {}, "owner": "ed", "review_by": "2027-03-01"}),
            "invalid_channel",
            "when.channel[1]",
        ),
        ("POST", "/v1/notifications/plan", json!({"user": "u-1", "channel": "fax"}), "invalid_channel", "channel"),
        ("POST", "/v1/digest", json!({"user": "u-1", "count": 0}), "invalid_count", "count"),
        (
            "POST",
            "/v1/digest",
            json!({"user": "u-1", "count": 3, "not_before": "soon"}),
            "invalid_timestamp",
            "not_before",
        ),
        (
            "POST",
            "/v1/digest",
            json!({"user": "u-1", "count": 3, "context": {"timezone": "Mars/Base"}}),
            "invalid_context",
            "context.timezone",
        ),
        (
            "PUT",
            "/v1/schemas/quiz_answer",
            json!({"purpose": "personalization", "properties": {"answer": "number"},
                "signal": {"tags_from_property": "answer"}}),
            "invalid_schema",
            "signal.tags_from_property",
        ),
        (
            "PUT",
            "/v1/schemas/quiz_answer",
            json!({"purpose": "personalization", "signal": {"tags": ["sleep"], "strength": 9}}),
            "invalid_schema",
            "signal.strength",
        ),
        (
            "PUT",
            "/v1/schemas/quiz_answer",
            json!({"purpose": "analytics", "signal": {"tags": ["sleep"]}}),
            "invalid_schema",
            "purpose",
        ),
        (
            "PUT",
            "/v1/schemas/quiz_answer",
            json!({"purpose": "personalization", "signal": {"journey": "enlightened"}}),
            "invalid_schema",
            "signal.journey",
        ),
        (
            "PUT",
            "/v1/schemas/quiz_answer",
            json!({"purpose": "personalization", "signal": {}}),
            "invalid_schema",
            "signal",
        ),
    ];
    for (method, path, body, code, field) in cases {
        let reply = server.call(method, path, Some(body.clone())).await;
        assert_eq!(reply.status, 400, "{method} {path} {body}: {}", reply.json);
        assert_eq!(reply.json["error"]["code"], code, "{body}: {}", reply.json);
        assert_eq!(reply.json["error"]["field"], field, "{body}: {}", reply.json);
        assert!(!reply.json["error"]["message"].as_str().unwrap_or("").is_empty());
    }
}

#[tokio::test]
async fn rules_and_slot_settings_follow_the_channel_and_the_log_shows_it() {
    let server = seeded().await;
    server
        .ok(
            "PUT",
            "/v1/rules/no-movement-by-email",
            Some(json!({"when": {"channel": ["email"]}, "then": {"exclude_tags": ["movement"]},
                "owner": "editor", "review_by": "2027-03-01"})),
        )
        .await;
    let slot = server
        .ok(
            "PUT",
            "/v1/slots/feed",
            Some(json!({"editorial_share": 0, "serendipity_share": 0,
                "channels": {"email": {"max_items": 4, "variants": ["digest_list"]}}})),
        )
        .await;
    assert_eq!(slot["channels"]["email"], json!({"max_items": 4, "variants": ["digest_list"]}), "{slot}");
    assert_eq!(server.ok("GET", "/v1/slots/feed", None).await["channels"]["email"]["max_items"], 4);
    let rule = server.ok("GET", "/v1/rules/no-movement-by-email", None).await;
    assert_eq!(rule["when"]["channel"], json!(["email"]), "{rule}");

    let request = |channel: Option<&str>| {
        let mut body = json!({"user": "u-1", "placements": [{"slot": "feed", "count": 25}]});
        if let Some(channel) = channel {
            body["channel"] = json!(channel);
        }
        body
    };
    let web = server.ok("POST", "/v1/decide", Some(request(None))).await;
    let web_items = ids(&web["placements"][0]);
    assert_eq!(web_items.len(), 25, "{web}");
    assert!(web_items.iter().any(|id| id.starts_with("movement")), "web keeps movement: {web_items:?}");
    assert!(["calm_list", "grid"].contains(&web["placements"][0]["variant"].as_str().unwrap()));

    let email = server.ok("POST", "/v1/decide", Some(request(Some("email")))).await;
    let email_items = ids(&email["placements"][0]);
    assert_eq!(email_items.len(), 4, "the email channel caps the slot at 4: {email}");
    assert!(email_items.iter().all(|id| !id.starts_with("movement") && id != "prd-mat"), "{email_items:?}");
    assert_eq!(email["placements"][0]["variant"], "digest_list");

    let app = server.ok("POST", "/v1/decide", Some(request(Some("app")))).await;
    assert_eq!(ids(&app["placements"][0]).len(), 25, "other channels keep the slot's settings");

    let review = server.ok("GET", "/v1/review/decisions?slot=feed", None).await;
    let mut channels: Vec<&str> =
        review["decisions"].as_array().unwrap().iter().map(|d| d["channel"].as_str().unwrap()).collect();
    channels.sort_unstable();
    assert_eq!(channels, vec!["app", "email", "web"], "{review}");
}

async fn digest(server: &TestServer, body: Value) -> Value {
    server.ok("POST", "/v1/digest", Some(body)).await
}

#[tokio::test]
async fn digests_never_repeat_and_take_their_sends_from_the_shared_budget() {
    let server = seeded().await;
    server.ok("PUT", "/v1/users/u-d/consent", Some(json!({"email": true}))).await;
    server
        .ok(
            "POST",
            "/v1/events",
            Some(
                json!({"events": [{"id": "d-1", "type": "view", "user": "u-d", "item": "sleep-0", "channel": "web"}]}),
            ),
        )
        .await;
    let first = digest(&server, json!({"user": "u-d", "count": 4})).await;
    assert_eq!(first["reason"], "as_requested", "{first}");
    assert_eq!(first["send_at"], "2026-11-28T08:00:00Z");
    assert_eq!(first["slot"], "email_digest");
    assert_eq!(first["previously_sent"], 0);
    let first_items = ids(&first);
    assert_eq!(first_items.len(), 4, "{first}");
    assert!(!first_items.contains(&"sleep-0".to_owned()), "what the person read is not sent");
    for item in first["items"].as_array().unwrap() {
        let reasons = item["reasons"].as_array().unwrap();
        assert!(!reasons.is_empty() && reasons.iter().all(|r| !r["text"].as_str().unwrap().is_empty()), "{item}");
        assert!(!item["title"].as_str().unwrap().is_empty());
    }
    let decision_id = first["decision_id"].as_str().unwrap().to_owned();
    assert!(decision_id.starts_with("dec-"), "{first}");

    // A click from the email names the decision and the channel.
    let click = server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [{"id": "d-2", "type": "click", "user": "u-d", "item": first_items[0],
                "channel": "email", "decision_id": decision_id}]})),
        )
        .await;
    assert_eq!(click["accepted"], 1, "{click}");
    let user = server.ok("GET", "/v1/users/u-d", None).await;
    assert_eq!(user["channels"], json!({"web": 1, "email": 1}), "{user}");

    let second = digest(&server, json!({"user": "u-d", "count": 4})).await;
    let second_items = ids(&second);
    assert_eq!(second_items.len(), 4, "{second}");
    assert!(second_items.iter().all(|id| !first_items.contains(id)), "{first_items:?} then {second_items:?}");
    assert_eq!(second["previously_sent"], 4);
    // The budget's minimum gap moved the second send (20 hours later falls in the night: 18:00).
    assert_eq!(second["send_at"], "2026-11-29T18:00:00Z", "{second}");

    let third = digest(&server, json!({"user": "u-d", "count": 4})).await;
    assert_eq!(ids(&third).len(), 4, "{third}");
    // Three sends in 7 days: the budget, shared with every channel, is spent.
    let fourth = digest(&server, json!({"user": "u-d", "count": 4})).await;
    assert_eq!(fourth["reason"], "frequency_cap", "{fourth}");
    assert_eq!(fourth["items"], json!([]));
    assert_eq!(fourth["send_at"], Value::Null);
    assert_eq!(fourth["decision_id"], Value::Null);
    // A refusal still says what the recent digests sent.
    assert_eq!(fourth["previously_sent"], 12, "{fourth}");
    let plan = server.ok("POST", "/v1/notifications/plan", Some(json!({"user": "u-d", "channel": "push"}))).await;
    assert_eq!(plan["reason"], "no_consent");
    let plan = server.ok("POST", "/v1/notifications/plan", Some(json!({"user": "u-d", "channel": "email"}))).await;
    assert_eq!(plan["reason"], "frequency_cap", "{plan}");

    // A week later the budget has room again, and the log still keeps the sent items out.
    server.clock.advance(8 * 86_400_000);
    let later = digest(&server, json!({"user": "u-d", "count": 30})).await;
    assert_eq!(later["previously_sent"], 12, "{later}");
    let later_items = ids(&later);
    assert!(!later_items.is_empty());
    for sent in [&first_items, &second_items, &ids(&third)] {
        assert!(later_items.iter().all(|id| !sent.contains(id)), "{later_items:?} repeats {sent:?}");
    }
    // The log is in the store: a restarted server remembers it.
    let server = server.restart().await;
    let after_restart = digest(&server, json!({"user": "u-d", "count": 30})).await;
    assert_eq!(after_restart["reason"], "frequency_cap", "{after_restart}");
}

#[tokio::test]
async fn a_digest_without_email_consent_has_no_items() {
    let server = seeded().await;
    // Unknown people answer under the server's default consent: email off.
    let unknown = digest(&server, json!({"user": "nobody", "count": 3})).await;
    assert_eq!(unknown["reason"], "no_consent", "{unknown}");
    assert_eq!(unknown["items"], json!([]));
    server.ok("PUT", "/v1/users/u-n/consent", Some(json!({"email": false, "personalization": true}))).await;
    let refused = digest(&server, json!({"user": "u-n", "count": 3})).await;
    assert_eq!(refused["reason"], "no_consent");
    assert_eq!(refused["items"], json!([]));
    assert_eq!(refused["decision_id"], Value::Null);
    // Nothing was reserved: once consent is given, the first digest goes out now.
    server.ok("PUT", "/v1/users/u-n/consent", Some(json!({"email": true}))).await;
    let granted = digest(&server, json!({"user": "u-n", "count": 3, "slot": "weekly"})).await;
    assert_eq!(granted["reason"], "as_requested", "{granted}");
    assert_eq!(granted["slot"], "weekly");
    assert_eq!(ids(&granted).len(), 3);
    assert_eq!(granted["personalized"], false, "no history: the non-personalized default");
}

#[tokio::test]
async fn the_digest_log_is_exported_and_erased_with_the_person() {
    let server = seeded().await;
    server.ok("PUT", "/v1/users/u-e/consent", Some(json!({"email": true}))).await;
    let sent = digest(&server, json!({"user": "u-e", "count": 3})).await;
    let sent_items = ids(&sent);
    let export = server.ok("GET", "/v1/users/u-e/export", None).await;
    let logged: Vec<&Value> =
        export["notifications"].as_array().unwrap().iter().filter(|n| n["value"]["items"].is_array()).collect();
    assert_eq!(logged.len(), 1, "{export}");
    assert_eq!(logged[0]["value"]["items"], json!(sent_items));
    assert_eq!(logged[0]["value"]["decision_id"], sent["decision_id"]);

    let erased = server.ok("DELETE", "/v1/users/u-e", None).await;
    assert_eq!(erased["erased"], true);
    assert!(erased["receipt"]["records"].as_u64().unwrap() >= 2, "consent and the digest log: {erased}");
    assert!(server.engine.digest_items_sent("u-e").unwrap().is_empty());
    // The same id is a new person: no log, no budget spent.
    server.ok("PUT", "/v1/users/u-e/consent", Some(json!({"email": true}))).await;
    let again = digest(&server, json!({"user": "u-e", "count": 3})).await;
    assert_eq!(again["previously_sent"], 0, "{again}");
    assert_eq!(again["send_at"], "2026-11-28T08:00:00Z");
}

#[tokio::test]
async fn in_person_events_come_in_under_a_known_user() {
    let server = seeded().await;
    server.ok("PUT", "/v1/users/u-shop/consent", Some(json!({"analytics": false, "personalization": false}))).await;
    let reply = server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [
                {"id": "p-1", "type": "purchase", "user": "u-s", "item": "prd-mat", "channel": "offline_purchase",
                    "ts": "2026-11-27T15:00:00Z", "properties": {"value": 60, "currency": "EUR", "till": "3"}},
                {"id": "p-2", "type": "view", "user": "u-s", "item": "movement-1", "channel": "in_person"},
                {"id": "p-3", "type": "purchase", "user": "u-shop", "item": "prd-mat", "channel": "offline_purchase"}]})),
        )
        .await;
    assert_eq!(reply["accepted"], 3, "{reply}");
    assert_eq!(reply["dropped_fields"], json!([{"index": 0, "field": "properties.till"}]), "the same minimization");
    let user = server.ok("GET", "/v1/users/u-s", None).await;
    assert_eq!(user["channels"], json!({"in_person": 1, "offline_purchase": 1}), "{user}");
    assert_eq!(user["journey_stage"], "customer");
    let export = server.ok("GET", "/v1/users/u-s/export", None).await;
    assert_eq!(export["events"][0]["channel"], "offline_purchase", "{export}");
    let decision = server
        .ok("POST", "/v1/decide", Some(json!({"user": "u-s", "placements": [{"slot": "feed", "count": 25}]})))
        .await;
    assert!(!ids(&decision["placements"][0]).contains(&"prd-mat".to_owned()), "bought in the shop: not offered");
    // Without analytics or personalization consent the shop's purchase is not kept per person.
    assert_eq!(server.call("GET", "/v1/users/u-shop/export", None).await.json["events"], json!([]));
}

fn share_of(placement: &Value, theme: &str) -> f64 {
    let items = ids(placement);
    items.iter().filter(|id| id.starts_with(theme)).count() as f64 / items.len().max(1) as f64
}

#[tokio::test]
async fn a_declared_quiz_answer_shapes_affinities_and_decisions() {
    let server = seeded().await;
    // A crowd reads movement and focus, so the general ranking leads with them; the content
    // model (tags, titles) is what a person without a history is matched with.
    let crowd: Vec<Value> = (0..40)
        .map(|k| {
            let theme = if k % 2 == 0 { "movement" } else { "focus" };
            json!({"id": format!("crowd-{k}"), "type": "view", "user": format!("crowd-{}", k % 10),
                "item": format!("{theme}-{}", k % 8), "ts": "2026-11-27T10:00:00Z"})
        })
        .collect();
    server.ok("POST", "/v1/events", Some(json!({ "events": crowd }))).await;
    assert_eq!(server.ok("POST", "/v1/models/train?wait=true", None).await["status"], "succeeded");
    // Declared first without a meaning: the answer is stored but shapes nothing.
    server
        .ok(
            "PUT",
            "/v1/schemas/quiz_answer",
            Some(json!({"purpose": "personalization", "properties": {"answer": "string"}})),
        )
        .await;
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [{"id": "q-1", "type": "quiz_answer", "user": "u-q", "channel": "app",
                "properties": {"answer": "Sleep"}}]})),
        )
        .await;
    assert_eq!(server.ok("GET", "/v1/users/u-q", None).await["affinities"], json!([]));
    let body = json!({"user": "u-q", "placements": [{"slot": "feed", "count": 10}], "explain": true});
    let before = server.ok("POST", "/v1/decide", Some(body.clone())).await;

    // Now the answer names tags: the stored answer is refolded at once.
    let schema = server
        .ok(
            "PUT",
            "/v1/schemas/quiz_answer",
            Some(json!({"purpose": "personalization", "properties": {"answer": "string"},
                "signal": {"tags_from_property": "answer", "strength": 3}})),
        )
        .await;
    assert_eq!(
        schema["signal"],
        json!({"tags_from_property": "answer", "item_tags": false, "strength": 3.0}),
        "{schema}"
    );
    let user = server.ok("GET", "/v1/users/u-q", None).await;
    assert_eq!(user["affinities"], json!([{"tag": "sleep", "weight": 1.0}]), "{user}");
    let after = server.ok("POST", "/v1/decide", Some(body)).await;
    assert!(
        share_of(&after["placements"][0], "sleep") > share_of(&before["placements"][0], "sleep"),
        "before {before}\nafter {after}"
    );
    assert!(share_of(&after["placements"][0], "sleep") >= 0.5, "{after}");
    let sleep_item = after["placements"][0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"].as_str().unwrap().starts_with("sleep"))
        .cloned()
        .unwrap();
    assert!(
        sleep_item["reasons"].as_array().unwrap().iter().any(|r| r["kind"] == "affinity" && r["tag"] == "sleep"),
        "{sleep_item}"
    );
    // A negative answer turns the person away from a tag.
    server
        .ok(
            "PUT",
            "/v1/schemas/not_for_me",
            Some(json!({"purpose": "personalization", "properties": {"topic": "string"},
                "signal": {"tags_from_property": "topic", "strength": -5}})),
        )
        .await;
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [{"id": "q-2", "type": "not_for_me", "user": "u-q", "properties": {"topic": "sleep"}}]})),
        )
        .await;
    let user = server.ok("GET", "/v1/users/u-q", None).await;
    assert_eq!(user["affinities"], json!([]), "3 − 5: no liking of sleep is left: {user}");
}

#[tokio::test]
async fn a_completed_meditation_moves_the_journey_and_trains_the_models() {
    let server = seeded().await;
    server
        .ok(
            "PUT",
            "/v1/schemas/meditation_done",
            Some(json!({"purpose": "personalization", "properties": {"minutes": "number"},
                "signal": {"tags": ["meditation"], "item_tags": true, "strength": 2, "journey": "researching"}})),
        )
        .await;
    let mut events = Vec::new();
    for person in 0..6 {
        for k in 0..3 {
            events.push(
                json!({"id": format!("m-{person}-{k}"), "type": "meditation_done", "user": format!("u-m{person}"),
                "item": format!("focus-{}", (person + k) % 8), "channel": "app", "properties": {"minutes": 10},
                "ts": format!("2026-11-2{}T07:00:00Z", k + 1)}),
            );
        }
    }
    let reply = server.ok("POST", "/v1/events", Some(json!({ "events": events }))).await;
    assert_eq!(reply["accepted"], 18, "{reply}");
    let user = server.ok("GET", "/v1/users/u-m0", None).await;
    assert_eq!(user["journey_stage"], "researching", "{user}");
    let tags: Vec<&str> = user["affinities"].as_array().unwrap().iter().map(|a| a["tag"].as_str().unwrap()).collect();
    assert!(tags.contains(&"meditation") && tags.contains(&"focus"), "{user}");
    assert_eq!(user["recent"].as_array().unwrap().len(), 3, "{user}");
    let job = server.ok("POST", "/v1/models/train?wait=true", None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let models = server.ok("GET", "/v1/models", None).await;
    let served = models["models"].as_array().unwrap().iter().find(|m| m["name"] == "served").cloned().unwrap();
    assert_eq!(served["users"], 6, "declared events with an item are interactions: {models}");
    // The completed meditations are consumed: not offered again.
    let decision = server
        .ok("POST", "/v1/decide", Some(json!({"user": "u-m0", "placements": [{"slot": "feed", "count": 20}]})))
        .await;
    let shown = ids(&decision["placements"][0]);
    for done in ["focus-0", "focus-1", "focus-2"] {
        assert!(!shown.contains(&done.to_owned()), "{shown:?}");
    }
}
