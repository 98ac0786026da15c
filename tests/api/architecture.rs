//! The layers of ARCHITECTURE.md, checked: every file under `src/` is read and each `crate::…`
//! path it names must be a layer its own layer may depend on (http → service → repo → domain).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What each layer must never name. Layers are the first path component under `src/` (a
/// top-level file is its own layer: `state`, `app`, `config`…).
fn forbidden(layer: &str) -> &'static [&'static str] {
    const ABOVE_SERVICE: &[&str] = &["http", "app", "cli"];
    match layer {
        "http" => &["repo", "app", "cli", "jobs"],
        "service" | "state" | "jobs" => ABOVE_SERVICE,
        "repo" => &[
            "service",
            "http",
            "state",
            "app",
            "cli",
            "jobs",
            "auth",
            "providers",
        ],
        "auth" | "providers" => &["repo", "service", "http", "state", "app", "cli", "jobs"],
        "domain" => &[
            "repo",
            "service",
            "http",
            "state",
            "app",
            "cli",
            "jobs",
            "auth",
            "providers",
            "config",
        ],
        "config" | "error" | "telemetry" => &["repo", "service", "http", "state", "app", "cli"],
        // every layer records into it, so it names none
        "metrics" => &[
            "repo",
            "service",
            "http",
            "state",
            "app",
            "cli",
            "jobs",
            "auth",
            "providers",
            "domain",
            "config",
        ],
        _ => &[],
    }
}

/// The top-level modules a source text names through `crate::x` or `crate::{x, y::z}`.
fn named_modules(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.insert(leading_ident(item.trim()));
            }
        } else {
            out.insert(leading_ident(after));
        }
        rest = after;
    }
    out.retain(|m| !m.is_empty());
    out
}

fn leading_ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn violations(layer: &str, source: &str) -> Vec<String> {
    let banned = forbidden(layer);
    named_modules(source)
        .into_iter()
        .filter(|m| banned.contains(&m.as_str()))
        .collect()
}

#[test]
fn no_module_imports_a_layer_it_must_not() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 30, "read {} files", files.len());
    let mut problems = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let layer = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        let source = std::fs::read_to_string(&file).unwrap();
        for bad in violations(&layer, &source) {
            problems.push(format!(
                "{} ({layer}) names crate::{bad}",
                relative.display()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "layer violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_sees_plain_and_grouped_imports() {
    assert_eq!(
        violations("http", "use crate::repo::users::UserRow;"),
        ["repo"]
    );
    assert_eq!(
        violations("auth", "use crate::{config::X, repo::signing_keys};"),
        ["repo"]
    );
    assert_eq!(
        violations("repo", "let x = crate::service::users::get(s, id);"),
        ["service"]
    );
    assert!(violations("service", "use crate::repo::{self, users::UserRow};").is_empty());
}
