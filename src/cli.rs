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
        Command::BenchOps { runs, sweep } => crate::bench::bench_ops(runs, sweep)?,
    }
    Ok(())
}
