//! A real server on a random loopback port, with its own data directory, for end-to-end tests.

#![allow(dead_code)]

use std::sync::Arc;

use attune_engine::{Engine, EngineConfig, ManualClock};
use attune_server::AppState;
use attune_store::EmbeddedStore;
use serde_json::Value;

/// 2026-11-28T08:00:00Z: tests run on a fixed clock.
pub const NOW_MS: i64 = 1_795_852_800_000;

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub engine: Arc<Engine>,
    pub dir: tempfile::TempDir,
    key: Option<String>,
    admin_key: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub struct Reply {
    pub status: u16,
    pub json: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl TestServer {
    pub async fn start(admin_key: Option<&str>) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, admin_key).await
    }

    pub async fn start_in(dir: tempfile::TempDir, admin_key: Option<&str>) -> TestServer {
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let store = EmbeddedStore::open(dir.path()).expect("open store");
        let engine = Arc::new(
            Engine::open(Arc::new(store), Arc::clone(&clock) as _, EngineConfig::default()).expect("open engine"),
        );
        // Failed authentications are not throttled here: tests send many unknown keys on purpose
        // (`tests/security.rs` checks the throttle).
        let state =
            AppState::new(Arc::clone(&engine), admin_key, 0.0).with_auth_failures(0, std::time::Duration::from_secs(1));
        Self::start_with(dir, admin_key, clock, engine, state, attune_server::server::ServerLimits::default()).await
    }

    /// A server over an engine and a state the test built.
    pub async fn start_with(
        dir: tempfile::TempDir,
        admin_key: Option<&str>,
        clock: Arc<ManualClock>,
        engine: Arc<Engine>,
        state: AppState,
        limits: attune_server::server::ServerLimits,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            attune_server::server::serve(listener, attune_server::app(state), limits, async move {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        TestServer {
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            clock,
            engine,
            dir,
            key: admin_key.map(str::to_owned),
            admin_key: admin_key.map(str::to_owned),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server, closes the store, and starts a new server on the same data directory.
    pub async fn restart(self) -> TestServer {
        let admin_key = self.admin_key.clone();
        self.restart_with(admin_key.as_deref()).await
    }

    /// [`TestServer::restart`] with another admin key (or none: open mode).
    pub async fn restart_with(self, admin_key: Option<&str>) -> TestServer {
        let admin_key = admin_key.map(str::to_owned);
        let TestServer { client, engine, dir, stop, task, .. } = self;
        drop(client);
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(task) = task {
            task.await.expect("server task");
        }
        assert_eq!(std::sync::Arc::strong_count(&engine), 1, "the server released the engine");
        drop(engine);
        TestServer::start_in(dir, admin_key.as_deref()).await
    }

    /// Same server, another key for the next requests.
    pub fn with_key(&mut self, key: Option<&str>) {
        self.key = key.map(str::to_owned);
    }

    pub async fn raw(&self, method: &str, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.body(body).send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, json, headers }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        match body {
            Some(body) => self.raw(method, path, Some("application/json"), serde_json::to_vec(&body).unwrap()).await,
            None => self.raw(method, path, None, Vec::new()).await,
        }
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = self.call(method, path, body).await;
        assert!(reply.status == 200, "{method} {path}: {} {}", reply.status, reply.json);
        reply.json
    }
}

/// One bad request and the error it must get.
pub struct Case {
    pub name: &'static str,
    pub method: &'static str,
    pub path: String,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    pub status: u16,
    pub code: &'static str,
    pub field: Option<&'static str>,
}

/// A case with a raw body.
pub fn raw(
    name: &'static str,
    method: &'static str,
    path: &str,
    content_type: Option<&'static str>,
    body: &[u8],
    status: u16,
    code: &'static str,
) -> Case {
    Case { name, method, path: path.to_owned(), content_type, body: body.to_vec(), status, code, field: None }
}

/// The case, also naming the field at fault.
pub fn field(mut case: Case, field: &'static str) -> Case {
    case.field = Some(field);
    case
}

/// Sends every case; returns a line for each one whose answer was not the expected status, code,
/// field and a non-empty message.
pub async fn failed_cases(server: &TestServer, cases: Vec<Case>) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let reply = server.raw(case.method, &case.path, case.content_type, case.body.clone()).await;
        let code = reply.json["error"]["code"].as_str().unwrap_or("<none>");
        let message = reply.json["error"]["message"].as_str().unwrap_or("");
        let got_field = reply.json["error"]["field"].as_str();
        if reply.status != case.status
            || code != case.code
            || message.is_empty()
            || case.field.is_some_and(|f| Some(f) != got_field)
        {
            failures.push(format!(
                "{}: expected {} {} {:?}, got {} {}",
                case.name, case.status, case.code, case.field, reply.status, reply.json
            ));
        }
    }
    failures
}

/// Signs in to the console with `secret` (an admin key) and returns the HTML of `path`.
pub async fn console_page(base: &str, secret: &str, path: &str) -> String {
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = |headers: &reqwest::header::HeaderMap, name: &str| {
        headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap().to_owned())
            .expect("the cookie")
    };
    let login = browser.get(format!("{base}/console/login")).send().await.unwrap();
    let login_cookie = cookie(login.headers(), "attune_login");
    let html = login.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    let csrf = html[at..].split('"').next().unwrap().to_owned();
    let reply = browser
        .post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &login_cookie)
        .body(format!("csrf={csrf}&key={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 303, "signed in");
    let session = cookie(reply.headers(), "attune_console");
    browser.get(format!("{base}{path}")).header("cookie", session).send().await.unwrap().text().await.unwrap()
}
