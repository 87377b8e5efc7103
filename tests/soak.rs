//! Soak: long runs in one process leak neither host memory nor device memory, and a lost device
//! is an error the process survives (README "Reliability").
//!
//! - 1,000 consecutive forwards, then 100 model load/unload cycles: resident memory and the
//!   device allocator's bytes after warm-up grow by at most 5 %.
//! - `wgvit classify` over 1,000 images peaks at the resident memory of 100 (±5 %). Both runs
//!   compile their shaders (`MESA_SHADER_CACHE_DISABLE`): lavapipe's LLVM adds about 40 MiB to the
//!   peak, so a cache hit in one run and a miss in the other would decide the comparison.
//! - `device.destroy()`: the next forward is `Error::DeviceLost`, and a new engine works.
//!
//! The in-process phases share one lock: their memory readings must not see each other.
#![cfg(target_os = "linux")]

mod common;

use std::sync::Mutex;

use wgvit::tensor::Rng;
use wgvit::{Engine, Error, HostTensor, Model};

static SERIAL: Mutex<()> = Mutex::new(());

const MODEL: &str = "hatnet-digits";

fn model_bytes() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/models/hatnet-digits.safetensors")).unwrap()
}

fn input(seed: u64) -> HostTensor {
    HostTensor::new(vec![1, 3, 64, 64], Rng::new(seed).vec(3 * 64 * 64, -2.0, 2.0)).unwrap()
}

/// Resident set size of this process, bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Bytes the device's allocator holds for live buffers (after deferred frees have run).
fn device_bytes(engine: &Engine) -> u64 {
    let _ = engine.ctx.device.poll(wgpu::PollType::wait_indefinitely());
    engine.ctx.device.generate_allocator_report().map_or(0, |r| r.total_allocated_bytes)
}

fn assert_flat(what: &str, warm: u64, end: u64) {
    eprintln!("{what}: {:.1} MiB after warm-up, {:.1} MiB at the end", warm as f64 / 1048576.0, end as f64 / 1048576.0);
    assert!(end as f64 <= warm as f64 * 1.05, "{what} grew from {warm} to {end} bytes (over +5 %)");
}

fn forward(model: &Model, seed: u64) {
    let out = pollster::block_on(model.run(&input(seed))).unwrap_or_else(|e| panic!("forward {seed}: {e}"));
    assert!(out.data.iter().all(|v| v.is_finite()), "forward {seed}: non-finite logits");
}

#[test]
fn a_thousand_forwards_hold_memory_flat() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let engine = common::engine();
    let model = engine.load_model_bytes(MODEL, "hatnet-digits.safetensors", &model_bytes()).unwrap();
    let first = pollster::block_on(model.run(&input(0))).unwrap();
    for i in 1..100 {
        forward(&model, i);
    }
    let (rss_warm, device_warm) = (rss(), device_bytes(engine));
    for i in 100..1000 {
        forward(&model, i % 7);
    }
    assert_flat("resident memory over 1,000 forwards", rss_warm, rss());
    assert_flat("device memory over 1,000 forwards", device_warm, device_bytes(engine));
    // The last forward on the first input still gives the first answer, bit for bit.
    assert_eq!(pollster::block_on(model.run(&input(0))).unwrap().data, first.data);
}

#[test]
fn a_hundred_load_unload_cycles_hold_memory_flat() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let engine = common::engine();
    let bytes = model_bytes();
    let cycle = |i: u64| {
        let model = engine.load_model_bytes(MODEL, "hatnet-digits.safetensors", &bytes).unwrap();
        forward(&model, i);
    };
    for i in 0..10 {
        cycle(i);
    }
    let (rss_warm, device_warm) = (rss(), device_bytes(engine));
    for i in 10..100 {
        cycle(i);
    }
    assert_flat("resident memory over 100 load/unload cycles", rss_warm, rss());
    assert_flat("device memory over 100 load/unload cycles", device_warm, device_bytes(engine));
}

#[test]
fn a_lost_device_is_an_error_and_a_new_engine_works() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let engine = pollster::block_on(Engine::new()).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
    let model = engine.load_model_bytes(MODEL, "hatnet-digits.safetensors", &model_bytes()).unwrap();
    let before = pollster::block_on(model.run(&input(3))).unwrap();
    engine.ctx.device.destroy();
    match pollster::block_on(model.run(&input(3))) {
        Err(Error::DeviceLost { reason, .. }) => assert!(reason.contains("destroyed"), "{reason}"),
        other => panic!("a forward on a destroyed device: expected Error::DeviceLost, got {other:?}"),
    }
    // Loading on the lost engine fails the same way, once the graph meets the device.
    let again = engine.load_model_bytes(MODEL, "hatnet-digits.safetensors", &model_bytes()).unwrap();
    assert!(matches!(pollster::block_on(again.run(&input(3))), Err(Error::DeviceLost { .. })));
    drop((model, again, engine));

    let engine = pollster::block_on(Engine::new()).unwrap();
    let model = engine.load_model_bytes(MODEL, "hatnet-digits.safetensors", &model_bytes()).unwrap();
    assert_eq!(pollster::block_on(model.run(&input(3))).unwrap().data, before.data);
}

/// Peak resident memory of the largest child waited for so far (`getrusage(RUSAGE_CHILDREN)`).
fn children_peak_rss() -> u64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    usage.ru_maxrss as u64 * 1024
}

#[test]
fn classify_peaks_at_the_same_memory_over_1000_images_as_over_100() {
    let samples: Vec<Vec<u8>> =
        (0..10).map(|d| std::fs::read(format!("{}/assets/samples/{d}.png", env!("CARGO_MANIFEST_DIR"))).unwrap()).collect();
    let folder = |n: usize| {
        let dir = std::env::temp_dir().join(format!("wgvit-soak-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            std::fs::write(dir.join(format!("{i:04}.png")), &samples[i % 10]).unwrap();
        }
        dir
    };
    let classify = |dir: &std::path::Path| {
        let args = ["classify", dir.to_str().unwrap(), "--model", MODEL, "--top", "1"];
        let out = common::cli::wgvit_with_env(&args, &[("MESA_SHADER_CACHE_DISABLE", "true".as_ref())]);
        assert!(out.status.success(), "classify {}: {}", dir.display(), common::cli::text(&out.stderr));
        std::fs::remove_dir_all(dir).unwrap();
        common::cli::text(&out.stdout).lines().filter(|l| l.contains(".png")).count()
    };
    let (small, large) = (folder(100), folder(1000));
    // The children peak is a running maximum: the first reading is the 100-image run's.
    assert_eq!(classify(&small), 100);
    let peak_100 = children_peak_rss();
    assert_eq!(classify(&large), 1000);
    let peak_both = children_peak_rss();
    assert_flat("classify's peak resident memory, 100 → 1,000 images", peak_100, peak_both);
}

/// Objects made in one error scope (`GpuContext::scoped_each`: bind groups, shader modules and
/// pipelines, one round trip to the device for all) still fail with the one item at fault named.
#[test]
fn a_batch_of_device_objects_names_the_item_that_failed() {
    let ctx = &common::engine().ctx;
    let sources = ["@compute @workgroup_size(1) fn main() {}", "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }", "fn f() {}"];
    let make = |src: &&str| ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl((*src).into()) });
    let e = pollster::block_on(ctx.scoped_each(&sources, |src| format!("module '{}'", &src[..40.min(src.len())]), make)).unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, Error::Gpu { .. }), "{message}");
    assert!(message.contains("let x: u32 = 1.5"), "the error names the failing item: {message}");
    let good = pollster::block_on(ctx.scoped_each(&sources[..1], |_| "module".to_string(), make));
    assert_eq!(good.map(|m| m.len()).unwrap(), 1);
}
