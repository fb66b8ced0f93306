//! `attune bench results`: `GET /v1/experiments/{id}/results` for an experiment with many exposed
//! people and a large event log (issue 13's bar: 100,000 exposed people and 1M events in ≤ 200 ms).
//!
//! Builds the data through the engine as a site would: people act before the experiment (the
//! CUPED covariate), are exposed by `decide` on the experiment's slot, and act afterwards (clicks,
//! reading, purchases, survey answers; the personalized arm a little more). Then it measures the
//! results route in process and over HTTP: the first answer after a start (the whole log is read
//! once), answers with nothing new, and answers after more events and exposures arrived.

use std::{sync::Arc, time::Instant};

use attune_engine::{
    Clock, Engine, EngineConfig, ManualClock,
    decide::{DecideContext, DecideRequest, PlacementRequest},
    experiments::{Arm, Experiment, Policy, WINDOW_MS},
};
use attune_server::AppState;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Results benchmark options.
#[derive(Debug, clap::Args)]
pub struct BenchResultsArgs {
    /// Exposed people.
    #[arg(long, default_value_t = 100_000)]
    pub people: usize,
    /// Events in all (30% before exposure, 70% after).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Measured queries per case.
    #[arg(long, default_value_t = 20)]
    pub queries: usize,
    /// Measure over this PostgreSQL database (`postgres://...`, empty) instead of a fresh
    /// embedded store.
    #[arg(long)]
    pub store: Option<String>,
}

const DAY_MS: i64 = 86_400_000;
const EXPERIMENT: &str = "bench-feed";

pub fn run(args: BenchResultsArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let start_ms = jiff::Timestamp::now().as_millisecond() - 10 * DAY_MS;
    let clock = Arc::new(ManualClock::new(start_ms));
    let store: Arc<dyn attune_store::Store> = match &args.store {
        Some(url) => Arc::new(attune_store::PostgresStore::connect(url)?),
        None => Arc::new(attune_store::EmbeddedStore::open(dir.path())?),
    };
    let config = EngineConfig { cluster: args.store.is_some(), ..EngineConfig::default() };
    let engine = Arc::new(Engine::open(store, Arc::clone(&clock) as _, config)?);
    let setup = Instant::now();
    build(&engine, &clock, &args, start_ms)?;
    eprintln!("built in {:.1} s", setup.elapsed().as_secs_f64());

    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    let time = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let started = Instant::now();
        f()?;
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    };
    // The first answer reads the whole log.
    let mut exposed = 0;
    let cold = time(&mut || {
        let results = engine.experiment_results(EXPERIMENT, WINDOW_MS)?;
        exposed = results.exposed.iter().map(|(_, n)| n).sum::<u64>();
        Ok(())
    })?;
    rows.push(("first answer after a start (reads the whole log)".into(), vec![cold]));
    anyhow::ensure!(exposed as usize == args.people, "{exposed} people exposed, expected {}", args.people);
    let mut warm = Vec::new();
    for _ in 0..args.queries {
        warm.push(time(&mut || engine.experiment_results(EXPERIMENT, WINDOW_MS).map(drop).map_err(Into::into))?);
    }
    rows.push(("nothing new since the last answer".into(), warm));
    // Between answers: 1,000 new events and 100 new exposures, as a busy site sends them.
    let mut rng = StdRng::seed_from_u64(3);
    let mut busy = Vec::new();
    let mut next_id = args.events;
    for round in 0..args.queries {
        let batch: Vec<_> = (0..1_000)
            .map(|_| {
                next_id += 1;
                let person = rng.random_range(0..args.people);
                event(&mut rng, next_id, person, "click", clock.now_ms() - 3_600_000)
            })
            .collect();
        engine.ingest(batch)?;
        for k in 0..100 {
            decide(&engine, &format!("late-{round}-{k}"))?;
        }
        busy.push(time(&mut || engine.experiment_results(EXPERIMENT, WINDOW_MS).map(drop).map_err(Into::into))?);
    }
    rows.push(("after 1,000 new events and 100 new exposures".into(), busy));

    // Over HTTP, through the real server.
    let state = AppState::new(Arc::clone(&engine), None, 0.0);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let http = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(crate::serve::serve_until(listener, state, std::future::pending()));
        let client = reqwest::Client::new();
        let url = format!("http://{address}/v1/experiments/{EXPERIMENT}/results");
        let mut times = Vec::new();
        for _ in 0..args.queries {
            let started = Instant::now();
            let response = client.get(&url).send().await?;
            anyhow::ensure!(response.status().is_success(), "results failed: {}", response.status());
            response.bytes().await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::Ok(times)
    })?;
    rows.push(("over HTTP, nothing new".into(), http));

    println!(
        "| `GET /v1/experiments/{{id}}/results` ({} exposed people, {} events, {}) | median | max | target |",
        args.people,
        args.events,
        if args.store.is_some() { "PostgreSQL" } else { "embedded store" }
    );
    println!("|---|---|---|---|");
    for (name, mut times) in rows {
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let max = times[times.len() - 1];
        println!("| {name} | {median:.1} ms | {max:.1} ms | ≤ 200 ms |");
    }
    println!("| resident memory peak of the whole bench | {} MiB | |", crate::bench::peak_rss_mib());
    Ok(())
}

fn decide(engine: &Engine, person: &str) -> anyhow::Result<Vec<(String, String)>> {
    let decision = engine.decide(&DecideRequest {
        subject: Some(person.to_owned()),
        context: DecideContext::default(),
        placements: vec![PlacementRequest { slot: "home_feed".into(), count: 3 }],
        explain: false,
        preview: false,
        exclude: Vec::new(),
    })?;
    Ok(decision.experiments)
}

fn event(rng: &mut StdRng, id: usize, person: usize, kind: &str, ts_ms: i64) -> attune_engine::IngestItem {
    let mut value = serde_json::json!({
        "id": format!("e-{id}"), "type": kind, "user": format!("u-{person}"),
        "item": format!("i-{}", rng.random_range(0..40)),
        "ts": attune_engine::clock::rfc3339(ts_ms),
    });
    match kind {
        "view" => value["properties"] = serde_json::json!({"dwell_ms": rng.random_range(1_000..120_000)}),
        "purchase" => value["properties"] = serde_json::json!({"value": rng.random_range(5..80)}),
        "survey" => value["properties"] = serde_json::json!({"score": rng.random_range(1..=10)}),
        _ => {}
    }
    attune_server::routes::events::parse_event_value(value, 0)
}

/// The catalog, the experiment, the people's events before exposure, the exposures (decide at
/// the experiment's start) and the events after.
fn build(engine: &Engine, clock: &ManualClock, args: &BenchResultsArgs, start_ms: i64) -> anyhow::Result<()> {
    use attune_server::{extract::from_value, routes::catalog::to_item, wire::ItemIn};
    let items = (0..40)
        .map(|i| {
            let value = serde_json::json!({"id": format!("i-{i}"), "kind": "article", "title": format!("Item {i}"), "tags": [format!("t{}", i % 5)]});
            let wire: ItemIn = from_value(value, "item").map_err(|e| anyhow::anyhow!(e.message))?;
            to_item(wire, i).map_err(|e| anyhow::anyhow!(e.message))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    engine.upsert_items(items)?;
    let arms = vec![
        Arm { name: "control".into(), weight: 0.5, policy: Policy::Popular },
        Arm { name: "personalized".into(), weight: 0.5, policy: Policy::Default },
    ];
    let experiment = Experiment {
        id: EXPERIMENT.into(),
        slot: "home_feed".into(),
        arms,
        holdout: 0.0,
        metrics: vec!["click".into(), "purchase".into(), "survey".into()],
        coverage: 1.0,
    };
    engine.put_experiment(experiment, "bench")?;
    let mut rng = StdRng::seed_from_u64(13);
    let n_before = args.events * 3 / 10;
    let n_after = args.events - n_before;
    eprintln!("{n_before} events before exposure...");
    let mut id = 0;
    let mut batch = Vec::with_capacity(20_000);
    for _ in 0..n_before {
        let person = rng.random_range(0..args.people);
        let kind = ["view", "view", "click"][rng.random_range(0..3)];
        let ts = start_ms - rng.random_range(1..7 * DAY_MS);
        batch.push(event(&mut rng, id, person, kind, ts));
        id += 1;
        if batch.len() == 20_000 {
            engine.ingest(std::mem::take(&mut batch))?;
        }
    }
    engine.ingest(std::mem::take(&mut batch))?;
    eprintln!("{} people exposed...", args.people);
    let mut personalized = vec![false; args.people];
    for (person, arm) in personalized.iter_mut().enumerate() {
        let experiments = decide(engine, &format!("u-{person}"))?;
        *arm = experiments.iter().any(|(e, a)| e == EXPERIMENT && a == "personalized");
        if person % 10_000 == 9_999 {
            engine.flush_decisions()?;
        }
    }
    engine.flush_decisions()?;
    clock.set(start_ms + 7 * DAY_MS);
    eprintln!("{n_after} events after exposure...");
    for _ in 0..n_after {
        let person = rng.random_range(0..args.people);
        let lift = if personalized[person] { 0.05 } else { 0.0 };
        let roll: f64 = rng.random();
        let kind = if roll < 0.25 + lift {
            "click"
        } else if roll < 0.28 + lift {
            "purchase"
        } else if roll < 0.31 + lift {
            "survey"
        } else {
            "view"
        };
        let ts = start_ms + rng.random_range(1..7 * DAY_MS);
        batch.push(event(&mut rng, id, person, kind, ts));
        id += 1;
        if batch.len() == 20_000 {
            engine.ingest(std::mem::take(&mut batch))?;
        }
    }
    engine.ingest(batch)?;
    Ok(())
}
