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
