//! The layer order of the crate's modules, and the test that keeps it.
//!
//! Every module may use only the modules of the layers above its own (and itself). The test
//! reads the sources under `src/`, collects the `crate::<module>` paths of non-test code (test
//! modules may reach anything), and fails on any path to a module that comes later in the order; a path through a root re-export (`crate::Hub`) fails too, since it hides
//! which module it reaches.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, first to last, each with its modules in order. Keep in step with the table in
/// the crate docs (`lib.rs`). A module may use every module listed before it: those of the
/// layers above, and those before it in its own layer.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary",
        &["topic", "event", "config", "metrics", "sse_event"],
    ),
    ("wire format", &["sse", "envelope"]),
    ("local delivery", &["queue", "recent", "fanout"]),
    ("broker seam", &["broker"]),
    (
        "core",
        &[
            "error",
            "retry",
            "connections",
            "catchup",
            "position",
            "backlog",
            "hub",
        ],
    ),
    (
        "HTTP",
        &[
            "layer",
            "publish",
            "registry",
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
