//! Preflight: read a source patch the way a kpatch reviewer would, before a
//! build that can take an hour, and say what kpatch-build cannot handle or
//! handles only with care (kpatch's `doc/patch-author-guide.md`, plus the
//! checks `kpatch-build` and `kpatch-cc` themselves make).
//!
//! This is a heuristic reader of unified diffs, not a C parser: it finds the
//! block each changed line sits in from the hunk's own context (falling back
//! to the `@@ ... @@ section` text diff tools write), and matches a small set
//! of well-known patterns. Every finding names the patch line, the patched
//! file, why it matters and what the guide says to do instead.

mod functional;

use crate::patchfile::{Hunk, Patch};
use anyhow::Result;
use regex::Regex;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Needs a human look; the build may succeed.
    Warning,
    /// kpatch-build refuses it, or the resulting module would not fix anything.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// A struct/union/enum definition changes (data layout).
    DataLayout,
    /// A file-scope initialized variable (array, ops table) changes.
    GlobalData,
    /// A header file changes.
    Header,
    /// `__init`/`__exit` code, init data, `module_init` and initcalls.
    InitCode,
    /// A `static` variable inside a function is added or removed.
    StaticLocal,
    /// `printk_once`, `pr_*_once`, `WARN_ONCE`, `DO_ONCE` ...
    OnceMacro,
    /// A new or changed `inline` function (inline implies notrace).
    Inline,
    /// `notrace` functions have no fentry hook and cannot be patched.
    Notrace,
    /// `__ro_after_init` / `__read_mostly` data.
    DataSection,
    /// `EXPORT_SYMBOL*` added or removed.
    ExportedSymbol,
    /// New `#include`: may change exported symbols' CRCs (modversions).
    NewInclude,
    /// `static_branch_*` / `static_key_*` jump labels.
    JumpLabel,
    /// `static_call()`.
    StaticCall,
    /// A `SYSCALL_DEFINE` system call.
    Syscall,
    /// Anything under `lib/` (kpatch-build refuses it).
    Lib,
    /// Assembly (`.S`) files (kpatch-build refuses them).
    Assembly,
    /// vDSO code runs in user space; kpatch-build skips it.
    Vdso,
    /// x86 real-mode trampoline code; kpatch-build skips it.
    Realmode,
    /// Boot, purgatory, EFI stub or host tools: never part of the running kernel.
    NotKernelCode,
    /// Makefile/Kconfig changes have no effect on a live kernel.
    BuildFile,
    /// Only comments, blank lines or whitespace change.
    NoFunctionalChange,
}

impl Category {
    /// The kebab-case name printed in `[...]`.
    pub fn name(self) -> &'static str {
        use Category::*;
        match self {
            DataLayout => "data-layout",
            GlobalData => "global-data",
            Header => "header",
            InitCode => "init-code",
            StaticLocal => "static-local",
            OnceMacro => "once-macro",
            Inline => "inline",
            Notrace => "notrace",
            DataSection => "data-section",
            ExportedSymbol => "exported-symbol",
            NewInclude => "new-include",
            JumpLabel => "jump-label",
            StaticCall => "static-call",
            Syscall => "syscall",
            Lib => "lib",
            Assembly => "assembly",
            Vdso => "vdso",
            Realmode => "realmode",
            NotKernelCode => "not-kernel-code",
            BuildFile => "build-file",
            NoFunctionalChange => "no-functional-change",
        }
    }

    /// Default severity, why it matters, and what to do instead (after the
    /// patch author guide).
    fn describe(self) -> (Severity, &'static str, &'static str) {
        use Category::*;
        use Severity::*;
        match self {
            DataLayout => (Error, "changes a struct/union/enum definition: kpatch patches functions, not data, and existing instances keep the old layout",
                "leave the type alone; change the code that uses it, or keep new fields in a shadow variable (klp_shadow_alloc/klp_shadow_get)"),
            GlobalData => (Error, "changes an initialized file-scope variable: kpatch does not patch data, the running kernel keeps the old contents",
                "change the functions that read it (check the new case in code), or rewrite the data in a KPATCH_PRE_PATCH_CALLBACK"),
            Header => (Warning, "changes a header: may change data or exported prototypes and rebuilds (and compares) every object that includes it",
                "move macros/helpers into the .c file that needs them; never change exported prototypes or types in headers"),
            InitCode => (Error, "changes init/exit code or data: it already ran (or will never run) on a live kernel, so the change has no effect",
                "use a KPATCH_PRE_PATCH_CALLBACK that detects the initialized state and fixes it up, or do not live-patch this fix"),
            StaticLocal => (Warning, "adds or removes a static local variable: kpatch must correlate static locals by name, and removing a reference fails",
                "keep references to existing static locals (a harmless use is enough); name new ones uniquely"),
            OnceMacro => (Error, "a *_once macro adds a static flag in .data..read_mostly/.data.once, which create-diff-object refuses (unsupported section change)",
                "write the once logic by hand: `static bool printed; if (!printed) { printed = true; pr_warn(...); }`"),
            Inline => (Warning, "an inline function changes: the kernel's `inline` implies notrace (no fentry, cannot be patched) and every caller changes too",
                "mark the function __always_inline (or noinline) so the compiler's choice does not flip, and expect callers in the module"),
            Notrace => (Error, "notrace code has no fentry/mcount call, so kpatch cannot redirect it",
                "patch the (traceable) callers instead"),
            DataSection => (Error, "changes __ro_after_init/__read_mostly data: kpatch refuses changes to those sections and cannot change existing data",
                "leave the variable as it is; change the code that uses it, or adjust it from a patch callback"),
            ExportedSymbol => (Warning, "adds or removes an exported symbol: modversions CRCs and out-of-tree modules depend on the exported ABI",
                "do not export new symbols or change exported ones; add a new function and switch in-tree callers to it"),
            NewInclude => (Warning, "a new #include can change the CRCs of exported symbols (\"Version disagreement for symbol\")",
                "copy the needed definitions into the .c file, or wrap the include in #ifndef __GENKSYMS__"),
            JumpLabel => (Warning, "jump labels in patched code fail when the static key lives in a module (and on kernels before 5.8)",
                "use static_key_enabled() instead of static_branch_*/static_key_true/false"),
            StaticCall => (Warning, "static calls in patched code fail when the key is defined in a module",
                "#include \"kpatch-macros.h\" and use KPATCH_STATIC_CALL() instead of static_call()"),
            Syscall => (Warning, "system call bodies (__do_sys_*) are inline and thus notrace: kpatch-build cannot find a fentry hook",
                "#include \"kpatch-syscall.h\" and use KPATCH_SYSCALL_DEFINEn instead of SYSCALL_DEFINEn"),
            Lib => (Error, "kpatch-build refuses patches to lib/ (\"unsupported patch to lib/\"): lib.a objects are not built for patching",
                "patch the callers outside lib/, or copy the fixed helper into the calling file under a new name"),
            Assembly => (Error, "kpatch-build refuses patches to assembly files (\"unsupported patch to assembly\")",
                "express the fix in C in a caller, or do not live-patch this fix"),
            Vdso => (Error, "vDSO code is mapped into user space; kpatch-build skips these objects, so the change would be silently dropped",
                "vDSO fixes need a reboot (or a process restart); do not live-patch them"),
            Realmode => (Error, "real-mode trampoline code is not patchable; kpatch-build skips these objects, so the change would be silently dropped",
                "this fix needs a reboot"),
            NotKernelCode => (Error, "boot, purgatory, EFI stub and host-tool code is not part of the running kernel; kpatch-build skips it",
                "drop this file from the livepatch; the fix needs a reboot or a tools update"),
            BuildFile => (Warning, "Makefile/Kconfig changes do not reach a running kernel (the livepatch is built with the kernel's original config)",
                "keep the build configuration unchanged; put the fix in C code"),
            NoFunctionalChange => (Error, "the patch has no functional change: it only changes comments, blank lines or whitespace, and kpatch-build fails after a full build with \"no functional changes found\"",
                "check that this is the right patch (a fix changes code); cosmetic changes need no livepatch"),
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing the patch does that kpatch cannot handle or handles only with care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub category: Category,
    /// The patch file.
    pub patch: PathBuf,
    /// 1-based line in the patch file.
    pub line: usize,
    /// The patched source file (`net/netfilter/ipvs/ip_vs_est.c`).
    pub file: String,
    /// What the patch does there and why it matters (one line).
    pub why: String,
    /// What to do instead (one line).
    pub instead: String,
}

impl fmt::Display for Finding {
    /// `patch:line: severity: [category] file: why — instead: how`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: [{}] {}: {} — instead: {}",
            display_path(&self.patch),
            self.line,
            self.severity,
            self.category,
            self.file,
            self.why,
            self.instead
        )
    }
}

/// A path relative to the current directory when it is under it.
pub fn display_path(p: &Path) -> String {
    let p = p.strip_prefix(".").unwrap_or(p);
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf())
        .display()
        .to_string()
}

/// The findings for a set of patches.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub patches: Vec<PathBuf>,
    pub strict: bool,
    pub findings: Vec<Finding>,
    pub errors: usize,
    pub warnings: usize,
    /// The local kernel tree the patches were checked against (`--tree`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<PathBuf>,
    /// Why the series does not apply to `tree` (one line), if it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_error: Option<String>,
}

impl Report {
    /// Build a report; with `strict`, warnings become errors.
    pub fn new(patches: Vec<PathBuf>, mut findings: Vec<Finding>, strict: bool) -> Report {
        if strict {
            for f in &mut findings {
                f.severity = Severity::Error;
            }
        }
        let errors = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        let warnings = findings.len() - errors;
        Report {
            patches,
            strict,
            findings,
            errors,
            warnings,
            tree: None,
            tree_error: None,
        }
    }

    /// Check the series against a local kernel tree (a dry run of GNU
    /// `patch` over copies of the touched files, see [`apply::check`]); a
    /// series that does not apply is one more error. `Err` only for I/O
    /// trouble (unreadable tree, `patch` missing).
    pub fn check_tree(&mut self, tree: &Path, series: &[PathBuf]) -> Result<()> {
        use crate::prepare::apply::{self, ApplyError};
        self.tree = Some(tree.to_path_buf());
        let shown: Vec<PathBuf> = series.iter().map(|p| display_path(p).into()).collect();
        match apply::check(tree, &shown) {
            Ok(_) => Ok(()),
            Err(e @ ApplyError::Io { .. }) => Err(anyhow::anyhow!(e)),
            Err(e) => {
                self.tree_error = Some(e.to_string().replace('\n', " "));
                self.errors += 1;
                Ok(())
            }
        }
    }

    /// Process exit code: 0 without errors, 1 with (see `util::exit`).
    pub fn exit_code(&self) -> i32 {
        if self.errors > 0 {
            crate::util::exit::FAILED
        } else {
            crate::util::exit::OK
        }
    }
}

/// Read and analyse one patch file. Errors (unreadable, not a diff) name the file.
pub fn analyze_file(path: &Path) -> Result<Vec<Finding>> {
    let text = crate::patchfile::read_patch_file(path)
        .map_err(|e| anyhow::anyhow!("reading patch {}: {e}", path.display()))?;
    let patch = Patch::parse(&text).map_err(|e| match e.too_large {
        true => anyhow::anyhow!("patch {}: {e}", path.display()),
        false => anyhow::anyhow!("patch {}: {e}: not a valid unified diff", path.display()),
    })?;
    Ok(analyze(path, &patch))
}

/// Analyse patches in order (duplicates are read once) and build a report.
pub fn analyze_patches(paths: &[PathBuf], strict: bool) -> Result<Report> {
    let mut seen = BTreeSet::new();
    let mut findings = Vec::new();
    let mut patches = Vec::new();
    for p in paths {
        if seen.insert(p.clone()) {
            findings.extend(analyze_file(p)?);
            patches.push(p.clone());
        }
    }
    Ok(Report::new(patches, findings, strict))
}

/// Analyse a parsed patch; `path` names it in findings.
pub fn analyze(path: &Path, patch: &Patch) -> Vec<Finding> {
    let mut out = Findings {
        patch: path.to_path_buf(),
        list: Vec::new(),
        seen: BTreeSet::new(),
    };
    for fp in &patch.files {
        let file = fp.path.as_str();
        let header_line = fp.header_line + 1; // the `+++` line
        let whole_file = path_category(file);
        if let Some(cat) = whole_file {
            out.add(cat, header_line, file, None, None);
        }
        // kpatch-build refuses or skips the whole file: its lines need no further reading.
        use Category::*;
        if matches!(
            whole_file,
            Some(Assembly | Lib | Vdso | Realmode | NotKernelCode)
        ) {
            continue;
        }
        let is_c = file.ends_with(".c") || file.ends_with(".h");
        if !is_c {
            continue;
        }
        for hunk in &fp.hunks {
            analyze_hunk(&mut out, file, hunk);
        }
    }
    if functional::no_functional_change(patch) {
        if let Some(first) = patch.files.first() {
            let line = first.hunks.first().map_or(first.header_line, |h| h.line);
            out.add(Category::NoFunctionalChange, line, &first.path, None, None);
        }
    }
    out.list
}

/// Accumulates findings, once per (category, file, key).
struct Findings {
    patch: PathBuf,
    list: Vec<Finding>,
    seen: BTreeSet<(Category, String, String)>,
}

impl Findings {
    /// Add a finding. `key` dedupes (e.g. one per function); `detail` is
    /// prefixed to the category's reason.
    fn add(
        &mut self,
        cat: Category,
        line: usize,
        file: &str,
        key: Option<&str>,
        detail: Option<String>,
    ) {
        let key = key
            .map(str::to_string)
            .unwrap_or_else(|| format!("line {line}"));
        if !self.seen.insert((cat, file.to_string(), key)) {
            return;
        }
        let (severity, why, instead) = cat.describe();
        let why = match detail {
            Some(d) => format!("{d}: {why}"),
            None => why.to_string(),
        };
        self.list.push(Finding {
            severity,
            category: cat,
            patch: self.patch.clone(),
            line,
            file: file.to_string(),
            why,
            instead: instead.to_string(),
        });
    }
}

/// File-level categories decided by the path alone.
fn path_category(file: &str) -> Option<Category> {
    let starts = |p: &str| file.starts_with(p);
    let name = file.rsplit('/').next().unwrap_or(file);
    if file.ends_with(".S") || file.ends_with(".s") {
        return Some(Category::Assembly);
    }
    if starts("lib/") {
        return Some(Category::Lib);
    }
    if starts("arch/") && file.split('/').any(|c| c.starts_with("vdso")) {
        return Some(Category::Vdso);
    }
    if starts("arch/x86/realmode/") {
        return Some(Category::Realmode);
    }
    const NOT_KERNEL: &[&str] = &[
        "arch/x86/boot/",
        "arch/x86/purgatory/",
        "arch/x86/tools/",
        "arch/s390/boot/",
        "arch/s390/purgatory/",
        "drivers/firmware/efi/libstub/",
        "tools/",
        "scripts/",
        "usr/",
    ];
    if NOT_KERNEL.iter().any(|p| starts(p)) {
        return Some(Category::NotKernelCode);
    }
    if file.ends_with(".h") {
        return Some(Category::Header);
    }
    if name == "Makefile"
        || name == "Kbuild"
        || name.starts_with("Kconfig")
        || name.ends_with(".mk")
    {
        return Some(Category::BuildFile);
    }
    None
}

/// One line of a hunk's old or new view.
struct ViewLine {
    /// Index into `hunk.lines`.
    idx: usize,
    /// Code with comments and string literals blanked.
    code: String,
    /// Whether the line is a change ('+' in the new view, '-' in the old).
    changed: bool,
}

/// The old (context + '-') or new (context + '+') text of a hunk.
fn view(hunk: &Hunk, new: bool) -> Vec<ViewLine> {
    let mine = if new { '+' } else { '-' };
    let mut in_comment = false;
    let mut out = Vec::new();
    for (idx, l) in hunk.lines.iter().enumerate() {
        let first = l.chars().next().unwrap_or(' ');
        if first != ' ' && first != mine {
            continue;
        }
        let raw = if l.is_empty() { "" } else { &l[1..] };
        out.push(ViewLine {
            idx,
            code: strip_code(raw, &mut in_comment),
            changed: first == mine,
        });
    }
    out
}

/// Blank comments, string and char literals so braces and keywords inside
/// them are not counted. `in_comment` carries `/* ... */` across lines.
fn strip_code(line: &str, in_comment: &mut bool) -> String {
    let b: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < b.len() {
        if *in_comment {
            if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                *in_comment = false;
                i += 2;
            } else {
                i += 1;
            }
            out.push(' ');
            continue;
        }
        match b[i] {
            '/' if b.get(i + 1) == Some(&'*') => {
                *in_comment = true;
                i += 2;
                out.push(' ');
            }
            '/' if b.get(i + 1) == Some(&'/') => break,
            q @ ('"' | '\'') => {
                out.push(q);
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                out.push(q);
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// What kind of block an opening brace starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    /// `struct x {`, `union {`, `enum e {`: a type definition.
    Type(String),
    /// `... = {` at file scope or inside a function.
    Initializer { decl: String, top_level: bool },
    /// A function body.
    Function(String),
    /// `if (...) {`, `do {`, a bare block.
    Other,
}

fn re(cell: &'static OnceLock<Regex>, pat: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pat).expect("static regex"))
}

fn classify(decl: &str, top_level: bool) -> Block {
    static TYPE: OnceLock<Regex> = OnceLock::new();
    static CONTROL: OnceLock<Regex> = OnceLock::new();
    let d = decl.trim();
    let d = d.strip_suffix('{').unwrap_or(d).trim();
    if re(&TYPE, r"^(typedef\s+)?(struct|union|enum)\b[^=;()]*$").is_match(d) {
        return Block::Type(d.to_string());
    }
    if d.ends_with('=') || d.ends_with("= ") {
        return Block::Initializer {
            decl: d.to_string(),
            top_level,
        };
    }
    if re(
        &CONTROL,
        r"^(\}\s*)?(if|else|for|while|do|switch|case|default)\b",
    )
    .is_match(d)
    {
        return Block::Other;
    }
    if d.contains('(') && d.ends_with(')') || d.contains("SYSCALL_DEFINE") && d.contains('(') {
        return Block::Function(d.to_string());
    }
    if d.contains('(') && top_level {
        // `int f(int a) __attribute__((x))`, `static void f(void) __acquires(x)`
        return Block::Function(d.to_string());
    }
    Block::Other
}

/// The declaration text before the `{` on line `j` of a view: the text on
/// that line before the brace, plus the preceding lines of the same
/// declaration (multi-line function signatures). Also whether it starts at
/// column 0 (file scope in kernel style).
fn decl_before(v: &[ViewLine], j: usize, brace_at: usize) -> (String, bool) {
    let mut parts = vec![v[j].code[..brace_at].to_string()];
    let mut start = j;
    let mut k = j;
    // Walk back over continuation lines while the declaration is incomplete.
    while k > 0 && parts.len() < 6 {
        let prev = v[k - 1].code.trim_end();
        let joined = parts.join(" ");
        let needs_more = joined.trim().is_empty()
            || joined
                .trim_start()
                .starts_with(|c: char| c != '_' && !c.is_alphanumeric())
            || {
                let opens = joined.matches('(').count();
                let closes = joined.matches(')').count();
                closes > opens
            }
            || !joined.contains('(')
                && !joined.contains('=')
                && !joined.trim_start().starts_with("struct")
                && !joined.trim_start().starts_with("union")
                && !joined.trim_start().starts_with("enum")
                && !joined.trim_start().starts_with("typedef");
        if !needs_more
            || prev.is_empty()
            || prev.ends_with(';')
            || prev.ends_with('}')
            || prev.trim_start().starts_with('#')
            || prev.ends_with('{')
        {
            break;
        }
        parts.insert(0, prev.to_string());
        k -= 1;
        start = k;
    }
    // `static int __init` on the line before `foo(void)`: the return type.
    if start > 0 {
        let prev = &v[start - 1].code;
        let t = prev.trim();
        let type_line = !t.is_empty()
            && !prev.starts_with([' ', '\t'])
            && !t.contains([';', '{', '}', '(', ')', '#', '=', ',']);
        if type_line && parts.first().is_some_and(|f| f.contains('(')) {
            parts.insert(0, t.to_string());
            start -= 1;
        }
    }
    let top = !v[start].code.starts_with([' ', '\t']);
    let text = parts.iter().map(|s| s.trim()).collect::<Vec<_>>().join(" ");
    (text, top)
}

/// Where a view line sits, from the hunk's own lines: its enclosing blocks
/// (the chain, innermost first) and whether the chain is complete (false
/// when the hunk started before the outermost block was closed off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Scope {
    /// The innermost enclosing block (index into [`Scopes::blocks`]).
    innermost: Option<usize>,
    /// How many blocks the chain has.
    len: usize,
    complete: bool,
    /// Whether the innermost block's opening line is itself new (a new type).
    innermost_new: bool,
    /// The innermost function in the chain (index into [`Scopes::blocks`]).
    function: Option<usize>,
}

/// One `{` still open at some point of a forward pass over a view.
struct Open {
    /// View line of the brace.
    line: usize,
    /// Index into [`Scopes::blocks`].
    block: usize,
    /// Whether a boundary line (see [`is_boundary`]) ended with this brace
    /// on top of the stack: reading backwards, the chain stops there.
    boundary_above: bool,
    /// Stack index where the chain of a line directly inside this block
    /// starts, and whether it is complete there.
    chain_from: usize,
    complete: bool,
    /// Innermost function block at or below this one within its chain.
    function: Option<usize>,
}

/// The [`Scope`] of every line of a view, in one forward pass (linear in
/// the hunk: a stack of open braces, where each brace remembers where a
/// backward reading from inside it would stop). The reading is: walk back
/// from the line, matching braces; an unmatched `{` opens a block of the
/// chain (stop after one that starts at column 0 at file scope); stop at a
/// boundary line when no block was found yet or all braces since it matched.
struct Scopes {
    blocks: Vec<Block>,
    at: Vec<Scope>,
}

impl Scopes {
    fn new(v: &[ViewLine]) -> Scopes {
        let mut blocks = Vec::new();
        let mut at = Vec::with_capacity(v.len());
        let mut stack: Vec<Open> = Vec::new();
        // A boundary line ended with nothing open, and no unmatched `}` since.
        let mut boundary_at_base = false;
        let mut last_boundary: Option<usize> = None;
        for (j, line) in v.iter().enumerate() {
            at.push(match stack.last() {
                None => Scope {
                    complete: last_boundary.is_some(),
                    ..Scope::default()
                },
                Some(top) if last_boundary >= Some(top.line) => Scope {
                    complete: true,
                    ..Scope::default()
                },
                Some(top) => Scope {
                    innermost: Some(top.block),
                    len: stack.len() - top.chain_from,
                    complete: top.complete,
                    innermost_new: v[top.line].changed,
                    function: top.function,
                },
            });
            for (ci, c) in line.code.char_indices() {
                match c {
                    '{' => {
                        let (decl, top) = decl_before(v, j, ci);
                        let block = classify(&decl, top);
                        let at_top = top && line.code.starts_with(|ch: char| !ch.is_whitespace());
                        let here = stack.len();
                        let (chain_from, complete) = match stack.last() {
                            _ if at_top => (here, true),
                            None => (here, boundary_at_base),
                            Some(below) if below.boundary_above => (here, true),
                            Some(below) => (below.chain_from, below.complete),
                        };
                        let function = match (&block, stack.last()) {
                            (Block::Function(_), _) => Some(blocks.len()),
                            (_, Some(below)) if chain_from < here => below.function,
                            _ => None,
                        };
                        blocks.push(block);
                        stack.push(Open {
                            line: j,
                            block: blocks.len() - 1,
                            boundary_above: false,
                            chain_from,
                            complete,
                            function,
                        });
                    }
                    '}' => {
                        // An unmatched `}` closes something before the hunk.
                        let matched = stack.pop().is_some();
                        boundary_at_base &= matched;
                    }
                    _ => {}
                }
            }
            if is_boundary(&line.code) {
                last_boundary = Some(j);
                match stack.last_mut() {
                    Some(top) => top.boundary_above = true,
                    None => boundary_at_base = true,
                }
            }
        }
        Scopes { blocks, at }
    }
}

/// Kernel style: a `}` or a complete statement at column 0 is file scope,
/// so nothing before it encloses the lines after it.
fn is_boundary(code: &str) -> bool {
    let t = code.trim_end();
    t.starts_with('}')
        || (!t.is_empty()
            && !t.starts_with([' ', '\t', '#'])
            && t.ends_with(';')
            && !t.contains('{'))
}

/// The function a changed line is in, from the hunk (`function`, the
/// innermost function block of its chain) or from the `@@` section.
fn function_of(function: Option<&Block>, complete: bool, section: &str) -> Option<String> {
    if let Some(Block::Function(d)) = function {
        return Some(d.clone());
    }
    if complete {
        return None;
    }
    match classify(section, true) {
        Block::Function(d) => Some(d),
        _ => None,
    }
}

/// A short name for a function declaration: the identifier before `(`.
fn func_name(decl: &str) -> String {
    let head = decl.split('(').next().unwrap_or(decl);
    let name = head
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .rfind(|s| !s.is_empty())
        .unwrap_or("?");
    if name.starts_with("SYSCALL_DEFINE") || name.starts_with("COMPAT_SYSCALL_DEFINE") {
        let arg = decl
            .split('(')
            .nth(1)
            .and_then(|a| a.split([',', ')']).next())
            .unwrap_or("?")
            .trim();
        return format!("{name}({arg})");
    }
    format!("{name}()")
}

fn has_word(code: &str, words: &[&str]) -> Option<String> {
    static WORD: OnceLock<Regex> = OnceLock::new();
    let r = re(&WORD, r"[A-Za-z_][A-Za-z0-9_]*");
    r.find_iter(code)
        .map(|m| m.as_str())
        .find(|w| words.contains(w))
        .map(str::to_string)
}

const INIT_WORDS: &[&str] = &[
    "__init",
    "__exit",
    "__initdata",
    "__initconst",
    "__exitdata",
    "__meminit",
    "__meminitdata",
    "__init_or_module",
    "__devinit",
    "__devinitdata",
    "__cpuinit",
];

fn analyze_hunk(out: &mut Findings, file: &str, hunk: &Hunk) {
    static ONCE: OnceLock<Regex> = OnceLock::new();
    static JUMP: OnceLock<Regex> = OnceLock::new();
    static SCALL: OnceLock<Regex> = OnceLock::new();
    static EXPORT: OnceLock<Regex> = OnceLock::new();
    static INITCALL: OnceLock<Regex> = OnceLock::new();
    static INCLUDE: OnceLock<Regex> = OnceLock::new();
    static STATIC_LOCAL: OnceLock<Regex> = OnceLock::new();
    static INLINE_DEF: OnceLock<Regex> = OnceLock::new();
    static SYSCALL: OnceLock<Regex> = OnceLock::new();
    let once = re(
        &ONCE,
        r"\b(printk_once|printk_deferred_once|pr_[a-z]+_once|dev_[a-z]+_once|netdev_[a-z]+_once|net_[a-z]+_once|WARN_ONCE|WARN_ON_ONCE|WARN_TAINT_ONCE|DO_ONCE|DO_ONCE_LITE|DO_ONCE_LITE_IF|DO_ONCE_SLEEPABLE|[a-z_]+_warn_once)\s*\(",
    );
    let jump = re(
        &JUMP,
        r"\b(static_branch_likely|static_branch_unlikely|static_key_true|static_key_false)\s*\(",
    );
    let scall = re(&SCALL, r"\bstatic_call(_cond|_mod)?\s*\(");
    let export = re(
        &EXPORT,
        r"\bEXPORT_(SYMBOL|SYMBOL_GPL|SYMBOL_NS|SYMBOL_NS_GPL|SYMBOL_GPL_FUTURE|PER_CPU_SYMBOL|PER_CPU_SYMBOL_GPL)\s*\(",
    );
    let initcall = re(
        &INITCALL,
        r"\b(module_init|module_exit|(pure|core|postcore|arch|subsys|fs|device|late|rootfs|early|console|security)_initcall(_sync)?|__setup|early_param|__exitcall|__initcall)\s*\(",
    );
    let include = re(&INCLUDE, r#"^\s*#\s*include\s*[<"]([^>"]+)[>"]"#);
    let static_local = re(&STATIC_LOCAL, r"^\s+static\s");
    let inline_def = re(&INLINE_DEF, r"\b(inline|__inline|__inline__)\b[^;=]*\(");
    let syscall = re(&SYSCALL, r"\b(COMPAT_)?SYSCALL_DEFINE\d\s*\(");

    for new in [true, false] {
        let v = view(hunk, new);
        let scopes = Scopes::new(&v);
        let verb = if new { "adds" } else { "removes" };
        for (p, vp) in v.iter().enumerate() {
            if !vp.changed {
                continue;
            }
            let line = hunk.line + 1 + vp.idx;
            let code = vp.code.as_str();
            let raw = hunk.lines[vp.idx].get(1..).unwrap_or("").trim();

            // Line patterns.
            if new {
                if let Some(m) = once.captures(code) {
                    out.add(
                        Category::OnceMacro,
                        line,
                        file,
                        None,
                        Some(format!("adds {}()", &m[1])),
                    );
                }
                if let Some(m) = jump.captures(code) {
                    out.add(
                        Category::JumpLabel,
                        line,
                        file,
                        None,
                        Some(format!("adds {}()", &m[1])),
                    );
                }
                if scall.is_match(code) {
                    out.add(
                        Category::StaticCall,
                        line,
                        file,
                        None,
                        Some("adds static_call()".into()),
                    );
                }
                // The include is inside a string literal after stripping; match the raw text.
                if let Some(m) = include.captures(raw) {
                    let h = &m[1];
                    let harmless = h == "linux/livepatch.h" || h.starts_with("kpatch-");
                    if !harmless {
                        out.add(
                            Category::NewInclude,
                            line,
                            file,
                            None,
                            Some(format!("adds #include {h}")),
                        );
                    }
                }
            }
            if let Some(m) = export.captures(code) {
                out.add(
                    Category::ExportedSymbol,
                    line,
                    file,
                    None,
                    Some(format!("{verb} EXPORT_{}", &m[1])),
                );
            }
            if let Some(w) = has_word(code, INIT_WORDS) {
                out.add(
                    Category::InitCode,
                    line,
                    file,
                    None,
                    Some(format!("{verb} a line marked {w}")),
                );
            } else if let Some(m) = initcall.captures(code) {
                out.add(
                    Category::InitCode,
                    line,
                    file,
                    None,
                    Some(format!("{verb} {}()", &m[1])),
                );
            }
            if let Some(w) = has_word(code, &["__ro_after_init", "__read_mostly"]) {
                out.add(
                    Category::DataSection,
                    line,
                    file,
                    None,
                    Some(format!("{verb} a {w} variable")),
                );
            }
            if has_word(code, &["notrace"]).is_some() {
                out.add(
                    Category::Notrace,
                    line,
                    file,
                    None,
                    Some(format!("{verb} a notrace line")),
                );
            }

            // Context: which block is this line in?
            let scope = scopes.at[p];
            let (complete, innermost_new) = (scope.complete, scope.innermost_new);
            match scope.innermost.map(|i| &scopes.blocks[i]) {
                // A whole new type is not a layout change of existing data.
                Some(Block::Type(_)) if innermost_new => continue,
                Some(Block::Type(d)) => {
                    out.add(
                        Category::DataLayout,
                        line,
                        file,
                        Some(d),
                        Some(format!("{verb} a member of `{}`", short(d))),
                    );
                    continue;
                }
                Some(Block::Initializer { .. }) if innermost_new => {}
                Some(Block::Initializer { decl, top_level })
                    if (*top_level || scope.function.is_none())
                        && !(scope.len == 1 && complete && !*top_level) =>
                {
                    out.add(
                        Category::GlobalData,
                        line,
                        file,
                        Some(decl),
                        Some(format!("changes the initializer of `{}`", short(decl))),
                    );
                    continue;
                }
                None if !complete => {
                    // No brace seen in the hunk before this line: the @@ section says where we are.
                    match classify(&hunk.section, true) {
                        Block::Type(d) if !hunk.section.trim().is_empty() => {
                            out.add(
                                Category::DataLayout,
                                line,
                                file,
                                Some(&d),
                                Some(format!("{verb} a member of `{}`", short(&d))),
                            );
                            continue;
                        }
                        Block::Initializer { decl, .. }
                            if !hunk.section.starts_with([' ', '\t']) =>
                        {
                            out.add(
                                Category::GlobalData,
                                line,
                                file,
                                Some(&decl),
                                Some(format!("changes the initializer of `{}`", short(&decl))),
                            );
                            continue;
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
            // A change to a function's own declaration line counts for that function too.
            let own_decl = if inline_def.is_match(code) || syscall.is_match(code) {
                Some(code.trim().to_string())
            } else {
                None
            };
            let function = scope.function.map(|i| &scopes.blocks[i]);
            let func = function_of(function, complete, &hunk.section).or(own_decl.clone());
            if let Some(f) = &func {
                let name = func_name(f);
                if let Some(w) = has_word(f, INIT_WORDS) {
                    out.add(
                        Category::InitCode,
                        line,
                        file,
                        Some(f),
                        Some(format!("changes {name}, which is {w}")),
                    );
                }
                if has_word(f, &["inline", "__inline", "__inline__"]).is_some()
                    && has_word(f, &["__always_inline"]).is_none()
                {
                    out.add(
                        Category::Inline,
                        line,
                        file,
                        Some(f),
                        Some(format!("changes inline function {name}")),
                    );
                }
                if has_word(f, &["notrace"]).is_some() {
                    out.add(
                        Category::Notrace,
                        line,
                        file,
                        Some(f),
                        Some(format!("changes notrace function {name}")),
                    );
                }
                if new && syscall.is_match(f) {
                    out.add(
                        Category::Syscall,
                        line,
                        file,
                        Some(f),
                        Some(format!("changes system call {name}")),
                    );
                }
                if own_decl.is_none() && static_local.is_match(code) && !code.contains('(') {
                    out.add(
                        Category::StaticLocal,
                        line,
                        file,
                        None,
                        Some(format!("{verb} a static local in {name}")),
                    );
                }
            }
        }
    }
}

/// The original quadratic reading (walk back from every line), kept as
/// the oracle [`Scopes`] is tested against. Enclosing blocks of view line `p`, innermost first. `complete` is false
/// when the hunk started before the outermost block was closed off.
#[cfg(test)]
fn enclosing_reference(v: &[ViewLine], p: usize) -> (Vec<Block>, bool, bool) {
    let mut chain = Vec::new();
    // Whether the innermost block's opening line is itself new (a new type).
    let mut innermost_new = false;
    let mut need = 0usize;
    for j in (0..p).rev() {
        let code = &v[j].code;
        // Kernel style: a `}` or a complete statement at column 0 is file
        // scope, so nothing before it encloses this line.
        let t = code.trim_end();
        let boundary = t.starts_with('}')
            || (!t.is_empty()
                && !t.starts_with([' ', '\t', '#'])
                && t.ends_with(';')
                && !t.contains('{'));
        if boundary && (chain.is_empty() || need == 0) {
            return (chain, true, innermost_new);
        }
        for (ci, c) in code.char_indices().rev() {
            match c {
                '}' => need += 1,
                '{' if need > 0 => need -= 1,
                '{' => {
                    let (decl, top) = decl_before(v, j, ci);
                    let b = classify(&decl, top);
                    let at_top = top && code.starts_with(|ch: char| !ch.is_whitespace());
                    if chain.is_empty() {
                        innermost_new = v[j].changed;
                    }
                    chain.push(b);
                    if at_top {
                        return (chain, true, innermost_new);
                    }
                }
                _ => {}
            }
        }
    }
    (chain, false, innermost_new)
}

/// Declarations shortened for messages.
fn short(d: &str) -> String {
    let d = d.split_whitespace().collect::<Vec<_>>().join(" ");
    if d.chars().count() > 60 {
        format!("{}...", d.chars().take(57).collect::<String>())
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(text: &str) -> Vec<Category> {
        let p = Patch::parse(text).unwrap();
        let mut c: Vec<_> = analyze(Path::new("t.patch"), &p)
            .into_iter()
            .map(|f| f.category)
            .collect();
        c.dedup();
        c
    }

    #[test]
    fn strip_blanks_comments_and_strings() {
        let mut st = false;
        assert_eq!(
            strip_code("a /* { */ b \"{\" // }", &mut st)
                .matches('{')
                .count(),
            0
        );
        assert!(!st);
        strip_code("x /* open", &mut st);
        assert!(st);
        assert_eq!(
            strip_code(" still { */ y {", &mut st).matches('{').count(),
            1
        );
    }

    #[test]
    fn body_change_is_clean() {
        let p = "--- a/k.c\n+++ b/k.c\n@@ -1,4 +1,4 @@\n static void f(int a)\n {\n-\tg(a);\n+\tg(a + 1);\n }\n";
        assert_eq!(cats(p), vec![]);
    }

    #[test]
    fn struct_member_via_section() {
        let p = "--- a/k.c\n+++ b/k.c\n@@ -10,2 +10,3 @@ struct foo {\n \tint a;\n+\tint b;\n \tint c;\n";
        assert_eq!(cats(p), vec![Category::DataLayout]);
    }

    #[test]
    fn code_after_the_section_function_is_file_scope() {
        // The @@ section names an __init function, but the hunk starts after it ended.
        let p = "--- a/k.c\n+++ b/k.c\n@@ -10,3 +10,7 @@ static int __init foo_init(void)\n }\n module_init(foo_init);\n \n+void helper(void)\n+{\n+\tbar();\n+}\n";
        assert_eq!(cats(p), vec![]);
        let p = "--- a/k.c\n+++ b/k.c\n@@ -10,2 +10,6 @@ static void __exit foo_exit(void)\n module_exit(foo_exit);\n \n+static const char *const names[] = {\n+\t\"a\",\n+\t\"b\",\n+};\n";
        assert_eq!(cats(p), vec![]);
    }

    #[test]
    fn new_struct_is_not_a_layout_change() {
        let p = "--- a/k.c\n+++ b/k.c\n@@ -1,2 +1,6 @@\n #include <linux/types.h>\n+struct hotfix_state {\n+\tint a;\n+\tint b;\n+};\n \n";
        assert_eq!(cats(p), vec![]);
    }

    /// Lines a generated hunk is made of: braces at several depths, type,
    /// initializer and function openers, boundaries, control blocks.
    const SHAPES: &[&str] = &[
        " {",
        " }",
        " \t{",
        " \t}",
        " };",
        " } else {",
        " \t} else {",
        " static void f(int a)",
        " static int __init g(void)",
        " int h(void) {",
        " struct s {",
        " \tstruct t {",
        " static int a[] = {",
        " \tint b[] = {",
        " \tif (x) {",
        " \tfor (;;) {",
        " \tx = 1;",
        " x = 1;",
        " #define Y {",
        " ",
        " \t/* { */",
        " int",
        " foo(void)",
        "+{",
        "+}",
        "+\tif (y) {",
        "+struct n {",
        "+\ty();",
        "+static const int c[] = {",
        "-}",
        "-{",
        "-\tz();",
        "+x;",
        "+} else {",
        "+int k(void) {",
    ];

    fn generated_hunk(picks: &[usize]) -> Hunk {
        Hunk {
            old_start: 1,
            old_len: 0,
            new_start: 1,
            new_len: 0,
            section: String::new(),
            line: 1,
            lines: picks
                .iter()
                .map(|&i| SHAPES[i % SHAPES.len()].to_string())
                .collect(),
        }
    }

    /// The linear [`Scopes`] reads every line of every view exactly as the
    /// original backward walk did.
    #[test]
    fn scopes_agree_with_the_backward_walk() {
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        let cases = std::env::var("KHOTFIX_FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(512);
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
        );
        let strategy = proptest::collection::vec(0..SHAPES.len(), 0..40);
        runner
            .run(&strategy, |picks| {
                let hunk = generated_hunk(&picks);
                for new in [true, false] {
                    let v = view(&hunk, new);
                    let scopes = Scopes::new(&v);
                    for p in 0..v.len() {
                        let (chain, complete, innermost_new) = enclosing_reference(&v, p);
                        let s = scopes.at[p];
                        let got_first = s.innermost.map(|i| scopes.blocks[i].clone());
                        let got_fn = s.function.map(|i| scopes.blocks[i].clone());
                        let want_fn = chain
                            .iter()
                            .find(|b| matches!(b, Block::Function(_)))
                            .cloned();
                        let ctx = format!("line {p} of {:?}", hunk.lines);
                        proptest::prop_assert_eq!(got_first, chain.first().cloned(), "{}", ctx);
                        proptest::prop_assert_eq!(s.len, chain.len(), "{}", ctx);
                        proptest::prop_assert_eq!(s.complete, complete, "{}", ctx);
                        proptest::prop_assert_eq!(s.innermost_new, innermost_new, "{}", ctx);
                        proptest::prop_assert_eq!(got_fn, want_fn, "{}", ctx);
                    }
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn multi_line_init_signature() {
        let p = "--- a/k.c\n+++ b/k.c\n@@ -1,5 +1,5 @@\n static int __init\n foo_setup(void)\n {\n-\treturn 0;\n+\treturn 1;\n }\n";
        assert_eq!(cats(p), vec![Category::InitCode]);
    }
}
