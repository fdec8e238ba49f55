//! Recipe text on its way to a node: what may pass into the generated script,
//! the DaemonSet manifest and the verdict line.
//!
//! Recipe lint refuses ASCII control characters; this module refuses, again
//! and more widely, everything that is not printable text on one line:
//! control characters (C0, DEL, C1 including NEL U+0085), the Unicode line and
//! paragraph separators U+2028/U+2029 (YAML 1.1 and many terminals treat them
//! as line breaks), format characters (zero-width, bidirectional overrides,
//! BOM), private-use characters and noncharacters. The script and manifest
//! quote every value anyway; this keeps a value from *looking* like more than
//! one line or like different text once printed.

/// Is `c` a character that does not print as itself on one line?
pub fn is_non_printing(c: char) -> bool {
    let u = c as u32;
    c.is_control()
        || matches!(u, 0x2028 | 0x2029)
        || is_format(u)
        || (0xE000..=0xF8FF).contains(&u)
        || (0xF0000..=0x10FFFF).contains(&u)
        || (0xFDD0..=0xFDEF).contains(&u)
        || (u & 0xFFFE) == 0xFFFE
}

/// Unicode general category Cf (format), as of Unicode 15.
fn is_format(u: u32) -> bool {
    matches!(
        u,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// A recipe message that reaches a node: at most 512 bytes, printable, one
/// line. Returns a one-line reason (naming the character by its code point).
pub fn printable_line(what: &str, value: &str) -> Result<(), String> {
    if value.len() > 512 {
        return Err(format!("{what} is longer than 512 characters"));
    }
    if let Some(c) = value.chars().find(|&c| is_non_printing(c)) {
        return Err(format!(
            "{what} contains U+{:04X}, a non-printing character (line or paragraph separator, control or format character)",
            c as u32
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_format_characters_are_refused() {
        for c in [
            '\n', '\r', '\u{85}', '\u{2028}', '\u{2029}', '\u{202E}', '\u{200B}', '\u{FEFF}',
            '\u{E000}', '\u{FFFF}', '\u{7F}', '\u{1B}',
        ] {
            let s = format!("a{c}b");
            assert!(printable_line("m", &s).is_err(), "{:?} accepted", c);
        }
        for ok in [
            "upgrade to 5.10.134-19",
            "café — 中文 ✓",
            "a\u{A0}b",
            "$(id) `x` '\"",
        ] {
            assert!(printable_line("m", ok).is_ok(), "{ok:?} refused");
        }
    }

    #[test]
    fn refusal_names_the_code_point() {
        let e = printable_line("message", "x\u{2028}y").unwrap_err();
        assert!(e.contains("U+2028"), "{e}");
    }
}
