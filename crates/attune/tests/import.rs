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

/// `attune import --channel in_person FILE.csv`: retreat attendance (a declared type with a
/// signal) and shop purchases under known user ids, with the same validation as over HTTP; a
/// second import stores nothing twice; the events shape the person's profile.
#[test]
fn imports_in_person_csv() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    {
        // Declare the retreat type before importing, as an operator would over HTTP.
        std::fs::create_dir_all(&data).expect("mkdir");
        let store = attune_store::EmbeddedStore::open(&data).expect("store");
        let engine = attune_engine::Engine::open(
            Arc::new(store),
            Arc::new(attune_engine::SystemClock),
            attune_engine::EngineConfig::default(),
        )
        .expect("engine");
        engine
            .put_schema(
                "retreat_attended",
                attune_core::Schema {
                    purpose: attune_core::Purpose::Personalization,
                    properties: vec![
                        ("location".into(), attune_core::PropType::String),
                        ("nights".into(), attune_core::PropType::Integer),
                    ],
                    retention_days: 365,
                    signal: Some(attune_core::Signal {
                        tags: attune_core::SignalTags {
                            fixed: vec!["retreat".into()],
                            from_property: None,
                            item: true,
                        },
                        strength: 3.0,
                        journey: Some(attune_core::JourneySignal::Customer),
                    }),
                },
            )
            .expect("schema");
        engine
            .upsert_items(vec![attune_core::Item {
                id: "ret-autumn".into(),
                kind: "retreat".into(),
                title: "Autumn silence".into(),
                tags: vec!["silence".into(), "nature".into()],
                attributes: serde_json::Map::new(),
                available: true,
                published_at: None,
                variants: serde_json::Map::new(),
            }])
            .expect("items");
    }
    let csv = dir.path().join("retreat.csv");
    std::fs::write(
        &csv,
        "user,type,item,ts,location,nights,value,currency,context.timezone\n\
         u-1,retreat_attended,ret-autumn,2026-10-12T09:00:00Z,\"Lisbon, Portugal\",3,,,Europe/Lisbon\n\
         u-2,retreat_attended,ret-autumn,1760259600,Porto,two,,,\n\
         u-1,purchase,tea-1,2026-10-13T16:30:00Z,,,12.5,EUR,\n\
         ,purchase,tea-1,2026-10-13T16:31:00Z,,,4,EUR,\n\
         u-3,teleport,,2026-10-13T16:32:00Z,,,,,\n",
    )
    .expect("write");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_attune"))
            .arg("import")
            .arg(&csv)
            .arg("--data")
            .arg(&data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run attune import")
    };
    let refused = run(&[]);
    assert!(!refused.status.success(), "a CSV import names its channel");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--channel"));
    let unknown = run(&["--channel", "carrier_pigeon"]);
    assert!(!unknown.status.success());

    let first = run(&["--channel", "in_person"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8_lossy(&first.stdout);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stdout.starts_with("imported 2 events (0 duplicates, 3 rejected)"), "{stdout}\n{stderr}");
    assert!(stderr.contains("line 3: rejected (invalid_property `properties.nights`)"), "{stderr}");
    assert!(stderr.contains("line 5: rejected (missing_field `user`)"), "{stderr}");
    assert!(stderr.contains("line 6: rejected (unknown_event_type `type`)"), "{stderr}");
    let again = run(&["--channel", "in_person"]);
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(again.starts_with("imported 0 events (2 duplicates, 3 rejected)"), "{again}");

    let store = attune_store::EmbeddedStore::open(&data).expect("store");
    let engine = attune_engine::Engine::open(
        Arc::new(store),
        Arc::new(attune_engine::SystemClock),
        attune_engine::EngineConfig::default(),
    )
    .expect("engine");
    let export = engine.export_person("u-1").expect("export");
    assert_eq!(export.events.len(), 2);
    let retreat = &export.events[0];
    assert_eq!(retreat.channel.as_deref(), Some("in_person"));
    assert_eq!(retreat.prop("location").and_then(|v| v.as_str()), Some("Lisbon, Portugal"));
    assert_eq!(retreat.prop("nights").and_then(|v| v.as_f64()), Some(3.0));
    assert_eq!(retreat.context.timezone.as_deref(), Some("Europe/Lisbon"));
    assert_eq!(export.events[1].prop_f64("value"), Some(12.5));
    let view = engine.person("u-1").expect("person");
    assert_eq!(view.journey_stage, attune_core::JourneyStage::Customer);
    let tags: Vec<&str> = view.affinities.iter().map(|(t, _)| t.as_str()).collect();
    assert!(tags.contains(&"retreat") && tags.contains(&"silence"), "{tags:?}");
    assert_eq!(view.channels, vec![(attune_core::Channel::InPerson, 2)]);
}
