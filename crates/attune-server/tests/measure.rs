//! The four-dimension report and notification timing through the real server.

mod common;

use common::TestServer;
use serde_json::json;

#[tokio::test]
async fn report_has_four_dimensions() {
    let server = TestServer::start(None).await;
    server.ok("PUT", "/v1/items", Some(json!({"items": [{"id": "a", "kind": "article"}, {"id": "p", "kind": "product", "attributes": {"price": 20}}]}))).await;
    server.ok("PUT", "/v1/users/u-2/consent", Some(json!({"personalization": false}))).await;
    server.ok("POST", "/v1/events", Some(json!({"events": [
        {"id": "1", "type": "dwell", "user": "u-1", "item": "a", "ts": "2026-11-20T10:00:00Z", "properties": {"dwell_ms": 60000, "scroll_depth": 0.95}},
        {"id": "2", "type": "dwell", "user": "u-1", "item": "a", "ts": "2026-11-21T10:00:00Z", "properties": {"dwell_ms": 1000, "scroll_depth": 0.2}},
        {"id": "3", "type": "purchase", "user": "u-1", "item": "p", "ts": "2026-11-21T10:05:00Z", "properties": {"value": 20}},
        {"id": "4", "type": "survey", "user": "u-1", "ts": "2026-11-21T10:06:00Z", "properties": {"score": 8}},
        {"id": "5", "type": "survey", "user": "u-2", "ts": "2026-11-22T10:06:00Z", "properties": {"score": 6}},
        {"id": "6", "type": "view", "user": "u-3", "item": "a", "ts": "2026-10-01T10:00:00Z"}]}))).await;
    let report = server.ok("GET", "/v1/report?from=2026-11-01T00:00:00Z&to=2026-11-28T00:00:00Z", None).await;
    assert_eq!(report["behavioral"]["active_people"], 2, "{report}");
    assert_eq!(report["behavioral"]["completion"], 0.5);
    assert_eq!(report["behavioral"]["return_rate"], 0.5);
    assert_eq!(report["attitudinal"]["mean_survey_score"], 7.0);
    assert_eq!(report["attitudinal"]["count"], 2);
    assert_eq!(report["business"]["conversion"], 0.5);
    assert_eq!(report["business"]["revenue_per_person"], 10.0);
    assert_eq!(report["ethical"]["data_held_past_retention"], 0);
    assert!(report["ethical"]["consent_rates"]["personalization"].as_f64().unwrap() < 1.0);
    assert_eq!(
        server.call("GET", "/v1/report?from=2026-11-28T00:00:00Z&to=2026-11-01T00:00:00Z", None).await.status,
        400
    );
}

#[tokio::test]
async fn notifications_honor_consent_quiet_hours_and_one_budget() {
    let server = TestServer::start(None).await;
    // No email consent by default.
    let plan = server.ok("POST", "/v1/notifications/plan", Some(json!({"user": "u-1", "channel": "email"}))).await;
    assert_eq!(plan, json!({"send_at": null, "reason": "no_consent"}));
    server.ok("PUT", "/v1/users/u-1/consent", Some(json!({"email": true, "push": true}))).await;
    server
        .ok(
            "PUT",
            "/v1/users/u-1/preferences",
            Some(json!({"timezone": "Europe/Berlin", "quiet_hours": {"start": "21:00", "end": "08:00"}})),
        )
        .await;
    // 22:30 in Berlin is quiet: moved to 08:00 the next morning (07:00Z in winter).
    let plan = server
        .ok(
            "POST",
            "/v1/notifications/plan",
            Some(json!({"user": "u-1", "channel": "email", "not_before": "2026-11-28T21:30:00Z"})),
        )
        .await;
    assert_eq!(plan, json!({"send_at": "2026-11-29T07:00:00Z", "reason": "quiet_hours"}));
    // The budget is shared across channels: a push right after is pushed back by the minimum gap.
    let push = server
        .ok(
            "POST",
            "/v1/notifications/plan",
            Some(json!({"user": "u-1", "channel": "push", "not_before": "2026-11-29T07:30:00Z"})),
        )
        .await;
    assert_eq!(push["reason"], "frequency_cap");
    // 07:00Z + 20 h is 04:00 in Berlin, still quiet: 08:00 local, the first reason reported.
    assert_eq!(push["send_at"], "2026-11-30T07:00:00Z", "{push}");
    // Three sends a week at most, whatever the channel.
    let third = server
        .ok(
            "POST",
            "/v1/notifications/plan",
            Some(json!({"user": "u-1", "channel": "email", "not_before": "2026-12-01T12:00:00Z"})),
        )
        .await;
    assert!(third["send_at"].is_string(), "{third}");
    let fourth = server
        .ok(
            "POST",
            "/v1/notifications/plan",
            Some(json!({"user": "u-1", "channel": "push", "not_before": "2026-12-02T12:00:00Z"})),
        )
        .await;
    assert_eq!(fourth, json!({"send_at": null, "reason": "frequency_cap"}));
    let bad = server
        .call("POST", "/v1/notifications/plan", Some(json!({"user": "u-1", "channel": "email", "not_before": "soon"})))
        .await;
    assert_eq!((bad.status, bad.json["error"]["code"].as_str()), (400, Some("invalid_timestamp")));
}

#[tokio::test]
async fn experiments_assign_expose_and_convert() {
    let server = TestServer::start(None).await;
    let items: Vec<serde_json::Value> =
        (0..30).map(|i| json!({"id": format!("i-{i}"), "kind": "article", "tags": [if i % 2 == 0 { "sleep" } else { "focus" }]})).collect();
    server.ok("PUT", "/v1/items", Some(json!({ "items": items }))).await;
    let defined = server.ok("PUT", "/v1/experiments/exp-feed", Some(json!({"slot": "home_feed",
        "arms": [{"name": "control", "weight": 0.5, "policy": "popular"}, {"name": "personalized", "weight": 0.45, "policy": "default"}],
        "holdout": 0.05, "metrics": ["click", "purchase", "survey"]}))).await;
    assert_eq!(defined["arms"][1]["policy"], "default");
    let mut arms = std::collections::HashMap::new();
    for i in 0..60 {
        let user = format!("u-{i}");
        let decision = server
            .ok("POST", "/v1/decide", Some(json!({"user": user, "placements": [{"slot": "home_feed", "count": 3}]})))
            .await;
        let arm = decision["experiments"][0]["arm"].as_str().unwrap().to_owned();
        assert_eq!(decision["experiments"][0]["id"], "exp-feed");
        // Deterministic per person.
        let again = server
            .ok("POST", "/v1/decide", Some(json!({"user": user, "placements": [{"slot": "home_feed", "count": 3}]})))
            .await;
        assert_eq!(again["experiments"][0]["arm"], arm.as_str());
        *arms.entry(arm.clone()).or_insert(0) += 1;
        if arm == "personalized" {
            let item = decision["placements"][0]["items"][0]["id"].clone();
            server
                .ok(
                    "POST",
                    "/v1/events",
                    Some(json!({"events": [{"id": format!("c-{i}"), "type": "click", "user": user,
                "item": item, "decision_id": decision["decision_id"]}]})),
                )
                .await;
        }
    }
    assert!(arms.contains_key("control") && arms.contains_key("personalized"), "{arms:?}");
    let results = server.ok("GET", "/v1/experiments/exp-feed/results", None).await;
    // The unit is the person: two decisions each, one exposure each.
    let exposed = |name: &str| {
        results["exposed"].as_array().unwrap().iter().find(|a| a["arm"] == name).map(|a| a["people"].clone()).unwrap()
    };
    assert_eq!(exposed("control"), arms["control"], "{results}");
    assert_eq!(exposed("personalized"), arms["personalized"]);
    let ctr = results["metrics"].as_array().unwrap().iter().find(|m| m["name"] == "click_through").unwrap().clone();
    let arm = |name: &str| ctr["arms"].as_array().unwrap().iter().find(|a| a["arm"] == name).cloned().unwrap();
    assert_eq!(arm("personalized")["n"], arms["personalized"]);
    assert_eq!(arm("personalized")["sum"], f64::from(arms["personalized"]));
    assert_eq!(arm("personalized")["mean"], 1.0);
    assert_eq!(arm("control")["sum"], 0.0);
    assert!(results["srm"]["p_value"].as_f64().is_some());
    // Listed, stopped (no more assignment), archived.
    let listed = server.ok("GET", "/v1/experiments", None).await;
    assert_eq!(listed["experiments"][0]["id"], "exp-feed");
    assert_eq!(listed["experiments"][0]["status"], "running");
    assert!(!listed["experiments"][0]["ranges"].as_array().unwrap().is_empty());
    assert_eq!(server.ok("POST", "/v1/experiments/exp-feed/stop", None).await["status"], "stopped");
    let after = server
        .ok("POST", "/v1/decide", Some(json!({"user": "u-1", "placements": [{"slot": "home_feed", "count": 3}]})))
        .await;
    assert_eq!(after["experiments"].as_array().map_or(0, Vec::len), 0, "{after}");
    assert_eq!(server.ok("POST", "/v1/experiments/exp-feed/archive", None).await["status"], "archived");
    assert_eq!(server.call("POST", "/v1/experiments/none/stop", None).await.status, 404);
    assert_eq!(server.call("GET", "/v1/experiments/exp-feed/results?window_days=0", None).await.status, 400);
    let bad = server
        .call(
            "PUT",
            "/v1/experiments/x",
            Some(json!({"slot": "s", "arms": [{"name": "a", "weight": 0.9, "policy": "default"}], "holdout": 0.2})),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(server.call("GET", "/v1/experiments/none/results", None).await.status, 404);
}

#[tokio::test]
async fn send_hours_are_learned_in_a_zone_learned_from_events() {
    let server = TestServer::start(None).await;
    for user in ["u-tokyo", "u-early", "u-new"] {
        server.ok("PUT", &format!("/v1/users/{user}/consent"), Some(json!({"email": true}))).await;
    }
    // Tokyo: the zone comes only from the events' context; the person set quiet hours.
    server
        .ok("PUT", "/v1/users/u-tokyo/preferences", Some(json!({"quiet_hours": {"start": "21:00", "end": "08:00"}})))
        .await;
    let tokyo: Vec<serde_json::Value> = (0..2)
        .map(|k| {
            json!({"id": format!("t-{k}"), "type": "view", "user": "u-tokyo", "item": "i-1",
            "ts": format!("2026-11-2{k}T03:00:00Z"), "context": {"timezone": "Asia/Tokyo"}})
        })
        .collect();
    server.ok("POST", "/v1/events", Some(json!({ "events": tokyo }))).await;
    // 13:00Z is 22:00 in Tokyo: quiet there, so 08:00 Tokyo (23:00Z), never 22:00 local.
    let plan = server
        .ok(
            "POST",
            "/v1/notifications/plan",
            Some(json!({"user": "u-tokyo", "channel": "email", "not_before": "2026-11-28T13:00:00Z"})),
        )
        .await;
    assert_eq!(plan, json!({"send_at": "2026-11-28T23:00:00Z", "reason": "quiet_hours"}));

    // Someone who engages at 07:00 in Berlin, eight mornings: sends go out at 07:00 their time.
    let early: Vec<serde_json::Value> = (0..8)
        .map(|k| {
            json!({"id": format!("e-{k}"), "type": "click", "user": "u-early", "item": format!("i-{k}"),
            "ts": format!("2026-11-{:02}T06:10:00Z", 18 + k), "context": {"timezone": "Europe/Berlin"}})
        })
        .collect();
    server.ok("POST", "/v1/events", Some(json!({ "events": early }))).await;
    let plan = server
        .ok(
            "POST",
            "/v1/notifications/plan",
            Some(json!({"user": "u-early", "channel": "email", "not_before": "2026-11-28T12:00:00Z"})),
        )
        .await;
    assert_eq!(plan, json!({"send_at": "2026-11-29T06:00:00Z", "reason": "preferred_hour"}));

    // Nothing learned: late at night (UTC, no zone known) moves to the default hour, and says so.
    let plan = server
        .ok(
            "POST",
            "/v1/notifications/plan",
            Some(json!({"user": "u-new", "channel": "email", "not_before": "2026-11-28T22:30:00Z"})),
        )
        .await;
    assert_eq!(plan, json!({"send_at": "2026-11-29T18:00:00Z", "reason": "default_hour"}));

    // What Attune infers is shown to the person: the zone, where it came from, the send hour.
    let shown = |user: &'static str| {
        let server = &server;
        async move {
            let view = server.ok("GET", &format!("/v1/users/{user}"), None).await;
            (view["timezone"].clone(), view["timezone_source"].clone(), view["send_hour"].clone())
        }
    };
    assert_eq!(shown("u-tokyo").await, (json!("Asia/Tokyo"), json!("events"), json!(null)));
    assert_eq!(shown("u-early").await, (json!("Europe/Berlin"), json!("events"), json!(7)));
    server.ok("PUT", "/v1/users/u-early/preferences", Some(json!({"timezone": "America/New_York"}))).await;
    assert_eq!(shown("u-early").await.0, json!("America/New_York"));
    assert_eq!(shown("u-early").await.1, json!("preferences"));
}

#[tokio::test]
async fn the_control_arm_and_the_global_holdout_get_the_non_personalized_default() {
    let server = TestServer::start(None).await;
    let items: Vec<serde_json::Value> = (0..30)
        .map(|i| json!({"id": format!("i-{i}"), "kind": "article", "tags": [if i % 2 == 0 { "sleep" } else { "focus" }]}))
        .collect();
    server.ok("PUT", "/v1/items", Some(json!({ "items": items }))).await;
    // Histories that would personalize the feed.
    let events: Vec<serde_json::Value> = (0..40)
        .flat_map(|u| {
            (0..4).map(move |k| json!({"id": format!("h-{u}-{k}"), "type": "click", "user": format!("u-{u}"), "item": format!("i-{}", 2 * k + u % 2)}))
        })
        .collect();
    server.ok("POST", "/v1/events", Some(json!({ "events": events }))).await;
    server
        .ok("PUT", "/v1/experiments/exp-clean", Some(json!({"slot": "home_feed",
        "arms": [{"name": "control", "weight": 0.5, "policy": "popular"}, {"name": "personalized", "weight": 0.5, "policy": "default"}]})))
        .await;
    let decide = |user: String| {
        let server = &server;
        async move {
            server
                .ok(
                    "POST",
                    "/v1/decide",
                    Some(json!({"user": user, "placements": [{"slot": "home_feed", "count": 4}], "explain": true})),
                )
                .await
        }
    };
    let mut seen_control = false;
    for u in 0..40 {
        let decision = decide(format!("u-{u}")).await;
        if decision["experiments"][0]["arm"] == "control" {
            seen_control = true;
            assert_eq!(decision["personalized"], false, "{decision}");
            for item in decision["placements"][0]["items"].as_array().unwrap() {
                assert_ne!(item["source"], "collaborative");
                assert_ne!(item["source"], "predictive");
            }
        }
    }
    assert!(seen_control);
    assert_eq!(server.ok("GET", "/v1/holdout", None).await["share"], 0.0);
    assert_eq!(server.ok("PUT", "/v1/holdout", Some(json!({"share": 0.5}))).await["share"], 0.5);
    assert_eq!(server.call("PUT", "/v1/holdout", Some(json!({"share": 0.9}))).await.status, 400);
    let mut held = 0;
    for u in 0..40 {
        let decision = decide(format!("u-{u}")).await;
        if decision["experiments"].as_array().map_or(0, Vec::len) == 0 {
            held += 1;
            assert_eq!(decision["personalized"], false, "{decision}");
        }
    }
    assert!(held > 5 && held < 35, "{held}");
    let events: Vec<serde_json::Value> = (0..40)
        .map(|u| {
            json!({"id": format!("w-{u}"), "type": "purchase", "user": format!("u-{u}"), "item": "i-1",
            "ts": "2026-11-20T10:00:00Z", "properties": {"value": 10}})
        })
        .collect();
    server.ok("POST", "/v1/events", Some(json!({ "events": events }))).await;
    let report = server.ok("GET", "/v1/report?from=2026-11-16T00:00:00Z&to=2026-11-23T00:00:00Z", None).await;
    let weeks = report["holdout_comparison"].as_array().unwrap();
    assert_eq!(weeks.len(), 2, "{report}");
    assert_eq!(weeks[0]["group"], "holdout");
    assert_eq!(weeks[0]["active_people"].as_u64().unwrap() + weeks[1]["active_people"].as_u64().unwrap(), 40);
    assert_eq!(weeks[1]["conversion"], 1.0);
}

/// A zone a site sends only with its decide requests (issue 14): it is the person's zone (quiet
/// hours, `GET /v1/users/{id}`) until a later event or request names another, it survives a
/// restart and is exported, and it goes with personalization consent and with an erasure.
#[tokio::test]
async fn a_zone_named_only_in_decide_requests_is_remembered() {
    let server = TestServer::start(None).await;
    server.ok("PUT", "/v1/users/u-syd/consent", Some(json!({"email": true}))).await;
    server
        .ok("PUT", "/v1/users/u-syd/preferences", Some(json!({"quiet_hours": {"start": "21:00", "end": "08:00"}})))
        .await;
    // A history without any zone.
    let views: Vec<serde_json::Value> = (0..3)
        .map(|k| json!({"id": format!("s-{k}"), "type": "view", "user": "u-syd", "item": format!("i-{k}"), "ts": format!("2026-11-2{k}T03:00:00Z")}))
        .collect();
    server.ok("POST", "/v1/events", Some(json!({ "events": views }))).await;
    let zone = |user: &'static str| {
        let server = &server;
        async move {
            let view = server.ok("GET", &format!("/v1/users/{user}"), None).await;
            (view["timezone"].clone(), view["timezone_source"].clone())
        }
    };
    assert_eq!(zone("u-syd").await, (json!(null), json!("none")));
    let decide = |user: &'static str, timezone: &'static str| {
        let server = &server;
        async move {
            let body = json!({"user": user, "context": {"timezone": timezone}, "placements": [{"slot": "home_feed", "count": 3}]});
            server.ok("POST", "/v1/decide", Some(body)).await;
        }
    };
    decide("u-syd", "Australia/Sydney").await;
    assert_eq!(zone("u-syd").await, (json!("Australia/Sydney"), json!("decide")));
    // 11:00Z is 22:00 in Sydney (UTC+11 in November): quiet there, so 08:00 Sydney (21:00Z).
    let body = json!({"user": "u-syd", "channel": "email", "not_before": "2026-11-28T11:00:00Z"});
    let plan = server.ok("POST", "/v1/notifications/plan", Some(body)).await;
    assert_eq!(plan, json!({"send_at": "2026-11-28T21:00:00Z", "reason": "quiet_hours"}));

    // Stored by the flush (every second under `attune serve`), so a restart keeps it.
    server.engine.flush_decisions().expect("flush");
    let server = server.restart().await;
    let view = server.ok("GET", "/v1/users/u-syd", None).await;
    assert_eq!((&view["timezone"], &view["timezone_source"]), (&json!("Australia/Sydney"), &json!("decide")));
    let export = server.ok("GET", "/v1/users/u-syd/export", None).await;
    assert_eq!(export["decided_zones"][0]["key"], "u-syd", "{export}");
    assert_eq!(export["decided_zones"][0]["value"]["timezone"], "Australia/Sydney", "{export}");

    // The latest wins: an event an hour later names Tokyo, then a decide request Sydney again.
    server.clock.advance(3_600_000);
    let tokyo = json!({"id": "s-tokyo", "type": "view", "user": "u-syd", "item": "i-9", "ts": "2026-11-28T09:00:00Z", "context": {"timezone": "Asia/Tokyo"}});
    server.ok("POST", "/v1/events", Some(json!({"events": [tokyo]}))).await;
    let view = server.ok("GET", "/v1/users/u-syd", None).await;
    assert_eq!((&view["timezone"], &view["timezone_source"]), (&json!("Asia/Tokyo"), &json!("events")));
    server.clock.advance(60_000);
    let body = json!({"user": "u-syd", "context": {"timezone": "Australia/Sydney"}, "placements": [{"slot": "home_feed", "count": 3}]});
    server.ok("POST", "/v1/decide", Some(body)).await;
    let view = server.ok("GET", "/v1/users/u-syd", None).await;
    assert_eq!((&view["timezone"], &view["timezone_source"]), (&json!("Australia/Sydney"), &json!("decide")));
    server.engine.flush_decisions().expect("flush");

    // A preview (the console's "what would this person see") teaches nothing; a person without
    // personalization consent has nothing remembered.
    use attune_engine::decide::{DecideContext, DecideRequest, PlacementRequest};
    let preview = DecideRequest {
        subject: Some("u-syd".into()),
        context: DecideContext { timezone: Some("America/Chicago".into()), ..DecideContext::default() },
        placements: vec![PlacementRequest { slot: "home_feed".into(), count: 3 }],
        preview: true,
        ..DecideRequest::default()
    };
    server.engine.decide(&preview).expect("preview");
    let view = server.ok("GET", "/v1/users/u-syd", None).await;
    assert_eq!(view["timezone"], "Australia/Sydney", "{view}");
    server.ok("PUT", "/v1/users/u-off/consent", Some(json!({"personalization": false}))).await;
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [{"id": "o-1", "type": "view", "user": "u-off", "item": "i-1"}]})),
        )
        .await;
    let body = json!({"user": "u-off", "context": {"timezone": "Europe/Paris"}, "placements": [{"slot": "home_feed", "count": 3}]});
    server.ok("POST", "/v1/decide", Some(body)).await;
    server.engine.flush_decisions().expect("flush");
    let view = server.ok("GET", "/v1/users/u-off", None).await;
    assert_eq!((&view["timezone"], &view["timezone_source"]), (&json!(null), &json!("none")));
    let stored = |person: &str| server.engine.store().get(attune_store::Table::Zones, person).expect("get");
    assert_eq!(stored("u-off"), None);

    // Withdrawing personalization forgets it (memory and store).
    assert!(stored("u-syd").is_some());
    server.ok("PUT", "/v1/users/u-syd/consent", Some(json!({"personalization": false, "email": true}))).await;
    assert_eq!(stored("u-syd"), None);
    server.ok("PUT", "/v1/users/u-syd/consent", Some(json!({"personalization": true, "email": true}))).await;
    let view = server.ok("GET", "/v1/users/u-syd", None).await;
    assert_eq!((&view["timezone"], &view["timezone_source"]), (&json!("Asia/Tokyo"), &json!("events")));

    // An erasure takes it; one noted but not yet stored is never stored after it.
    server.clock.advance(60_000);
    let body = json!({"user": "u-syd", "context": {"timezone": "Pacific/Auckland"}, "placements": [{"slot": "home_feed", "count": 3}]});
    server.ok("POST", "/v1/decide", Some(body.clone())).await;
    server.engine.flush_decisions().expect("flush");
    server.clock.advance(60_000);
    server.ok("POST", "/v1/decide", Some(json!({"user": "u-syd", "context": {"timezone": "Europe/Berlin"}, "placements": [{"slot": "home_feed", "count": 3}]}))).await;
    let erased = server.ok("DELETE", "/v1/users/u-syd", None).await;
    assert_eq!(erased["erased"], true, "{erased}");
    server.engine.flush_decisions().expect("flush");
    assert_eq!(stored("u-syd"), None);
}

/// The console's person page and the person's own `/me` page say which time zone their sends
/// are timed in, where it comes from, and the hour.
#[tokio::test]
async fn the_console_and_the_person_see_the_zone_and_the_send_hour() {
    const ADMIN: &str = "measure-admin-key-0123456789abcdef";
    let server = TestServer::start(Some(ADMIN)).await;
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [{"id": "k-1", "type": "view", "user": "u-k", "item": "i-1"}]})),
        )
        .await;
    let body = json!({"user": "u-k", "context": {"timezone": "Asia/Kolkata"}, "placements": [{"slot": "home_feed", "count": 3}]});
    server.ok("POST", "/v1/decide", Some(body)).await;
    let page = common::console_page(&server.base, ADMIN, "/console/person?id=u-k").await;
    assert!(page.contains("Asia/Kolkata, from the context of decide requests for them"), "{page}");
    assert!(page.contains("18:00 their time, the default"), "{page}");
    let link = server.ok("POST", "/v1/users/u-k/me-link", None).await;
    let url = link["url"].as_str().expect("a /me link");
    let me = reqwest::get(format!("{}{url}", server.base)).await.expect("/me").text().await.expect("html");
    assert!(me.contains("timed in your time zone, Asia/Kolkata (from your latest visit)"), "{me}");
}
