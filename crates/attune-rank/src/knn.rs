//! Item-based k-nearest-neighbours with shrunk cosine similarity.

use serde::{Deserialize, Serialize};

use crate::cooc::{self, SparseRows};
use crate::{Interactions, Query, Scorer};

/// Parameters of [`ItemKnn`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ItemKnnParams {
    /// Neighbours kept per item.
    pub neighbors: usize,
    /// Shrinkage added to the cosine denominator: `dot / (|i|·|j| + shrink)`. Damps similarities
    /// supported by few common people.
    pub shrink: f32,
}

impl Default for ItemKnnParams {
    /// Chosen on the validation split of ml-latest-small (train part only) by
    /// `attune eval --data ~/.cache/attune-datasets/ml-latest-small --tune`; see `docs/eval.md`.
    fn default() -> Self {
        ItemKnnParams { neighbors: 400, shrink: 10.0 }
    }
}

/// Item-kNN: for each item its `neighbors` most similar items (shrunk cosine over the people who
/// interacted with them). A person's score for item `j` is `Σ_{h ∈ history} w_h · sim(h, j)`.
///
/// The neighbour lists are the basis of "Because you read X" explanations: see
/// [`ItemKnn::neighbors`] and [`ItemKnn::score_with_evidence`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemKnn {
    params: ItemKnnParams,
    /// Row `i`: neighbours of `i`, most similar first.
    similar: SparseRows,
}

impl ItemKnn {
    /// Computes the similarity rows (parallel over items).
    pub fn fit(data: &Interactions, params: &ItemKnnParams) -> ItemKnn {
        let by_item = data.by_item();
        let norms: Vec<f32> =
            (0..data.n_items()).map(|i| by_item.row_values(i).iter().map(|w| w * w).sum::<f32>().sqrt()).collect();
        let rows = cooc::map_rows(data, None, |i, acc, touched| {
            let row: Vec<(u32, f32)> = touched
                .iter()
                .filter(|&&j| j as usize != i)
                .map(|&j| {
                    let denom = norms[i] * norms[j as usize] + params.shrink;
                    (j, if denom > 0.0 { acc[j as usize] / denom } else { 0.0 })
                })
                .filter(|&(_, s)| s > 0.0)
                .collect();
            let mut row = cooc::keep_top(row, params.neighbors);
            row.sort_unstable_by(crate::topk::by_score_desc);
            row
        });
        ItemKnn { params: *params, similar: SparseRows::from_rows(rows) }
    }

    /// Approximate bytes held.
    pub fn approx_bytes(&self) -> usize {
        self.similar.approx_bytes()
    }

    /// The parameters this model was fitted with.
    pub fn params(&self) -> &ItemKnnParams {
        &self.params
    }

    /// `sim(from, to)` (0 when `to` is not among `from`'s kept neighbours).
    pub fn weight(&self, from: u32, to: u32) -> f32 {
        self.similar.find(from, to)
    }

    /// The same model over another item numbering: item `i` becomes `new_index[i]` in a catalog of
    /// `n_items` items (items absent from `new_index` have no neighbours). A model trained in one
    /// process is used by another whose catalog numbers items differently.
    ///
    /// # Panics
    /// If `new_index` is shorter than the model's item count or names an index `>= n_items`.
    pub fn remap_items(&self, new_index: &[u32], n_items: usize) -> ItemKnn {
        let mut rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n_items];
        for (old, &new) in new_index.iter().enumerate().take(self.similar.n_rows()) {
            rows[new as usize] = self.similar.row(old).iter().map(|&(j, s)| (new_index[j as usize], s)).collect();
        }
        ItemKnn { params: self.params, similar: SparseRows::from_rows(rows) }
    }

    /// The precomputed neighbours of `item` as `(item, similarity)`, most similar first. Empty for
    /// an unknown item.
    pub fn neighbors(&self, item: u32) -> &[(u32, f32)] {
        if (item as usize) < self.similar.n_rows() { self.similar.row(item as usize) } else { &[] }
    }

    /// Scores every item like [`Scorer::score_into`] and writes, for each candidate `j`,
    /// `evidence[j] = (h, c)`: the history item `h` whose single contribution `c` to `j`'s score was
    /// largest ("Because you read h"). `h == u32::MAX` when no history item is a neighbour of `j`.
    ///
    /// # Panics
    /// If `out` or `evidence` is not `n_items` long.
    pub fn score_with_evidence(&self, query: &Query<'_>, out: &mut [f32], evidence: &mut [(u32, f32)]) {
        assert_eq!(evidence.len(), out.len(), "one evidence slot per item");
        out.fill(0.0);
        self.similar.accumulate_with_evidence(query.items, query.weights, out, evidence);
    }
}

impl Scorer for ItemKnn {
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

    /// Two taste clusters: {0,1,2} and {3,4}.
    fn clusters() -> Interactions {
        let mut t = Vec::new();
        for u in 0..6u32 {
            for i in [0u32, 1, 2] {
                if !(u == 5 && i == 2) {
                    t.push((u, i, 1.0));
                }
            }
        }
        for u in 6..10u32 {
            t.extend([(u, 3, 1.0), (u, 4, 1.0)]);
        }
        Interactions::from_triples(10, 5, &t)
    }

    #[test]
    fn neighbours_stay_in_cluster_and_evidence_names_the_source() {
        let x = clusters();
        let m = ItemKnn::fit(&x, &ItemKnnParams { neighbors: 2, shrink: 0.0 });
        assert!(m.neighbors(0).iter().all(|&(j, _)| j == 1 || j == 2));
        assert_eq!(m.neighbors(3), &[(4, 1.0)]);
        // Person 5 has {0, 1}; the best candidate is 2.
        let recs = m.recommend(&x.query(5), 1);
        assert_eq!(recs[0].0, 2);
        let mut out = vec![0.0; 5];
        let mut ev = vec![(0, 0.0); 5];
        m.score_with_evidence(&x.query(5), &mut out, &mut ev);
        assert!(ev[2].0 == 0 || ev[2].0 == 1);
        assert_eq!(ev[3].0, u32::MAX);
    }

    #[test]
    fn remapped_neighbours_follow_their_items() {
        let m = ItemKnn::fit(&clusters(), &ItemKnnParams::default());
        // Reversed numbering in a catalog with one more item (index 5 was never trained on).
        let new_index = [4u32, 3, 2, 1, 0];
        let r = m.remap_items(&new_index, 6);
        for old in 0..5u32 {
            let expected: Vec<(u32, f32)> = m.neighbors(old).iter().map(|&(j, s)| (new_index[j as usize], s)).collect();
            assert_eq!(r.neighbors(new_index[old as usize]), &expected[..]);
        }
        assert!(r.neighbors(5).is_empty());
        assert_eq!(r.n_items(), 6);
    }

    #[test]
    fn serialization_round_trip() {
        let m = ItemKnn::fit(&clusters(), &ItemKnnParams::default());
        let bytes = postcard::to_stdvec(&m).expect("serialize");
        let back: ItemKnn = postcard::from_bytes(&bytes).expect("deserialize");
        assert_eq!(back, m);
    }
}
