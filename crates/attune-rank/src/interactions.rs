//! The training matrix: a CSR person×item matrix and its transpose, plus string-id maps.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// A bijection between external string ids and dense `u32` indices (`0..len`).
///
/// Indices are handed out in insertion order, so building a map from the same ids in the same order
/// always yields the same indices. Serializes as the list of ids; the lookup table is rebuilt on
/// deserialization.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct IdMap {
    ids: Vec<String>,
    index: FxHashMap<String, u32>,
}

impl From<Vec<String>> for IdMap {
    /// Builds the map from ids in index order. A repeated id keeps its first index for lookups.
    fn from(ids: Vec<String>) -> IdMap {
        let mut index = FxHashMap::default();
        for (k, id) in ids.iter().enumerate() {
            index.entry(id.clone()).or_insert(k as u32);
        }
        IdMap { ids, index }
    }
}

impl From<IdMap> for Vec<String> {
    fn from(map: IdMap) -> Vec<String> {
        map.ids
    }
}

impl IdMap {
    /// An empty map.
    pub fn new() -> IdMap {
        IdMap::default()
    }

    /// The index of `id`, inserting it with the next free index if it is new.
    pub fn get_or_insert(&mut self, id: &str) -> u32 {
        if let Some(&idx) = self.index.get(id) {
            return idx;
        }
        let idx = u32::try_from(self.ids.len()).expect("more than u32::MAX ids");
        self.ids.push(id.to_owned());
        self.index.insert(id.to_owned(), idx);
        idx
    }

    /// The index of `id`, if known.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The external id of `idx`.
    ///
    /// # Panics
    /// If `idx >= self.len()`.
    pub fn id(&self, idx: u32) -> &str {
        &self.ids[idx as usize]
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no id was inserted.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// All ids in index order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }
}

/// A compressed sparse row matrix with `u32` column indices and `f32` values.
///
/// **Invariant:** within a row, column indices are strictly increasing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Csr {
    n_rows: usize,
    n_cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }
    /// Number of columns.
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }
    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }
    /// Column indices of row `row` (sorted ascending).
    pub fn row_indices(&self, row: usize) -> &[u32] {
        &self.indices[self.indptr[row]..self.indptr[row + 1]]
    }
    /// Values of row `row`, aligned with [`Csr::row_indices`].
    pub fn row_values(&self, row: usize) -> &[f32] {
        &self.values[self.indptr[row]..self.indptr[row + 1]]
    }
    /// Range of row `row` in the flat entry arrays (useful to index per-entry side data).
    pub fn row_range(&self, row: usize) -> std::ops::Range<usize> {
        self.indptr[row]..self.indptr[row + 1]
    }
    /// All stored values, row after row.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
    /// Number of entries in row `row`.
    pub fn row_len(&self, row: usize) -> usize {
        self.indptr[row + 1] - self.indptr[row]
    }

    /// Builds a CSR matrix from `(row, col, value)` entries; duplicates keep the largest value.
    /// `extra` is per-entry side data (for example timestamps) merged with `max` on duplicates;
    /// the returned vector is aligned with the CSR entries.
    fn from_entries(
        n_rows: usize,
        n_cols: usize,
        entries: &[(u32, u32, f32)],
        extra: Option<&[i64]>,
    ) -> (Csr, Option<Vec<i64>>) {
        let mut counts = vec![0usize; n_rows + 1];
        for &(r, _, _) in entries {
            counts[r as usize + 1] += 1;
        }
        for k in 0..n_rows {
            counts[k + 1] += counts[k];
        }
        let mut next = counts.clone();
        let mut order = vec![0u32; entries.len()];
        for (e, &(r, _, _)) in entries.iter().enumerate() {
            order[next[r as usize]] = e as u32;
            next[r as usize] += 1;
        }
        drop(next);
        let mut indptr = Vec::with_capacity(n_rows + 1);
        indptr.push(0);
        let mut indices = Vec::with_capacity(entries.len());
        let mut values: Vec<f32> = Vec::with_capacity(entries.len());
        let mut ts = extra.map(|_| Vec::with_capacity(entries.len()));
        for r in 0..n_rows {
            let slot = &mut order[counts[r]..counts[r + 1]];
            slot.sort_unstable_by_key(|&e| entries[e as usize].1);
            let start = indices.len();
            for &e in slot.iter() {
                let (_, c, v) = entries[e as usize];
                let t = extra.map(|x| x[e as usize]);
                if indices.len() > start && *indices.last().expect("non-empty row") == c {
                    let last = values.len() - 1;
                    values[last] = values[last].max(v);
                    if let (Some(ts), Some(t)) = (ts.as_mut(), t) {
                        let last: &mut i64 = ts.last_mut().expect("aligned with values");
                        *last = (*last).max(t);
                    }
                    continue;
                }
                indices.push(c);
                values.push(v);
                if let (Some(ts), Some(t)) = (ts.as_mut(), t) {
                    ts.push(t);
                }
            }
            indptr.push(indices.len());
        }
        (Csr { n_rows, n_cols, indptr, indices, values }, ts)
    }

    /// The transpose (a CSC view of the same matrix stored as CSR).
    pub fn transpose(&self) -> Csr {
        let mut counts = vec![0usize; self.n_cols + 1];
        for &c in &self.indices {
            counts[c as usize + 1] += 1;
        }
        for k in 0..self.n_cols {
            counts[k + 1] += counts[k];
        }
        let mut next = counts.clone();
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0f32; self.nnz()];
        // Rows are visited in order, so each transposed row comes out sorted.
        for r in 0..self.n_rows {
            for p in self.row_range(r) {
                let c = self.indices[p] as usize;
                indices[next[c]] = r as u32;
                values[next[c]] = self.values[p];
                next[c] += 1;
            }
        }
        Csr { n_rows: self.n_cols, n_cols: self.n_rows, indptr: counts, indices, values }
    }
}

/// The person×item interaction matrix used for training: CSR by person (`by_user`) and by item
/// (`by_item`), weights as `f32`, optional per-entry timestamps (seconds).
///
/// Repeated (person, item) pairs are merged: the largest weight and the latest timestamp win.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Interactions {
    by_user: Csr,
    by_item: Csr,
    ts: Option<Vec<i64>>,
}

impl Interactions {
    /// Builds the matrix from `(user_idx, item_idx, weight)` triples.
    ///
    /// # Panics
    /// If an index is out of `0..n_users` / `0..n_items`.
    pub fn from_triples(n_users: usize, n_items: usize, triples: &[(u32, u32, f32)]) -> Interactions {
        Self::build(n_users, n_items, triples, None)
    }

    /// Like [`Interactions::from_triples`] with a timestamp per triple (for [`crate::Trending`] and
    /// recency weighting of a person's history).
    ///
    /// # Panics
    /// If `ts.len() != triples.len()` or an index is out of range.
    pub fn from_triples_with_ts(
        n_users: usize,
        n_items: usize,
        triples: &[(u32, u32, f32)],
        ts: &[i64],
    ) -> Interactions {
        assert_eq!(ts.len(), triples.len(), "one timestamp per triple");
        Self::build(n_users, n_items, triples, Some(ts))
    }

    /// Builds the matrix from string ids, inserting unknown ids into the maps.
    pub fn from_string_ids<'a>(
        users: &mut IdMap,
        items: &mut IdMap,
        rows: impl IntoIterator<Item = (&'a str, &'a str, f32, Option<i64>)>,
    ) -> Interactions {
        let mut triples = Vec::new();
        let mut ts = Vec::new();
        let mut all_ts = true;
        for (u, i, w, t) in rows {
            triples.push((users.get_or_insert(u), items.get_or_insert(i), w));
            match t {
                Some(t) => ts.push(t),
                None => all_ts = false,
            }
        }
        if all_ts && !triples.is_empty() {
            Self::from_triples_with_ts(users.len(), items.len(), &triples, &ts)
        } else {
            Self::from_triples(users.len(), items.len(), &triples)
        }
    }

    fn build(n_users: usize, n_items: usize, triples: &[(u32, u32, f32)], ts: Option<&[i64]>) -> Interactions {
        for &(u, i, _) in triples {
            assert!((u as usize) < n_users && (i as usize) < n_items, "index out of range: ({u}, {i})");
        }
        let (by_user, ts) = Csr::from_entries(n_users, n_items, triples, ts);
        let by_item = by_user.transpose();
        Interactions { by_user, by_item, ts }
    }

    /// Number of people (rows).
    pub fn n_users(&self) -> usize {
        self.by_user.n_rows()
    }
    /// Number of items (columns).
    pub fn n_items(&self) -> usize {
        self.by_user.n_cols()
    }
    /// Number of distinct (person, item) pairs.
    pub fn nnz(&self) -> usize {
        self.by_user.nnz()
    }
    /// The person×item matrix.
    pub fn by_user(&self) -> &Csr {
        &self.by_user
    }
    /// The item×person matrix (transpose of [`Interactions::by_user`]).
    pub fn by_item(&self) -> &Csr {
        &self.by_item
    }
    /// Timestamps aligned with the entries of [`Interactions::by_user`], if given at build time.
    pub fn timestamps(&self) -> Option<&[i64]> {
        self.ts.as_deref()
    }
    /// Items of `user` (sorted by index).
    pub fn user_items(&self, user: u32) -> &[u32] {
        self.by_user.row_indices(user as usize)
    }
    /// Weights of `user`'s items, aligned with [`Interactions::user_items`].
    pub fn user_weights(&self, user: u32) -> &[f32] {
        self.by_user.row_values(user as usize)
    }
    /// Timestamps of `user`'s items, aligned with [`Interactions::user_items`].
    pub fn user_timestamps(&self, user: u32) -> Option<&[i64]> {
        let range = self.by_user.row_range(user as usize);
        self.ts.as_ref().map(|ts| &ts[range])
    }
    /// A scoring query for a known person: their index and full history.
    pub fn query(&self, user: u32) -> crate::Query<'_> {
        crate::Query {
            user_idx: Some(user),
            items: self.user_items(user),
            weights: self.user_weights(user),
            timestamps: self.user_timestamps(user),
        }
    }
    /// Number of distinct people per item.
    pub fn item_counts(&self) -> Vec<u32> {
        (0..self.n_items()).map(|i| self.by_item.row_len(i) as u32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_csr_and_transpose_with_duplicates_merged() {
        let x = Interactions::from_triples_with_ts(
            2,
            3,
            &[(1, 2, 1.0), (0, 1, 2.0), (1, 0, 1.0), (0, 1, 5.0), (1, 2, 0.5)],
            &[10, 20, 30, 15, 40],
        );
        assert_eq!(x.nnz(), 3);
        assert_eq!(x.user_items(0), &[1]);
        assert_eq!(x.user_weights(0), &[5.0]);
        assert_eq!(x.user_timestamps(0), Some(&[20][..]));
        assert_eq!(x.user_items(1), &[0, 2]);
        assert_eq!(x.user_timestamps(1), Some(&[30, 40][..]));
        assert_eq!(x.by_item().row_indices(2), &[1]);
        assert_eq!(x.item_counts(), vec![1, 1, 1]);
        assert_eq!(x.by_item().transpose(), *x.by_user());
    }

    #[test]
    fn id_map_round_trips_and_survives_serialization() {
        let mut m = IdMap::new();
        assert_eq!(m.get_or_insert("a"), 0);
        assert_eq!(m.get_or_insert("b"), 1);
        assert_eq!(m.get_or_insert("a"), 0);
        let bytes = postcard::to_stdvec(&m).expect("serialize");
        let mut back: IdMap = postcard::from_bytes(&bytes).expect("deserialize");
        assert_eq!(back.get("b"), Some(1));
        assert_eq!(back.id(0), "a");
        assert_eq!(back.get_or_insert("c"), 2);
    }
}
