//! Implicit ALS (Hu, Koren, Volinsky 2008) solved with a few conjugate-gradient steps per row
//! (Takács, Pilászy, Tikk 2011), multi-threaded with rayon, `f32` throughout.

use faer::{Mat, MatRef, Par, Side, linalg::solvers::Solve};
use pulp::Simd;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::simd::{axpy, axpy4, dot, dot4};
use crate::{Csr, Interactions, Query, Scorer};

/// Parameters of [`Ials`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct IalsParams {
    /// Latent dimension.
    pub factors: usize,
    /// L2 penalty added to the diagonal of every row's system (not scaled by the row's size).
    pub regularization: f32,
    /// Confidence of an observed entry is `1 + alpha · weight` (Hu et al.'s α; `implicit`'s α is
    /// this plus one); unobserved entries have confidence 1 and preference 0.
    pub alpha: f32,
    /// Alternating sweeps (people, then items).
    pub iterations: usize,
    /// Conjugate-gradient steps per row and sweep (warm-started from the previous sweep).
    pub cg_steps: usize,
    /// Seed of the initial factors.
    pub seed: u64,
}

impl Default for IalsParams {
    /// Chosen on the validation split of ml-latest-small (train part only) by
    /// `attune eval --data ~/.cache/attune-datasets/ml-latest-small --tune`; see `docs/eval.md`.
    fn default() -> Self {
        IalsParams { factors: 64, regularization: 20.0, alpha: 1.0, iterations: 15, cg_steps: 3, seed: 42 }
    }
}

/// A trained iALS model: one vector per person and per item (row-major `f32`), plus the item
/// Gram matrix `YᵀY` for request-time [`Ials::fold_in`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ials {
    params: IalsParams,
    n_users: usize,
    n_items: usize,
    user_factors: Vec<f32>,
    item_factors: Vec<f32>,
    item_gram: Vec<f32>,
}

impl Ials {
    /// Trains on `data` (weights are the `r` of the confidence `1 + α r`).
    pub fn fit(data: &Interactions, params: &IalsParams) -> Ials {
        let f = params.factors.max(1);
        let mut rng = StdRng::seed_from_u64(params.seed);
        // Small positive values, as `implicit` does: both sides start near zero so the first sweeps
        // are driven by the data, not the initialization.
        let mut init = |n: usize| (0..n * f).map(|_| rng.random::<f32>() * 0.01).collect::<Vec<f32>>();
        let mut user_factors = init(data.n_users());
        let mut item_factors = init(data.n_items());
        for _ in 0..params.iterations {
            sweep(data.by_user(), &mut user_factors, &item_factors, f, params);
            sweep(data.by_item(), &mut item_factors, &user_factors, f, params);
        }
        let item_gram = gram(&item_factors, f);
        Ials {
            params: *params,
            n_users: data.n_users(),
            n_items: data.n_items(),
            user_factors,
            item_factors,
            item_gram,
        }
    }

    /// This model without its person vectors: what a server that always folds histories in
    /// ([`Ials::fold_in`]) needs, at a fraction of the memory for many people.
    pub fn without_users(mut self) -> Ials {
        self.n_users = 0;
        self.user_factors = Vec::new();
        self
    }

    /// Approximate bytes held.
    pub fn approx_bytes(&self) -> usize {
        (self.user_factors.len() + self.item_factors.len() + self.item_gram.len()) * 4
    }

    /// The parameters this model was fitted with.
    pub fn params(&self) -> &IalsParams {
        &self.params
    }
    /// Latent dimension.
    pub fn factors(&self) -> usize {
        self.params.factors.max(1)
    }
    /// The trained vector of person `user`, if known.
    pub fn user_vector(&self, user: u32) -> Option<&[f32]> {
        let f = self.factors();
        ((user as usize) < self.n_users).then(|| &self.user_factors[user as usize * f..(user as usize + 1) * f])
    }
    /// The vector of item `item`, if known.
    pub fn item_vector(&self, item: u32) -> Option<&[f32]> {
        let f = self.factors();
        ((item as usize) < self.n_items).then(|| &self.item_factors[item as usize * f..(item as usize + 1) * f])
    }

    /// The same model over another item numbering: item `i` becomes `new_index[i]` in a catalog of
    /// `n_items` items; items absent from `new_index` get a zero vector (they score 0, as items
    /// never trained on). The Gram matrix is unchanged: zero rows add nothing to `YᵀY`.
    ///
    /// # Panics
    /// If `new_index` is shorter than the model's item count or names an index `>= n_items`.
    pub fn remap_items(&self, new_index: &[u32], n_items: usize) -> Ials {
        let f = self.factors();
        let mut item_factors = vec![0f32; n_items * f];
        for (old, &new) in new_index.iter().enumerate().take(self.n_items) {
            let new = new as usize;
            item_factors[new * f..(new + 1) * f].copy_from_slice(&self.item_factors[old * f..(old + 1) * f]);
        }
        Ials { item_factors, n_items, ..self.clone() }
    }

    /// Computes a person vector from `(item_idx, weight)` pairs against the trained item factors,
    /// without retraining: the exact least-squares solution of one row of the iALS objective
    /// (Cholesky of `YᵀY + λI + Σ α w y yᵀ`). Unknown items are ignored. Cost O(n f² + f³).
    pub fn fold_in(&self, history: &[(u32, f32)]) -> Vec<f32> {
        let f = self.factors();
        let known: Vec<(&[f32], f32)> = history
            .iter()
            .filter_map(|&(item, w)| self.item_vector(item).map(|y| (y, self.params.alpha * w)))
            .collect();
        let mut a = Mat::<f32>::from_fn(f, f, |r, c| {
            self.item_gram[r * f + c] + if r == c { self.params.regularization } else { 0.0 }
        });
        // A += Y_hᵀ diag(α w) Y_h as one GEMM over the history rows scaled by sqrt(α w).
        let scaled = Mat::<f32>::from_fn(known.len(), f, |k, c| known[k].0[c] * known[k].1.max(0.0).sqrt());
        faer::linalg::matmul::matmul(a.as_mut(), faer::Accum::Add, scaled.transpose(), scaled.as_ref(), 1.0, Par::Seq);
        let mut b = Mat::<f32>::zeros(f, 1);
        for &(y, extra) in &known {
            for (r, &yr) in y.iter().enumerate() {
                b[(r, 0)] += (1.0 + extra) * yr;
            }
        }
        match a.llt(Side::Lower) {
            Ok(llt) => {
                llt.solve_in_place(b.as_mut());
                (0..f).map(|r| b[(r, 0)]).collect()
            }
            // Not reachable with a positive regularization; a zero vector scores everything 0.
            Err(_) => vec![0.0; f],
        }
    }

    /// `out[j] = user_vector · item_vector(j)` for every item.
    pub fn score_vector(&self, user_vector: &[f32], out: &mut [f32]) {
        crate::simd::matvec_rows(&self.item_factors, user_vector, out);
    }
}

impl Scorer for Ials {
    fn n_items(&self) -> usize {
        self.n_items
    }
    /// Uses the trained vector of a known person, else folds in the query's history.
    fn score_into(&self, query: &Query<'_>, out: &mut [f32]) {
        match query.user_idx.and_then(|u| self.user_vector(u)) {
            Some(x) => self.score_vector(x, out),
            None => {
                let history: Vec<(u32, f32)> = query.items.iter().copied().zip(query.weights.iter().copied()).collect();
                let x = self.fold_in(&history);
                self.score_vector(&x, out);
            }
        }
    }
}

/// `YᵀY` (f×f, row-major) with faer's parallel GEMM.
fn gram(y: &[f32], f: usize) -> Vec<f32> {
    let n = y.len() / f;
    let y = MatRef::from_row_major_slice(y, n, f);
    let mut g = Mat::<f32>::zeros(f, f);
    faer::linalg::matmul::matmul(g.as_mut(), faer::Accum::Replace, y.transpose(), y, 1.0, Par::rayon(0));
    let mut out = vec![0f32; f * f];
    for r in 0..f {
        for c in 0..f {
            out[r * f + c] = g[(r, c)];
        }
    }
    out
}

/// Updates every row of `x` (the side being solved) given the fixed factors `y` of the other side.
fn sweep(matrix: &Csr, x: &mut [f32], y: &[f32], f: usize, params: &IalsParams) {
    let g = gram(y, f);
    let arch = pulp::Arch::new();
    x.par_chunks_mut(f).enumerate().for_each_init(
        || vec![0f32; 3 * f],
        |scratch, (row, x_row)| {
            arch.dispatch(SolveRow {
                gram: &g,
                reg: params.regularization,
                alpha: params.alpha,
                cg_steps: params.cg_steps,
                y,
                cols: matrix.row_indices(row),
                weights: matrix.row_values(row),
                x: x_row,
                scratch,
            });
        },
    );
}

/// One row of the iALS normal equations, `(YᵀY + λI + Σ_i (c_i - 1) y_i y_iᵀ) x = Σ_i c_i y_i`, solved
/// by conjugate gradient warm-started at the current `x`. `A p` is never formed as a matrix: it is
/// `YᵀY p + λ p + Σ_i (c_i - 1)(y_i·p) y_i`, O(f² + n f) per step.
struct SolveRow<'a> {
    gram: &'a [f32],
    reg: f32,
    alpha: f32,
    cg_steps: usize,
    y: &'a [f32],
    cols: &'a [u32],
    weights: &'a [f32],
    x: &'a mut [f32],
    scratch: &'a mut [f32],
}

impl pulp::WithSimd for SolveRow<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let SolveRow { gram, reg, alpha, cg_steps, y, cols, weights, x, scratch } = self;
        let f = x.len();
        let (r, rest) = scratch.split_at_mut(f);
        let (p, ap) = rest.split_at_mut(f);
        // r = b - A x
        gram_matvec(simd, gram, reg, x, r);
        r.iter_mut().for_each(|v| *v = -*v);
        // Rows are processed four at a time (see `dot4`/`axpy4`): fewer loads and stores per FMA.
        let row_of = |i: u32| &y[i as usize * f..(i as usize + 1) * f];
        let mut col_chunks = cols.chunks_exact(4);
        let mut weight_chunks = weights.chunks_exact(4);
        for (c4, w4) in (&mut col_chunks).zip(&mut weight_chunks) {
            let ys = [row_of(c4[0]), row_of(c4[1]), row_of(c4[2]), row_of(c4[3])];
            let dots = dot4(simd, ys, x);
            let coef: [f32; 4] = std::array::from_fn(|j| {
                let extra = alpha * w4[j];
                (1.0 + extra) - extra * dots[j]
            });
            axpy4(simd, coef, ys, r);
        }
        for (&i, &w) in col_chunks.remainder().iter().zip(weight_chunks.remainder()) {
            let yi = row_of(i);
            let extra = alpha * w;
            let coef = (1.0 + extra) - extra * dot(simd, yi, x);
            axpy(simd, coef, yi, r);
        }
        p.copy_from_slice(r);
        let mut rs_old = dot(simd, r, r);
        for _ in 0..cg_steps {
            if rs_old < 1e-20 {
                break;
            }
            gram_matvec(simd, gram, reg, p, ap);
            let mut col_chunks = cols.chunks_exact(4);
            let mut weight_chunks = weights.chunks_exact(4);
            for (c4, w4) in (&mut col_chunks).zip(&mut weight_chunks) {
                let ys = [row_of(c4[0]), row_of(c4[1]), row_of(c4[2]), row_of(c4[3])];
                let dots = dot4(simd, ys, p);
                let coef: [f32; 4] = std::array::from_fn(|j| alpha * w4[j] * dots[j]);
                axpy4(simd, coef, ys, ap);
            }
            for (&i, &w) in col_chunks.remainder().iter().zip(weight_chunks.remainder()) {
                let yi = row_of(i);
                let coef = alpha * w * dot(simd, yi, p);
                axpy(simd, coef, yi, ap);
            }
            let step = rs_old / dot(simd, p, ap);
            axpy(simd, step, p, x);
            axpy(simd, -step, ap, r);
            let rs_new = dot(simd, r, r);
            let beta = rs_new / rs_old;
            for (pk, &rk) in p.iter_mut().zip(r.iter()) {
                *pk = rk + beta * *pk;
            }
            rs_old = rs_new;
        }
    }
}

/// `out = (G + reg·I) v` for the row-major f×f Gram matrix `G`, four rows at a time.
#[inline(always)]
fn gram_matvec<S: Simd>(simd: S, gram: &[f32], reg: f32, v: &[f32], out: &mut [f32]) {
    let f = v.len();
    let row = |k: usize| &gram[k * f..(k + 1) * f];
    let mut k = 0;
    while k + 4 <= f {
        let d = dot4(simd, [row(k), row(k + 1), row(k + 2), row(k + 3)], v);
        for j in 0..4 {
            out[k + j] = d[j] + reg * v[k + j];
        }
        k += 4;
    }
    while k < f {
        out[k] = dot(simd, row(k), v) + reg * v[k];
        k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks() -> Interactions {
        // People 0..20 like items 0..10, people 20..40 like items 10..20; each misses one item.
        let mut t = Vec::new();
        for u in 0..40u32 {
            let base = if u < 20 { 0 } else { 10 };
            for i in base..base + 10 {
                if i != base + u % 10 {
                    t.push((u, i, 1.0));
                }
            }
        }
        Interactions::from_triples(40, 20, &t)
    }

    fn params() -> IalsParams {
        IalsParams { factors: 8, regularization: 0.1, alpha: 4.0, iterations: 15, cg_steps: 3, seed: 1 }
    }

    #[test]
    fn recommends_the_missing_item_of_the_block() {
        let x = blocks();
        let m = Ials::fit(&x, &params());
        for u in [0u32, 3, 25] {
            let base = if u < 20 { 0 } else { 10 };
            let recs = m.recommend(&x.query(u), 1);
            assert_eq!(recs[0].0, base + u % 10, "person {u}");
        }
    }

    #[test]
    fn fold_in_is_close_to_the_trained_vector() {
        let x = blocks();
        let m = Ials::fit(&x, &IalsParams { iterations: 30, ..params() });
        let u = 7u32;
        let history: Vec<(u32, f32)> = x.user_items(u).iter().map(|&i| (i, 1.0)).collect();
        let folded = m.fold_in(&history);
        let trained = m.user_vector(u).expect("known person");
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
        let diff: Vec<f32> = folded.iter().zip(trained).map(|(a, b)| a - b).collect();
        assert!(norm(&diff) < 0.05 * norm(trained), "{folded:?} vs {trained:?}");
        // An anonymous query folds in and ranks the same way.
        let anon = Query::anonymous(x.user_items(u), x.user_weights(u));
        assert_eq!(m.recommend(&anon, 1)[0].0, 7);
    }

    #[test]
    fn serialization_round_trip() {
        let m = Ials::fit(&blocks(), &IalsParams { iterations: 2, ..params() });
        let bytes = postcard::to_stdvec(&m).expect("serialize");
        let back: Ials = postcard::from_bytes(&bytes).expect("deserialize");
        assert_eq!(back, m);
    }
}
