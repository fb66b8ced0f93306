//! Every route × every scope: the route list comes from the OpenAPI document, so a new route is
//! covered as soon as it is documented — and this test fails until the table below says which
//! scopes it accepts. Without a key every protected route answers 401; with a key of one scope
//! it answers 403 (naming the scopes it needs) unless it accepts that scope; `admin` is accepted
//! everywhere. Accepted calls may fail on their (empty) input, but never with 401, 403 or a 5xx.

mod common;

use std::collections::BTreeSet;

use common::TestServer;
use serde_json::json;

const ADMIN: &str = "test-admin-key-0123456789";

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// Anyone: health, readiness, metrics, the OpenAPI document.
    Public,
    /// The `/me` page: a signed link token, never an API key.
    Token,
    /// A key with one of these scopes (or `admin`).
    Scopes(&'static [&'static str]),
    /// A key with every one of these scopes (or `admin`): no single-scope key but admin passes.
    AllOf(&'static [&'static str]),
}

use Access::{AllOf, Public, Scopes, Token};

const SCOPES: [&str; 7] =
    ["events:write", "decide", "catalog:write", "users:read", "users:write", "decisions:read", "admin"];
const DECISIONS_READ: &[&str] = &["decisions:read"];
const USERS_READ_WRITE: &[&str] = &["users:read", "users:write"];
const ADMIN_ONLY: &[&str] = &["admin"];
const CATALOG_WRITE: &[&str] = &["catalog:write"];
const CATALOG_READ: &[&str] = &["catalog:write", "decide"];
const USERS_READ: &[&str] = &["users:read"];
const USERS_WRITE: &[&str] = &["users:write"];
const EVENTS_WRITE: &[&str] = &["events:write"];
const DECIDE: &[&str] = &["decide"];

/// Every documented route and who may call it. Add a line with every new route.
const ROUTES: &[(&str, &str, Access)] = &[
    ("get", "/healthz", Public),
    ("get", "/readyz", Public),
    ("get", "/metrics", Public),
    ("get", "/v1/openapi.json", Public),
    ("get", "/v1/attune.js", Public),
    ("post", "/v1/events", Scopes(EVENTS_WRITE)),
    ("post", "/v1/identify", Scopes(EVENTS_WRITE)),
    ("delete", "/v1/identify/{anonymous_id}", Scopes(ADMIN_ONLY)),
    ("put", "/v1/items", Scopes(CATALOG_WRITE)),
    ("get", "/v1/items/{id}", Scopes(CATALOG_READ)),
    ("delete", "/v1/items/{id}", Scopes(CATALOG_WRITE)),
    ("get", "/v1/schemas", Scopes(CATALOG_READ)),
    ("get", "/v1/schemas/{type}", Scopes(CATALOG_READ)),
    ("put", "/v1/schemas/{type}", Scopes(ADMIN_ONLY)),
    ("get", "/v1/users/{id}", Scopes(USERS_READ)),
    ("delete", "/v1/users/{id}", Scopes(USERS_WRITE)),
    ("put", "/v1/users/{id}/consent", Scopes(USERS_WRITE)),
    ("put", "/v1/users/{id}/preferences", Scopes(USERS_WRITE)),
    ("delete", "/v1/users/{id}/history/{item}", Scopes(USERS_WRITE)),
    ("get", "/v1/users/{id}/export", Scopes(USERS_READ)),
    ("post", "/v1/users/{id}/me-link", AllOf(USERS_READ_WRITE)),
    ("delete", "/v1/users/{id}/me-link", Scopes(USERS_WRITE)),
    ("get", "/v1/erasures/{receipt_id}", Scopes(ADMIN_ONLY)),
    ("post", "/v1/admin/retention/sweep", Scopes(ADMIN_ONLY)),
    ("post", "/v1/admin/backup", Scopes(ADMIN_ONLY)),
    ("post", "/v1/keys", Scopes(ADMIN_ONLY)),
    ("get", "/v1/keys", Scopes(ADMIN_ONLY)),
    ("delete", "/v1/keys/{id}", Scopes(ADMIN_ONLY)),
    ("get", "/v1/audit", Scopes(ADMIN_ONLY)),
    ("get", "/me", Token),
    ("get", "/me/export", Token),
    ("post", "/me/consent", Token),
    ("post", "/me/preferences", Token),
    ("post", "/me/forget", Token),
    ("post", "/me/erase", Token),
    // The decision engine (issue 5).
    ("post", "/v1/decide", Scopes(DECIDE)),
    ("post", "/v1/notifications/plan", Scopes(DECIDE)),
    ("post", "/v1/digest", Scopes(DECIDE)),
    ("get", "/v1/report", Scopes(ADMIN_ONLY)),
    ("put", "/v1/experiments/{id}", Scopes(ADMIN_ONLY)),
    ("get", "/v1/experiments/{id}", Scopes(ADMIN_ONLY)),
    ("get", "/v1/experiments/{id}/results", Scopes(ADMIN_ONLY)),
    ("get", "/v1/experiments", Scopes(ADMIN_ONLY)),
    ("post", "/v1/experiments/{id}/stop", Scopes(ADMIN_ONLY)),
    ("post", "/v1/experiments/{id}/archive", Scopes(ADMIN_ONLY)),
    ("get", "/v1/holdout", Scopes(ADMIN_ONLY)),
    ("put", "/v1/holdout", Scopes(ADMIN_ONLY)),
    ("get", "/v1/items/{id}/similar", Scopes(DECIDE)),
    ("get", "/v1/slots", Scopes(CATALOG_WRITE)),
    ("get", "/v1/slots/{slot}", Scopes(CATALOG_WRITE)),
    ("put", "/v1/slots/{slot}", Scopes(CATALOG_WRITE)),
    ("get", "/v1/slots/{slot}/variants", Scopes(CATALOG_WRITE)),
    ("get", "/v1/editorial/picks", Scopes(CATALOG_WRITE)),
    ("get", "/v1/editorial/picks/{id}", Scopes(CATALOG_WRITE)),
    ("put", "/v1/editorial/picks/{id}", Scopes(CATALOG_WRITE)),
    ("delete", "/v1/editorial/picks/{id}", Scopes(CATALOG_WRITE)),
    ("get", "/v1/rules", Scopes(CATALOG_WRITE)),
    ("get", "/v1/rules/{id}", Scopes(CATALOG_WRITE)),
    ("put", "/v1/rules/{id}", Scopes(CATALOG_WRITE)),
    ("delete", "/v1/rules/{id}", Scopes(CATALOG_WRITE)),
    ("get", "/v1/review/decisions", Scopes(DECISIONS_READ)),
    ("get", "/v1/review/flags", Scopes(CATALOG_WRITE)),
    ("post", "/v1/review/flags", Scopes(CATALOG_WRITE)),
    ("delete", "/v1/review/flags/{item}", Scopes(CATALOG_WRITE)),
    ("get", "/v1/models", Scopes(ADMIN_ONLY)),
    ("post", "/v1/models/train", Scopes(ADMIN_ONLY)),
    ("get", "/v1/models/jobs/{job}", Scopes(ADMIN_ONLY)),
];

/// `/v1/users/{id}/history/{item}` → `/v1/users/probe-1/history/probe-1`.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed path parameter") + start;
        out.push_str("probe-1");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Every (method, path) the OpenAPI document lists.
async fn documented_routes(server: &TestServer) -> BTreeSet<(String, String)> {
    let doc = server.ok("GET", "/v1/openapi.json", None).await;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.insert((method.to_owned(), path.clone()));
            }
        }
    }
    documented
}

/// The table's line for a route, if it has one.
fn access_of(method: &str, path: &str) -> Option<Access> {
    ROUTES.iter().find(|(m, p, _)| *m == method && *p == path).map(|(_, _, access)| *access)
}

#[tokio::test]
async fn every_route_checks_every_scope() {
    let mut server = TestServer::start(Some(ADMIN)).await;
    // A first training, as `attune serve` runs at start: `/readyz` answers 200 from then on.
    server.engine.train().expect("train");
    let documented = documented_routes(&server).await;
    let missing: Vec<String> = documented
        .iter()
        .filter(|(method, path)| access_of(method, path).is_none())
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    assert!(missing.is_empty(), "routes without a line in ROUTES (say who may call them): {missing:#?}");

    let mut keys = Vec::new();
    for scope in SCOPES {
        let key = server.ok("POST", "/v1/keys", Some(json!({"name": scope, "scopes": [scope]}))).await;
        keys.push((scope, key["key"].as_str().expect("a key").to_owned()));
    }

    let mut failures = Vec::new();
    let mut n_checked = 0;
    for (method, path) in &documented {
        let access = access_of(method, path).expect("checked above");
        let url = concrete(path);
        let body = if method == "put" || method == "post" { Some(json!({})) } else { None };
        let upper = method.to_uppercase();

        server.with_key(None);
        let reply = server.call(&upper, &url, body.clone()).await;
        let expected_without_key = match access {
            Public => reply.status < 400,
            Token | Scopes(_) | AllOf(_) => reply.status == 401,
        };
        if !expected_without_key {
            failures.push(format!("{upper} {path} without a key: {} {}", reply.status, reply.json));
        }
        if matches!(access, Scopes(_) | AllOf(_)) && reply.json["error"]["code"] != "unauthorized" {
            failures.push(format!("{upper} {path} without a key: not our error shape: {}", reply.json));
        }

        for (scope, key) in &keys {
            server.with_key(Some(key));
            let reply = server.call(&upper, &url, body.clone()).await;
            n_checked += 1;
            let problem = match access {
                Public => (reply.status >= 400).then(|| "a public route refused a key".to_owned()),
                // A key is not a link token: the page still wants its token.
                Token => (reply.status != 401).then(|| "a key opened the /me page".to_owned()),
                Scopes(accepted) if *scope == "admin" || accepted.contains(scope) => {
                    matches!(reply.status, 401 | 403 | 500..)
                        .then(|| "an accepted scope was refused or failed".to_owned())
                }
                AllOf(_) if *scope == "admin" => {
                    matches!(reply.status, 401 | 403 | 500..).then(|| "admin was refused on an all-of route".to_owned())
                }
                Scopes(accepted) | AllOf(accepted) => {
                    let message = reply.json["error"]["message"].as_str().unwrap_or("");
                    if reply.status != 403 || reply.json["error"]["code"] != "forbidden" {
                        Some("a scope the route does not accept got through".to_owned())
                    } else if !accepted.iter().all(|needed| message.contains(needed)) {
                        Some(format!("the 403 does not name {accepted:?}"))
                    } else {
                        None
                    }
                }
            };
            if let Some(problem) = problem {
                failures.push(format!("{upper} {path} with {scope}: {problem}: {} {}", reply.status, reply.json));
            }
        }
    }
    assert!(n_checked >= 6 * 30, "checked {n_checked} route × scope pairs");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn a_revoked_key_and_an_unknown_key_get_401_everywhere() {
    let mut server = TestServer::start(Some(ADMIN)).await;
    let created = server.ok("POST", "/v1/keys", Some(json!({"name": "gone", "scopes": ["admin"]}))).await;
    server.ok("DELETE", &format!("/v1/keys/{}", created["id"].as_str().unwrap()), None).await;
    let revoked = created["key"].as_str().unwrap().to_owned();
    let documented = documented_routes(&server).await;
    for key in [revoked.as_str(), "atk_not-a-key"] {
        server.with_key(Some(key));
        for (method, path) in &documented {
            if !matches!(access_of(method, path), Some(Scopes(_) | AllOf(_))) {
                continue;
            }
            let body = if method == "put" || method == "post" { Some(json!({})) } else { None };
            let reply = server.call(&method.to_uppercase(), &concrete(path), body).await;
            assert_eq!(reply.status, 401, "{method} {path} with {key}: {}", reply.json);
        }
    }
}
