//! The offline protocol of `EVAL.md`: read TSV files, split per person by time, rank, score
//! (P@10, R@10, NDCG@10, HitRate@10, Coverage@10), and tune hyper-parameters on a validation
//! split made the same way from the train part only.
//!
//! Start at [`Fold::from_rows`] (after [`read_interactions`] and [`temporal_split`]), then
//! [`evaluate`] a [`Config`], or [`tune`] one on a validation fold.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::blend::Component;
use crate::{
    Blend, Content, ContentParams, Ease, EaseParams, Ials, IalsParams, IdMap, Interactions, ItemDoc, ItemKnn,
    ItemKnnParams, Model, Popularity, PopularityParams, Ranker, RankerScratch, Rp3beta, Rp3betaParams, Scorer,
    Transitions, TransitionsParams, standardize, top_k_into,
};

/// The cut-off of every metric.
pub const K: usize = 10;

/// Errors of the evaluation module (files and fitting).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line of a TSV file is malformed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A model could not be fitted.
    #[error("fitting {model}: {message}")]
    Fit {
        /// Model name.
        model: String,
        /// The cause.
        message: String,
    },
    /// The data holds nothing to evaluate.
    #[error("{0}")]
    Empty(String),
}

/// One interaction as read from `interactions.tsv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Person id.
    pub user: String,
    /// Item id.
    pub item: String,
    /// Weight (the protocol treats every interaction as 1).
    pub weight: f32,
    /// Unix seconds.
    pub ts: i64,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Io { path: path.to_owned(), source }
}

/// Reads `user<TAB>item<TAB>weight<TAB>unix_ts` lines (no header; blank lines skipped).
pub fn read_interactions(path: &Path) -> Result<Vec<Row>, EvalError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut rows = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_error(path))?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            continue;
        }
        let parse_error = |message: String| EvalError::Parse { path: path.to_owned(), line: n + 1, message };
        let fields: Vec<&str> = line.split('\t').collect();
        let [user, item, weight, ts] = fields[..] else {
            return Err(parse_error(format!("expected 4 tab-separated fields, found {}", fields.len())));
        };
        let weight: f32 = weight.trim().parse().map_err(|_| parse_error(format!("bad weight {weight:?}")))?;
        let ts = parse_ts(ts).ok_or_else(|| parse_error(format!("bad timestamp {ts:?}")))?;
        rows.push(Row { user: user.to_owned(), item: item.to_owned(), weight, ts });
    }
    Ok(rows)
}

fn parse_ts(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().filter(|x| x.is_finite()).map(|x| x as i64))
}

/// Reads `items.tsv` (header `item title tags`, tags `|`-separated) into documents by item id.
pub fn read_items(path: &Path) -> Result<FxHashMap<String, ItemDoc>, EvalError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut docs = FxHashMap::default();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_error(path))?;
        let line = line.trim_end_matches(['\r', '\n']);
        if n == 0 || line.is_empty() {
            continue; // header
        }
        let mut fields = line.split('\t');
        let (Some(item), Some(title)) = (fields.next(), fields.next()) else {
            return Err(EvalError::Parse {
                path: path.to_owned(),
                line: n + 1,
                message: "expected item and title".into(),
            });
        };
        let tags = fields.next().unwrap_or("").split('|').filter(|t| !t.is_empty()).map(str::to_owned).collect();
        docs.insert(item.to_owned(), ItemDoc { title: title.to_owned(), tags, attributes: Vec::new() });
    }
    Ok(docs)
}

/// Writes rows in the same four columns (weights like Python's `{:g}`).
pub fn write_rows(path: &Path, rows: &[Row]) -> Result<(), EvalError> {
    let file = std::fs::File::create(path).map_err(io_error(path))?;
    let mut out = BufWriter::new(file);
    for r in rows {
        writeln!(out, "{}\t{}\t{}\t{}", r.user, r.item, r.weight, r.ts).map_err(io_error(path))?;
    }
    out.flush().map_err(io_error(path))
}

/// How item ids order: numerically when every id is an integer, else as strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdOrder {
    Numeric,
    Text,
}

impl IdOrder {
    fn of<'a>(ids: impl IntoIterator<Item = &'a str>) -> IdOrder {
        if ids.into_iter().all(|id| id.parse::<i64>().is_ok()) { IdOrder::Numeric } else { IdOrder::Text }
    }
    fn cmp(self, a: &str, b: &str) -> std::cmp::Ordering {
        match self {
            IdOrder::Numeric => a.parse::<i64>().unwrap_or(0).cmp(&b.parse::<i64>().unwrap_or(0)),
            IdOrder::Text => a.cmp(b),
        }
    }
}

/// The EVAL.md split: per person, sort by `(ts, item id)` (ids numerically when all item ids are
/// integers); a person with `n ≥ 5` interactions puts the last `max(1, floor(0.2 n))` in test.
/// People appear in order of first occurrence, as in `eval_peers.py --write-split`.
pub fn temporal_split(rows: &[Row]) -> (Vec<Row>, Vec<Row>) {
    let order = IdOrder::of(rows.iter().map(|r| r.item.as_str()));
    let mut by_user: Vec<Vec<&Row>> = Vec::new();
    let mut slot: FxHashMap<&str, usize> = FxHashMap::default();
    for r in rows {
        let k = *slot.entry(&r.user).or_insert_with(|| {
            by_user.push(Vec::new());
            by_user.len() - 1
        });
        by_user[k].push(r);
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut rs in by_user {
        rs.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| order.cmp(&a.item, &b.item)));
        let n = rs.len();
        let n_test = if n >= 5 { (n / 5).max(1) } else { 0 };
        train.extend(rs[..n - n_test].iter().map(|r| (*r).clone()));
        test.extend(rs[n - n_test..].iter().map(|r| (*r).clone()));
    }
    (train, test)
}

/// A train matrix (people × train items, binary weights, timestamps kept) plus each test
/// person's held-out items (`None`: an item never seen in train, always a miss).
#[derive(Debug, Clone)]
pub struct Fold {
    /// Person ids of the train matrix rows.
    pub users: IdMap,
    /// Item ids of the train matrix columns (train items only).
    pub items: IdMap,
    /// The train matrix.
    pub train: Interactions,
    /// Test people (train row indices), sorted.
    pub test_users: Vec<u32>,
    /// Held-out items of each test person, aligned with `test_users` (distinct).
    pub test_items: Vec<Vec<Option<u32>>>,
    /// Item documents aligned with `items`, when `items.tsv` was given.
    pub docs: Option<Vec<ItemDoc>>,
}

impl Fold {
    /// Builds the fold. Ids are indexed in sorted order (numeric when all are integers) so the
    /// layout is deterministic; every interaction gets weight 1 (implicit protocol).
    pub fn from_rows(train: &[Row], test: &[Row], docs: Option<&FxHashMap<String, ItemDoc>>) -> Fold {
        let sorted_ids = |ids: FxHashSet<&str>| {
            let order = IdOrder::of(ids.iter().copied());
            let mut ids: Vec<&str> = ids.into_iter().collect();
            ids.sort_by(|a, b| order.cmp(a, b).then_with(|| a.cmp(b)));
            let mut map = IdMap::new();
            for id in ids {
                map.get_or_insert(id);
            }
            map
        };
        let users = sorted_ids(train.iter().map(|r| r.user.as_str()).collect());
        let items = sorted_ids(train.iter().map(|r| r.item.as_str()).collect());
        let mut triples = Vec::with_capacity(train.len());
        let mut ts = Vec::with_capacity(train.len());
        for r in train {
            // Both ids were inserted above.
            let (Some(u), Some(i)) = (users.get(&r.user), items.get(&r.item)) else {
                continue;
            };
            triples.push((u, i, 1.0));
            ts.push(r.ts);
        }
        let matrix = Interactions::from_triples_with_ts(users.len(), items.len(), &triples, &ts);
        let mut held: BTreeMap<u32, Vec<Option<u32>>> = BTreeMap::new();
        let mut seen: FxHashSet<(&str, &str)> = FxHashSet::default();
        for r in test {
            // A test person without train rows cannot be ranked (not possible with the split).
            let Some(u) = users.get(&r.user) else {
                continue;
            };
            if seen.insert((&r.user, &r.item)) {
                held.entry(u).or_default().push(items.get(&r.item));
            }
        }
        let docs = docs.map(|d| items.ids().iter().map(|id| d.get(id).cloned().unwrap_or_default()).collect());
        let (test_users, test_items) = held.into_iter().unzip();
        Fold { users, items, train: matrix, test_users, test_items, docs }
    }
}

/// The averaged metrics of one ranking.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// Precision@10: hits / 10.
    pub precision: f64,
    /// Recall@10: hits / min(10, |test|).
    pub recall: f64,
    /// NDCG@10, binary gains, ideal DCG over min(10, |test|) positions.
    pub ndcg: f64,
    /// Standard error of the mean NDCG@10.
    pub ndcg_se: f64,
    /// HitRate@10: share of people with at least one hit.
    pub hit_rate: f64,
    /// Coverage@10: distinct recommended items / train items.
    pub coverage: f64,
    /// Number of people averaged over.
    pub n_users: usize,
}

/// Scores top-`k` lists against held-out items (see [`Metrics`] for the definitions).
pub fn metrics(recs: &[Vec<u32>], held: &[Vec<Option<u32>>], n_train_items: usize, k: usize) -> Metrics {
    let discount: Vec<f64> = (0..k).map(|r| 1.0 / ((r + 2) as f64).log2()).collect();
    let mut m = Metrics { n_users: recs.len(), ..Metrics::default() };
    if recs.is_empty() {
        return m;
    }
    let mut ndcgs = Vec::with_capacity(recs.len());
    let mut recommended: FxHashSet<u32> = FxHashSet::default();
    for (list, truth) in recs.iter().zip(held) {
        recommended.extend(list.iter().copied());
        let mut hits = 0usize;
        let mut dcg = 0.0;
        for (rank, item) in list.iter().take(k).enumerate() {
            if truth.contains(&Some(*item)) {
                hits += 1;
                dcg += discount[rank];
            }
        }
        let ideal_n = k.min(truth.len());
        let ideal: f64 = discount[..ideal_n].iter().sum();
        m.precision += hits as f64 / k as f64;
        m.recall += if ideal_n > 0 { hits as f64 / ideal_n as f64 } else { 0.0 };
        m.hit_rate += if hits > 0 { 1.0 } else { 0.0 };
        ndcgs.push(if ideal > 0.0 { dcg / ideal } else { 0.0 });
    }
    let n = recs.len() as f64;
    m.precision /= n;
    m.recall /= n;
    m.hit_rate /= n;
    m.ndcg = ndcgs.iter().sum::<f64>() / n;
    if recs.len() > 1 {
        let var = ndcgs.iter().map(|x| (x - m.ndcg).powi(2)).sum::<f64>() / (n - 1.0);
        m.ndcg_se = (var / n).sqrt();
    }
    m.coverage = if n_train_items > 0 { recommended.len() as f64 / n_train_items as f64 } else { 0.0 };
    m
}

/// A model and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ModelSpec {
    /// [`Popularity`].
    Popularity,
    /// [`ItemKnn`].
    ItemKnn(ItemKnnParams),
    /// [`Ials`].
    Ials(IalsParams),
    /// [`Ease`].
    Ease(EaseParams),
    /// [`Rp3beta`].
    Rp3beta(Rp3betaParams),
    /// [`Content`] (needs `items.tsv`).
    Content(ContentParams),
    /// [`Transitions`].
    Transitions(TransitionsParams),
}

/// A model spec plus how a person's history is weighted when scoring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Model and parameters.
    pub spec: ModelSpec,
    /// See [`Query::with_recency`]; 0 = off.
    pub recency_half_life: f32,
}

/// Model names accepted by [`Config::default_for`].
pub const MODEL_NAMES: [&str; 7] = ["pop", "itemknn", "ials", "ease", "rp3beta", "content", "transitions"];

impl Config {
    /// The checked-in defaults for a model name (see [`MODEL_NAMES`]); `None` for an unknown name.
    ///
    /// Parameters and recency half-lives were chosen on the validation split of ml-latest-small
    /// (train part only) by `attune eval --data ~/.cache/attune-datasets/ml-latest-small --tune`; see `docs/eval.md`.
    pub fn default_for(name: &str) -> Option<Config> {
        let (spec, recency_half_life) = match name {
            "pop" => (ModelSpec::Popularity, 0.0),
            "itemknn" => (ModelSpec::ItemKnn(ItemKnnParams::default()), 2.0),
            "ials" => (ModelSpec::Ials(IalsParams::default()), 40.0),
            "ease" => (ModelSpec::Ease(EaseParams::default()), 5.0),
            "rp3beta" => (ModelSpec::Rp3beta(Rp3betaParams::default()), 10.0),
            "content" => (ModelSpec::Content(ContentParams::default()), 5.0),
            "transitions" => (ModelSpec::Transitions(TransitionsParams::default()), 2.0),
            _ => return None,
        };
        Some(Config { spec, recency_half_life })
    }

    /// The short model name.
    pub fn name(&self) -> &'static str {
        match self.spec {
            ModelSpec::Popularity => "pop",
            ModelSpec::ItemKnn(_) => "itemknn",
            ModelSpec::Ials(_) => "ials",
            ModelSpec::Ease(_) => "ease",
            ModelSpec::Rp3beta(_) => "rp3beta",
            ModelSpec::Content(_) => "content",
            ModelSpec::Transitions(_) => "transitions",
        }
    }

    /// Fits the model on `fold.train`.
    pub fn fit(&self, fold: &Fold) -> Result<Model, EvalError> {
        Ok(match &self.spec {
            ModelSpec::Popularity => Model::Popularity(Popularity::fit(&fold.train, &PopularityParams::default())),
            ModelSpec::ItemKnn(p) => Model::ItemKnn(ItemKnn::fit(&fold.train, p)),
            ModelSpec::Ials(p) => Model::Ials(Ials::fit(&fold.train, p)),
            ModelSpec::Ease(p) => Model::Ease(
                Ease::fit(&fold.train, p)
                    .map_err(|e| EvalError::Fit { model: "ease".into(), message: e.to_string() })?,
            ),
            ModelSpec::Rp3beta(p) => Model::Rp3beta(Rp3beta::fit(&fold.train, p)),
            ModelSpec::Content(p) => {
                let docs = fold.docs.as_ref().ok_or_else(|| EvalError::Fit {
                    model: "content".into(),
                    message: "needs items.tsv next to interactions.tsv".into(),
                })?;
                Model::Content(Content::fit(docs, p))
            }
            ModelSpec::Transitions(p) => Model::Transitions(Transitions::fit(&fold.train, p)),
        })
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.spec {
            ModelSpec::Popularity => write!(f, "-")?,
            ModelSpec::ItemKnn(p) => write!(f, "K={}, shrink={}", p.neighbors, p.shrink)?,
            ModelSpec::Ials(p) => write!(
                f,
                "factors={}, reg={}, alpha={}, iters={}, cg={}",
                p.factors, p.regularization, p.alpha, p.iterations, p.cg_steps
            )?,
            ModelSpec::Ease(p) => write!(f, "lambda={}", p.lambda)?,
            ModelSpec::Rp3beta(p) => write!(f, "alpha={}, beta={}, K={}", p.alpha, p.beta, p.neighbors)?,
            ModelSpec::Content(p) => {
                write!(f, "tag={}, word={}, attr={}", p.tag_weight, p.word_weight, p.attribute_weight)?
            }
            ModelSpec::Transitions(p) => write!(f, "window={}, beta={}, K={}", p.window, p.beta, p.neighbors)?,
        }
        if self.recency_half_life > 0.0 {
            write!(f, ", recency={}", self.recency_half_life)?;
        }
        Ok(())
    }
}

/// Top-`k` lists for every test person of `fold` (train items excluded), in parallel.
pub fn recommend_all(model: &dyn Scorer, fold: &Fold, recency_half_life: f32, k: usize) -> Vec<Vec<u32>> {
    let n_items = model.n_items();
    fold.test_users
        .par_iter()
        .map_init(
            || (vec![0f32; n_items], Vec::new(), Vec::new()),
            |(scores, top, weights), &u| {
                let query = fold.train.query(u);
                model.score_into(&query.with_recency(recency_half_life, weights), scores);
                top_k_into(scores, query.items, k, top);
                top.iter().map(|&(i, _)| i).collect()
            },
        )
        .collect()
}

/// The result of evaluating one model.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Test metrics.
    pub metrics: Metrics,
    /// Wall seconds of the fit.
    pub fit_s: f64,
    /// Wall seconds to produce every test person's top 10.
    pub recommend_s: f64,
}

/// Fits `config` on `fold.train` and scores it on the fold's held-out items.
pub fn evaluate(config: &Config, fold: &Fold) -> Result<(Model, Outcome), EvalError> {
    let start = Instant::now();
    let model = config.fit(fold)?;
    let fit_s = start.elapsed().as_secs_f64();
    let outcome = score_model(&model, config.recency_half_life, fold, fit_s);
    Ok((model, outcome))
}

/// Ranks and scores an already fitted model.
pub fn score_model(model: &dyn Scorer, recency_half_life: f32, fold: &Fold, fit_s: f64) -> Outcome {
    let start = Instant::now();
    let recs = recommend_all(model, fold, recency_half_life, K);
    let recommend_s = start.elapsed().as_secs_f64();
    Outcome { metrics: metrics(&recs, &fold.test_items, fold.items.len(), K), fit_s, recommend_s }
}

/// Scores the served [`Ranker`] on the fold's test people exactly as `decide` ranks: each
/// person's train history (timestamps included) folded in, train items excluded, top [`K`].
pub fn score_ranker(ranker: &Ranker, fold: &Fold, fit_s: f64) -> Outcome {
    let start = Instant::now();
    let n = ranker.n_items();
    let recs: Vec<Vec<u32>> = fold
        .test_users
        .par_iter()
        .map_init(
            || (vec![0f32; n], Vec::new(), RankerScratch::default()),
            |(scores, top, scratch), &u| {
                let query = fold.train.query(u);
                ranker.score_into(&query, query.items.len(), scores, scratch);
                top_k_into(scores, query.items, K, top);
                top.iter().map(|&(i, _)| i).collect()
            },
        )
        .collect();
    let recommend_s = start.elapsed().as_secs_f64();
    Outcome { metrics: metrics(&recs, &fold.test_items, fold.items.len(), K), fit_s, recommend_s }
}

/// Builds the validation fold: the same split applied to the train rows only.
pub fn validation_fold(train: &[Row], docs: Option<&FxHashMap<String, ItemDoc>>) -> Fold {
    let (vtrain, vtest) = temporal_split(train);
    Fold::from_rows(&vtrain, &vtest, docs)
}

/// The candidate configurations searched by [`tune`] for a model name.
pub fn grid(name: &str) -> Vec<Config> {
    let cfg = |spec| Config { spec, recency_half_life: 0.0 };
    match name {
        "pop" => vec![cfg(ModelSpec::Popularity)],
        "itemknn" => [20, 50, 100, 200, 400]
            .into_iter()
            .flat_map(|k| [0.0, 10.0, 50.0].map(|s| cfg(ModelSpec::ItemKnn(ItemKnnParams { neighbors: k, shrink: s }))))
            .collect(),
        "ials" => {
            let mut g = Vec::new();
            for factors in [64, 128, 256] {
                for regularization in [2.0, 5.0, 10.0, 20.0, 50.0] {
                    for alpha in [1.0, 3.0, 9.0] {
                        g.push(cfg(ModelSpec::Ials(IalsParams {
                            factors,
                            regularization,
                            alpha,
                            ..IalsParams::default()
                        })));
                    }
                }
            }
            g
        }
        "ease" => [50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0]
            .into_iter()
            .map(|lambda| cfg(ModelSpec::Ease(EaseParams { lambda })))
            .collect(),
        "rp3beta" => {
            let mut g = Vec::new();
            for alpha in [0.0, 0.25, 0.5, 0.75, 1.0] {
                for beta in [0.3, 0.5, 0.6, 0.7, 0.8] {
                    for neighbors in [200, 1000] {
                        g.push(cfg(ModelSpec::Rp3beta(Rp3betaParams { alpha, beta, neighbors })));
                    }
                }
            }
            g
        }
        "transitions" => [2, 5, 10]
            .into_iter()
            .flat_map(|window| {
                [0.3, 0.5, 0.7].map(|beta| {
                    cfg(ModelSpec::Transitions(TransitionsParams { window, beta, ..TransitionsParams::default() }))
                })
            })
            .collect(),
        "content" => [0.0, 0.25, 0.5, 1.0]
            .into_iter()
            .map(|w| cfg(ModelSpec::Content(ContentParams { word_weight: w, ..ContentParams::default() })))
            .collect(),
        _ => Vec::new(),
    }
}

/// Recency half-lives (positions) tried by [`tune`] after the parameters are chosen.
pub const RECENCY_GRID: [f32; 8] = [0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 40.0];

/// Chooses a configuration by validation NDCG@10: the parameter grid first, then the recency
/// half-life for the winner among `recency_grid` (pass [`RECENCY_GRID`], or `&[]` to keep
/// histories unweighted). Returns the winner and its validation NDCG. `log` receives one line
/// per trial.
pub fn tune(
    name: &str,
    val: &Fold,
    recency_grid: &[f32],
    log: &mut dyn FnMut(String),
) -> Result<(Config, f64), EvalError> {
    let candidates = grid(name);
    if candidates.is_empty() {
        return Err(EvalError::Fit { model: name.into(), message: "no such model".into() });
    }
    let mut best: Option<(Config, f64, Model)> = None;
    for config in candidates {
        let start = Instant::now();
        let (model, outcome) = evaluate(&config, val)?;
        let ndcg = outcome.metrics.ndcg;
        log(format!("  [{name}] val {config}: NDCG@10={ndcg:.4} ({:.1}s)", start.elapsed().as_secs_f64()));
        if best.as_ref().is_none_or(|b| ndcg > b.1) {
            best = Some((config, ndcg, model));
        }
    }
    let (mut config, mut best_ndcg, model) = best.ok_or_else(|| EvalError::Empty("empty grid".into()))?;
    if matches!(config.spec, ModelSpec::Popularity) {
        return Ok((config, best_ndcg));
    }
    let base = config;
    for &half_life in recency_grid.iter().filter(|&&h| h > 0.0) {
        let ndcg = score_model(&model, half_life, val, 0.0).metrics.ndcg;
        log(format!("  [{name}] val recency={half_life}: NDCG@10={ndcg:.4}"));
        if ndcg > best_ndcg {
            best_ndcg = ndcg;
            config = Config { recency_half_life: half_life, ..base };
        }
    }
    Ok((config, best_ndcg))
}

/// Default blend weights by component (`attune eval` blends `ease, rp3beta, ials, itemknn` in this
/// order). Chosen on the validation split of ml-latest-small by `attune eval --data ~/.cache/attune-datasets/ml-latest-small --tune`; see `docs/eval.md`.
pub const DEFAULT_BLEND: [(&str, f32); 4] = [("ease", 1.0), ("rp3beta", 0.0), ("ials", 1.0), ("itemknn", 0.35)];

/// Per-person standardized scores of one model on the test people of `fold` (row-major,
/// `n_test_users × n_items`).
fn standardized_scores(model: &dyn Scorer, recency_half_life: f32, fold: &Fold) -> Vec<f32> {
    let n = model.n_items();
    let mut out = vec![0f32; fold.test_users.len() * n];
    out.par_chunks_mut(n.max(1)).zip(fold.test_users.par_iter()).for_each_init(Vec::new, |weights, (row, &u)| {
        model.score_into(&fold.train.query(u).with_recency(recency_half_life, weights), row);
        standardize(row);
    });
    out
}

fn blend_ndcg(scores: &[Vec<f32>], weights: &[f32], fold: &Fold) -> f64 {
    let n = fold.items.len();
    let recs: Vec<Vec<u32>> = (0..fold.test_users.len())
        .into_par_iter()
        .map_init(
            || (vec![0f32; n], Vec::new()),
            |(combined, top), row| {
                combined.fill(0.0);
                for (s, &w) in scores.iter().zip(weights) {
                    if w != 0.0 {
                        for (c, &v) in combined.iter_mut().zip(&s[row * n..(row + 1) * n]) {
                            *c += w * v;
                        }
                    }
                }
                top_k_into(combined, fold.train.user_items(fold.test_users[row]), K, top);
                top.iter().map(|&(i, _)| i).collect()
            },
        )
        .collect();
    metrics(&recs, &fold.test_items, n, K).ndcg
}

/// Tunes blend weights on a validation fold by coordinate search (each weight over a small grid,
/// three rounds), starting from the best single component. Returns weights aligned with `configs`
/// and the validation NDCG@10.
pub fn tune_blend(configs: &[Config], val: &Fold, log: &mut dyn FnMut(String)) -> Result<(Vec<f32>, f64), EvalError> {
    let mut scores = Vec::with_capacity(configs.len());
    for c in configs {
        let model = c.fit(val)?;
        scores.push(standardized_scores(&model, c.recency_half_life, val));
    }
    let mut weights = vec![0f32; configs.len()];
    let mut best = f64::NEG_INFINITY;
    for k in 0..configs.len() {
        let mut w = vec![0f32; configs.len()];
        w[k] = 1.0;
        let ndcg = blend_ndcg(&scores, &w, val);
        if ndcg > best {
            best = ndcg;
            weights = w;
        }
    }
    log(format!("  [blend] val start {weights:?}: NDCG@10={best:.4}"));
    const STEPS: [f32; 9] = [0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0];
    for _round in 0..3 {
        let before = best;
        for k in 0..configs.len() {
            for &step in &STEPS {
                let mut w = weights.clone();
                w[k] = step;
                if w.iter().all(|&x| x == 0.0) {
                    continue;
                }
                let ndcg = blend_ndcg(&scores, &w, val);
                if ndcg > best + 1e-9 {
                    best = ndcg;
                    weights = w;
                    log(format!("  [blend] val {weights:?}: NDCG@10={best:.4}"));
                }
            }
        }
        if best <= before {
            break;
        }
    }
    Ok((weights, best))
}

/// Fits every component on `fold.train` and builds the [`Blend`].
pub fn fit_blend(configs: &[Config], weights: &[f32], fold: &Fold) -> Result<Blend, EvalError> {
    let mut components = Vec::with_capacity(configs.len());
    for (c, &weight) in configs.iter().zip(weights) {
        if weight == 0.0 {
            continue;
        }
        components.push(Component { model: c.fit(fold)?, weight, recency_half_life: c.recency_half_life });
    }
    Ok(Blend::new(components))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &str, item: &str, ts: i64) -> Row {
        Row { user: user.into(), item: item.into(), weight: 1.0, ts }
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        // Person A: hits at ranks 1 and 3, 2 held-out items.
        // DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) = 1.6309; NDCG = 0.91972.
        // Person B: no hit among 10, 12 held-out (one unseen in train): everything 0.
        let recs = vec![vec![1, 9, 2, 8, 7, 6, 5, 4, 3, 0], (10..20).collect()];
        let held = vec![vec![Some(1), Some(2)], (20..31).map(Some).chain([None]).collect()];
        let m = metrics(&recs, &held, 40, 10);
        assert!((m.precision - (0.2 + 0.0) / 2.0).abs() < 1e-12);
        assert!((m.recall - (1.0 + 0.0) / 2.0).abs() < 1e-12);
        let ndcg_a = 1.5 / (1.0 + 1.0 / 3f64.log2());
        assert!((m.ndcg - ndcg_a / 2.0).abs() < 1e-12);
        assert!((m.hit_rate - 0.5).abs() < 1e-12);
        assert!((m.coverage - 20.0 / 40.0).abs() < 1e-12);
        assert!((m.ndcg_se - ndcg_a / 2.0).abs() < 1e-9); // two values x and 0: se = x / 2
    }

    #[test]
    fn recall_and_ndcg_use_min_of_k_and_test_size() {
        // 12 held-out items, all 10 recommended are hits: recall 1, NDCG 1.
        let recs = vec![(0..10).collect::<Vec<u32>>()];
        let held = vec![(0..12).map(Some).collect::<Vec<_>>()];
        let m = metrics(&recs, &held, 12, 10);
        assert_eq!((m.precision, m.recall, m.ndcg, m.hit_rate), (1.0, 1.0, 1.0, 1.0));
        // A single held-out item at rank 2: NDCG = 1/log2(3).
        let m = metrics(&[vec![5, 7]], &[vec![Some(7)]], 12, 10);
        assert!((m.ndcg - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert!((m.recall - 1.0).abs() < 1e-12 && (m.precision - 0.1).abs() < 1e-12);
    }

    #[test]
    fn split_is_per_person_by_time_with_numeric_ties() {
        let mut rows = Vec::new();
        // u1: 10 interactions -> last 2 in test. Items 10 and 9 share the last timestamp:
        // numeric order puts 9 before 10 ("10" < "9" as strings would not).
        for (k, item) in ["1", "2", "3", "4", "5", "6", "7", "8", "10", "9"].iter().enumerate() {
            rows.push(row("u1", item, if k >= 8 { 100 } else { k as i64 }));
        }
        rows.push(row("u1", "11", 50)); // 11 interactions now: floor(2.2) = 2 in test.
        // u2: 4 interactions -> all train; u3: 5 -> 1 in test.
        for k in 0..4 {
            rows.push(row("u2", &k.to_string(), k));
        }
        for k in 0..5 {
            rows.push(row("u3", &(100 - k).to_string(), 7));
        }
        let (train, test) = temporal_split(&rows);
        let test_ids: Vec<(&str, &str)> = test.iter().map(|r| (r.user.as_str(), r.item.as_str())).collect();
        assert_eq!(test_ids, vec![("u1", "9"), ("u1", "10"), ("u3", "100")]);
        assert_eq!(train.len(), rows.len() - 3);
        assert!(train.iter().filter(|r| r.user == "u2").count() == 4);

        let fold = Fold::from_rows(&train, &test, None);
        assert_eq!(fold.test_users.len(), 2);
        // Items 9 and 10 appear in nobody's train part: both are unseen, certain misses.
        let u1 = fold.users.get("u1").expect("u1 in train");
        let pos = fold.test_users.iter().position(|&u| u == u1).expect("u1 tested");
        assert_eq!(fold.test_items[pos].len(), 2);
        assert_eq!(fold.test_items[pos], vec![None, None]);
    }

    #[test]
    fn split_orders_text_ids_as_strings() {
        let rows: Vec<Row> = ["b", "a", "c", "e", "d"].iter().map(|i| row("u", i, 0)).collect();
        let (_, test) = temporal_split(&rows);
        assert_eq!(test[0].item, "e");
    }

    #[test]
    fn reading_reports_bad_lines() {
        let dir = std::env::temp_dir().join(format!("attune-rank-eval-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("interactions.tsv");
        std::fs::write(&path, "u1\ti1\t1\t100\n\nu2\ti2\t4.5\t1.7e3\n").expect("write");
        let rows = read_interactions(&path).expect("valid file");
        assert_eq!(rows[1], Row { user: "u2".into(), item: "i2".into(), weight: 4.5, ts: 1700 });
        std::fs::write(&path, "u1\ti1\t1\n").expect("write");
        let err = read_interactions(&path).expect_err("3 fields");
        assert!(err.to_string().contains(":1:"), "{err}");
        std::fs::write(&path, "u1\ti1\tx\t1\n").expect("write");
        assert!(read_interactions(&path).is_err());
        assert!(read_interactions(&dir.join("missing.tsv")).is_err());
        let items = dir.join("items.tsv");
        std::fs::write(&items, "item\ttitle\ttags\n1\tToy Story (1995)\tAnimation|Comedy\n").expect("write");
        let docs = read_items(&items).expect("valid items");
        assert_eq!(docs["1"].tags, vec!["Animation", "Comedy"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
