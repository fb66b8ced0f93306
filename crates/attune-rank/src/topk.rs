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
    }
}
