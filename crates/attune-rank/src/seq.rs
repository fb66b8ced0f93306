//! Sequential item-to-item transitions: what people take up shortly *after* an item.
//!
//! Item-kNN, EASE and RP3beta see a person's history as a set. Under a time split the next items
//! follow the last ones, and the order carries signal the sets lose: people who finish item `i`
//! often go on to `j`, not the other way round. [`Transitions`] counts, over every person's
//! time-ordered history, how often `j` follows `i` within `window` positions (a follower `d`
//! positions later counts `1/d`), normalizes by both items' popularity, and keeps the strongest
//! followers per item. A person's score for `j` is `Σ_h w_h · T[h, j]` over their (recency
//! weighted) history, the same shape as the other item-to-item models, so it blends with them.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cooc::{self, SparseRows};
use crate::{Interactions, Query, Scorer};

/// Parameters of [`Transitions`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TransitionsParams {
    /// How many positions after an item its followers are counted.
    pub window: usize,
    /// Popularity penalty: counts are divided by `count(i)^(1-beta) · count(j)^beta`.
    pub beta: f32,
    /// Followers kept per item.
    pub neighbors: usize,
}

impl Default for TransitionsParams {
    fn default() -> Self {
        TransitionsParams { window: 5, beta: 0.5, neighbors: 200 }
    }
}

/// Item-to-item transitions (see the module documentation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Transitions {
    params: TransitionsParams,
    /// Row `i`: the followers of `i` as `(item, weight)`, sorted by item.
    followers: SparseRows,
}

impl Transitions {
    /// Counts transitions over every person's history ordered by `(timestamp, item)`. Without
    /// timestamps the order is the item order, which carries no signal: the model then degrades
    /// to a windowed co-occurrence.
    pub fn fit(data: &Interactions, params: &TransitionsParams) -> Transitions {
        let n_items = data.n_items();
        let by_user = data.by_user();
        let window = params.window.max(1);
        // Each person's items in time order, and each CSR entry's position in that order.
        let mut sequence: Vec<u32> = vec![0; data.nnz()];
        let mut position: Vec<u32> = vec![0; data.nnz()];
        {
            let chunks: Vec<(usize, Vec<u32>, Vec<u32>)> = (0..data.n_users())
                .into_par_iter()
                .map(|u| {
                    let range = by_user.row_range(u);
                    let items = by_user.row_indices(u);
                    let mut order: Vec<usize> = (0..items.len()).collect();
                    if let Some(ts) = data.user_timestamps(u as u32) {
                        order.sort_by(|&a, &b| ts[a].cmp(&ts[b]).then(items[a].cmp(&items[b])));
                    }
                    let seq: Vec<u32> = order.iter().map(|&k| items[k]).collect();
                    let mut pos = vec![0u32; items.len()];
                    for (p, &k) in order.iter().enumerate() {
                        pos[k] = p as u32;
                    }
                    (range.start, seq, pos)
                })
                .collect();
            for (start, seq, pos) in chunks {
                sequence[start..start + seq.len()].copy_from_slice(&seq);
                position[start..start + pos.len()].copy_from_slice(&pos);
            }
        }
        let counts = data.item_counts();
        let by_item = data.by_item();
        let rows: Vec<Vec<(u32, f32)>> = (0..n_items)
            .into_par_iter()
            .map_init(
                || (vec![0f32; n_items], vec![false; n_items], Vec::<u32>::new()),
                |(acc, seen, touched), i| {
                    touched.clear();
                    for &u in by_item.row_indices(i) {
                        let range = by_user.row_range(u as usize);
                        let items = by_user.row_indices(u as usize);
                        let Ok(k) = items.binary_search(&(i as u32)) else { continue };
                        let p = position[range.start + k] as usize;
                        let seq = &sequence[range.clone()];
                        for (d, &j) in seq.iter().enumerate().skip(p + 1).take(window) {
                            let j = j as usize;
                            if !seen[j] {
                                seen[j] = true;
                                touched.push(j as u32);
                            }
                            acc[j] += 1.0 / (d - p) as f32;
                        }
                    }
                    let ci = (counts[i].max(1) as f32).powf(1.0 - params.beta);
                    let row: Vec<(u32, f32)> = touched
                        .iter()
                        .filter(|&&j| j as usize != i)
                        .map(|&j| (j, acc[j as usize] / (ci * (counts[j as usize].max(1) as f32).powf(params.beta))))
                        .filter(|&(_, s)| s > 0.0)
                        .collect();
                    for &j in touched.iter() {
                        acc[j as usize] = 0.0;
                        seen[j as usize] = false;
                    }
                    cooc::keep_top(row, params.neighbors)
                },
            )
            .collect();
        Transitions { params: *params, followers: SparseRows::from_rows(rows) }
    }

    /// Approximate bytes held.
    pub fn approx_bytes(&self) -> usize {
        self.followers.approx_bytes()
    }

    /// The parameters this model was fitted with.
    pub fn params(&self) -> &TransitionsParams {
        &self.params
    }

    /// `T[from, to]`: how strongly `to` follows `from` (0 when it is not among the kept followers).
    pub fn weight(&self, from: u32, to: u32) -> f32 {
        self.followers.get(from, to)
    }

    /// The same model over another item numbering (see [`crate::ItemKnn::remap_items`]).
    pub fn remap_items(&self, new_index: &[u32], n_items: usize) -> Transitions {
        Transitions { params: self.params, followers: self.followers.remap(new_index, n_items) }
    }
}

impl Scorer for Transitions {
    fn n_items(&self) -> usize {
        self.followers.n_rows()
    }
    fn score_into(&self, query: &Query<'_>, out: &mut [f32]) {
        out.fill(0.0);
        self.followers.accumulate(query.items, query.weights, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_are_directed_by_time() {
        // Everyone takes 0, then 1, then 2, a day apart; person 3 has only taken 1.
        let mut t = Vec::new();
        let mut ts = Vec::new();
        for u in 0..3u32 {
            for (k, i) in [0u32, 1, 2].into_iter().enumerate() {
                t.push((u, i, 1.0));
                ts.push(k as i64 * 86_400);
            }
        }
        t.push((3, 1, 1.0));
        ts.push(0);
        let x = Interactions::from_triples_with_ts(4, 3, &t, &ts);
        let m = Transitions::fit(&x, &TransitionsParams { window: 1, beta: 0.5, neighbors: 10 });
        assert!(m.weight(0, 1) > 0.0 && m.weight(1, 2) > 0.0);
        assert_eq!(m.weight(1, 0), 0.0, "nobody took 0 after 1");
        assert_eq!(m.weight(0, 2), 0.0, "2 is two positions after 0, outside a window of 1");
        assert_eq!(m.recommend(&x.query(3), 1)[0].0, 2);
        let remapped = m.remap_items(&[2, 1, 0], 3);
        assert_eq!(remapped.weight(2, 1), m.weight(0, 1));
        let bytes = postcard::to_stdvec(&m).expect("serialize");
        assert_eq!(postcard::from_bytes::<Transitions>(&bytes).expect("deserialize"), m);
    }
}
