//! Issue 17, end to end: each attack from the security review, reproduced against the real
//! server. Every test failed before its fix.

mod common;

use std::{sync::Arc, time::Duration};

use attune_engine::{Engine, EngineConfig, ManualClock};
use attune_server::{AppState, server::ServerLimits};
use attune_store::EmbeddedStore;
use common::{NOW_MS, TestServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "test-admin-key-0123456789-0123456789";

async fn key(server: &TestServer, scopes: &[&str]) -> String {
    let created = server.ok("POST", "/v1/keys", Some(json!({"name": "k", "scopes": scopes}))).await;
    created["key"].as_str().unwrap().to_owned()
}

/// A server built by the test: its own state (rate limits, throttle) and limits.
async fn custom_server(
    admin_key: Option<&str>,
    dir: Option<tempfile::TempDir>,
    state: impl FnOnce(AppState) -> AppState,
    limits: ServerLimits,
) -> TestServer {
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let engine =
        Arc::new(Engine::open(Arc::new(store), Arc::clone(&clock) as _, EngineConfig::default()).expect("engine"));
    let app_state = state(AppState::new(Arc::clone(&engine), admin_key, 0.0));
    TestServer::start_with(dir, admin_key, clock, engine, app_state, limits).await
}

fn audit_has(audit: &Value, action: &str, target: &str) -> bool {
    audit["entries"].as_array().unwrap().iter().any(|e| e["action"] == action && e["target"] == target)
}

// ---- HIGH: identify hijacks a known person ----

#[tokio::test]
async fn identify_refuses_to_merge_a_known_person() {
    let mut server = TestServer::start(Some(ADMIN)).await;
    let events = json!({"events": [
        {"id": "e-a", "type": "view", "user": "u-a", "item": "i-1"},
        {"id": "e-b", "type": "view", "user": "u-b", "item": "i-2"},
        {"id": "e-anon", "type": "view", "anonymous_id": "anon-1", "item": "i-3"},
    ]});
    server.ok("POST", "/v1/events", Some(events)).await;
    server.ok("PUT", "/v1/users/u-c/consent", Some(json!({"personalization": true}))).await;
    let ingest = key(&server, &["events:write"]).await;
    server.with_key(Some(&ingest));

    // The attack: any events:write key merges known person B into A.
    let reply = server.call("POST", "/v1/identify", Some(json!({"anonymous_id": "u-b", "user": "u-a"}))).await;
    assert_eq!(reply.status, 409, "{}", reply.json);
    assert_eq!(reply.json["error"]["code"], "identity_conflict");
    assert_eq!(reply.json["error"]["field"], "anonymous_id");
    // A person with consent only (a banner answered) is a person too.
    let reply = server.call("POST", "/v1/identify", Some(json!({"anonymous_id": "u-c", "user": "u-a"}))).await;
    assert_eq!(reply.json["error"]["code"], "identity_conflict");
    // A device still merges, and repeating it changes nothing.
    let merged = server.ok("POST", "/v1/identify", Some(json!({"anonymous_id": "anon-1", "user": "u-a"}))).await;
    assert_eq!(merged["merged_events"], 1);
    server.ok("POST", "/v1/identify", Some(json!({"anonymous_id": "anon-1", "user": "u-a"}))).await;
    // The target of merges is a known person.
    let reply = server.call("POST", "/v1/identify", Some(json!({"anonymous_id": "u-a", "user": "u-b"}))).await;
    assert_eq!(reply.json["error"]["code"], "identity_conflict");
    // Only an admin may force it.
    let reply =
        server.call("POST", "/v1/identify", Some(json!({"anonymous_id": "u-b", "user": "u-a", "force": true}))).await;
    assert_eq!(reply.status, 403, "{}", reply.json);

    server.with_key(Some(ADMIN));
    let b = server.ok("GET", "/v1/users/u-b", None).await;
    assert_eq!(b["id"], "u-b", "B is still B");
    let export = server.ok("GET", "/v1/users/u-a/export", None).await;
    assert!(!export.to_string().contains("e-b"), "A's export holds none of B's events");

    // An admin's explicit merge works, is audited as forced, and can be undone.
    server.ok("POST", "/v1/identify", Some(json!({"anonymous_id": "u-b", "user": "u-a", "force": true}))).await;
    assert_eq!(server.ok("GET", "/v1/users/u-b", None).await["id"], "u-a");
    let audit = server.ok("GET", "/v1/audit", None).await;
    assert!(audit_has(&audit, "identify.merge_forced", "u-b -> u-a"), "{audit}");
    server.ok("DELETE", "/v1/identify/u-b", None).await;
    assert_eq!(server.ok("GET", "/v1/users/u-b", None).await["id"], "u-b");
    assert!(!server.ok("GET", "/v1/users/u-a/export", None).await.to_string().contains("e-b"));

    // Known across a restart (rebuilt from the stored events).
    let mut server = server.restart().await;
    server.with_key(Some(ADMIN));
    let reply = server.call("POST", "/v1/identify", Some(json!({"anonymous_id": "u-b", "user": "u-a"}))).await;
    assert_eq!(reply.json["error"]["code"], "identity_conflict");
}

// ---- MEDIUM: /me links ----

#[tokio::test]
async fn minting_a_me_link_needs_read_and_write_and_is_audited() {
    let mut server = TestServer::start(Some(ADMIN)).await;
    server.ok("PUT", "/v1/users/u-x/consent", Some(json!({"personalization": true}))).await;
    let write_only = key(&server, &["users:write"]).await;
    let read_only = key(&server, &["users:read"]).await;
    let both = key(&server, &["users:read", "users:write"]).await;

    // The attack: a users:write key cannot read the export, but could mint a link that can.
    server.with_key(Some(&write_only));
    assert_eq!(server.call("GET", "/v1/users/u-x/export", None).await.status, 403);
    let reply = server.call("POST", "/v1/users/u-x/me-link", None).await;
    assert_eq!(reply.status, 403, "{}", reply.json);
    assert!(reply.json["error"]["message"].as_str().unwrap().contains("users:read and users:write"));
    server.with_key(Some(&read_only));
    assert_eq!(server.call("POST", "/v1/users/u-x/me-link", None).await.status, 403);

    server.with_key(Some(&both));
    server.ok("POST", "/v1/users/u-x/me-link", None).await;
    server.with_key(Some(ADMIN));
    let audit = server.ok("GET", "/v1/audit", None).await;
    assert!(audit_has(&audit, "users.me_link", "u-x"), "{audit}");
}

fn token_of(link: &Value) -> String {
    link["url"].as_str().unwrap().strip_prefix("/me?token=").unwrap().to_owned()
}

async fn me_consent(server: &TestServer, token: &str) -> u16 {
    let body = format!("token={token}&personalization=on");
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/me/consent", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_me_link_issued_before_an_erasure_writes_nothing_after_it() {
    let server = TestServer::start(Some(ADMIN)).await;
    server.ok("PUT", "/v1/users/u-x/consent", Some(json!({"personalization": true}))).await;
    let token = token_of(&server.ok("POST", "/v1/users/u-x/me-link", None).await);
    assert_eq!(me_consent(&server, &token).await, 303);

    server.ok("DELETE", "/v1/users/u-x", None).await;
    // The attack: the old link set consent for the erased id, which existed again.
    assert_eq!(me_consent(&server, &token).await, 401);
    assert_eq!(server.call("GET", "/v1/users/u-x", None).await.status, 404);
    // Even when the id comes back as a new visitor, the old link stays dead.
    server.ok("PUT", "/v1/users/u-x/consent", Some(json!({"personalization": false}))).await;
    assert_eq!(me_consent(&server, &token).await, 401);
    assert_eq!(server.ok("GET", "/v1/users/u-x", None).await["consent"]["personalization"], false);

    // An explicit revocation ends every link minted so far; a new one works.
    let token = token_of(&server.ok("POST", "/v1/users/u-x/me-link", None).await);
    let second = token_of(&server.ok("POST", "/v1/users/u-x/me-link", None).await);
    assert_eq!(me_consent(&server, &token).await, 303);
    server.ok("DELETE", "/v1/users/u-x/me-link", None).await;
    assert_eq!(me_consent(&server, &token).await, 401);
    assert_eq!(me_consent(&server, &second).await, 401);
    let fresh = token_of(&server.ok("POST", "/v1/users/u-x/me-link", None).await);
    assert_eq!(me_consent(&server, &fresh).await, 303);
    let audit = server.ok("GET", "/v1/audit", None).await;
    assert!(audit_has(&audit, "users.me_link_revoke", "u-x"), "{audit}");
}

// ---- MEDIUM: open mode and DNS rebinding ----

#[tokio::test]
async fn open_mode_answers_only_loopback_hosts_and_its_keys_die_with_keyed_mode() {
    let server = TestServer::start(None).await;
    server.ok("PUT", "/v1/users/u-x/consent", Some(json!({"personalization": true}))).await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    for host in [format!("attacker.example:{port}"), "attacker.example".into(), "localhost.attacker.example".into()] {
        let reply =
            server.client.get(format!("{}/v1/users/u-x/export", server.base)).header("host", &host).send().await;
        let reply = reply.unwrap();
        assert_eq!(reply.status(), 400, "Host {host}");
        let body: Value = reply.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_host");
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let reply = server.client.get(format!("{}/v1/users/u-x", server.base)).header("host", &host).send().await;
        assert_eq!(reply.unwrap().status(), 200, "Host {host}");
    }
    // A key minted while open (perhaps by a rebinding page) stops working once an admin key is set.
    let minted = key(&server, &["admin"]).await;
    let mut keyed = server.restart_with(Some(ADMIN)).await;
    keyed.with_key(Some(&minted));
    assert_eq!(keyed.call("GET", "/v1/users/u-x", None).await.status, 401);
    keyed.with_key(Some(ADMIN));
    let keys = keyed.ok("GET", "/v1/keys", None).await;
    assert_eq!(keys["keys"][0]["minted_open"], true, "{keys}");
    // With a key set, any Host is fine (the key is the protection).
    let reply = keyed
        .client
        .get(format!("{}/v1/users/u-x", keyed.base))
        .bearer_auth(ADMIN)
        .header("host", "attune.example")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
}

// ---- MEDIUM: slow clients ----

async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    // Generous: the server's own timeout (1 s) is what closes it; this only stops a hung test.
    let closed = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server never closed the connection");
    received
}

fn short_limits() -> ServerLimits {
    ServerLimits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_connections: 4,
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let server = custom_server(Some(ADMIN), None, |state| state, short_limits()).await;
    let address = server.base.strip_prefix("http://").unwrap().to_owned();

    // A socket that never finishes its headers is closed.
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
    let received = read_until_closed(&mut stream).await;
    assert!(!String::from_utf8_lossy(&received).contains("200 OK"), "{}", String::from_utf8_lossy(&received));

    // So is a kept-alive connection that sits idle after its request.
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let received = read_until_closed(&mut stream).await;
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&received));

    // A body that never arrives gets a 408 in our error shape.
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"events\": ["
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let received = String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned();
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(received.contains("\"request_timeout\""), "{received}");

    // The connection cap: with every slot taken, a new client waits until one frees.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    let waiting = tokio::spawn({
        let base = server.base.clone();
        async move { reqwest::get(format!("{base}/healthz")).await.map(|r| r.status().as_u16()) }
    });
    drop(held);
    assert_eq!(waiting.await.unwrap().unwrap(), 200);
}

/// Oversized headers are refused without taking the server down (hyper bounds a connection's
/// read buffer at about 400 KiB, so a connection costs at most that plus its task), and a flood
/// of connections far past the cap, each trickling headers, only queues: once the header
/// deadline cuts them, an honest client is served.
#[tokio::test]
async fn oversized_headers_and_connection_floods_are_bounded() {
    let server = custom_server(Some(ADMIN), None, |state| state, short_limits()).await;
    let address = server.base.strip_prefix("http://").unwrap().to_owned();

    // One header of 1 MiB: refused (431) or cut, never served.
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let big = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
    let _ = stream.write_all(big.as_bytes()).await;
    let received = String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned();
    assert!(!received.contains("200 OK"), "{received}");
    assert!(received.is_empty() || received.starts_with("HTTP/1.1 431"), "{received}");

    // Too many headers: refused.
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let _ = stream.write_all(format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{many}\r\n").as_bytes()).await;
    let received = String::from_utf8_lossy(&read_until_closed(&mut stream).await).into_owned();
    assert!(!received.contains("200 OK"), "{received}");

    // 50 connections against a cap of 4, each sending part of its headers and stalling.
    let mut flood = Vec::new();
    for _ in 0..50 {
        let address = address.clone();
        flood.push(tokio::spawn(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else { return };
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await;
            let mut buffer = [0u8; 256];
            // Held until the server cuts it (header deadline) or, past the cap, until it is
            // accepted and then cut.
            let _ = tokio::time::timeout(Duration::from_secs(120), stream.read(&mut buffer)).await;
        }));
    }
    let honest = reqwest::Client::new()
        .get(format!("{}/healthz", server.base))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("an honest client is served once the flood is cut off");
    assert_eq!(honest.status(), 200);
    for task in flood {
        task.await.unwrap();
    }
}

// ---- LOW-MEDIUM: forget, consent withdrawal and retention leave bytes behind ----

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

#[tokio::test]
async fn forget_withdrawal_and_retention_purge_the_bytes_within_the_bound() {
    let server = TestServer::start(Some(ADMIN)).await;
    server
        .ok(
            "PUT",
            "/v1/schemas/note",
            Some(json!({"purpose": "personalization", "properties": {"text": "string"}, "retention_days": 1})),
        )
        .await;
    server.ok("PUT", "/v1/users/u-x/consent", Some(json!({"personalization": true, "analytics": false}))).await;
    let events = json!({"events": [
        {"id": "n-1", "type": "note", "user": "u-x", "item": "i-1", "properties": {"text": "forgotten-7d1e93ab"}},
        {"id": "n-2", "type": "note", "user": "u-x", "item": "i-2", "properties": {"text": "withdrawn-5c2f80de"}},
        {"id": "n-3", "type": "note", "user": "u-y", "item": "i-3", "properties": {"text": "expired-9a4b17c3"}},
    ]});
    server.ok("POST", "/v1/events", Some(events)).await;
    let dir = server.dir.path().to_path_buf();
    server.engine.store().purge().unwrap();
    for marker in ["forgotten-7d1e93ab", "withdrawn-5c2f80de", "expired-9a4b17c3"] {
        assert!(!files_holding(&dir, marker).is_empty(), "{marker} is on disk to begin with");
    }

    // Forget: the response says by when the bytes go.
    let forgot = server.ok("DELETE", "/v1/users/u-x/history/i-1", None).await;
    let purge_by = attune_core::validate::parse_ts_ms(forgot["purge_by"].as_str().unwrap()).unwrap();
    assert!(purge_by <= NOW_MS + 10 * 60 * 1000, "{forgot}");
    // Withdrawal of personalization (analytics already off): the note is deleted.
    server.ok("PUT", "/v1/users/u-x/consent", Some(json!({"personalization": false, "analytics": false}))).await;
    // Retention: u-y's note expires after a day.
    server.clock.advance(2 * 86_400_000);
    let swept = server.ok("POST", "/v1/admin/retention/sweep", None).await;
    assert_eq!(swept["events_deleted"], 1, "{swept}");
    assert!(swept["purge_by"].is_string(), "{swept}");
    let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("attune_purge_due_timestamp_seconds"), "reported in /metrics");

    // The periodic purge (checked every 10 s in `attune serve`) makes them physical once due.
    assert!(!server.engine.purge_if_due(NOW_MS).unwrap(), "not before it is due");
    assert!(server.engine.purge_if_due(server.engine.now_ms() + 10 * 60 * 1000).unwrap());
    for marker in ["forgotten-7d1e93ab", "withdrawn-5c2f80de", "expired-9a4b17c3"] {
        assert_eq!(files_holding(&dir, marker), Vec::<String>::new(), "{marker} left the store's files");
    }
    assert_eq!(server.engine.purge_due_ms().unwrap(), None);
}

// ---- LOW: console sessions, CSRF, throttling, rate limits ----

fn cookie_value(headers: &reqwest::header::HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().split_once('=').unwrap().1.to_owned(), v.to_owned()))
}

fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn post_form(base: &str, path: &str, cookies: &str, body: &str, proto: Option<&str>) -> reqwest::Response {
    let mut request = browser()
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookies)
        .body(body.to_owned());
    if let Some(proto) = proto {
        request = request.header("x-forwarded-proto", proto);
    }
    request.send().await.unwrap()
}

async fn get_page(base: &str, path: &str, cookies: &str) -> (u16, String) {
    let reply = browser().get(format!("{base}{path}")).header("cookie", cookies).send().await.unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}

/// Signs in and returns the session cookie and the page's CSRF token.
async fn sign_in(base: &str, secret: &str, proto: Option<&str>) -> (String, String, String) {
    let login = browser().get(format!("{base}/console/login")).send().await.unwrap();
    let (login_cookie, _) = cookie_value(login.headers(), "attune_login").expect("a sign-in form cookie");
    let csrf = hidden_csrf(&login.text().await.unwrap());
    let reply = post_form(
        base,
        "/console/login",
        &format!("attune_login={login_cookie}"),
        &format!("csrf={csrf}&key={secret}"),
        proto,
    )
    .await;
    assert_eq!(reply.status(), 303);
    let (session, set_cookie) = cookie_value(reply.headers(), "attune_console").expect("a session cookie");
    let cookies = format!("attune_console={session}");
    let (_, page) = get_page(base, "/console/editorial", &cookies).await;
    (cookies, hidden_csrf(&page), set_cookie)
}

#[tokio::test]
async fn the_console_cookie_is_a_session_with_csrf_tokens() {
    let server = TestServer::start(Some(ADMIN)).await;
    server.ok("PUT", "/v1/items", Some(json!({"items": [{"id": "i-1", "kind": "article", "title": "One"}]}))).await;
    let base = server.base.clone();

    let (cookies, csrf, set_cookie) = sign_in(&base, ADMIN, None).await;
    // The attack: the cookie held the raw key.
    assert!(!set_cookie.contains(ADMIN), "{set_cookie}");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict") && set_cookie.contains("Max-Age=")
    );
    assert!(!set_cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let (_, _, behind_tls) = sign_in(&base, ADMIN, Some("https")).await;
    assert!(behind_tls.contains("; Secure"), "{behind_tls}");

    // Every form carries the token, sign-out included.
    let (_, page) = get_page(&base, "/console/editorial", &cookies).await;
    let forms = page.matches("<form").count();
    let posting = page.matches("method=\"post\"").count();
    assert!(posting >= 2 && page.matches("name=\"csrf\"").count() == posting, "{forms} forms: {page}");
    assert!(page.contains("action=\"/console/logout\""));

    // A form without the token (a missing Sec-Fetch-Site passed before) or with a wrong one is refused.
    let pick = "id=p-1&item=i-1";
    assert_eq!(post_form(&base, "/console/picks", &cookies, pick, None).await.status(), 403);
    assert_eq!(post_form(&base, "/console/picks", &cookies, &format!("csrf=0{csrf}&{pick}"), None).await.status(), 403);
    assert_eq!(server.call("GET", "/v1/editorial/picks/p-1", None).await.status, 404);
    assert_eq!(post_form(&base, "/console/picks", &cookies, &format!("csrf={csrf}&{pick}"), None).await.status(), 303);
    assert_eq!(server.call("GET", "/v1/editorial/picks/p-1", None).await.status, 200);

    // Signing out needs the token too, and ends the session on the server.
    assert_eq!(post_form(&base, "/console/logout", &cookies, "", None).await.status(), 403);
    assert_eq!(get_page(&base, "/console", &cookies).await.0, 200, "still signed in");
    assert_eq!(post_form(&base, "/console/logout", &cookies, &format!("csrf={csrf}"), None).await.status(), 303);
    assert_eq!(get_page(&base, "/console", &cookies).await.0, 303, "the old cookie opens nothing");

    // Revoking the key ends its sessions.
    let created = server.ok("POST", "/v1/keys", Some(json!({"name": "editor", "scopes": ["admin"]}))).await;
    let (cookies, _, _) = sign_in(&base, created["key"].as_str().unwrap(), None).await;
    assert_eq!(get_page(&base, "/console", &cookies).await.0, 200);
    server.ok("DELETE", &format!("/v1/keys/{}", created["id"].as_str().unwrap()), None).await;
    assert_eq!(get_page(&base, "/console", &cookies).await.0, 303);
}

#[tokio::test]
async fn failed_sign_ins_and_unknown_keys_are_throttled_per_address() {
    let mut server = custom_server(
        Some(ADMIN),
        None,
        |state| state.with_auth_failures(5, Duration::from_secs(3600)),
        ServerLimits::default(),
    )
    .await;
    // The attack: 300 wrong tries got 300 × 401, never a 429.
    server.with_key(Some("atk_wrong"));
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(server.call("GET", "/v1/users/u-x", None).await.status);
    }
    assert_eq!(statuses[..5], [401; 5]);
    let reply = server.call("GET", "/v1/users/u-x", None).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json["error"]["code"], "rate_limited");
    assert!(reply.headers.contains_key("retry-after"));
    // Even the right key waits out the window from that address.
    server.with_key(Some(ADMIN));
    assert_eq!(server.call("GET", "/v1/users/u-x", None).await.status, 429);

    // Console sign-in counts the same way (its own server, so its own counts).
    let server = custom_server(
        Some(ADMIN),
        None,
        |state| state.with_auth_failures(5, Duration::from_secs(3600)),
        ServerLimits::default(),
    )
    .await;
    let login = browser().get(format!("{}/console/login", server.base)).send().await.unwrap();
    let (login_cookie, _) = cookie_value(login.headers(), "attune_login").unwrap();
    let csrf = hidden_csrf(&login.text().await.unwrap());
    let cookies = format!("attune_login={login_cookie}");
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let reply =
            post_form(&server.base, "/console/login", &cookies, &format!("csrf={csrf}&key=wrong-guess"), None).await;
        statuses.push(reply.status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5]);
    assert_eq!(statuses[6], 429, "{statuses:?}");
}

#[tokio::test]
async fn rate_limits_cover_the_admin_key_the_console_and_me() {
    // A rate so low that nothing refills during the test: only the burst (10) passes.
    let mut server =
        custom_server(Some(ADMIN), None, |state| rate_limited(state, 0.0001), ServerLimits::default()).await;
    server.ok("PUT", "/v1/users/u-x/consent", Some(json!({"personalization": true}))).await;
    let link = server.ok("POST", "/v1/users/u-x/me-link", None).await;
    server.with_key(Some(ADMIN));
    let mut limited = false;
    for _ in 0..40 {
        if server.call("GET", "/v1/users/u-x", None).await.status == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "the admin key is no longer exempt");

    let mut me_limited = false;
    for _ in 0..40 {
        let reply = browser().get(format!("{}{}", server.base, link["url"].as_str().unwrap())).send().await.unwrap();
        if reply.status() == 429 {
            me_limited = true;
            break;
        }
    }
    assert!(me_limited, "/me is limited per address");

    let mut console_limited = false;
    for _ in 0..40 {
        if get_page(&server.base, "/console/login", "").await.0 == 429 {
            console_limited = true;
            break;
        }
    }
    assert!(console_limited, "the console is limited");
}

fn rate_limited(state: AppState, per_second: f64) -> AppState {
    let AppState { engine, auth, metrics, scheduler, failures, sessions, browser_limiter, backup_dir, .. } = state;
    let admin_rate = per_second * attune_server::ADMIN_RATE_FACTOR;
    AppState {
        engine,
        auth,
        metrics,
        scheduler,
        failures,
        sessions,
        browser_limiter,
        backup_dir,
        limiter: Arc::new(attune_server::limits::RateLimiter::new(per_second, 10.0)),
        admin_limiter: Arc::new(attune_server::limits::RateLimiter::new(admin_rate, 20.0)),
    }
}

// ---- LOW: the decision log needs its own scope ----

#[tokio::test]
async fn the_decision_log_needs_decisions_read() {
    let mut server = TestServer::start(Some(ADMIN)).await;
    let catalog = key(&server, &["catalog:write"]).await;
    let reader = key(&server, &["decisions:read"]).await;
    server.with_key(Some(&catalog));
    let reply = server.call("GET", "/v1/review/decisions", None).await;
    assert_eq!(reply.status, 403, "catalog:write no longer reads user ids and reasons: {}", reply.json);
    assert!(reply.json["error"]["message"].as_str().unwrap().contains("decisions:read"));
    server.with_key(Some(&reader));
    server.ok("GET", "/v1/review/decisions", None).await;
    server.with_key(Some(ADMIN));
    server.ok("GET", "/v1/review/decisions", None).await;
}

// ---- INFO ----

#[tokio::test]
async fn ids_refuse_bidi_and_zero_width_characters() {
    let server = TestServer::start(Some(ADMIN)).await;
    let events = json!({"events": [
        {"id": "e-1", "type": "view", "user": "u-\u{202E}mitciv", "item": "i-1"},
        {"id": "e-2", "type": "view", "user": "u\u{200B}-1", "item": "i-1"},
        {"id": "e-3", "type": "view", "user": "u-1", "item": "i-\u{2066}1"},
    ]});
    let reply = server.ok("POST", "/v1/events", Some(events)).await;
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(reply["rejected"].as_array().unwrap().len(), 3);
    let reply = server.call("GET", "/v1/users/u-%E2%80%AEmitciv", None).await;
    assert_eq!((reply.status, reply.json["error"]["code"].as_str()), (400, Some("invalid_id")));
    let reply = server.call("PUT", "/v1/users/u-%E2%80%8B1/consent", Some(json!({}))).await;
    assert_eq!(reply.json["error"]["code"], "invalid_id");
}

#[tokio::test]
async fn errors_never_echo_input_values() {
    let server = TestServer::start(Some(ADMIN)).await;
    let secret = "alice@example.com";
    let bodies = [
        ("PUT", "/v1/users/u-1/consent", json!({"personalization": secret})),
        ("PUT", "/v1/users/u-1/preferences", json!({"goals": secret})),
        ("POST", "/v1/identify", json!({"anonymous_id": 7, "user": secret})),
        ("POST", "/v1/decide", json!({"user": "u-1", "placements": [{"slot": "s", "count": secret}]})),
    ];
    for (method, path, body) in bodies {
        let reply = server.call(method, path, Some(body)).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.json);
        assert!(!reply.json.to_string().contains(secret), "{path} echoed the input: {}", reply.json);
    }
    let reply = server.raw("POST", "/v1/events", Some(&format!("text/{secret}")), b"{}".to_vec()).await;
    assert_eq!(reply.status, 415);
    assert!(!reply.json.to_string().contains(secret), "{}", reply.json);
    let reply = server.call("GET", &format!("/v1/users/{secret}"), None).await;
    assert_eq!(reply.status, 404);
    assert!(!reply.json.to_string().contains(secret), "{}", reply.json);
    let reply = server.call("GET", &format!("/v1/audit?since={secret}"), None).await;
    assert!(!reply.json.to_string().contains(secret), "{}", reply.json);
}

#[tokio::test]
async fn every_4xx_is_json_even_for_a_raw_angle_bracket_in_the_path() {
    let server = TestServer::start(Some(ADMIN)).await;
    let address = server.base.strip_prefix("http://").unwrap().to_owned();
    for path in ["/v1/users/<script>", "/v1/users/a\"b", "/v1/items/{x}"] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).await.unwrap();
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 4"), "{path}: {text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        assert!(json["error"]["code"].is_string(), "{path}: not JSON: {text}");
    }
}
