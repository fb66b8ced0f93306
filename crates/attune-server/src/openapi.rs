//! The OpenAPI document, generated from the handlers' annotations and the wire types.

use std::sync::OnceLock;

use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{error, routes, wire};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Attune", description = "Self-hosted, privacy-first personalization. Errors are \
        `{\"error\": {\"code\", \"message\", \"field\"}}`; codes are listed under `x-error-codes`."),
    modifiers(&BearerAuth),
    paths(
        routes::health::healthz, routes::health::readyz, routes::health::metrics, routes::health::openapi,
        routes::events::post_events, routes::events::post_identify, routes::events::delete_identify,
        routes::catalog::put_items, routes::catalog::get_item, routes::catalog::delete_item,
        routes::catalog::put_schema, routes::catalog::get_schema, routes::catalog::list_schemas,
        routes::users::get_user, routes::users::put_consent, routes::users::put_preferences,
        routes::decide::post_decide, routes::decide::get_similar,
        routes::measure::get_report, routes::measure::post_plan,
        routes::experiments::put_experiment, routes::experiments::get_experiment, routes::experiments::get_results,
        routes::editorial::put_slot, routes::editorial::get_slot, routes::editorial::list_slots,
        routes::editorial::put_pick, routes::editorial::get_pick, routes::editorial::list_picks, routes::editorial::delete_pick,
        routes::editorial::put_rule, routes::editorial::get_rule, routes::editorial::list_rules, routes::editorial::delete_rule,
        routes::editorial::review_decisions, routes::editorial::post_flag, routes::editorial::list_flags,
        routes::editorial::delete_flag,
        routes::models::post_train, routes::models::get_job, routes::models::list_models,
        routes::admin::post_key, routes::admin::list_keys, routes::admin::delete_key, routes::admin::get_audit,
        routes::privacy::delete_history, routes::privacy::get_export, routes::privacy::delete_user,
        routes::privacy::post_me_link, routes::privacy::delete_me_link, routes::privacy::get_erasure, routes::privacy::post_sweep,
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
        routes::experiments::ArmResultOut, routes::experiments::ResultsOut, routes::experiments::SrmOut,
        routes::measure::ReportOut, routes::measure::BehavioralOut, routes::measure::AttitudinalOut,
        routes::measure::BusinessOut, routes::measure::EthicalOut, routes::measure::PlanIn, routes::measure::PlanOut,
        routes::decide::DecideIn, routes::decide::DecideContextIn, routes::decide::PlacementIn,
        routes::decide::DecisionOut, routes::decide::PlacementOut, routes::decide::DecidedItemOut,
        routes::decide::CopyOut, routes::decide::ReasonOut, routes::decide::ExperimentArmOut,
        routes::decide::SimilarOut, routes::decide::SimilarItemOut,
        routes::editorial::ConditionsIo, routes::editorial::VariantRuleIo, routes::editorial::SlotIn,
        routes::editorial::SlotOut, routes::editorial::SlotsOut, routes::editorial::PickIn, routes::editorial::PickOut,
        routes::editorial::PicksOut, routes::editorial::RuleEffectIo, routes::editorial::RuleIn,
        routes::editorial::RuleOut, routes::editorial::RulesOut, routes::editorial::ReviewedItemOut,
        routes::editorial::ReviewedPlacementOut, routes::editorial::ReviewedDecisionOut, routes::editorial::ReviewOut,
        routes::editorial::FlagIn, routes::editorial::FlagOut, routes::editorial::FlagsOut,
        routes::models::JobOut, routes::models::ModelOut, routes::models::ModelsOut,
        wire::ForgetOut, wire::ExportOut, wire::ExportEventOut, wire::MergeOut, wire::ForgottenOut, wire::RecordOut,
        wire::ReceiptOut, wire::ErasedOut, wire::MeLinkOut, wire::SweepOut,
    ))
)]
struct ApiDoc;

/// The document as JSON text (built once).
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut value = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
        let codes: serde_json::Map<String, serde_json::Value> = error::Code::ALL
            .iter()
            .map(|code| {
                (
                    code.as_str().to_owned(),
                    serde_json::json!({"status": code.status().as_u16(), "description": code.doc()}),
                )
            })
            .collect();
        value["x-error-codes"] = serde_json::Value::Object(codes);
        document_common_answers(&mut value);
        serde_json::to_string(&value).expect("JSON values serialize")
    })
    .clone()
}

/// Every operation can answer with the error envelope for bad input, auth, limits and overload,
/// and every path id follows the id rule (1–128 printable characters): say so in the document,
/// once, instead of on each handler.
fn document_common_answers(doc: &mut serde_json::Value) {
    let error = |description: &str| {
        serde_json::json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    let common = [
        ("400", "Malformed or invalid request (`error.code` says which rule, `error.field` where)."),
        ("401", "No API key, or an unknown or revoked one."),
        ("403", "The key lacks the scope this route needs."),
        ("404", "Unknown id or route."),
        ("405", "The route does not accept this method."),
        ("409", "The request contradicts stored state."),
        ("413", "The body is too large."),
        ("415", "The body is not application/json."),
        ("429", "Rate limited; see Retry-After."),
        ("503", "Starting or overloaded."),
    ];
    // Rust's `char::is_control` (what the id rule checks) is Unicode's Cc: U+0000–001F, U+007F–009F.
    let id_pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$";
    let id_schema = serde_json::json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": id_pattern});
    // Request fields that are ids follow the same rule.
    const ID_FIELDS: [&str; 8] = ["id", "user", "anonymous_id", "item", "slot", "decision_id", "channel", "name"];
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(|s| s.as_object_mut()) {
        for (_, schema) in schemas.iter_mut() {
            let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else { continue };
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
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else { return };
    for (_, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            if let Some(responses) = operation.get_mut("responses").and_then(|r| r.as_object_mut()) {
                for (status, description) in common {
                    responses.entry(status.to_owned()).or_insert_with(|| error(description));
                }
            }
            if let Some(parameters) = operation.get_mut("parameters").and_then(|p| p.as_array_mut()) {
                for parameter in parameters {
                    if parameter.get("in").and_then(|i| i.as_str()) == Some("path") {
                        parameter["schema"] = id_schema.clone();
                    }
                }
            }
        }
    }
}
