//! The served OpenAPI document is valid OpenAPI 3.1 and fully described, checked structurally
//! without a network or Python (CI runs the real `openapi-spec-validator` on the running server's
//! document as well: `scripts/ci-clients.sh`). Every finding is collected, so one run lists them all.
//!
//! What is checked:
//! - the document's top level, and every path item, operation, parameter, request body and
//!   response holds only the fields OpenAPI 3.1 defines (or `x-` extensions);
//! - every response has a description (the specification requires one), every operation an
//!   operationId (unique), a summary and declared tags, every parameter and every component
//!   schema and property a description;
//! - path parameters match the path template, are required, and none is declared twice;
//! - every `$ref` resolves, every `required` field exists in `properties`, every security
//!   requirement names a declared scheme;
//! - errors are typed: every JSON 4xx/5xx response is the error envelope `ErrorBody`, whose `code`
//!   is an enum of exactly the server's error codes; protected operations document 401, 403, 429
//!   and 500, operations with a JSON body 400, 413 and 415.

use std::collections::BTreeSet;

use attune_server::{error::Code, openapi::document_json};
use serde_json::{Map, Value};

const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const TOP_LEVEL: [&str; 9] =
    ["openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks", "components", "security", "tags"];
const PATH_ITEM: [&str; 4] = ["summary", "description", "servers", "parameters"];
const OPERATION: [&str; 12] = [
    "tags",
    "summary",
    "description",
    "externalDocs",
    "operationId",
    "parameters",
    "requestBody",
    "responses",
    "callbacks",
    "deprecated",
    "security",
    "servers",
];
const PARAMETER: [&str; 13] = [
    "name",
    "in",
    "description",
    "required",
    "deprecated",
    "allowEmptyValue",
    "style",
    "explode",
    "allowReserved",
    "schema",
    "example",
    "examples",
    "content",
];
const REQUEST_BODY: [&str; 3] = ["description", "content", "required"];
const RESPONSE: [&str; 4] = ["description", "headers", "content", "links"];
const MEDIA_TYPE: [&str; 4] = ["schema", "example", "examples", "encoding"];
/// JSON answers outside the error envelope: `/readyz` says `starting` with a 503.
const NON_ENVELOPE_ERRORS: [(&str, &str); 1] = [("/readyz", "503")];

fn document() -> Value {
    serde_json::from_str(&document_json()).expect("the document is JSON")
}

fn text(value: Option<&Value>) -> &str {
    value.and_then(Value::as_str).unwrap_or_default().trim()
}

fn unknown_keys(object: &Map<String, Value>, allowed: &[&str], at: &str, findings: &mut Vec<String>) {
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) && !key.starts_with("x-") {
            findings.push(format!("{at}: `{key}` is not an OpenAPI 3.1 field here"));
        }
    }
}

/// `{a}/b/{c}` → {a, c}.
fn template_names(path: &str) -> BTreeSet<String> {
    path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).map(str::to_owned).collect()
}

/// Follows a local `$ref` (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` in the document, with where it sits.
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                if key == "$ref" {
                    out.push((at.to_owned(), inner.as_str().unwrap_or_default().to_owned()));
                } else {
                    refs(inner, &format!("{at}/{key}"), out);
                }
            }
        }
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| refs(v, &format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// Checks a schema and the schemas nested in it: `required` names properties, and every
/// property is described.
fn check_schema(schema: &Value, at: &str, findings: &mut Vec<String>) {
    let Some(object) = schema.as_object() else { return };
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            if text(property.get("description")).is_empty() {
                findings.push(format!("{at}.{name}: property without a description"));
            }
            check_schema(property, &format!("{at}.{name}"), findings);
        }
        for required in object.get("required").and_then(Value::as_array).into_iter().flatten() {
            let required = text(Some(required));
            if !properties.contains_key(required) {
                findings.push(format!("{at}: required `{required}` is not among the properties"));
            }
        }
    } else if object.contains_key("required") && object.get("type").is_some_and(|t| t == "object") {
        findings.push(format!("{at}: `required` without `properties`"));
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = object.get(key) {
            check_schema(inner, &format!("{at}[{key}]"), findings);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for (i, inner) in object.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            check_schema(inner, &format!("{at}.{key}[{i}]"), findings);
        }
    }
}

fn findings(doc: &Value) -> Vec<String> {
    let mut findings = Vec::new();
    let top = doc.as_object().expect("the document is an object");
    unknown_keys(top, &TOP_LEVEL, "document", &mut findings);
    if !text(doc.get("openapi")).starts_with("3.1.") {
        findings.push(format!("openapi is {}, not 3.1.x", doc["openapi"]));
    }
    for field in ["title", "version", "description"] {
        if text(doc["info"].get(field)).is_empty() {
            findings.push(format!("info.{field} is missing"));
        }
    }
    let declared_tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|tag| !text(tag.get("description")).is_empty())
        .filter_map(|tag| tag["name"].as_str())
        .collect();
    let schemes = doc.pointer("/components/securitySchemes").and_then(Value::as_object);

    // $refs resolve.
    let mut all_refs = Vec::new();
    refs(doc, "", &mut all_refs);
    for (at, reference) in &all_refs {
        if resolve(doc, reference).is_none() {
            findings.push(format!("{at}: $ref `{reference}` does not resolve"));
        }
    }

    // Component schemas.
    for (name, schema) in doc.pointer("/components/schemas").and_then(Value::as_object).into_iter().flatten() {
        if text(schema.get("description")).is_empty() {
            findings.push(format!("schema {name} has no description"));
        }
        check_schema(schema, &format!("schema {name}"), &mut findings);
    }
    let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    let documented_codes: Vec<&str> = doc
        .pointer("/components/schemas/ErrorDetail/properties/code/enum")
        .and_then(Value::as_array)
        .map(|codes| codes.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if documented_codes != codes {
        findings.push(format!("ErrorDetail.code enum is {documented_codes:?}, the server's codes are {codes:?}"));
    }

    // Paths and operations.
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths").iter() {
        let item = item.as_object().expect("a path item is an object");
        let allowed: Vec<&str> = PATH_ITEM.iter().chain(HTTP_METHODS.iter()).copied().collect();
        unknown_keys(item, &allowed, path, &mut findings);
        if !path.starts_with('/') {
            findings.push(format!("{path}: a path starts with /"));
        }
        for (method, operation) in item.iter().filter(|(m, _)| HTTP_METHODS.contains(&m.as_str())) {
            let at = format!("{} {path}", method.to_uppercase());
            let Some(op) = operation.as_object() else {
                findings.push(format!("{at}: not an object"));
                continue;
            };
            unknown_keys(op, &OPERATION, &at, &mut findings);
            let id = text(op.get("operationId"));
            if id.is_empty() {
                findings.push(format!("{at}: no operationId"));
            } else if !operation_ids.insert(id.to_owned()) {
                findings.push(format!("{at}: operationId `{id}` is not unique"));
            }
            if text(op.get("summary")).is_empty() {
                findings.push(format!("{at}: no summary"));
            }
            let tags: Vec<&str> =
                op.get("tags").and_then(Value::as_array).into_iter().flatten().map(|t| text(Some(t))).collect();
            if tags.is_empty() || tags.iter().any(|tag| !declared_tags.contains(tag)) {
                findings.push(format!("{at}: tags {tags:?} are not all declared (with a description) at the top"));
            }
            let secured = op.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
            for requirement in op.get("security").and_then(Value::as_array).into_iter().flatten() {
                for scheme in requirement.as_object().into_iter().flatten().map(|(name, _)| name) {
                    if schemes.is_none_or(|s| !s.contains_key(scheme)) {
                        findings.push(format!("{at}: security scheme `{scheme}` is not declared"));
                    }
                }
            }

            // Parameters.
            let mut seen = BTreeSet::new();
            let mut path_params = BTreeSet::new();
            for parameter in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
                let parameter = resolve(doc, text(parameter.get("$ref"))).unwrap_or(parameter);
                let name = text(parameter.get("name"));
                let location = text(parameter.get("in"));
                let p_at = format!("{at} parameter `{name}` ({location})");
                unknown_keys(
                    parameter.as_object().expect("a parameter is an object"),
                    &PARAMETER,
                    &p_at,
                    &mut findings,
                );
                if !["path", "query", "header", "cookie"].contains(&location) {
                    findings.push(format!("{p_at}: `in` must be path, query, header or cookie"));
                }
                if !seen.insert((name.to_owned(), location.to_owned())) {
                    findings.push(format!("{p_at}: declared twice"));
                }
                if text(parameter.get("description")).is_empty() {
                    findings.push(format!("{p_at}: no description"));
                }
                if parameter.get("schema").is_none() == parameter.get("content").is_none() {
                    findings.push(format!("{p_at}: needs exactly one of schema or content"));
                }
                if location == "path" {
                    path_params.insert(name.to_owned());
                    if parameter.get("required") != Some(&Value::Bool(true)) {
                        findings.push(format!("{p_at}: a path parameter must be required"));
                    }
                }
            }
            if path_params != template_names(path) {
                findings.push(format!("{at}: path parameters {path_params:?} do not match the template"));
            }

            // Request body.
            let mut json_body = false;
            if let Some(body) = op.get("requestBody") {
                let body = resolve(doc, text(body.get("$ref"))).unwrap_or(body);
                unknown_keys(body.as_object().expect("a request body is an object"), &REQUEST_BODY, &at, &mut findings);
                let content = body.get("content").and_then(Value::as_object);
                if content.is_none_or(Map::is_empty) {
                    findings.push(format!("{at}: request body without content"));
                }
                for (media, value) in content.into_iter().flatten() {
                    unknown_keys(
                        value.as_object().expect("a media type is an object"),
                        &MEDIA_TYPE,
                        &at,
                        &mut findings,
                    );
                    if value.get("schema").is_none() {
                        findings.push(format!("{at}: request body {media} has no schema"));
                    }
                    json_body |= media == "application/json";
                }
            }

            // Responses.
            let Some(responses) = op.get("responses").and_then(Value::as_object).filter(|r| !r.is_empty()) else {
                findings.push(format!("{at}: no responses"));
                continue;
            };
            if !responses.keys().any(|s| s.starts_with('2') || s.starts_with('3')) {
                findings.push(format!("{at}: no success response"));
            }
            for (status, response) in responses {
                let r_at = format!("{at} → {status}");
                let valid_status = status == "default"
                    || (status.len() == 3
                        && ('1'..='5').contains(&status.chars().next().unwrap_or('0'))
                        && (status[1..].chars().all(|c| c.is_ascii_digit()) || &status[1..] == "XX"));
                if !valid_status {
                    findings.push(format!("{r_at}: not a status code"));
                }
                let response = resolve(doc, text(response.get("$ref"))).unwrap_or(response);
                let Some(object) = response.as_object() else { continue };
                unknown_keys(object, &RESPONSE, &r_at, &mut findings);
                if text(object.get("description")).is_empty() {
                    findings.push(format!("{r_at}: no description"));
                }
                for (media, value) in object.get("content").and_then(Value::as_object).into_iter().flatten() {
                    unknown_keys(
                        value.as_object().expect("a media type is an object"),
                        &MEDIA_TYPE,
                        &r_at,
                        &mut findings,
                    );
                    if media == "application/json" {
                        let Some(schema) = value.get("schema") else {
                            findings.push(format!("{r_at}: JSON content without a schema"));
                            continue;
                        };
                        let is_error = status.starts_with('4') || status.starts_with('5');
                        let envelope = text(schema.get("$ref")) == "#/components/schemas/ErrorBody";
                        if is_error && !envelope && !NON_ENVELOPE_ERRORS.contains(&(path.as_str(), status.as_str())) {
                            findings.push(format!("{r_at}: a JSON error that is not the ErrorBody envelope"));
                        }
                    }
                }
                for (name, header) in object.get("headers").and_then(Value::as_object).into_iter().flatten() {
                    if text(header.get("description")).is_empty() || header.get("schema").is_none() {
                        findings.push(format!("{r_at}: header {name} needs a description and a schema"));
                    }
                }
            }
            let mut expected: Vec<&str> = Vec::new();
            if secured {
                expected.extend(["401", "403", "429", "500"]);
            }
            if json_body {
                expected.extend(["400", "413", "415"]);
            }
            for status in expected {
                let documented =
                    responses.get(status).and_then(|r| r.pointer("/content/application~1json/schema/$ref"));
                if documented.and_then(Value::as_str) != Some("#/components/schemas/ErrorBody") {
                    findings.push(format!("{at}: {status} with the ErrorBody envelope is not documented"));
                }
            }
            if secured && responses.get("429").and_then(|r| r.pointer("/headers/Retry-After")).is_none() {
                findings.push(format!("{at}: 429 does not document Retry-After"));
            }
        }
    }
    findings
}

#[test]
fn the_openapi_document_is_valid_and_described() {
    let findings = findings(&document());
    assert!(
        findings.is_empty(),
        "{} findings in the OpenAPI document:\n{}",
        findings.len(),
        findings.iter().take(60).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The checks above find what they should: a copy of the document with typical mistakes.
#[test]
fn the_checks_catch_typical_mistakes() {
    let mut doc = document();
    let op = doc.pointer_mut("/paths/~1v1~1items~1{id}/get").expect("GET /v1/items/{id}");
    op["responses"]["200"].as_object_mut().unwrap().remove("description");
    op["responses"]["404"]["content"]["application/json"]["schema"] = serde_json::json!({"type": "object"});
    op["parameters"][0]["name"] = "item".into();
    op["operationId"] = "put_items".into();
    doc["components"]["schemas"]["ItemOut"]["required"].as_array_mut().unwrap().push("nope".into());
    doc["components"]["schemas"]["ItemOut"]["properties"]["x"] =
        serde_json::json!({"$ref": "#/components/schemas/Nope"});
    let found = findings(&doc).join("\n");
    for needle in [
        "GET /v1/items/{id} → 200: no description",
        "GET /v1/items/{id} → 404: a JSON error that is not the ErrorBody envelope",
        "GET /v1/items/{id}: path parameters",
        "operationId `put_items` is not unique",
        "required `nope` is not among the properties",
        "$ref `#/components/schemas/Nope` does not resolve",
        "schema ItemOut.x: property without a description",
    ] {
        assert!(found.contains(needle), "not found: {needle}\nin:\n{found}");
    }
}

/// What the server checks, the document says, so that generated clients and fuzzers send what
/// the server takes (the schemathesis run in the README found decisions mostly refused because
/// `channel` was documented as any id and `placements` as any list).
#[test]
fn the_document_states_the_limits_the_server_checks() {
    let doc = document();
    let schema = |name: &str| doc.pointer(&format!("/components/schemas/{name}")).cloned().expect(name);
    let channels: Vec<Value> = attune_core::Channel::ALL.iter().map(|c| Value::from(c.as_str())).collect();
    assert_eq!(schema("Channel")["enum"], Value::Array(channels));
    let reference = serde_json::json!({"$ref": "#/components/schemas/Channel"});
    for name in ["EventIn", "DecideIn"] {
        let channel = &schema(name)["properties"]["channel"];
        assert_eq!(channel["oneOf"][0], reference, "{name}.channel: {channel}");
        assert_eq!(channel["oneOf"][1]["type"], "null", "{name}.channel: {channel}");
    }
    assert_eq!(schema("PlanIn")["properties"]["channel"]["$ref"], reference["$ref"]);
    assert_eq!(schema("ConditionsIo")["properties"]["channel"]["items"], reference);
    let placements = &schema("DecideIn")["properties"]["placements"];
    assert_eq!((placements["minItems"].as_u64(), placements["maxItems"].as_u64()), (Some(1), Some(10)));
    for (name, field) in [("PlacementIn", "count"), ("DigestIn", "count"), ("SlotIn", "max_items")] {
        let property = &schema(name)["properties"][field];
        assert_eq!(
            (property["minimum"].as_u64(), property["maximum"].as_u64()),
            (Some(1), Some(100)),
            "{name}.{field}"
        );
    }
    assert_eq!(schema("EventsIn")["properties"]["events"]["maxItems"].as_u64(), Some(1000));
    // A query parameter is absent or has a value, never `null`.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] == "query" {
                    let kind = &parameter["schema"]["type"];
                    assert!(kind.is_string(), "{method} {path} ?{}: {kind}", parameter["name"]);
                }
            }
        }
    }
}
