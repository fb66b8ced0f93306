//! Browser keys (issue 15): origins and CORS, the visitor-only rule, identity tokens, beacons and
//! the script's caching.

mod common;

use attune_server::browser::sign_user_token;
use common::{NOW_MS, TestServer};
use serde_json::{Value, json};

const ADMIN: &str = "test-admin-key-0123456789-0123456789";
const SITE: &str = "https://site.example";
const VISITOR: &str = "anon-0123456789abcdef0123456789abcdef";

struct BrowserKey {
    key: String,
    signing_secret: String,
}

async fn browser_key(server: &TestServer) -> BrowserKey {
    let created = server
        .ok("POST", "/v1/keys", Some(json!({"name": "site", "kind": "browser", "origins": [format!("{SITE}/")]})))
        .await;
    assert_eq!(created["kind"], "browser");
    assert_eq!(created["origins"], json!([SITE]));
    assert_eq!(created["scopes"], json!(["events:write", "decide"]));
    BrowserKey {
        key: created["key"].as_str().unwrap().to_owned(),
        signing_secret: created["signing_secret"].as_str().unwrap().to_owned(),
    }
}

async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    origin: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = server.client.request(method, format!("{}{path}", server.base));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let json = response.json().await.unwrap_or(Value::Null);
    (status, headers, json)
}

async fn setup() -> (TestServer, BrowserKey) {
    let server = TestServer::start(Some(ADMIN)).await;
    let items: Vec<Value> = (0..8)
        .map(|i| json!({"id": format!("art-{i}"), "kind": "article", "title": format!("Article {i}"), "tags": ["sleep"]}))
        .collect();
    server.ok("PUT", "/v1/items", Some(json!({"items": items}))).await;
    server
        .ok(
            "POST",
            "/v1/events",
            Some(json!({"events": [{"id": "k1", "type": "view", "user": "u-42", "item": "art-1"}]})),
        )
        .await;
    let key = browser_key(&server).await;
    (server, key)
}

#[tokio::test]
async fn cors_answers_only_the_keys_origins() {
    let (server, key) = setup().await;
    let preflight = |origin: &'static str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, format!("{}/v1/decide", server.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight(SITE).await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(allowed.headers()["access-control-allow-origin"], SITE);
    assert!(allowed.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none(), "{:?}", other.headers());
    // A preflight for a route a browser key may not call gets no CORS answer either.
    let export = server
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/v1/users/u-42/export", server.base))
        .header("origin", SITE)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(export.headers().get("access-control-allow-origin").is_none());

    let body = json!({"anonymous_id": VISITOR, "placements": [{"slot": "home_feed", "count": 3}], "explain": true});
    let (status, headers, _) =
        send(&server, reqwest::Method::POST, "/v1/decide", Some(&key.key), Some(SITE), Some(body.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], SITE);
    // The key from a page on another origin: refused, and no CORS header.
    let (status, headers, json) =
        send(&server, reqwest::Method::POST, "/v1/decide", Some(&key.key), Some("https://evil.example"), Some(body))
            .await;
    assert_eq!(status, 403, "{json}");
    assert_eq!(json["error"]["code"], "origin_not_allowed");
    assert!(headers.get("access-control-allow-origin").is_none());
    // A back end's answer carries no CORS header even for the site's origin.
    let (_, headers, _) = send(&server, reqwest::Method::GET, "/v1/keys", Some(ADMIN), Some(SITE), None).await;
    assert!(headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_browser_key_acts_only_for_its_visitor() {
    let (server, key) = setup().await;
    let k = Some(key.key.as_str());
    let o = Some(SITE);
    // Never a profile, an export, an erasure, the keys, a notification plan.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/users/u-42"),
        (reqwest::Method::GET, &format!("/v1/users/{VISITOR}") as &str),
        (reqwest::Method::GET, "/v1/users/u-42/export"),
        (reqwest::Method::DELETE, "/v1/users/u-42"),
        (reqwest::Method::GET, "/v1/keys"),
    ] {
        let (status, _, json) = send(&server, method, path, k, o, None).await;
        assert_eq!(status, 403, "{path}: {json}");
    }
    let (status, _, _) = send(
        &server,
        reqwest::Method::POST,
        "/v1/notifications/plan",
        k,
        o,
        Some(json!({"user": "u-42", "channel": "email"})),
    )
    .await;
    assert_eq!(status, 403);

    // The visitor's own consent, events and decisions.
    let (status, _, json) = send(
        &server,
        reqwest::Method::PUT,
        &format!("/v1/users/{VISITOR}/consent"),
        k,
        o,
        Some(json!({"personalization": true})),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let event = json!({"events": [{"id": "b1", "type": "view", "anonymous_id": VISITOR, "item": "art-2"}]});
    let (status, _, json) = send(&server, reqwest::Method::POST, "/v1/events", k, o, Some(event)).await;
    assert_eq!((status, json["accepted"].as_u64()), (200, Some(1)), "{json}");

    // A known user's consent, events or decisions without a token: refused; nothing stored.
    let (status, _, json) =
        send(&server, reqwest::Method::PUT, "/v1/users/u-42/consent", k, o, Some(json!({"personalization": false})))
            .await;
    assert_eq!((status, json["error"]["code"].as_str()), (403, Some("browser_visitor_only")));
    let poison = json!({"events": [{"id": "p1", "type": "view", "user": "u-42", "item": "art-3"}]});
    let (status, _, json) = send(&server, reqwest::Method::POST, "/v1/events", k, o, Some(poison)).await;
    assert_eq!((status, json["error"]["code"].as_str()), (403, Some("user_token_required")), "{json}");
    let poison = json!({"events": [{"id": "p2", "type": "view", "anonymous_id": "u-42", "item": "art-3"}]});
    let (status, _, json) = send(&server, reqwest::Method::POST, "/v1/events", k, o, Some(poison)).await;
    assert_eq!((status, json["error"]["code"].as_str()), (403, Some("browser_visitor_only")), "{json}");
    let forged =
        json!({"events": [{"id": "p3", "type": "view", "user": "u-42", "item": "art-3", "user_token": "1.00"}]});
    let (status, _, json) = send(&server, reqwest::Method::POST, "/v1/events", k, o, Some(forged)).await;
    assert_eq!((status, json["error"]["code"].as_str()), (403, Some("invalid_user_token")), "{json}");
    let (status, _, _) = send(
        &server,
        reqwest::Method::POST,
        "/v1/decide",
        k,
        o,
        Some(json!({"user": "u-42", "placements": [{"slot": "home_feed", "count": 3}]})),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(server.engine.person("u-42").unwrap().n_events, 1, "nothing reached u-42");

    // Identify: refused without a valid token, merged with one.
    let identify = |token: Option<String>| json!({"anonymous_id": VISITOR, "user": "u-7", "user_token": token});
    let (status, _, json) = send(&server, reqwest::Method::POST, "/v1/identify", k, o, Some(identify(None))).await;
    assert_eq!((status, json["error"]["code"].as_str()), (403, Some("user_token_required")));
    let expires = NOW_MS / 1000 + 3600;
    let wrong = sign_user_token(&key.signing_secret, "u-8", expires);
    let (status, _, json) =
        send(&server, reqwest::Method::POST, "/v1/identify", k, o, Some(identify(Some(wrong)))).await;
    assert_eq!((status, json["error"]["code"].as_str()), (403, Some("invalid_user_token")));
    let expired = sign_user_token(&key.signing_secret, "u-7", NOW_MS / 1000 - 1);
    let (status, _, _) =
        send(&server, reqwest::Method::POST, "/v1/identify", k, o, Some(identify(Some(expired)))).await;
    assert_eq!(status, 403);
    let token = sign_user_token(&key.signing_secret, "u-7", expires);
    let (status, _, json) =
        send(&server, reqwest::Method::POST, "/v1/identify", k, o, Some(identify(Some(token.clone())))).await;
    assert_eq!((status, json["merged_events"].as_u64()), (200, Some(1)), "{json}");
    let (status, _, json) =
        send(&server, reqwest::Method::POST, "/v1/identify", k, o, Some(identify(Some(token.clone())))).await;
    assert_eq!(status, 200, "a repeat is allowed: {json}");
    // A signed-in visitor's events and decisions with the token; the anonymous id is no longer theirs.
    let signed = json!({"events": [{"id": "s1", "type": "view", "user": "u-7", "item": "art-4", "user_token": token}]});
    let (status, _, json) = send(&server, reqwest::Method::POST, "/v1/events", k, o, Some(signed)).await;
    assert_eq!((status, json["accepted"].as_u64()), (200, Some(1)), "{json}");
    let (status, _, json) = send(
        &server,
        reqwest::Method::POST,
        "/v1/decide",
        k,
        o,
        Some(json!({"user": "u-7", "user_token": token, "placements": [{"slot": "home_feed", "count": 3}]})),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert!(json["me_url"].as_str().is_some_and(|url| url.starts_with("/me?token=")), "{json}");
    let again = json!({"events": [{"id": "s2", "type": "view", "anonymous_id": VISITOR, "item": "art-5"}]});
    let (status, _, _) = send(&server, reqwest::Method::POST, "/v1/events", k, o, Some(again)).await;
    assert_eq!(status, 403, "a merged anonymous id is a known person's now");
    // Another site's merge target: a browser cannot hand a known person to itself.
    let other = "anon-ffffffffffffffffffffffffffffffff";
    let steal = json!({"anonymous_id": "u-42", "user": "u-7", "user_token": token});
    let (status, _, _) = send(&server, reqwest::Method::POST, "/v1/identify", k, o, Some(steal)).await;
    assert_eq!(status, 403);
    assert!(server.engine.browser_visitor_allowed(other));
}

#[tokio::test]
async fn beacons_carry_the_key_in_the_query() {
    let (server, key) = setup().await;
    let body = json!({"events": [{"id": "beacon-1", "type": "view", "anonymous_id": VISITOR, "item": "art-1"}]});
    let response = server
        .client
        .post(format!("{}/v1/events?key={}", server.base, key.key))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", SITE)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A back end's key is never taken from the query.
    let admin = server
        .client
        .post(format!("{}/v1/events?key={ADMIN}", server.base))
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 401);
}

#[tokio::test]
async fn keys_are_checked_and_listed() {
    let server = TestServer::start(Some(ADMIN)).await;
    for (body, field) in [
        (json!({"name": "b", "kind": "browser"}), "origins"),
        (json!({"name": "b", "kind": "browser", "origins": []}), "origins"),
        (json!({"name": "b", "kind": "browser", "origins": ["site.example"]}), "origins[0]"),
        (json!({"name": "b", "kind": "browser", "origins": [SITE], "scopes": ["users:read"]}), "scopes[0]"),
        (json!({"name": "b", "kind": "phone", "origins": [SITE]}), "kind"),
        (json!({"name": "b", "scopes": ["decide"], "origins": [SITE]}), "origins"),
    ] {
        let reply = server.call("POST", "/v1/keys", Some(body.clone())).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.json);
        assert_eq!(reply.json["error"]["field"], field, "{body}");
    }
    browser_key(&server).await;
    let keys = server.ok("GET", "/v1/keys", None).await;
    assert_eq!(keys["keys"][0]["kind"], "browser");
    assert_eq!(keys["keys"][0]["origins"], json!([SITE]));
}

#[tokio::test]
async fn the_script_is_cacheable() {
    let server = TestServer::start(Some(ADMIN)).await;
    let response = server.client.get(format!("{}/v1/attune.js", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let version = response.headers()["x-attune-version"].to_str().unwrap().to_owned();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(response.text().await.unwrap().contains("attune.js"));
    let again =
        server.client.get(format!("{}/v1/attune.js", server.base)).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    let versioned = server.client.get(format!("{}/v1/attune.js?v={version}", server.base)).send().await.unwrap();
    assert!(versioned.headers()["cache-control"].to_str().unwrap().contains("immutable"));
}

#[tokio::test]
async fn open_mode_refuses_pages_of_other_sites_without_a_key() {
    let server = TestServer::start(None).await;
    let (status, _, _) =
        send(&server, reqwest::Method::GET, "/v1/keys", None, Some("https://evil.example"), None).await;
    assert_eq!(status, 401);
    let (status, _, _) = send(&server, reqwest::Method::GET, "/v1/keys", None, None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn browser_keys_have_their_own_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(attune_engine::ManualClock::new(NOW_MS));
    let store = attune_store::EmbeddedStore::open(dir.path()).unwrap();
    let engine = std::sync::Arc::new(
        attune_engine::Engine::open(
            std::sync::Arc::new(store),
            std::sync::Arc::clone(&clock) as _,
            attune_engine::EngineConfig::default(),
        )
        .unwrap(),
    );
    // A bucket of two that refills once in a thousand seconds: the third call is refused.
    let state =
        attune_server::AppState::new(std::sync::Arc::clone(&engine), Some(ADMIN), 0.0).with_browser_rate(0.001, 2.0);
    let server = TestServer::start_with(dir, Some(ADMIN), clock, engine, state, Default::default()).await;
    let key = browser_key(&server).await;
    let body = json!({"placements": [{"slot": "home_feed", "count": 1}]});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, _, _) =
            send(&server, reqwest::Method::POST, "/v1/decide", Some(&key.key), Some(SITE), Some(body.clone())).await;
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 429]);
    // The admin key is counted elsewhere.
    let (status, _, _) = send(&server, reqwest::Method::POST, "/v1/decide", Some(ADMIN), None, Some(body)).await;
    assert_eq!(status, 200);
}
