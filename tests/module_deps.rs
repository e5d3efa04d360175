//! The dependency order of the node's top-level modules (README, "Layout").
//!
//! Reads every `.rs` file under `src/`, finds the paths that name another
//! top-level module (`crate::x`, `use crate::{x, y::z}`, and `super::x`
//! from a module's root file), and fails when:
//! - two top-level modules import each other, directly or through others
//!   (a cycle in the graph), or
//! - a module imports one at its own layer or above it in [`LAYERS`].
//!
//! Comments are left out: a doc link is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom: each module may use what is in a lower layer, nothing in
/// its own or a higher one. `outpost-storage` is below all of them and
/// knows nothing of HTTP (it is its own crate, without `http` or `hyper`).
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["server", "logging"],
    &["admin", "proxy"],
    &["purge", "admission", "cluster"],
    &["cache", "origin", "access_log", "compress"],
    &["config", "metrics"],
    &["error", "clock", "deadline", "fields"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments (line, doc and block comments); string
/// literals are kept as they are (none of ours spells a module path).
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let mut depth = 0usize;
    while i < b.len() {
        if depth > 0 {
            if b[i..].starts_with(b"*/") {
                depth -= 1;
                i += 2;
            } else if b[i..].starts_with(b"/*") {
                depth += 1;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if b[i..].starts_with(b"/*") {
            depth = 1;
            i += 2;
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segments of the paths inside a `{ … }` group that starts at
/// `s` (just after the `{`).
fn group_heads(s: &str, out: &mut BTreeSet<String>) {
    let mut depth = 0i32;
    let mut at_start = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => {
                depth += 1;
                at_start = true;
            }
            '}' => {
                if depth == 0 {
                    return;
                }
                depth -= 1;
            }
            ',' => at_start = depth == 0,
            c if c.is_whitespace() => {}
            _ => {
                if at_start && depth == 0 {
                    let id = ident_at(&s[i..]);
                    if !id.is_empty() {
                        out.insert(id.to_owned());
                    }
                }
                at_start = false;
            }
        }
    }
}

/// The top-level modules named by `prefix` paths in `code`
/// (`prefix` is `crate::` or, from a module's root file, `super::`).
fn named_modules(code: &str, prefix: &str, out: &mut BTreeSet<String>) {
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + prefix.len()..];
        rest = after;
        // `foo_crate::` or `super::super::` are not what we look for here.
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            group_heads(group, out);
        } else {
            let id = ident_at(after);
            if !id.is_empty() && id != "super" {
                out.insert(id.to_owned());
            }
        }
    }
}

/// Module name → the other top-level modules it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    // The top-level modules: `src/x.rs` and `src/x/`.
    let tops: BTreeSet<String> = std::fs::read_dir(src)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap_or(&f);
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        let Some(top) = parts.first().cloned() else {
            continue;
        };
        // The crate root, and the build script (compiled apart, before the
        // crate).
        if top == "lib" || top == "build" {
            continue;
        }
        let code = strip_comments(&std::fs::read_to_string(&f).unwrap_or_default());
        let mut named = BTreeSet::new();
        named_modules(&code, "crate::", &mut named);
        // `super::x` leaves the module only from its root file.
        let is_root = parts.len() == 1 || (parts.len() == 2 && parts[1] == "mod");
        if is_root {
            named_modules(&code, "super::", &mut named);
        } else if parts.len() == 2 {
            named_modules(&code, "super::super::", &mut named);
        }
        let entry = g.entry(top.clone()).or_default();
        for m in named {
            // Crate-root items (`crate::Error`) and a root file's inline
            // modules (`super::x` inside `mod tests`) are not top-level
            // modules.
            if m != top && tops.contains(&m) {
                entry.insert(m);
            }
        }
    }
    g
}

/// The cycles of `g`, each as its strongly connected set of modules.
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for n in g.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for m in g.keys() {
        let from_m = reach(m);
        if !from_m.contains(m) {
            continue;
        }
        let scc: BTreeSet<String> = from_m
            .iter()
            .filter(|n| reach(n).contains(m))
            .cloned()
            .collect();
        if !out.contains(&scc) {
            out.push(scc);
        }
    }
    out
}

fn problems(src: &Path) -> Vec<String> {
    let g = graph(src);
    let mut out = Vec::new();
    for scc in cycles(&g) {
        let edges: Vec<String> = scc
            .iter()
            .flat_map(|a| {
                g.get(a)
                    .into_iter()
                    .flatten()
                    .filter(|b| scc.contains(*b))
                    .map(move |b| format!("{a} -> {b}"))
            })
            .collect();
        out.push(format!("import cycle: {}", edges.join(", ")));
    }
    for (m, deps) in &g {
        let Some(lm) = layer_of(m) else {
            out.push(format!("module `{m}` is not in the layer list"));
            continue;
        };
        for d in deps {
            match layer_of(d) {
                None => out.push(format!(
                    "module `{d}` (used by `{m}`) is not in the layer list"
                )),
                Some(ld) if ld <= lm => {
                    out.push(format!("`{m}` imports `{d}`, which is not below it"))
                }
                Some(_) => {}
            }
        }
    }
    out
}

#[test]
fn top_level_modules_import_only_what_is_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let p = problems(&src);
    assert!(
        p.is_empty(),
        "module dependency problems:\n{}",
        p.join("\n")
    );
}

#[test]
fn the_checker_finds_cycles_and_upward_imports() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let src = dir.path();
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(p, text).unwrap_or_else(|e| panic!("{e}"));
    };
    write("lib.rs", "pub mod cache;\npub mod purge;\n");
    for m in ["config", "error", "proxy", "server"] {
        write(&format!("{m}.rs"), "");
    }
    write(
        "cache/mod.rs",
        "//! Uses crate::proxy only in a comment.\nuse crate::{config::X, error::Error};\n",
    );
    write(
        "cache/layer.rs",
        "fn f() { let _ = crate::purge::bans(); /* crate::server */ }\n",
    );
    write("purge/mod.rs", "use super::cache::Thing;\n");
    let p = problems(src);
    assert!(
        p.iter()
            .any(|l| l.starts_with("import cycle") && l.contains("cache -> purge")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l == "`cache` imports `purge`, which is not below it"),
        "{p:?}"
    );
    assert!(
        !p.iter()
            .any(|l| l.contains("proxy") || l.contains("server")),
        "{p:?}"
    );
    let g = graph(src);
    assert_eq!(
        g.get("cache").cloned().unwrap_or_default(),
        ["config", "error", "purge"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
