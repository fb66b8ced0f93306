//! `attune bench train`: trains iALS and item-kNN on synthetic data of a chosen size and reports
//! wall time per model and peak resident memory. The generator: item popularity follows a power
//! law; every person has one to three latent tastes (item clusters) and draws most interactions
//! from them, the rest from the global popularity.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use attune_rank::{Ials, IalsParams, Interactions, ItemKnn, ItemKnnParams};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rayon::prelude::*;

/// Arguments of `attune bench train`.
#[derive(Debug, clap::Args)]
pub struct BenchTrainArgs {
    /// Number of people.
    #[arg(long, default_value_t = 1_000_000)]
    pub people: usize,
    /// Number of items.
    #[arg(long, default_value_t = 100_000)]
    pub items: usize,
    /// Number of interactions to generate (repeats of a pair are merged by the matrix).
    #[arg(long, default_value_t = 20_000_000)]
    pub interactions: usize,
    /// iALS latent dimension.
    #[arg(long, default_value_t = 64)]
    pub factors: usize,
    /// iALS iterations.
    #[arg(long, default_value_t = 15)]
    pub iterations: usize,
    /// Generator and initialization seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also write the generated interactions as TSV (`user item 1 0`), e.g. to time a peer on
    /// the identical data.
    #[arg(long, value_name = "FILE")]
    pub write_tsv: Option<PathBuf>,
    /// Skip item-kNN (time iALS only).
    #[arg(long)]
    pub skip_knn: bool,
    /// iALS regularization.
    #[arg(long, default_value_t = 10.0)]
    pub regularization: f32,
    /// iALS confidence weight α (confidence 1 + α).
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f32,
}

/// Items per latent taste (item cluster) of the generator; there are between 8 and 256 tastes.
const ITEMS_PER_TASTE: usize = 500;
/// Share of a person's interactions drawn from their tastes (the rest follow global popularity).
const TASTE_SHARE: f64 = 0.8;
/// Power-law exponent of item popularity by rank.
const ZIPF_EXPONENT: f64 = 0.9;

/// Generates the data, trains, prints one line per model and the peak memory.
pub fn run(args: BenchTrainArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        // Fails only if a global pool already exists, in which case that pool is used.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    anyhow::ensure!(args.people > 0 && args.items > 0, "need at least one person and one item");
    println!(
        "bench train: {} people × {} items, {} interactions, {} threads",
        args.people,
        args.items,
        args.interactions,
        rayon::current_num_threads()
    );
    let start = Instant::now();
    let triples = generate(&args);
    let generate_s = start.elapsed().as_secs_f64();
    if let Some(path) = &args.write_tsv {
        write_tsv(path, &triples).with_context(|| format!("writing {}", path.display()))?;
    }
    let start = Instant::now();
    let data = Interactions::from_triples(args.people, args.items, &triples);
    drop(triples);
    let build_s = start.elapsed().as_secs_f64();
    println!("generate {generate_s:.1} s; build CSR + transpose {build_s:.1} s; {} distinct pairs", data.nnz());
    println!("| model | params | fit s | peak RSS so far |");
    println!("|---|---|---|---|");

    let params = IalsParams {
        factors: args.factors,
        iterations: args.iterations,
        regularization: args.regularization,
        alpha: args.alpha,
        seed: args.seed,
        ..IalsParams::default()
    };
    let start = Instant::now();
    let ials = Ials::fit(&data, &params);
    let ials_s = start.elapsed().as_secs_f64();
    println!(
        "| iALS | {} factors, {} iterations, {} CG steps | {ials_s:.2} | {} |",
        params.factors,
        params.iterations,
        params.cg_steps,
        peak_rss()
    );
    drop(ials);

    if !args.skip_knn {
        let knn_params = ItemKnnParams::default();
        let start = Instant::now();
        let knn = ItemKnn::fit(&data, &knn_params);
        let knn_s = start.elapsed().as_secs_f64();
        println!(
            "| item-kNN | K={}, shrink={} | {knn_s:.2} | {} |",
            knn_params.neighbors,
            knn_params.shrink,
            peak_rss()
        );
        drop(knn);
    }
    println!("peak RSS (VmHWM): {}", peak_rss());
    Ok(())
}

/// Synthetic `(person, item, 1.0)` triples, deterministic for a seed and independent of the
/// thread count (each block of people has its own seeded generator).
fn generate(args: &BenchTrainArgs) -> Vec<(u32, u32, f32)> {
    let n_items = args.items;
    let mut rng = StdRng::seed_from_u64(args.seed);
    // Popularity rank -> item index is a random permutation so that tastes mix popular and rare items.
    let mut items: Vec<u32> = (0..n_items as u32).collect();
    for k in (1..n_items).rev() {
        items.swap(k, rng.random_range(0..=k));
    }
    let popularity: Vec<f64> = (0..n_items).map(|rank| 1.0 / ((rank + 1) as f64).powf(ZIPF_EXPONENT)).collect();
    let global = Cdf::new(items.clone(), &popularity);
    let n_tastes = (n_items / ITEMS_PER_TASTE).clamp(8, 256).min(n_items);
    let mut taste_items: Vec<Vec<u32>> = vec![Vec::new(); n_tastes];
    let mut taste_pop: Vec<Vec<f64>> = vec![Vec::new(); n_tastes];
    for (rank, &item) in items.iter().enumerate() {
        let t = rng.random_range(0..n_tastes);
        taste_items[t].push(item);
        taste_pop[t].push(popularity[rank]);
    }
    let tastes: Vec<Cdf> = taste_items.into_iter().zip(&taste_pop).map(|(i, p)| Cdf::new(i, p)).collect();

    // Interactions per person: exponential around the mean, at least one, at most half the
    // catalog; a person's items are distinct (redrawn on repeats), as in a real log of pairs.
    let mean = args.interactions as f64 / args.people as f64;
    const BLOCK: usize = 4096;
    let blocks: Vec<usize> = (0..args.people.div_ceil(BLOCK)).collect();
    let per_block: Vec<Vec<(u32, u32, f32)>> = blocks
        .par_iter()
        .map(|&b| {
            let mut rng = StdRng::seed_from_u64(args.seed ^ (b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut out = Vec::new();
            let mut chosen = std::collections::HashSet::new();
            for person in b * BLOCK..((b + 1) * BLOCK).min(args.people) {
                let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let n = (((-u.ln()) * (mean - 1.0).max(0.0)).round() as usize + 1).min(n_items.div_ceil(2));
                let n_person_tastes = rng.random_range(1..=3);
                let mine: Vec<usize> = (0..n_person_tastes).map(|_| rng.random_range(0..tastes.len())).collect();
                chosen.clear();
                let mut attempts = 0;
                while chosen.len() < n && attempts < 50 * n {
                    attempts += 1;
                    let item = if rng.random::<f64>() < TASTE_SHARE {
                        tastes[mine[rng.random_range(0..mine.len())]].sample(&mut rng)
                    } else {
                        global.sample(&mut rng)
                    };
                    if chosen.insert(item) {
                        out.push((person as u32, item, 1.0));
                    }
                }
            }
            out
        })
        .collect();
    let mut triples = Vec::with_capacity(per_block.iter().map(Vec::len).sum());
    for block in per_block {
        triples.extend(block);
    }
    triples
}

/// Sampling from a discrete distribution by binary search over its cumulative weights.
pub(crate) struct Cdf {
    items: Vec<u32>,
    cumulative: Vec<f64>,
}

impl Cdf {
    pub(crate) fn new(items: Vec<u32>, weights: &[f64]) -> Cdf {
        let mut total = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        Cdf { items, cumulative }
    }

    pub(crate) fn sample(&self, rng: &mut impl Rng) -> u32 {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        let k = self.cumulative.partition_point(|&c| c <= x).min(self.items.len().saturating_sub(1));
        self.items[k]
    }
}

fn write_tsv(path: &PathBuf, triples: &[(u32, u32, f32)]) -> std::io::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for &(u, i, _) in triples {
        writeln!(out, "{u}\t{i}\t1\t0")?;
    }
    out.flush()
}

/// Peak resident set size of this process (`VmHWM` from /proc/self/status), or "n/a".
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l["VmHWM:".len()..].trim().to_owned()))
        .and_then(|kb| kb.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(|| "n/a".to_owned(), |kb| format!("{:.2} GiB", kb / 1024.0 / 1024.0))
}
