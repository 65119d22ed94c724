//! The workspace's shape: no module of any crate imports, directly or through others, a module
//! that imports it back; no hand-written source file grows past the length a reader can hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::root;

/// Lines a hand-written `.rs` file may have before its `#[cfg(test)]` module.
const MAX_LINES: usize = 800;

/// Every `.rs` file below `dir`, skipping build output.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// The source roots of the workspace's crates: every `src` directory below crates/, plugins/,
/// tests/plugins/, and the root crate's.
fn crate_roots() -> Vec<PathBuf> {
    let root = root();
    let mut roots = vec![root.join("src")];
    for parent in ["crates", "plugins", "tests/plugins"] {
        if let Ok(entries) = std::fs::read_dir(root.join(parent)) {
            roots.extend(
                entries
                    .flatten()
                    .map(|e| e.path().join("src"))
                    .filter(|p| p.is_dir()),
            );
        }
    }
    roots.sort();
    roots
}

/// Code without comments and without the `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file of `src` belongs to (`None` for the crate root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// Names after `crate::` in `code` (`use crate::a::{…}`, `crate::b::f()`, `use crate::{c, d}`).
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if after.starts_with('{') {
            let group = &after[1..after.find('}').unwrap_or(after.len())];
            for item in group.split(',') {
                let head = item.trim().split("::").next().unwrap_or("").trim();
                out.insert(head.to_string());
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
        rest = after;
    }
    out
}

/// Cycles in a module graph, each as the path that closes it.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut c = stack[start..].to_vec();
                    c.push(next.clone());
                    found.push(c);
                }
                Some(_) => {}
                None => visit(next, graph, state, stack, found),
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
    }
    let (mut state, mut found) = (BTreeMap::new(), Vec::new());
    for node in graph.keys() {
        if !state.contains_key(node) {
            visit(node, graph, &mut state, &mut Vec::new(), &mut found);
        }
    }
    found
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let mut problems = Vec::new();
    let roots = crate_roots();
    assert!(roots.len() >= 10, "found only {roots:?}");
    for src in roots {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &files {
            let Some(module) = module_of(&src, f) else {
                continue;
            };
            let code = code_of(&std::fs::read_to_string(f).unwrap());
            let deps = graph.entry(module.clone()).or_default();
            deps.extend(
                crate_paths(&code)
                    .into_iter()
                    .filter(|d| *d != module && modules.contains(d)),
            );
        }
        for c in cycles(&graph) {
            problems.push(format!("{}: {}", src.display(), c.join(" → ")));
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c", "a"]]);
    let paths = crate_paths("use crate::{a::X, b}; crate::c::f(); // crate::d\n");
    assert_eq!(
        paths,
        ["a", "b", "c", "d"].map(String::from).into_iter().collect()
    );
    assert_eq!(
        crate_paths(&code_of(
            "use crate::a; // crate::d\n#[cfg(test)]\nuse crate::e;"
        )),
        ["a"].map(String::from).into_iter().collect()
    );
}

#[test]
fn no_hand_written_source_file_is_over_800_lines() {
    let root = root();
    let mut files = Vec::new();
    for dir in ["crates", "plugins", "src", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut problems = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // Generated code says so in its first line (`// @generated by …`, the convention
        // rustfmt and code review tools recognise).
        if text
            .lines()
            .next()
            .is_some_and(|l| l.contains("@generated"))
        {
            continue;
        }
        let lines = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or("")
            .lines()
            .count();
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if lines > MAX_LINES {
            problems.push(format!("{rel}: {lines} lines (limit {MAX_LINES})"));
        }
    }
    assert!(
        problems.is_empty(),
        "split these where a reader loses the thread:\n{}",
        problems.join("\n")
    );
}
