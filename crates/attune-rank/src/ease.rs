//! EASE (Steck 2019): a closed-form item×item linear model.

use faer::{Mat, Side, linalg::solvers::DenseSolveCore};
use serde::{Deserialize, Serialize};

use crate::{Interactions, Query, Scorer, cooc};

/// Parameters of [`Ease`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct EaseParams {
    /// L2 penalty λ on the item×item weights.
    pub lambda: f32,
}

impl Default for EaseParams {
    /// Chosen on the validation split of ml-latest-small (train part only) by
    /// `attune eval --data ~/.cache/attune-datasets/ml-latest-small --tune` (ml-100k's validation chose the same); see `docs/eval.md`.
    fn default() -> Self {
        EaseParams { lambda: 300.0 }
    }
}

/// Errors of [`Ease::fit`].
#[derive(Debug, thiserror::Error)]
pub enum EaseError {
    /// The regularized Gram matrix was not positive definite (λ ≤ 0).
    #[error("XᵀX + λI is not positive definite; use lambda > 0")]
    NotPositiveDefinite,
}

/// EASE: `B = I - P·diag(1/diag(P))` with `P = (XᵀX + λI)⁻¹` and a zero diagonal; a person's
/// score is `x_u B`. Dense `n_items²` `f32` weights (400 MB at 10,000 items): meant for catalogs up
/// to about ten thousand items. Fitting costs about `n_items³` flops (faer Cholesky and inverse).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ease {
    params: EaseParams,
    n_items: usize,
    /// Row-major: row `i` holds `B[i, ·]`, what having item `i` adds to each item's score.
    weights: Vec<f32>,
}

impl Ease {
    /// Fits the closed form.
    pub fn fit(data: &Interactions, params: &EaseParams) -> Result<Ease, EaseError> {
        let n = data.n_items();
        let rows = cooc::map_rows(data, None, |_, acc, touched| {
            touched.iter().map(|&j| (j, acc[j as usize])).collect::<Vec<(u32, f32)>>()
        });
        let mut gram = Mat::<f32>::zeros(n, n);
        for (i, row) in rows.into_iter().enumerate() {
            for (j, v) in row {
                gram[(i, j as usize)] = v;
            }
            gram[(i, i)] += params.lambda;
        }
        let inverse = gram.llt(Side::Lower).map_err(|_| EaseError::NotPositiveDefinite)?.inverse();
        drop(gram);
        let mut weights = vec![0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    weights[i * n + j] = -inverse[(i, j)] / inverse[(j, j)];
                }
            }
        }
        Ok(Ease { params: *params, n_items: n, weights })
    }

    /// The parameters this model was fitted with.
    pub fn params(&self) -> &EaseParams {
        &self.params
    }

    /// The weight of item `from` towards item `to` (`B[from, to]`).
    pub fn weight(&self, from: u32, to: u32) -> f32 {
        if from as usize >= self.n_items || to as usize >= self.n_items {
            return 0.0;
        }
        self.weights[from as usize * self.n_items + to as usize]
    }

    /// The same model over another item numbering: item `i` becomes `new_index[i]` in a catalog
    /// of `n_items` items (items absent from `new_index` have zero weights).
    ///
    /// # Panics
    /// If `new_index` is shorter than the model's item count or names an index `>= n_items`.
    pub fn remap_items(&self, new_index: &[u32], n_items: usize) -> Ease {
        let mut weights = vec![0f32; n_items * n_items];
        let old_n = self.n_items;
        for (old_i, &new_i) in new_index.iter().enumerate().take(old_n) {
            let row = &self.weights[old_i * old_n..(old_i + 1) * old_n];
            let target = &mut weights[new_i as usize * n_items..(new_i as usize + 1) * n_items];
            for (old_j, &w) in row.iter().enumerate() {
                target[new_index[old_j] as usize] = w;
            }
        }
        Ease { params: self.params, n_items, weights }
    }

    /// Bytes of the dense weights (what serving this model costs in memory).
    pub fn weight_bytes(&self) -> usize {
        self.weights.len() * std::mem::size_of::<f32>()
    }
}

impl Scorer for Ease {
    fn n_items(&self) -> usize {
        self.n_items
    }
    fn score_into(&self, query: &Query<'_>, out: &mut [f32]) {
        out.fill(0.0);
        let n = self.n_items;
        for (&i, &w) in query.items.iter().zip(query.weights) {
            if (i as usize) >= n {
                continue;
            }
            let row = &self.weights[i as usize * n..(i as usize + 1) * n];
            for (o, &b) in out.iter_mut().zip(row) {
                *o += w * b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_a_co_occurring_pair() {
        // Items 0 and 1 always go together, item 2 is alone.
        let mut t = Vec::new();
        for u in 0..8u32 {
            t.extend([(u, 0, 1.0), (u, 1, 1.0)]);
        }
        t.extend([(8, 2, 1.0), (9, 2, 1.0), (10, 0, 1.0)]);
        let x = Interactions::from_triples(11, 3, &t);
        let m = Ease::fit(&x, &EaseParams { lambda: 1.0 }).expect("fit");
        assert!(m.weight(0, 1) > 0.5);
        assert_eq!(m.weight(0, 0), 0.0);
        assert_eq!(m.recommend(&x.query(10), 1)[0].0, 1);
        let bytes = postcard::to_stdvec(&m).expect("serialize");
        assert_eq!(postcard::from_bytes::<Ease>(&bytes).expect("deserialize"), m);
        assert!(Ease::fit(&x, &EaseParams { lambda: -100.0 }).is_err());
    }
}
