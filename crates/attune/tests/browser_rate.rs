//! `attune serve --browser-rate-limit`: a browser key's requests per visitor address are limited
//! at the rate the operator sets, and 0 turns the limit off (`--rate-limit 0` does not reach
//! browser keys: they are public, and their limit is their own).

mod support;

use std::process::Stdio;

use serde_json::{Value, json};

const ADMIN: &str = "browser-rate-admin-key-0123456789abcdef";
const SITE: &str = "https://site.example";

/// Starts a server with `--browser-rate-limit rate`, makes a browser key, sends `n` decisions
/// with it from one address, and returns their statuses.
async fn statuses(rate: &str, n: usize) -> Vec<u16> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = support::attune(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rate-limit",
        "0",
        "--browser-rate-limit",
        rate,
        "--data",
    ]);
    command.arg(dir.path()).env("ATTUNE_ADMIN_KEY", ADMIN).stderr(Stdio::null());
    let (child, address) = support::spawn_serve(&mut command);
    let _server = support::Killed(child);
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{address}/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "site", "kind": "browser", "origins": [SITE]}))
        .send()
        .await
        .expect("create a key")
        .json()
        .await
        .expect("key JSON");
    let key = created["key"].as_str().expect("a browser key").to_owned();
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        let reply = http
            .post(format!("{address}/v1/decide"))
            .bearer_auth(&key)
            .header("Origin", SITE)
            .json(&json!({"placements": [{"slot": "home_feed", "count": 1}]}))
            .send()
            .await
            .expect("decide");
        statuses.push(reply.status().as_u16());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_rate_limit_is_the_operators_and_zero_turns_it_off() {
    // 1 a second with a burst of 10: of 30 calls in a row, the first ten pass and some are refused.
    let limited = statuses("1", 30).await;
    assert!(limited[..10].iter().all(|&s| s == 200), "{limited:?}");
    assert!(limited.contains(&429), "{limited:?}");
    // 0: past the default burst of 60 (at 20 a second), nothing is refused.
    let unlimited = statuses("0", 120).await;
    assert!(unlimited.iter().all(|&s| s == 200), "{unlimited:?}");
}

#[test]
fn a_rate_that_is_not_a_number_of_requests_per_second_is_refused() {
    for rate in ["-1", "NaN", "inf"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = format!("--browser-rate-limit={rate}");
        let out = support::attune(&["serve", "--listen", "127.0.0.1:0", &flag, "--data"])
            .arg(dir.path())
            .env("ATTUNE_ADMIN_KEY", ADMIN)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{rate} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--browser-rate-limit"), "{rate}: {stderr}");
    }
}
