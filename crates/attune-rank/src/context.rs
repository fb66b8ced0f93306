//! Context effects: how much more (or less) people engage with a tag in a context — a local hour
//! band, a device, the weather — than overall, learned from the contexts of the interactions.
//!
//! For a context feature `f` (`hour_band=evening`, `device=mobile`, `weather=rain`) and a tag
//! `t`, the effect is a log-lift shrunk toward zero:
//!
//! ```text
//! effect(f, t) = ln((n_ft + m) / (n_f · p_t + m))
//! ```
//!
//! where `n_ft` counts interactions in context `f` with an item tagged `t`, `n_f` those in
//! context `f`, `p_t` the share of tag `t` among the interactions whose context names `f`'s
//! dimension, and `m` ([`ContextParams::shrinkage`]) pseudo-interactions at no effect: a
//! feature seen a few times moves nothing, one seen thousands of times speaks for itself. An
//! item's score under a feature is the mean effect of its tags, standardized over the catalog at
//! fit time (one `f32` per feature and item), so at decision time a context costs one
//! multiply-add per item and active feature.
//!
//! Whether a dimension is used at all is decided on the served ranker's time split (see
//! [`crate::Ranker::train_with_context`]): each dimension gets a weight in the personal ranking
//! and one in the general (popularity) ranking, kept only where it raises validation NDCG@10;
//! otherwise it is switched off (weight 0) and reported as such.

use serde::{Deserialize, Serialize};

use crate::Interactions;

/// The contexts of a training matrix's interactions, and the items' tags.
pub struct ContextData<'a> {
    /// Feature names, `dimension=value` (`hour_band=evening`); the dimension is the text
    /// before the first `=`.
    pub features: &'a [String],
    /// Tag ids of each item index (items beyond the slice have no tags).
    pub item_tags: &'a [Vec<u32>],
    /// Tag names, indexed by tag id.
    pub tags: &'a [String],
    /// Distinct contexts, each a list of feature ids (at most one per dimension).
    pub contexts: &'a [Vec<u32>],
    /// The context (an index into `contexts`) of the latest interaction of a (person, item)
    /// pair, if it had one.
    pub context_of: &'a (dyn Fn(u32, u32) -> Option<u32> + Sync),
}

/// How effects are estimated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ContextParams {
    /// Pseudo-interactions at no effect added to every count (the shrinkage toward zero).
    pub shrinkage: f64,
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams { shrinkage: 10.0 }
    }
}

/// Learned context effects and the weights validation gave each dimension.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextEffects {
    features: Vec<String>,
    /// Dimension of each feature (index into `report.dimensions`).
    feature_dim: Vec<u16>,
    n_items: usize,
    /// Per feature, the standardized score of every item (row-major features × items).
    item_scores: Vec<f32>,
    report: ContextReport,
}

/// What was learned and what validation kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextReport {
    /// Interactions with a known context that the effects were counted from.
    pub observations: usize,
    /// Per dimension.
    pub dimensions: Vec<DimensionReport>,
}

/// One context dimension (`hour_band`, `device`, `weather`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionReport {
    /// The dimension.
    pub name: String,
    /// Distinct values seen.
    pub values: usize,
    /// Weight in the personal ranking (0: switched off).
    pub personal_weight: f32,
    /// Weight in the general ranking (0: switched off).
    pub general_weight: f32,
    /// Validation NDCG@10 of the personal ranking without and with this dimension at the best
    /// weight tried (`None` without validation data).
    pub personal_ndcg: Option<(f64, f64)>,
    /// The same for the general ranking.
    pub general_ndcg: Option<(f64, f64)>,
    /// The strongest effects: `(value, tag, effect)`, largest magnitude first.
    pub strongest: Vec<(String, String, f32)>,
}

/// Per feature and tag: the shrunk log-lift, and how many interactions the counts came from.
pub(crate) struct Effects {
    pub effects: Vec<f64>,
    pub observations: usize,
}

impl ContextEffects {
    /// Counts the effects on `data` (see the module documentation). The weights start at 0.
    pub fn fit(data: &Interactions, context: &ContextData<'_>, params: &ContextParams) -> ContextEffects {
        let (dimension_names, feature_dim) = dimensions(context.features);
        let effects = count_effects(data, context, &feature_dim, dimension_names.len(), params);
        let n_features = context.features.len();
        let n_tags = context.tags.len();
        let n_items = data.n_items();
        let mut item_scores = vec![0f32; n_features * n_items];
        for f in 0..n_features {
            let row = &mut item_scores[f * n_items..(f + 1) * n_items];
            for (i, score) in row.iter_mut().enumerate() {
                let tags = context.item_tags.get(i).map_or(&[][..], Vec::as_slice);
                let known: Vec<f64> = tags
                    .iter()
                    .filter(|&&t| (t as usize) < n_tags)
                    .map(|&t| effects.effects[f * n_tags + t as usize])
                    .collect();
                if !known.is_empty() {
                    *score = (known.iter().sum::<f64>() / known.len() as f64) as f32;
                }
            }
            crate::standardize(row);
        }
        let dimensions = dimension_names
            .iter()
            .enumerate()
            .map(|(d, name)| {
                let members: Vec<usize> = (0..n_features).filter(|&f| feature_dim[f] as usize == d).collect();
                let mut strongest: Vec<(String, String, f32)> = members
                    .iter()
                    .flat_map(|&f| {
                        let value = value_of(&context.features[f]).to_owned();
                        (0..n_tags).map(move |t| (f, t, value.clone()))
                    })
                    .map(|(f, t, value)| (value, context.tags[t].clone(), effects.effects[f * n_tags + t] as f32))
                    .filter(|(_, _, e)| e.abs() > 0.05)
                    .collect();
                strongest.sort_by(|a, b| {
                    b.2.abs().total_cmp(&a.2.abs()).then_with(|| a.0.cmp(&b.0)).then_with(|| a.1.cmp(&b.1))
                });
                strongest.truncate(5);
                DimensionReport {
                    name: name.clone(),
                    values: members.len(),
                    personal_weight: 0.0,
                    general_weight: 0.0,
                    personal_ndcg: None,
                    general_ndcg: None,
                    strongest,
                }
            })
            .collect();
        ContextEffects {
            features: context.features.to_vec(),
            feature_dim,
            n_items,
            item_scores,
            report: ContextReport { observations: effects.observations, dimensions },
        }
    }

    /// What was learned and kept.
    pub fn report(&self) -> &ContextReport {
        &self.report
    }

    /// Items scored (items beyond get no context score).
    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// The feature id of a `dimension=value` name.
    pub fn feature(&self, name: &str) -> Option<u32> {
        self.features.iter().position(|f| f == name).map(|f| f as u32)
    }

    /// The feature's name.
    pub fn feature_name(&self, feature: u32) -> &str {
        &self.features[feature as usize]
    }

    /// Whether any dimension is switched on in the personal (`personal`) or general ranking.
    pub fn is_on(&self, personal: bool) -> bool {
        self.report.dimensions.iter().any(|d| if personal { d.personal_weight } else { d.general_weight } > 0.0)
    }

    /// The weighted context score of `item` for the active `features`: `Σ weight(dim) · z_f(item)`,
    /// with the personal or the general ranking's weights.
    pub fn score(&self, features: &[u32], item: u32, personal: bool) -> f32 {
        features.iter().map(|&f| self.contribution(f, item, personal)).sum()
    }

    /// One feature's part of [`ContextEffects::score`].
    pub fn contribution(&self, feature: u32, item: u32, personal: bool) -> f32 {
        let f = feature as usize;
        if f >= self.features.len() || item as usize >= self.n_items {
            return 0.0;
        }
        let dimension = &self.report.dimensions[self.feature_dim[f] as usize];
        let weight = if personal { dimension.personal_weight } else { dimension.general_weight };
        if weight == 0.0 { 0.0 } else { weight * self.item_scores[f * self.n_items + item as usize] }
    }

    /// The active `features`' rows of item scores with their weights (features of dimensions
    /// switched off left out): `score(item) = Σ weight · row[item]`, for loops over every item.
    pub fn weighted_rows(&self, features: &[u32], personal: bool) -> Vec<(&[f32], f32)> {
        features
            .iter()
            .filter_map(|&f| {
                let dimension = &self.report.dimensions[*self.feature_dim.get(f as usize)? as usize];
                let weight = if personal { dimension.personal_weight } else { dimension.general_weight };
                let start = f as usize * self.n_items;
                (weight != 0.0).then(|| (&self.item_scores[start..start + self.n_items], weight))
            })
            .collect()
    }

    /// Adds the weighted context scores of the active `features` to `out` (one per item).
    pub fn add_into(&self, features: &[u32], personal: bool, out: &mut [f32]) {
        for &f in features {
            let Some(dimension) = self.feature_dim.get(f as usize).map(|&d| &self.report.dimensions[d as usize]) else {
                continue;
            };
            let weight = if personal { dimension.personal_weight } else { dimension.general_weight };
            if weight == 0.0 {
                continue;
            }
            let row = &self.item_scores[f as usize * self.n_items..(f as usize + 1) * self.n_items];
            for (o, &z) in out.iter_mut().zip(row) {
                *o += weight * z;
            }
        }
    }

    /// Sets a dimension's weights and validation figures (by index in the report).
    pub(crate) fn set_weights(
        &mut self,
        d: usize,
        personal: (f32, Option<(f64, f64)>),
        general: (f32, Option<(f64, f64)>),
    ) {
        let dimension = &mut self.report.dimensions[d];
        (dimension.personal_weight, dimension.personal_ndcg) = personal;
        (dimension.general_weight, dimension.general_ndcg) = general;
    }

    /// The dimension index of a feature.
    pub(crate) fn feature_dim(&self, feature: u32) -> usize {
        self.feature_dim[feature as usize] as usize
    }

    /// A feature's standardized score of an item, unweighted (0 out of range).
    pub(crate) fn z(&self, feature: u32, item: u32) -> f32 {
        let (f, i) = (feature as usize, item as usize);
        if f >= self.features.len() || i >= self.n_items { 0.0 } else { self.item_scores[f * self.n_items + i] }
    }

    /// The same effects over another item numbering (a model trained by one server, used by
    /// another); items absent from `new_index` score 0.
    pub fn remap_items(&self, new_index: &[u32], n_items: usize) -> ContextEffects {
        let n_features = self.features.len();
        let mut item_scores = vec![0f32; n_features * n_items];
        for f in 0..n_features {
            for (old, &new) in new_index.iter().enumerate().take(self.n_items) {
                if (new as usize) < n_items {
                    item_scores[f * n_items + new as usize] = self.item_scores[f * self.n_items + old];
                }
            }
        }
        ContextEffects { item_scores, n_items, ..self.clone() }
    }

    /// Approximate bytes held.
    pub fn approx_bytes(&self) -> usize {
        self.item_scores.len() * 4
    }
}

fn value_of(feature: &str) -> &str {
    feature.split_once('=').map_or(feature, |(_, value)| value)
}

/// Dimension names in first-seen order, and each feature's dimension index.
fn dimensions(features: &[String]) -> (Vec<String>, Vec<u16>) {
    let mut names: Vec<String> = Vec::new();
    let mut of_feature = Vec::with_capacity(features.len());
    for feature in features {
        let name = feature.split_once('=').map_or(feature.as_str(), |(d, _)| d);
        let d = names.iter().position(|n| n == name).unwrap_or_else(|| {
            names.push(name.to_owned());
            names.len() - 1
        });
        of_feature.push(d as u16);
    }
    (names, of_feature)
}

/// The shrunk log-lifts of every feature and tag, counted over `data`'s pairs.
fn count_effects(
    data: &Interactions,
    context: &ContextData<'_>,
    feature_dim: &[u16],
    n_dims: usize,
    params: &ContextParams,
) -> Effects {
    let n_features = context.features.len();
    let n_tags = context.tags.len();
    let mut n_ft = vec![0f64; n_features * n_tags];
    let mut n_f = vec![0f64; n_features];
    // Per dimension: interactions whose context names it, and per tag among them.
    let mut n_d = vec![0f64; n_dims];
    let mut n_dt = vec![0f64; n_dims * n_tags];
    let mut observations = 0;
    for u in 0..data.n_users() as u32 {
        for &i in data.user_items(u) {
            let Some(c) = (context.context_of)(u, i) else { continue };
            let Some(features) = context.contexts.get(c as usize) else { continue };
            if features.is_empty() {
                continue;
            }
            observations += 1;
            let tags = context.item_tags.get(i as usize).map_or(&[][..], Vec::as_slice);
            for &f in features.iter().filter(|&&f| (f as usize) < n_features) {
                let (f, d) = (f as usize, feature_dim[f as usize] as usize);
                n_f[f] += 1.0;
                n_d[d] += 1.0;
                for &t in tags.iter().filter(|&&t| (t as usize) < n_tags) {
                    n_ft[f * n_tags + t as usize] += 1.0;
                    n_dt[d * n_tags + t as usize] += 1.0;
                }
            }
        }
    }
    let m = params.shrinkage.max(1e-9);
    let mut effects = vec![0f64; n_features * n_tags];
    for f in 0..n_features {
        let d = feature_dim[f] as usize;
        if n_d[d] == 0.0 {
            continue;
        }
        for t in 0..n_tags {
            let expected = n_f[f] * n_dt[d * n_tags + t] / n_d[d];
            effects[f * n_tags + t] = ((n_ft[f * n_tags + t] + m) / (expected + m)).ln();
        }
    }
    Effects { effects, observations }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 40 people: morning interactions go to item 0 (tag `energy`), evening ones to item 1
    /// (tag `sleep`); item 2 (`neutral`) in both.
    /// The matrix, features, item tags, tags and contexts.
    type Fixture = (Interactions, Vec<String>, Vec<Vec<u32>>, Vec<String>, Vec<Vec<u32>>);

    fn data() -> Fixture {
        let mut triples = Vec::new();
        for u in 0..40u32 {
            triples.push((u, if u % 2 == 0 { 0 } else { 1 }, 1.0));
            triples.push((u, 2, 1.0));
        }
        let x = Interactions::from_triples(40, 3, &triples);
        let features = vec!["hour_band=morning".to_owned(), "hour_band=evening".to_owned(), "device=mobile".to_owned()];
        let item_tags = vec![vec![0], vec![1], vec![2]];
        let tags = vec!["energy".to_owned(), "sleep".to_owned(), "neutral".to_owned()];
        let contexts = vec![vec![0, 2], vec![1, 2]];
        (x, features, item_tags, tags, contexts)
    }

    #[test]
    fn effects_follow_the_context_and_shrink_with_little_data() {
        let (x, features, item_tags, tags, contexts) = data();
        let context_of = |u: u32, _i: u32| Some(u % 2);
        let ctx = ContextData {
            features: &features,
            item_tags: &item_tags,
            tags: &tags,
            contexts: &contexts,
            context_of: &context_of,
        };
        let fitted = ContextEffects::fit(&x, &ctx, &ContextParams::default());
        assert_eq!(fitted.report().observations, 80);
        let morning = fitted.feature("hour_band=morning").expect("feature");
        // Before weights are set nothing is on.
        assert_eq!(fitted.score(&[morning], 0, true), 0.0);
        let effects = count_effects(&x, &ctx, &[0, 0, 1], 2, &ContextParams::default());
        let e = |f: usize, t: usize| effects.effects[f * 3 + t];
        assert!(e(0, 0) > 0.3 && e(0, 1) < -0.3, "morning: energy up, sleep down");
        assert!(e(1, 1) > 0.3 && e(1, 0) < -0.3, "evening: sleep up, energy down");
        assert!(e(0, 2).abs() < 1e-9, "a tag seen in every context has no effect");
        assert!(e(2, 0).abs() < 1e-9, "a device everyone uses says nothing");
        // With a hundred times the shrinkage the same counts say much less.
        let shrunk = count_effects(&x, &ctx, &[0, 0, 1], 2, &ContextParams { shrinkage: 1000.0 });
        assert!(shrunk.effects[0].abs() < e(0, 0).abs() / 5.0);
        // Standardized item scores: item 0 first in the morning.
        let mut fitted = fitted;
        fitted.set_weights(0, (1.0, None), (0.5, None));
        let mut out = vec![0f32; 3];
        fitted.add_into(&[morning], true, &mut out);
        assert!(out[0] > out[2] && out[2] > out[1], "{out:?}");
        assert!((fitted.score(&[morning], 0, false) - out[0] / 2.0).abs() < 1e-6);
        let rows = fitted.weighted_rows(&[morning, fitted.feature("device=mobile").unwrap()], false);
        assert_eq!(rows.len(), 1, "the device dimension is off");
        assert!((rows[0].0[0] * rows[0].1 - fitted.score(&[morning], 0, false)).abs() < 1e-6);
        // Renumbered items keep their scores.
        let moved = fitted.remap_items(&[2, 0, 1], 3);
        assert_eq!(moved.score(&[morning], 2, true), fitted.score(&[morning], 0, true));
        assert!(fitted.report().dimensions[0].strongest.iter().any(|(v, t, _)| v == "morning" && t == "energy"));
    }
}
