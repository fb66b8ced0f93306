//! One API error type and one table of codes. Every error leaves the server as
//! `{"error": {"code", "message", "field"?}}` with the status the table gives its code. Codes are
//! stable: never renamed, listed in the OpenAPI document.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:ident, $doc:literal;)*) => {
        /// Every error code the API returns.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $(#[doc = $doc] $variant,)*
        }

        impl Code {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The snake_case code on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// The HTTP status of the code.
            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status,)* }
            }

            /// What the code means.
            pub fn doc(self) -> &'static str {
                match self { $(Code::$variant => $doc,)* }
            }

        }
    };
}

error_codes! {
    MalformedJson => "malformed_json", BAD_REQUEST, "The body is not valid JSON.";
    NestingTooDeep => "nesting_too_deep", BAD_REQUEST, "The JSON nests deeper than 128 levels.";
    InvalidType => "invalid_type", BAD_REQUEST, "A field has the wrong JSON type or an impossible value.";
    UnknownField => "unknown_field", BAD_REQUEST, "The request has a field the API does not define.";
    MissingField => "missing_field", BAD_REQUEST, "A required field is absent.";
    InvalidId => "invalid_id", BAD_REQUEST, "An id is empty, longer than 128 characters or not printable.";
    InvalidTimestamp => "invalid_timestamp", BAD_REQUEST, "A timestamp is not RFC 3339 or out of range.";
    InvalidSubject => "invalid_subject", BAD_REQUEST, "Exactly one of `user` or `anonymous_id` is required.";
    UnknownEventType => "unknown_event_type", BAD_REQUEST, "The event type is neither built in nor declared.";
    InvalidProperty => "invalid_property", BAD_REQUEST, "An event property has the wrong type or value.";
    InvalidContext => "invalid_context", BAD_REQUEST, "A context field has the wrong type or value.";
    InvalidChannel => "invalid_channel", BAD_REQUEST, "`channel` is not one of `web`, `app`, `email`, `push`, `in_person`, `offline_purchase`.";
    InvalidValue => "invalid_value", BAD_REQUEST, "A field's value is not allowed.";
    InvalidCount => "invalid_count", BAD_REQUEST, "A count or limit is out of range.";
    InvalidScope => "invalid_scope", BAD_REQUEST, "A key scope is not one the API defines.";
    InvalidSchema => "invalid_schema", BAD_REQUEST, "An event schema is not valid.";
    BuiltinType => "builtin_type", BAD_REQUEST, "Built-in event types cannot be redeclared.";
    InvalidIdentify => "invalid_identify", BAD_REQUEST, "An identify call links an id to itself.";
    InvalidQuery => "invalid_query", BAD_REQUEST, "A query parameter is malformed.";
    InvalidPath => "invalid_path", BAD_REQUEST, "A path segment is malformed.";
    InvalidHost => "invalid_host", BAD_REQUEST, "Open mode (no admin key) answers only requests whose `Host` is localhost, 127.x or [::1].";
    Unauthorized => "unauthorized", UNAUTHORIZED, "No API key, or an unknown or revoked one.";
    Forbidden => "forbidden", FORBIDDEN, "The API key lacks the scope this route needs.";
    OriginNotAllowed => "origin_not_allowed", FORBIDDEN, "A browser key was used from a page whose origin is not one of the key's origins.";
    UserTokenRequired => "user_token_required", FORBIDDEN, "A browser key named a known user without `user_token`, the identity token the site's back end signs.";
    InvalidUserToken => "invalid_user_token", FORBIDDEN, "A `user_token` is not valid for this user and browser key, or it expired.";
    BrowserVisitorOnly => "browser_visitor_only", FORBIDDEN, "A browser key acts only for its own anonymous visitor (`anon-` + 32 hex characters, no known person).";
    NotFound => "not_found", NOT_FOUND, "No such route or resource.";
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED, "The route does not accept this method.";
    Conflict => "conflict", CONFLICT, "The request contradicts stored state.";
    IdentityConflict => "identity_conflict", CONFLICT, "`POST /v1/identify` named a known person as `anonymous_id`; only an admin may force that merge.";
    RequestTimeout => "request_timeout", REQUEST_TIMEOUT, "The request body did not arrive within the server's body timeout.";
    PayloadTooLarge => "payload_too_large", PAYLOAD_TOO_LARGE, "The body is larger than the route accepts.";
    TooManyEvents => "too_many_events", PAYLOAD_TOO_LARGE, "A batch holds more than 1,000 events.";
    UnsupportedMediaType => "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "The body is not `application/json`.";
    RateLimited => "rate_limited", TOO_MANY_REQUESTS, "Too many requests for this key; see `Retry-After`.";
    NotReady => "not_ready", SERVICE_UNAVAILABLE, "The server is starting or overloaded.";
    Internal => "internal", INTERNAL_SERVER_ERROR, "Something went wrong on the server; the request may be retried.";
}

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The code.
    pub code: Code,
    /// A sentence a person understands.
    pub message: String,
    /// The field at fault (`events[3].type`), if one is.
    pub field: Option<String>,
    /// Seconds to wait, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), field: None, retry_after: None }
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// A 404 for a resource. The id is not echoed (errors never repeat input values).
    pub fn not_found(what: &str, _id: &str) -> ApiError {
        ApiError::new(Code::NotFound, format!("No such {what}."))
    }

    /// The generic 500: the detail goes to the log, never to the client.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(Code::Internal, "Something went wrong on the server; the request may be retried.")
    }
}

/// Shortens an echoed value so errors never balloon.
pub fn clip(text: &str) -> String {
    if text.chars().count() <= 64 { text.to_owned() } else { text.chars().take(64).collect::<String>() + "…" }
}

/// Every error answer (4xx and 5xx): `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error itself: a stable code, a sentence, and the field at fault if one is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (never renamed); its HTTP status and meaning are listed under
    /// `x-error-codes`.
    pub code: String,
    /// A sentence a person understands.
    pub message: String,
    /// The field at fault (`events[3].type`), if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail { code: self.code.as_str().to_owned(), message: self.message, field: self.field },
        };
        let mut response = (self.code.status(), axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<attune_engine::EngineError> for ApiError {
    fn from(err: attune_engine::EngineError) -> ApiError {
        use attune_engine::{EngineError, Invalid, UserError};
        // Exhaustive: a new engine error or kind does not compile until it has a code here.
        match err {
            EngineError::User(UserError::NotFound { what, id }) => ApiError::not_found(what, &id),
            EngineError::User(UserError::Conflict(message)) => ApiError::new(Code::Conflict, message),
            EngineError::User(UserError::IdentityConflict(message)) => {
                ApiError::new(Code::IdentityConflict, message).with_field("anonymous_id")
            }
            EngineError::User(UserError::Invalid { kind, field, message }) => {
                let code = match kind {
                    Invalid::Id => Code::InvalidId,
                    Invalid::Identify => Code::InvalidIdentify,
                    Invalid::Timestamp => Code::InvalidTimestamp,
                    Invalid::BuiltinType => Code::BuiltinType,
                    Invalid::Value => Code::InvalidValue,
                    Invalid::Count => Code::InvalidCount,
                };
                ApiError { code, message, field, retry_after: None }
            }
            EngineError::Internal(err) => ApiError::internal(err),
        }
    }
}

impl From<attune_engine::UserError> for ApiError {
    fn from(err: attune_engine::UserError) -> ApiError {
        ApiError::from(attune_engine::EngineError::User(err))
    }
}

/// Result with [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_with_an_error_status() {
        let mut seen = std::collections::BTreeSet::new();
        for &code in Code::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            assert!(code.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }

    #[test]
    fn engine_errors_map_to_their_codes() {
        use attune_engine::{EngineError, Invalid, UserError};
        let invalid = |kind| ApiError::from(EngineError::User(UserError::invalid(kind, "f", "m")));
        for (kind, code) in [
            (Invalid::Id, "invalid_id"),
            (Invalid::Identify, "invalid_identify"),
            (Invalid::Timestamp, "invalid_timestamp"),
            (Invalid::BuiltinType, "builtin_type"),
            (Invalid::Value, "invalid_value"),
            (Invalid::Count, "invalid_count"),
        ] {
            let error = invalid(kind);
            assert_eq!((error.code.as_str(), error.field.as_deref()), (code, Some("f")));
            assert_eq!(error.code.status(), StatusCode::BAD_REQUEST);
        }
        let conflict = ApiError::from(EngineError::User(UserError::IdentityConflict("m".into())));
        assert_eq!((conflict.code, conflict.code.status()), (Code::IdentityConflict, StatusCode::CONFLICT));
        let missing = ApiError::from(EngineError::User(UserError::not_found("item", "x")));
        assert_eq!(missing.code, Code::NotFound);
        let internal = ApiError::from(EngineError::Internal(attune_store::StoreError::Backend("down".into())));
        assert_eq!((internal.code, internal.message.contains("down")), (Code::Internal, false));
    }
}
