//! The layer check: every `crate::` path in `src/` must point at a lower layer (or stay inside its
//! own module). The layers, lowest first, are the table below; `src/lib.rs` lists the modules in
//! the same order. A module may use anything below its layer and nothing at or above it, except
//! its own files; so the import graph has no cycle, and each file can be read after the ones it
//! names.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// `(module, layer)`: the first path component under `src/` (a file `x.rs` or a folder `x/`).
const LAYERS: &[(&str, u32)] = &[
    ("sys", 0),
    ("stack", 1),
    ("rt", 2),
    ("greenlet", 3),
    ("local", 3),
    ("reactor", 3),
    ("timeout", 3),
    ("remote", 4),
    ("block_on", 5),
    ("monkey", 5),
    ("monitor", 5),
    ("hub", 6),
    ("io", 7),
    ("net", 7),
    ("sync", 7),
    ("time", 7),
    ("fs", 8),
    ("pool", 8),
    ("process", 8),
    ("signal", 8),
    ("runtime", 9),
    ("server", 10),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file of `src/` belongs to (`None` for `lib.rs`, which wires the public paths).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    if first == "lib.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_owned())
}

/// The code of a line without its `//` comment (doc comments included). Good enough for this
/// crate: no `//` appears inside its string literals on a line that also names `crate::`.
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// The modules a piece of code names through `crate::` / `$crate::`: `crate::a::..` and each
/// top-level name of `crate::{a, b::c, ..}`.
fn targets(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = &rest[..i];
        rest = &rest[i + "crate::".len()..];
        // `pub(crate)` visibility is not a path.
        if before.ends_with("pub(") {
            continue;
        }
        let ident = |s: &str| {
            s.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        };
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start => {
                        item_start = false;
                        out.push(ident(&group[j..]));
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// Every upward (or sideways, into another module of the same layer) `crate::` path in `src`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for file in &files {
        let Some(module) = module_of(src, file) else {
            continue;
        };
        let own = layer(&module).unwrap_or_else(|| {
            panic!(
                "{}: module `{module}` is not in tests/layers.rs's LAYERS table; give it a layer",
                file.display()
            )
        });
        let text = fs::read_to_string(file).unwrap();
        let mut seen = BTreeSet::new();
        for (n, line) in text.lines().enumerate() {
            for target in targets(code(line)) {
                if target == module {
                    continue;
                }
                let Some(their) = layer(&target) else {
                    continue; // a macro or item re-exported at the crate root
                };
                if their >= own && seen.insert((n, target.clone())) {
                    bad.push(format!(
                        "{}:{}: `{module}` (layer {own}) uses `crate::{target}` (layer {their}): {}",
                        file.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    bad
}

#[test]
fn every_import_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(
        bad.is_empty(),
        "imports that point up (or sideways across) the layers:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_check_catches_an_upward_import() {
    let dir = std::env::temp_dir().join(format!("greenhub-layers-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("rt")).unwrap();
    fs::write(dir.join("lib.rs"), "mod rt;\nmod hub;\n").unwrap();
    fs::write(
        dir.join("rt/hub.rs"),
        "// crate::hub in a comment is fine\npub(crate) struct Hub;\nuse crate::sys::switch;\n\
         use crate::{stack::Stack, hub::spawn};\n",
    )
    .unwrap();
    fs::write(dir.join("hub.rs"), "use crate::rt::Hub;\n").unwrap();
    let bad = violations(&dir);
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert!(
        bad[0].contains("`rt` (layer 2) uses `crate::hub` (layer 6)"),
        "{}",
        bad[0]
    );
}

#[test]
fn paths_are_parsed_from_groups_and_macros() {
    assert_eq!(targets("use crate::{a::b, c, d::{e, f}};"), ["a", "c", "d"]);
    assert_eq!(targets("$crate::sys::socket::send(x)"), ["sys"]);
    assert_eq!(targets("pub(crate) fn f() { crate::rt::g() }"), ["rt"]);
}
