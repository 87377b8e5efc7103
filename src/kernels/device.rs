//! What a graph is built for: the device's type, vendor, limits and features, and which kernel
//! set runs on it. Made from the adapter when a device is opened ([`DeviceProfile::for_adapter`]),
//! or chosen without one for building and testing graphs on the host ([`DeviceProfile::cpu_like`],
//! [`DeviceProfile::gpu_like`]). Every per-device choice an op makes (variant, tiling) is read off
//! the profile in one place, `ops::tuning`.
//!
//! Kernel sets: software devices (lavapipe, SwiftShader, WARP: `wgpu::DeviceType::Cpu`) run every
//! storage load as a per-lane loop and pay nothing for large register tiles, so they get the
//! **CPU-like** set; discrete, integrated and virtual GPUs the **GPU-like** set. Every kernel is
//! correct on every device; the set only picks the faster variant. `WGVIT_KERNELS=cpu|gpu`
//! forces the set (natively), so tests can run both on lavapipe.

/// Which family of kernel variants and tilings a graph uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelSet {
    /// Software devices: loads bound the kernels, register tiles are free.
    CpuLike,
    /// Hardware GPUs: occupancy matters, large register tiles spill.
    GpuLike,
}

impl KernelSet {
    pub fn name(self) -> &'static str {
        match self {
            KernelSet::CpuLike => "cpu",
            KernelSet::GpuLike => "gpu",
        }
    }

    /// `cpu` or `gpu`, as `WGVIT_KERNELS` takes them.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Some(KernelSet::CpuLike),
            "gpu" => Some(KernelSet::GpuLike),
            _ => None,
        }
    }

    /// The set for a device type: CPU-like for software devices, GPU-like otherwise.
    pub fn for_device_type(device_type: wgpu::DeviceType) -> Self {
        if device_type == wgpu::DeviceType::Cpu {
            KernelSet::CpuLike
        } else {
            KernelSet::GpuLike
        }
    }
}

/// The environment variable that forces the kernel set.
pub const KERNELS_ENV: &str = "WGVIT_KERNELS";

/// The device a graph is built for.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceProfile {
    pub name: String,
    pub device_type: wgpu::DeviceType,
    /// PCI vendor id (0 when unknown, e.g. in the browser).
    pub vendor: u32,
    pub backend: wgpu::Backend,
    /// The limits the device was created with (the adapter's own; kernels are still written for
    /// WebGPU's defaults, and ops check buffers against these).
    pub limits: wgpu::Limits,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamps: bool,
    pub kernels: KernelSet,
    /// A texel stored into a storage texture costs more than one stored into a storage buffer
    /// and copied into the texture (`context::store_probe`, measured when a lavapipe device
    /// opens; false elsewhere).
    /// Activations then move to textures by a copy after their producer
    /// (`ops::tuning::copied_textures`).
    pub texture_stores_costly: bool,
}

impl Default for DeviceProfile {
    /// The GPU-like set with WebGPU's default limits: what a graph built without a device assumes.
    fn default() -> Self {
        Self::gpu_like()
    }
}

impl DeviceProfile {
    fn without_device(name: &str, device_type: wgpu::DeviceType) -> Self {
        Self {
            name: name.to_string(),
            device_type,
            vendor: 0,
            backend: wgpu::Backend::Noop,
            limits: wgpu::Limits::default(),
            shader_f16: false,
            subgroups: false,
            timestamps: false,
            kernels: KernelSet::for_device_type(device_type),
            texture_stores_costly: false,
        }
    }

    /// A software device with WebGPU's default limits and no optional features.
    pub fn cpu_like() -> Self {
        Self::without_device("(CPU-like device)", wgpu::DeviceType::Cpu)
    }

    /// A hardware GPU with WebGPU's default limits and no optional features.
    pub fn gpu_like() -> Self {
        Self::without_device("(GPU-like device)", wgpu::DeviceType::DiscreteGpu)
    }

    /// The profile of an opened device: its adapter's identity, the device's limits and
    /// features, and the kernel set for its type unless `kernels_override` (from
    /// [`kernels_from_env`]) forces one.
    pub fn for_adapter(info: &wgpu::AdapterInfo, features: wgpu::Features, limits: wgpu::Limits, kernels_override: Option<KernelSet>) -> Self {
        Self {
            name: info.name.clone(),
            device_type: info.device_type,
            vendor: info.vendor,
            backend: info.backend,
            limits,
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            kernels: kernels_override.unwrap_or(KernelSet::for_device_type(info.device_type)),
            texture_stores_costly: false,
        }
    }

    /// The same device with another kernel set.
    pub fn with_kernels(mut self, kernels: KernelSet) -> Self {
        self.kernels = kernels;
        self
    }

    pub fn is_cpu_like(&self) -> bool {
        self.kernels == KernelSet::CpuLike
    }

    /// The largest buffer a single binding may hold on this device (bytes).
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }
}

/// The kernel set `WGVIT_KERNELS` forces, if set (natively; the browser has no environment).
pub fn kernels_from_env() -> crate::Result<Option<KernelSet>> {
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(v) = std::env::var_os(KERNELS_ENV) {
        let v = v.to_string_lossy();
        if v.trim().is_empty() {
            return Ok(None);
        }
        return KernelSet::parse(&v)
            .map(Some)
            .ok_or_else(|| crate::Error::Invalid(format!("{KERNELS_ENV}={v}: expected `cpu` or `gpu` (the kernel set to force)")));
    }
    Ok(None)
}
