//! The layer order of the crate's modules, and the test that keeps it.
//!
//! Every module may use only the modules of the layers above its own (and itself). The test
//! reads the sources under `src/`, collects the `crate::<module>` paths of non-test code (test
//! modules may reach anything), and fails on any path to a module that comes later in the order; a path through a root re-export (`crate::Hub`) fails too, since it hides
//! which module it reaches.
//!
//! Inside a folder the same rule holds for its children ([`FOLDERS`]): a child may use only the
//! children listed before it, by `super::`, `self::` or `crate::` paths. The folder's `mod.rs` is
//! its front: it may use every child, and every child may use the items it defines.
//!
//! [`LAYERS`] is the one copy of the order: the table in the crate docs (`lib.rs`) is checked
//! against it, row by row.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, first to last, each with its modules in order. Keep in step with the table in
/// the crate docs (`lib.rs`). A module may use every module listed before it: those of the
/// layers above, and those before it in its own layer.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary",
        &[
            "topic",
            "event",
            "state",
            "config",
            "metrics",
            "sse_event",
            "publishable",
        ],
    ),
    ("wire format", &["sse", "trace", "envelope"]),
    ("local delivery", &["queue", "recent", "fanout"]),
    ("broker seam", &["broker"]),
    (
        "core",
        &[
            "error",
            "retry",
            "presence",
            "connections",
            "catchup",
            "registry",
            "position",
            "current",
            "backlog",
            "hub",
        ],
    ),
    (
        "HTTP",
        &[
            "publish",
            "stream",
            "subscribe",
            "cursor",
            "routes",
            "serve",
            "outbox",
        ],
    ),
    ("test helpers", &["testing"]),
];

/// The order of the children of each folder (a path under `src/`), first to last; a child may
/// use only the children before it. When a child is added, moved or renamed, its folder's row
/// changes with it (the test names a child that is in no row).
const FOLDERS: &[(&str, &[&str])] = &[
    (
        "broker",
        &[
            "error",
            "presence",
            "memory",
            "partitioned",
            "redis",
            "nats",
        ],
    ),
    (
        "broker/nats",
        &[
            "subject", "payload", "address", "stream", "bucket", "history", "slots", "state",
            "presence", "live",
        ],
    ),
    ("broker/nats/presence", &["entries", "lease"]),
    (
        "broker/redis",
        &[
            "payload", "version", "target", "slots", "scripts", "engine", "lease", "renewal",
            "presence", "link", "single", "cluster",
        ],
    ),
    ("broker/redis/cluster", &["layout", "listener"]),
    ("broker/redis/single", &["listener"]),
    ("hub", &["choice", "layer", "position", "routes", "admin"]),
    ("presence", &["diff"]),
    (
        "outbox",
        &["locks", "store", "postgres", "sqlite", "relay", "cursor"],
    ),
    ("registry", &["schema", "asyncapi"]),
    (
        "serve",
        &[
            "io",
            "tls_io",
            "conn_io",
            "settings",
            "listen",
            "stream_watch",
            "accept",
            "sse_loop",
            "conn",
        ],
    ),
    (
        "testing",
        &[
            "frame", "recorded", "expect", "recorder", "http", "client", "tests",
        ],
    ),
];

/// Back edges inside a folder that exist today and are being removed, as (folder, from, to):
/// each one is reported if it disappears, so the list only shrinks.
const KNOWN_BACK_EDGES: &[(&str, &str, &str)] = &[];

/// Modules of `lib.rs` that are not part of the order: the front door and this test.
const OUTSIDE: &[&str] = &["lib", "layers"];

/// The module's rank in the order (its position in `LAYERS`, flattened) and its layer's name.
fn rank_of(module: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .flat_map(|(layer, modules)| modules.iter().map(move |m| (*m, *layer)))
        .enumerate()
        .find(|(_, (m, _))| *m == module)
        .map(|(rank, (_, layer))| (rank, layer))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`broker/redis/mod.rs` → `broker`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src/");
    let first = rel.components().next().expect("a path");
    let first = first.as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The module path of a source file: `outbox/store.rs` → `[outbox, store]`,
/// `broker/redis/mod.rs` → `[broker, redis]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut path: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// Every path of `code` that starts with `crate::`, `self::` or `super::`, resolved against the
/// module `at` to the module path it names (as far as its lowercase segments go; enough to tell
/// which child of a folder it reaches). Grouped imports give one path per member.
fn resolved_paths(code: &str, at: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let starts = ["crate::", "self::", "super::"]
            .iter()
            .find(|p| rest.starts_with(**p));
        let boundary =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || b"_$:".contains(&bytes[i - 1]));
        let Some(prefix) = starts.filter(|_| boundary) else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let mut base: Vec<String> = match *prefix {
            "crate::" => Vec::new(),
            "self::" => at.to_vec(),
            _ => at[..at.len().saturating_sub(1)].to_vec(),
        };
        let mut tail = &rest[prefix.len()..];
        while let Some(more) = tail.strip_prefix("super::") {
            base.pop();
            tail = more;
        }
        let members: Vec<&str> = match tail.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())]
                .split(',')
                .map(str::trim)
                .collect(),
            None => vec![tail],
        };
        for member in members {
            let mut path = base.clone();
            for segment in member.split("::") {
                let name: String = segment
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.is_empty() || name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    break;
                }
                path.push(name);
                if !segment
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    break;
                }
            }
            found.push(path);
        }
        i += prefix.len();
    }
    found
}

/// Every path between two children of one folder that breaks its order, as messages.
/// `files` are the module paths and non-test code of the sources.
fn folder_violations(folders: &[(&str, &[&str])], files: &[(Vec<String>, String)]) -> Vec<String> {
    let mut broken = Vec::new();
    let children = |folder: &[String]| -> BTreeSet<String> {
        files
            .iter()
            .filter(|(m, _)| m.len() == folder.len() + 1 && m.starts_with(folder))
            .map(|(m, _)| m[folder.len()].clone())
            .collect()
    };
    for (folder, order) in folders {
        let folder: Vec<String> = folder.split('/').map(str::to_owned).collect();
        let rank = |child: &str| order.iter().position(|c| *c == child);
        let known = children(&folder);
        for child in &known {
            if rank(child).is_none() {
                broken.push(format!(
                    "{}: child `{child}` is in no place of its folder's order (FOLDERS)",
                    folder.join("/")
                ));
            }
        }
        let mut seen_known = BTreeSet::new();
        for (at, code) in files {
            if at.len() <= folder.len() || !at.starts_with(&folder) {
                continue; // the folder's front, or outside the folder
            }
            let from = at[folder.len()].as_str();
            for path in resolved_paths(code, at) {
                if path.len() <= folder.len() || !path.starts_with(&folder) {
                    continue;
                }
                let to = path[folder.len()].as_str();
                if to == from || !known.contains(to) {
                    continue; // itself, or an item of the folder's `mod.rs`
                }
                let (Some(from_rank), Some(to_rank)) = (rank(from), rank(to)) else {
                    continue; // reported above
                };
                if to_rank < from_rank {
                    continue;
                }
                let edge = (folder.join("/"), from.to_owned(), to.to_owned());
                if KNOWN_BACK_EDGES
                    .iter()
                    .any(|(f, a, b)| (*f, *a, *b) == (edge.0.as_str(), from, to))
                {
                    seen_known.insert(edge);
                    continue;
                }
                broken.push(format!(
                    "{}: `{from}` uses `{to}`, which comes after it in the folder's order",
                    at.join("/")
                ));
            }
        }
        for (f, a, b) in KNOWN_BACK_EDGES {
            let edge = ((*f).to_owned(), (*a).to_owned(), (*b).to_owned());
            if edge.0 == folder.join("/") && !seen_known.contains(&edge) {
                broken.push(format!("{f}: the known back edge `{a}` → `{b}` is gone: remove it from KNOWN_BACK_EDGES"));
            }
        }
    }
    broken
}

/// The sources under `src/` as module paths and non-test code.
fn crate_sources() -> Vec<(Vec<String>, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    files
        .iter()
        .map(|file| {
            let rel = file.strip_prefix(&src).expect("under src/");
            let text = std::fs::read_to_string(file).expect("a readable source file");
            (module_path(rel), non_test_code(&text))
        })
        .collect()
}

/// The rows of the layer table in `lib.rs`'s docs: each layer's name and its modules (the
/// backticked names of the second column, before any parenthesis).
fn doc_table(lib: &str) -> Vec<(String, Vec<String>)> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! |") else {
            inside = false;
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if cells.first() == Some(&"layer") && cells.get(1) == Some(&"modules") {
            inside = true;
            continue;
        }
        if !inside || cells.first().is_some_and(|c| c.starts_with("---")) {
            continue;
        }
        let modules = cells.get(1).copied().unwrap_or("");
        let modules = &modules[..modules.find('(').unwrap_or(modules.len())];
        let names = modules
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        rows.push((cells[0].to_owned(), names));
    }
    rows
}

/// `text` without comments and without `#[cfg(test)]` items (a module or a single item).
fn non_test_code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    let mut kept = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        kept.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    kept.push_str(rest);
    kept
}

/// The first segments of every `crate::` path in `code`, grouped imports included
/// (`use crate::{a::X, b};` gives `a` and `b`).
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `$crate::`, `livepush_crate::`…
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let first = part.trim().split("::").next().unwrap_or("").trim();
                if !first.is_empty() {
                    found.insert(first.to_owned());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found
}

/// Every `(from, to)` that breaks the order, as messages.
fn violations() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut broken = Vec::new();
    for file in &files {
        let from = module_of(&src, file);
        if OUTSIDE.contains(&from.as_str()) {
            continue;
        }
        let Some((from_rank, from_layer)) = rank_of(&from) else {
            broken.push(format!(
                "{}: module `{from}` is in no layer of LAYERS",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for to in crate_paths(&non_test_code(&text)) {
            // `__private`, and `#[macro_export]` macros (named `__livepush_…`), which Rust
            // places at the root whatever module defines them.
            if to == from || to == "__private" || to.starts_with("__livepush_") {
                continue;
            }
            match rank_of(&to) {
                Some((to_rank, _)) if to_rank < from_rank => {}
                Some((_, to_layer)) => broken.push(format!(
                    "{}: `{from}` ({from_layer}) uses `crate::{to}` ({to_layer}), which comes after it",
                    file.display(),
                )),
                None => broken.push(format!(
                    "{}: `{from}` uses `crate::{to}`: name the module that defines it, not a root re-export",
                    file.display(),
                )),
            }
        }
    }
    broken
}

#[test]
fn every_module_uses_only_the_layers_above_it() {
    let broken = violations();
    assert!(
        broken.is_empty(),
        "layer order broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_folder_child_uses_only_the_children_before_it() {
    let broken = folder_violations(FOLDERS, &crate_sources());
    assert!(
        broken.is_empty(),
        "folder order broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn a_back_edge_between_two_children_of_a_folder_fails() {
    let files = |a: &str, b: &str| {
        vec![
            (vec!["f".to_owned()], "pub struct Front;".to_owned()),
            (vec!["f".to_owned(), "a".to_owned()], a.to_owned()),
            (vec!["f".to_owned(), "b".to_owned()], b.to_owned()),
        ]
    };
    let order: &[(&str, &[&str])] = &[("f", &["a", "b"])];
    // forward edges and the front's items are fine
    let fine = files(
        "use super::Front;",
        "use super::a::X;\nfn g() { crate::f::a::h(); }",
    );
    assert_eq!(folder_violations(order, &fine), Vec::<String>::new());
    // `a` comes first: each spelling of a path to `b` is a back edge
    for back in [
        "use super::b::Y;",
        "use super::{Front, b::Y};",
        "fn g() { crate::f::b::h(); }",
    ] {
        let broken = folder_violations(order, &files(back, ""));
        assert_eq!(
            broken,
            ["f/a: `a` uses `b`, which comes after it in the folder's order"],
            "{back}"
        );
    }
    // a child in no place of the order
    let mut extra = fine.clone();
    extra.push((vec!["f".to_owned(), "c".to_owned()], String::new()));
    assert_eq!(folder_violations(order, &extra).len(), 1);
}

#[test]
fn a_grandchild_reaches_its_folder_through_super_super() {
    let at = [
        "broker".to_owned(),
        "redis".to_owned(),
        "cluster".to_owned(),
        "listener".to_owned(),
    ];
    let paths = resolved_paths(
        "use super::super::{decode, listener::Run};\nuse self::x;",
        &at,
    );
    assert_eq!(
        paths,
        [
            vec!["broker", "redis", "decode"],
            vec!["broker", "redis", "listener"],
            vec!["broker", "redis", "cluster", "listener", "x"],
        ]
    );
}

#[test]
fn the_layer_table_of_the_crate_docs_is_this_order() {
    let documented = doc_table(include_str!("lib.rs"));
    let order: Vec<(String, Vec<String>)> = LAYERS
        .iter()
        .map(|(layer, modules)| {
            (
                (*layer).to_owned(),
                modules.iter().map(|m| (*m).to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(
        documented, order,
        "lib.rs's layer table differs from LAYERS"
    );
}

#[test]
fn every_module_of_lib_rs_has_a_layer() {
    let lib = include_str!("lib.rs");
    for line in lib.lines() {
        let line = line.trim();
        let Some(decl) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
        else {
            continue;
        };
        let Some(name) = decl.strip_suffix(';') else {
            continue; // an inline module such as `__private`
        };
        assert!(
            rank_of(name).is_some() || OUTSIDE.contains(&name),
            "module `{name}` of lib.rs is in no layer of LAYERS"
        );
    }
}

#[test]
fn the_path_reader_sees_grouped_imports_and_skips_tests() {
    let code = non_test_code(
        "use crate::{hub::Hub, topic};\n// crate::nothing\nfn f() { crate::sse::RESET; }\n\
         #[cfg(test)]\nmod tests { use crate::subscribe; }\n",
    );
    let paths: Vec<String> = crate_paths(&code).into_iter().collect();
    assert_eq!(paths, ["hub", "sse", "topic"]);
}
