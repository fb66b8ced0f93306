//! A small W3C WebDriver client for the browser tests: Debian's Chromium driven by ChromeDriver,
//! and Debian's Firefox ESR driven by geckodriver (`scripts/ci-packages.sh` installs all of them).
//!
//! Without a browser and its driver a test says so and passes, except under CI (`CI` set), where
//! it fails: CI must really run it.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Which browser a test drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Chromium,
    Firefox,
}

impl Engine {
    fn binary(self) -> &'static str {
        match self {
            Engine::Chromium => "/usr/bin/chromium",
            Engine::Firefox => "/usr/bin/firefox-esr",
        }
    }

    fn driver(self) -> String {
        match self {
            Engine::Chromium => "chromedriver".to_owned(),
            // `cargo install geckodriver` puts it in ~/.cargo/bin or the CI cache; PATH wins.
            Engine::Firefox => std::env::var("GECKODRIVER").unwrap_or_else(|_| "geckodriver".to_owned()),
        }
    }

    fn capabilities(self, profile: &std::path::Path) -> Value {
        match self {
            Engine::Chromium => json!({
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": self.binary(),
                    "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display())]
                }
            }),
            Engine::Firefox => json!({
                "browserName": "firefox",
                "moz:firefoxOptions": {
                    "binary": self.binary(),
                    "args": ["-headless", "-profile", profile.display().to_string()],
                    // The machine has no outside network: no update, telemetry or captive-portal calls.
                    "prefs": {
                        "app.update.enabled": false,
                        "browser.shell.checkDefaultBrowser": false,
                        "datareporting.policy.dataSubmissionEnabled": false,
                        "network.captive-portal-service.enabled": false,
                        "network.connectivity-service.enabled": false,
                        "toolkit.telemetry.enabled": false
                    }
                }
            }),
        }
    }
}

/// A WebDriver session: a handful of the protocol's commands, over HTTP+JSON.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(engine: Engine, driver: &str) -> Browser {
        let http = reqwest::Client::new();
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({"capabilities": {"alwaysMatch": engine.capabilities(profile.path())}});
        let answer: Value = http
            .post(format!("{driver}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let session =
            answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}")).to_owned();
        Browser { http, session: format!("{driver}/session/{session}"), _profile: profile }
    }

    /// Runs a command; `Err` with the driver's answer when it reports an error.
    pub async fn try_command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let answer: Value = request.send().await.expect("webdriver").json().await.expect("json");
        if answer["value"].get("error").is_some() { Err(answer) } else { Ok(answer["value"].clone()) }
    }

    pub async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body).await.unwrap_or_else(|answer| panic!("webdriver {path}: {answer}"))
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The page's visible text (empty while a page is loading).
    pub async fn text(&self) -> String {
        match self.run("return document.body ? document.body.innerText : '';").await {
            Value::String(text) => text,
            _ => String::new(),
        }
    }

    /// Waits (up to 10 s) until the page's text holds `needle`, as a person would wait for a
    /// form's answer to load, and returns the text; panics with the text otherwise.
    pub async fn wait_for(&self, needle: &str) -> String {
        let mut text = String::new();
        for _ in 0..100 {
            text = self.text().await;
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page never showed {needle:?}; it shows:\n{text}");
    }

    pub async fn find(&self, css: &str) -> String {
        let found =
            self.command(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({"text": text}))).await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    /// Runs a script in the page and returns its value (`Null` while a page is loading).
    pub async fn run(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        self.try_command(reqwest::Method::POST, "/execute/sync", Some(body)).await.unwrap_or(Value::Null)
    }

    /// Runs an asynchronous script (it calls `arguments[arguments.length - 1]` with its answer).
    pub async fn run_async(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        self.command(reqwest::Method::POST, "/execute/async", Some(body)).await
    }

    /// Waits (up to 20 s) until `script` returns something truthy, and returns it.
    pub async fn wait_until(&self, what: &str, script: &str) -> Value {
        for _ in 0..200 {
            let value = self.run(script).await;
            if !matches!(value, Value::Null | Value::Bool(false)) && value != json!("") && value != json!(0) {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page never showed {what}; it shows:\n{}", self.text().await);
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

/// A WebDriver server, started as the leader of a process group of its own: killed with that
/// group, so the browser it started goes too.
pub struct Driver {
    child: Child,
    pub url: String,
    pub engine: Engine,
}

impl Driver {
    /// Starts `engine`'s driver on a free port and waits until it answers; `None` (the test is
    /// skipped) when the browser or its driver is missing, except under CI.
    pub async fn start(engine: Engine) -> Option<Driver> {
        let driver = engine.driver();
        if !std::path::Path::new(engine.binary()).exists() || Command::new(&driver).arg("--version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the browser tests: {} and {driver} are missing (scripts/ci-packages.sh installs them)",
                engine.binary()
            );
            eprintln!("SKIPPED: no {} or {driver} here (scripts/ci-packages.sh installs them)", engine.binary());
            return None;
        }
        let port = free_port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {driver}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let driver_process = Driver { child, url: url.clone(), engine };
        for _ in 0..100 {
            if let Ok(answer) = reqwest::get(format!("{url}/status")).await
                && answer.status().is_success()
            {
                return Some(driver_process);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{driver} did not answer on {url}");
    }

    /// A new browser session (a fresh profile: no cookies, no storage).
    pub async fn browser(&self) -> Browser {
        Browser::start(self.engine, &self.url).await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // `--` first: procps' kill would read `-<pgid>` as an option.
        let _ = Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}
