//! The `wgvit` command line: `info`, `classify`, `explain`, `run`, `convert`, `bench`, `profile`, `bench-ops`.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod bundled;
#[cfg(not(target_arch = "wasm32"))]
mod classify;
#[cfg(not(target_arch = "wasm32"))]
mod cli;
#[cfg(not(target_arch = "wasm32"))]
mod explain;
#[cfg(not(target_arch = "wasm32"))]
mod profile;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    // Rust ignores SIGPIPE, so printing to a closed pipe (`wgvit classify dir/ | head`) would
    // panic in `println!`; a command-line tool ends quietly there instead.
    #[cfg(unix)]
    // SAFETY: called first, before any other thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match cli::main() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1), // each failure was reported where it happened
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
