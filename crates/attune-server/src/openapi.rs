//! The OpenAPI document, generated from the handlers' annotations and the wire types.

use std::sync::OnceLock;

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use serde_json::{Map, Value, json};

use crate::{error, routes, wire};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key: `Authorization: Bearer <key>`. The admin key (`ATTUNE_ADMIN_KEY`) is accepted \
                         everywhere; scoped keys come from `POST /v1/keys`.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Attune", description = "Self-hosted, privacy-first personalization. Errors are \
        `{\"error\": {\"code\", \"message\", \"field\"}}`; codes are listed under `x-error-codes`."),
    modifiers(&BearerAuth),
    tags(
        (name = "ops", description = "Liveness, readiness, metrics and this document; no key needed."),
        (name = "events", description = "Event ingestion, and merging a device's history into a person's."),
        (name = "catalog", description = "Items, and the event types (schemas) events are checked against."),
        (name = "people", description = "What Attune knows about a person; consent, preferences, export, erasure."),
        (name = "decisions", description = "What to show a person, per slot, now, and why; similar items."),
        (name = "editorial", description = "Human control: slot settings, editorial picks, rules, review and flags."),
        (name = "measurement", description = "Experiments, the four-dimension report, notification planning."),
        (name = "models", description = "Training, and the models in use."),
        (name = "admin", description = "Keys, the audit log, erasure receipts and the retention sweep."),
        (name = "me", description = "The person's own page, reached with a signed link from \
            `POST /v1/users/{id}/me-link`: HTML pages and forms for browsers, no API key. Errors are HTML pages."),
    ),
    paths(
        routes::health::healthz, routes::health::readyz, routes::health::metrics, routes::health::openapi,
        crate::browser::get_script,
        routes::events::post_events, routes::events::post_identify, routes::events::delete_identify,
        routes::catalog::put_items, routes::catalog::get_item, routes::catalog::delete_item,
        routes::catalog::put_schema, routes::catalog::get_schema, routes::catalog::list_schemas,
        routes::users::get_user, routes::users::put_consent, routes::users::put_preferences,
        routes::decide::post_decide, routes::decide::get_similar, routes::digest::post_digest,
        routes::measure::get_report, routes::measure::post_plan,
        routes::experiments::put_experiment, routes::experiments::get_experiment, routes::experiments::get_results,
        routes::experiments::list_experiments, routes::experiments::stop_experiment,
        routes::experiments::archive_experiment, routes::experiments::put_holdout, routes::experiments::get_holdout,
        routes::editorial::put_slot, routes::editorial::get_slot, routes::editorial::list_slots,
        routes::variants::get_slot_variants,
        routes::editorial::put_pick, routes::editorial::get_pick, routes::editorial::list_picks, routes::editorial::delete_pick,
        routes::editorial::put_rule, routes::editorial::get_rule, routes::editorial::list_rules, routes::editorial::delete_rule,
        routes::editorial::review_decisions, routes::editorial::post_flag, routes::editorial::list_flags,
        routes::editorial::delete_flag,
        routes::models::post_train, routes::models::get_job, routes::models::list_models,
        routes::admin::post_key, routes::admin::list_keys, routes::admin::delete_key, routes::admin::get_audit,
        routes::privacy::delete_history, routes::privacy::get_export, routes::privacy::delete_user,
        routes::privacy::post_me_link, routes::privacy::delete_me_link, routes::privacy::get_erasure, routes::privacy::post_sweep,
        routes::backup::post_backup,
        crate::me::get_page, crate::me::post_consent, crate::me::post_preferences, crate::me::post_forget,
        crate::me::get_export, crate::me::post_erase,
    ),
    components(schemas(
        error::ErrorBody, error::ErrorDetail,
        wire::EventsIn, wire::EventIn, wire::EventsOut, wire::RejectedOut, wire::DroppedOut,
        wire::ItemsIn, wire::ItemIn, wire::ItemOut, wire::UpsertedOut,
        wire::SchemaIn, wire::SchemaOut, wire::SchemasOut, wire::IdentifyIn, wire::IdentifyOut,
        wire::ConsentIn, wire::ConsentOut, wire::PreferencesIn, wire::PreferencesOut, wire::QuietHoursIo,
        wire::UserOut, wire::AffinityOut, wire::RecentOut,
        wire::KeyIn, wire::KeyCreatedOut, wire::KeyOut, wire::KeysOut, wire::AuditOut, wire::AuditLogOut,
        wire::StatusOut,
        routes::experiments::ArmIo, routes::experiments::ExperimentIn, routes::experiments::ExperimentOut,
        routes::experiments::ResultsOut, routes::experiments::SrmOut, routes::experiments::RangeOut,
        routes::experiments::TestOut, routes::experiments::MetricArmOut, routes::experiments::MetricOut,
        routes::experiments::ExposedOut, routes::experiments::HoldoutIo, routes::experiments::ExperimentsOut,
        routes::measure::GroupWeekOut,
        routes::measure::ReportOut, routes::measure::BehavioralOut, routes::measure::AttitudinalOut,
        routes::measure::BusinessOut, routes::measure::EthicalOut, routes::measure::PlanIn, routes::measure::PlanOut,
        routes::decide::DecideIn, routes::decide::DecideContextIn, routes::decide::PlacementIn,
        routes::decide::DecisionOut, routes::decide::PlacementOut, routes::decide::DecidedItemOut,
        routes::decide::CopyOut, routes::decide::ReasonOut, routes::decide::ExperimentArmOut,
        routes::decide::SimilarOut, routes::decide::SimilarItemOut,
        routes::digest::DigestIn, routes::digest::DigestOut, routes::editorial::SlotChannelIo,
        wire::SignalIo,
        routes::editorial::ConditionsIo, routes::editorial::VariantRuleIo, routes::editorial::SlotIn,
        routes::editorial::SlotOut, routes::editorial::SlotsOut, routes::variants::RateOut,
        routes::variants::ContextRateOut, routes::variants::VariantOut, routes::variants::SlotVariantsOut, routes::editorial::PickIn, routes::editorial::PickOut,
        routes::editorial::PicksOut, routes::editorial::RuleEffectIo, routes::editorial::RuleIn,
        routes::editorial::RuleOut, routes::editorial::RulesOut, routes::editorial::ReviewedItemOut,
        routes::editorial::ReviewedPlacementOut, routes::editorial::ReviewedDecisionOut, routes::editorial::ReviewOut,
        routes::editorial::FlagIn, routes::editorial::FlagOut, routes::editorial::FlagsOut,
        routes::models::JobOut, routes::models::ModelOut, routes::models::ModelsOut,
        wire::ForgetOut, wire::ExportOut, wire::ExportEventOut, wire::MergeOut, wire::ForgottenOut, wire::RecordOut,
        wire::ReceiptOut, wire::ErasedOut, wire::MeLinkOut, wire::SweepOut,
        routes::backup::BackupIn, routes::backup::BackupOut,
    ))
)]
struct ApiDoc;

/// The document as JSON text (built once).
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut value = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
        let codes: Map<String, Value> = error::Code::ALL
            .iter()
            .map(|code| {
                (code.as_str().to_owned(), json!({"status": code.status().as_u16(), "description": code.doc()}))
            })
            .collect();
        value["x-error-codes"] = Value::Object(codes);
        type_error_codes(&mut value);
        document_id_rule(&mut value);
        document_channels(&mut value);
        query_parameters_are_not_null(&mut value);
        document_errors(&mut value);
        document_me_pages(&mut value);
        hoist_nullable_descriptions(&mut value);
        serde_json::to_string(&value).expect("JSON values serialize")
    })
    .clone()
}

/// Every operation of the document with its path: `(path, method, operation)`.
fn operations(doc: &mut Value) -> impl Iterator<Item = (&String, &String, &mut Value)> {
    doc.get_mut("paths").and_then(Value::as_object_mut).into_iter().flat_map(|paths| {
        paths.iter_mut().flat_map(|(path, item)| {
            item.as_object_mut().into_iter().flat_map(move |item| {
                item.iter_mut()
                    .filter(|(method, _)| ["get", "put", "post", "delete", "patch"].contains(&method.as_str()))
                    .map(move |(method, operation)| (path, method, operation))
            })
        })
    })
}

/// `error.code` is an enum of the server's codes, so generated clients type it.
fn type_error_codes(doc: &mut Value) {
    let codes: Vec<Value> = error::Code::ALL.iter().map(|code| code.as_str().into()).collect();
    if let Some(code) = doc.pointer_mut("/components/schemas/ErrorDetail/properties/code") {
        code["enum"] = Value::Array(codes);
    }
}

/// Every path id, and every request field that is an id, follows the id rule (1–128 printable
/// characters): say so in the document, once, instead of on each handler.
fn document_id_rule(doc: &mut Value) {
    // Rust's `char::is_control` (what the id rule checks) is Unicode's Cc: U+0000–001F, U+007F–009F.
    let id_pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$";
    let id_schema = json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": id_pattern});
    // Request fields that are ids follow the same rule.
    const ID_FIELDS: [&str; 7] = ["id", "user", "anonymous_id", "item", "slot", "decision_id", "name"];
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for (_, schema) in schemas.iter_mut() {
            let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else { continue };
            for (name, property) in properties.iter_mut() {
                let is_string = property
                    .get("type")
                    .is_some_and(|t| t == "string" || t.as_array().is_some_and(|a| a.iter().any(|x| x == "string")));
                if ID_FIELDS.contains(&name.as_str()) && is_string {
                    property["minLength"] = 1.into();
                    property["maxLength"] = 128.into();
                    property["pattern"] = id_pattern.into();
                }
            }
        }
    }
    for (_, _, operation) in operations(doc) {
        for parameter in operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
            if parameter.get("in").and_then(Value::as_str) == Some("path") {
                parameter["schema"] = id_schema.clone();
            }
        }
    }
}

/// A `channel` is one of a closed list (anything else is a 400 `invalid_channel`): one `Channel`
/// schema, referred to by every field named `channel` (a string, a nullable string, or a list of
/// them), so that clients and fuzzers send only what the server takes.
fn document_channels(doc: &mut Value) {
    let names: Vec<Value> = attune_core::Channel::ALL.iter().map(|c| c.as_str().into()).collect();
    let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else { return };
    let reference = json!({"$ref": "#/components/schemas/Channel"});
    for (_, schema) in schemas.iter_mut() {
        let Some(channel) = schema.pointer_mut("/properties/channel") else { continue };
        let description = channel.get("description").cloned().unwrap_or_else(|| "The channel.".into());
        let kind = channel.get("type").cloned().unwrap_or(Value::Null);
        if kind == "string" {
            *channel = json!({"$ref": reference["$ref"], "description": description});
        } else if kind == json!(["string", "null"]) {
            *channel = json!({"oneOf": [reference, {"type": "null"}], "description": description});
        } else if kind == "array" && channel.pointer("/items/type").is_some_and(|t| t == "string") {
            channel["items"] = reference.clone();
        }
    }
    schemas.insert(
        "Channel".into(),
        json!({"type": "string", "enum": names, "description": "A touchpoint: `web`, `app`, `email`, `push`, \
            `in_person` (retreats, events, a store visit) or `offline_purchase`."}),
    );
}

/// A query parameter is absent or has a value: `Option<T>` fields of the query structs are
/// documented as `T`, not as `T` or `null` (which a client would send as the text `null`).
fn query_parameters_are_not_null(doc: &mut Value) {
    for (_, _, operation) in operations(doc) {
        for parameter in operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
            if parameter.get("in").and_then(Value::as_str) != Some("query") {
                continue;
            }
            let Some(kind) = parameter.pointer_mut("/schema/type") else { continue };
            if let Some(kinds) = kind.as_array()
                && kinds.len() == 2
                && let Some(single) = kinds.iter().find(|k| *k != "null").cloned()
                && kinds.iter().any(|k| k == "null")
            {
                *kind = single;
            }
        }
    }
}

/// What an error status means on the JSON API, and the codes that come with it.
fn error_description(status: &str) -> Option<String> {
    let meaning = match status {
        "400" => "Malformed or invalid request: `error.code` says which rule, `error.field` which field.",
        "401" => "No API key, or an unknown or revoked one.",
        "403" => "The key lacks the scope this route needs.",
        "404" => "What the request names does not exist.",
        "405" => "The route does not accept this method.",
        "409" => "The request contradicts stored state.",
        "413" => "The body, or a batch in it, is too large.",
        "415" => "The body is not `application/json`.",
        "429" => "Too many requests for this key; retry after `Retry-After` seconds.",
        "500" => "Something went wrong on the server; the request may be retried.",
        "503" => "The server is starting or overloaded.",
        _ => return None,
    };
    let codes: Vec<String> = error::Code::ALL
        .iter()
        .filter(|code| code.status().as_str() == status)
        .map(|code| format!("`{}`", code.as_str()))
        .collect();
    Some(format!("{meaning} Codes: {}.", codes.join(", ")))
}

/// Every operation of the JSON API documents the error answers it can give, each with the error
/// envelope (so generated clients type their errors) and a description: a protected route can
/// answer 401 (no or unknown key), 403 (scope), 429 (rate limit, per key) and 500; a route that
/// reads parameters or a body can answer 400; a JSON body can be too large (413) or not JSON
/// (415). What only some routes answer (404, 409) their annotations say.
fn document_errors(doc: &mut Value) {
    let retry_after = json!({
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0}
    });
    for (path, _, operation) in operations(doc) {
        if path.starts_with("/me") {
            continue; // HTML pages: see `document_me_pages`.
        }
        let secured = operation.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
        let has_parameters = operation.get("parameters").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
        let json_body = operation.pointer("/requestBody/content/application~1json").is_some();
        let mut statuses = Vec::new();
        if secured {
            statuses.extend(["401", "403", "429", "500"]);
        }
        if has_parameters || json_body {
            statuses.push("400");
        }
        if json_body {
            statuses.extend(["413", "415"]);
        }
        let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { continue };
        for status in statuses {
            responses.entry(status).or_insert_with(
                || json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}),
            );
        }
        for (status, response) in responses.iter_mut() {
            if response.get("description").is_none()
                && let Some(description) = error_description(status)
            {
                response["description"] = description.into();
            }
            if status == "429" {
                response["headers"]["Retry-After"] = retry_after.clone();
            }
        }
    }
}

/// The `/me` pages are for browsers: their errors are HTML pages, and their operation ids say
/// `me_` (`GET /me/export` and `GET /v1/users/{id}/export` would otherwise share `get_export`).
fn document_me_pages(doc: &mut Value) {
    for (path, _, operation) in operations(doc) {
        if !path.starts_with("/me") {
            continue;
        }
        if let Some(id) = operation.get("operationId").and_then(Value::as_str).filter(|id| !id.starts_with("me_")) {
            operation["operationId"] = format!("me_{id}").into();
        }
        for (status, response) in operation.get_mut("responses").and_then(Value::as_object_mut).into_iter().flatten() {
            let description = match status.as_str() {
                "400" => "The link or form is incomplete or invalid; an HTML page says what to do.",
                "401" => "The link token is missing, invalid or expired; an HTML page asks for a new link.",
                _ => continue,
            };
            if response.get("description").is_none() {
                response["description"] = description.into();
            }
        }
    }
}

/// A nullable reference (`Option<T>` of a schema) is `oneOf: [{$ref, description}, {type: null}]`:
/// lift the description to the property, where readers and generators look for it.
fn hoist_nullable_descriptions(doc: &mut Value) {
    let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else { return };
    for (_, schema) in schemas.iter_mut() {
        for (_, property) in schema.get_mut("properties").and_then(Value::as_object_mut).into_iter().flatten() {
            if property.get("description").is_some() {
                continue;
            }
            let described = property
                .get("oneOf")
                .and_then(Value::as_array)
                .and_then(|branches| branches.iter().find_map(|b| b.get("description")))
                .cloned();
            if let Some(description) = described {
                property["description"] = description;
            }
        }
    }
}
