//! The catalog (`/v1/items`) and the schema registry (`/v1/schemas`).

use attune_core::{Item, PropType, Purpose, Schema, item::VARIANT_NAMES};
use axum::{Json, extract::State};
use serde_json::{Map, Value};

use super::{check_object_size, check_tags, rfc3339};
use crate::{
    AppState,
    auth::{Admin, Auth, CatalogRead, CatalogWrite},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::{ApiJson, IdPath, check_path_id},
    wire::{ItemIn, ItemOut, ItemsIn, SchemaIn, SchemaOut, SchemasOut, UpsertedOut},
};

/// The most items in one `PUT /v1/items`.
pub const MAX_ITEMS_PER_PUT: usize = 10_000;
/// The body limit of `PUT /v1/items`: 16 MiB.
pub const ITEMS_BODY_LIMIT: usize = 16 << 20;

/// Checks an item from the wire and converts it (`index` places errors: `items[3].id`).
pub fn to_item(item: ItemIn, index: usize) -> Result<Item, ApiError> {
    let at = |field: &str| format!("items[{index}].{field}");
    check_path_id(&item.id, &at("id"))?;
    let kind = item.kind.unwrap_or_else(|| "item".to_owned());
    if kind.is_empty() || kind.chars().count() > 64 || kind.chars().any(char::is_control) {
        return Err(ApiError::new(Code::InvalidValue, "`kind` is 1–64 printable characters.").with_field(at("kind")));
    }
    let title = item.title.unwrap_or_else(|| item.id.clone());
    if title.chars().count() > 512 || title.chars().any(char::is_control) {
        return Err(
            ApiError::new(Code::InvalidValue, "`title` is at most 512 printable characters.").with_field(at("title"))
        );
    }
    let tags = item.tags.unwrap_or_default();
    check_tags(&tags, &at("tags"), 50)?;
    let attributes = item.attributes.unwrap_or_default();
    check_object_size(&attributes, &at("attributes"), 16 * 1024)?;
    let variants = item.variants.unwrap_or_default();
    for (name, value) in &variants {
        if !VARIANT_NAMES.contains(&name.as_str()) {
            return Err(ApiError::new(
                Code::InvalidValue,
                format!(
                    "Variants are `foundational`, `contextual` and `emotional`, not `{}`.",
                    crate::error::clip(name)
                ),
            )
            .with_field(at(&format!("variants.{name}"))));
        }
        if !value.is_object() {
            return Err(ApiError::new(Code::InvalidType, "A variant is an object such as {\"headline\": \"…\"}.")
                .with_field(at(&format!("variants.{name}"))));
        }
    }
    check_object_size(&variants, &at("variants"), 16 * 1024)?;
    let published_at = match item.published_at {
        None => None,
        Some(text) => Some(text.parse::<jiff::Timestamp>().map_err(|_| {
            ApiError::new(Code::InvalidTimestamp, "`published_at` must be RFC 3339.").with_field(at("published_at"))
        })?),
    };
    Ok(Item {
        id: item.id,
        kind,
        title,
        tags,
        attributes,
        available: item.available.unwrap_or(true),
        published_at,
        variants,
    })
}

/// Converts a stored item to its wire form.
pub fn item_out(item: &Item) -> ItemOut {
    ItemOut {
        id: item.id.clone(),
        kind: item.kind.clone(),
        title: item.title.clone(),
        tags: item.tags.clone(),
        attributes: item.attributes.clone(),
        available: item.available,
        published_at: item.published_at.map(|ts| rfc3339(ts.as_millisecond())),
        variants: item.variants.clone(),
    }
}

/// Add or replace items.
#[utoipa::path(put, path = "/v1/items", tag = "catalog", request_body = ItemsIn,
    responses((status = 200, description = "How many items were added or replaced.", body = UpsertedOut), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_items(
    State(state): State<AppState>,
    Auth(caller, _): Auth<CatalogWrite>,
    ApiJson(body): ApiJson<ItemsIn, ITEMS_BODY_LIMIT>,
) -> ApiResult<Json<UpsertedOut>> {
    if body.items.len() > MAX_ITEMS_PER_PUT {
        return Err(ApiError::new(Code::PayloadTooLarge, format!("At most {MAX_ITEMS_PER_PUT} items per call."))
            .with_field("items"));
    }
    let items = body.items.into_iter().enumerate().map(|(i, item)| to_item(item, i)).collect::<Result<Vec<_>, _>>()?;
    let n_items = items.len();
    let upserted = blocking(&state, move |engine| {
        let n = engine.upsert_items(items)?;
        engine.audit(&caller.key_id, "items.put", &format!("{n_items} items"))?;
        Ok(n)
    })
    .await?;
    Ok(Json(UpsertedOut { upserted }))
}

/// An item.
#[utoipa::path(get, path = "/v1/items/{id}", tag = "catalog",
    params(("id" = String, Path, description = "The item's id")),
    responses((status = 200, description = "The item.", body = ItemOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_item(
    State(state): State<AppState>,
    _auth: Auth<CatalogRead>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ItemOut>> {
    let item = state.engine.item(&id).ok_or_else(|| ApiError::not_found("item", &id))?;
    Ok(Json(item_out(&item)))
}

/// Mark an item unavailable: it is never recommended again; history keeps it.
#[utoipa::path(delete, path = "/v1/items/{id}", tag = "catalog",
    params(("id" = String, Path, description = "The item's id")),
    responses((status = 200, description = "The item, now unavailable (`available: false`).", body = ItemOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_item(
    State(state): State<AppState>,
    Auth(caller, _): Auth<CatalogWrite>,
    IdPath(id): IdPath,
) -> ApiResult<Json<ItemOut>> {
    let item = blocking(&state, move |engine| {
        engine.withdraw_item(&id)?;
        engine.audit(&caller.key_id, "items.delete", &id)?;
        Ok(engine.item(&id))
    })
    .await?
    .ok_or_else(|| ApiError::internal("withdrawn item vanished"))?;
    Ok(Json(item_out(&item)))
}

fn check_type_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(Code::InvalidSchema, "An event type name is 1–64 of a–z, 0–9 and _, starting with a letter.")
            .with_field("type"))
    }
}

fn schema_out(name: &str, schema: &Schema) -> SchemaOut {
    SchemaOut {
        kind: name.to_owned(),
        purpose: schema.purpose.as_str().to_owned(),
        properties: schema
            .properties
            .iter()
            .map(|(n, t)| (n.clone(), Value::String(t.as_str().to_owned())))
            .collect::<Map<_, _>>(),
        retention_days: schema.retention_days,
        signal: schema.signal.as_ref().map(|signal| crate::wire::SignalIo {
            tags: signal.tags.fixed.clone(),
            tags_from_property: signal.tags.from_property.clone(),
            item_tags: signal.tags.item,
            strength: Some(signal.strength),
            journey: signal.journey.map(|j| j.as_str().to_owned()),
        }),
    }
}

/// Checks a declared signal against its schema and converts it.
fn to_signal(
    signal: crate::wire::SignalIo,
    purpose: Purpose,
    properties: &[(String, PropType)],
) -> Result<attune_core::Signal, ApiError> {
    let invalid = |message: &str, field: &str| ApiError::new(Code::InvalidSchema, message).with_field(field);
    if purpose != Purpose::Personalization {
        return Err(invalid(
            "A type with a `signal` shapes profiles: its `purpose` must be personalization.",
            "purpose",
        ));
    }
    super::check_tags(&signal.tags, "signal.tags", 20).map_err(|err| ApiError { code: Code::InvalidSchema, ..err })?;
    if let Some(property) = &signal.tags_from_property
        && !properties.iter().any(|(name, t)| name == property && *t == PropType::String)
    {
        return Err(invalid(
            "`signal.tags_from_property` names a declared property of type string.",
            "signal.tags_from_property",
        ));
    }
    let strength = signal.strength.unwrap_or(1.0);
    let max = attune_core::schema::MAX_SIGNAL_STRENGTH;
    if !strength.is_finite() || strength == 0.0 || strength.abs() > max {
        return Err(invalid("`signal.strength` is between -5 and 5, and not 0.", "signal.strength"));
    }
    let journey =
        match signal.journey.as_deref() {
            None => None,
            Some(name) => Some(attune_core::JourneySignal::parse(name).ok_or_else(|| {
                invalid("`signal.journey` is researching, ready_to_buy or customer.", "signal.journey")
            })?),
        };
    if signal.tags.is_empty() && signal.tags_from_property.is_none() && !signal.item_tags && journey.is_none() {
        return Err(invalid(
            "A signal names tags (`tags`, `tags_from_property`, `item_tags`) or a `journey`.",
            "signal",
        ));
    }
    Ok(attune_core::Signal {
        tags: attune_core::SignalTags {
            fixed: signal.tags,
            from_property: signal.tags_from_property,
            item: signal.item_tags,
        },
        strength,
        journey,
    })
}

/// Declare an event type: its purpose, allowed properties and retention.
#[utoipa::path(put, path = "/v1/schemas/{type}", tag = "catalog",
    params(("type" = String, Path, description = "The event type: 1–64 of a–z, 0–9 and _, starting with a letter")),
    request_body = SchemaIn,
    responses((status = 200, description = "The declared event type.", body = SchemaOut), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_schema(
    State(state): State<AppState>,
    Auth(caller, _): Auth<Admin>,
    IdPath(name): IdPath,
    ApiJson(body): ApiJson<SchemaIn>,
) -> ApiResult<Json<SchemaOut>> {
    check_type_name(&name)?;
    let purpose = Purpose::parse(&body.purpose).ok_or_else(|| {
        ApiError::new(Code::InvalidSchema, "`purpose` is one of personalization, contextual, analytics, email, push.")
            .with_field("purpose")
    })?;
    if body.properties.len() > 100 {
        return Err(ApiError::new(Code::InvalidSchema, "At most 100 properties.").with_field("properties"));
    }
    let mut properties = Vec::with_capacity(body.properties.len());
    for (prop, kind) in &body.properties {
        let prop_type = kind.as_str().and_then(PropType::parse).ok_or_else(|| {
            ApiError::new(Code::InvalidSchema, "A property type is string, number, integer or boolean.")
                .with_field(format!("properties.{prop}"))
        })?;
        if prop.is_empty() || prop.chars().count() > 64 || prop.chars().any(char::is_control) {
            return Err(ApiError::new(Code::InvalidSchema, "A property name is 1–64 printable characters.")
                .with_field(format!("properties.{prop}")));
        }
        properties.push((prop.clone(), prop_type));
    }
    let retention_days = body.retention_days.unwrap_or(attune_core::schema::DEFAULT_RETENTION_DAYS);
    if !(1..=attune_core::schema::MAX_RETENTION_DAYS).contains(&retention_days) {
        return Err(ApiError::new(Code::InvalidSchema, "`retention_days` is 1–3650.").with_field("retention_days"));
    }
    let signal = body.signal.map(|signal| to_signal(signal, purpose, &properties)).transpose()?;
    let schema = Schema { purpose, properties, retention_days, signal };
    let out = schema_out(&name, &schema);
    blocking(&state, move |engine| {
        engine.put_schema(&name, schema)?;
        engine.audit(&caller.key_id, "schemas.put", &name)
    })
    .await?;
    Ok(Json(out))
}

/// A declared event type.
#[utoipa::path(get, path = "/v1/schemas/{type}", tag = "catalog",
    params(("type" = String, Path, description = "The event type (built in or declared)")),
    responses((status = 200, description = "The event type's schema.", body = SchemaOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_schema(
    State(state): State<AppState>,
    _auth: Auth<CatalogRead>,
    IdPath(name): IdPath,
) -> ApiResult<Json<SchemaOut>> {
    if let Some(builtin) = attune_core::BuiltinType::parse(&name) {
        return Ok(Json(schema_out(&name, &builtin.schema())));
    }
    let schema = state.engine.schema(&name).ok_or_else(|| ApiError::not_found("event type", &name))?;
    Ok(Json(schema_out(&name, &schema)))
}

/// Every event type: built in and declared.
#[utoipa::path(get, path = "/v1/schemas", tag = "catalog",
    responses((status = 200, description = "Every event type, built-in ones first.", body = SchemasOut)), security(("bearer" = [])))]
pub async fn list_schemas(State(state): State<AppState>, _auth: Auth<CatalogRead>) -> ApiResult<Json<SchemasOut>> {
    let mut schemas: Vec<SchemaOut> =
        attune_core::BuiltinType::ALL.iter().map(|b| schema_out(b.as_str(), &b.schema())).collect();
    schemas.extend(state.engine.schemas().iter().map(|(name, schema)| schema_out(name, schema)));
    Ok(Json(SchemasOut { schemas }))
}
