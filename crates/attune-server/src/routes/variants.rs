//! `GET /v1/slots/{slot}/variants`: how each presentation variant of a slot performs, overall and
//! by context — what the slot's variant bandit learned from (see `attune_engine::variants`).

use attune_engine::variants::{Counts, VariantPerformance};
use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    AppState,
    auth::{Auth, CatalogWrite},
    error::{ApiResult, ErrorBody},
    extract::IdPath,
};

/// Exposures and clicks with the estimated click rate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RateOut {
    /// Times shown.
    pub exposures: u64,
    /// Times clicked (at most once per decision: a click, add to cart, purchase or dwell
    /// carrying the decision's `decision_id`).
    pub clicks: u64,
    /// `clicks / exposures` (`null` before any exposure).
    pub rate: Option<f64>,
    /// The estimated click rate: the posterior mean under a uniform prior,
    /// `(clicks + 1) / (exposures + 2)`.
    pub estimated_rate: f64,
    /// The 95% Wilson interval of the rate, `[low, high]` (`[0, 1]` before any exposure).
    pub interval: [f64; 2],
}

/// One context value's figures.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContextRateOut {
    /// `device`, `hour_band`, `journey_stage` or `engagement`.
    pub dimension: String,
    /// The value: a device (`mobile`, `desktop`, `tablet`, `unknown`), an hour band of the
    /// person's local time (`morning` 5–9, `midday` 10–16, `evening` 17–20, `night`,
    /// `unknown`), a journey stage, an engagement level (`low`, `medium`, `high`).
    pub value: String,
    /// Its figures.
    #[serde(flatten)]
    pub figures: RateOut,
}

/// One presentation variant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VariantOut {
    /// The variant.
    pub variant: String,
    /// Whether the slot still offers it (`false`: shown before the slot's variants changed).
    pub configured: bool,
    /// Exposures the bandit chose and their clicks (what it learns from).
    #[serde(flatten)]
    pub figures: RateOut,
    /// Exposures a rule forced, and their clicks: shown, never learned from.
    pub forced: RateOut,
    /// The bandit's figures by context value.
    pub by_context: Vec<ContextRateOut>,
}

/// `GET /v1/slots/{slot}/variants` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlotVariantsOut {
    /// The slot.
    pub slot: String,
    /// How the variant is chosen: rules first, then `linucb` (a contextual bandit over device,
    /// local hour band, journey stage and engagement).
    pub policy: String,
    /// The configured variants in order, then any shown before the settings changed.
    pub variants: Vec<VariantOut>,
}

fn rate_out(counts: Counts) -> RateOut {
    let (low, high) = counts.interval();
    RateOut {
        exposures: counts.exposures,
        clicks: counts.clicks,
        rate: counts.rate(),
        estimated_rate: counts.estimated_rate(),
        interval: [low, high],
    }
}

/// The wire form of a slot's variant figures (also rendered by the console).
pub fn variants_out(slot: &str, performance: Vec<VariantPerformance>) -> SlotVariantsOut {
    SlotVariantsOut {
        slot: slot.to_owned(),
        policy: "linucb".to_owned(),
        variants: performance
            .into_iter()
            .map(|v| VariantOut {
                figures: rate_out(v.counts),
                forced: rate_out(v.forced),
                by_context: v
                    .by_context
                    .into_iter()
                    .map(|(dimension, value, counts)| ContextRateOut { dimension, value, figures: rate_out(counts) })
                    .collect(),
                configured: v.configured,
                variant: v.variant,
            })
            .collect(),
    }
}

/// How each presentation variant of a slot performs: exposures, clicks and estimated click rate,
/// overall and by context. Slots need no declaration: a slot never configured or shown answers
/// with its default variants and no exposures. This server's view: the totals every server
/// stored plus its own last second.
#[utoipa::path(get, path = "/v1/slots/{slot}/variants", tag = "editorial", params(("slot" = String, Path, description = "The slot (slots need no declaration)")),
    responses((status = 200, description = "Each variant's figures.", body = SlotVariantsOut), (status = 400, description = "The slot is not a valid id.", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_slot_variants(
    State(state): State<AppState>,
    _auth: Auth<CatalogWrite>,
    IdPath(slot): IdPath,
) -> ApiResult<Json<SlotVariantsOut>> {
    let performance = state.engine.variant_performance(&slot);
    Ok(Json(variants_out(&slot, performance)))
}
