//! Validation for every value that reaches a path, a shell script or a package
//! name. Each function returns the value unchanged or a one-line reason.

use std::path::{Component, Path};

/// Characters allowed in RPM name/version/release fields and in file names we
/// derive from them: no whitespace, no shell metacharacters, no path separators.
pub fn package_token(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.len() > 128 {
        return Err(format!("{what} is longer than 128 characters"));
    }
    if value.starts_with(['-', '.']) {
        return Err(format!("{what} {value:?} must not start with '-' or '.'"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
    {
        return Err(format!(
            "{what} {value:?} contains {c:?}; only ASCII letters, digits, '.', '_', '+' and '-' are allowed"
        ));
    }
    Ok(())
}

/// A name safe as a single path component, a shell word and a kernel module
/// name: `[A-Za-z0-9_-]`, starting with a letter or digit.
pub fn identifier(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.len() > 64 {
        return Err(format!("{what} is longer than 64 characters"));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{what} {value:?} must start with a letter or digit"
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(format!(
            "{what} {value:?} contains {c:?}; only ASCII letters, digits, '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// A relative path that stays inside its base: no absolute paths, no `..`,
/// no empty components, no NUL.
pub fn relative_path(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.contains('\0') {
        return Err(format!("{what} contains a NUL byte"));
    }
    let p = Path::new(value);
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!("{what} {value:?} contains '..' (path traversal)"))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "{what} {value:?} is absolute; use a path relative to the recipe"
                ))
            }
        }
    }
    Ok(())
}

/// An absolute host path used by node checks (e.g. `/sys/fs/bpf/...`): must be
/// absolute, no `..`, and only characters that need no quoting anywhere.
pub fn host_path(what: &str, value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err(format!("{what} {value:?} must be an absolute path"));
    }
    if value.split('/').any(|c| c == "..") {
        return Err(format!("{what} {value:?} contains '..'"));
    }
    if let Some(c) = value.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | '@'))
    }) {
        return Err(format!(
            "{what} {value:?} contains {c:?}, which is not allowed in a host path"
        ));
    }
    Ok(())
}

/// Free text that ends up in scripts or messages: printable, one line, no
/// control characters. (Scripts still quote it; this keeps output sane.)
pub fn message(what: &str, value: &str) -> Result<(), String> {
    if value.len() > 512 {
        return Err(format!("{what} is longer than 512 characters"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!("{what} contains the control character {c:?}"));
    }
    Ok(())
}

/// Quote a string for POSIX sh: single quotes, with embedded single quotes
/// written as `'\''`. Safe for any input, including newlines.
pub fn sh_quote(value: &str) -> String {
    if !value.is_empty()
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | '=' | '@' | ',')
        })
    {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_tokens() {
        assert!(package_token("id", "22519882").is_ok());
        assert!(package_token("v", "5.10.134-18").is_ok());
        assert!(package_token("v", "a b").is_err());
        assert!(package_token("v", "a;b").is_err());
        assert!(package_token("v", "-rf").is_err());
        assert!(package_token("v", "").is_err());
    }

    #[test]
    fn relative_paths() {
        assert!(relative_path("p", "patches/x.patch").is_ok());
        assert!(relative_path("p", "../x").is_err());
        assert!(relative_path("p", "a/../../x").is_err());
        assert!(relative_path("p", "/etc/passwd").is_err());
    }

    #[test]
    fn host_paths() {
        assert!(host_path("p", "/sys/fs/bpf/tc/globals/cilium_ct4_global").is_ok());
        assert!(host_path("p", "/.lifsea/rootfs/sys").is_ok());
        assert!(host_path("p", "/a/$(id)").is_err());
        assert!(host_path("p", "/a/../b").is_err());
        assert!(host_path("p", "rel").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("abc"), "abc");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a'b"), "'a'\\''b'");
        assert_eq!(sh_quote("$(id)"), "'$(id)'");
    }
}
