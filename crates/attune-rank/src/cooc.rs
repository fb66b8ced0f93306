//! Item×item co-occurrence rows, the shared first step of item-kNN, EASE and RP3beta.

use rayon::prelude::*;

use crate::Interactions;

/// For every item `i`, accumulates `acc[j] = Σ_{u ∈ users(i)} user_weight[u] · x_ui · x_uj` into a
/// dense per-thread buffer and hands `(i, acc, touched)` to `row`, whose results are returned in
/// item order. `touched` lists the `j` with a contribution (unsorted). `acc` is zeroed afterwards.
///
/// Cost: Σ_u |items(u)|² multiply-adds, one dense `n_items` buffer per thread.
pub(crate) fn map_rows<T, F>(data: &Interactions, user_weight: Option<&[f32]>, row: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize, &[f32], &[u32]) -> T + Sync,
{
    let n_items = data.n_items();
    let by_item = data.by_item();
    let by_user = data.by_user();
    (0..n_items)
        .into_par_iter()
        .map_init(
            || (vec![0f32; n_items], vec![false; n_items], Vec::<u32>::new()),
            |(acc, seen, touched), i| {
                touched.clear();
                let users = by_item.row_indices(i);
                let weights = by_item.row_values(i);
                for (&u, &w_ui) in users.iter().zip(weights) {
                    let scale = w_ui * user_weight.map_or(1.0, |uw| uw[u as usize]);
                    let items = by_user.row_indices(u as usize);
                    let values = by_user.row_values(u as usize);
                    for (&j, &w_uj) in items.iter().zip(values) {
                        let j = j as usize;
                        if !seen[j] {
                            seen[j] = true;
                            touched.push(j as u32);
                        }
                        acc[j] += scale * w_uj;
                    }
                }
                let result = row(i, acc, touched);
                for &j in touched.iter() {
                    acc[j as usize] = 0.0;
                    seen[j as usize] = false;
                }
                result
            },
        )
        .collect()
}

/// Keeps the `k` largest `(index, value)` pairs (ties by lower index), sorted by index so rows
/// can be binary-searched. Drops non-positive values when `positive_only`.
pub(crate) fn keep_top(mut row: Vec<(u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    if row.len() > k {
        if k == 0 {
            return Vec::new();
        }
        row.select_nth_unstable_by(k - 1, crate::topk::by_score_desc);
        row.truncate(k);
        // The candidate list can be the whole catalog; do not keep its capacity per row.
        row.shrink_to_fit();
    }
    row.sort_unstable_by_key(|&(j, _)| j);
    row
}

/// A sparse item×item matrix stored as rows of `(item, weight)`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct SparseRows {
    pub(crate) indptr: Vec<usize>,
    pub(crate) entries: Vec<(u32, f32)>,
}

impl SparseRows {
    pub(crate) fn from_rows(rows: Vec<Vec<(u32, f32)>>) -> SparseRows {
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        indptr.push(0);
        let mut entries = Vec::with_capacity(rows.iter().map(Vec::len).sum());
        for r in rows {
            entries.extend_from_slice(&r);
            indptr.push(entries.len());
        }
        SparseRows { indptr, entries }
    }

    pub(crate) fn row(&self, i: usize) -> &[(u32, f32)] {
        &self.entries[self.indptr[i]..self.indptr[i + 1]]
    }

    pub(crate) fn approx_bytes(&self) -> usize {
        self.indptr.len() * std::mem::size_of::<usize>() + self.entries.len() * std::mem::size_of::<(u32, f32)>()
    }

    pub(crate) fn n_rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// The weight at `(from, to)`, 0 when absent. Rows must be sorted by item (as
    /// [`keep_top`] leaves them); use [`SparseRows::find`] for rows in another order.
    pub(crate) fn get(&self, from: u32, to: u32) -> f32 {
        if (from as usize) >= self.n_rows() {
            return 0.0;
        }
        let row = self.row(from as usize);
        row.binary_search_by_key(&to, |&(j, _)| j).map_or(0.0, |k| row[k].1)
    }

    /// The weight at `(from, to)` by a linear scan (rows in any order), 0 when absent.
    pub(crate) fn find(&self, from: u32, to: u32) -> f32 {
        if (from as usize) >= self.n_rows() {
            return 0.0;
        }
        self.row(from as usize).iter().find(|&&(j, _)| j == to).map_or(0.0, |&(_, s)| s)
    }

    /// The same matrix over another item numbering: row and column `i` become `new_index[i]` in
    /// a matrix of `n_items` rows. Row order is kept; a row sorted by item is sorted again.
    pub(crate) fn remap(&self, new_index: &[u32], n_items: usize) -> SparseRows {
        let mut rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n_items];
        for (old, &new) in new_index.iter().enumerate().take(self.n_rows()) {
            let row = self.row(old);
            let sorted = row.is_sorted_by_key(|&(j, _)| j);
            let mut mapped: Vec<(u32, f32)> = row.iter().map(|&(j, s)| (new_index[j as usize], s)).collect();
            if sorted {
                mapped.sort_unstable_by_key(|&(j, _)| j);
            }
            rows[new as usize] = mapped;
        }
        SparseRows::from_rows(rows)
    }

    /// `out[j] += Σ_h weight_h · row(item_h)[j]` over a history.
    pub(crate) fn accumulate(&self, items: &[u32], weights: &[f32], out: &mut [f32]) {
        for (&i, &w) in items.iter().zip(weights) {
            if (i as usize) >= self.n_rows() {
                continue;
            }
            for &(j, s) in self.row(i as usize) {
                out[j as usize] += w * s;
            }
        }
    }

    /// Like [`SparseRows::accumulate`], also recording in `best` the history item with the largest
    /// single contribution to each candidate (`u32::MAX` when none contributed).
    pub(crate) fn accumulate_with_evidence(
        &self,
        items: &[u32],
        weights: &[f32],
        out: &mut [f32],
        best: &mut [(u32, f32)],
    ) {
        best.fill((u32::MAX, 0.0));
        for (&i, &w) in items.iter().zip(weights) {
            if (i as usize) >= self.n_rows() {
                continue;
            }
            for &(j, s) in self.row(i as usize) {
                let c = w * s;
                out[j as usize] += c;
                let b = &mut best[j as usize];
                if b.0 == u32::MAX || c > b.1 {
                    *b = (i, c);
                }
            }
        }
    }
}
