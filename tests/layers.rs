//! Keeps the module layering of `docs/architecture.md` true: a module may use modules of its
//! own layer's lower ones only, never one above it (the domains know nothing of `proxy`,
//! `admin` or `cli`).

use std::collections::BTreeSet;
use std::path::Path;

/// Layers, lowest first. Within one layer, the listed order is also a lower-to-upper order.
const LAYERS: &[&[&str]] = &[
    &[
        "problem",
        "globs",
        "environment",
        "clock",
        "code",
        "json",
        "sse",
        "mock",
    ],
    &[
        "translate",
        "fleet",
        "objects",
        "limits",
        "identity",
        "providers",
        "mcp",
        "policy",
        "metrics",
        "audit",
        "telemetry",
    ],
    &["config"],
    &["proxy", "admin", "k8s", "tunnel"],
    &["cli"],
];

/// Rank of a top-level module: its position in the flattened layer list.
fn rank(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .flat_map(|l| l.iter())
        .position(|m| *m == module)
}

/// Top-level modules referred to as `crate::name` in `text`.
fn used_modules(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            used.insert(name);
        }
    }
    used
}

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn no_module_uses_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_string())
            .expect("a file name");
        if top == "main" || top == "lib" {
            continue;
        }
        let Some(own) = rank(&top) else {
            violations.push(format!(
                "{}: module `{top}` has no layer",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable source");
        for used in used_modules(&text) {
            match rank(&used) {
                Some(r) if r > own => violations.push(format!(
                    "{}: `{top}` uses `{used}`, which is above it",
                    relative.display()
                )),
                Some(_) => {}
                None => violations.push(format!(
                    "{}: uses `crate::{used}`, which has no layer",
                    relative.display()
                )),
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_a_violation() {
    let used = used_modules("use crate::proxy::Refusal;\nuse crate::limits::X;");
    assert!(used.contains("proxy") && used.contains("limits"));
    assert!(rank("proxy") > rank("policy"));
}

#[test]
fn no_source_file_is_over_500_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).ok()?.lines().count();
            (lines > 500).then(|| format!("{}: {lines} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
}
