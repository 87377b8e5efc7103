//! The library API end to end: open a device, load a model by id from a weights file (or random
//! weights), run an input tensor, print the top logits and what the graph costs.
//!
//! ```sh
//! cargo run --release --example classify_tensor                          # toy fixture
//! cargo run --release --example classify_tensor -- hatnet-tiny           # random weights, 224x224
//! cargo run --release --example classify_tensor -- hatnet-micro tests/fixtures/hatnet-micro/weights.safetensors
//! ```
//! The same calls work on wasm32 (`Engine::new().await`, `Model::run(..).await`); only the file
//! reading and `pollster::block_on` here are native.

use wgvit::tensor::Rng;
use wgvit::{Engine, HostTensor, Weights};

async fn run(id: &str, weights: Weights, input: HostTensor) -> wgvit::Result<()> {
    let engine = Engine::new().await?;
    println!("adapter: {} ({})", engine.info().name, engine.info().backend);
    let model = engine.load_model(id, weights)?;
    let exe = model.prepare(&input.shape).await?; // pipelines, bind groups, memory plan: once per shape
    println!("{id}: {} dispatches per forward, {:.1} MFLOP", exe.stats.dispatches, exe.stats.flops as f64 / 1e6);
    let logits = model.run(&input).await?;
    let classes = logits.shape[1];
    let mut order: Vec<usize> = (0..classes).collect();
    order.sort_by(|&a, &b| logits.data[b].total_cmp(&logits.data[a]));
    for &i in order.iter().take(5) {
        println!("  class {i:4}  logit {:+.5}", logits.data[i]);
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/toy");
    let (id, weights, input) = match args.as_slice() {
        [] => {
            let w = Weights::from_file(format!("{dir}/weights.safetensors"));
            let bytes = std::fs::read(format!("{dir}/input.safetensors")).expect("toy fixture input");
            let x = wgvit::weights::read_tensor("input.safetensors", &bytes, "input");
            ("toy".to_string(), w, x)
        }
        [id, rest @ ..] => {
            let w = match rest.first() {
                Some(path) => Weights::from_file(path),
                None => Ok(Weights::synthetic(0)),
            };
            (id.clone(), w, Ok(Rng::new(1).tensor(&[1, 3, 224, 224], -1.0, 1.0)))
        }
    };
    let result = weights.and_then(|w| input.map(|x| (w, x))).and_then(|(w, x)| pollster::block_on(run(&id, w, x)));
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
