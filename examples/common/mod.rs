//! What the kernel microbenchmarks among the examples share (`#[path]`-included, not an example).

/// Records `count` dispatches of `pipeline` over `workgroups` in one compute pass, submits them and
/// waits for the device.
pub fn dispatch_and_wait(ctx: &wgvit::GpuContext, pipeline: &wgpu::ComputePipeline, bind_group: &wgpu::BindGroup, workgroups: (u32, u32), count: u32) {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        for _ in 0..count {
            pass.dispatch_workgroups(workgroups.0, workgroups.1, 1);
        }
    }
    ctx.queue.submit([encoder.finish()]);
    ctx.device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
}
