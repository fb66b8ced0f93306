//! RP3beta (Paudel et al. 2017): three-step random walk item similarity with a popularity penalty.

use serde::{Deserialize, Serialize};

use crate::cooc::{self, SparseRows};
use crate::{Interactions, Query, Scorer};

/// Parameters of [`Rp3beta`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Rp3betaParams {
    /// Exponent on the transition probabilities (0 ignores degrees, 1 is the plain walk).
    pub alpha: f32,
    /// Popularity penalty: the similarity towards item `j` is divided by `popularity(j)^beta`.
    pub beta: f32,
    /// Neighbours kept per item.
    pub neighbors: usize,
}

impl Default for Rp3betaParams {
    /// Chosen on the validation split of ml-latest-small (train part only) by
    /// `attune eval --data ~/.cache/attune-datasets/ml-latest-small --tune`; see `docs/eval.md`.
    fn default() -> Self {
        Rp3betaParams { alpha: 0.5, beta: 0.6, neighbors: 1000 }
    }
}

/// RP3beta: `W[i, j] = |U_i|^-α Σ_{u ∈ U_i ∩ U_j} |I_u|^-α / pop(j)^β`, diagonal zero, top
/// `neighbors` per row; a person's score is `x_u W`. Weights are treated as binary for the walk
/// (as in the reference implementation on binary data).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rp3beta {
    params: Rp3betaParams,
    similar: SparseRows,
}

impl Rp3beta {
    /// Computes the walk similarities (parallel over items).
    pub fn fit(data: &Interactions, params: &Rp3betaParams) -> Rp3beta {
        let by_user = data.by_user();
        let user_weight: Vec<f32> =
            (0..data.n_users()).map(|u| (by_user.row_len(u).max(1) as f32).powf(-params.alpha)).collect();
        let pop = data.item_counts();
        let penalty: Vec<f32> = pop.iter().map(|&c| if c > 0 { (c as f32).powf(-params.beta) } else { 0.0 }).collect();
        // The co-occurrence weights by x_ui·x_uj; binarize so the walk sees degrees only.
        let binary = binarize(data);
        let rows = cooc::map_rows(&binary, Some(&user_weight), |i, acc, touched| {
            let row_scale = (pop[i].max(1) as f32).powf(-params.alpha);
            let row: Vec<(u32, f32)> = touched
                .iter()
                .filter(|&&j| j as usize != i)
                .map(|&j| (j, row_scale * acc[j as usize] * penalty[j as usize]))
                .filter(|&(_, s)| s > 0.0)
                .collect();
            cooc::keep_top(row, params.neighbors)
        });
        Rp3beta { params: *params, similar: SparseRows::from_rows(rows) }
    }

    /// Approximate bytes held.
    pub fn approx_bytes(&self) -> usize {
        self.similar.approx_bytes()
    }

    /// The parameters this model was fitted with.
    pub fn params(&self) -> &Rp3betaParams {
        &self.params
    }

    /// `W[from, to]` (0 when `to` is not among `from`'s kept neighbours).
    pub fn weight(&self, from: u32, to: u32) -> f32 {
        self.similar.get(from, to)
    }

    /// The same model over another item numbering (see [`crate::ItemKnn::remap_items`]).
    pub fn remap_items(&self, new_index: &[u32], n_items: usize) -> Rp3beta {
        Rp3beta { params: self.params, similar: self.similar.remap(new_index, n_items) }
    }
}

fn binarize(data: &Interactions) -> Interactions {
    if data.by_user().values().iter().all(|&w| w == 1.0) {
        return data.clone();
    }
    let mut t = Vec::with_capacity(data.nnz());
    for u in 0..data.n_users() {
        t.extend(data.user_items(u as u32).iter().map(|&i| (u as u32, i, 1.0)));
    }
    Interactions::from_triples(data.n_users(), data.n_items(), &t)
}

impl Scorer for Rp3beta {
    fn n_items(&self) -> usize {
        self.similar.n_rows()
    }
    fn score_into(&self, query: &Query<'_>, out: &mut [f32]) {
        out.fill(0.0);
        self.similar.accumulate(query.items, query.weights, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_co_occurrence_and_round_trips() {
        let mut t = Vec::new();
        for u in 0..6u32 {
            t.extend([(u, 0, 1.0), (u, 1, 1.0)]);
        }
        for u in 6..9u32 {
            t.extend([(u, 2, 1.0), (u, 3, 1.0)]);
        }
        t.push((9, 2, 1.0));
        let x = Interactions::from_triples(10, 4, &t);
        let m = Rp3beta::fit(&x, &Rp3betaParams { alpha: 1.0, beta: 0.5, neighbors: 10 });
        assert_eq!(m.recommend(&x.query(9), 1)[0].0, 3);
        let bytes = postcard::to_stdvec(&m).expect("serialize");
        assert_eq!(postcard::from_bytes::<Rp3beta>(&bytes).expect("deserialize"), m);
    }
}
