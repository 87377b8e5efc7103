//! What a texel store costs on this device: the probe a lavapipe device runs when it opens
//! (`wgvit::context::store_probe`), printed with the host CPU, a few times over.
//!
//! Why: an activation that its consumers read faster from a texture (`tuning::activation_textures`)
//! has to be written as one. Where that costs more than a buffer store and a copy into the
//! texture, activations are stored to buffers and copied into textures instead
//! (`tuning::copied_textures`).
//!
//! ```sh
//! WGPU_BACKEND=vulkan cargo run --release --example store_paths
//! ```

use wgvit::context::store_probe;

fn main() {
    let ctx = wgvit::GpuContext::new_blocking().expect("a device");
    let info = &ctx.info;
    println!("device: {} ({}, {}); host CPU: {}", info.name, info.backend, info.driver_info, wgvit::time::host_cpu());
    println!("the profile's choice: texture stores {}", if info.profile.texture_stores_costly { "costly" } else { "cheap" });
    for _ in 0..5 {
        let t = store_probe::texel_store_seconds(&ctx.device, &ctx.queue);
        println!(
            "per texel: buffer {:.2} ns, storage texture {:.2} ns, buffer and copy {:.2} ns (best runs); texture / copied {:.2}x (costly above {}x)",
            t.buffer * 1e9,
            t.texture * 1e9,
            t.copied * 1e9,
            t.ratio,
            store_probe::COSTLY_TEXTURE_STORE_RATIO
        );
    }
}
