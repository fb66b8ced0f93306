//! `attune bench soak`: minutes of mixed load against a real `attune serve` child process —
//! ingest, decide, consent changes, an erasure a second, training on the server's own schedule
//! (`--train-every`, two minutes by default) — sampling the server's resident memory and open
//! files, and counting answers by status.
//!
//! Each person engages with a fixed set of items (`--items-per-person`), so that after the seed
//! and the warm-up the models' input stops growing and memory is judged in a steady state.
//!
//! Pass criteria (printed with the figures; the command fails when one is missed):
//! - no 5xx and no failed request (connection errors, timeouts);
//! - flat resident memory: after the warm-up (`--warmup-minutes`, which includes the first
//!   scheduled training), the highest and the median resident memory of the last
//!   `--window-minutes` are at most 5% above those of the samples between warm-up and that window
//!   (the high-water mark of each window includes a training, whose working memory comes and
//!   goes, so it is compared with a window that includes one too);
//! - no growth in open files: the most open descriptors of the last window are at most 16 above
//!   the most of the reference window (sockets of the load's own connections come and go).

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::bench_server::{ServerChild, load_average, mib};

/// Arguments of `attune bench soak`.
#[derive(Debug, clap::Args)]
pub struct BenchSoakArgs {
    /// Minutes of load.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Minutes before the memory and open-file criteria apply.
    #[arg(long, default_value_t = 3.0)]
    pub warmup_minutes: f64,
    /// The last minutes, compared with the samples between warm-up and them.
    #[arg(long, default_value_t = 3.0)]
    pub window_minutes: f64,
    /// People the load picks from (each starts with a history of `--history` events).
    #[arg(long, default_value_t = 20_000)]
    pub people: usize,
    /// Events per person loaded before the load starts.
    #[arg(long, default_value_t = 40)]
    pub history: usize,
    /// Items each person engages with (a fixed set per person, drawn with the catalog's skew):
    /// after the seed and the warm-up the models' input (distinct person–item pairs) stops
    /// growing, so memory is judged in a steady state. 0: any item, every event (the models'
    /// input then grows all along: 391,000 to 1.27M pairs in a 10-minute run, and the training's
    /// working memory with it).
    #[arg(long, default_value_t = 16)]
    pub items_per_person: usize,
    /// Catalog items.
    #[arg(long, default_value_t = 5_000)]
    pub items: usize,
    /// Events ingested per second (batches of 100).
    #[arg(long, default_value_t = 2_000)]
    pub ingest_rate: u64,
    /// Decisions per second.
    #[arg(long, default_value_t = 200)]
    pub decide_rate: u64,
    /// Consent changes per second.
    #[arg(long, default_value_t = 5)]
    pub consent_rate: u64,
    /// Erasures per second.
    #[arg(long, default_value_t = 1)]
    pub erase_rate: u64,
    /// Seconds between the server's scheduled trainings (`attune serve --train-every`).
    #[arg(long, default_value_t = 120)]
    pub train_every: u64,
    /// Seconds between samples of memory and open files.
    #[arg(long, default_value_t = 5)]
    pub sample_every: u64,
    /// Port of the measured `attune serve` on 127.0.0.1.
    #[arg(long, default_value_t = 7712)]
    pub port: u16,
    /// Data directory (default: a temporary one, removed at the end). Must be new or empty.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Also write every sample as CSV (`seconds,rss_kib,open_files,models_version`).
    #[arg(long)]
    pub samples: Option<PathBuf>,
}

/// Counts of answers of one kind of request.
#[derive(Debug, Default)]
struct Counts {
    ok: AtomicU64,
    client_error: AtomicU64,
    server_error: AtomicU64,
    failed: AtomicU64,
    latency: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl Counts {
    fn record(&self, result: &Result<reqwest::StatusCode, reqwest::Error>, micros: u64) {
        match result {
            Ok(status) if status.is_server_error() => self.server_error.fetch_add(1, Ordering::Relaxed),
            Ok(status) if status.is_client_error() => self.client_error.fetch_add(1, Ordering::Relaxed),
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
        let mut latency = self.latency.lock().expect("no panic while holding it");
        latency.get_or_insert_with(|| hdrhistogram::Histogram::new(3).expect("valid")).record(micros).ok();
    }

    fn line(&self, name: &str) -> String {
        let latency = self.latency.lock().expect("no panic while holding it");
        let (p50, p99) = latency.as_ref().map_or((0.0, 0.0), |h| {
            (h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0)
        });
        format!(
            "| {name} | {} | {} | {} | {} | {p50:.2} | {p99:.2} |",
            self.ok.load(Ordering::Relaxed),
            self.client_error.load(Ordering::Relaxed),
            self.server_error.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        )
    }

    fn bad(&self) -> u64 {
        self.server_error.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct Load {
    ingest: Counts,
    decide: Counts,
    consent: Counts,
    erase: Counts,
    next_event: AtomicU64,
}

/// One sample of the server.
#[derive(Debug, Clone, Copy)]
struct Sample {
    seconds: f64,
    rss_kib: u64,
    open_files: usize,
    models_version: u64,
}

pub fn run(args: BenchSoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.people > 0 && args.items > 0, "need people and items");
    anyhow::ensure!(
        args.warmup_minutes + args.window_minutes < args.minutes,
        "--minutes must exceed --warmup-minutes + --window-minutes, leaving a reference window"
    );
    let temp = tempfile::tempdir()?;
    let data = args.data.clone().unwrap_or_else(|| temp.path().join("data"));
    if data.exists() && std::fs::read_dir(&data)?.next().is_some() {
        anyhow::bail!("{} is not empty", data.display());
    }
    let log = match &args.data {
        Some(dir) => PathBuf::from(format!("{}.serve.log", dir.display())),
        None => temp.path().join("serve.log"),
    };
    println!(
        "bench soak: {} min; {} people ({} items each, 0: any), {} items; per second {} events, {} decisions, {} consent changes, {} erasures; training every {} s; load average {} at start",
        args.minutes,
        args.people,
        args.items_per_person,
        args.items,
        args.ingest_rate,
        args.decide_rate,
        args.consent_rate,
        args.erase_rate,
        args.train_every,
        load_average()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = runtime.block_on(soak(&args, &data, &log));
    if args.data.is_none() && result.is_err() {
        // Keep the log of a failed run.
        let kept = std::env::temp_dir().join(format!("attune-soak-{}.log", std::process::id()));
        if std::fs::copy(&log, &kept).is_ok() {
            eprintln!("the server's log: {}", kept.display());
        }
    }
    result
}

async fn soak(args: &BenchSoakArgs, data: &std::path::Path, log: &std::path::Path) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let train_every = args.train_every.to_string();
    let mut server = ServerChild::start(data, args.port, &["--train-every", &train_every], log)?;
    let base = server.base_url.clone();
    let mut peak = 0;
    server.wait_for(&client, "/readyz", Instant::now(), Duration::from_secs(120), &mut peak).await?;

    seed(args, &client, &base).await?;
    eprintln!("seeded; loading for {} minutes", args.minutes);

    let load = Arc::new(Load::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.minutes * 60.0);
    let mut tasks = Vec::new();
    // Each kind of request runs on its own paced loop; a slow answer delays only its own kind.
    let every = |per_second: u64| Duration::from_secs_f64(1.0 / per_second.max(1) as f64);
    let kinds: [(u64, u8); 4] =
        [(args.ingest_rate.div_ceil(100), 0), (args.decide_rate, 1), (args.consent_rate, 2), (args.erase_rate, 3)];
    for (rate, kind) in kinds {
        if rate == 0 {
            continue;
        }
        // Decisions over two loops, like two clients.
        let loops = if kind == 1 { 2 } else { 1 };
        for lane in 0..loops {
            let (client, base, load) = (client.clone(), base.clone(), Arc::clone(&load));
            let world = World { people: args.people, items: args.items, items_per_person: args.items_per_person };
            let period = every(rate) * loops;
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(1000 + u64::from(kind) * 10 + u64::from(lane));
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while tokio::time::Instant::now() < deadline {
                    ticks.tick().await;
                    let started = Instant::now();
                    let (counts, result) = match kind {
                        0 => {
                            let first = load.next_event.fetch_add(100, Ordering::Relaxed);
                            let events: Vec<_> = (0..100)
                                .map(|k| world.event(&mut rng, &format!("k-{}", first + k)))
                                .collect();
                            let request = client.post(format!("{base}/v1/events")).json(&serde_json::json!({"events": events}));
                            (&load.ingest, send(request).await)
                        }
                        1 => {
                            let body = serde_json::json!({"user": format!("u-{}", rng.random_range(0..world.people)),
                                "context": {"timezone": "Europe/Berlin", "device": "mobile"},
                                "placements": [{"slot": "home_feed", "count": 10}], "explain": true});
                            (&load.decide, send(client.post(format!("{base}/v1/decide")).json(&body)).await)
                        }
                        2 => {
                            let body = serde_json::json!({"personalization": rng.random_bool(0.8), "analytics": rng.random_bool(0.7),
                                "contextual": rng.random_bool(0.3), "email": rng.random_bool(0.5), "push": false});
                            let person = rng.random_range(0..world.people);
                            (&load.consent, send(client.put(format!("{base}/v1/users/u-{person}/consent")).json(&body)).await)
                        }
                        _ => {
                            let person = rng.random_range(0..world.people);
                            (&load.erase, send(client.delete(format!("{base}/v1/users/u-{person}"))).await)
                        }
                    };
                    counts.record(&result, started.elapsed().as_micros() as u64);
                }
            }));
        }
    }

    // Samples until the deadline.
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut sampler = tokio::time::interval(Duration::from_secs(args.sample_every.max(1)));
    while tokio::time::Instant::now() < deadline {
        sampler.tick().await;
        server.check_alive()?;
        let models_version = models_version(&client, &base).await;
        let sample = Sample {
            seconds: started.elapsed().as_secs_f64(),
            rss_kib: server.rss_kib(),
            open_files: server.open_files(),
            models_version,
        };
        if samples.len().is_multiple_of(6) {
            eprintln!(
                "{:6.0} s  resident {:>8} MiB  open files {:>5}  models v{}  decide ok {}  5xx {}",
                sample.seconds,
                mib(sample.rss_kib),
                sample.open_files,
                sample.models_version,
                load.decide.ok.load(Ordering::Relaxed),
                load.ingest.bad() + load.decide.bad() + load.consent.bad() + load.erase.bad()
            );
        }
        samples.push(sample);
    }
    for task in tasks {
        task.await.context("a load task panicked")?;
    }
    let hwm = server.peak_rss_kib();
    server.stop()?;

    if let Some(path) = &args.samples {
        let mut csv = String::from("seconds,rss_kib,open_files,models_version\n");
        for s in &samples {
            csv.push_str(&format!("{:.1},{},{},{}\n", s.seconds, s.rss_kib, s.open_files, s.models_version));
        }
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    report(args, &load, &samples, hwm)
}

async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::StatusCode, reqwest::Error> {
    let response = request.send().await?;
    let status = response.status();
    response.bytes().await?;
    Ok(status)
}

async fn models_version(client: &reqwest::Client, base: &str) -> u64 {
    let Ok(response) = client.get(format!("{base}/v1/models")).send().await else { return 0 };
    let models: serde_json::Value = response.json().await.unwrap_or_default();
    models["models"][0]["version"].as_u64().unwrap_or(0)
}

/// Who engages with what.
#[derive(Debug, Clone, Copy)]
struct World {
    people: usize,
    items: usize,
    items_per_person: usize,
}

impl World {
    /// An event of a random person: an item of their set (or any item with no sets), skewed: a
    /// few items get most of the traffic.
    fn event(&self, rng: &mut StdRng, id: &str) -> serde_json::Value {
        let person = rng.random_range(0..self.people);
        let u = if self.items_per_person == 0 {
            rng.random::<f64>()
        } else {
            // The person's `slot`th item, the same at every draw: a hash of (person, slot).
            let slot = rng.random_range(0..self.items_per_person) as u64;
            (splitmix64(((person as u64) << 20) ^ slot) >> 11) as f64 / (1u64 << 53) as f64
        };
        let item = (u.powi(3) * self.items as f64) as usize;
        let kind = ["view", "view", "view", "click", "dwell", "add_to_cart"][rng.random_range(0..6)];
        let ts = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(rng.random_range(0..3 * 86_400));
        let mut event = serde_json::json!({"id": id, "type": kind, "user": format!("u-{person}"),
            "item": format!("i-{}", item.min(self.items - 1)), "ts": ts.to_string(),
            "context": {"device": "mobile", "timezone": "Europe/Berlin"}});
        if kind == "dwell" {
            event["properties"] = serde_json::json!({"dwell_ms": rng.random_range(1000..300_000)});
        }
        event
    }
}

/// SplitMix64's finalizer: a well-mixed 64-bit hash of `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The catalog and every person's starting history, over HTTP.
async fn seed(args: &BenchSoakArgs, client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let tags = crate::bench::BENCH_TAGS;
    let items: Vec<_> = (0..args.items)
        .map(|i| {
            serde_json::json!({"id": format!("i-{i}"), "kind": "article", "title": format!("Item {i}"),
            "tags": [tags[i % tags.len()], tags[(i / 7) % tags.len()]]})
        })
        .collect();
    for chunk in items.chunks(5_000) {
        let response = client.put(format!("{base}/v1/items")).json(&serde_json::json!({"items": chunk})).send().await?;
        anyhow::ensure!(response.status().is_success(), "seeding items: {}", response.status());
    }
    let mut rng = StdRng::seed_from_u64(3);
    let world = World { people: args.people, items: args.items, items_per_person: args.items_per_person };
    let total = args.people * args.history;
    let mut sent = 0;
    while sent < total {
        let n = (total - sent).min(1_000);
        let events: Vec<_> = (0..n).map(|k| world.event(&mut rng, &format!("h-{}", sent + k))).collect();
        let response =
            client.post(format!("{base}/v1/events")).json(&serde_json::json!({"events": events})).send().await?;
        anyhow::ensure!(response.status().is_success(), "seeding events: {}", response.status());
        sent += n;
    }
    Ok(())
}

fn report(args: &BenchSoakArgs, load: &Load, samples: &[Sample], hwm_kib: u64) -> anyhow::Result<()> {
    let warmup = args.warmup_minutes * 60.0;
    let window_start = (args.minutes - args.window_minutes) * 60.0;
    let reference: Vec<&Sample> = samples.iter().filter(|s| s.seconds >= warmup && s.seconds < window_start).collect();
    let last: Vec<&Sample> = samples.iter().filter(|s| s.seconds >= window_start).collect();
    anyhow::ensure!(!reference.is_empty() && !last.is_empty(), "too few samples to judge");
    let stats = |window: &[&Sample]| {
        let mut rss: Vec<u64> = window.iter().map(|s| s.rss_kib).collect();
        rss.sort_unstable();
        let files = window.iter().map(|s| s.open_files).max().unwrap_or(0);
        (rss[rss.len() - 1], rss[rss.len() / 2], files)
    };
    let (ref_max, ref_median, ref_files) = stats(&reference);
    let (last_max, last_median, last_files) = stats(&last);
    let trainings = {
        let mut versions: Vec<u64> = samples.iter().map(|s| s.models_version).collect();
        versions.dedup();
        versions.len().saturating_sub(1)
    };

    println!();
    println!(
        "| every {}th sample: seconds | resident MiB | open files | models version |",
        60 / args.sample_every.max(1)
    );
    println!("|---|---|---|---|");
    let stride = (60 / args.sample_every.max(1)).max(1) as usize;
    for s in samples.iter().step_by(stride).chain(samples.last()) {
        println!("| {:.0} | {} | {} | {} |", s.seconds, mib(s.rss_kib), s.open_files, s.models_version);
    }
    println!();
    println!("| requests | 2xx | 4xx | 5xx | failed | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    println!("{}", load.ingest.line("ingest (batches of 100)"));
    println!("{}", load.decide.line("decide"));
    println!("{}", load.consent.line("consent"));
    println!("{}", load.erase.line("erasure"));
    println!();
    let bad = load.ingest.bad() + load.decide.bad() + load.consent.bad() + load.erase.bad();
    let growth = |last: u64, reference: u64| last as f64 / reference.max(1) as f64 - 1.0;
    let checks = [
        (format!("no 5xx and no failed request: {bad}"), bad == 0),
        (
            format!(
                "resident memory flat: last {} min max {} MiB vs {} MiB before ({:+.1}%), median {} vs {} MiB ({:+.1}%), both ≤ +5%",
                args.window_minutes,
                mib(last_max),
                mib(ref_max),
                100.0 * growth(last_max, ref_max),
                mib(last_median),
                mib(ref_median),
                100.0 * growth(last_median, ref_median)
            ),
            growth(last_max, ref_max) <= 0.05 && growth(last_median, ref_median) <= 0.05,
        ),
        (
            format!("open files not growing: last window at most {last_files} vs {ref_files} before (≤ +16)"),
            last_files <= ref_files + 16,
        ),
        (format!("trainings during the soak: {trainings}"), trainings > 0),
    ];
    println!("resident memory peak (VmHWM): {} MiB; load average at the end: {}", mib(hwm_kib), load_average());
    let mut passed = true;
    for (text, ok) in &checks {
        println!("{} {text}", if *ok { "PASS" } else { "FAIL" });
        passed &= ok;
    }
    anyhow::ensure!(passed, "the soak failed a criterion (above)");
    println!("soak passed");
    Ok(())
}
