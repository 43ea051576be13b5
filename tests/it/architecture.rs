//! The layer rule of ARCHITECTURE.md, checked against the code.
//!
//! ARCHITECTURE.md lists the top-level modules of `src/` in a ```layers
//! block, top to bottom: a module may import only modules listed below it.
//! This test reads every `use crate::…` (and `crate::…` path) in `src/`, and
//! fails on an upward import, on a cycle between top-level modules, on
//! `backend/local` and `backend/gcp` importing each other, on `pipeline`
//! naming a target, and on printing to stdout below `commands`. A rule no
//! test checks drifts within a few changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The layers, top first, from ARCHITECTURE.md's ```layers block.
fn layers() -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let start = doc
        .find("```layers\n")
        .expect("ARCHITECTURE.md has a ```layers block");
    let block = &doc[start + "```layers\n".len()..];
    let end = block.find("```").expect("the ```layers block is closed");
    block[..end]
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every `.rs` file under `dir`, with its path relative to `src/`.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root().join("src")).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((rel.to_string_lossy().into_owned(), text));
        }
    }
}

/// The code of a file, without comments, so a doc line that mentions
/// `crate::x` is not an import.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file imports from the crate, as `a::b::c` strings:
/// `crate::a::b`, and each member of `crate::{a::b, c}`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let preceded_by_ident = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !preceded_by_ident {
            if let Some(group) = after.strip_prefix('{') {
                paths.extend(group_members(group));
            } else {
                paths.push(path_prefix(after));
            }
        }
        rest = after;
    }
    paths
}

fn path_prefix(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect::<String>()
        .trim_end_matches(':')
        .to_owned()
}

/// The members of `{a::b, c::{d, e}}` at depth one, as paths.
fn group_members(group: &str) -> Vec<String> {
    let mut members = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                members.push(path_prefix(group[start..i].trim()));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                members.push(path_prefix(group[start..i].trim()));
                start = i + 1;
            }
            _ => {}
        }
    }
    members.retain(|m| !m.is_empty());
    members
}

/// The top-level module a file belongs to: `backend/gcp/http.rs` -> `backend`.
fn top_module(rel: &str) -> String {
    rel.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_owned()
}

struct Imports {
    /// (file, imported path)
    edges: Vec<(String, String)>,
}

fn imports() -> Imports {
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let mut edges = Vec::new();
    for (rel, text) in &files {
        for path in crate_paths(&code(text)) {
            edges.push((rel.clone(), path));
        }
    }
    Imports { edges }
}

#[test]
fn the_layers_block_names_every_top_level_module_once() {
    let layers = layers();
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|(rel, _)| top_module(rel))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let listed: BTreeSet<String> = layers.iter().cloned().collect();
    assert_eq!(listed.len(), layers.len(), "a module is listed twice");
    assert_eq!(
        modules, listed,
        "ARCHITECTURE.md's ```layers block must list exactly the top-level modules of src/"
    );
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let layers = layers();
    let rank: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut upward = BTreeSet::new();
    for (file, path) in imports().edges {
        let from = top_module(&file);
        let to = path.split("::").next().unwrap().to_owned();
        let (Some(&a), Some(&b)) = (rank.get(from.as_str()), rank.get(to.as_str())) else {
            continue;
        };
        if a >= b && from != to {
            upward.insert(format!(
                "{file} imports crate::{path} ({from} may not import {to})"
            ));
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layer rule in ARCHITECTURE.md:\n{}",
        upward.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn no_cycle_between_top_level_modules() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, path) in imports().edges {
        let from = top_module(&file);
        let to = path.split("::").next().unwrap().to_owned();
        if from != to {
            graph.entry(from).or_default().insert(to);
        }
    }
    // Depth-first search; a node met again while still on the stack closes a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_owned());
            cycles.push(cycle.join(" -> "));
            return;
        }
        if !done.insert(node.to_owned()) {
            return;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, cycles);
        }
        stack.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_two_backends_never_import_each_other_and_the_pipeline_names_neither() {
    let mut bad = Vec::new();
    for (file, path) in imports().edges {
        let forbidden = if file.starts_with("backend/local") {
            "backend::gcp"
        } else if file.starts_with("backend/gcp") {
            "backend::local"
        } else if file.starts_with("pipeline") {
            if path.starts_with("backend::local") || path.starts_with("backend::gcp") {
                bad.push(format!("{file} imports crate::{path}"));
            }
            continue;
        } else {
            continue;
        };
        if path.starts_with(forbidden) {
            bad.push(format!("{file} imports crate::{path}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn nothing_below_commands_prints_to_stdout() {
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let printing: Vec<String> = files
        .iter()
        .filter(|(rel, _)| !rel.starts_with("commands/") && rel != "main.rs")
        .filter(|(_, text)| {
            let code = code(text);
            prints(&code, "println!(") || prints(&code, "print!(") || code.contains("stdout()")
        })
        .map(|(rel, _)| rel.clone())
        .collect();
    assert!(
        printing.is_empty(),
        "stdout is for commands only; these print to it: {printing:?}"
    );
}

/// Whether `code` calls the macro `name` (so `eprint!(` is not `print!(`).
fn prints(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(i, _)| {
        !code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn the_import_reader_sees_grouped_and_nested_paths() {
    let paths = crate_paths(
        "use crate::a::b;\nuse crate::{c::d, e::{f, g}, h};\nlet x = crate::i::j(1);\nmy_crate::k::l;",
    );
    assert_eq!(paths, ["a::b", "c::d", "e", "h", "i::j"]);
    assert!(prints("x; println!(\"a\")", "println!("));
    assert!(!prints("eprint!(\"a\")", "print!("));
}
