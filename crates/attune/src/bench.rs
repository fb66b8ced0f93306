//! `attune bench`: measured figures beside their targets (DESIGN.md), never asserted in tests.
//!
//! - `ingest`: durable HTTP ingest through the real server on loopback (batches of 500, several
//!   concurrent clients), the latency of a batch, and the `attune import` path.
//! - `train`: see `cmd_bench_train`.
//! - `scale` and `soak`: a real `attune serve` child measured from outside; see
//!   `cmd_bench_scale` and `cmd_bench_soak`.
//! - `results`: see `cmd_bench_results`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use anyhow::Context;
use attune_server::AppState;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Durable ingest over HTTP and through `attune import`.
    Ingest(IngestArgs),
    /// Model training at scale on synthetic data.
    Train(crate::cmd_bench_train::BenchTrainArgs),
    /// Decision latency and throughput: in process and over HTTP.
    Decide(DecideArgs),
    /// One server at 1M people, 100,000 items and 20M events: start-up, memory, training, decide
    /// under `wrk`, measured on a real `attune serve` process.
    Scale(crate::cmd_bench_scale::BenchScaleArgs),
    /// Minutes of mixed load against `attune serve`: flat memory, no 5xx, no growth in open files.
    Soak(crate::cmd_bench_soak::BenchSoakArgs),
    /// Experiment results for many exposed people over a large event log.
    Results(crate::cmd_bench_results::BenchResultsArgs),
}

/// Decide benchmark options.
#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// Catalog size.
    #[arg(long, default_value_t = 10_000)]
    pub items: usize,
    /// People with histories.
    #[arg(long, default_value_t = 100_000)]
    pub people: usize,
    /// Events per person (on average).
    #[arg(long, default_value_t = 20)]
    pub events_per_person: usize,
    /// Decisions measured in process.
    #[arg(long, default_value_t = 20_000)]
    pub in_process: usize,
    /// Decisions measured over HTTP.
    #[arg(long, default_value_t = 40_000)]
    pub http: usize,
    /// Concurrent HTTP clients of the closed-loop (throughput) measurement.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Offered load of the open-loop (latency) measurement, decisions per second.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Items per decision (one placement).
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// After measuring, keep serving this many seconds on 127.0.0.1:7710 for an outside load
    /// generator (`wrk`), which measures without sharing this process's cores.
    #[arg(long, default_value_t = 0)]
    pub serve_for: u64,
}

/// Ingest benchmark options.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Events per HTTP batch.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Batches to send in all.
    #[arg(long, default_value_t = 1200)]
    pub batches: usize,
    /// Events for the import measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub import_events: usize,
    /// Synthetic people.
    #[arg(long, default_value_t = 100_000)]
    pub people: usize,
    /// Synthetic items.
    #[arg(long, default_value_t = 10_000)]
    pub items: usize,
    /// Measure HTTP ingest over this PostgreSQL database (`postgres://...`, empty: the event ids
    /// repeat from run to run) instead of a fresh embedded store, with the cluster sync running
    /// every second as in `attune serve --store`. The import measurement stays embedded.
    #[arg(long)]
    pub store: Option<String>,
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest(args),
        BenchCommand::Train(args) => crate::cmd_bench_train::run(args),
        BenchCommand::Decide(args) => decide(args),
        BenchCommand::Scale(args) => crate::cmd_bench_scale::run(args),
        BenchCommand::Soak(args) => crate::cmd_bench_soak::run(args),
        BenchCommand::Results(args) => crate::cmd_bench_results::run(args),
    }
}

fn synthetic_event(rng: &mut StdRng, id: usize, people: usize, items: usize, now_s: i64) -> serde_json::Value {
    const TYPES: [&str; 4] = ["view", "view", "click", "dwell"];
    let kind = TYPES[rng.random_range(0..TYPES.len())];
    let ts = jiff::Timestamp::from_second(now_s - rng.random_range(0..30 * 86_400)).expect("in range");
    let mut event = serde_json::json!({
        "id": format!("bench-{id}"),
        "type": kind,
        "user": format!("u-{}", rng.random_range(0..people)),
        "item": format!("i-{}", rng.random_range(0..items)),
        "ts": ts.to_string(),
        "context": {"device": "mobile", "timezone": "Europe/Berlin"},
    });
    if kind == "dwell" {
        event["properties"] = serde_json::json!({"dwell_ms": rng.random_range(1000..200_000), "scroll_depth": 0.5});
    }
    event
}

fn percentile(histogram: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    histogram.value_at_quantile(q) as f64 / 1000.0
}

fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let now_s = jiff::Timestamp::now().as_second();
    let mut rng = StdRng::seed_from_u64(42);
    eprintln!("generating {} HTTP batches of {} events...", args.batches, args.batch);
    let bodies: Vec<Vec<u8>> = (0..args.batches)
        .map(|b| {
            let events: Vec<_> = (0..args.batch)
                .map(|i| synthetic_event(&mut rng, b * args.batch + i, args.people, args.items, now_s))
                .collect();
            serde_json::to_vec(&serde_json::json!({ "events": events })).expect("serializes")
        })
        .collect();

    let dir = tempfile::tempdir()?;
    let engine = match &args.store {
        Some(url) => crate::serve::open_engine_postgres(url, attune_engine::EngineConfig::default())?.0,
        None => crate::serve::open_engine(&dir.path().join("http"))?,
    };
    let backend = engine.store().backend();
    // Syncs with the other servers on a shared store, as `attune serve` does (a no-op otherwise).
    let schedule = attune_engine::SchedulerConfig {
        sync_every: Some(std::time::Duration::from_secs(1)),
        ..attune_engine::SchedulerConfig::on_demand()
    };
    let scheduler = Arc::new(attune_engine::Scheduler::start(Arc::clone(&engine), schedule));
    let state = AppState::new(Arc::clone(&engine), None, 0.0).with_scheduler(scheduler);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (http_rate, histogram, accepted) = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(crate::serve::serve_until(listener, state, std::future::pending()));
        let client = reqwest::Client::new();
        let url = format!("http://{address}/v1/events");
        let bodies = Arc::new(bodies);
        let next = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..args.clients {
            let (client, url, bodies, next, accepted) =
                (client.clone(), url.clone(), Arc::clone(&bodies), Arc::clone(&next), Arc::clone(&accepted));
            tasks.push(tokio::spawn(async move {
                let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("valid");
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(body) = bodies.get(i) else { break };
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .context("sending a batch")?;
                    let status = response.status();
                    let out: serde_json::Value = response.json().await.context("reading the answer")?;
                    anyhow::ensure!(status.is_success(), "batch refused: {status} {out}");
                    histogram.record(sent.elapsed().as_micros() as u64).ok();
                    accepted.fetch_add(out["accepted"].as_u64().unwrap_or(0) as usize, Ordering::SeqCst);
                }
                anyhow::Ok(histogram)
            }));
        }
        let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("valid");
        for task in tasks {
            histogram.add(task.await??).ok();
        }
        let elapsed = started.elapsed();
        let accepted = accepted.load(Ordering::SeqCst);
        anyhow::Ok((accepted as f64 / elapsed.as_secs_f64(), histogram, accepted))
    })?;
    drop(runtime);

    eprintln!("writing {} events as JSON lines for the import measurement...", args.import_events);
    let jsonl = dir.path().join("events.jsonl");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&jsonl)?);
        let mut rng = StdRng::seed_from_u64(7);
        for i in 0..args.import_events {
            serde_json::to_writer(&mut out, &synthetic_event(&mut rng, i, args.people, args.items, now_s))?;
            out.write_all(b"\n")?;
        }
    }
    crate::keep_freed_memory();
    let import_engine = crate::serve::open_engine_for_bulk_load(&dir.path().join("import"))?;
    let started = Instant::now();
    let totals = crate::import::import_path(&import_engine, &jsonl, crate::import::DEFAULT_BATCH, false)?;
    let import_rate = totals.accepted as f64 / started.elapsed().as_secs_f64();

    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| HTTP ingest, durable ({backend}), batches of {}, {} clients | {:.0} events/s ({accepted} events) | ≥ 50,000 events/s (PostgreSQL: ≥ 20,000) |",
        args.batch, args.clients, http_rate
    );
    println!("| HTTP batch latency p50 | {:.1} ms | |", percentile(&histogram, 0.50));
    println!("| HTTP batch latency p99 | {:.1} ms | |", percentile(&histogram, 0.99));
    println!(
        "| import (JSON lines), durable | {:.0} events/s ({} events) | ≥ 300,000 events/s |",
        import_rate, totals.accepted
    );
    println!("| store size after import | {:.1} MiB | |", import_engine.store().disk_bytes() as f64 / (1 << 20) as f64);
    Ok(())
}

pub(crate) const BENCH_TAGS: [&str; 24] = [
    "sleep",
    "stress_relief",
    "focus",
    "digital_detox",
    "movement",
    "breathing",
    "morning",
    "evening",
    "journaling",
    "nature",
    "nutrition",
    "yoga",
    "walking",
    "mindfulness",
    "body_scan",
    "gratitude",
    "tea",
    "beginner-friendly",
    "work",
    "family",
    "travel",
    "reading",
    "music",
    "routine",
];

/// A synthetic catalog and audience with taste clusters, loaded through the real ingest path.
fn synthetic_engine(args: &DecideArgs, dir: &std::path::Path) -> anyhow::Result<Arc<attune_engine::Engine>> {
    use attune_server::{extract::from_value, routes::catalog::to_item, wire::ItemIn};
    let engine = crate::serve::open_engine(dir)?;
    let mut rng = StdRng::seed_from_u64(11);
    let kinds = ["article", "meditation", "course", "retreat", "product"];
    let mut items = Vec::with_capacity(args.items);
    for i in 0..args.items {
        let cluster = i % BENCH_TAGS.len();
        let tags = vec![
            BENCH_TAGS[cluster],
            BENCH_TAGS[(cluster + 1 + i % 3) % BENCH_TAGS.len()],
            BENCH_TAGS[rng.random_range(0..BENCH_TAGS.len())],
        ];
        let value = serde_json::json!({"id": format!("i-{i}"), "kind": kinds[i % kinds.len()], "title": format!("Item {i}"), "tags": tags,
            "variants": {"foundational": {"headline": format!("Item {i}")}, "emotional": {"headline": format!("A kind item {i}")}}});
        let wire: ItemIn = from_value(value, "item").map_err(|e| anyhow::anyhow!(e.message))?;
        items.push(to_item(wire, i).map_err(|e| anyhow::anyhow!(e.message))?);
    }
    engine.upsert_items(items)?;
    let now_s = jiff::Timestamp::now().as_second();
    let total = args.people * args.events_per_person;
    eprintln!("ingesting {total} events of {} people...", args.people);
    let mut id = 0usize;
    let mut batch = Vec::with_capacity(20_000);
    let devices = ["mobile", "desktop", "tablet"];
    for person in 0..args.people {
        let taste = rng.random_range(0..BENCH_TAGS.len());
        // Each event carries a device and a time zone, so training learns context effects
        // (device × tag, local hour × tag) and validation decides whether they earn a weight.
        let device = devices[if rng.random_bool(0.7) { taste % 3 } else { rng.random_range(0..3) }];
        for _ in 0..args.events_per_person {
            // Mostly the person's taste cluster (items i ≡ taste mod 24), sometimes anything.
            let item = if rng.random_bool(0.8) {
                let k = rng.random_range(0..args.items / BENCH_TAGS.len());
                k * BENCH_TAGS.len() + taste
            } else {
                rng.random_range(0..args.items)
            };
            let ts = jiff::Timestamp::from_second(now_s - rng.random_range(0..30 * 86_400)).expect("in range");
            batch.push(attune_server::routes::events::parse_event_value(
                serde_json::json!({"id": format!("e-{id}"), "type": "view", "user": format!("u-{person}"),
                    "item": format!("i-{}", item.min(args.items - 1)), "ts": ts.to_string(),
                    "context": {"device": device, "timezone": "Europe/Berlin"}}),
                0,
            ));
            id += 1;
            if batch.len() == 20_000 {
                engine.ingest(std::mem::take(&mut batch))?;
            }
        }
    }
    engine.ingest(batch)?;
    eprintln!("training...");
    let started = Instant::now();
    let snapshot = engine.train()?;
    eprintln!("trained in {:.1} s on {} interactions", started.elapsed().as_secs_f64(), snapshot.n_interactions);
    if let Some(context) = snapshot.ranker.as_ref().and_then(|r| r.context()) {
        for d in &context.report().dimensions {
            eprintln!(
                "context {}: {} values, weight personal {} general {} (validation NDCG@10 {:?} / {:?})",
                d.name, d.values, d.personal_weight, d.general_weight, d.personal_ndcg, d.general_ndcg
            );
        }
    }
    Ok(engine)
}

fn decide(args: DecideArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = synthetic_engine(&args, dir.path())?;
    let mut rng = StdRng::seed_from_u64(5);
    let request = |person: usize| attune_engine::decide::DecideRequest {
        subject: Some(format!("u-{person}")),
        context: attune_engine::decide::DecideContext {
            timezone: Some("Europe/Berlin".into()),
            device: Some("mobile".into()),
            ..Default::default()
        },
        placements: vec![attune_engine::decide::PlacementRequest { slot: "home_feed".into(), count: args.count }],
        explain: true,
        preview: false,
        exclude: Vec::new(),
    };
    let mut in_process = hdrhistogram::Histogram::<u64>::new(3).expect("valid");
    for _ in 0..args.in_process {
        let req = request(rng.random_range(0..args.people));
        let started = Instant::now();
        let decision = engine.decide(&req)?;
        in_process.record(started.elapsed().as_nanos() as u64 / 1000).ok();
        anyhow::ensure!(decision.placements[0].items.len() == args.count, "a full placement");
    }

    let state = AppState::new(Arc::clone(&engine), None, 0.0);
    let serve_engine = Arc::clone(&engine);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let people = args.people;
    let body_for = move |rng: &mut StdRng| {
        serde_json::to_vec(&serde_json::json!({"user": format!("u-{}", rng.random_range(0..people)),
            "context": {"timezone": "Europe/Berlin", "device": "mobile"},
            "placements": [{"slot": "home_feed", "count": args.count}], "explain": true}))
        .expect("serializes")
    };
    let (rate, open_loop) = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(crate::serve::serve_until(listener, state, std::future::pending()));
        let client = reqwest::Client::new();
        let url = format!("http://{address}/v1/decide");

        // Closed loop: how many decisions per second the server sustains.
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..args.clients {
            let (client, url, next) = (client.clone(), url.clone(), Arc::clone(&next));
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(100 + c as u64);
                while next.fetch_add(1, Ordering::SeqCst) < args.http {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body_for(&mut rng))
                        .send()
                        .await?;
                    anyhow::ensure!(response.status().is_success(), "decide failed: {}", response.status());
                    response.bytes().await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let rate = args.http as f64 / started.elapsed().as_secs_f64();

        // Open loop: latency at the offered rate, measured from when each request was due (no
        // coordinated omission: a slow answer does not delay the next request).
        let n = args.http;
        let interval = std::time::Duration::from_secs_f64(1.0 / args.rate);
        let started = tokio::time::Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        let mut tasks = Vec::with_capacity(n);
        // At most 32 requests in flight (as many keep-alive connections): a request that finds all
        // of them busy waits, and that wait counts in its latency.
        let connections = Arc::new(tokio::sync::Semaphore::new(32));
        for i in 0..n {
            let due = started + interval * i as u32;
            tokio::time::sleep_until(due).await;
            let (client, url, body) = (client.clone(), url.clone(), body_for(&mut rng));
            let connections = Arc::clone(&connections);
            tasks.push(tokio::spawn(async move {
                let _connection = connections.acquire_owned().await?;
                let response = client.post(&url).header("content-type", "application/json").body(body).send().await?;
                anyhow::ensure!(response.status().is_success(), "decide failed: {}", response.status());
                response.bytes().await?;
                anyhow::Ok(due.elapsed().as_micros() as u64)
            }));
        }
        let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("valid");
        for task in tasks {
            histogram.record(task.await??).ok();
        }
        if args.serve_for > 0 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:7710").await?;
            let state = AppState::new(Arc::clone(&serve_engine), None, 0.0);
            eprintln!("serving on http://127.0.0.1:7710 for {} s", args.serve_for);
            let stop = tokio::time::sleep(std::time::Duration::from_secs(args.serve_for));
            crate::serve::serve_until(listener, state, stop).await?;
        }
        anyhow::Ok((rate, histogram))
    })?;
    println!(
        "| measure ({} items, {} people, {} events, {} per decision, explain on) | value | target |",
        args.items,
        args.people,
        args.people * args.events_per_person,
        args.count
    );
    println!("|---|---|---|");
    println!("| in-process decide p50 | {:.3} ms | |", percentile(&in_process, 0.50));
    println!("| in-process decide p99 | {:.3} ms | |", percentile(&in_process, 0.99));
    println!(
        "| HTTP decide p50 at {:.0}/s offered (open loop) | {:.3} ms | ≤ 1 ms |",
        args.rate,
        percentile(&open_loop, 0.50)
    );
    println!(
        "| HTTP decide p99 at {:.0}/s offered (open loop) | {:.3} ms | ≤ 5 ms |",
        args.rate,
        percentile(&open_loop, 0.99)
    );
    println!(
        "| HTTP decide throughput ({} clients, closed loop) | {:.0} decisions/s | ≥ 2,000/s |",
        args.clients, rate
    );
    println!("| resident memory peak | {} MiB | |", peak_rss_mib());
    let models = engine.models();
    if let Some(ranker) = &models.ranker {
        println!(
            "| served ranker: {} | {} MiB of models | ≤ 500 MiB |",
            crate::cmd_eval::describe_ranker(ranker),
            ranker.model_bytes() / (1 << 20)
        );
    }
    Ok(())
}

pub(crate) fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
