//! Publishing models on a shared store: the trainer writes its snapshot to [`Table::Models`]
//! (chunks, then the `current` header that names them); the other processes load it, renumbering
//! items by id into their own catalog indices (catalog indices are per process). The content
//! model is not shipped: it is refitted from the local catalog.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use attune_store::Table;

use super::{ModelSnapshot, ModelStats, Models, item_docs};
use crate::catalog::Catalog;
use crate::error::{Result, corrupt};
use crate::records::{from_json, to_json};

fn digest(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Key of the published models' header in [`Table::Models`].
const MODELS_CURRENT: &str = "current";
/// Published models are written in chunks of this many bytes (one record each).
const MODEL_CHUNK: usize = 4 << 20;

/// What [`Table::Models`] holds under `current` (JSON): which version is published and where its
/// bytes are (`blob\0<version>\0<chunk:06>`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PublishedHeader {
    version: u64,
    trained_at_ms: i64,
    n_chunks: usize,
    n_bytes: usize,
    /// xxh3 of the concatenated chunks.
    digest: u64,
}

/// The published form of a [`ModelSnapshot`] (postcard). Item indices are the trainer's; the
/// trainer's catalog id of index `i` is `item_ids[i]`.
#[derive(serde::Serialize, serde::Deserialize)]
struct PublishedModels {
    version: u64,
    trained_at_ms: i64,
    n_users: usize,
    n_interactions: usize,
    n_events: usize,
    stats: Vec<(String, f64)>,
    item_ids: Vec<String>,
    ranker: Option<attune_rank::Ranker>,
    popularity: Vec<f32>,
    trending: Vec<f32>,
    hour_prior: Vec<f32>,
    general_scale: f32,
}

fn blob_key(version: u64, chunk: usize) -> String {
    format!("blob\0{version:020}\0{chunk:06}")
}

fn stat_name(name: &str) -> &'static str {
    match name {
        "popularity" => "popularity",
        "trending" => "trending",
        "served" => "served",
        "content" => "content",
        _ => "other",
    }
}

fn remap_scores(scores: &[f32], new_index: &[u32], n_items: usize) -> Vec<f32> {
    let mut out = vec![0f32; n_items];
    for (old, &score) in scores.iter().enumerate() {
        out[new_index[old] as usize] = score;
    }
    out
}

impl Models {
    /// Writes the models in use to [`Table::Models`] for the other processes on the store: the
    /// chunks of the new version first, then the `current` header that names them, then the
    /// previous version's chunks are deleted. Returns the published version. The caller must hold
    /// the cluster's training lock (only one process publishes).
    pub fn publish(&self, catalog: &Catalog) -> Result<u64> {
        let snapshot = self.current();
        let item_ids: Vec<String> = {
            let catalog = catalog.read();
            (0..snapshot.n_items as u32).map(|i| catalog.id(attune_core::ItemIdx(i)).to_owned()).collect()
        };
        let published = PublishedModels {
            version: snapshot.version,
            trained_at_ms: snapshot.trained_at_ms,
            n_users: snapshot.n_users,
            n_interactions: snapshot.n_interactions,
            n_events: snapshot.n_events,
            stats: snapshot.stats.iter().map(|s| (s.name.to_owned(), s.fit_seconds)).collect(),
            item_ids,
            ranker: snapshot.ranker.clone(),
            popularity: snapshot.popularity.clone(),
            trending: snapshot.trending.clone(),
            hour_prior: snapshot.hour_prior.clone(),
            general_scale: snapshot.general_scale,
        };
        let bytes = postcard::to_stdvec(&published).expect("models always encode");
        let previous = self.published_header()?;
        let chunks: Vec<(String, Vec<u8>)> = bytes
            .chunks(MODEL_CHUNK)
            .enumerate()
            .map(|(i, chunk)| (blob_key(snapshot.version, i), chunk.to_vec()))
            .collect();
        for chunk in &chunks {
            self.store.put(Table::Models, &chunk.0, &chunk.1)?;
        }
        let header = PublishedHeader {
            version: snapshot.version,
            trained_at_ms: snapshot.trained_at_ms,
            n_chunks: chunks.len(),
            n_bytes: bytes.len(),
            digest: digest(&bytes),
        };
        self.store.put(Table::Models, MODELS_CURRENT, &to_json(&header))?;
        if let Some(previous) = previous.filter(|p| p.version != header.version) {
            for i in 0..previous.n_chunks {
                self.store.delete(Table::Models, &blob_key(previous.version, i))?;
            }
        }
        tracing::info!(version = header.version, bytes = header.n_bytes, "models published");
        Ok(header.version)
    }

    /// The version published in the store, if any.
    pub fn published_version(&self) -> Result<Option<u64>> {
        Ok(self.published_header()?.map(|h| h.version))
    }

    fn published_header(&self) -> Result<Option<PublishedHeader>> {
        match self.store.get(Table::Models, MODELS_CURRENT)? {
            Some(bytes) => Ok(Some(from_json("published models header", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Loads the published models if their version differs from the one in use, renumbering items
    /// to this process's catalog, and swaps them in. Returns the version loaded (`None`: nothing
    /// new). People erased here stay hidden unless the loaded models no longer know them.
    pub fn load_published(&self, catalog: &Catalog) -> Result<Option<u64>> {
        let loaded = self.load_published_once(catalog);
        if loaded.is_ok() {
            self.settled.store(true, Ordering::SeqCst);
        }
        loaded
    }

    fn load_published_once(&self, catalog: &Catalog) -> Result<Option<u64>> {
        let Some(header) = self.published_header()? else { return Ok(None) };
        if header.version == self.current().version {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(header.n_bytes);
        for i in 0..header.n_chunks {
            // A chunk may vanish when a newer version replaces this one meanwhile: the next poll
            // loads that one.
            let chunk = self
                .store
                .get(Table::Models, &blob_key(header.version, i))?
                .ok_or_else(|| corrupt("published models", "a chunk is missing (replaced meanwhile?)"))?;
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() != header.n_bytes || digest(&bytes) != header.digest {
            return Err(corrupt("published models", "length or digest mismatch"));
        }
        let published: PublishedModels =
            postcard::from_bytes(&bytes).map_err(|err| corrupt("published models", err))?;
        let started = Instant::now();
        let new_index: Vec<u32> = published.item_ids.iter().map(|id| catalog.intern_item(id).0).collect();
        let (n_items, docs) = {
            let catalog = catalog.read();
            (catalog.len(), item_docs(&catalog))
        };
        let identity = n_items == new_index.len() && new_index.iter().enumerate().all(|(i, &j)| i as u32 == j);
        let (ranker, popularity, trending) = if identity {
            (published.ranker, published.popularity, published.trending)
        } else {
            (
                published.ranker.map(|m| m.remap_items(&new_index, n_items)),
                remap_scores(&published.popularity, &new_index, n_items),
                remap_scores(&published.trending, &new_index, n_items),
            )
        };
        let content =
            (!docs.is_empty()).then(|| attune_rank::Content::fit(&docs, &attune_rank::ContentParams::default()));
        let snapshot = ModelSnapshot {
            version: published.version,
            trained_at_ms: published.trained_at_ms,
            n_users: published.n_users,
            n_items,
            n_interactions: published.n_interactions,
            n_events: published.n_events,
            stats: published
                .stats
                .iter()
                .map(|(name, fit_seconds)| ModelStats {
                    name: stat_name(name),
                    fit_seconds: *fit_seconds,
                    metrics: (name == "served").then(|| ranker.as_ref().and_then(|r| r.report().validation)).flatten(),
                })
                .collect(),
            ranker,
            popularity,
            trending,
            content,
            hour_prior: published.hour_prior,
            general_scale: published.general_scale,
            general: super::GeneralCache::default(),
        };
        *self.snapshot.write() = Arc::new(snapshot);
        tracing::info!(
            version = header.version,
            remapped = !identity,
            seconds = started.elapsed().as_secs_f64(),
            "published models loaded"
        );
        Ok(Some(header.version))
    }
}
