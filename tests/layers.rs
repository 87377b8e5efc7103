//! The library's modules form layers (README "Architecture", `src/lib.rs`): each module refers
//! only to modules below it. This reads every source file and checks each `crate::<module>`
//! reference against the order, so an upward import (and with it a module cycle) fails here.
//! No GPU.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom up, as in `src/lib.rs`. Modules on one line are one layer (they may use each other).
const LAYERS: &[&[&str]] = &[
    &["error", "tensor", "time"],
    &["kernels"],
    &["graph", "explain"],
    &["plan"],
    &["ops"],
    &["context"],
    &["executor"],
    &["io"],
    &["weights"],
    &["labels", "preprocess"],
    &["models"],
    &["fuzz"],
    &["api"],
    &["web"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a library file belongs to (`src/ops/family/x.rs` → `ops`); `None` for
/// `lib.rs` and the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    if first == "bin" || first == "lib.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every `crate::<name>` a file refers to (in `use` lines and paths alike), comments excluded.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                refs.insert(name);
            } else if rest.starts_with('{') {
                // `use crate::{a, b::c}`
                let group: String = rest[1..].chars().take_while(|&c| c != '}').collect();
                for part in group.split(',') {
                    let name = part.trim().split("::").next().unwrap_or("").to_string();
                    if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                        refs.insert(name);
                    }
                }
            }
        }
    }
    refs
}

#[test]
fn modules_only_use_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    let mut unknown = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        let Some(mine) = layer_of(&module) else {
            unknown.insert(module);
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_refs(&text) {
            match layer_of(&used) {
                Some(theirs) if theirs > mine => upward.push(format!("{} ({module}) uses crate::{used}", file.strip_prefix(&src).unwrap().display())),
                Some(_) => {}
                None if ["Error", "Result"].contains(&used.as_str()) => {}
                None => {
                    unknown.insert(used);
                }
            }
        }
    }
    assert!(unknown.is_empty(), "modules missing from LAYERS (add them where they belong, and to README): {unknown:?}");
    assert!(upward.is_empty(), "imports that point up the layer list:\n{}", upward.join("\n"));
}
