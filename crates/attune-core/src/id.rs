//! Identifiers: every id in Attune is a string of 1 to 128 printable characters.

/// The longest id accepted, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// Why an id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("must not be empty")]
    Empty,
    /// The id has more than [`MAX_ID_CHARS`] characters.
    #[error("must be at most 128 characters")]
    TooLong,
    /// The id holds a control character (newline, tab, NUL, ...).
    #[error("must hold printable characters only")]
    NotPrintable,
}

/// Checks that `id` is 1 to 128 printable characters.
pub fn check_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    let mut n_chars = 0usize;
    for ch in id.chars() {
        n_chars += 1;
        if n_chars > MAX_ID_CHARS {
            return Err(IdError::TooLong);
        }
        if ch.is_control() {
            return Err(IdError::NotPrintable);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(check_id("u-42"), Ok(()));
        assert_eq!(check_id("ü".repeat(128).as_str()), Ok(()));
        assert_eq!(check_id(""), Err(IdError::Empty));
        assert_eq!(check_id(&"x".repeat(129)), Err(IdError::TooLong));
        assert_eq!(check_id("a\nb"), Err(IdError::NotPrintable));
        assert_eq!(check_id("a\u{0}"), Err(IdError::NotPrintable));
    }
}
