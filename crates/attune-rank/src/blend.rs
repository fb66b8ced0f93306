//! The blended engine ranking: a weighted sum of per-person standardized model scores.

use serde::{Deserialize, Serialize};

use crate::{Content, Ease, Ials, ItemKnn, Popularity, Query, Rp3beta, Scorer, Transitions, Trending};

/// Any trained model, so a blend (and a model snapshot) can hold a mix of them and serialize.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // Held in a few long-lived snapshots; boxing buys nothing.
pub enum Model {
    /// See [`Popularity`].
    Popularity(Popularity),
    /// See [`Trending`].
    Trending(Trending),
    /// See [`ItemKnn`].
    ItemKnn(ItemKnn),
    /// See [`Ials`].
    Ials(Ials),
    /// See [`Ease`].
    Ease(Ease),
    /// See [`Rp3beta`].
    Rp3beta(Rp3beta),
    /// See [`Content`].
    Content(Content),
    /// See [`Transitions`].
    Transitions(Transitions),
}

impl Model {
    fn scorer(&self) -> &dyn Scorer {
        match self {
            Model::Popularity(m) => m,
            Model::Trending(m) => m,
            Model::ItemKnn(m) => m,
            Model::Ials(m) => m,
            Model::Ease(m) => m,
            Model::Rp3beta(m) => m,
            Model::Content(m) => m,
            Model::Transitions(m) => m,
        }
    }

    /// The same model over another item numbering: item `i` becomes `new_index[i]` in a catalog
    /// of `n_items` items. [`Content`] is built from a process's own catalog and is returned
    /// unchanged.
    pub fn remap_items(&self, new_index: &[u32], n_items: usize) -> Model {
        match self {
            Model::Popularity(m) => Model::Popularity(m.remap_items(new_index, n_items)),
            Model::Trending(m) => Model::Trending(m.remap_items(new_index, n_items)),
            Model::ItemKnn(m) => Model::ItemKnn(m.remap_items(new_index, n_items)),
            Model::Ials(m) => Model::Ials(m.remap_items(new_index, n_items)),
            Model::Ease(m) => Model::Ease(m.remap_items(new_index, n_items)),
            Model::Rp3beta(m) => Model::Rp3beta(m.remap_items(new_index, n_items)),
            Model::Content(m) => Model::Content(m.clone()),
            Model::Transitions(m) => Model::Transitions(m.remap_items(new_index, n_items)),
        }
    }

    /// Approximate bytes held (what serving it costs in memory).
    pub fn approx_bytes(&self) -> usize {
        match self {
            Model::Popularity(m) => m.approx_bytes(),
            Model::Trending(m) => m.n_items() * 4,
            Model::ItemKnn(m) => m.approx_bytes(),
            Model::Ials(m) => m.approx_bytes(),
            Model::Ease(m) => m.weight_bytes(),
            Model::Rp3beta(m) => m.approx_bytes(),
            Model::Content(_) => 0,
            Model::Transitions(m) => m.approx_bytes(),
        }
    }
}

impl Scorer for Model {
    fn n_items(&self) -> usize {
        self.scorer().n_items()
    }
    fn score_into(&self, query: &Query<'_>, out: &mut [f32]) {
        self.scorer().score_into(query, out)
    }
}

/// One member of a [`Blend`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Component {
    /// The trained model.
    pub model: Model,
    /// Its weight in the blend.
    pub weight: f32,
    /// Recency half-life (positions) applied to the history before this model scores it (see
    /// [`Query::with_recency`]); 0 disables it.
    pub recency_half_life: f32,
}

/// A weighted blend: `score(j) = Σ_m weight_m · (s_m(j) - mean_m) / std_m`, where mean and standard
/// deviation are taken over all items for this person. Standardizing per person makes models
/// with different score scales (dot products, similarity sums, counts) comparable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blend {
    components: Vec<Component>,
}

impl Blend {
    /// A blend of components. All models must cover the same items.
    ///
    /// # Panics
    /// If the models disagree on the number of items.
    pub fn new(components: Vec<Component>) -> Blend {
        if let Some(first) = components.first() {
            let n = first.model.n_items();
            assert!(components.iter().all(|c| c.model.n_items() == n), "blend components disagree on n_items");
        }
        Blend { components }
    }

    /// The components.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Replaces the weights (same order as the components).
    ///
    /// # Panics
    /// If `weights.len()` differs from the number of components.
    pub fn set_weights(&mut self, weights: &[f32]) {
        assert_eq!(weights.len(), self.components.len());
        for (c, &new) in self.components.iter_mut().zip(weights) {
            c.weight = new;
        }
    }
}

/// Standardizes `scores` in place to zero mean and unit deviation (all zeros if constant).
pub fn standardize(scores: &mut [f32]) {
    let n = scores.len().max(1) as f64;
    let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / n;
    let var = scores.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    let scale = if std > 0.0 { 1.0 / std } else { 0.0 };
    for s in scores.iter_mut() {
        *s = ((*s as f64 - mean) * scale) as f32;
    }
}

impl Scorer for Blend {
    fn n_items(&self) -> usize {
        self.components.first().map_or(0, |c| c.model.n_items())
    }
    fn score_into(&self, query: &Query<'_>, out: &mut [f32]) {
        self.score_into_reusing(query, out, &mut BlendScratch::default());
    }
}

/// Buffers reused across [`Blend::score_into_reusing`] calls (one per worker thread), so that
/// scoring allocates nothing once warm.
#[derive(Debug, Default)]
pub struct BlendScratch {
    scores: Vec<f32>,
    weights: Vec<f32>,
}

impl Blend {
    /// [`Scorer::score_into`] with caller-owned buffers: the hot-path variant for the engine.
    pub fn score_into_reusing(&self, query: &Query<'_>, out: &mut [f32], scratch: &mut BlendScratch) {
        out.fill(0.0);
        let BlendScratch { scores, weights } = scratch;
        scores.clear();
        scores.resize(out.len(), 0.0);
        for c in &self.components {
            if c.weight == 0.0 {
                continue;
            }
            c.model.score_into(&query.with_recency(c.recency_half_life, weights), scores);
            standardize(scores);
            for (o, &s) in out.iter_mut().zip(scores.iter()) {
                *o += c.weight * s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Interactions, PopularityParams, TrendingParams};

    #[test]
    fn weights_pick_the_winner() {
        // Item 0 is popular all-time, item 1 is recent.
        let x = Interactions::from_triples_with_ts(
            4,
            3,
            &[(0, 0, 1.0), (1, 0, 1.0), (2, 0, 1.0), (3, 1, 1.0), (3, 2, 1.0)],
            &[0, 0, 0, 100, 0],
        );
        let pop = Model::Popularity(Popularity::fit(&x, &PopularityParams::default()));
        let trend = Model::Trending(Trending::fit(&x, &TrendingParams { now: 100, half_life_s: 1.0 }));
        let component = |model, weight| Component { model, weight, recency_half_life: 0.0 };
        let mut b = Blend::new(vec![component(pop, 1.0), component(trend, 0.0)]);
        let q = Query::anonymous(&[], &[]);
        assert_eq!(b.recommend(&q, 1)[0].0, 0);
        b.set_weights(&[0.0, 1.0]);
        assert_eq!(b.recommend(&q, 1)[0].0, 1);
        let bytes = postcard::to_stdvec(&b).expect("serialize");
        let back: Blend = postcard::from_bytes(&bytes).expect("deserialize");
        assert_eq!(back.recommend(&q, 1)[0].0, 1);
    }
}
