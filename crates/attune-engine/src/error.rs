//! Engine errors, split as the caller needs them: the client's fault (a 4xx) or ours (a 5xx).

use attune_store::StoreError;

/// An engine failure.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The caller asked for something impossible or unknown.
    #[error(transparent)]
    User(#[from] UserError),
    /// Storage failed; the request may be retried.
    #[error(transparent)]
    Internal(#[from] StoreError),
}

/// The caller's fault. Each variant (and each [`Invalid`] kind) is one code of the API's error
/// table; the server maps them with an exhaustive `match`, so a new one cannot slip through as
/// another code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// No such thing.
    #[error("{what} `{id}` is not known")]
    NotFound {
        /// What kind of thing (`item`, `user`, ...).
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The request contradicts stored state.
    #[error("{0}")]
    Conflict(String),
    /// `identify` named a known person as the anonymous id (only an admin may force that merge).
    #[error("{0}")]
    IdentityConflict(String),
    /// The request is invalid.
    #[error("{message}")]
    Invalid {
        /// What is wrong, as a stable code.
        kind: Invalid,
        /// The field at fault, if one is.
        field: Option<String>,
        /// A sentence a person understands.
        message: String,
    },
}

/// What is wrong with an invalid request (each kind is one code of the API's error table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// An id is empty, too long or not printable (`invalid_id`).
    Id,
    /// An identify call links an id to itself (`invalid_identify`).
    Identify,
    /// A time is out of range (`invalid_timestamp`).
    Timestamp,
    /// A built-in event type cannot be redeclared (`builtin_type`).
    BuiltinType,
    /// A value is not allowed (`invalid_value`).
    Value,
    /// A count or limit is out of range (`invalid_count`).
    Count,
}

impl UserError {
    /// An invalid-field error.
    pub fn invalid(kind: Invalid, field: impl Into<String>, message: impl Into<String>) -> UserError {
        UserError::Invalid { kind, field: Some(field.into()), message: message.into() }
    }

    /// A not-found error.
    pub fn not_found(what: &'static str, id: impl Into<String>) -> UserError {
        UserError::NotFound { what, id: id.into() }
    }
}

/// Result with [`EngineError`].
pub type Result<T> = std::result::Result<T, EngineError>;

pub(crate) fn corrupt(what: &'static str, err: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(StoreError::Corrupt { what, detail: err.to_string() })
}
