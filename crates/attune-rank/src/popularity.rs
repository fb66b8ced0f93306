//! Non-personalized defaults: all-time popularity and time-decayed trending.

use serde::{Deserialize, Serialize};

use crate::{Interactions, Query, Scorer};

/// Item popularity: the number of distinct people who interacted with each item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Popularity {
    counts: Vec<f32>,
}

/// Parameters of [`Popularity`] (none today; kept for a uniform `fit` signature).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct PopularityParams {}

impl Popularity {
    /// Counts people per item.
    pub fn fit(data: &Interactions, _params: &PopularityParams) -> Popularity {
        Popularity { counts: data.item_counts().into_iter().map(|c| c as f32).collect() }
    }
    /// Per-item counts (as `f32`).
    pub fn counts(&self) -> &[f32] {
        &self.counts
    }

    /// The same counts over another item numbering (items absent from `new_index` count 0).
    pub fn remap_items(&self, new_index: &[u32], n_items: usize) -> Popularity {
        let mut counts = vec![0f32; n_items];
        for (old, &new) in new_index.iter().enumerate().take(self.counts.len()) {
            counts[new as usize] = self.counts[old];
        }
        Popularity { counts }
    }

    /// Approximate bytes held.
    pub fn approx_bytes(&self) -> usize {
        self.counts.len() * 4
    }
}

impl Scorer for Popularity {
    fn n_items(&self) -> usize {
        self.counts.len()
    }
    fn score_into(&self, _query: &Query<'_>, out: &mut [f32]) {
        out.copy_from_slice(&self.counts);
    }
}

/// Parameters of [`Trending`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TrendingParams {
    /// Reference time (unix seconds) at which the decay is evaluated, usually "now". It is a
    /// parameter, not a clock read, so fitting stays deterministic.
    pub now: i64,
    /// An interaction `half_life_s` seconds before `now` counts half as much as one at `now`.
    pub half_life_s: f64,
}

impl Default for TrendingParams {
    fn default() -> Self {
        TrendingParams { now: 0, half_life_s: 7.0 * 86_400.0 }
    }
}

/// Time-decayed popularity: `Σ weight · 2^(-(now - ts) / half_life)` per item. Interactions
/// after `now` count fully. Without timestamps it equals weighted popularity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trending {
    scores: Vec<f32>,
}

impl Trending {
    /// Sums decayed weights per item.
    pub fn fit(data: &Interactions, params: &TrendingParams) -> Trending {
        let mut scores = vec![0f64; data.n_items()];
        let by_user = data.by_user();
        let ts = data.timestamps();
        let rate = std::f64::consts::LN_2 / params.half_life_s.max(1.0);
        for u in 0..data.n_users() {
            let range = by_user.row_range(u);
            for (k, (&i, &w)) in by_user.row_indices(u).iter().zip(by_user.row_values(u)).enumerate() {
                let decay = match ts {
                    Some(ts) => {
                        let age = (params.now - ts[range.start + k]).max(0) as f64;
                        (-rate * age).exp()
                    }
                    None => 1.0,
                };
                scores[i as usize] += w as f64 * decay;
            }
        }
        Trending { scores: scores.into_iter().map(|s| s as f32).collect() }
    }

    /// The same scores over another item numbering (items absent from `new_index` score 0).
    pub fn remap_items(&self, new_index: &[u32], n_items: usize) -> Trending {
        let mut scores = vec![0f32; n_items];
        for (old, &new) in new_index.iter().enumerate().take(self.scores.len()) {
            scores[new as usize] = self.scores[old];
        }
        Trending { scores }
    }
}

impl Scorer for Trending {
    fn n_items(&self) -> usize {
        self.scores.len()
    }
    fn score_into(&self, _query: &Query<'_>, out: &mut [f32]) {
        out.copy_from_slice(&self.scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popularity_ranks_by_people_and_skips_seen() {
        let x = Interactions::from_triples(
            3,
            3,
            &[(0, 0, 1.0), (1, 0, 1.0), (2, 0, 1.0), (0, 1, 1.0), (1, 1, 1.0), (2, 2, 1.0)],
        );
        let m = Popularity::fit(&x, &PopularityParams::default());
        assert_eq!(m.counts(), &[3.0, 2.0, 1.0]);
        let recs = m.recommend(&x.query(2), 2);
        assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn trending_prefers_recent_items() {
        // Item 0: two old interactions; item 1: one fresh one.
        let x = Interactions::from_triples_with_ts(3, 2, &[(0, 0, 1.0), (1, 0, 1.0), (2, 1, 1.0)], &[0, 0, 1_000_000]);
        let m = Trending::fit(&x, &TrendingParams { now: 1_000_000, half_life_s: 86_400.0 });
        let mut out = vec![0.0; 2];
        m.score_into(&Query::anonymous(&[], &[]), &mut out);
        assert!(out[1] > out[0]);
        assert!((out[1] - 1.0).abs() < 1e-6);
    }
}
