//! Running the `wgvit` binary as a user does: output, and the one-line error contract.

use std::process::{Command, Output};

pub fn wgvit(args: &[&str]) -> Output {
    wgvit_with_env(args, &[])
}

/// [`wgvit`] with extra environment variables.
pub fn wgvit_with_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgvit"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Mesa prints an error line when XDG_RUNTIME_DIR is unset, which would break the one-line
    // error contract these tests check; give the child a private one in that case.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join("wgvit-test-xdg-runtime");
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
        cmd.env("XDG_RUNTIME_DIR", dir);
    }
    cmd.output().unwrap_or_else(|e| panic!("cannot start wgvit: {e}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args`, expects a failure reported as one `error:` line containing every part of `names`.
pub fn assert_one_error_line(args: &[&str], names: &[&str]) {
    let out = wgvit(args);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "wgvit {args:?} panicked:\n{stderr}");
    assert!(!out.status.success(), "wgvit {args:?} succeeded; stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "wgvit {args:?}: expected one stderr line, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "wgvit {args:?}: {:?} does not start with 'error: '", lines[0]);
    for name in names {
        assert!(lines[0].contains(name), "wgvit {args:?}: {:?} does not name {name:?}", lines[0]);
    }
    eprintln!("wgvit {}  →  {}", args.join(" "), lines[0]);
}
