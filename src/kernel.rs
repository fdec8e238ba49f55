//! Kernel releases as `uname -r` prints them, parsed in full, and compared with
//! rpm's version comparison rules.
//!
//! The seed check script extracted `5.10.134-18.0` from
//! `5.10.134-18.0.1.lifsea8.x86_64` with a regex; here the whole release is
//! kept (`18.0.1`), with the dist tag (`lifsea8`) and arch beside it.

use serde::{Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;

/// Architectures that may end an rpm-style kernel release.
const RPM_ARCHES: &[&str] = &[
    "x86_64",
    "aarch64",
    "i686",
    "i386",
    "ppc64le",
    "s390x",
    "noarch",
    "loongarch64",
    "riscv64",
];
/// Architectures (kernel flavours) that end a Debian-style kernel release.
const DEB_ARCHES: &[&str] = &[
    "amd64",
    "arm64",
    "armmp",
    "armmp-lpae",
    "686",
    "686-pae",
    "powerpc64le",
    "s390x",
    "marvell",
    "rpi",
    "loong64",
    "riscv64",
];

/// A parsed kernel release such as `3.10.0-1062.9.1.el7.x86_64` or `6.1.0-56-amd64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelRelease {
    raw: String,
    /// Upstream version, e.g. `5.10.134`.
    pub version: String,
    /// Vendor release without the dist tag, e.g. `18.0.1` or `56`.
    pub release: String,
    /// RPM dist tag, e.g. `el7`, `al8`, `lifsea8`, `el8_5`; `None` for Debian.
    pub dist: Option<String>,
    /// Architecture, e.g. `x86_64` or `amd64`; `None` when the string had none.
    pub arch: Option<String>,
    /// Debian featureset between release and arch, e.g. `cloud` or `rt`.
    pub variant: Option<String>,
    /// Distribution family the release belongs to.
    pub flavor: Flavor,
}

/// The kernel family a release belongs to: its dist tag, or the Debian
/// release format. Which distro owns a flavour is data (`dists` in
/// `src/distros/*.toml`, [`crate::distro::Distro::owns`]), so no distro is
/// named here and a new dist tag needs no variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// An RPM dist tag with the `_M` minor suffix dropped: `el7`, `al8`,
    /// `lifsea8` (`el8_5` gives `el8`).
    Dist(String),
    /// The Debian release format (`6.1.0-56-amd64`: no dist tag).
    Debian,
    /// A bare `version-release` with no dist tag, as in recipe range bounds.
    Unknown,
}

impl Flavor {
    /// The short name used in recipes and node output: `el7`, `al8`, `lifsea8`, `debian`.
    pub fn name(&self) -> String {
        match self {
            Flavor::Dist(s) => s.clone(),
            Flavor::Debian => "debian".into(),
            Flavor::Unknown => "unknown".into(),
        }
    }

    /// The flavour of an RPM dist tag.
    pub fn dist(dist: &str) -> Flavor {
        Flavor::Dist(dist.split('_').next().unwrap_or(dist).to_string())
    }
}

impl Serialize for Flavor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Why a kernel release string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid kernel release {input:?}: {reason}")]
pub struct ParseKernelError {
    pub input: String,
    pub reason: String,
}

impl KernelRelease {
    /// Parse a full release (`uname -r`), or a bare `version-release` bound
    /// such as `5.10.134-19.1`.
    pub fn parse(input: &str) -> Result<Self, ParseKernelError> {
        let err = |reason: &str| ParseKernelError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() || input.len() > 128 {
            return Err(err("must be 1 to 128 characters"));
        }
        if let Some(c) = input
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '~')))
        {
            return Err(err(&format!("contains {c:?}")));
        }
        let (version, rest) = input
            .split_once('-')
            .ok_or_else(|| err("no '-' between version and release"))?;
        if version.is_empty()
            || !version
                .split('.')
                .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err("version must be dot-separated numbers, e.g. 5.10.134"));
        }
        if version.split('.').count() < 2 {
            return Err(err("version needs at least major.minor"));
        }
        let mut k =
            if rest.contains('-') || DEB_ARCHES.iter().any(|a| rest.ends_with(&format!("-{a}"))) {
                Self::parse_debian(rest).map_err(|r| err(&r))?
            } else {
                Self::parse_rpm(rest).map_err(|r| err(&r))?
            };
        k.raw = input.to_string();
        k.version = version.to_string();
        Ok(k)
    }

    fn empty() -> Self {
        KernelRelease {
            raw: String::new(),
            version: String::new(),
            release: String::new(),
            dist: None,
            arch: None,
            variant: None,
            flavor: Flavor::Unknown,
        }
    }

    /// `56-amd64`, `56-cloud-amd64`.
    fn parse_debian(rest: &str) -> Result<Self, String> {
        let (release, tail) = rest
            .split_once('-')
            .ok_or("Debian release needs an ABI number and an arch")?;
        if release.is_empty() || !release.bytes().all(|b| b.is_ascii_digit()) {
            return Err("Debian ABI number must be digits, e.g. 6.1.0-56-amd64".into());
        }
        let (variant, arch) = match DEB_ARCHES
            .iter()
            .filter(|a| tail == **a || tail.ends_with(&format!("-{a}")))
            .max_by_key(|a| a.len())
        {
            Some(a) if tail == *a => (None, a.to_string()),
            Some(a) => (
                Some(tail[..tail.len() - a.len() - 1].to_string()),
                a.to_string(),
            ),
            None => return Err(format!("unknown Debian kernel arch in {tail:?}")),
        };
        if let Some(v) = &variant {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("bad Debian featureset {v:?}"));
            }
        }
        Ok(KernelRelease {
            release: release.into(),
            arch: Some(arch),
            variant,
            flavor: Flavor::Debian,
            ..Self::empty()
        })
    }

    /// `1062.9.1.el7.x86_64`, `18.0.1.lifsea8.x86_64`, `19.1` (bare bound).
    fn parse_rpm(rest: &str) -> Result<Self, String> {
        let mut tokens: Vec<&str> = rest.split('.').collect();
        if tokens.iter().any(|t| t.is_empty()) {
            return Err("empty component between dots".into());
        }
        let arch = match tokens.last() {
            Some(last) if RPM_ARCHES.contains(last) && tokens.len() > 1 => {
                tokens.pop().map(str::to_string)
            }
            _ => None,
        };
        // The dist tag is the first token that starts with a letter (el7, al8, el8_5).
        let dist_at = tokens
            .iter()
            .position(|t| t.starts_with(|c: char| c.is_ascii_alphabetic()));
        let (release, dist) = match dist_at {
            Some(0) => return Err("release must start with a number".into()),
            Some(i) => (tokens[..i].join("."), Some(tokens[i..].join("."))),
            None => (tokens.join("."), None),
        };
        if release.is_empty() {
            return Err("empty release".into());
        }
        let flavor = dist.as_deref().map(Flavor::dist).unwrap_or(Flavor::Unknown);
        Ok(KernelRelease {
            release,
            dist,
            arch,
            flavor,
            ..Self::empty()
        })
    }

    /// The string as given (`uname -r`).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// `version-release`, e.g. `5.10.134-18.0.1` (no dist, no arch).
    pub fn version_release(&self) -> String {
        format!("{}-{}", self.version, self.release)
    }

    /// The part a hotfix package name carries: `5.10.134-18` for
    /// `5.10.134-18.al8.x86_64`, `6.1.0-56` for Debian.
    pub fn package_suffix(&self) -> String {
        self.version_release()
    }

    /// True when this is a bare `version-release` without dist or arch.
    pub fn is_bare(&self) -> bool {
        self.dist.is_none() && self.arch.is_none() && self.flavor == Flavor::Unknown
    }

    /// Compare version then release with rpm's rules, ignoring dist and arch.
    /// This is how inclusive ranges such as `5.10.134-15 ..= 5.10.134-19.1`
    /// are evaluated.
    pub fn cmp_version_release(&self, other: &KernelRelease) -> Ordering {
        rpmvercmp(&self.version, &other.version)
            .then_with(|| rpmvercmp(&self.release, &other.release))
    }
}

impl fmt::Display for KernelRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for KernelRelease {
    type Err = ParseKernelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KernelRelease::parse(s)
    }
}

impl Serialize for KernelRelease {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for KernelRelease {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KernelRelease::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl PartialOrd for KernelRelease {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Total order: version-release by rpm rules, then the raw string so that
/// distinct releases never compare equal.
impl Ord for KernelRelease {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_version_release(other)
            .then_with(|| self.raw.cmp(&other.raw))
    }
}

/// rpm's `rpmvercmp`: compare two version (or release) strings segment by
/// segment. Digits compare numerically (leading zeros ignored), letters
/// lexically, a numeric segment beats an alphabetic one, `~` sorts before
/// anything (even the end), `^` sorts after the end but before anything else.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if i >= a.len() || j >= b.len() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let class = |c: u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let (si, sj) = (i, j);
        while i < a.len() && class(a[i]) {
            i += 1;
        }
        while j < b.len() && class(b[j]) {
            j += 1;
        }
        if sj == j {
            // Segments of different kinds: numeric is newer than alphabetic.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut sa, mut sb) = (&a[si..i], &b[sj..j]);
        if numeric {
            while sa.len() > 1 && sa[0] == b'0' {
                sa = &sa[1..];
            }
            while sb.len() > 1 && sb[0] == b'0' {
                sb = &sb[1..];
            }
            // rpm strips all leading zeros; "0" and "" compare via length below.
            if sa == b"0" {
                sa = b"";
            }
            if sb == b"0" {
                sb = b"";
            }
            match sa.len().cmp(&sb.len()) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        match sa.cmp(sb) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    if i >= a.len() && j >= b.len() {
        return Ordering::Equal;
    }
    if i < a.len() {
        Ordering::Greater
    } else {
        Ordering::Less
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> KernelRelease {
        KernelRelease::parse(s).unwrap()
    }

    #[test]
    fn parses_el7() {
        let r = k("3.10.0-1062.9.1.el7.x86_64");
        assert_eq!(r.version, "3.10.0");
        assert_eq!(r.release, "1062.9.1");
        assert_eq!(r.dist.as_deref(), Some("el7"));
        assert_eq!(r.arch.as_deref(), Some("x86_64"));
        assert_eq!(r.flavor, Flavor::dist("el7"));
    }

    #[test]
    fn parses_al8_and_lifsea8_in_full() {
        let r = k("5.10.134-18.al8.x86_64");
        assert_eq!(
            (r.release.as_str(), r.flavor.clone()),
            ("18", Flavor::dist("al8"))
        );
        let r = k("5.10.134-18.0.1.lifsea8.x86_64");
        assert_eq!(
            r.release, "18.0.1",
            "the seed script's regex cut this to 18.0"
        );
        assert_eq!(r.flavor, Flavor::dist("lifsea8"));
        assert_eq!(r.version_release(), "5.10.134-18.0.1");
        let r = k("5.10.134-19.1.al8.x86_64");
        assert_eq!(r.release, "19.1");
    }

    #[test]
    fn parses_debian() {
        let r = k("6.1.0-56-amd64");
        assert_eq!((r.version.as_str(), r.release.as_str()), ("6.1.0", "56"));
        assert_eq!(r.arch.as_deref(), Some("amd64"));
        assert_eq!(r.flavor, Flavor::Debian);
        let r = k("6.1.0-56-cloud-amd64");
        assert_eq!(r.variant.as_deref(), Some("cloud"));
        let r = k("6.1.0-13-686-pae");
        assert_eq!(r.arch.as_deref(), Some("686-pae"));
        assert_eq!(r.variant, None);
    }

    #[test]
    fn parses_bare_bounds() {
        let r = k("5.10.134-19.1");
        assert!(r.is_bare());
        assert_eq!(r.release, "19.1");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "5.10.134",
            "x.y-1",
            "5.10.134-",
            "5.10.134-18..al8",
            "5.10.134-18 al8",
            "5.10.134-$(id)",
            "5-1",
            "5.10.134-al8",
        ] {
            assert!(
                KernelRelease::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn range_order() {
        let lo = k("5.10.134-15");
        let hi = k("5.10.134-19.1");
        let inside = |s: &str| {
            let x = k(s);
            x.cmp_version_release(&lo) != Ordering::Less
                && x.cmp_version_release(&hi) != Ordering::Greater
        };
        assert!(inside("5.10.134-15.al8.x86_64"));
        assert!(inside("5.10.134-18.0.1.lifsea8.x86_64"));
        assert!(inside("5.10.134-19.1.al8.x86_64"));
        assert!(!inside("5.10.134-19.2.al8.x86_64"));
        assert!(!inside("5.10.134-14.al8.x86_64"));
        assert!(!inside("5.10.134-19.1.1.al8.x86_64"));
    }

    #[test]
    fn vercmp_basics() {
        use Ordering::*;
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("1.0010", "1.9", Greater),
            ("1.05", "1.5", Equal),
            ("1.0", "1", Greater),
            ("2.50", "2.5", Greater),
            ("fc4", "fc.4", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.01", Less),
            ("1.0a", "1.0", Greater),
            ("a", "1", Less),
            ("1.0", "1.0.a", Less),
        ] {
            assert_eq!(rpmvercmp(a, b), o, "{a} vs {b}");
        }
    }
}
