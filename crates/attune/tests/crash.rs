//! `kill -9` at any moment loses no acknowledged event: run `attune serve` as a child, send batches
//! from several clients, record what was acknowledged, kill the process mid-stream, restart it on
//! the same data directory, and re-send everything acknowledged — every one must come back as a
//! duplicate (it is on disk), across several kills at different moments.

mod support;

use std::{
    path::Path,
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;

fn start(data: &Path) -> (Child, String) {
    let mut command = support::attune(&["serve", "--listen", "127.0.0.1:0", "--data"]);
    command.arg(data).env_remove("ATTUNE_ADMIN_KEY").stderr(Stdio::null());
    support::spawn_serve(&mut command)
}

fn batch(client: usize, round: usize, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            json!({"id": format!("k{round}-{client}-{i}"), "type": "view", "user": format!("u-{}", i % 50),
                   "item": format!("i-{}", i % 97)})
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    let mut acknowledged: Vec<serde_json::Value> = Vec::new();
    for (round, kill_after_ms) in [150u64, 400, 900].into_iter().enumerate() {
        let (mut child, address) = start(dir.path());
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut senders = Vec::new();
        for client in 0..4 {
            let (http, address, acked) = (http.clone(), address.clone(), Arc::clone(&acked));
            senders.push(tokio::spawn(async move {
                for b in 0.. {
                    let events = batch(client, round * 10_000 + b, 200);
                    let sent = http
                        .post(format!("{address}/v1/events"))
                        .json(&json!({ "events": events }))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    let Ok(response) = sent else { return };
                    if !response.status().is_success() {
                        return;
                    }
                    let Ok(out) = response.json::<serde_json::Value>().await else { return };
                    assert_eq!(out["accepted"], 200, "{out}");
                    acked.lock().expect("lock").extend(events);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        for sender in senders {
            sender.await.expect("sender");
        }
        acknowledged.extend(acked.lock().expect("lock").drain(..));
        assert!(!acknowledged.is_empty(), "round {round} acknowledged something before the kill");
    }

    let (child, address) = start(dir.path());
    let _server = support::Killed(child);
    let mut duplicates = 0u64;
    for chunk in acknowledged.chunks(1000) {
        let out: serde_json::Value = http
            .post(format!("{address}/v1/events"))
            .json(&json!({ "events": chunk }))
            .send()
            .await
            .expect("resend")
            .json()
            .await
            .expect("answer");
        duplicates += out["duplicates"].as_u64().expect("duplicates");
    }
    assert_eq!(duplicates, acknowledged.len() as u64, "every acknowledged event was on disk");
}
