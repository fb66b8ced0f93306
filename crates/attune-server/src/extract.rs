//! Extractors that answer in our error shape: JSON bodies (content type, size, syntax, unknown
//! and missing fields, with the path of the field at fault), paths and query strings.

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Code, clip};

/// The default body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// A JSON body of at most `LIMIT` bytes, parsed into `T` with precise errors.
pub struct ApiJson<T, const LIMIT: usize = DEFAULT_BODY_LIMIT>(pub T);

impl<S, T, const LIMIT: usize> FromRequest<S> for ApiJson<T, LIMIT>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        check_json_content_type(req.headers())?;
        let bytes = axum::body::to_bytes(req.into_body(), LIMIT).await.map_err(|err| {
            if crate::server::is_body_timeout(&err) {
                ApiError::new(Code::RequestTimeout, "The body did not arrive in time; send it again.")
            } else {
                ApiError::new(Code::PayloadTooLarge, format!("The body is larger than {} bytes.", LIMIT))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn check_json_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else if content_type.is_empty() {
        Err(ApiError::new(Code::UnsupportedMediaType, "Send the body with `Content-Type: application/json`."))
    } else {
        Err(ApiError::new(Code::UnsupportedMediaType, "The body must be `application/json`."))
    }
}

/// Parses JSON bytes into `T`, mapping every failure to a 400 with the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| from_path_error(err, ""))?;
    deserializer.end().map_err(|err| {
        ApiError::new(Code::MalformedJson, format!("The body has trailing characters after the JSON value ({err})."))
    })?;
    Ok(value)
}

/// Deserializes an already parsed JSON value into `T`; `prefix` names where it sits
/// (`events[3]`).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value, prefix: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| from_path_error(err, prefix))
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty() || path == ".") {
        (true, true) => String::new(),
        (true, false) => path.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// What serde says is wrong, without the value the caller sent (an e-mail address in the wrong
/// field must not come back in the error): `invalid type: string "x", expected a boolean` →
/// `has the wrong type: expected a boolean`.
fn scrubbed(serde_message: &str) -> String {
    let expected = serde_message.rsplit_once(", expected ").map(|(_, expected)| expected);
    let what = if serde_message.starts_with("invalid type") {
        "has the wrong type"
    } else if serde_message.starts_with("invalid length") {
        "has the wrong number of elements"
    } else if serde_message.starts_with("unknown variant") {
        "is not one of the values it takes"
    } else {
        "has an invalid value"
    };
    match expected {
        // Serde's expectations name types and allowed values, never the input.
        Some(expected) if !expected.contains('"') => format!("{what}: expected {}", clip(expected)),
        _ => what.to_owned(),
    }
}

fn from_path_error(err: serde_path_to_error::Error<serde_json::Error>, prefix: &str) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let field = join(prefix, &path);
    let text = inner.to_string();
    let without_position = text.split(" at line ").next().unwrap_or(&text).to_owned();
    let described = |f: &str| if f.is_empty() { String::from("the body") } else { format!("`{f}`") };
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            if text.contains("recursion limit") {
                ApiError::new(Code::NestingTooDeep, "The JSON nests deeper than 128 levels.")
            } else {
                ApiError::new(Code::MalformedJson, format!("The body is not valid JSON: {text}."))
            }
        }
        serde_json::error::Category::Data => {
            if without_position.starts_with("unknown field") {
                let name = backticked(&without_position).unwrap_or("?");
                let field = if field.ends_with(name) { field } else { join(&field, name) };
                ApiError::new(
                    Code::UnknownField,
                    format!("`{}` is not a field of this request ({without_position}).", clip(&field)),
                )
                .with_field(field)
            } else if without_position.starts_with("missing field") {
                let name = backticked(&without_position).unwrap_or("?");
                let field = join(&field, name);
                ApiError::new(Code::MissingField, format!("`{}` is required.", clip(&field))).with_field(field)
            } else {
                let error =
                    ApiError::new(Code::InvalidType, format!("{} {}.", described(&field), scrubbed(&without_position)));
                if field.is_empty() { error } else { error.with_field(field) }
            }
        }
    }
}

/// A path segment checked as an id (1–128 printable characters).
pub struct IdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await.map_err(|_| {
                ApiError::new(Code::InvalidPath, "The path is malformed (it must be percent-encoded UTF-8).")
            })?;
        check_path_id(&id, "id")?;
        Ok(IdPath(id))
    }
}

/// Two path segments checked as ids.
pub struct IdPath2(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath2 {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path((a, b)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state).await.map_err(|_| {
                ApiError::new(Code::InvalidPath, "The path is malformed (it must be percent-encoded UTF-8).")
            })?;
        check_path_id(&a, "id")?;
        check_path_id(&b, "item")?;
        Ok(IdPath2(a, b))
    }
}

/// Checks an id from a path or body.
pub fn check_path_id(id: &str, field: &str) -> Result<(), ApiError> {
    attune_core::check_id(id)
        .map_err(|err| ApiError::new(Code::InvalidId, format!("The {field} {err}.")).with_field(field.to_owned()))
}

/// What is wrong with a query string, without echoing its values.
fn query_problem(text: &str) -> String {
    let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(text);
    if let Some(name) = detail.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()) {
        format!("`{}` is not a parameter of this route", clip(name))
    } else if let Some(name) = detail.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
        format!("`{}` is required", clip(name))
    } else {
        format!("a parameter {}", scrubbed(detail))
    }
}

/// A query string parsed into `T`, with our errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await.map_err(|err| {
                ApiError::new(
                    Code::InvalidQuery,
                    format!("The query string is invalid: {}.", query_problem(&err.body_text())),
                )
            })?;
        Ok(ApiQuery(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
        n: Option<u32>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    fn err(body: &str) -> (Code, Option<String>) {
        let e = parse_json::<Outer>(body.as_bytes()).unwrap_err();
        (e.code, e.field)
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(r#"{"items": [{"name": "a"}, {"name": "b", "x": 1}]}"#),
            (Code::UnknownField, Some("items[1].x".into()))
        );
        assert_eq!(err(r#"{"items": [{"n": 1}]}"#), (Code::MissingField, Some("items[0].name".into())));
        assert_eq!(err(r#"{"items": [{"name": 3}]}"#), (Code::InvalidType, Some("items[0].name".into())));
        assert_eq!(err(r#"{"items": [{"name": "a", "n": -1}]}"#), (Code::InvalidType, Some("items[0].n".into())));
        assert_eq!(err(r#"{"items": "#).0, Code::MalformedJson);
        assert_eq!(err(r#"{"items": []} x"#).0, Code::MalformedJson);
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(parse_json::<serde_json::Value>(deep.as_bytes()).unwrap_err().code, Code::NestingTooDeep);
        assert_eq!(err("[]").0, Code::InvalidType);
    }
}
