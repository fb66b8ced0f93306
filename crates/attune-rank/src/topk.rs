//! Top-k selection over a dense score buffer.

use std::cmp::Ordering;

/// Orders `(item, score)` pairs best first: higher score, then lower item index. A total order
/// (NaN sorts as the lowest score), so selection and a full sort agree exactly.
pub fn by_score_desc(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    let score = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    score(b.1).total_cmp(&score(a.1)).then(a.0.cmp(&b.0))
}

/// Writes the `k` best items of `scores` into `out` (best first), skipping every index in
/// `exclude` and every item whose score is `-inf` (the "not a candidate" marker).
///
/// `out` is cleared first and used as scratch, so a caller that ranks many people reuses one
/// allocation. Uses `select_nth_unstable_by`: O(n) plus O(k log k) for the final sort.
pub fn top_k_into(scores: &[f32], exclude: &[u32], k: usize, out: &mut Vec<(u32, f32)>) {
    out.clear();
    if k == 0 {
        return;
    }
    out.extend(scores.iter().enumerate().filter(|(_, s)| **s != f32::NEG_INFINITY).map(|(item, &s)| (item as u32, s)));
    if !exclude.is_empty() {
        // `exclude` is usually a sorted history; a sort of a copy is cheap next to scoring.
        let mut sorted_exclude;
        let exclude = if exclude.is_sorted() {
            exclude
        } else {
            sorted_exclude = exclude.to_vec();
            sorted_exclude.sort_unstable();
            &sorted_exclude[..]
        };
        out.retain(|(item, _)| exclude.binary_search(item).is_err());
    }
    if out.len() > k {
        out.select_nth_unstable_by(k - 1, by_score_desc);
        out.truncate(k);
    }
    out.sort_unstable_by(by_score_desc);
}

/// Streaming selection of the `k` best `(item, score)` pairs in [`by_score_desc`]'s order, for a
/// caller that computes scores in a loop. Offers go into a buffer of `2k`; a full buffer is cut
/// back to its `k` best, whose worst becomes a threshold that later offers must beat, so most
/// offers cost one comparison and nothing is written, whatever order the scores come in
/// (O(n) in all). Selecting 300 of 10,000 this way replaced writing all 10,000 pairs and
/// partitioning them on the decide path (`attune bench decide`).
///
/// Selects exactly what [`top_k_into`] (and a full sort) selects, ties included.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    kept: Vec<(u32, f32)>,
    /// The k-th best so far, once the buffer has been cut back: an offer must be better.
    threshold: Option<(u32, f32)>,
    /// The threshold's score (`-inf` before the first cut): an offer scored below it is out
    /// after one comparison.
    floor: f32,
}

impl Default for TopK {
    fn default() -> Self {
        TopK { k: 0, kept: Vec::new(), threshold: None, floor: f32::NEG_INFINITY }
    }
}

impl TopK {
    /// An empty selection of the `k` best.
    pub fn new(k: usize) -> TopK {
        let mut top = TopK::default();
        top.reset(k);
        top
    }

    /// Empties the selection and sets its size, keeping the allocation.
    pub fn reset(&mut self, k: usize) {
        self.k = k;
        self.kept.clear();
        self.kept.reserve(2 * k);
        self.threshold = None;
        self.floor = f32::NEG_INFINITY;
    }

    /// Offers an item; it is kept while it is among the `k` best offered so far.
    #[inline(always)]
    pub fn offer(&mut self, item: u32, score: f32) {
        // Most offers of a long run score below the threshold: out without the full comparison
        // (a NaN takes the full one, which orders it lowest).
        if score < self.floor {
            return;
        }
        self.offer_near(item, score);
    }

    /// Offers every item `i` of a dense score buffer for which `candidate(i, scores[i])` holds,
    /// as [`TopK::offer`] one by one would (the same selection, ties and NaN included), but
    /// passes over a block of scores that are all below the floor after one branch-free test
    /// of the block: once the selection is full, most blocks of a long buffer are.
    pub fn offer_dense(&mut self, scores: &[f32], mut candidate: impl FnMut(usize, f32) -> bool) {
        const BLOCK: usize = 32;
        for (b, block) in scores.chunks(BLOCK).enumerate() {
            // Before the first cut the floor is -inf and every offer counts (a NaN too); a NaN
            // floor (the k-th best so far is a NaN) lets everything through to the full test.
            if self.floor > f32::NEG_INFINITY {
                let floor = self.floor;
                if !block.iter().fold(false, |any, &s| any | (s >= floor)) {
                    continue;
                }
            }
            for (k, &score) in block.iter().enumerate() {
                let i = b * BLOCK + k;
                if candidate(i, score) {
                    self.offer(i as u32, score);
                }
            }
        }
    }

    /// An offer at or above the floor.
    #[inline(never)]
    fn offer_near(&mut self, item: u32, score: f32) {
        if self.k == 0 {
            return;
        }
        if let Some(threshold) = self.threshold
            && by_score_desc(&(item, score), &threshold) != Ordering::Less
        {
            return;
        }
        self.kept.push((item, score));
        if self.kept.len() >= 2 * self.k {
            self.cut();
        }
    }

    /// Cuts the buffer back to its `k` best and raises the threshold to the k-th.
    fn cut(&mut self) {
        let k = self.k;
        self.kept.select_nth_unstable_by(k - 1, by_score_desc);
        self.kept.truncate(k);
        self.threshold = Some(self.kept[k - 1]);
        self.floor = self.kept[k - 1].1;
    }

    /// The number offered and still in the running (at most `2k`).
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The `k` best items, best first; the selection is emptied.
    pub fn take_sorted(&mut self) -> Vec<u32> {
        if self.kept.len() > self.k {
            self.cut();
        }
        self.kept.sort_unstable_by(by_score_desc);
        let items = self.kept.iter().map(|&(item, _)| item).collect();
        self.kept.clear();
        self.threshold = None;
        self.floor = f32::NEG_INFINITY;
        items
    }
}

/// Convenience wrapper around [`top_k_into`] returning a new vector.
pub fn top_k(scores: &[f32], exclude: &[u32], k: usize) -> Vec<(u32, f32)> {
    let mut out = Vec::with_capacity(scores.len());
    top_k_into(scores, exclude, k, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn picks_best_and_skips_excluded() {
        let scores = [0.1, 0.9, 0.5, 0.9, f32::NEG_INFINITY, 0.7];
        assert_eq!(top_k(&scores, &[3], 3), vec![(1, 0.9), (5, 0.7), (2, 0.5)]);
        assert_eq!(top_k(&scores, &[], 2), vec![(1, 0.9), (3, 0.9)]);
        assert_eq!(top_k(&scores, &[0, 1, 2, 3, 5], 2), vec![]);
    }

    proptest! {
        #[test]
        fn equals_sort_and_truncate(
            scores in proptest::collection::vec(prop_oneof![(-5i8..5).prop_map(|x| x as f32), Just(f32::NEG_INFINITY)], 0..60),
            exclude in proptest::collection::vec(0u32..60, 0..10),
            k in 0usize..15,
        ) {
            let got = top_k(&scores, &exclude, k);
            let mut want: Vec<(u32, f32)> = scores.iter().enumerate()
                .filter(|(i, s)| **s != f32::NEG_INFINITY && !exclude.contains(&(*i as u32)))
                .map(|(i, &s)| (i as u32, s)).collect();
            want.sort_by(by_score_desc);
            want.truncate(k);
            prop_assert_eq!(got, want);
        }

        /// The streaming selection keeps exactly what sort-and-truncate keeps, in the same order,
        /// with ties and NaN, over repeated use of one selector.
        #[test]
        fn streaming_equals_sort_and_truncate(
            runs in proptest::collection::vec(
                (proptest::collection::vec(prop_oneof![(-5i8..5).prop_map(|x| x as f32), Just(f32::NAN), Just(f32::INFINITY)], 0..80), 0usize..20),
                1..4,
            ),
        ) {
            let mut selector = TopK::new(0);
            for (scores, k) in runs {
                selector.reset(k);
                for (i, &score) in scores.iter().enumerate() {
                    selector.offer(i as u32, score);
                }
                let mut want: Vec<(u32, f32)> = scores.iter().enumerate().map(|(i, &s)| (i as u32, s)).collect();
                want.sort_by(by_score_desc);
                want.truncate(k);
                let want: Vec<u32> = want.into_iter().map(|(i, _)| i).collect();
                prop_assert_eq!(selector.take_sorted(), want);
                prop_assert!(selector.is_empty());
            }
        }

        /// The block-skipping dense offer selects what offering each candidate would, with a
        /// filter, ties and NaN, over buffers longer than one block.
        #[test]
        fn dense_offers_equal_single_offers(
            scores in proptest::collection::vec(prop_oneof![(-20i8..20).prop_map(|x| x as f32), Just(f32::NAN), Just(f32::NEG_INFINITY)], 0..300),
            k in 0usize..40,
            modulus in 1usize..5,
        ) {
            let candidate = |i: usize, s: f32| !i.is_multiple_of(modulus) && s != f32::NEG_INFINITY;
            let mut single = TopK::new(k);
            for (i, &score) in scores.iter().enumerate() {
                if candidate(i, score) {
                    single.offer(i as u32, score);
                }
            }
            let mut dense = TopK::new(k);
            dense.offer_dense(&scores, candidate);
            prop_assert_eq!(dense.take_sorted(), single.take_sorted());
        }
    }
}
