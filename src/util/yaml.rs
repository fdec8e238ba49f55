//! The one YAML writer: every manifest khotfix emits (the node DaemonSet,
//! the Kubernetes Jobs of `plan --format k8s`) goes through [`stream`], so
//! no recipe or plan string can become YAML structure.
//!
//! Every string value is a double-quoted scalar, and so is every mapping key
//! that is not a plain identifier or that YAML 1.1 reads as a boolean or null
//! (`yes`, `on`, `n`, …): Kubernetes' parser is YAML 1.1, where a bare `on`
//! is `true`. Inside the quotes, everything outside YAML's printable set and
//! the characters YAML treats as line breaks (NEL, U+2028, U+2029) are
//! written as `\uXXXX` escapes, so no parser folds or splits a value.
//! Finally the stream is read back (serde_norway) and must equal the
//! objects it was made from: a manifest that would mean anything else is an
//! internal error instead of output.

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Documents as a YAML stream (`---` before each), checked by reading it back.
pub fn stream(docs: &[Value]) -> Result<String> {
    use serde::Deserialize;
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        emit(d, 0, &mut out);
    }
    let mut back = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&out) {
        back.push(Value::deserialize(doc).context("reading the manifest back")?);
    }
    if back != docs {
        bail!("internal: the YAML manifest does not read back as the objects it was made from");
    }
    Ok(out)
}

/// A double-quoted YAML scalar for `s` (see the module doc).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// YAML's printable set, minus the characters it reads as line breaks.
fn printable(c: char) -> bool {
    matches!(c as u32,
        0x20..=0x7e | 0xa0..=0x2027 | 0x202a..=0xd7ff | 0xe000..=0xfefe | 0xff00..=0xfffd | 0x10000..=0x10ffff)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(quote(s)),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(m) if m.is_empty() => Some("{}".into()),
        _ => None,
    }
}

/// A mapping key: bare when it cannot be read as anything but a string
/// (starts with a letter, no YAML 1.1 boolean/null words), quoted otherwise.
fn key(k: &str) -> String {
    const WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let bare = k.starts_with(|c: char| c.is_ascii_alphabetic())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !WORDS.contains(&k.to_ascii_lowercase().as_str());
    if bare {
        k.to_string()
    } else {
        quote(k)
    }
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                match scalar(v) {
                    Some(s) => out.push_str(&format!("{pad}{}: {s}\n", key(k))),
                    None => {
                        out.push_str(&format!("{pad}{}:\n", key(k)));
                        emit(v, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        // Render the item two deeper, then put the dash in
                        // place of the first line's extra indentation.
                        let mut inner = String::new();
                        emit(item, indent + 2, &mut inner);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&inner[indent + 2..]);
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other).unwrap_or_default());
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_yaml_1_1_words_stay_strings() {
        let v = serde_json::json!({
            "yes": "on", "on": ["off", "y"], "msg": "a\u{2028}b\u{2029}c\u{85}d\u{7f}e\u{feff}",
            "k: v": "- x\n---\n...", "n": null
        });
        let y = stream(std::slice::from_ref(&v)).unwrap();
        assert!(y.contains("\"yes\": \"on\""), "{y}");
        assert!(
            y.contains("\\u2028") && y.contains("\\u2029") && y.contains("\\u0085"),
            "{y}"
        );
        assert!(
            !y.contains('\u{2028}') && !y.contains('\u{85}') && !y.contains('\u{7f}'),
            "{y}"
        );
        assert_eq!(y.lines().filter(|l| *l == "---").count(), 1, "{y}");
    }
}
