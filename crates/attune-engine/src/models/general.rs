//! The general ranking's order, shared by the decisions of one moment.
//!
//! The general ranking (trending and all-time popularity, new items, the learned context effects,
//! the journey stage) does not depend on who asks, only on the models, the catalog, the journey
//! stage, the moment's context features and the time. A decision used to score every item of the
//! catalog for it; now the first decision of a moment scores and sorts the catalog once, and the
//! others walk that order past what they may not show (see `decide::rank`). The cache lives in
//! the [`super::ModelSnapshot`], so a new training starts it afresh; its key carries the catalog's
//! generation, so a catalog change does too.

use std::sync::Arc;

use attune_core::JourneyStage;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

/// How long one general order holds: the recency prior of new items is computed at the start of
/// the period (its scale is 180 days, so five minutes move it by less than one part in 50,000).
pub(crate) const GENERAL_PERIOD_MS: i64 = 5 * 60_000;

/// Orders kept at most; past it, those of older catalog generations and periods go first.
const MAX_ORDERS: usize = 64;

/// What a general order depends on, besides the snapshot it is cached in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GeneralKey {
    /// [`crate::catalog::ItemIndex::generation`].
    pub catalog_generation: u64,
    pub stage: JourneyStage,
    /// The moment's context features (ids of the ranker's learned effects), in request order.
    pub features: Vec<u32>,
    /// The period's start (a multiple of [`GENERAL_PERIOD_MS`]).
    pub period_ms: i64,
}

/// The general ranking of one key: every item's score and the available items, best first.
#[derive(Debug)]
pub(crate) struct GeneralOrder {
    /// The general score per item index (0 for an unavailable item).
    pub scores: Vec<f32>,
    /// Whether the item is available (in the catalog, not withdrawn).
    pub available: Vec<bool>,
    /// Whether the moment lifted the item enough to be said to fit it (`decide::rank::lifted`).
    pub lifted: Vec<bool>,
    /// The available items, best first (higher score, then lower index).
    pub order: Vec<u32>,
}

impl GeneralOrder {
    fn approx_bytes(&self) -> usize {
        self.scores.capacity() * 4 + self.available.capacity() + self.lifted.capacity() + self.order.capacity() * 4
    }
}

/// The orders computed for a snapshot (shared by all threads).
#[derive(Debug, Default)]
pub(crate) struct GeneralCache {
    orders: Mutex<FxHashMap<GeneralKey, Arc<GeneralOrder>>>,
}

impl GeneralCache {
    /// The order of `key`, computed by `compute` (outside the lock) when it is not cached.
    pub fn get_or_compute(&self, key: GeneralKey, compute: impl FnOnce() -> GeneralOrder) -> Arc<GeneralOrder> {
        if let Some(order) = self.orders.lock().get(&key) {
            return Arc::clone(order);
        }
        let order = Arc::new(compute());
        let mut orders = self.orders.lock();
        if orders.len() >= MAX_ORDERS {
            orders.retain(|k, _| k.catalog_generation == key.catalog_generation && k.period_ms == key.period_ms);
            if orders.len() >= MAX_ORDERS {
                orders.clear();
            }
        }
        Arc::clone(orders.entry(key).or_insert(order))
    }

    /// Bytes held by the cached orders.
    pub fn approx_bytes(&self) -> usize {
        self.orders.lock().values().map(|order| order.approx_bytes()).sum()
    }
}
