//! Inside every module, its files import one way: no circle between the files of a module, in
//! the relay (`src/`), the load harness (`loadtest/src/`) and the client crate
//! (`client/src/`), and no file of those over the line limit. (`tests/architecture.rs`
//! checks the layering of the relay's top-level modules.)
//!
//! A module is a directory with its root file (`x.rs` beside `x/`, or `x/mod.rs`). Its
//! nodes are the root file and each child (a file, or a child module with everything under
//! it). Edges, read from the code outside comments and `#[cfg(test)]` modules:
//! - a child naming `super::X` (or `crate::…::module::X`) depends on the child that defines
//!   `X` (a child module of that name, or the child the root re-exports `X` from), else on
//!   the root;
//! - the root using `child::…` in code depends on that child (its `mod child;` and
//!   `pub use child::X;` re-exports are declarations, not uses).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod source_scan;

use source_scan::{code_lines, ident, read, rust_files};

/// The crates' source roots, relative to the repository (each with a `lib.rs`).
const ROOTS: &[&str] = &["src", "loadtest/src", "client/src"];

/// A file does one job: no file runs past this many lines before its `#[cfg(test)]` module.
const MAX_LINES: usize = 450;

#[test]
fn no_import_circle_between_the_files_of_any_module() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut circles = Vec::new();
    let mut modules = 0;
    for root in ROOTS {
        for module in modules_under(&repo.join(root)) {
            modules += 1;
            for circle in circles_in(&module) {
                circles.push(format!("{}: {}", module.display(repo), circle.join(" → ")));
            }
        }
    }
    assert!(
        modules > 20,
        "found only {modules} modules: is the scan reading the sources?"
    );
    assert!(
        circles.is_empty(),
        "import circles between the files of a module (split out what both sides need):\n{}",
        circles.join("\n")
    );
}

#[test]
fn no_file_of_the_client_crate_is_over_the_line_limit() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let over: Vec<String> = rust_files(&repo.join("client/src"))
        .into_iter()
        .filter_map(|file| {
            let lines = code_lines(&read(&file));
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", file.display()))
        })
        .collect();
    assert!(over.is_empty(), "split these by job:\n{}", over.join("\n"));
}

#[test]
fn the_checker_finds_a_circle_through_a_re_export_and_passes_a_one_way_module() {
    let dir = tempdir();
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create a dir");
        std::fs::write(path, text).expect("write a file");
    };
    // a.rs re-exports `Feed` from feed.rs; fanout.rs names `super::Feed` (→ feed) and
    // `super::Core` (defined in the root); the root calls `fanout::run`: root ⇄ fanout.
    write(
        "m.rs",
        "mod fanout;\nmod feed;\npub use feed::Feed;\npub struct Core;\nfn go() { fanout::run(); }\n",
    );
    write(
        "m/fanout.rs",
        "use super::{Core, Feed};\npub fn run() {}\n#[cfg(test)]\nmod tests { use super::super::go; }\n",
    );
    write(
        "m/feed.rs",
        "// super::Core is only in a comment\npub struct Feed;\n",
    );
    let mut module = Module::at(&dir, "m").expect("the module");
    module.path = Some("m".into());
    let circles = circles_in(&module);
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert!(circles[0].contains(&"fanout".to_string()), "{circles:?}");
    // Move `Core` into its own file: one way again.
    write(
        "m.rs",
        "mod core;\nmod fanout;\nmod feed;\npub use core::Core;\npub use feed::Feed;\nfn go() { fanout::run(); }\n",
    );
    write("m/core.rs", "pub struct Core;\n");
    let module = Module::at(&dir, "m").expect("the module");
    assert!(circles_in(&module).is_empty());
    std::fs::remove_dir_all(&dir).expect("remove the scratch dir");
}

/// One module: its root file and its children by name (a file, or a directory with a
/// root file of its own).
#[derive(Debug)]
struct Module {
    root_file: PathBuf,
    dir: PathBuf,
    children: BTreeMap<String, Vec<PathBuf>>,
    /// Its path from the crate root (`shard`, `session::dispatch`); `None` for the crate
    /// root itself.
    path: Option<String>,
}

impl Module {
    /// The module `name` inside `parent` (its root `name.rs` or `name/mod.rs`).
    fn at(parent: &Path, name: &str) -> Option<Self> {
        let dir = parent.join(name);
        let root_file = [parent.join(format!("{name}.rs")), dir.join("mod.rs")]
            .into_iter()
            .find(|f| f.is_file())?;
        Self::with_root(dir, root_file)
    }

    fn with_root(dir: PathBuf, root_file: PathBuf) -> Option<Self> {
        let mut children = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).ok()? {
            let path = entry.expect("a directory entry").path();
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a UTF-8 file name")
                .to_string();
            if path == root_file {
                continue;
            }
            if path.is_dir() {
                children
                    .entry(name)
                    .or_insert_with(Vec::new)
                    .extend(rust_files(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                children.entry(name).or_insert_with(Vec::new).push(path);
            }
        }
        Some(Self {
            root_file,
            dir,
            children,
            path: None,
        })
    }

    fn display(&self, repo: &Path) -> String {
        self.dir
            .strip_prefix(repo)
            .unwrap_or(&self.dir)
            .display()
            .to_string()
    }
}

/// Every module with children under a crate's source root, the crate root included.
fn modules_under(src: &Path) -> Vec<Module> {
    let mut modules = Vec::new();
    if let Some(root) = Module::with_root(src.to_path_buf(), src.join("lib.rs")) {
        modules.push(root);
    }
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source directory") {
            let path = entry.expect("a directory entry").path();
            if !path.is_dir() {
                continue;
            }
            dirs.push(path.clone());
            let name = path.file_name().and_then(|n| n.to_str()).expect("UTF-8");
            if let Some(mut module) = Module::at(&dir, name) {
                let relative = path.strip_prefix(src).expect("under the source root");
                module.path = Some(relative.to_string_lossy().replace('/', "::"));
                modules.push(module);
            }
        }
    }
    modules
}

/// Each circle of `module`'s file graph once, as the node names along it.
fn circles_in(module: &Module) -> Vec<Vec<String>> {
    let edges = edges_of(module);
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut seen: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    for start in edges.keys() {
        let mut stack = vec![vec![start.clone()]];
        let mut visited = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path.last().expect("paths are never empty");
            for next in edges.get(last).into_iter().flatten() {
                if next == start {
                    let members: BTreeSet<String> = path.iter().cloned().collect();
                    if seen.insert(members) {
                        let mut circle = path.clone();
                        circle.push(start.clone());
                        found.push(circle);
                    }
                } else if visited.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }
    found
}

const ROOT: &str = "(root)";

/// Node → the nodes it depends on.
fn edges_of(module: &Module) -> BTreeMap<String, BTreeSet<String>> {
    let root_text = code(&read(&module.root_file));
    let re_exports = re_exports(&root_text, &module.children);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in root_text.lines() {
        let line = line.trim();
        let declaration = [
            "mod ",
            "pub mod ",
            "pub(crate) mod ",
            "pub use ",
            "pub(crate) use ",
        ]
        .iter()
        .any(|p| line.starts_with(p));
        if declaration {
            continue;
        }
        for child in module.children.keys() {
            if names_path(line, child) {
                edges.entry(ROOT.into()).or_default().insert(child.clone());
            }
        }
    }
    for (child, files) in &module.children {
        for file in files {
            let text = code(&read(file));
            // How many `super::` reach the module from this file.
            let depth = file
                .strip_prefix(&module.dir)
                .expect("a child's file is under the module")
                .components()
                .count()
                - usize::from(file.file_name().is_some_and(|n| n == "mod.rs"));
            let mut names = items_after(&text, &"super::".repeat(depth));
            if let Some(path) = &module.path {
                names.extend(items_after(&text, &format!("crate::{path}::")));
            }
            for name in names {
                let target = if module.children.contains_key(&name) {
                    name
                } else if let Some(from) = re_exports.get(&name) {
                    from.clone()
                } else {
                    ROOT.into()
                };
                if &target != child {
                    edges.entry(child.clone()).or_default().insert(target);
                }
            }
        }
    }
    edges
}

/// Item name → the child it is re-exported from (`pub use child::{A, B};`).
fn re_exports(root: &str, children: &BTreeMap<String, Vec<PathBuf>>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for statement in root.split(';') {
        let statement = statement.trim();
        let Some(rest) = ["pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|p| statement.strip_prefix(p))
        else {
            continue;
        };
        let rest = rest.trim_start_matches("self::");
        let child = ident(rest);
        if !children.contains_key(&child) {
            continue;
        }
        let items = &rest[child.len()..];
        for word in items.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !word.is_empty() && word != "self" {
                map.insert(word.to_string(), child.clone());
            }
        }
    }
    map
}

/// The first names after each `prefix` (`super::A`, `super::{A, b::C}` → A, b).
fn items_after(text: &str, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(prefix).map(|i| i + from) {
        from = at + prefix.len();
        let before = text[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &text[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    names.push(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() && name != "super" {
                names.push(name);
            }
        }
    }
    names.retain(|n| n != "self");
    names
}

/// Whether `line` names `child::` as a path start (not `other_child::` or `x::child::`).
fn names_path(line: &str, child: &str) -> bool {
    let pattern = format!("{child}::");
    line.match_indices(&pattern).any(|(at, _)| {
        let before = line[..at].trim_end_matches("self::");
        !before
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    })
}

/// The text before its `#[cfg(test)]` module, with `//` comments blanked.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A scratch directory under the target dir (removed by the test that made it).
fn tempdir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "module-files-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch dir");
    dir
}
