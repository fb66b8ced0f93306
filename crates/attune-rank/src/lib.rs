//! attune-rank: Attune's recommendation models and their offline evaluation. Pure compute: no
//! storage, no network, no async, no clock and no global RNG (time and seeds are parameters). The
//! only IO is reading evaluation TSV files in [`eval`]. A model is bytes in, bytes out: every
//! model derives serde and round-trips through `postcard`.
//!
//! Where to start:
//! - [`Interactions`] is the training matrix (CSR person×item and its transpose, `u32` indices,
//!   `f32` weights), built from triples or from string ids through [`IdMap`].
//! - Every model has `fit(&Interactions, &Params)` and implements [`Scorer`]: score all items for a
//!   [`Query`] (a person's index and/or recent history) into a `&mut [f32]`, or
//!   [`Scorer::recommend`] for the top k with seen items excluded ([`top_k_into`] with a reused
//!   buffer on hot paths).
//! - Models: [`Popularity`], [`Trending`] (non-personalized); [`ItemKnn`] (neighbours, with
//!   [`ItemKnn::score_with_evidence`] for "Because you read X"); [`Ials`] (with [`Ials::fold_in`]
//!   for request-time person vectors); [`Ease`]; [`Rp3beta`]; [`Content`] (TF-IDF, cold start);
//!   [`Blend`] (the engine ranking: a tuned weighted blend of standardized scores).
//! - Presentation choices: [`ThompsonBandit`] and [`LinUcb`].
//! - [`ope`]: off-policy evaluation of a bandit policy on logged feedback (IPS, SNIPS, DR).
//! - [`eval`]: the offline protocol of `EVAL.md` (split, metrics, tuning on validation).
//!
//! ```
//! use attune_rank::{Interactions, ItemKnn, ItemKnnParams, Scorer};
//! let x = Interactions::from_triples(3, 3, &[(0, 0, 1.0), (0, 1, 1.0), (1, 0, 1.0), (1, 1, 1.0), (2, 0, 1.0)]);
//! let knn = ItemKnn::fit(&x, &ItemKnnParams::default());
//! let top = knn.recommend(&x.query(2), 1);
//! assert_eq!(top[0].0, 1); // person 2 has item 0; item 1 always goes with it
//! ```

mod bandit;
mod blend;
mod content;
pub mod context;
mod cooc;
mod ease;
pub mod eval;
mod ials;
mod interactions;
mod knn;
pub mod ope;
mod popularity;
mod ranker;
mod rp3;
mod seq;
mod simd;
mod topk;

pub use bandit::{LinUcb, LinearArm, ThompsonBandit, choose_ucb};
pub use blend::{Blend, BlendScratch, Component, Model, standardize};
pub use content::{Content, ContentParams, ItemDoc};
pub use context::{ContextData, ContextEffects, ContextParams, ContextReport, DimensionReport};
pub use ease::{Ease, EaseError, EaseParams};
pub use ials::{Ials, IalsParams};
pub use interactions::{Csr, IdMap, Interactions};
pub use knn::{ItemKnn, ItemKnnParams};
pub use popularity::{Popularity, PopularityParams, Trending, TrendingParams};
pub use ranker::{
    CONTEXT_MIN_Z, HALF_LIVES, LEVELS, LevelReport, MAX_NEIGHBORS, Part, PartReport, PartSpec, Ranker, RankerOptions,
    RankerReport, RankerScratch, Search, ValidationMetrics,
};
pub use rp3::{Rp3beta, Rp3betaParams};
pub use seq::{Transitions, TransitionsParams};
pub use topk::{TopK, by_score_desc, top_k, top_k_into};

/// What a model is asked to score: a person (if trained on) and their history as parallel
/// slices of item indices and weights. Item-based models use the history; [`Ials`] uses the
/// trained vector of a known person and folds the history in otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The person's row in the training matrix, if they were in it.
    pub user_idx: Option<u32>,
    /// History item indices (excluded from recommendations by [`Scorer::recommend`]).
    pub items: &'a [u32],
    /// Weights aligned with `items` (1.0 for implicit feedback; see [`recency_weights`]).
    pub weights: &'a [f32],
    /// Timestamps aligned with `items`, if known (used by [`Blend`] for recency weighting).
    pub timestamps: Option<&'a [i64]>,
}

impl<'a> Query<'a> {
    /// A query for someone the models were not trained on.
    pub fn anonymous(items: &'a [u32], weights: &'a [f32]) -> Query<'a> {
        Query { user_idx: None, items, weights, timestamps: None }
    }

    /// This query with its history re-weighted by recency ([`recency_weights`], `half_life` in
    /// positions; `buffer` receives the new weights). With `half_life > 0` the person index is
    /// dropped, so [`Ials`] folds the re-weighted history in instead of using the trained vector.
    /// Without timestamps, or with `half_life <= 0`, the query is returned unchanged.
    pub fn with_recency<'b>(&self, half_life: f32, buffer: &'b mut Vec<f32>) -> Query<'b>
    where
        'a: 'b,
    {
        match self.timestamps {
            Some(ts) if half_life > 0.0 => {
                recency_weights(ts, self.weights, half_life, buffer);
                Query { user_idx: None, items: self.items, weights: buffer, timestamps: self.timestamps }
            }
            _ => *self,
        }
    }
}

/// A trained model that scores every item for a person.
pub trait Scorer: Send + Sync {
    /// Number of items the model scores (the length `out` must have).
    fn n_items(&self) -> usize;

    /// Writes one score per item into `out` (higher is better). Items in the history get a score
    /// too; exclusion is the caller's choice.
    ///
    /// # Panics
    /// If `out.len() != self.n_items()`.
    fn score_into(&self, query: &Query<'_>, out: &mut [f32]);

    /// The `k` best items not in `query.items`, best first, as `(item_idx, score)`.
    fn recommend(&self, query: &Query<'_>, k: usize) -> Vec<(u32, f32)> {
        let mut scores = vec![0f32; self.n_items()];
        self.score_into(query, &mut scores);
        top_k(&scores, query.items, k)
    }
}

/// Recency weights for a history: the item at position `r` from the most recent one (`r = 0`)
/// gets `weight · 2^(-r / half_life)`. Ties in time share a position. `half_life` is in positions.
/// Under a time-based split, recent items predict the next ones better than old ones.
pub fn recency_weights(timestamps: &[i64], weights: &[f32], half_life: f32, out: &mut Vec<f32>) {
    out.clear();
    out.extend_from_slice(weights);
    if half_life <= 0.0 || !half_life.is_finite() {
        return;
    }
    let mut order: Vec<usize> = (0..timestamps.len()).collect();
    order.sort_unstable_by(|&a, &b| timestamps[b].cmp(&timestamps[a]));
    let mut rank = 0usize;
    for (pos, &k) in order.iter().enumerate() {
        if pos > 0 && timestamps[k] != timestamps[order[pos - 1]] {
            rank = pos;
        }
        out[k] *= (-(rank as f32) / half_life).exp2();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recency_weights_halve_per_half_life() {
        let mut out = Vec::new();
        recency_weights(&[10, 30, 20, 30], &[1.0, 1.0, 2.0, 1.0], 1.0, &mut out);
        assert_eq!(out, vec![0.125, 1.0, 0.5, 1.0]);
        recency_weights(&[10, 30], &[1.0, 1.0], 0.0, &mut out);
        assert_eq!(out, vec![1.0, 1.0]);
    }
}
