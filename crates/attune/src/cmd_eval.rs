//! `attune eval`: the offline relevance protocol of EVAL.md on a dataset folder or a fixed split.
//! All modelling lives in `attune_rank::eval`; this file reads arguments, prints tables and JSON.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use attune_rank::eval::{self, Config, EvalError, Fold, Outcome, Row};

/// Arguments of `attune eval`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    /// `attune eval bandit DIR` instead of the relevance protocol.
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// Dataset folder with `interactions.tsv` (`user<TAB>item<TAB>weight<TAB>unix_ts`) and
    /// optionally `items.tsv` (header `item title tags`).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Print one JSON object per model and line instead of a markdown table.
    #[arg(long)]
    pub json: bool,
    /// Also write the split as DIR/train.tsv and DIR/test.tsv.
    #[arg(long, value_name = "DIR")]
    pub write_split: Option<PathBuf>,
    /// Score a fixed split: DIR/train.tsv and DIR/test.tsv (as `eval_peers.py --write-split`
    /// writes them). `items.tsv` is still read from `--data` when given.
    #[arg(long, value_name = "DIR")]
    pub split: Option<PathBuf>,
    /// Models to run, comma-separated: pop, itemknn, ials, ease, rp3beta, content, transitions,
    /// blend, served (the ranker `decide` serves, trained as `attune serve` trains it).
    #[arg(long, value_delimiter = ',', default_value = "pop,itemknn,ials,ease,rp3beta,content,transitions,served")]
    pub models: Vec<String>,
    /// Re-run the hyper-parameter search on a validation split made from train only, instead of
    /// using the checked-in defaults.
    #[arg(long)]
    pub tune: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Score every history unweighted (no recency weighting), with defaults or tuning alike.
    #[arg(long)]
    pub no_recency: bool,
    /// Also measure the served path: load the train part through the engine's import path, train
    /// as `attune serve` does, ask `Engine::decide` for every test person (a slot with no
    /// editorial or serendipity share) and score the answers; printed next to the offline
    /// `served` row (which this adds to `--models`).
    #[arg(long)]
    pub replay: bool,
}

/// Evaluations other than the relevance protocol.
#[derive(Debug, clap::Subcommand)]
pub enum EvalCommand {
    /// Off-policy evaluation (IPS, SNIPS, DM, DR with 95% intervals) of Attune's contextual
    /// bandit against the logged Random and Bernoulli-TS policies of the Open Bandit Dataset.
    Bandit(crate::cmd_eval_bandit::BanditArgs),
}

/// The blend's components, in the order of `eval::DEFAULT_BLEND`.
const BLEND_PARTS: [&str; 4] = ["ease", "rp3beta", "ials", "itemknn"];

/// Runs the evaluation and prints the results on stdout (progress on stderr).
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        // Fails only if a global pool already exists, in which case that pool is used.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    for name in &args.models {
        if name != "blend" && name != "served" && Config::default_for(name).is_none() {
            bail!("unknown model {name:?}; known: {}, blend, served", eval::MODEL_NAMES.join(", "));
        }
    }
    let mut args = args;
    if args.replay && !args.models.iter().any(|m| m == "served") {
        args.models.push("served".into());
    }
    let (train, test, label) = load_split(&args)?;
    if args.data.is_none() && args.models.iter().any(|m| m == "content") {
        eprintln!("note: content needs items.tsv from --data; skipping it");
    }
    let docs = match &args.data {
        Some(dir) if dir.join("items.tsv").exists() => Some(eval::read_items(&dir.join("items.tsv"))?),
        _ => None,
    };
    let fold = Fold::from_rows(&train, &test, docs.as_ref());
    if fold.test_users.is_empty() {
        bail!("no person has a test part (people need at least 5 interactions)");
    }
    eprintln!(
        "{label}: train {} ({} people, {} items), test {} ({} people)",
        train.len(),
        fold.users.len(),
        fold.items.len(),
        test.len(),
        fold.test_users.len()
    );
    let val = if args.tune {
        let val = eval::validation_fold(&train, docs.as_ref());
        eprintln!("validation: train {} interactions, {} test people", val.train.nnz(), val.test_users.len());
        Some(val)
    } else {
        None
    };

    let mut configs: Vec<(String, Config)> = Vec::new();
    let mut config_for = |name: &str| -> anyhow::Result<Config> {
        if let Some((_, c)) = configs.iter().find(|(n, _)| n == name) {
            return Ok(*c);
        }
        let config = match &val {
            Some(val) => {
                let grid: &[f32] = if args.no_recency { &[] } else { &eval::RECENCY_GRID };
                let (config, ndcg) = eval::tune(name, val, grid, &mut |line| eprintln!("{line}"))?;
                eprintln!("[{name}] chosen on validation: {config} (NDCG@10 {ndcg:.4})");
                config
            }
            None => Config::default_for(name).context("known model")?,
        };
        let config = if args.no_recency { Config { recency_half_life: 0.0, ..config } } else { config };
        configs.push((name.to_owned(), config));
        Ok(config)
    };

    if !args.json {
        println!("### {label} ({} test people, {} train items)\n", fold.test_users.len(), fold.items.len());
        println!("| model | params | P@10 | R@10 | NDCG@10 | ±se | HR@10 | Cov@10 | fit s | rec s |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
    }
    for name in &args.models {
        if name == "blend" || name == "served" {
            continue;
        }
        if name == "content" && fold.docs.is_none() {
            continue;
        }
        let config = config_for(name)?;
        let (_, outcome) = eval::evaluate(&config, &fold)?;
        report(name, &config.to_string(), &outcome, args.json);
    }
    if args.models.iter().any(|m| m == "blend") {
        let parts: Vec<Config> = BLEND_PARTS.iter().map(|n| config_for(n)).collect::<anyhow::Result<_>>()?;
        let weights: Vec<f32> = match &val {
            Some(val) => {
                let (weights, ndcg) = eval::tune_blend(&parts, val, &mut |line| eprintln!("{line}"))?;
                eprintln!("[blend] chosen on validation: {weights:?} (NDCG@10 {ndcg:.4})");
                weights
            }
            None => eval::DEFAULT_BLEND.iter().map(|(_, w)| *w).collect(),
        };
        let start = std::time::Instant::now();
        let blend = eval::fit_blend(&parts, &weights, &fold)?;
        let fit_s = start.elapsed().as_secs_f64();
        let outcome = eval::score_model(&blend, 0.0, &fold, fit_s);
        let described: Vec<String> =
            BLEND_PARTS.iter().zip(&weights).filter(|(_, w)| **w != 0.0).map(|(n, w)| format!("{w}·{n}")).collect();
        report("blend", &described.join(" + "), &outcome, args.json);
    }
    if args.models.iter().any(|m| m == "served") {
        let start = std::time::Instant::now();
        let ranker = attune_rank::Ranker::train(&fold.train, &attune_rank::RankerOptions::default(), &mut |line| {
            eprintln!("{line}")
        });
        let outcome = eval::score_ranker(&ranker, &fold, start.elapsed().as_secs_f64());
        report("served", &describe_ranker(&ranker), &outcome, args.json);
        if args.replay {
            let replayed = crate::replay::replay(&train, docs.as_ref(), &fold)?;
            let o = Outcome { metrics: replayed.metrics, fit_s: replayed.train_s, recommend_s: replayed.decide_s };
            if args.json {
                report_json("served", "replay", &replayed.ranker, &o);
            } else {
                report("served (replay)", &replayed.ranker, &o, false);
            }
            eprintln!(
                "replay: loaded in {:.1} s, trained in {:.1} s, {} decisions in {:.1} s; NDCG@10 {:.4} = {:.3} × offline {:.4}",
                replayed.load_s,
                replayed.train_s,
                fold.test_users.len(),
                replayed.decide_s,
                replayed.metrics.ndcg,
                replayed.metrics.ndcg / outcome.metrics.ndcg.max(1e-12),
                outcome.metrics.ndcg
            );
        }
    }
    Ok(())
}

/// The served ranker in one line: each part's weight (the engagement levels' weights when they
/// differ), name, parameters and half-life.
pub fn describe_ranker(ranker: &attune_rank::Ranker) -> String {
    let report = ranker.report();
    let level_weights = |k: usize| -> String {
        let ws: Vec<String> = report.levels.iter().map(|l| format!("{}", l.weights[k])).collect();
        if ws.iter().all(|w| *w == ws[0]) { ws[0].clone() } else { format!("[{}]", ws.join("/")) }
    };
    report
        .parts
        .iter()
        .enumerate()
        .filter(|(k, _)| report.levels.iter().any(|l| l.weights[*k] != 0.0))
        .map(|(k, p)| format!("{}·{} ({}, h={})", level_weights(k), p.name, p.params, p.half_life))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn report(model: &str, params: &str, o: &Outcome, json: bool) {
    if json {
        report_json(model, "offline", params, o);
        return;
    }
    let m = &o.metrics;
    {
        println!(
            "| {model} | {params} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.2} | {:.2} |",
            m.precision, m.recall, m.ndcg, m.ndcg_se, m.hit_rate, m.coverage, o.fit_s, o.recommend_s
        );
    }
}

/// One JSON object per line: `path` is `offline` (the library scores the fold) or `replay` (the
/// engine's decisions were scored).
fn report_json(model: &str, path: &str, params: &str, o: &Outcome) {
    let m = &o.metrics;
    {
        let line = serde_json::json!({
            "model": model,
            "path": path,
            "params": params,
            "precision": m.precision,
            "recall": m.recall,
            "ndcg": m.ndcg,
            "ndcg_se": m.ndcg_se,
            "hit_rate": m.hit_rate,
            "coverage": m.coverage,
            "fit_s": o.fit_s,
            "recommend_s": o.recommend_s,
        });
        println!("{line}");
    }
}

/// Reads a fixed split (`--split`) or makes the EVAL.md split of `--data`.
fn load_split(args: &EvalArgs) -> anyhow::Result<(Vec<Row>, Vec<Row>, String)> {
    let (train, test, label) = match (&args.split, &args.data) {
        (Some(dir), _) => {
            let train = eval::read_interactions(&dir.join("train.tsv"))?;
            let test = eval::read_interactions(&dir.join("test.tsv"))?;
            (train, test, format!("split {}", dir.display()))
        }
        (None, Some(dir)) => {
            let rows = eval::read_interactions(&dir.join("interactions.tsv"))?;
            if rows.is_empty() {
                return Err(EvalError::Empty(format!("{} has no interactions", dir.display())).into());
            }
            let (train, test) = eval::temporal_split(&rows);
            (train, test, dataset_name(dir))
        }
        (None, None) => bail!("give --data DIR or --split DIR"),
    };
    if let Some(out) = &args.write_split {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        eval::write_rows(&out.join("train.tsv"), &train)?;
        eval::write_rows(&out.join("test.tsv"), &test)?;
    }
    Ok((train, test, label))
}

fn dataset_name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}
