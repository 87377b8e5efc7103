//! How a kernel's WGSL is put together: the kernel file, the library files it names in its
//! `// requires:` header line, and one tiny preprocessor for variants.
//!
//! - **Requires.** A file's header may hold `// requires: activations, gemm_tile`: those library
//!   files (`shaders/lib/<name>.wgsl`) come first, each once, after their own requirements (WGSL
//!   declarations may appear in any order; dependencies first only keeps the text readable).
//! - **Variants.** `#if COND`, `#else`, `#endif` on lines of their own select text, `COND` being
//!   `NAME`, `!NAME` or `NAME <op> INTEGER` (`==`, `!=`, `<`, `<=`, `>`, `>=`; an integer may
//!   stand for the name, as a `#for` counter does). A name is a define
//!   of the kernel table's line (`[VEC4]`: 1, else 0) or an `override` constant of the files: its
//!   value in the pipeline key, else its declared default. That is the one mechanism for element
//!   type and vector width (`lib/elem.wgsl` declares `alias V = f32;` or `vec4<f32>`), and how a
//!   tile size or an epilogue leaves no dead code behind: the driver never sees the branches the
//!   key rules out (lavapipe spent 300 ms creating a 4×4-tile matmul pipeline whose 16×8 code
//!   was still in the source under constant-false `if`s, 23 ms without it).
//! - **Unrolled loops.** `#for NAME in 0..BOUND` … `#endfor` repeats its lines for NAME = 0,
//!   1, .. BOUND − 1, each whole-word `NAME` replaced by the literal (`2u`; in an `#if` line, `2`,
//!   so a condition may test it: `#if NAME == 4`). BOUND is an arithmetic expression (`+ - * / %`,
//!   parentheses) over integers and the names `#if` sees, e.g. `3 * SW + (KW - 1) * DW + 1`. Why
//!   not leave constant-trip loops to the driver: lavapipe's NIR unrolls them, but SwiftShader
//!   (the browser's software device, Subzero) does not, and there a 9-iteration loop over a
//!   private array measured 10× slower than the same code written out (`examples/unroll_cost.rs`):
//!   every iteration updates its lane masks, and an array indexed by a loop variable lives in
//!   memory. That substitution is the only one: otherwise what remains is exactly the WGSL
//!   written in the file.
//! - **Names for the preprocessor.** `#let NAME = EXPRESSION` (the same arithmetic) gives `#if`
//!   and `#for` one more name, from that line on, whatever `#if` encloses it; nothing in the WGSL
//!   is replaced by it (e.g. `#let QB = 1 + QB2 + 3 * QB4`: the rows a variant's defines select).
//!
//! Each part of the assembled source starts with a `// ---- <path>` line, so a compiler message's
//! line number can be traced back to its file.

/// The library files kernels may require, by name.
const LIBRARY: &[(&str, &str)] = &[
    ("activations", include_str!("../../shaders/lib/activations.wgsl")),
    ("channel_runs", include_str!("../../shaders/lib/channel_runs.wgsl")),
    ("elem", include_str!("../../shaders/lib/elem.wgsl")),
    ("flat_texture", include_str!("../../shaders/lib/flat_texture.wgsl")),
    ("gemm_tile", include_str!("../../shaders/lib/gemm_tile.wgsl")),
    ("mad4", include_str!("../../shaders/lib/mad4.wgsl")),
    ("moments", include_str!("../../shaders/lib/moments.wgsl")),
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

/// What the `#if` conditions of one kernel variant see: the table's defines and the pipeline's
/// override values (an override the pipeline does not set takes its declared default).
#[derive(Clone, Copy, Debug, Default)]
pub struct Defines<'a> {
    pub flags: &'a [&'a str],
    pub values: &'a [(&'a str, u32)],
}

impl<'a> Defines<'a> {
    pub fn flags(flags: &'a [&'a str]) -> Self {
        Self { flags, values: &[] }
    }
}

/// The whole source of a kernel: its requirements (transitively, each once, dependencies first),
/// then the kernel file, each preprocessed with `defines`. `Err` names the file and line of a
/// malformed directive or an unknown requirement.
pub fn assemble(path: &str, text: &str, defines: Defines<'_>) -> Result<String, String> {
    let mut order: Vec<&str> = Vec::new();
    for name in requires(text) {
        visit(name, &mut order, &mut Vec::new())?;
    }
    let mut parts: Vec<(String, &str)> = Vec::new();
    for name in order {
        let lib = lookup(name).ok_or_else(|| format!("{path}: unknown requirement '{name}'"))?;
        parts.push((format!("lib/{name}.wgsl"), lib));
    }
    parts.push((path.to_string(), text));
    // Every override's declared default, from every part (a library file may test an override
    // its including kernel declares).
    let mut values: Vec<(String, u32)> = parts.iter().flat_map(|(_, t)| override_defaults(t)).collect();
    values.extend(defines.flags.iter().map(|f| (f.to_string(), 1)));
    values.extend(defines.values.iter().map(|&(n, v)| (n.to_string(), v)));
    let mut out = String::new();
    for (file, text) in &parts {
        out.push_str(&format!("// ---- shaders/{file}\n"));
        out.push_str(&preprocess(file, text, &values)?);
    }
    Ok(out)
}

/// `override NAME: TYPE = VALUE;` declarations of `text` (integers and booleans).
fn override_defaults(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("override ")?;
            let (name, rest) = rest.split_once(':')?;
            let value = rest.split_once('=')?.1.trim().trim_end_matches(';').trim();
            let value = match value {
                "true" => 1,
                "false" => 0,
                v => v.trim_end_matches('u').trim_end_matches('i').parse().ok()?,
            };
            Some((name.trim().to_string(), value))
        })
        .collect()
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

/// The value of `name`: the last entry of `values` naming it (the pipeline's over the table's
/// over the declared default), 0 if none does (an undefined flag).
fn value_of(values: &[(String, u32)], name: &str) -> u32 {
    values.iter().rev().find(|(n, _)| n == name).map_or(0, |&(_, v)| v)
}

fn is_name(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !n.starts_with(|c: char| c.is_ascii_digit())
}

/// `NAME`, `!NAME` or `NAME|INTEGER <op> INTEGER` against `values`; `None` when malformed.
fn condition(cond: &str, values: &[(String, u32)]) -> Option<bool> {
    let words: Vec<&str> = cond.split_whitespace().collect();
    match words.as_slice() {
        [single] => {
            let (negated, name) = single.strip_prefix('!').map_or((false, *single), |n| (true, n));
            is_name(name).then(|| (value_of(values, name) != 0) != negated)
        }
        [lhs, op, int] => {
            let a = if is_name(lhs) { value_of(values, lhs) } else { lhs.parse::<u32>().ok()? };
            let b = int.parse::<u32>().ok()?;
            Some(match *op {
                "==" => a == b,
                "!=" => a != b,
                "<" => a < b,
                "<=" => a <= b,
                ">" => a > b,
                ">=" => a >= b,
                _ => return None,
            })
        }
        _ => None,
    }
}

/// The value of an arithmetic expression over integers (a `u`/`i` suffix allowed) and names
/// (`values`), with `+ - * / %` and parentheses; `None` when malformed, negative or dividing by 0.
fn evaluate(expr: &str, values: &[(String, u32)]) -> Option<u32> {
    let mut tokens: Vec<String> = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut word = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_ascii_alphanumeric() || **c == '_') {
                word.push(c);
                chars.next();
            }
            tokens.push(word);
        } else if "+-*/%()".contains(c) {
            tokens.push(c.to_string());
            chars.next();
        } else {
            return None;
        }
    }
    fn sum(t: &[String], i: &mut usize, v: &[(String, u32)]) -> Option<i64> {
        let mut acc = product(t, i, v)?;
        while let Some(op) = t.get(*i).filter(|op| *op == "+" || *op == "-") {
            *i += 1;
            let rhs = product(t, i, v)?;
            acc = if op == "+" { acc.checked_add(rhs)? } else { acc.checked_sub(rhs)? };
        }
        Some(acc)
    }
    fn product(t: &[String], i: &mut usize, v: &[(String, u32)]) -> Option<i64> {
        let mut acc = atom(t, i, v)?;
        while let Some(op) = t.get(*i).filter(|op| *op == "*" || *op == "/" || *op == "%") {
            *i += 1;
            let rhs = atom(t, i, v)?;
            acc = match op.as_str() {
                "*" => acc.checked_mul(rhs)?,
                "/" => acc.checked_div(rhs)?,
                _ => acc.checked_rem(rhs)?,
            };
        }
        Some(acc)
    }
    fn atom(t: &[String], i: &mut usize, v: &[(String, u32)]) -> Option<i64> {
        let token = t.get(*i)?;
        *i += 1;
        if token == "(" {
            let inner = sum(t, i, v)?;
            (t.get(*i)? == ")").then_some(())?;
            *i += 1;
            return Some(inner);
        }
        if is_name(token) {
            return Some(value_of(v, token) as i64);
        }
        token.trim_end_matches(['u', 'i']).parse::<i64>().ok()
    }
    let mut i = 0;
    let value = sum(&tokens, &mut i, values)?;
    (i == tokens.len()).then_some(())?;
    u32::try_from(value).ok()
}

/// Most iterations one `#for` may expand to (a guard against a runaway bound).
const MAX_UNROLL: u32 = 64;

/// `line` with every whole-word `name` replaced by `literal`.
fn substitute(line: &str, name: &str, literal: &str) -> String {
    let word_char = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    for (at, _) in line.match_indices(name) {
        let whole = !word_char(line[..at].chars().next_back()) && !word_char(line[at + name.len()..].chars().next());
        if whole && at >= copied {
            out.push_str(&line[copied..at]);
            out.push_str(literal);
            copied = at + name.len();
        }
    }
    out.push_str(&line[copied..]);
    out
}

/// Expands the `#for` blocks of `lines` (each with its line number in the file), innermost
/// loops inside their outer ones' copies.
fn unroll(path: &str, lines: &[(usize, String)], values: &[(String, u32)]) -> Result<Vec<(usize, String)>, String> {
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let (n, line) = &lines[i];
        let bad = |why: &str| format!("shaders/{path}:{n}: {why}: `{line}`");
        let directive = line.trim_start().strip_prefix('#').map(str::trim);
        match directive.map(|d| d.split_once(char::is_whitespace).unwrap_or((d, ""))) {
            Some(("for", spec)) => {
                let (name, range) = spec.split_once(" in ").ok_or_else(|| bad("`#for` takes NAME in 0..BOUND"))?;
                let (name, range) = (name.trim(), range.trim());
                let bound = range.strip_prefix("0..").ok_or_else(|| bad("`#for` ranges start at 0: NAME in 0..BOUND"))?;
                if !is_name(name) {
                    return Err(bad("`#for` takes NAME in 0..BOUND"));
                }
                let count = evaluate(bound, values).ok_or_else(|| bad("the bound is not an arithmetic expression over integers and overrides"))?;
                if count > MAX_UNROLL {
                    return Err(bad(&format!("{count} iterations (at most {MAX_UNROLL} are unrolled)")));
                }
                // The matching `#endfor`.
                let mut depth = 0;
                let end = (i + 1..lines.len())
                    .find(|&j| {
                        let d = lines[j].1.trim_start();
                        if d.starts_with("#for ") {
                            depth += 1;
                        } else if d.trim_end() == "#endfor" {
                            if depth == 0 {
                                return true;
                            }
                            depth -= 1;
                        }
                        false
                    })
                    .ok_or_else(|| bad("`#for` not closed by `#endfor`"))?;
                let body = unroll(path, &lines[i + 1..end], values)?;
                for k in 0..count {
                    for (bn, bl) in &body {
                        let is_directive = bl.trim_start().starts_with('#');
                        let literal = if is_directive { k.to_string() } else { format!("{k}u") };
                        out.push((*bn, substitute(bl, name, &literal)));
                    }
                }
                i = end + 1;
            }
            Some(("endfor", _)) => return Err(bad("`#endfor` without an open `#for`")),
            _ => {
                out.push((*n, line.clone()));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Expands the `#for` loops, then keeps the lines whose enclosing `#if`s hold for `values`
/// (name, value; later entries win); drops the directive lines.
pub fn preprocess(path: &str, text: &str, values: &[(String, u32)]) -> Result<String, String> {
    // `#let` lines first: each extends the values the rest of the file sees.
    let mut values = values.to_vec();
    let mut numbered: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(binding) = line.trim_start().strip_prefix("#let ") else {
            numbered.push((i + 1, line.to_string()));
            continue;
        };
        let bad = |why: &str| format!("shaders/{path}:{}: {why}: `{line}`", i + 1);
        let (name, expr) = binding.split_once('=').ok_or_else(|| bad("`#let` takes NAME = EXPRESSION"))?;
        let name = name.trim();
        if !is_name(name) {
            return Err(bad("`#let` takes NAME = EXPRESSION"));
        }
        let value = evaluate(expr, &values).ok_or_else(|| bad("not an arithmetic expression over integers and overrides"))?;
        values.push((name.to_string(), value));
    }
    let values = values.as_slice();
    let lines = if text.contains("#for") { unroll(path, &numbered, values)? } else { numbered };
    // One entry per open `#if`: (whether its branch is taken, whether `#else` was seen).
    let mut open: Vec<(bool, bool)> = Vec::new();
    let mut out = String::with_capacity(text.len());
    for (n, line) in &lines {
        let bad = |why: &str| format!("shaders/{path}:{n}: {why}: `{line}`");
        let trimmed = line.trim_start();
        if let Some(directive) = trimmed.strip_prefix('#') {
            let directive = directive.trim();
            let (word, rest) = directive.split_once(char::is_whitespace).unwrap_or((directive, ""));
            match (word, rest.trim()) {
                ("if", cond) => {
                    let holds = condition(cond, values).ok_or_else(|| bad("`#if` takes NAME, !NAME or NAME <op> INTEGER"))?;
                    open.push((holds, false));
                }
                ("else", "") => match open.last_mut() {
                    Some((taken, seen_else)) if !*seen_else => {
                        *taken = !*taken;
                        *seen_else = true;
                    }
                    _ => return Err(bad("`#else` without an open `#if`")),
                },
                ("endif", "") => {
                    open.pop().ok_or_else(|| bad("`#endif` without an open `#if`"))?;
                }
                _ => return Err(bad("unknown directive (only #if COND, #else, #endif, #for NAME in 0..BOUND, #endfor)")),
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

    fn set(names: &[&str]) -> Vec<(String, u32)> {
        names.iter().map(|n| (n.to_string(), 1)).collect()
    }

    #[test]
    fn if_else_endif_select_by_defines() {
        let text = "a\n#if X\nb\n#else\nc\n#endif\n#if !X\nd\n#endif\ne\n";
        assert_eq!(preprocess("t.wgsl", text, &set(&["X"])).unwrap(), "a\nb\ne\n");
        assert_eq!(preprocess("t.wgsl", text, &[]).unwrap(), "a\nc\nd\ne\n");
        let nested = "#if A\n#if B\nab\n#else\na\n#endif\n#endif\n";
        assert_eq!(preprocess("t.wgsl", nested, &set(&["A"])).unwrap(), "a\n");
        assert_eq!(preprocess("t.wgsl", nested, &set(&["B"])).unwrap(), "");
    }

    #[test]
    fn conditions_compare_override_values_and_defaults() {
        let text = "override TM: u32 = 16u;\n#if TM > 4\nbig\n#endif\n#if TM == 4\nsmall\n#endif\n";
        let src = |values: &[(&str, u32)]| assemble("k.wgsl", text, Defines { flags: &[], values }).unwrap();
        assert!(src(&[]).contains("big") && !src(&[]).contains("small"), "the declared default: 16");
        assert!(src(&[("TM", 4)]).contains("small") && !src(&[("TM", 4)]).contains("big"));
        let flags = "override ACT: u32 = 0u;\n#if ACT != 0\nact\n#endif\n";
        assert!(!assemble("k.wgsl", flags, Defines::default()).unwrap().contains("act"));
        assert!(assemble("k.wgsl", flags, Defines { flags: &[], values: &[("ACT", 2)] }).unwrap().contains("act"));
    }

    #[test]
    fn malformed_directives_name_the_file_and_line() {
        for (text, want) in [
            ("#if\n#endif\n", "t.wgsl:1"),
            ("#if A >> 3\n#endif\n", "t.wgsl:1"),
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
    fn for_loops_unroll_with_the_counter_substituted() {
        let values = vec![("KW".to_string(), 3), ("SW".to_string(), 2)];
        let text = "a\n#for J in 0..KW\nw[J] = x[J + JJ];\n#if J == 1\nmid J\n#endif\n#endfor\nb\n";
        assert_eq!(preprocess("t.wgsl", text, &values).unwrap(), "a\nw[0u] = x[0u + JJ];\nw[1u] = x[1u + JJ];\nmid 1u\nw[2u] = x[2u + JJ];\nb\n");
        let nested = "#for I in 0..2\n#for J in 0..(3 * SW + (KW - 1) * 1 + 1) / 4\nI J\n#endfor\n#endfor\n";
        assert_eq!(preprocess("t.wgsl", nested, &values).unwrap(), "0u 0u\n0u 1u\n1u 0u\n1u 1u\n", "(6 + 2 + 1) / 4 = 2");
        assert_eq!(preprocess("t.wgsl", "#for J in 0..0\nx\n#endfor\ny\n", &values).unwrap(), "y\n");
        assert_eq!(evaluate("KW - 4", &values), None, "negative");
        assert_eq!(evaluate("(KW", &values), None);
        assert_eq!(evaluate("KW / 0", &values), None);
        assert_eq!(evaluate("7u % 4u + KW * SW", &values), Some(9));
        assert_eq!(evaluate("4294967295 * 4294967295 * 4294967295", &values), None, "overflow");
        let named = "#let ROWS = 1 + KW * 2\n#for R in 0..ROWS - 5\nR\n#endfor\n#if ROWS == 7\nseven\n#endif\n";
        assert_eq!(preprocess("t.wgsl", named, &values).unwrap(), "0u\n1u\nseven\n");
    }

    #[test]
    fn malformed_for_loops_name_the_file_and_line() {
        for (text, want) in [
            ("#for J in 0..3\nx\n", "t.wgsl:1"),
            ("x\n#endfor\n", "t.wgsl:2"),
            ("#for J in 1..3\n#endfor\n", "start at 0"),
            ("#for J in 0..K >> 1\n#endfor\n", "t.wgsl:1"),
            ("#for J in 0..1000\n#endfor\n", "at most"),
            ("#for 2J in 0..3\n#endfor\n", "t.wgsl:1"),
            ("x\n#let 2A = 1\n", "t.wgsl:2"),
            ("#let A 1\n", "NAME = EXPRESSION"),
            ("#let A = B +\n", "t.wgsl:1"),
        ] {
            let err = preprocess("t.wgsl", text, &[]).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn requirements_come_first_once_in_dependency_order() {
        let src = assemble("k.wgsl", "// k.wgsl — test\n// requires: elem, activations\nfn main() {}\n", Defines::default()).unwrap();
        let at = |name: &str| src.find(&format!("// ---- shaders/{name}")).unwrap_or_else(|| panic!("{name} missing"));
        assert!(at("lib/activations.wgsl") < at("lib/elem.wgsl") && at("lib/elem.wgsl") < at("k.wgsl"));
        assert_eq!(src.matches("// ---- shaders/lib/activations.wgsl").count(), 1);
        assert!(assemble("k.wgsl", "// requires: nothing_such\n", Defines::default()).unwrap_err().contains("nothing_such"));
    }
}
