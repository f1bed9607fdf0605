//! The source's layers hold: imports (every `crate::` path, and `super::`)
//! run one way, with no circle between modules, and no module below
//! `api/` reaches up into it. Read from the source files themselves, so a
//! change that breaks the layering fails here, naming the modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `api/chest.rs` -> `api::chest`, `store/mod.rs` -> `store`, `lib.rs` -> ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|p| p != "mod" && p != "lib")
        .collect();
    parts.join("::")
}

/// The source without comments (so doc links do not count as imports).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths after each `prefix` in `code` (`crate::a::b` -> `a::b`).
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let after = &rest[i + prefix.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        out.push(after[..end].trim_end_matches(':'));
        rest = &after[end..];
    }
    out
}

/// The longest module that `path` names.
fn resolve(modules: &BTreeSet<String>, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    while !parts.is_empty() {
        let candidate = parts.join("::");
        if modules.contains(&candidate) {
            return Some(candidate);
        }
        parts.pop();
    }
    None
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let code = code(&std::fs::read_to_string(file).unwrap());
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p).to_string();
        let mut deps = BTreeSet::new();
        let crate_paths = paths_after(&code, "crate::")
            .into_iter()
            .map(str::to_string);
        let super_paths = paths_after(&code, "super::")
            .into_iter()
            .map(|p| format!("{parent}::{p}"));
        for path in crate_paths.chain(super_paths) {
            if let Some(dep) = resolve(&modules, &path) {
                if dep != module && !dep.is_empty() {
                    deps.insert(dep);
                }
            }
        }
        graph.insert(module, deps);
    }
    graph
}

/// The modules on a circle through `start`, if any (depth-first).
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn imports_run_one_way_with_no_circle() {
    let graph = graph();
    assert!(graph.len() > 30, "the source was not found: {graph:?}");
    for module in graph.keys() {
        if let Some(circle) = circle_through(&graph, module) {
            panic!("import circle: {} -> {module}", circle.join(" -> "));
        }
    }
}

#[test]
fn nothing_below_the_api_reaches_up_into_it() {
    for (module, deps) in graph() {
        if module.is_empty() || module.starts_with("api") || module.starts_with("testing") {
            continue;
        }
        for dep in deps {
            assert!(
                !dep.starts_with("api"),
                "{module} imports {dep}: the layers below the API must not"
            );
        }
    }
}
