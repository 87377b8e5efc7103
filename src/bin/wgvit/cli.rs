//! Argument parsing and the subcommands. Every failure is one line on stderr and exit code 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use wgvit::error::{Error, Result};
use wgvit::models::ModelCard;
use wgvit::preprocess::{parse_size, DEFAULT_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD};
use wgvit::weights::{meta, read_tensor, write_tensors};
use wgvit::{io, Engine, GpuContext, Weights};

#[derive(Parser)]
#[command(name = "wgvit", version, about = "Efficient vision transformers on WebGPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the GPU adapter, backend, features and limits.
    ///
    /// Example: WGPU_BACKEND=vulkan wgvit info
    Info,
    /// Classify images and folders of images: the top classes with their probabilities.
    ///
    /// Folders are walked recursively for .jpg .jpeg .png .webp; images run in batches.
    /// Preprocessing is timm's/torchvision's evaluation transform: bicubic resize (PIL's filter) of
    /// the shorter side to floor(S / 0.875), center crop S×S, ImageNet mean/std. A 1000-class head
    /// gets ImageNet-1k names. An unreadable image is reported by name and skipped; the exit code
    /// is then 1.
    ///
    /// Without --model and --weights, the bundled digit model hatnet-digits runs (28×28 white-on-black
    /// digits, MNIST style); `--model vvt-digits` (or accvit-, lavit-digits) picks another bundled one.
    ///
    /// Example: wgvit classify assets/samples/7.png
    ///
    /// Example: wgvit classify cat.jpg --model hatnet-tiny --weights hatnet_tiny.pth
    ///
    /// Example: wgvit classify photos/ --weights hatnet-tiny.safetensors --top 3 --json > labels.jsonl
    Classify {
        #[command(flatten)]
        images: ImageModel,
        /// How many classes to print per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// One JSON object per line and image on stdout (no progress bar).
        #[arg(long)]
        json: bool,
        /// Images per forward.
        #[arg(long, default_value_t = 8)]
        batch: usize,
    },
    /// Show what each attention layer looked at: heat maps and, with --json, every map's values.
    ///
    /// For each image, writes OUT/<image stem>.<model id>.png: the model's input crop with the
    /// summary map (the attention each input pixel receives, averaged over every attention map
    /// of the forward and normalised to sum to 1) as a heat map, and a legend. With --query X,Y
    /// the maps are those of the query at input pixel (X, Y) instead. README ("Explain") says
    /// what each family's maps are.
    ///
    /// Example: wgvit explain assets/samples/7.png --out maps/
    ///
    /// Example: wgvit explain assets/samples/ --model vvt-digits --out maps/ --json --query 16,12
    Explain {
        #[command(flatten)]
        images: ImageModel,
        /// Folder for the PNG files (created if missing).
        #[arg(long, required = true)]
        out: PathBuf,
        /// One JSON object per line and image on stdout: path, model, png, maps, summary.
        #[arg(long)]
        json: bool,
        /// The query pixel X,Y of the model's input (column, row from 0): maps show its
        /// attention. Default: the attention each position receives from all queries.
        #[arg(long)]
        query: Option<String>,
    },
    /// Run a model on an input tensor: reads `input` [B,3,H,W] f32, writes `logits` [B,classes].
    ///
    /// Example: wgvit run --model hatnet-tiny --weights w.safetensors --input in.safetensors --output out.safetensors
    Run {
        /// Model id (e.g. hatnet-tiny, vvt-small, accvit-micro, lavit-tiny-psi); may be left out
        /// when the weights' metadata names it.
        #[arg(long)]
        model: Option<String>,
        /// Weights: .safetensors (f32, f16 or bf16), or a PyTorch checkpoint (.pth, .pt, .bin). Not
        /// needed for the bundled models (the default: hatnet-digits).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Input safetensors file holding the tensor `input`.
        #[arg(long)]
        input: PathBuf,
        /// Output safetensors file; receives the tensor `logits`.
        #[arg(long)]
        output: PathBuf,
    },
    /// Convert a PyTorch checkpoint (.pth/.pt/.bin) or safetensors file to safetensors.
    ///
    /// Every tensor keeps its dtype. With --model, the tensors are checked against the model
    /// (names and shapes, no GPU needed) and the model id, input size, classes and preprocessing
    /// are written into the metadata, so that `--model` can then be left out.
    ///
    /// Example: wgvit convert hatnet_tiny.pth hatnet-tiny.safetensors --model hatnet-tiny
    ///
    /// Example: wgvit convert ckpt.pth out.safetensors --model hatnet-small --size 448 --labels classes.txt
    Convert {
        /// The checkpoint to read.
        input: PathBuf,
        /// The safetensors file to write.
        output: PathBuf,
        /// Model id to check the tensors against and record in the metadata.
        #[arg(long)]
        model: Option<String>,
        /// Evaluation input size (S or HxW) to record (default: the model's usual size).
        #[arg(long)]
        size: Option<String>,
        /// A text file with one class name per line, recorded as the head's labels.
        #[arg(long)]
        labels: Option<PathBuf>,
    },
    /// Benchmark a model: cold and warm latency, images/s, GFLOP/s, dispatches, GPU memory.
    ///
    /// Cold: time to the first result (weights upload, pipelines, first forward); warm: median,
    /// min and max over --runs. Random weights unless --weights.
    ///
    /// Example: wgvit bench --model hatnet-tiny --size 224 --runs 10
    Bench {
        #[command(flatten)]
        target: Target,
        /// Timed warm forwards.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// Profile a model on the GPU: time per op kind, per layer, and the slowest dispatches.
    ///
    /// Every dispatch is timed with GPU timestamp queries (the device needs the timestamp-query
    /// feature); each dispatch's median over --runs is reported. Random weights unless --weights.
    ///
    /// Example: wgvit profile --model hatnet-tiny --runs 5
    Profile {
        #[command(flatten)]
        target: Target,
        /// Profiled forwards (after one warm-up); each dispatch's median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Group layers by their first N label components instead of up to the block index.
        #[arg(long)]
        depth: Option<usize>,
        /// How many of the slowest dispatches to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Time each dispatch by repetition instead of GPU timestamps: the wall-clock a forward
        /// gains when that dispatch runs N more times, divided by N, against plain forwards
        /// (`--runs` pairs per dispatch, interleaved). For devices whose timestamps do not
        /// attribute time to dispatches (lavapipe). Slow: two forwards per run per dispatch.
        #[arg(long, value_name = "N", conflicts_with = "isolate")]
        repeat: Option<u32>,
        /// Time each dispatch alone: N dispatches of it in one submission, less an empty
        /// submission, divided by N (`--runs` pairs per dispatch, interleaved). Robust where the
        /// host's speed drifts by more than a dispatch between forwards (--repeat's weakness),
        /// but a dispatch repeated finds its operands in the caches.
        #[arg(long, value_name = "N")]
        isolate: Option<u32>,
        /// Also list every dispatch in forward order with its time, kernel, override constants
        /// and workgroup count: which variant of a kernel each step runs.
        #[arg(long)]
        variants: bool,
    },
    /// Benchmark the compute kernels against the device's measured FMA peak.
    ///
    /// GFLOP/s (or GB/s) and the fraction of the peak for matmul, conv2d, softmax and attention
    /// at model-like sizes.
    ///
    /// Example: WGPU_BACKEND=vulkan wgvit bench-ops --runs 5
    BenchOps {
        /// Timed runs per case (after one warm-up run).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also sweep matmul register-tile and workgroup shapes.
        #[arg(long)]
        sweep: bool,
    },
}


fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })
}

/// The model id: `--model`, else the one the weights' metadata names.
pub fn resolve_model(model: Option<String>, weights: Option<&Weights>) -> Result<String> {
    let from_metadata = model.is_none();
    let id = match (model, weights) {
        (Some(id), w) => {
            if let Some(named) = w.and_then(Weights::model_id).filter(|named| *named != id) {
                log::warn!("--model {id} overrides the model '{named}' named by the weights' metadata");
            }
            id
        }
        (None, Some(w)) => w.model_id().map(str::to_string).ok_or_else(|| {
            Error::Invalid(format!(
                "--model is required: {} names no model in its metadata ('{}'; `wgvit convert --model <id>` writes it)",
                w.file,
                meta::MODEL
            ))
        })?,
        (None, None) => return Err(Error::Invalid("--model is required when no --weights are given".into())),
    };
    match weights {
        // An id the file's own metadata names: say where it came from.
        Some(w) if from_metadata => drop(wgvit::models::resolve(&id, w).map_err(|e| match e {
            Error::UnknownModel { id, known } => Error::Invalid(format!(
                "{}: its metadata '{}' names the model '{id}', which is not known (pass --model); known ids: {known}",
                w.file,
                meta::MODEL
            )),
            other => other,
        })?),
        Some(w) => drop(wgvit::models::resolve(&id, w)?),
        None => wgvit::models::check_builtin(&id)?,
    }
    Ok(id)
}

/// The weights to run: `--weights`, else the bundled model `--model` names, else the bundled
/// default model.
fn model_weights(model: Option<&str>, path: Option<&Path>) -> Result<Weights> {
    if let Some(p) = path {
        return Weights::from_file(p);
    }
    let id = model.unwrap_or(crate::bundled::DEFAULT_MODEL);
    crate::bundled::weights(id).unwrap_or_else(|| {
        Err(Error::Invalid(format!(
            "--weights is required for model '{id}' (the models bundled with wgvit need none: {})",
            crate::bundled::ids()
        )))
    })
}

/// `--size S` or `--size HxW`.
fn flag_size(s: &str) -> Result<(usize, usize)> {
    parse_size(s).map_err(|_| Error::Invalid(format!("--size '{s}': expected S or HxW with sides 1 ..= {}, e.g. 224 or 224x448", wgvit::preprocess::MAX_SIDE)))
}

/// Most images per forward (`--batch`).
const MAX_BATCH: usize = 4096;

/// `--batch N`: 1 ..= MAX_BATCH.
fn flag_batch(batch: usize) -> Result<usize> {
    if (1..=MAX_BATCH).contains(&batch) {
        Ok(batch)
    } else {
        Err(Error::Invalid(format!("--batch {batch}: expected 1 ..= {MAX_BATCH} images per forward")))
    }
}

/// An input size and where it came from (for messages).
#[derive(Clone, Debug)]
pub struct InputSize {
    pub size: (usize, usize),
    pub source: String,
}

/// `--size`, else the model card's (the weights' metadata, else the family's usual size).
fn resolve_size(size: Option<&str>, card: &ModelCard, weights: &Weights) -> Result<InputSize> {
    if let Some(s) = size {
        return Ok(InputSize { size: flag_size(s)?, source: format!("--size {s}") });
    }
    let source = match weights.metadata.get(meta::INPUT_SIZE) {
        Some(v) => format!("{}: metadata '{}' = '{v}'", weights.file, meta::INPUT_SIZE),
        None => format!("the usual input size of {}", card.id()),
    };
    Ok(InputSize { size: card.input_size(), source })
}

/// A graph-building error rephrased when the input size is what makes a tensor too large: names
/// where the size came from and the largest square size that works on this device.
pub fn explain_size(e: Error, model: &wgvit::Model, batch: usize, size: &InputSize) -> Error {
    if !e.is_too_large() {
        return e;
    }
    let profile = &model.engine_profile();
    let (h, w) = size.size;
    let largest = wgvit::models::largest_square_side(&model.card.spec, &model.weights, batch, profile, h.max(w));
    Error::Invalid(format!(
        "{}: {} at {h}x{w} (batch {batch}) needs tensors larger than this device allows ({e}); {}",
        size.source,
        model.id,
        match largest {
            Some(side) => format!("the largest square size that works here is {side}"),
            None => "no square size up to it works here".into(),
        }
    ))
}

/// Before the engine exists: chooses llvmpipe's threads for the model's graph,
/// `wgvit::context::choose_software_driver_threads` (a graph of small dispatches, the digit
/// models, on the calling thread; a larger one on two threads per core); the count it set, if
/// any. The graph is built on the host for the decision (no GPU); a model that cannot be built
/// is left to report its error later.
pub fn tune_software_driver(id: &str, weights: &Weights, shape: &[usize]) -> Option<usize> {
    let spec = wgvit::models::resolve(id, weights).ok()?;
    let graph = wgvit::models::build_spec_graph(&spec, weights, shape, wgvit::kernels::DeviceProfile::cpu_like()).ok()?;
    wgvit::context::choose_software_driver_threads(&graph)
}

/// The weights at `path` or of the bundled model `model` (and `true`), else random weights for
/// any built-in model (and `false`).
fn load_weights(model: Option<&str>, path: Option<&Path>) -> Result<(Weights, bool)> {
    match (path, model.and_then(crate::bundled::weights)) {
        (Some(p), _) => Ok((Weights::from_file(p)?, true)),
        (None, Some(bundled)) => Ok((bundled?, true)),
        (None, None) => Ok((Weights::synthetic(0), false)),
    }
}

/// Runs the command line; `Ok(false)` when some inputs failed but the command went on (classify).
pub fn main() -> Result<bool> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => {
            let ctx = GpuContext::new_blocking()?;
            println!("{}", ctx.info);
        }
        Command::Classify { images, top, json, batch } => {
            let (inputs, card, weights, size) = images.resolve()?;
            let opts = crate::classify::Options { inputs, top: top.max(1), size, json, batch: flag_batch(batch)? };
            return crate::classify::classify(card, weights, &opts);
        }
        Command::Explain { images, out, json, query } => {
            let query = query.as_deref().map(crate::explain::parse_query).transpose()?;
            let (inputs, card, weights, size) = images.resolve()?;
            let opts = crate::explain::Options { inputs, out, json, query, size };
            return crate::explain::explain(card, weights, &opts);
        }
        Command::Run { model, weights, input, output } => {
            if let Some(id) = &model {
                wgvit::models::check_id(id)?;
            }
            let input_name = input.display().to_string();
            let x = read_tensor(&input_name, &io::read_file(&input, io::MAX_TENSOR_BYTES, "input tensor")?, "input")?;
            let weights = model_weights(model.as_deref(), weights.as_deref())?;
            let model = resolve_model(model, Some(&weights))?;
            tune_software_driver(&model, &weights, &x.shape);
            let engine = pollster::block_on(Engine::new())?;
            let m = engine.load_model(&model, weights)?;
            let logits = pollster::block_on(m.run(&x))?;
            // `run` is the raw tensor interface: non-finite logits are written, and said.
            if let Some(i) = logits.data.iter().position(|v| !v.is_finite()) {
                let input_bad = x.data.iter().filter(|v| !v.is_finite()).count();
                eprintln!(
                    "warning: logits hold non-finite values (first {} at index {i}); {} holds {input_bad} non-finite input value(s)",
                    logits.data[i], input_name
                );
            }
            write(&output, &write_tensors(&[("logits", &logits)])?)?;
        }
        Command::Convert { input, output, model, size, labels } => convert(&input, &output, model, size.as_deref(), labels.as_deref())?,
        Command::Bench { target, runs } => {
            let (loaded, weights_ms) = wgvit::time::timed(|| target.resolve());
            let (id, weights, size, batch) = loaded?;
            crate::bench::bench_model(&id, weights, weights_ms, &size, batch, runs)?
        }
        Command::Profile { target, runs, depth, top, repeat, isolate, variants } => {
            if let Some(n) = repeat.filter(|n| !(1..=1000).contains(n)) {
                return Err(Error::Invalid(format!("--repeat {n}: expected 1 to 1000 extra dispatches of each step")));
            }
            if let Some(n) = isolate.filter(|n| !(1..=1000).contains(n)) {
                return Err(Error::Invalid(format!("--isolate {n}: expected 1 to 1000 dispatches of each step")));
            }
            let method = match (repeat, isolate) {
                (Some(n), _) => crate::profile::Method::Repeat(n),
                (None, Some(n)) => crate::profile::Method::Isolate(n),
                (None, None) => crate::profile::Method::Timestamps,
            };
            let (id, weights, size, batch) = target.resolve()?;
            crate::profile::profile_model(&id, weights, &size, batch, runs.max(1), depth, top, method, variants)?
        }
        Command::BenchOps { runs, sweep } => crate::bench::bench_ops(runs, sweep)?,
    }
    Ok(true)
}

/// What `classify` and `explain` read and run: images, the model, its weights and input size.
#[derive(clap::Args)]
pub struct ImageModel {
    /// Image files and folders.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Model id; may be left out when the weights' metadata names it (see `wgvit convert`).
    /// Default without --weights: the bundled hatnet-digits.
    #[arg(long)]
    model: Option<String>,
    /// Weights: .safetensors, or a PyTorch checkpoint (.pth, .pt, .bin). Not needed for the
    /// bundled models (hatnet-digits, vvt-digits, accvit-digits, lavit-digits).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Input size S or HxW (default: the weights' metadata, else the model's usual size).
    #[arg(long)]
    size: Option<String>,
}

impl ImageModel {
    /// The inputs, the model's card, its weights and the checked input size.
    fn resolve(self) -> Result<(Vec<PathBuf>, ModelCard, Weights, InputSize)> {
        let weights = model_weights(self.model.as_deref(), self.weights.as_deref())?;
        let id = resolve_model(self.model, Some(&weights))?;
        let card = ModelCard::new(&id, &weights)?;
        let size = resolve_size(self.size.as_deref(), &card, &weights)?;
        Ok((self.inputs, card, weights, size))
    }
}

/// What `bench` and `profile` run: the model, its weights, the input size and the batch.
#[derive(clap::Args)]
pub struct Target {
    /// Model id (e.g. hatnet-tiny); may be left out when the weights' metadata names it.
    #[arg(long)]
    model: Option<String>,
    /// Weights (.safetensors or .pth); when left out, a bundled model's own (e.g. vvt-digits),
    /// else random weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Input size: S or HxW (default: the weights' metadata, else the model's usual size).
    #[arg(long)]
    size: Option<String>,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

impl Target {
    /// The model id, its weights, the checked input size and batch.
    fn resolve(self) -> Result<(String, Weights, InputSize, usize)> {
        let (weights, from_file) = load_weights(self.model.as_deref(), self.weights.as_deref())?;
        let id = resolve_model(self.model, from_file.then_some(&weights))?;
        let size = resolve_size(self.size.as_deref(), &ModelCard::new(&id, &weights)?, &weights)?;
        Ok((id, weights, size, flag_batch(self.batch)?))
    }
}

/// `wgvit convert`: every tensor unchanged (dtype, shape, bytes), plus metadata.
fn convert(input: &Path, output: &Path, model: Option<String>, size: Option<&str>, labels: Option<&Path>) -> Result<()> {
    let name = input.display().to_string();
    if let Some(id) = &model {
        wgvit::models::check_id(id)?;
    }
    let same = |a: &Path, b: &Path| a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b);
    if same(input, output) {
        return Err(Error::Invalid(format!("{}: convert would overwrite its input; choose another output file", output.display())));
    }
    let io::TensorFile { mut metadata, tensors: raw } = io::read(&name, &io::read_file(input, io::MAX_WEIGHTS_BYTES, "weights")?)?;
    let mut classes = metadata.get(meta::CLASSES).and_then(|c| c.parse::<usize>().ok());
    let mut summary = Vec::new();
    if let Some(id) = model {
        // Build the forward graph on the host: every tensor name and shape is checked (against
        // the file's own configuration when its metadata describes this model).
        let weights = Weights::from_raw(&name, metadata.clone(), raw.clone())?;
        // The file's recorded size only when it records this model; else the model's usual one.
        let (h, w) = match size {
            Some(s) => flag_size(s)?,
            None if weights.model_id() == Some(id.as_str()) => ModelCard::new(&id, &weights)?.input_size(),
            None => wgvit::models::resolve(&id, &weights)?.default_input(&weights),
        };
        let g = wgvit::models::build_graph(&id, &weights, &[1, 3, h, w])?;
        let logits = g.outputs.iter().find(|(n, _)| n == "logits").map(|&(_, t)| t);
        classes = logits.and_then(|t| g.shape(t).last().copied()).or(classes);
        metadata.insert(meta::MODEL.into(), id.clone());
        metadata.insert(meta::INPUT_SIZE.into(), if h == w { h.to_string() } else { format!("{h}x{w}") });
        metadata.entry(meta::CROP_PCT.into()).or_insert_with(|| DEFAULT_CROP_PCT.to_string());
        let list = |v: [f32; 3]| v.map(|x| x.to_string()).join(",");
        metadata.entry(meta::MEAN.into()).or_insert_with(|| list(IMAGENET_MEAN));
        metadata.entry(meta::STD.into()).or_insert_with(|| list(IMAGENET_STD));
        summary.push(format!("model {id}, input {h}x{w}"));
    } else if let Some(s) = size {
        let (h, w) = flag_size(s)?;
        metadata.insert(meta::INPUT_SIZE.into(), if h == w { h.to_string() } else { format!("{h}x{w}") });
    }
    if let Some(c) = classes {
        metadata.insert(meta::CLASSES.into(), c.to_string());
        summary.push(format!("{c} classes"));
    }
    if let Some(path) = labels {
        let text = String::from_utf8(io::read_file(path, 16 << 20, "labels")?).map_err(|_| Error::Io { path: path.display().to_string(), reason: "not UTF-8 text".into() })?;
        let names: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if let Some(c) = classes.filter(|&c| c != names.len()) {
            return Err(Error::Invalid(format!("{}: {} labels, but the model's head has {c} classes", path.display(), names.len())));
        }
        metadata.insert(meta::LABELS.into(), names.join("\n"));
        summary.push(format!("{} labels", names.len()));
    }
    let source = input.file_name().map_or(name.clone(), |f| f.to_string_lossy().into_owned());
    metadata.insert(meta::SOURCE.into(), source);
    let bytes = io::safetensors::write(&raw, &metadata)?;
    // Write next to the target, then rename: an interrupted convert leaves no half file.
    // Errors name the file the user asked for, not the temporary one.
    let tmp = output.with_extension("safetensors.partial");
    let failed = |e: std::io::Error| Error::Io { path: output.display().to_string(), reason: format!("cannot write it: {e}") };
    std::fs::write(&tmp, &bytes).map_err(failed)?;
    std::fs::rename(&tmp, output).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        failed(e)
    })?;
    let mut dtypes: BTreeMap<String, usize> = BTreeMap::new();
    for t in &raw {
        *dtypes.entry(format!("{:?}", t.dtype)).or_default() += 1;
    }
    let dtypes: Vec<String> = dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
    println!(
        "wrote {}: {} tensors ({}), {:.2} MiB{}",
        output.display(),
        raw.len(),
        dtypes.join(", "),
        bytes.len() as f64 / (1 << 20) as f64,
        if summary.is_empty() { String::new() } else { format!("; {}", summary.join(", ")) }
    );
    Ok(())
}
