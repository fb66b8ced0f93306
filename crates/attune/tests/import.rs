//! `attune import` end to end: JSON lines (with a bad line that must not stop the rest), the
//! interactions.tsv/items.tsv dataset format, and idempotence on a second run; a load large
//! enough for the bulk path, with duplicates inside and across its batches, then served.

mod support;

use std::process::Command;

fn import(path: &std::path::Path, data: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_attune"))
        .arg("import")
        .arg(path)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run attune import");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn imports_json_lines_and_datasets_idempotently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jsonl = dir.path().join("events.jsonl");
    let mut lines: Vec<String> = (0..2500)
        .map(|i| format!(r#"{{"id": "e-{i}", "type": "view", "user": "u-{}", "item": "i-{}"}}"#, i % 40, i % 70))
        .collect();
    lines.insert(7, r#"{"id": "bad", "type": "teleport", "user": "u-1"}"#.to_owned());
    lines.insert(9, "not json at all".to_owned());
    std::fs::write(&jsonl, lines.join("\n") + "\n").expect("write");
    let data = dir.path().join("data");
    let first = import(&jsonl, &data);
    assert!(first.starts_with("imported 2500 events (0 duplicates, 2 rejected)"), "{first}");
    let again = import(&jsonl, &data);
    assert!(again.starts_with("imported 0 events (2500 duplicates, 2 rejected)"), "{again}");

    let dataset = dir.path().join("ml-tiny");
    std::fs::create_dir(&dataset).expect("mkdir");
    std::fs::write(dataset.join("interactions.tsv"), "1\t10\t4\t881250949\n1\t20\t3\t881250950\n2\t10\t5\t881250951\n")
        .expect("write");
    std::fs::write(
        dataset.join("items.tsv"),
        "item\ttitle\ttags\n10\tA film (1995)\tDrama|Comedy\n20\tAnother (1996)\tHorror\n",
    )
    .expect("write");
    let tsv = import(&dataset, &dir.path().join("data-tsv"));
    assert!(tsv.starts_with("imported 3 events (0 duplicates, 0 rejected) and 2 items"), "{tsv}");
}

/// Enough events for several bulk appends (the first batches are 16,384 and 32,768 events), with
/// ids repeated inside a batch and across batches, then served: every index the bulk path wrote
/// answers (deduplication, a person's events for export and profiles, the event count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_is_served_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jsonl = dir.path().join("events.jsonl");
    let n = 60_000;
    let mut lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id": "b-{i}", "type": "view", "user": "u-{}", "item": "i-{}", "ts": "2026-11-{:02}T10:00:00Z"}}"#,
                i % 500,
                i % 300,
                1 + i % 27
            )
        })
        .collect();
    // Repeats: one inside the first batch, one across the first two, one at the very end.
    lines.insert(100, lines[5].clone());
    lines.insert(20_000, lines[10].clone());
    lines.push(lines[30_000].clone());
    std::fs::write(&jsonl, lines.join("\n") + "\n").expect("write");
    let data = dir.path().join("data");
    let first = import(&jsonl, &data);
    assert!(first.starts_with(&format!("imported {n} events (3 duplicates, 0 rejected)")), "{first}");
    let again = import(&jsonl, &data);
    assert!(again.starts_with(&format!("imported 0 events ({} duplicates, 0 rejected)", n + 3)), "{again}");

    let (server, base) =
        support::spawn_serve(support::attune(&["serve", "--listen", "127.0.0.1:0", "--data"]).arg(&data));
    let _server = support::Killed(server);
    let http = reqwest::Client::new();
    let export: serde_json::Value =
        http.get(format!("{base}/v1/users/u-7/export")).send().await.expect("export").json().await.expect("json");
    let events = export["events"].as_array().expect("events");
    assert_eq!(events.len(), n / 500, "every event of u-7, once: {export}");
    let user: serde_json::Value =
        http.get(format!("{base}/v1/users/u-7")).send().await.expect("user").json().await.expect("json");
    assert_eq!(user["events"], n / 500, "{user}");
    assert!(!user["recent"].as_array().is_none_or(Vec::is_empty), "a folded profile: {user}");
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let stored = metrics
        .lines()
        .find_map(|line| line.strip_prefix("attune_store_events "))
        .unwrap_or_else(|| panic!("attune_store_events in {metrics}"));
    assert_eq!(stored.trim(), n.to_string());
}
