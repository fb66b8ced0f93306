//! Backup while serving, restore, and erasures that survive the restore: back up, erase a person,
//! restore the backup (which still holds them), start — the person stays erased, by a second
//! erasure the erasure ledger drives, with its own receipt in the audit log.

mod support;

use std::{
    path::Path,
    process::{Child, Stdio},
};

use serde_json::{Value, json};

fn start(data: &Path, backups: &Path) -> (Child, String) {
    let mut command = support::attune(&["serve", "--listen", "127.0.0.1:0", "--data"]);
    command.arg(data).arg("--backup-dir").arg(backups).env_remove("ATTUNE_ADMIN_KEY").stderr(Stdio::null());
    support::spawn_serve(&mut command)
}

fn events(user: &str, n: usize) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("{user}-e{i}"), "type": "view", "user": user, "item": format!("i-{i}")}))
        .collect();
    json!({ "events": events })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_erased_after_a_backup_stays_erased_after_restoring_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let http = reqwest::Client::new();
    let (child, address) = start(&data, &backups);
    let mut server = support::Killed(child);
    for user in ["u-1", "u-2"] {
        let out: Value = http
            .post(format!("{address}/v1/events"))
            .json(&events(user, 20))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(out["accepted"], 20, "{out}");
    }

    // A backup outside the backup directory is refused; one inside it is written.
    let refused = support::attune(&["backup", "--url", &address])
        .arg(dir.path().join("elsewhere"))
        .output()
        .expect("attune backup");
    assert!(!refused.status.success());
    let nightly = backups.join("nightly");
    let done = support::attune(&["backup", "--url", &address]).arg(&nightly).output().expect("attune backup");
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(String::from_utf8_lossy(&done.stdout).contains("40 events"), "{}", String::from_utf8_lossy(&done.stdout));

    let erased = http.delete(format!("{address}/v1/users/u-1")).send().await.expect("erase");
    assert_eq!(erased.status(), 200);
    let first: Value = erased.json().await.expect("receipt");

    // Restoring into the data directory of a running server is refused.
    let busy = support::attune(&["restore"]).arg(&nightly).arg("--data").arg(&data).output().expect("restore");
    assert!(!busy.status.success(), "the server holds the data directory");
    server.0.kill().expect("stop");
    server.0.wait().expect("reap");
    let restored = support::attune(&["restore"]).arg(&nightly).arg("--data").arg(&data).output().expect("restore");
    assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));

    let (child, address) = start(&data, &backups);
    let _server = support::Killed(child);
    let get = |path: String| {
        let http = http.clone();
        async move { http.get(path).send().await.expect("get") }
    };
    assert_eq!(get(format!("{address}/v1/users/u-1")).await.status(), 404, "u-1 stays erased");
    assert_eq!(get(format!("{address}/v1/users/u-1/export")).await.status(), 404);
    let u2: Value = get(format!("{address}/v1/users/u-2")).await.json().await.expect("u-2");
    assert_eq!(u2["events"], 20, "the rest of the backup is back: {u2}");

    // The second erasure has its own receipt, audited under the ledger's key.
    let audit: Value = get(format!("{address}/v1/audit?limit=1000")).await.json().await.expect("audit");
    let entries = audit["entries"].as_array().expect("entries");
    let again: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["action"] == "users.erase" && entry["key_id"] == "erasure-ledger")
        .collect();
    assert_eq!(again.len(), 1, "{audit}");
    let receipt_id = again[0]["target"].as_str().expect("target");
    assert_ne!(receipt_id, first["receipt"]["receipt_id"].as_str().expect("first receipt"));
    let receipt: Value = get(format!("{address}/v1/erasures/{receipt_id}")).await.json().await.expect("receipt");
    assert_eq!(receipt["events"], 20, "{receipt}");
    assert!(!audit.to_string().contains("\"u-1\""), "the audit log names no erased id");

    // The events are gone from the store: sent again, they are new, not duplicates.
    let out: Value = http
        .post(format!("{address}/v1/events"))
        .json(&events("u-1", 20))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(out["accepted"], 20, "{out}");
    assert_eq!(out["duplicates"], 0, "{out}");
}
