//! Identifiers: every id in Attune is a string of 1 to 128 printable characters. Characters that
//! change how text around them is shown without showing themselves — bidirectional controls
//! (`u-\u{202E}mitciv` renders as `u-victim`), zero-width characters, other invisible format
//! characters — are not printable here: an id must read as what it is in the audit log and the
//! console.

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
        if ch.is_control() || is_invisible(ch) {
            return Err(IdError::NotPrintable);
        }
    }
    Ok(())
}

/// Bidirectional controls, zero-width and other invisible format characters (Unicode category
/// Cf, plus the ones that render as nothing).
fn is_invisible(ch: char) -> bool {
    matches!(ch,
        '\u{00AD}'                  // soft hyphen
        | '\u{034F}'                // combining grapheme joiner
        | '\u{061C}'                // Arabic letter mark
        | '\u{115F}' | '\u{1160}'    // Hangul fillers
        | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'   // Mongolian variation selectors and vowel separator
        | '\u{200B}'..='\u{200F}'   // zero-width space, joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}'   // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}'   // word joiner, invisible operators, bidi isolates
        | '\u{3164}'                // Hangul filler
        | '\u{FE00}'..='\u{FE0F}'   // variation selectors
        | '\u{FEFF}'                // zero-width no-break space (BOM)
        | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'   // interlinear annotation
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E007F}' // tags
        | '\u{E0100}'..='\u{E01EF}' // variation selectors supplement
    )
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

    #[test]
    fn ids_refuse_bidi_and_zero_width_characters() {
        for id in ["u-\u{202E}mitciv", "u\u{200B}-1", "u-\u{2066}1\u{2069}", "\u{FEFF}u-1", "u\u{200D}1", "u\u{061C}1"]
        {
            assert_eq!(check_id(id), Err(IdError::NotPrintable), "{id:?}");
        }
        assert_eq!(check_id("Łódź-ünïcode-名前"), Ok(()));
    }
}
