//! `attune import` end to end: JSON lines (with a bad line that must not stop the rest), the
//! interactions.tsv/items.tsv dataset format, and idempotence on a second run.

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
