//! `attune bench`: measured figures beside their targets (DESIGN.md), never asserted in tests.
//!
//! - `ingest`: durable HTTP ingest through the real server on loopback (batches of 500, several
//!   concurrent clients), the latency of a batch, and the `attune import` path.
//! - `train`: see `cmd_bench_train`.

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
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest(args),
        BenchCommand::Train(args) => crate::cmd_bench_train::run(args),
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
    let engine = crate::serve::open_engine(&dir.path().join("http"))?;
    let state = AppState::new(Arc::clone(&engine), None, 0.0);
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
    let import_engine = crate::serve::open_engine(&dir.path().join("import"))?;
    let started = Instant::now();
    let totals = crate::import::import_path(&import_engine, &jsonl, 20_000, false)?;
    let import_rate = totals.accepted as f64 / started.elapsed().as_secs_f64();

    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| HTTP ingest, durable, batches of {}, {} clients | {:.0} events/s ({accepted} events) | ≥ 50,000 events/s |",
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
