//! How a kernel's WGSL is put together: the kernel file, the library files it names in its
//! `// requires:` header line, and one tiny preprocessor for variants.
//!
//! - **Requires.** A file's header may hold `// requires: activations, gemm_tile`: those library
//!   files (`shaders/lib/<name>.wgsl`) come first, each once, after their own requirements (WGSL
//!   declarations may appear in any order; dependencies first only keeps the text readable).
//! - **Variants.** `#if NAME`, `#if !NAME`, `#else`, `#endif` on lines of their own select text by
//!   the variant's defines (the kernel table's `[VEC4]`, ...). That is the one mechanism for element
//!   type and vector width, e.g. `lib/elem.wgsl` declares `alias V = f32;` or `vec4<f32>`. Nothing
//!   is substituted inside lines, so what remains is exactly the WGSL written in the file.
//!
//! Each part of the assembled source starts with a `// ---- <path>` line, so a compiler message's
//! line number can be traced back to its file.

/// The library files kernels may require, by name.
const LIBRARY: &[(&str, &str)] = &[
    ("activations", include_str!("../../shaders/lib/activations.wgsl")),
    ("elem", include_str!("../../shaders/lib/elem.wgsl")),
    ("gemm_tile", include_str!("../../shaders/lib/gemm_tile.wgsl")),
    ("mad4", include_str!("../../shaders/lib/mad4.wgsl")),
    ("row_lanes", include_str!("../../shaders/lib/row_lanes.wgsl")),
];

/// The names of the library files, for tests and tools.
pub fn library() -> impl Iterator<Item = (&'static str, &'static str)> {
    LIBRARY.iter().copied()
}

/// The library names a file's `// requires:` header line lists (empty without one). The header is
/// the comment block a file opens with.
pub fn requires(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| l.starts_with("//"))
        .filter_map(|l| l.strip_prefix("// requires:"))
        .flat_map(|list| list.split(',').map(str::trim).filter(|s| !s.is_empty()))
        .collect()
}

/// The whole source of a kernel: its requirements (transitively, each once, dependencies first),
/// then the kernel file, each preprocessed with `defines`. `Err` names the file and line of a
/// malformed directive or an unknown requirement.
pub fn assemble(path: &str, text: &str, defines: &[&str]) -> Result<String, String> {
    let mut order: Vec<&str> = Vec::new();
    for name in requires(text) {
        visit(name, &mut order, &mut Vec::new())?;
    }
    let mut out = String::new();
    for name in order {
        let lib = lookup(name).ok_or_else(|| format!("{path}: unknown requirement '{name}'"))?;
        out.push_str(&format!("// ---- shaders/lib/{name}.wgsl\n"));
        out.push_str(&preprocess(&format!("lib/{name}.wgsl"), lib, defines)?);
    }
    out.push_str(&format!("// ---- shaders/{path}\n"));
    out.push_str(&preprocess(path, text, defines)?);
    Ok(out)
}

fn lookup(name: &str) -> Option<&'static str> {
    LIBRARY.iter().find(|(n, _)| *n == name).map(|&(_, t)| t)
}

/// Depth-first: `name`'s requirements, then `name`; `stack` catches cycles.
fn visit<'a>(name: &'a str, order: &mut Vec<&'a str>, stack: &mut Vec<&'a str>) -> Result<(), String> {
    if order.contains(&name) {
        return Ok(());
    }
    if stack.contains(&name) {
        return Err(format!("lib/{name}.wgsl: circular requirement through {}", stack.join(" -> ")));
    }
    let text: &'static str = lookup(name).ok_or_else(|| format!("unknown requirement '{name}' (no shaders/lib/{name}.wgsl)"))?;
    stack.push(name);
    for dep in requires(text) {
        // `requires` borrows from a 'static text: the names live as long as the library.
        visit(dep, order, stack)?;
    }
    stack.pop();
    order.push(name);
    Ok(())
}

/// Keeps the lines whose enclosing `#if`s hold for `defines`; drops the directive lines.
pub fn preprocess(path: &str, text: &str, defines: &[&str]) -> Result<String, String> {
    // One entry per open `#if`: (whether its branch is taken, whether `#else` was seen).
    let mut open: Vec<(bool, bool)> = Vec::new();
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        let bad = |why: &str| format!("shaders/{path}:{}: {why}: `{line}`", i + 1);
        let trimmed = line.trim_start();
        if let Some(directive) = trimmed.strip_prefix('#') {
            let mut words = directive.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("if"), Some(cond), None) => {
                    let (negated, name) = match cond.strip_prefix('!') {
                        Some(n) => (true, n),
                        None => (false, cond),
                    };
                    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err(bad("`#if` takes one define name"));
                    }
                    open.push((defines.contains(&name) != negated, false));
                }
                (Some("else"), None, None) => match open.last_mut() {
                    Some((taken, seen_else)) if !*seen_else => {
                        *taken = !*taken;
                        *seen_else = true;
                    }
                    _ => return Err(bad("`#else` without an open `#if`")),
                },
                (Some("endif"), None, None) => {
                    open.pop().ok_or_else(|| bad("`#endif` without an open `#if`"))?;
                }
                _ => return Err(bad("unknown directive (only #if NAME, #if !NAME, #else, #endif)")),
            }
            continue;
        }
        if open.iter().all(|&(taken, _)| taken) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !open.is_empty() {
        return Err(format!("shaders/{path}: {} `#if` not closed by `#endif`", open.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_else_endif_select_by_defines() {
        let text = "a\n#if X\nb\n#else\nc\n#endif\n#if !X\nd\n#endif\ne\n";
        assert_eq!(preprocess("t.wgsl", text, &["X"]).unwrap(), "a\nb\ne\n");
        assert_eq!(preprocess("t.wgsl", text, &[]).unwrap(), "a\nc\nd\ne\n");
        let nested = "#if A\n#if B\nab\n#else\na\n#endif\n#endif\n";
        assert_eq!(preprocess("t.wgsl", nested, &["A"]).unwrap(), "a\n");
        assert_eq!(preprocess("t.wgsl", nested, &["B"]).unwrap(), "");
    }

    #[test]
    fn malformed_directives_name_the_file_and_line() {
        for (text, want) in [
            ("#if\n#endif\n", "t.wgsl:1"),
            ("#else\n", "without an open"),
            ("#if A\n", "not closed"),
            ("x\n#define A 1\n", "t.wgsl:2"),
            ("#if A\n#else\n#else\n#endif\n", "t.wgsl:3"),
        ] {
            let err = preprocess("t.wgsl", text, &[]).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn requirements_come_first_once_in_dependency_order() {
        let src = assemble("k.wgsl", "// k.wgsl — test\n// requires: elem, activations\nfn main() {}\n", &[]).unwrap();
        let at = |name: &str| src.find(&format!("// ---- shaders/{name}")).unwrap_or_else(|| panic!("{name} missing"));
        assert!(at("lib/activations.wgsl") < at("lib/elem.wgsl") && at("lib/elem.wgsl") < at("k.wgsl"));
        assert_eq!(src.matches("// ---- shaders/lib/activations.wgsl").count(), 1);
        assert!(assemble("k.wgsl", "// requires: nothing_such\n", &[]).unwrap_err().contains("nothing_such"));
    }
}
