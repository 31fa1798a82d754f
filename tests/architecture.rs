//! The relay's top-level modules form layers that import downward only (docs/ARCHITECTURE.md).
//!
//! Reads every `src/**/*.rs`, finds each `crate::<module>` path outside comments, and fails,
//! naming the file, the line and the import, when a module reaches a layer above its own or
//! when modules of one layer import each other in a circle. A new top-level module must be
//! given a layer here before it compiles into a green test run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod source_scan;

use source_scan::{code_lines, ident, read, rust_files};

/// Top to bottom. A module may import any module of a lower layer; within a layer, imports
/// must not form a circle.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "wiring",
        &["relay", "roles", "listener", "shard_thread", "pipeline"],
    ),
    ("http", &["http"]),
    ("session", &["session"]),
    ("shard", &["shard"]),
    ("relay-wide state", &["shared"]),
    ("the NATS hop", &["nats"]),
    ("sequencer and sources", &["sequencer", "ingest"]),
    ("encode", &["encode"]),
    (
        "leaf types",
        &[
            "metrics", "error", "tick", "book", "event", "auth", "tls", "config", "limits",
            "shutdown", "proto",
        ],
    ),
];

/// One `crate::` reference found in a source file.
#[derive(Debug, Clone)]
struct Import {
    file: PathBuf,
    line: usize,
    from: String,
    to: String,
    text: String,
}

#[test]
fn modules_import_only_layers_below_their_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let imports = scan(&root);
    assert!(
        imports.len() > 50,
        "the scan found only {} imports under {}: is it reading the sources?",
        imports.len(),
        root.display()
    );
    let violations = check(&imports);
    assert!(
        violations.is_empty(),
        "imports against the layering (docs/ARCHITECTURE.md):\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read src/lib.rs");
    let missing: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .chain(lib.lines().filter_map(|l| l.trim().strip_prefix("mod ")))
        .map(|m| m.trim_end_matches(';'))
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a layer in tests/architecture.rs: {missing:?}"
    );
}

#[test]
fn the_checker_catches_an_upward_import_and_a_circle() {
    let import = |from: &str, to: &str| Import {
        file: PathBuf::from(format!("src/{from}/x.rs")),
        line: 1,
        from: from.into(),
        to: to.into(),
        text: format!("use crate::{to}::X;"),
    };
    let upward = check(&[import("shard", "session")]);
    assert_eq!(upward.len(), 1, "{upward:?}");
    assert!(upward[0].contains("src/shard/x.rs:1"), "{upward:?}");
    assert!(
        upward[0].contains("shard (shard) imports session (session)"),
        "{upward:?}"
    );
    let circle = check(&[import("sequencer", "ingest"), import("ingest", "sequencer")]);
    assert!(
        circle.iter().any(|v| v.contains("circle")),
        "a same-layer circle is reported: {circle:?}"
    );
    assert!(check(&[import("session", "shard"), import("shard", "tick")]).is_empty());
    let refs = references("use crate::{config::Config, tick::Tick};  // crate::http::x");
    assert_eq!(refs, vec!["config".to_string(), "tick".to_string()]);
}

/// A file does one job: no file in `src/` or `loadtest/src/` runs past this many lines
/// before its `#[cfg(test)]` module (docs/ARCHITECTURE.md, "File size").
const MAX_LINES: usize = 450;

#[test]
fn no_source_file_is_over_the_line_limit() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut over = Vec::new();
    for dir in ["src", "loadtest/src"] {
        for file in rust_files(&manifest.join(dir)) {
            let lines = code_lines(&read(&file));
            if lines > MAX_LINES {
                over.push(format!("{}: {lines} lines", file.display()));
            }
        }
    }
    assert!(
        over.is_empty(),
        "files over {MAX_LINES} lines outside their #[cfg(test)] module: split them by job:\n{}",
        over.join("\n")
    );
}

#[test]
fn shard_core_is_implemented_only_inside_the_shard_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for file in rust_files(&root) {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("impl ShardCore") {
                found.push((file.clone(), n + 1));
            }
        }
    }
    assert!(
        found.len() >= 3,
        "the scan found {found:?}: is it reading the sources?"
    );
    let outside: Vec<String> = found
        .iter()
        .filter(|(f, _)| !f.starts_with(root.join("shard")))
        .map(|(f, n)| format!("{}:{n}", f.display()))
        .collect();
    assert!(
        outside.is_empty(),
        "ShardCore is implemented outside src/shard/: {outside:?}"
    );
    let shard = std::fs::read_to_string(root.join("shard/mod.rs")).expect("read shard/mod.rs");
    let body = shard
        .split("pub struct ShardCore {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("ShardCore's definition in src/shard/mod.rs");
    let public: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("pub"))
        .collect();
    assert!(public.is_empty(), "ShardCore has public fields: {public:?}");
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// Every violation, one line each: upward imports, then circles within a layer.
fn check(imports: &[Import]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut same_layer: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for import in imports {
        if import.from == import.to {
            continue;
        }
        let (Some(from), Some(to)) = (layer_of(&import.from), layer_of(&import.to)) else {
            violations.push(format!(
                "{}:{}: `{}` names a module with no layer ({} → {})",
                import.file.display(),
                import.line,
                import.text,
                import.from,
                import.to
            ));
            continue;
        };
        if to < from {
            violations.push(format!(
                "{}:{}: {} ({}) imports {} ({}), a layer above: `{}`",
                import.file.display(),
                import.line,
                import.from,
                LAYERS[from].0,
                import.to,
                LAYERS[to].0,
                import.text
            ));
        } else if to == from {
            same_layer
                .entry(import.from.clone())
                .or_default()
                .insert(import.to.clone());
        }
    }
    for start in same_layer.keys() {
        // Each circle once: from its smallest module.
        let circle = circle_through(start, &same_layer);
        if let Some(path) = circle.filter(|p| p.iter().min() == Some(start)) {
            violations.push(format!(
                "import circle within a layer: {}",
                path.join(" → ")
            ));
        }
    }
    violations
}

/// A path `start → … → start` in `edges`, if one exists.
fn circle_through(start: &str, edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().expect("paths are never empty");
        for next in edges.get(last).into_iter().flatten() {
            if next == start {
                let mut circle = path.clone();
                circle.push(start.to_string());
                return Some(circle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

/// Every `crate::` reference in the crate's sources (the binary's `main.rs` uses the
/// library's public API by name, not `crate::`, and `lib.rs` only declares modules).
fn scan(root: &Path) -> Vec<Import> {
    let mut imports = Vec::new();
    for file in rust_files(root) {
        let relative = file.strip_prefix(root).expect("under src");
        let Some(from) = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|c| c.trim_end_matches(".rs").to_string())
        else {
            continue;
        };
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let lines: Vec<&str> = text.lines().collect();
        for (line, to) in references_in(&text) {
            imports.push(Import {
                file: Path::new("src").join(relative),
                line,
                from: from.clone(),
                to,
                text: lines[line - 1].trim().to_string(),
            });
        }
    }
    imports
}

/// The top-level modules a source text names through `crate::`, with the line of each
/// (from 1), comments left out. Handles `crate::a::B` and `use crate::{a::B, b::{C, D}}`
/// groups over several lines.
fn references_in(text: &str) -> Vec<(usize, String)> {
    // Comments become blanks of the same length, so offsets still map to lines.
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(at) => format!("{}{}\n", &l[..at], " ".repeat(l.len() - at)),
            None => format!("{l}\n"),
        })
        .collect();
    let line_of = |offset: usize| code[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::").map(|i| i + from) {
        from = at + "crate::".len();
        let preceded_by_ident = code[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if preceded_by_ident {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        push_item(
                            &mut found,
                            &group[item_start..i],
                            from + 1 + item_start,
                            &line_of,
                        );
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        push_item(
                            &mut found,
                            &group[item_start..i],
                            from + 1 + item_start,
                            &line_of,
                        );
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.push((line_of(at), name));
            }
        }
    }
    found
}

fn push_item(
    found: &mut Vec<(usize, String)>,
    item: &str,
    offset: usize,
    line_of: &impl Fn(usize) -> usize,
) {
    let trimmed = item.trim_start();
    let name = ident(trimmed);
    if !name.is_empty() && name != "self" {
        found.push((line_of(offset + item.len() - trimmed.len()), name));
    }
}

/// The modules one line names (see [`references_in`]).
fn references(line: &str) -> Vec<String> {
    references_in(line).into_iter().map(|(_, m)| m).collect()
}
