//! The engine's shape, checked from its source so that it cannot silently regress:
//!
//! - `impl Engine` appears only in the front (`src/front.rs`): every other module is a component
//!   that owns its state, or a pipeline over the components it is handed;
//! - `src/lib.rs` is the table of contents only (modules, re-exports, documentation);
//! - the references between top-level modules (`crate::<module>`, a re-exported name, or
//!   `super::` from a top-level file) form no cycle: dependencies run downwards only.
//!
//! Test code (`#[cfg(test)]` modules) and comments are left out: a unit test may open a whole
//! engine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` module (by convention
/// the end of the file).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| match line.find(" // ") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier at the start of `text`.
fn ident(text: &str) -> &str {
    let end = text.find(|c: char| !is_ident(c)).unwrap_or(text.len());
    &text[..end]
}

/// The first segment of each path a `use`-style group names: `{a::B, c, d::{e, f}}` → a, c, d.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && depth == 0 && is_ident(c) => {
                heads.push(ident(&group[i..]).to_owned());
                start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The text of the brace group that starts at `text` (which begins with `{`), without braces.
fn brace_group(text: &str) -> &str {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[1..i];
                }
            }
            _ => {}
        }
    }
    &text[1..]
}

/// The first segments of every path after `prefix` (`crate::` or `super::`) in `code`.
fn heads_after(code: &str, prefix: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + prefix.len()..];
        if !before.is_some_and(is_ident) {
            if after.starts_with('{') {
                heads.extend(group_heads(brace_group(after)));
            } else if !ident(after).is_empty() {
                heads.push(ident(after).to_owned());
            }
        }
        rest = after;
    }
    heads
}

/// The crate's layout from `lib.rs`: top-level modules, and re-exported names → their module.
fn layout() -> (BTreeSet<String>, BTreeMap<String, String>) {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let mut modules = BTreeSet::new();
    let mut exports = BTreeMap::new();
    for line in code(&lib).lines().map(str::trim) {
        let decl = line.trim_start_matches("pub(crate) ").trim_start_matches("pub ");
        if let Some(name) = decl.strip_prefix("mod ") {
            modules.insert(ident(name).to_owned());
        } else if let Some(path) = decl.strip_prefix("use ") {
            let module = ident(path).to_owned();
            let after = path[module.len()..].trim_start_matches("::");
            let names =
                if after.starts_with('{') { group_heads(brace_group(after)) } else { vec![ident(after).to_owned()] };
            for name in names {
                exports.insert(name, module.clone());
            }
        }
    }
    (modules, exports)
}

/// The top-level module of a file under `src/` (`decide/fill.rs` → `decide`), and whether the
/// file is the module's root (where `super::` means the crate root).
fn module_of(path: &Path) -> (String, bool) {
    let relative = path.strip_prefix(src()).expect("under src");
    let parts: Vec<&str> = relative.iter().map(|p| p.to_str().expect("utf-8 path")).collect();
    let root = parts.len() == 1 || (parts.len() == 2 && parts[1] == "mod.rs");
    (parts[0].trim_end_matches(".rs").to_owned(), root)
}

/// Module → the top-level modules its code refers to.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let (modules, exports) = layout();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| f.file_name().is_some_and(|n| n != "lib.rs")) {
        let (module, root) = module_of(file);
        let code = code(&std::fs::read_to_string(file).expect("read"));
        let mut heads = heads_after(&code, "crate::");
        if root {
            heads.extend(heads_after(&code, "super::"));
        }
        let edges = graph.entry(module.clone()).or_default();
        for head in heads {
            let target = if modules.contains(&head) {
                head
            } else if let Some(module) = exports.get(&head) {
                module.clone()
            } else {
                panic!("{}: `{head}` is neither a module nor a re-export of lib.rs", file.display());
            };
            if target != module {
                edges.insert(target);
            }
        }
    }
    graph
}

/// A cycle of the graph, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn dependencies_between_modules_run_downwards_only() {
    let graph = graph();
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> = graph.iter().map(|(m, to)| format!("  {m} -> {to:?}")).collect();
        panic!("modules import each other: {}\nthe graph:\n{}", cycle.join(" -> "), edges.join("\n"));
    }
    // The front depends on the components; only the scheduler depends on the front.
    let on_front: Vec<&String> = graph.iter().filter(|(_, to)| to.contains("front")).map(|(m, _)| m).collect();
    assert_eq!(on_front, ["scheduler"], "only the scheduler drives the Engine");
}

#[test]
fn impl_engine_only_in_the_front() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut outside = Vec::new();
    for file in &files {
        let code = code(&std::fs::read_to_string(file).expect("read"));
        let implements = code.lines().map(str::trim_start).any(|line| {
            line.starts_with("impl Engine")
                || line.starts_with("impl crate::Engine")
                || line.starts_with("impl<'a> Engine")
                || line.starts_with("impl crate::front::Engine")
        });
        if implements && !file.ends_with("front.rs") {
            outside.push(file.strip_prefix(src()).expect("under src").display().to_string());
        }
    }
    assert!(outside.is_empty(), "`impl Engine` outside the front: {outside:?}");
}

#[test]
fn lib_rs_is_the_table_of_contents() {
    let lib = code(&std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs"));
    for line in lib.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let decl = line.trim_start_matches("pub(crate) ").trim_start_matches("pub ");
        assert!(
            decl.starts_with("mod ") || decl.starts_with("use ") || line.starts_with("#!["),
            "lib.rs holds only modules and re-exports; found `{line}`"
        );
    }
}

#[test]
fn the_checks_see_a_cycle_and_an_arrow_to_the_front() {
    // The checker itself: a graph with a cycle is caught, and references resolve as intended.
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    graph.get_mut("c").expect("c").clear();
    assert_eq!(find_cycle(&graph), None);
    let heads = heads_after(
        "use crate::{people::People, error::{Result, corrupt}, Engine};\nlet x = crate::records::to_json(&y);",
        "crate::",
    );
    assert_eq!(heads, ["people", "error", "Engine", "records"]);
    let (modules, exports) = layout();
    assert!(modules.contains("front") && modules.contains("scheduler"));
    assert_eq!(exports.get("Engine").map(String::as_str), Some("front"));
    assert_eq!(code("a // c\n// d\nb\n#[cfg(test)]\nmod tests { crate::Engine }"), "a\nb");
}
