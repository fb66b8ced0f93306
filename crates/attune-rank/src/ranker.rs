//! The served ranker: the one object that `decide` ranks with and `attune eval` scores.
//!
//! [`Ranker::train`] chooses everything on a time split of the data it is given (the EVAL.md
//! rule applied to the training window: each person's last 20% of interactions, for people with
//! at least five, are held out):
//! 1. each candidate model's parameters (a small grid) and its recency half-life (how fast a
//!    person's older items fade when it scores them);
//! 2. the blend weights of the models' per-person standardized scores, by coordinate search — per
//!    engagement level (history length) where enough people fall in that level, else the global
//!    weights. Popularity is one of the candidates, so how much of the general ranking a person's
//!    feed keeps is learned, not set by hand;
//! 3. then it refits the chosen models on all of the data.
//!
//! The validation figures and the chosen parameters travel with the ranker ([`RankerReport`]), so
//! `GET /v1/models` reports what is served. Scoring always folds the (recency-weighted) history in,
//! for trained and new people alike, so an offline evaluation and a live decision for the same
//! history give the same ranking. [`Ranker::evidence`] names the history items that contributed
//! most to an item's score under the served weights ("Because you read …").

use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::context::{ContextData, ContextEffects, ContextParams};
use crate::eval::{K, Metrics, metrics};
use crate::{
    Ease, EaseParams, Ials, IalsParams, Interactions, ItemKnn, ItemKnnParams, Model, Popularity, PopularityParams,
    Query, Rp3beta, Rp3betaParams, Scorer, Transitions, TransitionsParams, recency_weights, top_k_into,
};

/// A candidate model and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum PartSpec {
    /// [`Popularity`]: the general ranking.
    Popularity,
    /// [`ItemKnn`].
    ItemKnn(ItemKnnParams),
    /// [`Rp3beta`].
    Rp3beta(Rp3betaParams),
    /// [`Ease`] (only for catalogs up to [`RankerOptions::max_ease_items`]).
    Ease(EaseParams),
    /// [`Ials`], always folded in at scoring time.
    Ials(IalsParams),
    /// [`Transitions`]: what follows what.
    Transitions(TransitionsParams),
}

impl PartSpec {
    /// The short name (`popularity`, `item_knn`, `rp3beta`, `ease`, `ials`, `transitions`).
    pub fn name(&self) -> &'static str {
        match self {
            PartSpec::Popularity => "popularity",
            PartSpec::ItemKnn(_) => "item_knn",
            PartSpec::Rp3beta(_) => "rp3beta",
            PartSpec::Ease(_) => "ease",
            PartSpec::Ials(_) => "ials",
            PartSpec::Transitions(_) => "transitions",
        }
    }

    /// The parameters in words.
    pub fn describe(&self) -> String {
        match self {
            PartSpec::Popularity => "-".into(),
            PartSpec::ItemKnn(p) => format!("K={}, shrink={}", p.neighbors, p.shrink),
            PartSpec::Rp3beta(p) => format!("alpha={}, beta={}, K={}", p.alpha, p.beta, p.neighbors),
            PartSpec::Ease(p) => format!("lambda={}", p.lambda),
            PartSpec::Ials(p) => {
                format!("factors={}, reg={}, alpha={}, iters={}", p.factors, p.regularization, p.alpha, p.iterations)
            }
            PartSpec::Transitions(p) => format!("window={}, beta={}, K={}", p.window, p.beta, p.neighbors),
        }
    }

    /// Fits the model (`None` when it cannot be fitted on this data).
    pub fn fit(&self, data: &Interactions) -> Option<Model> {
        Some(match self {
            PartSpec::Popularity => Model::Popularity(Popularity::fit(data, &PopularityParams::default())),
            PartSpec::ItemKnn(p) => Model::ItemKnn(ItemKnn::fit(data, p)),
            PartSpec::Rp3beta(p) => Model::Rp3beta(Rp3beta::fit(data, p)),
            PartSpec::Ease(p) => Model::Ease(Ease::fit(data, p).ok()?),
            PartSpec::Ials(p) => Model::Ials(Ials::fit(data, p).without_users()),
            PartSpec::Transitions(p) => Model::Transitions(Transitions::fit(data, p)),
        })
    }
}

/// How much searching [`Ranker::train`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Search {
    /// Parameter grids, recency half-lives and blend weights (small data: seconds to a minute).
    Full,
    /// Checked-in parameters; recency half-lives and blend weights are still chosen.
    Light,
    /// Nothing is chosen: checked-in parameters, half-lives and weights (tests, tiny data).
    None,
}

/// Options of [`Ranker::train`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankerOptions {
    /// EASE is a candidate only for catalogs up to this many items (its weights are dense:
    /// `n_items²` floats, 256 MB at 8,000 items, and its fit costs `n_items³`).
    pub max_ease_items: usize,
    /// Validation people scored at most (a deterministic sample beyond it).
    pub max_validation_people: usize,
    /// The search; `None` here means: [`Search::Full`] up to 300,000 pairs, else
    /// [`Search::Light`].
    pub search: Option<Search>,
    /// Candidates scored per person and model when blend weights are searched.
    pub pool: usize,
    /// Neighbour entries one item-to-item part (item-kNN, RP3beta, transitions) may keep in all:
    /// its neighbours per item are capped at `max_neighbors / n_items`, so the part holds at
    /// most 8 bytes × this whatever the catalog. The parameter search chooses below the cap.
    pub max_neighbors: usize,
}

/// The default of [`RankerOptions::max_neighbors`]: 10M entries, 80 MB per part. Below every
/// checked-in neighbour count up to 10,000 items (the public datasets' catalogs: ml-latest-small
/// has 9,724), so it binds only on large catalogs: 100 neighbours per item at 100,000 items.
pub const MAX_NEIGHBORS: usize = 10_000_000;

impl Default for RankerOptions {
    fn default() -> Self {
        RankerOptions {
            max_ease_items: 8_000,
            max_validation_people: 3_000,
            search: None,
            pool: 60,
            max_neighbors: MAX_NEIGHBORS,
        }
    }
}

impl RankerOptions {
    /// The most neighbours per item an item-to-item part keeps over `n_items` items (at least 1).
    pub fn neighbor_cap(&self, n_items: usize) -> usize {
        (self.max_neighbors / n_items.max(1)).max(1)
    }
}

/// Recency half-lives (positions) tried per model.
pub const HALF_LIVES: [f32; 8] = [0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 40.0];

/// Engagement levels: the weights of level `k` apply to people with at least `LEVELS[k]` items.
pub const LEVELS: [usize; 3] = [0, 10, 50];

/// EASE's λ is searched only for catalogs up to this many items (beyond, each fit takes seconds).
const EASE_GRID_MAX_ITEMS: usize = 3_000;

/// Validation people a level needs before it gets weights of its own.
const MIN_LEVEL_PEOPLE: usize = 150;

/// One model of the ranker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    /// What it is.
    pub spec: PartSpec,
    /// The fitted model.
    pub model: Model,
    /// Recency half-life (positions) of the history it scores; 0 = unweighted.
    pub half_life: f32,
}

/// What one part scored alone on validation, and its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartReport {
    /// Model name.
    pub name: String,
    /// Parameters in words.
    pub params: String,
    /// Chosen recency half-life.
    pub half_life: f32,
    /// NDCG@10 of the part alone on validation.
    pub validation_ndcg: f64,
}

/// How the ranker was chosen and how it scored on validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankerReport {
    /// The blended ranker's validation metrics (`None` without enough data to hold any out).
    pub validation: Option<ValidationMetrics>,
    /// Every part, in the ranker's order.
    pub parts: Vec<PartReport>,
    /// Blend weights per engagement level, aligned with `parts`, with the level's lower bound
    /// (history length) and the validation people in it.
    pub levels: Vec<LevelReport>,
    /// Wall seconds of the whole training (search included).
    pub fit_seconds: f64,
    /// The search that was run.
    pub search: Search,
}

/// Validation metrics (EVAL.md definitions) of the blended ranker.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidationMetrics {
    /// Precision@10.
    pub precision: f64,
    /// Recall@10.
    pub recall: f64,
    /// NDCG@10.
    pub ndcg: f64,
    /// HitRate@10.
    pub hit_rate: f64,
    /// Coverage@10.
    pub coverage: f64,
    /// People scored.
    pub people: usize,
}

impl From<Metrics> for ValidationMetrics {
    fn from(m: Metrics) -> Self {
        ValidationMetrics {
            precision: m.precision,
            recall: m.recall,
            ndcg: m.ndcg,
            hit_rate: m.hit_rate,
            coverage: m.coverage,
            people: m.n_users,
        }
    }
}

/// The blend weights of one engagement level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelReport {
    /// People with at least this many items in their history use these weights.
    pub min_history: usize,
    /// Weights aligned with the parts.
    pub weights: Vec<f32>,
    /// Validation people at this level (0: the level inherited the global weights).
    pub people: usize,
}

/// The served ranker (see the module documentation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ranker {
    n_items: usize,
    parts: Vec<Part>,
    report: RankerReport,
    /// Learned context effects and the weights validation kept (see [`crate::context`]).
    context: Option<ContextEffects>,
    /// Per part, for a part whose scores do not depend on the history (popularity, trending):
    /// its scores with their mean and standard deviation, computed at the first scoring, so that
    /// a decision adds them instead of scoring and standardizing every item again.
    #[serde(skip)]
    fixed: std::sync::OnceLock<Vec<Option<FixedScores>>>,
}

/// A history-independent part's scores, with the mean and standard deviation
/// [`Ranker::score_into`] standardizes them by.
#[derive(Debug, Clone)]
struct FixedScores {
    scores: Vec<f32>,
    mean: f32,
    std: f32,
}

/// Buffers reused across scoring calls (one per worker thread); after
/// [`Ranker::score_into`] it also holds what [`Ranker::evidence`] needs.
#[derive(Debug, Default)]
pub struct RankerScratch {
    scores: Vec<f32>,
    /// Per part: recency weights of the history as scored.
    history_weights: Vec<Vec<f32>>,
    /// Per part: the weight divided by the standard deviation (0 when the part was skipped).
    scale: Vec<f32>,
    level: usize,
}

impl Ranker {
    fn assemble(n_items: usize, parts: Vec<Part>, report: RankerReport, context: Option<ContextEffects>) -> Ranker {
        Ranker { n_items, parts, report, context, fixed: std::sync::OnceLock::new() }
    }

    /// The scores of the history-independent parts (see [`Ranker::fixed`]).
    fn fixed_scores(&self) -> &[Option<FixedScores>] {
        self.fixed.get_or_init(|| {
            let nobody = Query { user_idx: None, items: &[], weights: &[], timestamps: None };
            self.parts
                .iter()
                .map(|part| {
                    matches!(part.model, Model::Popularity(_) | Model::Trending(_)).then(|| {
                        let mut scores = vec![0.0; self.n_items];
                        part.model.score_into(&nobody, &mut scores);
                        let (mean, std) = mean_std(&scores);
                        FixedScores { scores, mean, std }
                    })
                })
                .collect()
        })
    }

    /// Trains the ranker on `data` (people × items with timestamps; weights are rescaled to a
    /// mean of 1, so the same choices hold whatever the engine's weight scale). `log` receives
    /// one line per step.
    pub fn train(data: &Interactions, options: &RankerOptions, log: &mut dyn FnMut(String)) -> Ranker {
        Ranker::train_with_context(data, None, options, log)
    }

    /// [`Ranker::train`], and with `context` (the interactions' contexts and the items' tags)
    /// also the context effects ([`ContextEffects`]): counted on the validation split's training
    /// part, each dimension given the weight (in the personal ranking, and in the general one:
    /// popularity alone) that raises validation NDCG@10 most — each held-out person scored in the
    /// context of their first held-out interaction — and kept only if that gain holds on
    /// held-out people who did not choose it ([`CONTEXT_MIN_Z`]); then counted again on all of
    /// the data with the weights kept.
    pub fn train_with_context(
        data: &Interactions,
        context: Option<&ContextData<'_>>,
        options: &RankerOptions,
        log: &mut dyn FnMut(String),
    ) -> Ranker {
        let started = Instant::now();
        let data = unit_mean(data);
        let search = options.search.unwrap_or(if data.nnz() <= 300_000 { Search::Full } else { Search::Light });
        let candidates = candidates(data.n_items(), options, search);
        let holdout = (search != Search::None).then(|| Holdout::new(&data, options.max_validation_people));
        let holdout = holdout.filter(|h| !h.people.is_empty());

        let Some(holdout) = holdout else {
            // Nothing to validate on: the checked-in defaults.
            let parts: Vec<Part> = candidates
                .iter()
                .filter_map(|grid| {
                    let spec = grid[0];
                    spec.fit(&data).map(|model| Part { spec, model, half_life: default_half_life(&spec) })
                })
                .collect();
            let weights: Vec<f32> = parts.iter().map(|p| default_weight(&p.spec)).collect();
            let report = RankerReport {
                validation: None,
                parts: parts
                    .iter()
                    .map(|p| PartReport {
                        name: p.spec.name().into(),
                        params: p.spec.describe(),
                        half_life: p.half_life,
                        validation_ndcg: 0.0,
                    })
                    .collect(),
                levels: vec![LevelReport { min_history: 0, weights, people: 0 }],
                fit_seconds: started.elapsed().as_secs_f64(),
                search: Search::None,
            };
            log("ranker: too little data to hold any out; checked-in defaults".into());
            // Without validation no context effect earns a weight: counted and reported, off.
            let context = context.map(|ctx| ContextEffects::fit(&data, ctx, &ContextParams::default()));
            return Ranker::assemble(data.n_items(), parts, report, context);
        };
        log(format!(
            "ranker: validation split {} pairs for training, {} people held out (search {search:?})",
            holdout.train.nnz(),
            holdout.people.len()
        ));

        // 1. Each model: parameters, then its recency half-life.
        let mut chosen: Vec<(PartSpec, f32, f64, Model)> = Vec::new();
        for grid in &candidates {
            let mut best: Option<(PartSpec, f64, Model)> = None;
            for &spec in grid {
                let t = Instant::now();
                let Some(model) = spec.fit(&holdout.train) else { continue };
                let half_life = if search == Search::Full { 0.0 } else { default_half_life(&spec) };
                let ndcg = holdout.ndcg_of(&model, half_life);
                log(format!(
                    "  [{}] {} h={half_life}: NDCG@10 {ndcg:.4} ({:.1} s)",
                    spec.name(),
                    spec.describe(),
                    t.elapsed().as_secs_f64()
                ));
                if best.as_ref().is_none_or(|b| ndcg > b.1) {
                    best = Some((spec, ndcg, model));
                }
            }
            let Some((spec, mut best_ndcg, model)) = best else { continue };
            let mut best_h = if search == Search::Full { 0.0 } else { default_half_life(&spec) };
            if !matches!(spec, PartSpec::Popularity) {
                let tried = best_h;
                for &h in HALF_LIVES.iter().filter(|&&h| h != tried) {
                    let ndcg = holdout.ndcg_of(&model, h);
                    if ndcg > best_ndcg + 1e-9 {
                        best_ndcg = ndcg;
                        best_h = h;
                    }
                }
            }
            log(format!(
                "  [{}] chosen {} h={best_h}: NDCG@10 {best_ndcg:.4} (at {:.1} s)",
                spec.name(),
                spec.describe(),
                started.elapsed().as_secs_f64()
            ));
            chosen.push((spec, best_h, best_ndcg, model));
        }

        // 2. Blend weights on the pooled candidates, globally and per engagement level.
        let pools = holdout.pools(&chosen, options.pool);
        let n_parts = chosen.len();
        let everyone: Vec<usize> = (0..holdout.people.len()).collect();
        let start = (0..n_parts).max_by(|&a, &b| chosen[a].2.total_cmp(&chosen[b].2)).map_or(Vec::new(), |best| {
            let mut w = vec![0f32; n_parts];
            w[best] = 1.0;
            w
        });
        let global = coordinate_search(&pools, &everyone, start, log);
        let mut levels = Vec::new();
        for (k, &min) in LEVELS.iter().enumerate() {
            let max = LEVELS.get(k + 1).copied().unwrap_or(usize::MAX);
            let members: Vec<usize> =
                everyone.iter().copied().filter(|&p| (min..max).contains(&holdout.history_len[p])).collect();
            let (weights, people) = if members.len() >= MIN_LEVEL_PEOPLE {
                log(format!("  [blend] level {min}+: {} people", members.len()));
                (coordinate_search(&pools, &members, global.clone(), log), members.len())
            } else {
                (global.clone(), 0)
            };
            levels.push(LevelReport { min_history: min, weights, people });
        }
        let recs: Vec<Vec<u32>> = everyone
            .iter()
            .map(|&p| pools.top(p, &levels[level_of(&levels, holdout.history_len[p])].weights))
            .collect();
        let validation = metrics(&recs, &holdout.held, data.n_items(), K);
        log(format!("ranker: blend weights chosen at {:.1} s", started.elapsed().as_secs_f64()));
        log(format!("ranker: validation NDCG@10 {:.4} over {} people", validation.ndcg, validation.n_users));

        // 2b. Context effects: each dimension earns its weight on the same split, or is off.
        let validated_context = context.map(|ctx| {
            let mut effects = ContextEffects::fit(&holdout.train, ctx, &ContextParams::default());
            let popularity = chosen.iter().position(|c| matches!(c.0, PartSpec::Popularity));
            choose_context_weights(&mut effects, &holdout, &pools, &levels, popularity, ctx, log);
            effects
        });

        // 3. Refit the chosen models on everything. The validation's models and split are
        // dropped first: the refit's peak memory holds one set of models, not two.
        drop(pools);
        drop(holdout);
        let chosen: Vec<(PartSpec, f32, f64)> = chosen.into_iter().map(|(spec, h, ndcg, _)| (spec, h, ndcg)).collect();
        let parts: Vec<Part> = chosen
            .iter()
            .filter_map(|(spec, half_life, _)| {
                spec.fit(&data).map(|model| Part { spec: *spec, model, half_life: *half_life })
            })
            .collect();
        let report = RankerReport {
            validation: Some(validation.into()),
            parts: chosen
                .iter()
                .map(|(spec, h, ndcg)| PartReport {
                    name: spec.name().into(),
                    params: spec.describe(),
                    half_life: *h,
                    validation_ndcg: *ndcg,
                })
                .collect(),
            levels,
            fit_seconds: started.elapsed().as_secs_f64(),
            search,
        };
        let context = context.zip(validated_context).map(|(ctx, validated)| {
            let mut effects = ContextEffects::fit(&data, ctx, &ContextParams::default());
            for (d, dimension) in validated.report().dimensions.iter().enumerate() {
                effects.set_weights(
                    d,
                    (dimension.personal_weight, dimension.personal_ndcg),
                    (dimension.general_weight, dimension.general_ndcg),
                );
            }
            effects
        });
        Ranker::assemble(data.n_items(), parts, report, context)
    }

    /// Number of items scored.
    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// The models, in blend order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// How the ranker was chosen.
    pub fn report(&self) -> &RankerReport {
        &self.report
    }

    /// The learned context effects, if training was given contexts.
    pub fn context(&self) -> Option<&ContextEffects> {
        self.context.as_ref()
    }

    /// [`Ranker::score_into`], then the context effects of the active `features` (ids of
    /// [`ContextEffects::feature`]) at the weights validation kept for the personal ranking.
    pub fn score_in_context(
        &self,
        query: &Query<'_>,
        history_len: usize,
        features: &[u32],
        out: &mut [f32],
        scratch: &mut RankerScratch,
    ) {
        self.score_into(query, history_len, out, scratch);
        if let Some(context) = &self.context {
            let n = context.n_items().min(out.len());
            context.add_into(features, true, &mut out[..n]);
        }
    }

    /// The blend weights for a person with `history_len` items.
    pub fn weights_for(&self, history_len: usize) -> &[f32] {
        &self.report.levels[level_of(&self.report.levels, history_len)].weights
    }

    /// Scores every item for a history (`query.items`, weights and timestamps; the person index
    /// is ignored: histories are always folded in). `history_len` is the person's whole history
    /// length, which picks the engagement level's weights (it may exceed `query.items.len()` when
    /// only the recent part is passed). Items of the history get scores too: exclusion is the
    /// caller's choice.
    ///
    /// # Panics
    /// If `out.len() != self.n_items()`.
    pub fn score_into(&self, query: &Query<'_>, history_len: usize, out: &mut [f32], scratch: &mut RankerScratch) {
        assert_eq!(out.len(), self.n_items, "one score per item");
        out.fill(0.0);
        let level = level_of(&self.report.levels, history_len);
        let weights = &self.report.levels[level].weights;
        scratch.level = level;
        scratch.scores.resize(self.n_items, 0.0);
        scratch.history_weights.resize_with(self.parts.len(), Vec::new);
        scratch.scale.clear();
        scratch.scale.resize(self.parts.len(), 0.0);
        let fixed = self.fixed_scores();
        for (k, part) in self.parts.iter().enumerate() {
            let w = weights.get(k).copied().unwrap_or(0.0);
            if w == 0.0 {
                continue;
            }
            if let Some(FixedScores { scores, mean, std }) = &fixed[k] {
                // The same sum as below, from scores computed once.
                if *std > 0.0 {
                    let scale = w / std;
                    scratch.scale[k] = scale;
                    for (o, &s) in out.iter_mut().zip(scores.iter()) {
                        *o += scale * (s - mean);
                    }
                }
                continue;
            }
            let hw = &mut scratch.history_weights[k];
            match query.timestamps {
                Some(ts) if part.half_life > 0.0 => recency_weights(ts, query.weights, part.half_life, hw),
                _ => {
                    hw.clear();
                    hw.extend_from_slice(query.weights);
                }
            }
            let q = Query { user_idx: None, items: query.items, weights: hw, timestamps: query.timestamps };
            part.model.score_into(&q, &mut scratch.scores);
            let (mean, std) = mean_std(&scratch.scores);
            if std <= 0.0 {
                continue;
            }
            let scale = w / std;
            scratch.scale[k] = scale;
            for (o, &s) in out.iter_mut().zip(scratch.scores.iter()) {
                *o += scale * (s - mean);
            }
        }
    }

    /// The history items that contributed most to `item`'s score in the last
    /// [`Ranker::score_into`] with this scratch and query, as `(history item, contribution)`,
    /// largest first, positive only, at most `limit`. Only the item-to-item parts (EASE,
    /// RP3beta, item-kNN, transitions) attribute to single history items.
    pub fn evidence(&self, query: &Query<'_>, item: u32, scratch: &RankerScratch, limit: usize) -> Vec<(u32, f32)> {
        self.evidence_of_items(query, &[item], scratch, limit).pop().unwrap_or_default()
    }

    /// [`Ranker::evidence`] of several items at once, in `items`' order: each history item's
    /// item-kNN neighbours are walked once (their rows are sorted by similarity, so a lookup per
    /// pair would scan them), the other item-to-item parts are looked up per pair.
    pub fn evidence_of_items(
        &self,
        query: &Query<'_>,
        items: &[u32],
        scratch: &RankerScratch,
        limit: usize,
    ) -> Vec<Vec<(u32, f32)>> {
        let n_history = query.items.len();
        // totals[t * n_history + h_pos]: the contribution of history item h_pos to items[t].
        let mut totals = vec![0f32; items.len() * n_history];
        // Which items are asked about, one bit per catalog item: a neighbour that is not one of
        // them is passed over after one well-predicted test (a 64-bit sketch let one in seven
        // through at ten items, and its mispredicted branches cost more than the walk).
        let mut asked = vec![0u64; self.n_items.div_ceil(64)];
        for &i in items {
            if let Some(word) = asked.get_mut(i as usize / 64) {
                *word |= 1 << (i % 64);
            }
        }
        let is_asked = |j: u32| asked.get(j as usize / 64).is_some_and(|word| word & (1 << (j % 64)) != 0);
        for (k, part) in self.parts.iter().enumerate() {
            let scale = scratch.scale.get(k).copied().unwrap_or(0.0);
            if scale == 0.0 {
                continue;
            }
            let weights = &scratch.history_weights[k];
            let hw = |h_pos: usize| weights.get(h_pos).copied().unwrap_or(0.0);
            match &part.model {
                Model::ItemKnn(m) => {
                    for (h_pos, &h) in query.items.iter().enumerate() {
                        for &(j, pair) in m.neighbors(h) {
                            if !is_asked(j) || j == h {
                                continue;
                            }
                            for (t, _) in items.iter().enumerate().filter(|&(_, &i)| i == j) {
                                totals[t * n_history + h_pos] += scale * hw(h_pos) * pair;
                            }
                        }
                    }
                }
                model if is_item_to_item(model) => {
                    for (t, &item) in items.iter().enumerate() {
                        for (h_pos, &h) in query.items.iter().enumerate() {
                            if h != item {
                                totals[t * n_history + h_pos] += scale * hw(h_pos) * pair_weight(model, h, item);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        items
            .iter()
            .enumerate()
            .map(|(t, &item)| {
                let mut contributions: Vec<(u32, f32)> = query
                    .items
                    .iter()
                    .zip(&totals[t * n_history..(t + 1) * n_history])
                    .filter(|&(&h, &total)| h != item && total > 0.0)
                    .map(|(&h, &total)| (h, total))
                    .collect();
                contributions.sort_unstable_by(crate::topk::by_score_desc);
                contributions.truncate(limit);
                contributions
            })
            .collect()
    }

    /// The same ranker over another item numbering: item `i` becomes `new_index[i]` in a catalog
    /// of `n_items` items (a model trained by one server, used by another).
    pub fn remap_items(&self, new_index: &[u32], n_items: usize) -> Ranker {
        let parts = self
            .parts
            .iter()
            .map(|p| Part { spec: p.spec, model: p.model.remap_items(new_index, n_items), half_life: p.half_life })
            .collect();
        let context = self.context.as_ref().map(|c| c.remap_items(new_index, n_items));
        Ranker::assemble(n_items, parts, self.report.clone(), context)
    }

    /// Approximate bytes of the served models.
    pub fn model_bytes(&self) -> usize {
        self.model_bytes_by_part().iter().map(|(_, bytes)| bytes).sum()
    }

    /// [`Ranker::model_bytes`] by part: each model under its [`PartSpec::name`], then the
    /// context effects (`context`) and the history-independent parts' cached scores
    /// (`fixed_scores`, once filled).
    pub fn model_bytes_by_part(&self) -> Vec<(&'static str, usize)> {
        let mut out: Vec<(&'static str, usize)> =
            self.parts.iter().map(|p| (p.spec.name(), p.model.approx_bytes())).collect();
        out.push(("context", self.context.as_ref().map_or(0, ContextEffects::approx_bytes)));
        out.push((
            "fixed_scores",
            self.fixed.get().map_or(0, |fixed| {
                fixed.iter().flatten().map(|f| f.scores.len() * std::mem::size_of::<f32>()).sum::<usize>()
            }),
        ));
        out
    }
}

/// Whether a model's score sums over the history's items, so that each history item's share of
/// an item's score is known (what explanations name).
fn is_item_to_item(model: &Model) -> bool {
    matches!(model, Model::Ease(_) | Model::Rp3beta(_) | Model::ItemKnn(_) | Model::Transitions(_))
}

/// The weight of `from` → `to` in an item-to-item model (0 in any other).
fn pair_weight(model: &Model, from: u32, to: u32) -> f32 {
    match model {
        Model::Ease(m) => m.weight(from, to),
        Model::Rp3beta(m) => m.weight(from, to),
        Model::ItemKnn(m) => m.weight(from, to),
        Model::Transitions(m) => m.weight(from, to),
        _ => 0.0,
    }
}

fn level_of(levels: &[LevelReport], history_len: usize) -> usize {
    levels.iter().rposition(|l| history_len >= l.min_history).unwrap_or(0)
}

/// The mean and standard deviation of one score per item (two passes, in f64). Each pass sums
/// in eight independent lanes, which the compiler turns into vector adds: a single running sum
/// is one long chain of dependent additions, and this runs once per part per decision over the
/// whole catalog.
fn mean_std(scores: &[f32]) -> (f32, f32) {
    fn lane_sum(scores: &[f32], term: impl Fn(f64) -> f64) -> f64 {
        const LANES: usize = 8;
        let mut lanes = [0f64; LANES];
        let chunks = scores.chunks_exact(LANES);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (lane, &s) in lanes.iter_mut().zip(chunk) {
                *lane += term(f64::from(s));
            }
        }
        for (lane, &s) in lanes.iter_mut().zip(rest) {
            *lane += term(f64::from(s));
        }
        lanes.iter().sum()
    }
    let n = scores.len().max(1) as f64;
    let mean = lane_sum(scores, |s| s) / n;
    let var = lane_sum(scores, |s| (s - mean) * (s - mean)) / n;
    (mean as f32, var.sqrt() as f32)
}

/// The data with weights rescaled to a mean of 1 (an all-equal weight becomes exactly 1).
fn unit_mean(data: &Interactions) -> Interactions {
    let values = data.by_user().values();
    if values.is_empty() || values.iter().all(|&w| w == 1.0) {
        return data.clone();
    }
    let mean = values.iter().map(|&w| w as f64).sum::<f64>() / values.len() as f64;
    let all_equal = values.iter().all(|&w| w == values[0]);
    let mut triples = Vec::with_capacity(data.nnz());
    let mut ts = Vec::with_capacity(data.nnz());
    for u in 0..data.n_users() as u32 {
        let times = data.user_timestamps(u);
        for (k, (&i, &w)) in data.user_items(u).iter().zip(data.user_weights(u)).enumerate() {
            let w = if all_equal { 1.0 } else { (w as f64 / mean) as f32 };
            triples.push((u, i, w));
            ts.push(times.map_or(0, |t| t[k]));
        }
    }
    Interactions::from_triples_with_ts(data.n_users(), data.n_items(), &triples, &ts)
}

/// The grids searched, one per model; the first spec of each grid is the checked-in default.
///
/// The neighbour counts are capped by [`RankerOptions::neighbor_cap`]; a grid whose points the
/// cap makes equal keeps one of them.
fn candidates(n_items: usize, options: &RankerOptions, search: Search) -> Vec<Vec<PartSpec>> {
    let mut out = uncapped_candidates(n_items, options, search);
    let cap = options.neighbor_cap(n_items);
    for grid in &mut out {
        for spec in grid.iter_mut() {
            match spec {
                PartSpec::ItemKnn(p) => p.neighbors = p.neighbors.min(cap),
                PartSpec::Rp3beta(p) => p.neighbors = p.neighbors.min(cap),
                PartSpec::Transitions(p) => p.neighbors = p.neighbors.min(cap),
                PartSpec::Popularity | PartSpec::Ease(_) | PartSpec::Ials(_) => {}
            }
        }
        let mut kept: Vec<PartSpec> = Vec::with_capacity(grid.len());
        for spec in grid.drain(..) {
            if !kept.contains(&spec) {
                kept.push(spec);
            }
        }
        *grid = kept;
    }
    out
}

fn uncapped_candidates(n_items: usize, options: &RankerOptions, search: Search) -> Vec<Vec<PartSpec>> {
    let full = search == Search::Full;
    let mut out = vec![vec![PartSpec::Popularity]];
    let knn = |neighbors, shrink| PartSpec::ItemKnn(ItemKnnParams { neighbors, shrink });
    out.push(if full {
        vec![knn(400, 10.0), knn(100, 0.0), knn(100, 10.0), knn(400, 0.0)]
    } else {
        vec![knn(400, 10.0)]
    });
    let rp3 = |alpha, beta| PartSpec::Rp3beta(Rp3betaParams { alpha, beta, neighbors: 1000 });
    out.push(if full { vec![rp3(0.5, 0.6), rp3(0.0, 0.7), rp3(0.3, 0.5), rp3(0.5, 0.7)] } else { vec![rp3(0.5, 0.6)] });
    if n_items <= options.max_ease_items && n_items > 1 {
        let ease = |lambda| PartSpec::Ease(EaseParams { lambda });
        // Each EASE fit costs n_items³: past a few thousand items only the default is fitted.
        let grid = full && n_items <= EASE_GRID_MAX_ITEMS;
        out.push(if grid { vec![ease(300.0), ease(100.0), ease(1000.0)] } else { vec![ease(300.0)] });
    }
    let ials = |factors, regularization, alpha| {
        PartSpec::Ials(IalsParams { factors, regularization, alpha, ..IalsParams::default() })
    };
    out.push(if full {
        vec![ials(64, 20.0, 1.0), ials(128, 10.0, 1.0), ials(64, 5.0, 3.0)]
    } else {
        vec![ials(64, 20.0, 1.0)]
    });
    let seq = |window, beta| PartSpec::Transitions(TransitionsParams { window, beta, neighbors: 200 });
    out.push(if full { vec![seq(5, 0.5), seq(2, 0.5), seq(10, 0.5), seq(5, 0.3)] } else { vec![seq(5, 0.5)] });
    out
}

/// Half-lives used when nothing is searched (chosen on ml-latest-small's validation split).
fn default_half_life(spec: &PartSpec) -> f32 {
    match spec {
        PartSpec::Popularity => 0.0,
        PartSpec::ItemKnn(_) => 2.0,
        PartSpec::Rp3beta(_) => 10.0,
        PartSpec::Ease(_) => 5.0,
        PartSpec::Ials(_) => 40.0,
        PartSpec::Transitions(_) => 2.0,
    }
}

/// Weights used when nothing is searched.
fn default_weight(spec: &PartSpec) -> f32 {
    match spec {
        PartSpec::Popularity => 0.0,
        PartSpec::ItemKnn(_) => 0.35,
        PartSpec::Rp3beta(_) => 0.0,
        PartSpec::Ease(_) => 1.0,
        PartSpec::Ials(_) => 1.0,
        PartSpec::Transitions(_) => 0.0,
    }
}

/// The validation split of the training data: each person with at least five interactions
/// keeps the first 80% (by time) for training; the rest is held out.
struct Holdout {
    train: Interactions,
    /// Held-out people (rows of `train`), a deterministic sample.
    people: Vec<u32>,
    /// Their held-out items, aligned with `people`.
    held: Vec<Vec<Option<u32>>>,
    /// Their train history length, aligned with `people`.
    history_len: Vec<usize>,
}

impl Holdout {
    fn new(data: &Interactions, max_people: usize) -> Holdout {
        let mut triples = Vec::with_capacity(data.nnz());
        let mut ts = Vec::with_capacity(data.nnz());
        let mut people = Vec::new();
        let mut held = Vec::new();
        for u in 0..data.n_users() as u32 {
            let items = data.user_items(u);
            let weights = data.user_weights(u);
            let times = data.user_timestamps(u);
            let time = |k: usize| times.map_or(0, |t| t[k]);
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by(|&a, &b| time(a).cmp(&time(b)).then(items[a].cmp(&items[b])));
            let n = items.len();
            let n_test = if n >= 5 { (n / 5).max(1) } else { 0 };
            for &k in &order[..n - n_test] {
                triples.push((u, items[k], weights[k]));
                ts.push(time(k));
            }
            if n_test > 0 {
                people.push(u);
                held.push(order[n - n_test..].iter().map(|&k| Some(items[k])).collect::<Vec<_>>());
            }
        }
        let train = Interactions::from_triples_with_ts(data.n_users(), data.n_items(), &triples, &ts);
        if people.len() > max_people {
            // A deterministic sample: the people whose hashed index is smallest.
            let mut keyed: Vec<(u64, usize)> =
                people.iter().enumerate().map(|(k, &u)| (xorshift_hash(u as u64), k)).collect();
            keyed.sort_unstable();
            let mut keep: Vec<usize> = keyed.into_iter().take(max_people).map(|(_, k)| k).collect();
            keep.sort_unstable();
            people = keep.iter().map(|&k| people[k]).collect();
            held = keep.iter().map(|&k| std::mem::take(&mut held[k])).collect();
        }
        let history_len = people.iter().map(|&u| train.user_items(u).len()).collect();
        Holdout { train, people, held, history_len }
    }

    fn query(&self, u: u32) -> Query<'_> {
        Query { user_idx: None, ..self.train.query(u) }
    }

    fn ndcg_of(&self, model: &Model, half_life: f32) -> f64 {
        let n = model.n_items();
        let recs: Vec<Vec<u32>> = self
            .people
            .par_iter()
            .map_init(
                || (vec![0f32; n], Vec::new(), Vec::new()),
                |(scores, top, weights), &u| {
                    let query = self.query(u);
                    model.score_into(&query.with_recency(half_life, weights), scores);
                    top_k_into(scores, query.items, K, top);
                    top.iter().map(|&(i, _)| i).collect()
                },
            )
            .collect();
        metrics(&recs, &self.held, n, K).ndcg
    }

    /// Per held-out person: the union of every part's `pool` best items (train items left out)
    /// and each part's standardized score for them.
    fn pools(&self, chosen: &[(PartSpec, f32, f64, Model)], pool: usize) -> Pools {
        let n_parts = chosen.len();
        let n_items = self.train.n_items();
        let per_person: Vec<(Vec<u32>, Vec<f32>)> = self
            .people
            .par_iter()
            .map_init(
                || (vec![0f32; n_items * n_parts.max(1)], Vec::new(), Vec::new()),
                |(all, top, weights), &u| {
                    let query = self.query(u);
                    let mut items: Vec<u32> = Vec::new();
                    for (k, (_, h, _, model)) in chosen.iter().enumerate() {
                        let scores = &mut all[k * n_items..(k + 1) * n_items];
                        model.score_into(&query.with_recency(*h, weights), scores);
                        crate::standardize(scores);
                        top_k_into(scores, query.items, pool, top);
                        items.extend(top.iter().map(|&(i, _)| i));
                    }
                    items.sort_unstable();
                    items.dedup();
                    let mut matrix = Vec::with_capacity(items.len() * n_parts);
                    for &i in &items {
                        for k in 0..n_parts {
                            matrix.push(all[k * n_items + i as usize]);
                        }
                    }
                    (items, matrix)
                },
            )
            .collect();
        let (items, scores) = per_person.into_iter().unzip();
        Pools { n_parts, items, scores, held: self.held.clone(), n_items }
    }
}

fn xorshift_hash(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Pooled candidates of every held-out person (see [`Holdout::pools`]).
struct Pools {
    n_parts: usize,
    items: Vec<Vec<u32>>,
    /// Row-major `items × parts` standardized scores per person.
    scores: Vec<Vec<f32>>,
    held: Vec<Vec<Option<u32>>>,
    n_items: usize,
}

impl Pools {
    fn top(&self, person: usize, weights: &[f32]) -> Vec<u32> {
        self.top_plus(person, weights, |_| 0.0)
    }

    /// [`Pools::top`] with `extra(item)` added to each pooled item's blended score.
    fn top_plus(&self, person: usize, weights: &[f32], extra: impl Fn(u32) -> f32) -> Vec<u32> {
        let items = &self.items[person];
        let scores = &self.scores[person];
        let mut ranked: Vec<(u32, f32)> = items
            .iter()
            .enumerate()
            .map(|(r, &i)| {
                let row = &scores[r * self.n_parts..(r + 1) * self.n_parts];
                (i, row.iter().zip(weights).map(|(s, w)| s * w).sum::<f32>() + extra(i))
            })
            .collect();
        if ranked.len() > K {
            ranked.select_nth_unstable_by(K - 1, crate::topk::by_score_desc);
            ranked.truncate(K);
        }
        ranked.sort_unstable_by(crate::topk::by_score_desc);
        ranked.into_iter().map(|(i, _)| i).collect()
    }

    fn ndcg(&self, people: &[usize], weights: &[f32]) -> f64 {
        let recs: Vec<Vec<u32>> = people.par_iter().map(|&p| self.top(p, weights)).collect();
        let held: Vec<Vec<Option<u32>>> = people.iter().map(|&p| self.held[p].clone()).collect();
        metrics(&recs, &held, self.n_items, K).ndcg
    }
}

/// Context weights tried per dimension.
const CONTEXT_WEIGHTS: [f32; 7] = [0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0];

/// How sure validation must be that a context dimension helps: the paired per-person gain in
/// NDCG@10 on the held-out people who did not choose its weight must be this many standard
/// errors above zero.
pub const CONTEXT_MIN_Z: f64 = 2.0;

/// Chooses each context dimension's weight in the personal ranking (the chosen blend per
/// engagement level) and in the general ranking (popularity alone, if it is a part), one
/// dimension at a time with the ones kept before it in place. Each held-out person is scored in
/// the context of their first held-out interaction. The weight is chosen on half of the
/// held-out people (by the best mean NDCG@10) and tested on the other half: it is kept only if
/// the paired per-person gain there is at least [`CONTEXT_MIN_Z`] standard errors above zero —
/// otherwise the dimension is switched off (weight 0). Choosing and testing on different people
/// keeps a lucky weight from passing as an effect.
fn choose_context_weights(
    effects: &mut ContextEffects,
    holdout: &Holdout,
    pools: &Pools,
    levels: &[LevelReport],
    popularity: Option<usize>,
    ctx: &ContextData<'_>,
    log: &mut dyn FnMut(String),
) {
    let moments: Vec<&[u32]> = holdout
        .people
        .iter()
        .zip(&holdout.held)
        .map(|(&u, held)| {
            held.first()
                .copied()
                .flatten()
                .and_then(|i| (ctx.context_of)(u, i))
                .and_then(|c| ctx.contexts.get(c as usize))
                .map_or(&[][..], Vec::as_slice)
        })
        .collect();
    let people: Vec<usize> = (0..holdout.people.len()).collect();
    let n_dims = effects.report().dimensions.len();
    let general_weights: Option<Vec<f32>> = popularity.map(|k| {
        let mut w = vec![0f32; pools.n_parts];
        w[k] = 1.0;
        w
    });
    // NDCG@10 of every held-out person.
    let ndcgs = |personal: bool, dim_weights: &[f32]| -> Vec<f64> {
        people
            .par_iter()
            .map(|&p| {
                let weights: &[f32] = match (&general_weights, personal) {
                    (Some(general), false) => general,
                    _ => &levels[level_of(levels, holdout.history_len[p])].weights,
                };
                let moment = moments[p];
                let top = pools.top_plus(p, weights, |i| {
                    moment.iter().map(|&f| dim_weights[effects.feature_dim(f)] * effects.z(f, i)).sum()
                });
                ndcg_of(&top, &holdout.held[p])
            })
            .collect()
    };
    let mean = |values: &[f64], half: usize| {
        let picked: Vec<f64> = values.iter().copied().skip(half).step_by(2).collect();
        picked.iter().sum::<f64>() / picked.len().max(1) as f64
    };
    let average = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let mut chosen: [Vec<Choice>; 2] = [vec![(0.0, None); n_dims], vec![(0.0, None); n_dims]];
    for (r, personal) in [true, false].into_iter().enumerate() {
        if !personal && general_weights.is_none() {
            continue;
        }
        let ranking = if personal { "personal" } else { "general" };
        let mut weights = vec![0f32; n_dims];
        let mut current = ndcgs(personal, &weights);
        for d in 0..n_dims {
            // Choose on the even-indexed people.
            let mut best: Option<(f32, Vec<f64>)> = None;
            for &w in &CONTEXT_WEIGHTS {
                let mut trial = weights.clone();
                trial[d] = w;
                let scores = ndcgs(personal, &trial);
                if best.as_ref().is_none_or(|(_, b)| mean(&scores, 0) > mean(b, 0)) {
                    best = Some((w, scores));
                }
            }
            let Some((w, scores)) = best else { continue };
            // Test on the odd-indexed people: the paired gain and its standard error.
            let gains: Vec<f64> = scores.iter().zip(&current).skip(1).step_by(2).map(|(a, b)| a - b).collect();
            let n = gains.len() as f64;
            let gain = gains.iter().sum::<f64>() / n.max(1.0);
            let se = if n > 1.0 {
                (gains.iter().map(|g| (g - gain).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
            } else {
                f64::INFINITY
            };
            let kept = gain > 0.0 && gain >= CONTEXT_MIN_Z * se;
            let figures = (average(&current), average(&scores));
            let name = &effects.report().dimensions[d].name;
            log(format!(
                "  [context] {ranking} {name}: NDCG@10 {:.4} -> {:.4} at weight {w}, tested gain {gain:.4} ± {se:.4} ({})",
                figures.0,
                figures.1,
                if kept { "kept" } else { "off" }
            ));
            if kept {
                weights[d] = w;
                current = scores;
            }
            chosen[r][d] = (weights[d], Some(figures));
        }
    }
    for (d, (personal, general)) in chosen[0].iter().zip(&chosen[1]).enumerate() {
        effects.set_weights(d, *personal, *general);
    }
}

/// A dimension's weight in one ranking and its validation NDCG@10 without and with it.
type Choice = (f32, Option<(f64, f64)>);

/// NDCG@10 of one top list against one person's held-out items (as in [`metrics`]).
fn ndcg_of(top: &[u32], held: &[Option<u32>]) -> f64 {
    let discount = |rank: usize| 1.0 / ((rank + 2) as f64).log2();
    let dcg: f64 =
        top.iter().take(K).enumerate().filter(|(_, i)| held.contains(&Some(**i))).map(|(r, _)| discount(r)).sum();
    let ideal: f64 = (0..K.min(held.len())).map(discount).sum();
    if ideal > 0.0 { dcg / ideal } else { 0.0 }
}

/// Coordinate search over blend weights (each weight over a small grid, up to four rounds),
/// from `start`.
fn coordinate_search(pools: &Pools, people: &[usize], start: Vec<f32>, log: &mut dyn FnMut(String)) -> Vec<f32> {
    const STEPS: [f32; 10] = [0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0];
    let mut weights = start;
    if weights.is_empty() || people.is_empty() {
        return weights;
    }
    let mut best = pools.ndcg(people, &weights);
    log(format!("  [blend] start {weights:?}: NDCG@10 {best:.4}"));
    for _round in 0..4 {
        let before = best;
        for k in 0..weights.len() {
            for &step in &STEPS {
                if weights[k] == step {
                    continue;
                }
                let mut w = weights.clone();
                w[k] = step;
                if w.iter().all(|&x| x == 0.0) {
                    continue;
                }
                let ndcg = pools.ndcg(people, &w);
                if ndcg > best + 1e-9 {
                    best = ndcg;
                    weights = w;
                }
            }
        }
        log(format!("  [blend] {weights:?}: NDCG@10 {best:.4}"));
        if best <= before + 1e-9 {
            break;
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_in_lanes_equals_the_plain_sums() {
        let plain = |scores: &[f32]| {
            let n = scores.len().max(1) as f64;
            let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / n;
            let var = scores.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / n;
            (mean as f32, var.sqrt() as f32)
        };
        for n in [0usize, 1, 7, 8, 9, 100, 10_003] {
            let scores: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 3.0).collect();
            let ((m1, s1), (m2, s2)) = (mean_std(&scores), plain(&scores));
            assert!((m1 - m2).abs() <= 1e-6 * m2.abs().max(1.0), "{n}: mean {m1} vs {m2}");
            assert!((s1 - s2).abs() <= 1e-6 * s2.abs().max(1.0), "{n}: std {s1} vs {s2}");
        }
        assert_eq!(mean_std(&[0.0; 20]), (0.0, 0.0));
    }

    /// Two taste clusters in time order, enough people to hold some out.
    fn clustered() -> Interactions {
        let mut t = Vec::new();
        let mut ts = Vec::new();
        for u in 0..60u32 {
            let base = if u % 2 == 0 { 0 } else { 10 };
            for k in 0..8u32 {
                t.push((u, base + (k + u) % 10, 1.0));
                ts.push(k as i64 * 100 + u as i64);
            }
        }
        Interactions::from_triples_with_ts(60, 20, &t, &ts)
    }

    #[test]
    fn neighbour_lists_stay_within_the_budget() {
        // The default budget does not bind on the public datasets' catalogs (ml-latest-small:
        // 9,724 items): the grids searched there are the checked-in ones.
        for n_items in [1_682, 9_724] {
            for search in [Search::Full, Search::Light] {
                let options = RankerOptions::default();
                assert_eq!(candidates(n_items, &options, search), uncapped_candidates(n_items, &options, search));
            }
        }
        // At 100,000 items every item-to-item part keeps at most 100 neighbours per item, and a
        // grid whose points the cap makes equal keeps one of them.
        let capped = candidates(100_000, &RankerOptions::default(), Search::Full);
        for spec in capped.iter().flatten() {
            let neighbors = match spec {
                PartSpec::ItemKnn(p) => p.neighbors,
                PartSpec::Rp3beta(p) => p.neighbors,
                PartSpec::Transitions(p) => p.neighbors,
                _ => continue,
            };
            assert!(neighbors <= 100, "{spec:?}");
        }
        let knn_grid = capped.iter().find(|g| matches!(g[0], PartSpec::ItemKnn(_))).unwrap();
        assert_eq!(knn_grid.len(), 2, "K=400 and K=100 with two shrinks are two points under the cap: {knn_grid:?}");

        // A trained ranker holds what the budget allows: 3 neighbours per item over 20 items.
        let x = clustered();
        let options = RankerOptions { max_neighbors: 60, ..RankerOptions::default() };
        let r = Ranker::train(&x, &options, &mut |_| {});
        let mut item_to_item = 0;
        for part in r.parts() {
            let index_bytes = (x.n_items() + 1) * std::mem::size_of::<usize>();
            match (&part.spec, &part.model) {
                (PartSpec::ItemKnn(p), Model::ItemKnn(m)) => {
                    assert_eq!(p.neighbors, 3);
                    assert!((0..20).all(|i| m.neighbors(i).len() <= 3));
                }
                (PartSpec::Rp3beta(p), _) => assert_eq!(p.neighbors, 3),
                (PartSpec::Transitions(p), _) => assert_eq!(p.neighbors, 3),
                _ => continue,
            }
            item_to_item += 1;
            assert!(part.model.approx_bytes() <= index_bytes + 60 * 8, "{:?}", part.spec);
        }
        assert_eq!(item_to_item, 3, "{:?}", r.report().parts);
        let described: Vec<&str> = r.report().parts.iter().map(|p| p.params.as_str()).collect();
        assert!(described.iter().any(|d| d.contains("K=3")), "{described:?}");
    }

    #[test]
    fn trains_validates_and_stays_in_the_cluster() {
        let x = clustered();
        let mut lines = Vec::new();
        let r = Ranker::train(&x, &RankerOptions::default(), &mut |l| lines.push(l));
        let report = r.report();
        assert!(report.validation.is_some(), "{lines:?}");
        assert_eq!(report.parts.len(), r.parts().len());
        assert!(report.levels.iter().all(|l| l.weights.len() == r.parts().len()));
        // A person of cluster 0 with items 0..3 gets cluster-0 items first.
        let items = [0u32, 1, 2, 3];
        let weights = [1.0f32; 4];
        let ts = [1i64, 2, 3, 4];
        let q = Query { user_idx: None, items: &items, weights: &weights, timestamps: Some(&ts) };
        let mut out = vec![0.0; r.n_items()];
        let mut scratch = RankerScratch::default();
        r.score_into(&q, 4, &mut out, &mut scratch);
        let top = crate::top_k(&out, &items, 3);
        assert!(top.iter().all(|&(i, _)| i < 10), "{top:?}");
        // The ranker survives serialization and a renumbering.
        let bytes = postcard::to_stdvec(&r).expect("serialize");
        let back: Ranker = postcard::from_bytes(&bytes).expect("deserialize");
        let mut again = vec![0.0; r.n_items()];
        back.score_into(&q, 4, &mut again, &mut RankerScratch::default());
        assert_eq!(out, again);
        let reversed: Vec<u32> = (0..20u32).rev().collect();
        let moved = r.remap_items(&reversed, 20);
        let moved_items: Vec<u32> = items.iter().map(|&i| reversed[i as usize]).collect();
        let q2 = Query { items: &moved_items, ..q };
        let mut remapped = vec![0.0; 20];
        moved.score_into(&q2, 4, &mut remapped, &mut RankerScratch::default());
        for i in 0..20 {
            assert!((remapped[reversed[i] as usize] - out[i]).abs() < 1e-4);
        }
    }

    #[test]
    fn evidence_names_history_items_of_the_same_cluster() {
        let x = clustered();
        let r =
            Ranker::train(&x, &RankerOptions { search: Some(Search::None), ..RankerOptions::default() }, &mut |_| {});
        let items = [10u32, 11];
        let weights = [1.0f32; 2];
        let ts = [1i64, 2];
        let q = Query { user_idx: None, items: &items, weights: &weights, timestamps: Some(&ts) };
        let mut out = vec![0.0; r.n_items()];
        let mut scratch = RankerScratch::default();
        r.score_into(&q, 2, &mut out, &mut scratch);
        let top = crate::top_k(&out, &items, 1)[0].0;
        let evidence = r.evidence(&q, top, &scratch, 2);
        assert!(!evidence.is_empty());
        assert!(evidence.iter().all(|(h, c)| items.contains(h) && *c > 0.0));
    }

    /// The evidence by definition: for one item, each history item's contribution summed over
    /// the item-to-item parts, every pair looked up on its own (item-kNN's by a scan of its row).
    fn evidence_by_pairs(
        r: &Ranker,
        q: &Query<'_>,
        item: u32,
        scratch: &RankerScratch,
        limit: usize,
    ) -> Vec<(u32, f32)> {
        let mut contributions = Vec::new();
        for (h_pos, &h) in q.items.iter().enumerate() {
            if h == item {
                continue;
            }
            let mut total = 0.0f32;
            for (k, part) in r.parts.iter().enumerate() {
                let scale = scratch.scale[k];
                if scale == 0.0 || !is_item_to_item(&part.model) {
                    continue;
                }
                total += scale * scratch.history_weights[k][h_pos] * pair_weight(&part.model, h, item);
            }
            if total > 0.0 {
                contributions.push((h, total));
            }
        }
        contributions.sort_unstable_by(crate::topk::by_score_desc);
        contributions.truncate(limit);
        contributions
    }

    /// The batched evidence is the evidence by definition, for every item at once and one by one.
    #[test]
    fn evidence_of_items_equals_evidence_item_by_item() {
        let x = clustered();
        let r =
            Ranker::train(&x, &RankerOptions { search: Some(Search::None), ..RankerOptions::default() }, &mut |_| {});
        assert!(r.parts().iter().any(|p| matches!(p.model, Model::ItemKnn(_))), "a ranker with item-kNN");
        let history = [10u32, 11, 3, 12, 10];
        let weights = [1.0f32, 0.5, 2.0, 1.0, 0.7];
        let ts = [1i64, 2, 3, 4, 5];
        let q = Query { user_idx: None, items: &history, weights: &weights, timestamps: Some(&ts) };
        let mut out = vec![0.0; r.n_items()];
        let mut scratch = RankerScratch::default();
        r.score_into(&q, history.len(), &mut out, &mut scratch);
        let every: Vec<u32> = (0..r.n_items() as u32).collect();
        for limit in [1, 2, 10] {
            let batched = r.evidence_of_items(&q, &every, &scratch, limit);
            let by_pairs: Vec<Vec<(u32, f32)>> =
                every.iter().map(|&i| evidence_by_pairs(&r, &q, i, &scratch, limit)).collect();
            assert_eq!(batched, by_pairs);
            let one_by_one: Vec<Vec<(u32, f32)>> = every.iter().map(|&i| r.evidence(&q, i, &scratch, limit)).collect();
            assert_eq!(one_by_one, by_pairs);
        }
        assert!(r.evidence_of_items(&q, &every, &scratch, 2).iter().any(|e| !e.is_empty()));
    }

    /// 120 people in two clusters of taste *and* time: even people use items 0–9 (tag
    /// `energy`) in the morning, odd people items 10–19 (tag `sleep`) in the evening.
    fn timed_clusters() -> Interactions {
        let mut t = Vec::new();
        let mut ts = Vec::new();
        for u in 0..120u32 {
            let base = if u % 2 == 0 { 0 } else { 10 };
            for k in 0..8u32 {
                t.push((u, base + (k * 3 + u) % 10, 1.0));
                ts.push(k as i64 * 100 + u as i64);
            }
        }
        Interactions::from_triples_with_ts(120, 20, &t, &ts)
    }

    fn train_with(x: &Interactions, context_of: &(dyn Fn(u32, u32) -> Option<u32> + Sync)) -> Ranker {
        let features = ["hour_band=morning".to_owned(), "hour_band=evening".to_owned()];
        let item_tags: Vec<Vec<u32>> = (0..20).map(|i| vec![if i < 10 { 0 } else { 1 }]).collect();
        let tags = ["energy".to_owned(), "sleep".to_owned()];
        let contexts = [vec![0u32], vec![1u32]];
        let ctx =
            ContextData { features: &features, item_tags: &item_tags, tags: &tags, contexts: &contexts, context_of };
        Ranker::train_with_context(
            x,
            Some(&ctx),
            &RankerOptions { search: Some(Search::Light), ..RankerOptions::default() },
            &mut |_| {},
        )
    }

    #[test]
    fn a_context_that_predicts_is_kept_where_it_helps() {
        let x = timed_clusters();
        let r = train_with(&x, &|u, _| Some(u % 2));
        let report = r.context().expect("context effects").report();
        let hour = &report.dimensions[0];
        assert_eq!(hour.name, "hour_band");
        // Popularity alone cannot tell the clusters apart; the hour can.
        assert!(hour.general_weight > 0.0, "{hour:?}");
        let (without, with) = hour.general_ndcg.expect("validated");
        assert!(with > without, "{hour:?}");
        // In the general ranking, morning lifts the morning items.
        let morning = r.context().unwrap().feature("hour_band=morning").unwrap();
        assert!(r.context().unwrap().score(&[morning], 3, false) > r.context().unwrap().score(&[morning], 13, false));
        // The served report and the personal scores carry it.
        let items = [0u32, 1];
        let weights = [1.0f32; 2];
        let q = Query { user_idx: None, items: &items, weights: &weights, timestamps: None };
        let (mut plain, mut timed) = (vec![0.0; 20], vec![0.0; 20]);
        r.score_into(&q, 2, &mut plain, &mut RankerScratch::default());
        r.score_in_context(&q, 2, &[morning], &mut timed, &mut RankerScratch::default());
        if hour.personal_weight == 0.0 {
            assert_eq!(plain, timed, "a dimension switched off changes nothing");
        }
    }

    #[test]
    fn a_context_that_says_nothing_is_switched_off() {
        // 300 people draw items from one skewed distribution (popularity is the best ranking
        // there is); the hour of each interaction is a coin flip.
        let uniform = |seed: u64| (xorshift_hash(seed) % 1_000_000) as f64 / 1_000_000.0;
        let mut t = Vec::new();
        let mut ts = Vec::new();
        for u in 0..300u32 {
            let mut seen = Vec::new();
            for k in 0..40u64 {
                let item = (40.0 * uniform(u as u64 * 1000 + k).powi(2)) as u32;
                if !seen.contains(&item) && seen.len() < 8 {
                    seen.push(item);
                    t.push((u, item, 1.0));
                    ts.push(k as i64);
                }
            }
        }
        let x = Interactions::from_triples_with_ts(300, 40, &t, &ts);
        let features = ["hour_band=morning".to_owned(), "hour_band=evening".to_owned()];
        let item_tags: Vec<Vec<u32>> = (0..40).map(|i| vec![i % 4]).collect();
        let tags: Vec<String> = (0..4).map(|t| format!("tag{t}")).collect();
        let contexts = [vec![0u32], vec![1u32]];
        let context_of = |u: u32, i: u32| Some((xorshift_hash(u as u64 * 7919 + i as u64) % 2) as u32);
        let ctx = ContextData {
            features: &features,
            item_tags: &item_tags,
            tags: &tags,
            contexts: &contexts,
            context_of: &context_of,
        };
        let options = RankerOptions { search: Some(Search::Light), ..RankerOptions::default() };
        let r = Ranker::train_with_context(&x, Some(&ctx), &options, &mut |_| {});
        let hour = &r.context().expect("context effects").report().dimensions[0];
        assert_eq!((hour.personal_weight, hour.general_weight), (0.0, 0.0), "{hour:?}");
        assert!(hour.personal_ndcg.is_some() && hour.general_ndcg.is_some(), "validated, then switched off");
        let items = [0u32, 1];
        let weights = [1.0f32; 2];
        let q = Query { user_idx: None, items: &items, weights: &weights, timestamps: None };
        let (mut plain, mut timed) = (vec![0.0; 40], vec![0.0; 40]);
        r.score_into(&q, 2, &mut plain, &mut RankerScratch::default());
        r.score_in_context(&q, 2, &[0, 1], &mut timed, &mut RankerScratch::default());
        assert_eq!(plain, timed, "a dimension switched off changes nothing");
        // It survives serialization (the cluster publishes the ranker).
        let back: Ranker = postcard::from_bytes(&postcard::to_stdvec(&r).expect("encode")).expect("decode");
        assert_eq!(back.context().unwrap().report(), r.context().unwrap().report());
    }

    #[test]
    fn too_little_data_uses_the_defaults() {
        let x = Interactions::from_triples_with_ts(2, 3, &[(0, 0, 1.0), (1, 1, 2.0)], &[1, 2]);
        let r = Ranker::train(&x, &RankerOptions::default(), &mut |_| {});
        assert!(r.report().validation.is_none());
        assert_eq!(r.report().search, Search::None);
    }
}
