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

/// The caller's fault, with a stable code.
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
    /// The request is invalid.
    #[error("{message}")]
    Invalid {
        /// A stable snake_case code.
        code: &'static str,
        /// The field at fault, if one is.
        field: Option<String>,
        /// A sentence a person understands.
        message: String,
    },
}

impl UserError {
    /// An invalid-field error.
    pub fn invalid(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> UserError {
        UserError::Invalid { code, field: Some(field.into()), message: message.into() }
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
