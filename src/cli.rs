//! Argument parsing and the subcommands. Every failure is one line on stderr and exit code 1.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use wgvit::error::{Error, Result};
use wgvit::weights::{read_tensor, write_tensors};
use wgvit::{Engine, GpuContext};

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
    /// Run a model on an input tensor: reads `input` [B,3,H,W] f32, writes `logits` [B,classes].
    ///
    /// Example: wgvit run --model hatnet-tiny --weights w.safetensors --input in.safetensors --output out.safetensors
    Run {
        /// Model id (e.g. hatnet-tiny, vvt-small, accvit-micro, lavit-tiny-psi).
        #[arg(long)]
        model: String,
        /// Weights (.safetensors; f32, f16 or bf16).
        #[arg(long)]
        weights: PathBuf,
        /// Input safetensors file holding the tensor `input`.
        #[arg(long)]
        input: PathBuf,
        /// Output safetensors file; receives the tensor `logits`.
        #[arg(long)]
        output: PathBuf,
    },
    /// Benchmark the compute kernels: the device's FMA peak, then GFLOP/s (or GB/s) and the
    /// fraction of the peak for matmul, conv2d, softmax and attention at model-like sizes.
    ///
    /// Example: WGPU_BACKEND=vulkan wgvit bench-ops --runs 5
    /// Benchmark a model: cold time to first result, warm latency (median/min/max), images/s,
    /// GFLOP/s, dispatches per forward and planned GPU memory. Random weights unless --weights.
    ///
    /// Example: wgvit bench --model hatnet-tiny --size 224 --runs 10
    Bench {
        /// Model id (e.g. hatnet-tiny).
        #[arg(long)]
        model: String,
        /// Weights (.safetensors); random weights when left out.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Input size: S or HxW.
        #[arg(long, default_value = "224")]
        size: String,
        /// Batch size.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed warm forwards.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    BenchOps {
        /// Timed runs per case (after one warm-up run).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also sweep matmul register-tile and workgroup shapes.
        #[arg(long)]
        sweep: bool,
    },
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })
}

pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Info => {
            let ctx = GpuContext::new_blocking()?;
            println!("{}", ctx.info);
        }
        Command::Run { model, weights, input, output } => {
            wgvit::models::family_of(&model)?;
            let input_name = input.display().to_string();
            let x = read_tensor(&input_name, &read(&input)?, "input")?;
            let engine = pollster::block_on(Engine::new())?;
            let m = engine.load_model_file(&model, &weights)?;
            let logits = pollster::block_on(m.run(&x))?;
            let bytes = write_tensors(&[("logits", &logits)])?;
            std::fs::write(&output, bytes).map_err(|e| Error::Io { path: output.display().to_string(), reason: e.to_string() })?;
        }
        Command::Bench { model, weights, size, batch, runs } => {
            wgvit::models::family_of(&model)?;
            let size = crate::bench::parse_size(&size)?;
            crate::bench::bench_model(&model, weights.as_deref(), size, batch.max(1), runs)?
        }
        Command::BenchOps { runs, sweep } => crate::bench::bench_ops(runs, sweep)?,
    }
    Ok(())
}
