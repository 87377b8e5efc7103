//! `wgvit classify`: images and folders → top-k classes.
//!
//! A reader thread reads, decodes and preprocesses the images in order ([`wgvit::preprocess`])
//! while the main thread runs the model on full batches, so decoding overlaps the GPU. The graph
//! is built once for `[B, 3, H, W]` with `B = min(--batch, images)`; a last, partial batch is
//! padded with zeros (one compiled graph, no second compilation). An image that cannot be read
//! or decoded is reported by name (an `error:` line, or a JSON object with `"error"`) and
//! skipped; the command goes on and exits with 1 at the end. Output goes to stdout, the progress
//! bar (only on a terminal, never with `--json`) and the throughput summary to stderr.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use wgvit::error::{Error, Result};
use wgvit::models::ModelCard;
use wgvit::{Engine, HostTensor, Weights};

pub struct Options {
    pub inputs: Vec<PathBuf>,
    pub top: usize,
    /// (height, width) and where it came from
    pub size: crate::cli::InputSize,
    pub json: bool,
    pub batch: usize,
}

const EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp"];
/// Folder nesting followed at most (a symlink loop ends here).
const MAX_DEPTH: usize = 32;

fn has_image_extension(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// What a walk has seen: canonical folders (a symlink loop or two links to one folder are
/// entered once) and canonical files (an image reached by two paths is classified once).
#[derive(Default)]
struct Seen {
    dirs: std::collections::HashSet<PathBuf>,
    files: std::collections::HashSet<PathBuf>,
}

/// Most images one command collects (a folder tree larger than this is an error, not a hang).
const MAX_FILES: usize = 1 << 20;

fn walk(dir: &Path, depth: usize, seen: &mut Seen, out: &mut Vec<PathBuf>) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: dir.display().to_string(), reason: e.to_string() };
    let canonical = dir.canonicalize().map_err(io)?;
    if !seen.dirs.insert(canonical) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).map_err(io)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>().map_err(io)?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if depth < MAX_DEPTH {
                walk(&p, depth + 1, seen, out)?;
            }
        } else if has_image_extension(&p) && p.canonicalize().map_or(true, |c| seen.files.insert(c)) {
            if out.len() >= MAX_FILES {
                return Err(Error::Io { path: dir.display().to_string(), reason: format!("more than {MAX_FILES} images under the folders given") });
            }
            out.push(p);
        }
    }
    Ok(())
}

/// The image files named by `inputs`: files as given, folders walked (sorted, recursive).
/// A path that does not exist, or a folder without images, is an error.
pub fn collect(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut seen = Seen::default();
    for p in inputs {
        let md = std::fs::metadata(p).map_err(|e| Error::Io { path: p.display().to_string(), reason: e.to_string() })?;
        if md.is_dir() {
            let before = files.len();
            walk(p, 0, &mut seen, &mut files)?;
            if files.len() == before {
                return Err(Error::Io { path: p.display().to_string(), reason: format!("no images in this folder (looked for .{})", EXTENSIONS.join(", .")) });
            }
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

pub use wgvit::preprocess::top_k;

struct Decoded {
    path: PathBuf,
    pixels: Result<Vec<f32>>,
}

/// Classifies every image; `Ok(false)` when some could not be read (each one was reported).
pub fn classify(card: ModelCard, weights: Weights, opts: &Options) -> Result<bool> {
    let files = collect(&opts.inputs)?;
    let (h, w) = opts.size.size;
    let batch = opts.batch.min(files.len()).max(1);
    let prep = card.preprocess_at(opts.size.size);
    let decode = |path: &PathBuf| Decoded {
        path: path.clone(),
        pixels: wgvit::io::read_file(path, wgvit::io::MAX_IMAGE_BYTES, "image").and_then(|bytes| prep.load(&path.display().to_string(), &bytes)),
    };
    // The first batch is decoded before the device exists: when no image can be read, the
    // command fails in milliseconds, not after building the model.
    let first: Vec<Decoded> = files.iter().take(batch).map(decode).collect();
    if files.len() == first.len() && first.iter().all(|d| d.pixels.is_err()) {
        for d in &first {
            if let Err(e) = &d.pixels {
                if opts.json {
                    println!("{}", serde_json::json!({ "path": d.path.display().to_string(), "error": e.to_string() }));
                } else {
                    eprintln!("error: {e}");
                }
            }
        }
        return Ok(false);
    }

    crate::cli::tune_software_driver(card.id(), &weights, &[batch, 3, h, w]);
    let engine = pollster::block_on(Engine::new())?;
    let info = engine.info().clone();
    let model = engine.load(card, weights)?;
    let card = &model.card;
    let model_id = card.id();
    let start = Instant::now();
    let exe = pollster::block_on(model.prepare(&[batch, 3, h, w])).map_err(|e| crate::cli::explain_size(e, &model, batch, &opts.size))?;
    let compile = start.elapsed();

    let bar = if opts.json || !std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(files.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:32} {pos}/{len} images  {elapsed} (eta {eta})").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let mut labels: Option<Option<Vec<String>>> = None; // known once the first logits arrive
    let mut failed = 0usize;
    let mut done = 0usize;
    let mut gpu_time = 0.0f64;
    let run_start = Instant::now();
    let plane = 3 * h * w;

    let report_error = |path: &Path, e: &Error| {
        bar.suspend(|| {
            if opts.json {
                println!("{}", serde_json::json!({ "path": path.display().to_string(), "error": e.to_string() }));
            } else {
                eprintln!("error: {e}");
            }
        });
    };

    let outcome: Result<()> = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Decoded>(2 * batch);
        let rest = &files[first.len()..];
        let decode = &decode;
        scope.spawn(move || {
            for path in rest {
                if tx.send(decode(path)).is_err() {
                    return; // the model side stopped
                }
            }
        });

        let mut pending: Vec<(PathBuf, Vec<f32>)> = Vec::with_capacity(batch);
        let mut rx = first.into_iter().chain(rx);
        loop {
            let next = rx.next();
            let finished = next.is_none();
            if let Some(d) = next {
                match d.pixels {
                    Ok(px) => pending.push((d.path, px)),
                    Err(e) => {
                        failed += 1;
                        report_error(&d.path, &e);
                        bar.inc(1);
                    }
                }
            }
            if pending.len() == batch || (finished && !pending.is_empty()) {
                let mut data = vec![0f32; batch * plane];
                for (i, (_, px)) in pending.iter().enumerate() {
                    data[i * plane..(i + 1) * plane].copy_from_slice(px);
                }
                let input = HostTensor::new(vec![batch, 3, h, w], data)?;
                let t = Instant::now();
                let logits = pollster::block_on(exe.run(&[&input]))?.remove(0);
                gpu_time += t.elapsed().as_secs_f64();
                let classes = logits.shape.get(1).copied().unwrap_or(0);
                let names = labels.get_or_insert_with(|| card.labels_for(classes));
                let mut text = String::new();
                for (i, (path, _)) in pending.drain(..).enumerate() {
                    let row = &logits.data[i * classes..(i + 1) * classes];
                    if let Some(&value) = row.iter().find(|v| !v.is_finite()) {
                        failed += 1;
                        let e = Error::NonFiniteOutput { model: model_id.to_string(), input: path.display().to_string(), value };
                        report_error(&path, &e);
                        bar.inc(1);
                        continue;
                    }
                    let top = top_k(row, opts.top);
                    let label = |c: usize| names.as_ref().map(|n| n[c].clone());
                    if opts.json {
                        let top: Vec<serde_json::Value> =
                            top.iter().map(|&(c, p)| serde_json::json!({ "index": c, "label": label(c), "prob": p })).collect();
                        text.push_str(&serde_json::json!({ "path": path.display().to_string(), "top": top }).to_string());
                        text.push('\n');
                    } else {
                        text.push_str(&format!("{}\n", path.display()));
                        for &(c, p) in &top {
                            let name = label(c).map_or_else(|| format!("class {c}"), |l| format!("{l} ({c})"));
                            text.push_str(&format!("  {:>6.2}%  {name}\n", 100.0 * p));
                        }
                    }
                    done += 1;
                    bar.inc(1);
                }
                bar.suspend(|| print!("{text}"));
            }
            if finished {
                return Ok(());
            }
        }
    });
    bar.finish_and_clear();
    outcome?;

    let elapsed = run_start.elapsed().as_secs_f64();
    eprintln!(
        "classified {done} image(s){} in {elapsed:.2} s: {:.2} images/s (batch {batch}, {:.1} ms per batch on the GPU incl. upload and readback; \
         model {model_id} at {h}x{w} on {}, graph built in {:.2} s)",
        if failed > 0 { format!(", {failed} unreadable") } else { String::new() },
        done as f64 / elapsed.max(1e-9),
        1e3 * gpu_time / done.div_ceil(batch).max(1) as f64,
        info.name,
        compile.as_secs_f64(),
    );
    Ok(failed == 0)
}
