//! `khotfix node script RECIPE`: a standalone POSIX sh script with the same
//! check and apply logic as `node check` / `node apply`, for cloud-init user
//! data or a cloud assistant where no khotfix binary is installed.
//!
//! Safety: every recipe value that reaches the script is validated again here
//! (identifiers, host paths, kernel releases, one-line messages) and written
//! only as a single-quoted sh word ([`sh_quote`]); recipe text never reaches a
//! comment, an `echo`, an awk program or a here-document. Output uses
//! `printf '%s'`, so backslashes in messages are not interpreted.
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
  gsub(/^[ \t\r\n]+/, "", rel); gsub(/[ \t\r\n]+$/, "", rel)
  why = parse(rel)
  if (why != "") { print "err|invalid kernel release \"" rel "\": " why; exit 0 }
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

# Known flavors: 0 fixable, 3 unsupported, 1 not covered.
flavor_kind() {
  case $1 in
@@FLAVOR_CASES@@
    *) return 1 ;;
  esac
}

# Messages are literal text: nothing in them expands.
# shellcheck disable=SC2016
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
  if [ -r "$ROOT/proc/modules" ] && grep -q "^$MODULE " "$ROOT/proc/modules"; then
    loaded=1
  fi
  lp="$ROOT/sys/kernel/livepatch/$MODULE"
  if [ -d "$lp" ]; then
    LP_ENABLED=$(cat "$lp/enabled" 2>/dev/null) || LP_ENABLED=''
    transition=$(cat "$lp/transition" 2>/dev/null) || transition=''
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
  [ -r "$osr" ] || fail "reading $osr: no such file"
  rel=$(cat "$osr") || fail "reading $osr"
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
  dbpath=''
  for d in /var/lib/rpm /usr/lib/sysimage/rpm; do
    if [ -d "$ROOT$d" ]; then dbpath=$d; break; fi
  done
  if [ -n "$dbpath" ] && command -v rpm >/dev/null 2>&1; then
    if [ -n "$ROOT" ]; then
      rpm --root "$ROOT" --dbpath "$dbpath" -q --quiet "$PKG" >/dev/null 2>&1 && installed=1 || installed=0
    else
      rpm --dbpath "$dbpath" -q --quiet "$PKG" >/dev/null 2>&1 && installed=1 || installed=0
    fi
    if [ "$installed" = 1 ]; then
      reason="kernel $KREL is affected and $MODULE is not live although $PKG is installed: reload it (kpatch load) or reinstall"
    fi
  fi
  set_verdict needs-hotfix "$reason"
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

find_pm() {
  for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    for pm in dnf yum; do
      if [ -x "$ROOT$d/$pm" ] && [ -f "$ROOT$d/$pm" ]; then
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
/// safe even if a recipe bypassed `Recipe::load`).
fn validate_recipe(recipe: &Recipe) -> Result<()> {
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

/// Generate the script for a recipe.
pub fn generate(recipe: &Recipe) -> Result<String> {
    validate_recipe(recipe)?;
    let n = &recipe.node;
    if AWK_PROGRAM.contains('\'') {
        bail!("internal: the awk program must not contain a single quote");
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
    let mut flavor_cases = String::new();
    for f in &n.flavors {
        flavor_cases.push_str(&format!("    {}) return 0 ;;\n", sh_quote(f)));
    }
    let mut message_cases = String::new();
    for u in &n.unsupported {
        if !n.flavors.contains(&u.flavor) {
            flavor_cases.push_str(&format!("    {}) return 3 ;;\n", sh_quote(&u.flavor)));
        }
        message_cases.push_str(&format!(
            "    {}) printf '%s' {} ;;\n",
            sh_quote(&u.flavor),
            sh_quote(&u.message)
        ));
    }
    // `check` treats a flavor in both lists as unsupported: mirror that order.
    let flavor_cases = {
        let mut s = String::new();
        for u in &n.unsupported {
            if n.flavors.contains(&u.flavor) {
                s.push_str(&format!("    {}) return 3 ;;\n", sh_quote(&u.flavor)));
            }
        }
        s + &flavor_cases
    };
    let path_loop = if n.required_paths.is_empty() {
        "  :".to_string()
    } else {
        let words: Vec<String> = n.required_paths.iter().map(|p| sh_quote(p)).collect();
        format!(
            "  # shellcheck disable=SC2043\n  for p in {}; do\n    if [ -e \"$ROOT$p\" ]; then found=$p; break; fi\n  done\n  if [ -z \"$found\" ]; then\n    set_verdict not-affected \"none of the required paths exist: $REQUIRED_PATHS_TEXT\"\n    return\n  fi",
            words.join(" ")
        )
    };
    let out = TEMPLATE
        .replace("@@ID@@", &recipe.hotfix.id.to_string())
        .replace("@@MODULE@@", &sh_quote(&n.module))
        .replace("@@PATHS_TEXT@@", &sh_quote(&n.required_paths.join(", ")))
        .replace(
            "@@COVERED@@",
            &sh_quote(&covered_flavors(recipe).join(", ")),
        )
        .replace("@@AFFECTED@@", &sh_quote(&affected_set(recipe)))
        .replace("@@RANGES@@", &sh_quote(&ranges.join(" ")))
        .replace("@@KERNELS@@", &sh_quote(&kernels.join(" ")))
        .replace("@@FLAVOR_CASES@@\n", &flavor_cases)
        .replace("@@MESSAGE_CASES@@\n", &message_cases)
        .replace("@@PATH_LOOP@@", &path_loop)
        .replace("@@AWK@@", AWK_PROGRAM);
    Ok(out)
}
