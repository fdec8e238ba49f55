//! `khotfix node script RECIPE`: a standalone POSIX sh script with the same
//! check and apply logic as `node check` / `node apply`, for cloud-init user
//! data or a cloud assistant where no khotfix binary is installed.
//!
//! Safety: every recipe value that reaches the script is validated again here
//! (identifiers, host paths, kernel releases, one-line printable messages:
//! [`text::printable_line`]) and written only as a single-quoted sh word
//! ([`sh_quote`]); recipe text never reaches a comment, an `echo`, an awk
//! program or a here-document. The template's `@@NAME@@` placeholders are
//! filled in one pass ([`fill`]), so a value that contains a placeholder name
//! is never expanded again. Output uses `printf '%s'`, so backslashes in
//! messages are not interpreted.
//!
//! Host reads follow the rules of [`super::root`]: links resolved as in a
//! chroot (`in_root`), only regular files read, each with the same size limit
//! as `node check` (`file_at`, `head -c`), and the rpm database queried on a
//! private copy so that nothing under the root is written.
//!
//! Version comparison: the node's kernel is only known at run time, so the
//! script carries a small awk implementation of rpmvercmp (numeric segments
//! compared as numbers of any length, alphabetic segments lexically, numeric
//! newer than alphabetic, separators ignored, `~` sorts first, `^` after the
//! end) and of the kernel release parser in `crate::kernel`. Limits: releases
//! are restricted to `[A-Za-z0-9._+~-]` (anything else is an error, as in
//! the Rust parser); awk compares under `LC_ALL=C`.
//!
//! Script usage: `sh hotfix.sh [-y] [-r ROOT] [-t SECONDS]`; `KHOTFIX_ROOT`
//! and `KHOTFIX_TIMEOUT` are the environment equivalents. Exit codes are
//! those of `node check` (dry run) and `node apply` (`-y`).

use super::check::{affected_set, covered_flavors};
use super::root::{MODULES_CAP, RPMDB_CAP, VALUE_CAP};
use super::text;
use crate::kernel::KernelRelease;
use crate::recipe::Recipe;
use crate::util::validate::{self, sh_quote};
use anyhow::{bail, Result};

/// The kernel-release parser and rpmvercmp in POSIX awk. Reads the release
/// from `ENVIRON["KHOTFIX_REL"]`, ranges from `KHOTFIX_RANGES` (groups of
/// four words: from-version from-release to-version to-release) and single
/// kernels from `KHOTFIX_KERNELS` (groups of three: `b VERSION RELEASE` for a
/// bare version-release, `f RAW -` for an exact release). Prints
/// `ok|RELEASE|FLAVOR|VERSION|RELEASE_PART|AFFECTED` or `err|MESSAGE`.
const AWK_PROGRAM: &str = r#"
function isdigit(c) { return c ~ /^[0-9]$/ }
function isalpha(c) { return c ~ /^[A-Za-z]$/ }
function issep(c) { return c !~ /^[A-Za-z0-9~^]$/ }
function vercmp(a, b,    i, j, la, lb, ca, cb, si, sj, sa, sb, num) {
  if (("x" a) == ("x" b)) return 0
  i = 1; j = 1; la = length(a); lb = length(b)
  while (i <= la || j <= lb) {
    while (i <= la && issep(substr(a, i, 1))) i++
    while (j <= lb && issep(substr(b, j, 1))) j++
    ca = (i <= la) ? substr(a, i, 1) : ""
    cb = (j <= lb) ? substr(b, j, 1) : ""
    if (ca == "~" || cb == "~") {
      if (ca != "~") return 1
      if (cb != "~") return -1
      i++; j++; continue
    }
    if (ca == "^" || cb == "^") {
      if (ca == "") return -1
      if (cb == "") return 1
      if (ca != "^") return 1
      if (cb != "^") return -1
      i++; j++; continue
    }
    if (i > la || j > lb) break
    num = isdigit(ca)
    si = i; sj = j
    if (num) {
      while (i <= la && isdigit(substr(a, i, 1))) i++
      while (j <= lb && isdigit(substr(b, j, 1))) j++
    } else {
      while (i <= la && isalpha(substr(a, i, 1))) i++
      while (j <= lb && isalpha(substr(b, j, 1))) j++
    }
    if (sj == j) return num ? 1 : -1
    sa = substr(a, si, i - si); sb = substr(b, sj, j - sj)
    if (num) {
      sub(/^0+/, "", sa); sub(/^0+/, "", sb)
      if (length(sa) != length(sb)) return (length(sa) < length(sb)) ? -1 : 1
    }
    if (("x" sa) != ("x" sb)) return (("x" sa) < ("x" sb)) ? -1 : 1
  }
  if (i > la && j > lb) return 0
  return (i <= la) ? 1 : -1
}
function vrcmp(v1, r1, v2, r2,    c) {
  c = vercmp(v1, v2)
  if (c != 0) return c
  return vercmp(r1, r2)
}
function isrpmarch(a) {
  return a ~ /^(x86_64|aarch64|i686|i386|ppc64le|s390x|noarch|loongarch64|riscv64)$/
}
function isdebarch(a) {
  return a ~ /^(amd64|arm64|armmp|armmp-lpae|686|686-pae|powerpc64le|s390x|marvell|rpi|loong64|riscv64)$/
}
# Sets V, R, FL; returns "" or why the release is refused.
function parse(s,    p, rest, n, t, i, last, d, base, tail, a, best, v) {
  if (s == "" || length(s) > 128) return "must be 1 to 128 characters"
  if (s ~ /[^A-Za-z0-9._+~-]/) return "contains a character outside [A-Za-z0-9._+~-]"
  p = index(s, "-")
  if (p == 0) return "no dash between version and release"
  V = substr(s, 1, p - 1); rest = substr(s, p + 1)
  if (rest == "") return "empty release"
  if (V !~ /^[0-9]+(\.[0-9]+)*$/) return "version must be dot-separated numbers, e.g. 5.10.134"
  if (V !~ /\./) return "version needs at least major.minor"
  if (index(rest, "-") > 0) {
    p = index(rest, "-")
    R = substr(rest, 1, p - 1); tail = substr(rest, p + 1)
    if (R !~ /^[0-9]+$/) return "Debian ABI number must be digits, e.g. 6.1.0-56-amd64"
    best = ""
    n = split("amd64 arm64 armmp armmp-lpae 686 686-pae powerpc64le s390x marvell rpi loong64 riscv64", a, " ")
    for (i = 1; i <= n; i++) {
      if (tail == a[i] || (length(tail) > length(a[i]) && substr(tail, length(tail) - length(a[i])) == ("-" a[i]))) {
        if (length(a[i]) > length(best)) best = a[i]
      }
    }
    if (best == "") return "unknown Debian kernel arch"
    if (tail != best) {
      v = substr(tail, 1, length(tail) - length(best) - 1)
      if (v == "" || v ~ /[^A-Za-z0-9]/) return "bad Debian featureset"
    }
    FL = "debian"
    return ""
  }
  n = split(rest, t, ".")
  for (i = 1; i <= n; i++) if (t[i] == "") return "empty component between dots"
  if (substr(rest, length(rest)) == "." || substr(rest, 1, 1) == ".") return "empty component between dots"
  last = n
  if (n > 1 && isrpmarch(t[n])) last = n - 1
  d = 0
  for (i = 1; i <= last; i++) if (t[i] ~ /^[A-Za-z]/) { d = i; break }
  if (d == 1) return "release must start with a number"
  R = ""
  if (d == 0) {
    for (i = 1; i <= last; i++) R = R (i > 1 ? "." : "") t[i]
    FL = "unknown"
    return ""
  }
  for (i = 1; i < d; i++) R = R (i > 1 ? "." : "") t[i]
  base = t[d]
  for (i = d + 1; i <= last; i++) base = base "." t[i]
  p = index(base, "_")
  if (p > 0) base = substr(base, 1, p - 1)
  if (base ~ /^el[0-9]+$/ && length(base) < 11) base = "el" (substr(base, 3) + 0)
  FL = base
  return ""
}
BEGIN {
  rel = ENVIRON["KHOTFIX_REL"]
  gsub(/^[ \t\r\n\f]+/, "", rel); gsub(/[ \t\r\n\f]+$/, "", rel)
  why = parse(rel)
  if (why != "") {
    shown = length(rel) > 80 ? substr(rel, 1, 80) "..." : rel
    gsub(/\t/, "\\t", shown); gsub(/\r/, "\\r", shown); gsub(/\n/, "\\n", shown); gsub(/\f/, "\\f", shown)
    print "err|invalid kernel release \"" shown "\": " why; exit 0
  }
  aff = 0
  n = split(ENVIRON["KHOTFIX_RANGES"], r, " ")
  for (i = 1; i + 3 <= n; i += 4)
    if (vrcmp(V, R, r[i], r[i + 1]) >= 0 && vrcmp(V, R, r[i + 2], r[i + 3]) <= 0) aff = 1
  n = split(ENVIRON["KHOTFIX_KERNELS"], k, " ")
  for (i = 1; i + 2 <= n; i += 3) {
    if (k[i] == "b" && vrcmp(V, R, k[i + 1], k[i + 2]) == 0) aff = 1
    if (k[i] == "f" && k[i + 1] == rel) aff = 1
  }
  print "ok|" rel "|" FL "|" V "|" R "|" aff
}
"#;

/// The awk program embedded in the script (exposed so tests can hold its
/// `vercmp` to `crate::kernel::rpmvercmp` under several awk implementations).
pub fn awk_program() -> &'static str {
    AWK_PROGRAM
}

/// The script template; `@@NAME@@` placeholders are replaced by quoted words.
const TEMPLATE: &str = r#"#!/bin/sh
# Generated by khotfix (node script) for hotfix @@ID@@.
# Checks whether this node needs the hotfix and, with -y, applies it.
# Usage: sh SCRIPT [-y] [-r ROOT] [-t SECONDS]
#   -y  act: install the hotfix package (dnf or yum) and wait for the livepatch
#   -r  read the host under ROOT (default: $KHOTFIX_ROOT or /)
#   -t  seconds to wait for the livepatch transition (default: $KHOTFIX_TIMEOUT or 60)
# Exit: 0 not affected, fixed or fix being applied; 1 needs the hotfix (dry run);
#       2 error; 3 affected but cannot be hot-fixed.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH

HOTFIX_ID=@@ID@@
MODULE=@@MODULE@@
REQUIRED_PATHS_TEXT=@@PATHS_TEXT@@
COVERED_FLAVORS=@@COVERED@@
AFFECTED_TEXT=@@AFFECTED@@
KHOTFIX_RANGES=@@RANGES@@
KHOTFIX_KERNELS=@@KERNELS@@
export KHOTFIX_RANGES KHOTFIX_KERNELS

ACT=0
ROOT=${KHOTFIX_ROOT:-}
TIMEOUT=${KHOTFIX_TIMEOUT:-60}
while getopts yr:t:h opt; do
  case $opt in
    y) ACT=1 ;;
    r) ROOT=$OPTARG ;;
    t) TIMEOUT=$OPTARG ;;
    h) printf '%s\n' "usage: $0 [-y] [-r ROOT] [-t SECONDS]"; exit 0 ;;
    *) printf '%s\n' "usage: $0 [-y] [-r ROOT] [-t SECONDS]" >&2; exit 2 ;;
  esac
done
case $TIMEOUT in
  ''|*[!0-9]*) printf '%s\n' "khotfix: error: timeout must be a number of seconds" >&2; exit 2 ;;
esac
while [ "${ROOT%/}" != "$ROOT" ]; do ROOT=${ROOT%/}; done

fail() {
  printf 'khotfix: error: %s\n' "$1" >&2
  exit 2
}

# in_root HOSTPATH: set R to the path under $ROOT that HOSTPATH names, every
# symbolic link followed as in a chroot (an absolute target starts again at
# $ROOT). Exit 2 when a link climbs above the root or there are more than 40.
# R itself is never a link (its last part may not exist).
in_root() {
  todo=${1#/}
  done_=''
  links=0
  while [ -n "$todo" ]; do
    case $todo in
      */*) c=${todo%%/*}; todo=${todo#*/} ;;
      *) c=$todo; todo='' ;;
    esac
    case $c in
      ''|.) continue ;;
      ..)
        [ -n "$done_" ] || fail "$1: a symbolic link leads outside the root ${ROOT:-/}"
        done_=${done_%/*}
        continue ;;
    esac
    if [ -L "$ROOT$done_/$c" ]; then
      links=$((links + 1))
      [ "$links" -le 40 ] || fail "$1: more than 40 symbolic links"
      # procfs's own links name the reading process: this shell, as the
      # kernel would resolve them for `[ -e ]` (readlink would name itself).
      case $done_/$c in
        /proc/self) t=$$ ;;
        /proc/thread-self) t=$$/task/$$ ;;
        *) t=$(readlink "$ROOT$done_/$c") || fail "$1: reading the link $ROOT$done_/$c" ;;
      esac
      case $t in /*) done_='' ;; esac
      todo=${t#/}${todo:+/$todo}
    else
      done_=$done_/$c
    fi
  done
  R=$ROOT$done_
}

# file_at HOSTPATH CAP: R = the regular file HOSTPATH names under the root.
# Return 1 when it does not exist; exit 2 when it is not a regular file or is
# larger than CAP bytes (/proc and /sys files may be endless).
file_at() {
  in_root "$1"
  [ -e "$R" ] || return 1
  [ -f "$R" ] || fail "$ROOT$1: not a regular file"
  size=$(head -c "$(($2 + 1))" "$R" | wc -c) || fail "reading $ROOT$1"
  [ "$((size))" -le "$2" ] || fail "$ROOT$1: larger than $2 bytes"
}

# is_one FILE: does FILE hold exactly "1" or "1\n", as the kernel writes a
# true sysfs flag? (Compared as bytes: NUL or invalid UTF-8 never match.)
is_one() {
  hex=$(head -c 3 "$1" | od -An -tx1 | tr -d ' \n')
  [ "$hex" = 31 ] || [ "$hex" = 310a ]
}

# Known flavors: 0 fixable, 3 unsupported, 1 not covered.
flavor_kind() {
  case $1 in
@@FLAVOR_CASES@@
    *) return 1 ;;
  esac
}

# Messages are literal text: nothing in them expands.
# shellcheck disable=SC2016,SC1003
unsupported_message() {
  case $1 in
@@MESSAGE_CASES@@
    *) printf '%s' '' ;;
  esac
}

set_verdict() {
  VERDICT=$1
  REASON=$2
  case $1 in
    not-affected|fixed|applying) CODE=0 ;;
    needs-hotfix) CODE=1 ;;
    unfixable) CODE=3 ;;
    *) CODE=2 ;;
  esac
}

# Livepatch state of $MODULE: live, transitioning, disabled or absent.
live_state() {
  LP_ENABLED=''
  loaded=0
  # Lines end at a newline or a NUL, as in `node check`.
  if file_at /proc/modules @@MODULES_CAP@@ &&
    head -c @@MODULES_CAP@@ "$R" | tr '\000' '\n' | LC_ALL=C grep -q "^$MODULE "; then
    loaded=1
  fi
  lp=/sys/kernel/livepatch/$MODULE
  in_root "$lp"
  if [ -d "$R" ]; then
    LP_ENABLED=missing
    transition=0
    if file_at "$lp/enabled" @@VALUE_CAP@@; then
      if is_one "$R"; then LP_ENABLED=1; else LP_ENABLED=0; fi
    fi
    if file_at "$lp/transition" @@VALUE_CAP@@ && is_one "$R"; then transition=1; fi
    if [ "$LP_ENABLED" = 1 ]; then
      if [ "$transition" = 1 ]; then STATE=transitioning; else STATE=live; fi
    else
      STATE=disabled
    fi
  elif [ "$loaded" = 1 ]; then
    STATE=live
  else
    STATE=absent
  fi
}

evaluate() {
  KREL=''
  PKG=''
  FLAVOR=''
  found=''
@@PATH_LOOP@@
  osr="$ROOT/proc/sys/kernel/osrelease"
  file_at /proc/sys/kernel/osrelease @@VALUE_CAP@@ || fail "reading $osr: no such file"
  # Bytes outside the release alphabet (NUL, invalid UTF-8, ...) are refused
  # here, before the shell or awk could drop or reinterpret them.
  bad=$(head -c @@VALUE_CAP@@ "$R" | LC_ALL=C tr -d 'A-Za-z0-9._+~ \t\n\r\f-' | wc -c)
  [ "$((bad))" = 0 ] || fail "$osr: invalid kernel release: contains a character outside [A-Za-z0-9._+~-]"
  rel=$(cat "$R") || fail "reading $osr"
  kinfo=$(KHOTFIX_REL=$rel LC_ALL=C awk '@@AWK@@' </dev/null) || fail "awk failed"
  IFS='|' read -r k_status KREL FLAVOR k_version k_release k_affected <<EOF
$kinfo
EOF
  if [ "$k_status" != ok ]; then
    fail "$osr: $KREL"
  fi
  flavor_kind "$FLAVOR"
  kind=$?
  if [ "$kind" = 1 ]; then
    set_verdict not-affected "kernel $KREL is $FLAVOR, not a flavor this hotfix covers ($COVERED_FLAVORS)"
    return
  fi
  if [ "$k_affected" != 1 ]; then
    set_verdict not-affected "kernel $KREL is not in the affected kernels ($AFFECTED_TEXT)"
    return
  fi
  PKG="kernel-hotfix-$HOTFIX_ID-$k_version-$k_release"
  live_state
  case $STATE in
    live)
      set_verdict fixed "kernel $KREL is affected and $MODULE is live"
      return ;;
    transitioning)
      set_verdict applying "kernel $KREL is affected and $MODULE is enabled; its livepatch transition is still running"
      return ;;
  esac
  if [ "$kind" = 3 ]; then
    set_verdict unfixable "kernel $KREL ($FLAVOR) is affected and cannot be hot-fixed: $(unsupported_message "$FLAVOR")"
    return
  fi
  if [ "$STATE" = disabled ]; then
    reason="kernel $KREL is affected and $MODULE is loaded but disabled: install $PKG"
  else
    reason="kernel $KREL is affected and $MODULE is not live: install $PKG"
  fi
  package_installed
  if [ "$installed" = 1 ]; then
    reason="kernel $KREL is affected and $MODULE is not live although $PKG is installed: reload it (kpatch load) or reinstall"
  fi
  set_verdict needs-hotfix "$reason"
}

# is_db_file FILE: a regular file (not a link) worth copying from an rpm
# database directory (not a lock, environment or shared-memory file).
is_db_file() {
  [ -f "$1" ] && [ ! -L "$1" ] || return 1
  case ${1##*/} in __db.*|*-shm) return 1 ;; esac
}

# Is $PKG installed? Sets installed=1, 0, or '' when not checked. rpm writes
# even for -q (a new database in an empty directory, -shm and -wal files next
# to an existing one), so the query runs on a private copy of the database
# (at most @@RPMDB_CAP@@ bytes) and nothing under the root is written.
package_installed() {
  installed=''
  command -v rpm >/dev/null 2>&1 || return 0
  for d in /var/lib/rpm /usr/lib/sysimage/rpm; do
    in_root "$d"
    [ -d "$R" ] || continue
    is_db_file "$R/rpmdb.sqlite" || is_db_file "$R/Packages" || is_db_file "$R/Packages.db" || continue
    dbdir=$R
    tmp=$(mktemp -d) || return 0
    total=0
    for f in "$dbdir"/*; do
      is_db_file "$f" || continue
      head -c "$((@@RPMDB_CAP@@ - total + 1))" "$f" >"$tmp/${f##*/}" || { rm -rf "$tmp"; return 0; }
      total=$((total + $(wc -c <"$tmp/${f##*/}")))
      if [ "$total" -gt @@RPMDB_CAP@@ ]; then rm -rf "$tmp"; return 0; fi
    done
    if rpm --dbpath "$tmp" -q --quiet "$PKG" >/dev/null 2>&1; then installed=1; else installed=0; fi
    rm -rf "$tmp"
    return 0
  done
}

report() {
  printf '%s: %s\n' "$VERDICT" "$REASON"
}

wait_live() {
  waited=0
  while :; do
    live_state
    if [ "$STATE" = live ] && [ "$LP_ENABLED" = 1 ]; then
      return 0
    fi
    if [ "$waited" -ge "$TIMEOUT" ]; then
      fail "timed out after ${TIMEOUT}s waiting for $MODULE: enabled=${LP_ENABLED:-missing}"
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

# dnf anywhere first, then yum (as `node apply`).
find_pm() {
  for pm in dnf yum; do
    for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
      in_root "$d/$pm"
      if [ -f "$R" ] && [ -x "$R" ]; then
        PM="$d/$pm"
        return 0
      fi
    done
  done
  return 1
}

evaluate
WAIT_LINE="wait up to ${TIMEOUT}s for /sys/kernel/livepatch/$MODULE/enabled=1 and transition=0"
case $VERDICT in
  applying)
    if [ "$ACT" = 1 ]; then
      printf 'running: %s\n' "$WAIT_LINE"
      wait_live
      evaluate
      printf 'applied: '
      report
      [ "$VERDICT" = fixed ] && exit 0
      exit 2
    fi
    report
    exit "$CODE" ;;
  needs-hotfix)
    if ! find_pm; then
      [ "$ACT" = 1 ] && fail "neither dnf nor yum is installed under ${ROOT:-/}"
      PM=''
    fi
    if [ -n "$ROOT" ]; then
      set -- chroot "$ROOT" "$PM" install -y "$PKG"
    else
      set -- "$PM" install -y "$PKG"
    fi
    if [ "$ACT" != 1 ]; then
      if [ -n "$PM" ]; then
        printf 'would run: %s\n' "$*"
      else
        printf 'would fail: neither dnf nor yum is installed under %s\n' "${ROOT:-/}"
      fi
      printf 'would run: %s\n' "$WAIT_LINE"
      printf 'dry run: '
      report
      exit "$CODE"
    fi
    printf 'running: %s\n' "$*"
    "$@" || fail "$* failed; check the yum repository and permissions"
    printf 'running: %s\n' "$WAIT_LINE"
    wait_live
    evaluate
    printf 'applied: '
    report
    [ "$VERDICT" = fixed ] && exit 0
    exit 2 ;;
  *)
    report
    exit "$CODE" ;;
esac
"#;

/// Validate every recipe value the script embeds (again: the script must be
/// safe even if a recipe bypassed `Recipe::load`, or lint let a value pass).
pub fn validate_recipe(recipe: &Recipe) -> Result<()> {
    let n = &recipe.node;
    let check =
        |r: Result<(), String>| r.map_err(|e| anyhow::anyhow!("{}: {e}", recipe.path.display()));
    check(validate::identifier("node module", &n.module))?;
    for p in &n.required_paths {
        check(validate::host_path("required path", p))?;
    }
    for f in n
        .flavors
        .iter()
        .chain(n.unsupported.iter().map(|u| &u.flavor))
    {
        check(validate::identifier("flavor", f))?;
    }
    for u in &n.unsupported {
        check(validate::message("unsupported message", &u.message))?;
        check(text::printable_line("unsupported message", &u.message))?;
    }
    let kernels = n
        .ranges
        .iter()
        .flat_map(|r| [&r.from, &r.to])
        .chain(n.kernels.iter());
    for k in kernels {
        KernelRelease::parse(k.as_str())
            .map_err(|e| anyhow::anyhow!("{}: {e}", recipe.path.display()))?;
    }
    Ok(())
}

/// Replace each `@@NAME@@` of `template` by its value in one left-to-right
/// pass. Values are copied, never scanned again: a recipe message containing
/// `@@AWK@@` stays those seven characters. An unknown or unused name is an
/// internal error.
fn fill(template: &str, values: &[(&str, String)]) -> Result<String> {
    let mut out = String::with_capacity(template.len() + 8192);
    let mut used = vec![false; values.len()];
    let mut rest = template;
    while let Some(start) = rest.find("@@") {
        let after = &rest[start + 2..];
        let Some(len) = after.find("@@") else {
            bail!("internal: unterminated placeholder in the script template");
        };
        let name = &after[..len];
        let Some(i) = values.iter().position(|(n, _)| *n == name) else {
            bail!("internal: unknown placeholder @@{name}@@ in the script template");
        };
        used[i] = true;
        out.push_str(&rest[..start]);
        out.push_str(&values[i].1);
        rest = &after[len + 2..];
    }
    out.push_str(rest);
    if let Some(i) = used.iter().position(|u| !u) {
        bail!(
            "internal: placeholder @@{}@@ is not in the script template",
            values[i].0
        );
    }
    Ok(out)
}

/// `case` arms for `flavor_kind` (0 fixable, 3 unsupported) and
/// `unsupported_message`, every recipe value a single-quoted word.
fn flavor_cases(recipe: &Recipe) -> (String, String) {
    let n = &recipe.node;
    let mut kinds = String::new();
    // `check` treats a flavor in both lists as unsupported: mirror that order.
    for u in n
        .unsupported
        .iter()
        .filter(|u| n.flavors.contains(&u.flavor))
    {
        kinds.push_str(&format!("    {}) return 3 ;;\n", sh_quote(&u.flavor)));
    }
    for f in &n.flavors {
        kinds.push_str(&format!("    {}) return 0 ;;\n", sh_quote(f)));
    }
    let mut messages = String::new();
    for u in &n.unsupported {
        if !n.flavors.contains(&u.flavor) {
            kinds.push_str(&format!("    {}) return 3 ;;\n", sh_quote(&u.flavor)));
        }
        messages.push_str(&format!(
            "    {}) printf '%s' {} ;;\n",
            sh_quote(&u.flavor),
            sh_quote(&u.message)
        ));
    }
    (kinds, messages)
}

/// The required-path loop of `evaluate` (a no-op without required paths).
fn path_loop(recipe: &Recipe) -> String {
    let paths = &recipe.node.required_paths;
    if paths.is_empty() {
        return "  :\n".into();
    }
    let words: Vec<String> = paths.iter().map(|p| sh_quote(p)).collect();
    let mut s = String::from("  # shellcheck disable=SC2043\n");
    s.push_str(&format!("  for p in {}; do\n", words.join(" ")));
    s.push_str(concat!(
        "    in_root \"$p\"\n",
        "    if [ -e \"$R\" ]; then found=$p; break; fi\n",
        "  done\n",
        "  if [ -z \"$found\" ]; then\n",
        "    set_verdict not-affected \"none of the required paths exist: $REQUIRED_PATHS_TEXT\"\n",
        "    return\n",
        "  fi\n",
    ));
    s
}

/// Generate the script for a recipe.
pub fn generate(recipe: &Recipe) -> Result<String> {
    validate_recipe(recipe)?;
    let n = &recipe.node;
    if AWK_PROGRAM.contains('\'') || AWK_PROGRAM.contains("@@") {
        bail!("internal: the awk program must not contain a single quote or @@");
    }
    let ranges: Vec<String> = n
        .ranges
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.from.version, r.from.release, r.to.version, r.to.release
            )
        })
        .collect();
    let kernels: Vec<String> = n
        .kernels
        .iter()
        .map(|k| {
            if k.is_bare() {
                format!("b {} {}", k.version, k.release)
            } else {
                format!("f {} -", k.as_str())
            }
        })
        .collect();
    let (kinds, messages) = flavor_cases(recipe);
    let out = fill(
        TEMPLATE,
        &[
            ("ID", recipe.hotfix.id.to_string()),
            ("MODULE", sh_quote(&n.module)),
            ("PATHS_TEXT", sh_quote(&n.required_paths.join(", "))),
            ("COVERED", sh_quote(&covered_flavors(recipe).join(", "))),
            ("AFFECTED", sh_quote(&affected_set(recipe))),
            ("RANGES", sh_quote(&ranges.join(" "))),
            ("KERNELS", sh_quote(&kernels.join(" "))),
            ("FLAVOR_CASES", kinds.trim_end().to_string()),
            ("MESSAGE_CASES", messages.trim_end().to_string()),
            ("PATH_LOOP", path_loop(recipe).trim_end().to_string()),
            ("AWK", AWK_PROGRAM.to_string()),
            ("VALUE_CAP", VALUE_CAP.to_string()),
            ("MODULES_CAP", MODULES_CAP.to_string()),
            ("RPMDB_CAP", RPMDB_CAP.to_string()),
        ],
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_never_rescans_values() {
        let out = fill(
            "a=@@A@@ b=@@B@@",
            &[("A", "@@B@@".into()), ("B", "x".into())],
        )
        .unwrap();
        assert_eq!(out, "a=@@B@@ b=x");
    }

    #[test]
    fn fill_refuses_unknown_and_unused_names() {
        assert!(fill("@@X@@", &[]).is_err());
        assert!(fill("plain", &[("A", "1".into())]).is_err());
        assert!(fill("@@A", &[("A", "1".into())]).is_err());
    }
}
