//! `attune bench scale`: one server at the size DESIGN.md promises (1M people, 100,000 items,
//! 20M events by default). Generates a synthetic but realistic workload, loads it through the
//! `attune import` path, then measures the real `attune serve` on that data directory from
//! outside: time to `/healthz` (profiles rebuilt) and to `/readyz` (first models trained), resident
//! memory and memory per person, where the memory goes (`attune_memory_bytes` of `/metrics`), a
//! training's wall time, and decide latency under `wrk` in a separate process.
//!
//! The workload: item popularity follows a power law (Zipf 0.9 over a random permutation);
//! people have one to three tastes (clusters of ~500 items sharing a primary tag) and draw 80% of
//! their items from them; activity per person is heavy-tailed (Pareto, α = 1.5, at most 2,000
//! events); each person's events fall between their first visit and now, over `--days`; the
//! types mix views, clicks, dwell, carts, purchases, ratings, dismissals, searches and email
//! opens; items carry 2–3 tags of a 200-tag vocabulary, a kind, a publication date and copy.

use std::{
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rayon::prelude::*;

use crate::bench_server::{ServerChild, load_average, memory_parts, mib, model_parts};
use crate::cmd_bench_train::Cdf;

/// Arguments of `attune bench scale`.
#[derive(Debug, clap::Args)]
pub struct BenchScaleArgs {
    /// Data directory to create (it must not exist, unless `--reuse`). The generated events
    /// file is written beside it (`<data>.events.jsonl`) and removed after the import.
    #[arg(long)]
    pub data: PathBuf,
    /// Measure an existing data directory from an earlier run instead of generating one.
    #[arg(long)]
    pub reuse: bool,
    /// People.
    #[arg(long, default_value_t = 1_000_000)]
    pub people: usize,
    /// Catalog items.
    #[arg(long, default_value_t = 100_000)]
    pub items: usize,
    /// Events in all.
    #[arg(long, default_value_t = 20_000_000)]
    pub events: usize,
    /// Days the events span (under the 90-day default retention of behavioural events).
    #[arg(long, default_value_t = 84)]
    pub days: i64,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Port of the measured `attune serve` on 127.0.0.1.
    #[arg(long, default_value_t = 7711)]
    pub port: u16,
    /// Seconds of `wrk` decide load (0: skip the latency measurement).
    #[arg(long, default_value_t = 30)]
    pub wrk_seconds: u64,
    /// `wrk` connections.
    #[arg(long, default_value_t = 2)]
    pub wrk_connections: usize,
    /// Keep the generated events file.
    #[arg(long)]
    pub keep_events: bool,
    /// Also time a second training, asked for through `POST /v1/models/train?wait=true` (the
    /// first one runs at start, between `/healthz` and `/readyz`).
    #[arg(long)]
    pub train_again: bool,
}

/// Event types and their cumulative shares.
const TYPE_MIX: [(&str, f64); 9] = [
    ("view", 0.60),
    ("click", 0.75),
    ("dwell", 0.87),
    ("add_to_cart", 0.91),
    ("purchase", 0.925),
    ("rating", 0.95),
    ("not_interested", 0.96),
    ("search", 0.98),
    ("email_open", 1.0),
];

const TIME_ZONES: [&str; 6] =
    ["Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Australia/Sydney"];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
const KINDS: [&str; 5] = ["article", "meditation", "course", "retreat", "product"];
const N_TAGS: usize = 200;
const ITEMS_PER_TASTE: usize = 500;
const TASTE_SHARE: f64 = 0.8;
const ZIPF_EXPONENT: f64 = 0.9;
const PARETO_ALPHA: f64 = 1.5;
const MAX_EVENTS_PER_PERSON: f64 = 2000.0;
/// People generated per parallel block.
const BLOCK: usize = 8192;

pub fn run(args: BenchScaleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.people > 0 && args.items > 0, "need at least one person and one item");
    anyhow::ensure!(args.events >= args.people, "need at least one event per person");
    anyhow::ensure!((1..90).contains(&args.days), "--days must be between 1 and 89 (the default retention is 90)");
    println!(
        "bench scale: {} people, {} items, {} events over {} days; load average {} at start",
        args.people,
        args.items,
        args.events,
        args.days,
        load_average()
    );
    let mut load_rows = Vec::new();
    if args.reuse {
        anyhow::ensure!(args.data.exists(), "--reuse: {} does not exist", args.data.display());
    } else {
        if args.data.exists() {
            bail!("{} exists: remove it, or pass --reuse to measure it as it is", args.data.display());
        }
        load_rows = generate_and_import(&args)?;
    }
    let rows = serve_and_measure(&args)?;
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    for (measure, value) in load_rows.iter().chain(&rows) {
        println!("| {measure} | {value} |");
    }
    Ok(())
}

/// Writes the events file, imports items and events, returns the table rows of the load.
fn generate_and_import(args: &BenchScaleArgs) -> anyhow::Result<Vec<(String, String)>> {
    let now_s = jiff::Timestamp::now().as_second();
    let events_file = PathBuf::from(format!("{}.events.jsonl", args.data.display()));
    let started = Instant::now();
    let world = World::new(args);
    let n_events = write_events(args, &world, now_s, &events_file)?;
    let generate_s = started.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(&events_file)?.len();
    eprintln!("generated {n_events} events ({:.1} GiB) in {generate_s:.1} s", file_bytes as f64 / (1u64 << 30) as f64);

    crate::keep_freed_memory();
    let engine = crate::serve::open_engine_for_bulk_load(&args.data)?;
    let started = Instant::now();
    engine.upsert_items(world.items(args, now_s)?).context("storing the catalog")?;
    let items_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let totals = crate::import::import_path(&engine, &events_file, crate::import::DEFAULT_BATCH, true)?;
    let import_s = started.elapsed().as_secs_f64();
    let disk = engine.store().disk_bytes();
    drop(engine);
    if !args.keep_events {
        std::fs::remove_file(&events_file).with_context(|| format!("removing {}", events_file.display()))?;
    }
    anyhow::ensure!(totals.rejected == 0, "{} generated events were rejected", totals.rejected);
    eprintln!("imported {} events in {import_s:.1} s", totals.accepted);
    Ok(vec![
        ("generate events (JSON lines)".into(), format!("{n_events} events in {generate_s:.1} s")),
        ("catalog upsert".into(), format!("{} items in {items_s:.1} s", args.items)),
        (
            "`attune import` path, durable".into(),
            format!(
                "{} events in {import_s:.1} s: {:.0} events/s (load average {} after)",
                totals.accepted,
                totals.accepted as f64 / import_s,
                load_average()
            ),
        ),
        ("store on disk after import".into(), format!("{:.2} GiB", disk as f64 / (1u64 << 30) as f64)),
    ])
}

/// Starts `attune serve` on the data and measures it from outside.
fn serve_and_measure(args: &BenchScaleArgs) -> anyhow::Result<Vec<(String, String)>> {
    let log = PathBuf::from(format!("{}.serve.log", args.data.display()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut rows: Vec<(String, String)> = Vec::new();
        let started = Instant::now();
        // Trainings only at start and when asked: the scheduled one must not land in the middle.
        let mut server = ServerChild::start(&args.data, args.port, &["--train-every", "86400"], &log)?;
        let mut peak = 0;
        let hour = Duration::from_secs(3600);
        let serving = server.wait_for(&client, "/healthz", started, hour, &mut peak).await?;
        let rss_serving = server.rss_kib();
        let ready = server.wait_for(&client, "/readyz", started, hour, &mut peak).await?;
        rows.push((
            "start-up: `attune serve` to `/healthz` (store open, profiles rebuilt from the log)".into(),
            format!("{:.1} s (resident then: {} MiB)", serving.as_secs_f64(), mib(rss_serving)),
        ));
        rows.push((
            "start-up: `attune serve` to `/readyz` (the first training included)".into(),
            format!("{:.1} s", ready.as_secs_f64()),
        ));
        // Between the two the server does nothing but its first training.
        rows.push((
            "training at start (`/readyz` − `/healthz`), validation search included".into(),
            format!("{:.1} s; resident peak during start-up {} MiB", (ready - serving).as_secs_f64(), mib(peak)),
        ));
        let (rss_ready, ready_settle_s) = server.settled_rss_kib(SETTLE_LIMIT).await?;
        let n_people = people_gauge(&client, &server.base_url).await?;
        let models: serde_json::Value =
            client.get(format!("{}/v1/models", server.base_url)).send().await?.json().await?;
        rows.push(("served models".into(), describe_models(&models)));
        let mut rss_trained = rss_ready;
        if args.train_again {
            // A training through the API, as an operator would ask for one, with its memory peak.
            eprintln!("training through POST /v1/models/train?wait=true ...");
            let train_started = Instant::now();
            let train = client.post(format!("{}/v1/models/train?wait=true", server.base_url)).send();
            tokio::pin!(train);
            let mut train_peak = 0u64;
            let response = loop {
                tokio::select! {
                    response = &mut train => break response?,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        server.check_alive()?;
                        train_peak = train_peak.max(server.rss_kib());
                    }
                }
            };
            let train_s = train_started.elapsed().as_secs_f64();
            let job: serde_json::Value = response.json().await?;
            anyhow::ensure!(job["status"] == "succeeded", "training did not succeed: {job}");
            rows.push((
                "training (`POST /v1/models/train?wait=true`), validation search included".into(),
                format!("{train_s:.1} s; resident peak during it {} MiB", mib(train_peak)),
            ));
            rss_trained = server.settled_rss_kib(SETTLE_LIMIT).await?.0;
        }

        if args.wrk_seconds > 0 {
            rows.extend(run_wrk(args, &server.base_url, n_people)?);
        }
        let rss_end = server.settled_rss_kib(SETTLE_LIMIT).await?.0;
        let parts = memory_parts(&client, &server.base_url).await?;
        let models = model_parts(&client, &server.base_url).await?;
        let hwm = server.peak_rss_kib();
        server.stop()?;

        rows.push(("people in memory".into(), format!("{n_people}")));
        rows.push((
            "resident memory of `attune serve`, settled: ready / after `--train-again` (else = ready) / after the \
             decide load"
                .into(),
            format!(
                "{} / {} / {} MiB (ready settled {ready_settle_s:.0} s after `/readyz`)",
                mib(rss_ready),
                mib(rss_trained),
                mib(rss_end)
            ),
        ));
        rows.push(("resident memory peak (VmHWM: start-up and trainings)".into(), format!("{} MiB", mib(hwm))));
        let steady = rss_ready.max(rss_trained).max(rss_end);
        rows.push((
            "memory per person (steady resident memory ÷ people, models and catalog included)".into(),
            format!("{:.0} bytes", steady as f64 * 1024.0 / n_people.max(1) as f64),
        ));
        let mut estimated = 0.0;
        for (part, bytes) in &parts {
            estimated += bytes;
            let per_person = if part == "people" {
                format!(" ({:.0} bytes per person)", bytes / n_people.max(1) as f64)
            } else {
                String::new()
            };
            rows.push((
                format!("engine's estimate: {part}"),
                format!("{:.1} MiB{per_person}", bytes / (1u64 << 20) as f64),
            ));
            if part == "models" {
                for (model, bytes) in &models {
                    rows.push((
                        format!("engine's estimate: models: {model}"),
                        format!("{:.1} MiB", bytes / (1u64 << 20) as f64),
                    ));
                }
            }
        }
        rows.push((
            "rest of resident memory (store caches and tables, allocator, threads)".into(),
            format!("{:.1} MiB", steady as f64 / 1024.0 - estimated / (1u64 << 20) as f64),
        ));
        rows.push(("load average at the end".into(), load_average()));
        rows.push(("server log".into(), log.display().to_string()));
        anyhow::Ok(rows)
    })
}

/// The longest [`ServerChild::settled_rss_kib`] waits for the resident memory to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(180);

async fn people_gauge(client: &reqwest::Client, base_url: &str) -> anyhow::Result<usize> {
    let text = client.get(format!("{base_url}/metrics")).send().await?.text().await?;
    text.lines()
        .find_map(|l| l.strip_prefix("attune_people ")?.trim().parse::<f64>().ok())
        .map(|n| n as usize)
        .context("no attune_people in /metrics")
}

fn describe_models(models: &serde_json::Value) -> String {
    let Some(list) = models["models"].as_array() else { return models.to_string() };
    list.iter()
        .map(|m| {
            format!(
                "{} ({} users, {} items, {} events)",
                m["name"].as_str().unwrap_or("?"),
                m["users"].as_u64().unwrap_or(0),
                m["items"].as_u64().unwrap_or(0),
                m["events"].as_u64().unwrap_or(0)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs `wrk` (5 s warm-up, then the measurement) against `/v1/decide` for people spread over
/// the whole population; its p50, p99 and rate.
fn run_wrk(args: &BenchScaleArgs, base_url: &str, n_people: usize) -> anyhow::Result<Vec<(String, String)>> {
    if std::process::Command::new("wrk").arg("--version").output().is_err() {
        return Ok(vec![("decide under wrk".into(), "skipped: `wrk` is not on PATH (apt-get install wrk)".into())]);
    }
    let script = PathBuf::from(format!("{}.decide.lua", args.data.display()));
    std::fs::write(&script, wrk_script(n_people.max(1)))?;
    let wrk = |seconds: u64| -> anyhow::Result<String> {
        let output = std::process::Command::new("wrk")
            .args(["-t1", &format!("-c{}", args.wrk_connections), &format!("-d{seconds}s"), "--latency", "-s"])
            .arg(&script)
            .arg(base_url)
            .output()
            .context("running wrk")?;
        anyhow::ensure!(output.status.success(), "wrk failed: {}", String::from_utf8_lossy(&output.stderr));
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    wrk(5)?;
    let load_before = load_average();
    let out = wrk(args.wrk_seconds)?;
    let _ = std::fs::remove_file(&script);
    eprintln!("{out}");
    let field = |prefix: &str| -> String {
        out.lines()
            .find_map(|l| {
                l.trim_start().strip_prefix(prefix).map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
            })
            .unwrap_or_else(|| "n/a".into())
    };
    let non_2xx = field("Non-2xx or 3xx responses:");
    Ok(vec![(
        format!(
            "decide over HTTP under `wrk -t1 -c{} -d{}s` (10 items, explanations on, people spread over all {n_people})",
            args.wrk_connections, args.wrk_seconds
        ),
        format!(
            "{} decisions/s, p50 {}, p99 {}, non-2xx {}; load average {load_before} before",
            field("Requests/sec:"),
            field("50%"),
            field("99%"),
            if non_2xx == "n/a" { "0".into() } else { non_2xx }
        ),
    )])
}

/// The `wrk` script: `docs/decide.lua`'s request for people `u-0` … `u-(n-1)`, in a stride that
/// visits them all.
fn wrk_script(n_people: usize) -> String {
    format!(
        r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{{"user": "u-%d", "context": {{"timezone": "Europe/Berlin", "device": "mobile"}}, "placements": [{{"slot": "home_feed", "count": 10}}], "explain": true}}', (n * 7919) % {n_people})
  return wrk.format(nil, "/v1/decide", nil, body)
end
"#
    )
}

/// The generator's fixed parts: item popularity, tastes, tags.
struct World {
    global: Cdf,
    tastes: Vec<Cdf>,
    /// The taste (cluster) of each item.
    item_taste: Vec<u32>,
    tags: Vec<String>,
}

impl World {
    fn new(args: &BenchScaleArgs) -> World {
        let n_items = args.items;
        let mut rng = StdRng::seed_from_u64(args.seed);
        let mut by_rank: Vec<u32> = (0..n_items as u32).collect();
        for k in (1..n_items).rev() {
            by_rank.swap(k, rng.random_range(0..=k));
        }
        let popularity: Vec<f64> = (0..n_items).map(|rank| 1.0 / ((rank + 1) as f64).powf(ZIPF_EXPONENT)).collect();
        let global = Cdf::new(by_rank.clone(), &popularity);
        let n_tastes = (n_items / ITEMS_PER_TASTE).clamp(1, 1024);
        let mut taste_items: Vec<Vec<u32>> = vec![Vec::new(); n_tastes];
        let mut taste_pop: Vec<Vec<f64>> = vec![Vec::new(); n_tastes];
        let mut item_taste = vec![0u32; n_items];
        for (rank, &item) in by_rank.iter().enumerate() {
            let taste = rng.random_range(0..n_tastes);
            item_taste[item as usize] = taste as u32;
            taste_items[taste].push(item);
            taste_pop[taste].push(popularity[rank]);
        }
        let tastes = taste_items
            .into_iter()
            .zip(&taste_pop)
            .filter(|(items, _)| !items.is_empty())
            .map(|(items, pop)| Cdf::new(items, pop))
            .collect();
        let tags = crate::bench::BENCH_TAGS
            .iter()
            .map(|t| (*t).to_owned())
            .chain((crate::bench::BENCH_TAGS.len()..N_TAGS).map(|k| format!("topic-{k}")))
            .collect();
        World { global, tastes, item_taste, tags }
    }

    /// The catalog: a primary tag from the item's taste, one related, one at random.
    fn items(&self, args: &BenchScaleArgs, now_s: i64) -> anyhow::Result<Vec<attune_core::Item>> {
        use attune_server::{extract::from_value, routes::catalog::to_item, wire::ItemIn};
        let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
        let mut items = Vec::with_capacity(args.items);
        for i in 0..args.items {
            let taste = self.item_taste[i] as usize;
            let kind = KINDS[i % KINDS.len()];
            let mut tags = vec![self.tags[taste % N_TAGS].clone(), self.tags[(taste * 7 + 1) % N_TAGS].clone()];
            if rng.random_bool(0.6) {
                tags.push(self.tags[rng.random_range(0..N_TAGS)].clone());
            }
            let published = jiff::Timestamp::from_second(now_s - rng.random_range(0..365 * 86_400))?;
            let attributes = if kind == "product" {
                serde_json::json!({"price": rng.random_range(5..200)})
            } else {
                serde_json::json!({"reading_minutes": rng.random_range(2..30), "level": if i % 4 == 0 { "beginner" } else { "intermediate" }})
            };
            let value = serde_json::json!({"id": format!("i-{i}"), "kind": kind, "title": format!("{} {i}", kind),
                "tags": tags, "attributes": attributes, "published_at": published.to_string(),
                "variants": {"foundational": {"headline": format!("About {kind} {i}")}, "emotional": {"headline": format!("A calm {kind} {i}")}}});
            let wire: ItemIn = from_value(value, "item").map_err(|e| anyhow::anyhow!(e.message))?;
            items.push(to_item(wire, i).map_err(|e| anyhow::anyhow!(e.message))?);
        }
        Ok(items)
    }
}

/// Events per person: Pareto-distributed, scaled so that they add up to `--events` exactly.
fn events_per_person(args: &BenchScaleArgs) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0xac71);
    let raw: Vec<f64> = (0..args.people)
        .map(|_| {
            let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            (1.0 / u.powf(1.0 / PARETO_ALPHA)).min(MAX_EVENTS_PER_PERSON)
        })
        .collect();
    let scale = args.events as f64 / raw.iter().sum::<f64>();
    let mut counts: Vec<u32> = raw.iter().map(|r| ((r * scale).round() as u32).max(1)).collect();
    let mut total: i64 = counts.iter().map(|&c| c as i64).sum();
    while total != args.events as i64 {
        let person = rng.random_range(0..args.people);
        if total < args.events as i64 {
            counts[person] += 1;
            total += 1;
        } else if counts[person] > 1 {
            counts[person] -= 1;
            total -= 1;
        }
    }
    counts
}

/// Writes the events as JSON lines (blocks of people generated in parallel, written in order).
fn write_events(args: &BenchScaleArgs, world: &World, now_s: i64, path: &Path) -> anyhow::Result<usize> {
    let counts = events_per_person(args);
    // The first event id of each block.
    let blocks: Vec<(usize, usize)> = counts
        .chunks(BLOCK)
        .scan(0usize, |next_id, block| {
            let first = *next_id;
            *next_id += block.iter().map(|&c| c as usize).sum::<usize>();
            Some(first)
        })
        .enumerate()
        .collect();
    let mut out = BufWriter::with_capacity(1 << 22, std::fs::File::create(path)?);
    let mut written = 0;
    for group in blocks.chunks(2 * rayon::current_num_threads().max(1)) {
        let texts: Vec<Vec<u8>> = group
            .par_iter()
            .map(|&(block, first_id)| {
                let people = block * BLOCK..((block + 1) * BLOCK).min(args.people);
                block_events(args, world, now_s, people, &counts, first_id, block as u64)
            })
            .collect();
        for text in texts {
            written += text.iter().filter(|&&b| b == b'\n').count();
            out.write_all(&text)?;
        }
    }
    out.flush()?;
    Ok(written)
}

fn block_events(
    args: &BenchScaleArgs,
    world: &World,
    now_s: i64,
    people: std::ops::Range<usize>,
    counts: &[u32],
    first_id: usize,
    block: u64,
) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut rng = StdRng::seed_from_u64(args.seed ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut text = String::new();
    let mut id = first_id;
    let span_s = args.days * 86_400;
    for person in people {
        let n_tastes = rng.random_range(1..=3);
        let mine: Vec<usize> = (0..n_tastes).map(|_| rng.random_range(0..world.tastes.len())).collect();
        let zone = TIME_ZONES[rng.random_range(0..TIME_ZONES.len())];
        let device = DEVICES[rng.random_range(0..DEVICES.len())];
        let first_seen = now_s - rng.random_range(60..span_s);
        for _ in 0..counts[person] {
            let ts = jiff::Timestamp::from_second(rng.random_range(first_seen..now_s)).expect("in range");
            let item = if rng.random::<f64>() < TASTE_SHARE {
                world.tastes[mine[rng.random_range(0..mine.len())]].sample(&mut rng)
            } else {
                world.global.sample(&mut rng)
            };
            let x: f64 = rng.random();
            let kind = TYPE_MIX.iter().find(|(_, share)| x < *share).map_or("view", |(kind, _)| kind);
            let _ = write!(
                text,
                r#"{{"id":"s-{id}","type":"{kind}","user":"u-{person}","ts":"{ts}","context":{{"device":"{device}","timezone":"{zone}"}}"#
            );
            match kind {
                "search" => {
                    let _ = write!(text, r#","properties":{{"query":"{}"}}"#, world.tags[rng.random_range(0..N_TAGS)]);
                }
                "email_open" => {
                    let _ = write!(text, r#","properties":{{"campaign":"weekly"}}"#);
                }
                _ => {
                    let _ = write!(text, r#","item":"i-{item}""#);
                    match kind {
                        "dwell" => {
                            let _ = write!(
                                text,
                                r#","properties":{{"dwell_ms":{},"scroll_depth":{:.2}}}"#,
                                rng.random_range(2_000..600_000),
                                rng.random::<f64>()
                            );
                        }
                        "purchase" | "add_to_cart" => {
                            let _ = write!(text, r#","properties":{{"value":{}}}"#, rng.random_range(5..200));
                        }
                        "rating" => {
                            let _ = write!(text, r#","properties":{{"rating":{}}}"#, rng.random_range(1..=5));
                        }
                        _ => {}
                    }
                }
            }
            text.push_str("}\n");
            id += 1;
        }
    }
    text.into_bytes()
}
