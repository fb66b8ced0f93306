//! Route handlers, one module per area of `API.md`.

pub mod admin;
pub mod backup;
pub mod catalog;
pub mod decide;
pub mod digest;
pub mod editorial;
pub mod events;
pub mod experiments;
pub mod health;
pub mod measure;
pub mod models;
pub mod privacy;
pub mod users;

use serde_json::{Map, Value};

use crate::error::{ApiError, Code};

/// Checks a list of tags: each 1–64 printable characters, at most `max` of them.
pub(crate) fn check_tags(tags: &[String], field: &str, max: usize) -> Result<(), ApiError> {
    if tags.len() > max {
        return Err(ApiError::new(Code::InvalidValue, format!("`{field}` holds at most {max} tags.")).with_field(field));
    }
    for (i, tag) in tags.iter().enumerate() {
        let n_chars = tag.chars().count();
        if n_chars == 0 || n_chars > 64 || tag.chars().any(char::is_control) {
            return Err(ApiError::new(Code::InvalidValue, "A tag is 1–64 printable characters.")
                .with_field(format!("{field}[{i}]")));
        }
    }
    Ok(())
}

/// Parses a channel's wire name (`web`, `app`, `email`, `push`, `in_person`, `offline_purchase`).
pub(crate) fn parse_channel(name: &str, field: &str) -> Result<attune_core::Channel, ApiError> {
    attune_core::Channel::parse(name).ok_or_else(|| {
        ApiError::new(Code::InvalidChannel, format!("`{field}` is one of {}.", attune_core::Channel::names()))
            .with_field(field)
    })
}

/// Checks a free-form object's size: JSON text of at most `max_bytes`.
pub(crate) fn check_object_size(object: &Map<String, Value>, field: &str, max_bytes: usize) -> Result<(), ApiError> {
    let size = serde_json::to_vec(object).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > max_bytes {
        return Err(ApiError::new(Code::InvalidValue, format!("`{field}` is larger than {max_bytes} bytes of JSON."))
            .with_field(field));
    }
    Ok(())
}

/// Formats ms since the epoch as RFC 3339.
pub(crate) fn rfc3339(ms: i64) -> String {
    attune_engine::clock::rfc3339(ms)
}
