//! Every relative link in README.md and docs/ (Markdown `[text](path)`) points at a file or
//! folder in the repository, so moving a document cannot leave the front page or an index
//! pointing nowhere. Links to web addresses and in-page anchors are not followed.

use std::path::{Path, PathBuf};

fn markdown_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read docs/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            markdown_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "md") {
            into.push(path);
        }
    }
}

/// The targets of `[text](target)` links in `text`, without any `#anchor` or title.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let tail = &rest[at + 2..];
        let end = tail.find(')').unwrap_or(tail.len());
        let target = tail[..end].split_whitespace().next().unwrap_or("");
        out.push(target.split('#').next().unwrap_or("").to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn relative_links_in_readme_and_docs_point_at_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    markdown_files(&root.join("docs"), &mut files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a Markdown file");
        for target in links(&text) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let dir = file.parent().expect("a file has a folder");
            if !dir.join(&target).exists() {
                broken.push(format!(
                    "{}: {target}",
                    file.strip_prefix(root).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} links found: is the scan reading the docs?"
    );
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
}
