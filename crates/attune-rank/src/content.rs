//! Content model: TF-IDF over item tags, title words and attribute strings.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::cooc::SparseRows;
use crate::{IdMap, Query, Scorer};

/// The text of one item, as the content model sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemDoc {
    /// Title; split into lowercase alphanumeric words (`word:` terms).
    pub title: String,
    /// Tags (`tag:` terms, lowercased, whole strings).
    pub tags: Vec<String>,
    /// Other attribute strings such as `brand=acme` (`attr:` terms, lowercased, whole strings).
    pub attributes: Vec<String>,
}

/// Parameters of [`Content`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ContentParams {
    /// Term-frequency weight of a tag.
    pub tag_weight: f32,
    /// Term-frequency weight of a title word.
    pub word_weight: f32,
    /// Term-frequency weight of an attribute.
    pub attribute_weight: f32,
}

impl Default for ContentParams {
    /// Chosen on the validation split of ml-latest-small by `attune eval --data ~/.cache/attune-datasets/ml-latest-small --tune`.
    fn default() -> Self {
        ContentParams { tag_weight: 1.0, word_weight: 1.0, attribute_weight: 1.0 }
    }
}

/// TF-IDF item vectors (L2-normalized, `idf = ln(1 + n_items / df)`), stored item×term and
/// term×item.
///
/// Terms are strings `tag:<tag>`, `word:<word>` and `attr:<attribute>`, lowercased; see
/// [`Content::term`]. Use [`Content::score_for_terms`] for cold start from declared goals or tag
/// affinities, [`Content::similar_items`] for a new item with no interactions, and the [`Scorer`]
/// impl to rank by similarity to a person's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Content {
    terms: IdMap,
    item_terms: SparseRows,
    term_items: SparseRows,
}

impl Content {
    /// Approximate bytes of the vectors and the term names (for memory reports).
    pub fn approx_bytes(&self) -> usize {
        // Each term is held twice (the id list and the lookup map), with a `String` header each.
        let term_bytes: usize = self.terms.ids().iter().map(|t| 2 * (t.len() + 24) + 8).sum();
        term_bytes + self.item_terms.approx_bytes() + self.term_items.approx_bytes()
    }

    /// The term key for a tag, word or attribute (`kind` is `"tag"`, `"word"` or `"attr"`).
    pub fn term(kind: &str, text: &str) -> String {
        format!("{kind}:{}", text.trim().to_lowercase())
    }

    /// Builds the vectors; `items[k]` is the document of item index `k`.
    pub fn fit(items: &[ItemDoc], params: &ContentParams) -> Content {
        let mut terms = IdMap::new();
        let mut raw: Vec<FxHashMap<u32, f32>> = Vec::with_capacity(items.len());
        for doc in items {
            let mut tf: FxHashMap<u32, f32> = FxHashMap::default();
            for tag in &doc.tags {
                if !tag.trim().is_empty() {
                    *tf.entry(terms.get_or_insert(&Self::term("tag", tag))).or_default() += params.tag_weight;
                }
            }
            for word in doc.title.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 1) {
                *tf.entry(terms.get_or_insert(&Self::term("word", word))).or_default() += params.word_weight;
            }
            for attr in &doc.attributes {
                if !attr.trim().is_empty() {
                    *tf.entry(terms.get_or_insert(&Self::term("attr", attr))).or_default() += params.attribute_weight;
                }
            }
            raw.push(tf);
        }
        let mut df = vec![0u32; terms.len()];
        for tf in &raw {
            for &t in tf.keys() {
                df[t as usize] += 1;
            }
        }
        let n = items.len().max(1) as f32;
        let mut item_rows = Vec::with_capacity(items.len());
        let mut term_rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); terms.len()];
        for (item, tf) in raw.into_iter().enumerate() {
            let mut row: Vec<(u32, f32)> =
                tf.into_iter().map(|(t, w)| (t, w * (1.0 + n / df[t as usize] as f32).ln())).collect();
            row.sort_unstable_by_key(|&(t, _)| t);
            let norm = row.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|(_, w)| *w /= norm);
            }
            for &(t, w) in &row {
                term_rows[t as usize].push((item as u32, w));
            }
            item_rows.push(row);
        }
        Content { terms, item_terms: SparseRows::from_rows(item_rows), term_items: SparseRows::from_rows(term_rows) }
    }

    /// Number of items.
    pub fn n_items(&self) -> usize {
        self.item_terms.n_rows()
    }

    /// The TF-IDF vector of `item` as `(term_idx, weight)`; see [`Content::term_name`].
    pub fn item_vector(&self, item: u32) -> &[(u32, f32)] {
        if (item as usize) < self.n_items() { self.item_terms.row(item as usize) } else { &[] }
    }

    /// The term string of `term_idx`.
    pub fn term_name(&self, term_idx: u32) -> &str {
        self.terms.id(term_idx)
    }

    /// `out[j] = Σ_t weight_t · tfidf(j, t)` for `(term, weight)` pairs with terms as built by
    /// [`Content::term`]. Unknown terms are ignored. For cold start: goals and tag affinities
    /// become terms with weights.
    pub fn score_for_terms(&self, terms: &[(&str, f32)], out: &mut [f32]) {
        out.fill(0.0);
        for &(term, weight) in terms {
            if let Some(t) = self.terms.get(term) {
                for &(item, w) in self.term_items.row(t as usize) {
                    out[item as usize] += weight * w;
                }
            }
        }
    }

    /// The `k` items most similar to `item` by cosine of TF-IDF vectors (the item itself excluded).
    pub fn similar_items(&self, item: u32, k: usize) -> Vec<(u32, f32)> {
        let mut out = vec![0f32; self.n_items()];
        for &(t, w) in self.item_vector(item) {
            for &(j, v) in self.term_items.row(t as usize) {
                out[j as usize] += w * v;
            }
        }
        let candidates: Vec<f32> = out.iter().map(|&s| if s > 0.0 { s } else { f32::NEG_INFINITY }).collect();
        crate::topk::top_k(&candidates, &[item], k)
    }
}

impl Scorer for Content {
    fn n_items(&self) -> usize {
        self.item_terms.n_rows()
    }
    /// Similarity of each item to the weighted sum of the history's vectors.
    fn score_into(&self, query: &Query<'_>, out: &mut [f32]) {
        let mut profile: FxHashMap<u32, f32> = FxHashMap::default();
        for (&i, &w) in query.items.iter().zip(query.weights) {
            for &(t, v) in self.item_vector(i) {
                *profile.entry(t).or_default() += w * v;
            }
        }
        out.fill(0.0);
        for (t, p) in profile {
            for &(j, v) in self.term_items.row(t as usize) {
                out[j as usize] += p * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<ItemDoc> {
        let d = |title: &str, tags: &[&str]| ItemDoc {
            title: title.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            attributes: vec![],
        };
        vec![
            d("Sleep better tonight", &["sleep", "health"]),
            d("Morning mobility routine", &["movement"]),
            d("Deep sleep guide", &["sleep"]),
            d("Yoga mat", &["movement", "gear"]),
        ]
    }

    #[test]
    fn cold_start_from_goals_and_similar_items() {
        let m = Content::fit(&docs(), &ContentParams::default());
        let mut out = vec![0.0; 4];
        m.score_for_terms(&[(&Content::term("tag", "Sleep"), 1.0)], &mut out);
        assert!(out[0] > 0.0 && out[2] > 0.0 && out[1] == 0.0 && out[3] == 0.0);
        assert_eq!(m.similar_items(2, 1)[0].0, 0);
        assert_eq!(m.similar_items(1, 1)[0].0, 3);
        assert_eq!(m.recommend(&Query::anonymous(&[3], &[1.0]), 1)[0].0, 1);
        let bytes = postcard::to_stdvec(&m).expect("serialize");
        let back: Content = postcard::from_bytes(&bytes).expect("deserialize");
        let mut again = vec![0.0; 4];
        back.score_for_terms(&[("tag:sleep", 1.0)], &mut again);
        assert_eq!(out, again);
    }
}
