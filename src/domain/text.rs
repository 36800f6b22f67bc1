//! Human-readable text as the service accepts it: one rule for every name
//! and free-text field, so a terminal escape (`ESC[31m`) or a bidi override
//! (`invoice\u{202e}gnp.exe`, which renders as `invoiceexe.png`) never
//! reaches an operator's screen, a CSV export or an auditor's log.
//!
//! Refused everywhere: C0 controls (U+0000–U+001F, DEL) and C1 controls
//! (U+0080–U+009F), the bidi embeddings and overrides U+202A–U+202E and the
//! bidi isolates U+2066–U+2069. Free text (descriptions, notes) may hold tab
//! and line breaks (LF, CR, U+2028, U+2029); names may not.

/// What kind of text a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// One line: a name, a location, a label. No control character at all.
    Name,
    /// Prose: a description or a note. Tab, line feed and carriage return
    /// are allowed; other controls are not.
    FreeText,
}

/// Why text holding NUL is refused: PostgreSQL `text` and `jsonb` cannot
/// hold it.
pub const NUL_REASON: &str = "must not contain NUL characters";

/// Why a text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("{}", NUL_REASON)]
    Nul,
    #[error("must not contain control characters")]
    Control,
    #[error("must not contain bidirectional override or isolate characters")]
    Bidi,
}

/// Whether `c` reorders the display of the text around it.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Trimmed text of a field, checked: 1 to `max` characters of `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayText(String);

impl DisplayText {
    /// Trims `raw` and checks it; empty after trimming is [`TextError::Empty`].
    pub fn parse(raw: &str, max: usize, kind: TextKind) -> Result<Self, TextError> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(TextError::Empty);
        }
        check(text, max, kind)?;
        Ok(Self(text.to_string()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The checks of [`DisplayText::parse`] on text that is already trimmed
/// (or must be kept as it is).
pub fn check(text: &str, max: usize, kind: TextKind) -> Result<(), TextError> {
    if text.chars().count() > max {
        return Err(TextError::TooLong(max));
    }
    for c in text.chars() {
        if c == '\0' {
            return Err(TextError::Nul);
        }
        if c.is_control() && !(kind == TextKind::FreeText && matches!(c, '\t' | '\n' | '\r')) {
            return Err(TextError::Control);
        }
        if is_bidi_control(c) {
            return Err(TextError::Bidi);
        }
        // U+2028/U+2029 break lines like LF: free text may, names not.
        if kind == TextKind::Name && matches!(c, '\u{2028}' | '\u{2029}') {
            return Err(TextError::Control);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_every_control_and_bidi_character() {
        for bad in [
            "evil\u{1b}[31mred",
            "tab\there",
            "line\nbreak",
            "c1\u{85}x",
            "del\u{7f}",
            "invoice\u{202e}gnp.exe",
            "embed\u{202a}x",
            "isolate\u{2066}x",
            "isolate\u{2069}x",
            "line\u{2028}separator",
            "para\u{2029}graph",
        ] {
            assert!(
                DisplayText::parse(bad, 255, TextKind::Name).is_err(),
                "{bad:?} must be refused"
            );
        }
        assert_eq!(
            DisplayText::parse("a\u{0}b", 255, TextKind::Name),
            Err(TextError::Nul)
        );
        assert_eq!(
            DisplayText::parse("x\u{202e}y", 255, TextKind::Name),
            Err(TextError::Bidi)
        );
    }

    #[test]
    fn free_text_allows_tab_and_line_breaks_only() {
        assert!(DisplayText::parse("a\tb\r\nc", 255, TextKind::FreeText).is_ok());
        assert_eq!(
            DisplayText::parse("a\u{1b}b", 255, TextKind::FreeText),
            Err(TextError::Control)
        );
        assert_eq!(
            DisplayText::parse("a\u{2067}b", 255, TextKind::FreeText),
            Err(TextError::Bidi)
        );
    }

    #[test]
    fn ordinary_text_in_any_script_is_kept_trimmed() {
        let name = DisplayText::parse("  Zoë's 東京 host — 🚀 ", 255, TextKind::Name).expect("ok");
        assert_eq!(name.as_str(), "Zoë's 東京 host — 🚀");
        // Right-to-left text itself is fine; only the override marks are not.
        assert!(DisplayText::parse("שרת ראשי", 255, TextKind::Name).is_ok());
        assert_eq!(
            DisplayText::parse("   ", 255, TextKind::Name),
            Err(TextError::Empty)
        );
        assert_eq!(
            DisplayText::parse("abcd", 3, TextKind::Name),
            Err(TextError::TooLong(3))
        );
    }
}
