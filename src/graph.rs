//! The graph a model is built into: every tensor's shape is known when it is created, every node
//! is one compute dispatch whose pipeline key, uniform words and workgroup count are fixed at
//! build time. Building touches no GPU, so graphs and their memory plans can be tested anywhere.
//!
//! Tensors are views of *storages*. A reshape is a new tensor on the same storage (no copy); the
//! memory planner works on storages, so an alias keeps its root alive for as long as it is used.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kernels::{DeviceProfile, PipelineKey, Uniform};
use crate::explain::Probe;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub usize);

/// The element count of `shape`, saturating at `usize::MAX` (which no size check accepts).
/// The output name under which [`Graph::promote_probes`] reads tensor `t`.
pub fn probe_output(t: TensorId) -> String {
    format!("probe.{}", t.0)
}

/// Texels per row of a flat texture (shaders/lib/flat_texture.wgsl's `FLAT_WIDTH_LOG2`).
pub const FLAT_TEXTURE_WIDTH: usize = 256;

/// The flat texture of `numel` values: [`FLAT_TEXTURE_WIDTH`] texels wide, as many rows as it
/// takes, plus one (never read) when that is a power of two. llvmpipe specialises a shader on
/// whether each bound texture's sides are powers of two, so textures of mixed heights would
/// compile one pipeline several times over (hatnet-digits' first forward took 0.7 s longer).
pub fn texture_extent(numel: usize) -> [u32; 2] {
    let rows = numel.div_ceil(4 * FLAT_TEXTURE_WIDTH).max(1);
    let rows = if rows.is_power_of_two() { rows + if rows == 1 { 2 } else { 1 } } else { rows };
    [FLAT_TEXTURE_WIDTH as u32, rows.min(u32::MAX as usize) as u32]
}

pub fn numel_of(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
}

/// What backs a storage on the device.
#[derive(Clone, Debug)]
pub enum StorageKind {
    /// Written by the host before the forward (`queue.write_buffer` into the arena).
    Input { name: String },
    /// Read-only parameters: uploaded once per model and shared by every graph of that model,
    /// found again by `key` (the checkpoint name, or a derived name such as a folded conv).
    /// `binding` says how kernels read it: a storage buffer, a flat texture
    /// ([`Graph::constant_texture`]) or a uniform buffer ([`Graph::constant_uniform`]).
    Constant { key: String, data: Arc<Vec<f32>>, binding: ConstantBinding },
    /// Produced by a node; lives in the planned arena: a slot buffer, or with `texture` a slot
    /// texture (flat, like a constant texture) that its producer writes as a storage texture
    /// and its consumers read with texel fetches ([`Graph::with_activation_textures`]). With
    /// `uniform_reads` (at most [`UNIFORM_WINDOW_BYTES`]) its consumers bind its slot buffer as a
    /// uniform buffer of that size ([`Graph::with_activation_uniforms`]).
    Activation { texture: bool, uniform_reads: bool },
}

/// How kernels read a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstantBinding {
    /// A read-only storage buffer.
    Buffer,
    /// A flat rgba32float texture ([`texture_extent`]).
    Texture,
    /// A uniform buffer of [`UNIFORM_WINDOW_BYTES`], the constant at its start, zeros after it.
    Uniform,
}

impl ConstantBinding {
    /// What a constant's key carries after its source's when it is bound so (the device-side
    /// cache keeps each binding of a constant apart).
    fn key_suffix(self) -> &'static str {
        match self {
            ConstantBinding::Buffer => "",
            ConstantBinding::Texture => "#texture",
            ConstantBinding::Uniform => "#uniform",
        }
    }
}

/// The size of every constant bound as a uniform buffer ([`Graph::constant_uniform`]): WebGPU's
/// default `maxUniformBufferBindingSize`. Kernels declare such a binding as
/// `array<vec4<f32>, 4096>`, and a binding must be at least as large as what the shader declares.
pub const UNIFORM_WINDOW_BYTES: usize = 65536;

#[derive(Clone, Debug)]
pub struct Storage {
    pub numel: usize,
    pub kind: StorageKind,
}

#[derive(Clone, Debug)]
pub struct TensorDesc {
    pub shape: Vec<usize>,
    pub storage: usize,
}

/// One dispatch. Bindings follow one convention in every shader: `@binding(0)` is the uniform
/// `params`, then the tensors in `reads` (read-only storage), then those in `writes`.
#[derive(Clone, Debug)]
pub struct Node {
    pub label: String,
    pub key: PipelineKey,
    /// The kernel's uniform (its `params::*` struct, as words).
    pub params: Uniform,
    pub reads: Vec<TensorId>,
    pub writes: Vec<TensorId>,
    pub workgroups: [u32; 3],
    /// Floating-point operations (a multiply-add counts as 2), for benchmarks.
    pub flops: u64,
}

/// A node's bind-group layout: binding 0 the uniform, then `reads` read-only bindings (each a
/// storage buffer, a texture where bit i of `textures` is set — sampled, or a read-only storage
/// texture where `images` —, or a uniform buffer where bit i of `uniforms` is set), then `writes` (each a read_write storage buffer, or a write-only
/// rgba32float storage texture where bit `reads + j` of `textures` is set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bindings {
    pub reads: usize,
    pub writes: usize,
    pub textures: u32,
    pub uniforms: u32,
    /// Read textures are read-only rgba32float storage textures, not sampled ones (the node's
    /// `FLAT_IMAGE`, [`Graph::with_flat_texture_images`]).
    pub images: bool,
}

impl Bindings {
    /// Whether binding `i` (reads first, then writes) is a texture.
    pub fn is_texture(&self, i: usize) -> bool {
        self.textures >> i & 1 == 1
    }

    /// Whether binding `i` (a read) is a uniform buffer.
    pub fn is_uniform(&self, i: usize) -> bool {
        self.uniforms >> i & 1 == 1
    }

    /// Storage buffers bound (textures and uniform buffers do not count against the
    /// storage-buffer limit).
    pub fn storage_buffers(&self) -> usize {
        self.reads + self.writes - self.textures.count_ones() as usize - self.uniforms.count_ones() as usize
    }

    /// Uniform buffers bound besides binding 0's parameters.
    pub fn uniform_buffers(&self) -> usize {
        self.uniforms.count_ones() as usize
    }
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub tensors: Vec<TensorDesc>,
    pub storages: Vec<Storage>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<(String, TensorId)>,
    /// Named intermediate results a model offers for debugging (e.g. `stage0`); they cost nothing
    /// unless promoted to outputs with [`Graph::promote_taps`].
    pub taps: Vec<(String, TensorId)>,
    /// The attention maps the graph can explain (see [`crate::explain`]); they cost nothing
    /// unless their tensors are promoted to outputs with [`Graph::promote_probes`].
    pub probes: Vec<Probe>,
    /// The device the graph is built for; ops pick their kernel variants and tilings by it
    /// (`ops::tuning`).
    pub profile: DeviceProfile,
    /// Bindings whose kernel can take a texture instead of a buffer there, and the `override`
    /// that switches it ([`Graph::offer_texture`], used by [`Graph::with_activation_textures`]).
    pub texture_offers: Vec<BindingOffer>,
    /// Read bindings whose kernel can take a uniform buffer there ([`Graph::offer_uniform`], used
    /// by [`Graph::with_activation_uniforms`]).
    pub uniform_offers: Vec<BindingOffer>,
    /// Activations copied from their producer's buffer into a texture their readers fetch from
    /// ([`Graph::with_activation_textures_copied`]).
    pub texture_copies: Vec<TextureCopy>,
    label_prefix: String,
}

/// The define under which a kernel reads its flat textures as read-only storage textures
/// ([`Graph::with_flat_texture_images`]).
pub const FLAT_IMAGE: &str = "FLAT_IMAGE";

/// Which reads of an activation must be offered bindings for it to move (`Graph::offered`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OfferedReads {
    /// Every read: the activation itself moves, and a reader without an offer could not read it.
    All,
    /// At least one: the offered readers read a copy, the others the activation where it was.
    Some,
}

/// Right after node `after`, the executor copies storage `from` (an activation in a slot buffer,
/// which the node wrote) into storage `to` (an activation in a slot texture), which later nodes
/// read in its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextureCopy {
    pub after: usize,
    pub from: usize,
    pub to: usize,
}

/// Binding `binding` (reads first, then writes) of node `node` can be a flat rgba32float texture
/// (a sampled texture for a read, a write-only storage texture for a write; a texture offer), or
/// a uniform buffer (a read; a uniform offer), when the node's key sets `define` to 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingOffer {
    pub node: usize,
    pub binding: usize,
    pub define: &'static str,
    /// For a texture read: how many times the kernel fetches each texel of it (over the whole
    /// dispatch; `u32::MAX` where it is not estimated and the texture always pays). Weighed by
    /// [`Graph::with_activation_textures`] against the cost of storing the texture.
    pub fetches_per_texel: u32,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty graph for the device `profile` describes.
    pub fn for_profile(profile: DeviceProfile) -> Self {
        Self { profile, ..Self::default() }
    }

    fn new_tensor(&mut self, shape: &[usize], kind: StorageKind) -> TensorId {
        // Saturating: an absurd shape must fail the ops' size checks, not overflow here.
        let numel = numel_of(shape);
        self.storages.push(Storage { numel, kind });
        self.tensors.push(TensorDesc { shape: shape.to_vec(), storage: self.storages.len() - 1 });
        TensorId(self.tensors.len() - 1)
    }

    /// A graph input, uploaded by the caller on every forward.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> TensorId {
        let t = self.new_tensor(shape, StorageKind::Input { name: name.to_string() });
        self.inputs.push(t);
        t
    }

    /// A parameter tensor. `data.len()` must equal the product of `shape`.
    pub fn constant(&mut self, key: &str, shape: &[usize], data: Arc<Vec<f32>>) -> Result<TensorId> {
        let numel = numel_of(shape);
        if numel != data.len() {
            return Err(Error::Graph(format!(
                "constant '{key}' has {} values but shape {shape:?} needs {numel}",
                data.len()
            )));
        }
        Ok(self.new_tensor(shape, StorageKind::Constant { key: key.to_string(), data, binding: ConstantBinding::Buffer }))
    }

    /// The constant `t` (numel % 4 == 0) as a flat texture ([`texture_extent`]): kernels read 4
    /// consecutive values with one `textureLoad` (shaders/lib/flat_texture.wgsl). On software
    /// devices a texel fetch is a vectorised gather, much cheaper than a storage-buffer load (a
    /// per-lane loop in lavapipe and SwiftShader). `None` when `t` is not a constant or does not
    /// fit the device's texture limit. One texture per constant and graph.
    pub fn constant_texture(&mut self, t: TensorId) -> Option<TensorId> {
        self.constant_bound_as(t, ConstantBinding::Texture)
    }

    /// The constant `t` (numel % 4 == 0, at most [`UNIFORM_WINDOW_BYTES`] and the device's
    /// `maxUniformBufferBindingSize`) as a uniform buffer: kernels index it as an
    /// `array<vec4<f32>, 4096>`. On lavapipe a uniform-buffer load is one gather across the SIMD
    /// lanes, where a texel fetch takes the sampler's path and a storage load a loop over the
    /// lanes (`examples/load_paths.rs`). `None` when `t` is not a constant or is too large.
    pub fn constant_uniform(&mut self, t: TensorId) -> Option<TensorId> {
        self.constant_bound_as(t, ConstantBinding::Uniform)
    }

    /// [`Graph::constant_uniform`] for a constant of any length, for kernels that read it element
    /// by element (`[i >> 2u][i & 3u]`): the window's zeros complete its last vec4. ACC-ViT's
    /// bias tables hold (2·7 − 1)² = 169 entries per branch and head.
    pub fn constant_uniform_elements(&mut self, t: TensorId) -> Option<TensorId> {
        let numel = self.numel(t);
        if numel.is_multiple_of(4) {
            return self.constant_uniform(t);
        }
        let (key, data) = self.constant_data(t)?;
        let (key, mut padded) = (key.to_string(), data.to_vec());
        padded.resize(numel.next_multiple_of(4), 0.0);
        let whole = self.constant(&format!("{key}#vec4"), &[padded.len()], Arc::new(padded)).ok()?;
        self.constant_uniform(whole)
    }

    /// The constant `t`, however it is bound, bound as `binding` when it fits: one tensor per
    /// source key, binding and shape in a graph (`w`, `w#texture`, `w#uniform`).
    fn constant_bound_as(&mut self, t: TensorId, binding: ConstantBinding) -> Option<TensorId> {
        let shape = self.shape(t).to_vec();
        let StorageKind::Constant { key, data, binding: bound } = &self.storages[self.tensors[t.0].storage].kind else {
            return None;
        };
        let fits = match binding {
            ConstantBinding::Buffer => true,
            ConstantBinding::Texture => self.fits_texture(data.len()),
            ConstantBinding::Uniform => self.fits_uniform(data.len()),
        };
        if !fits {
            return None;
        }
        let source = key.strip_suffix(bound.key_suffix()).unwrap_or(key);
        let (key, data) = (format!("{source}{}", binding.key_suffix()), data.clone());
        let existing = self.tensors.iter().position(|d| {
            matches!(&self.storages[d.storage].kind, StorageKind::Constant { key: k, binding: b, .. } if *k == key && *b == binding) && d.shape == shape
        });
        Some(match existing {
            Some(i) => TensorId(i),
            None => self.new_tensor(&shape, StorageKind::Constant { key, data, binding }),
        })
    }

    fn fits_texture(&self, numel: usize) -> bool {
        let [width, height] = texture_extent(numel);
        let max = self.profile.limits.max_texture_dimension_2d;
        numel.is_multiple_of(4) && numel > 0 && width <= max && height <= max
    }

    /// Whether `t` is bound as a texture (a [`Graph::constant_texture`], or an activation
    /// [`Graph::with_activation_textures`] moved to a texture).
    pub fn is_texture(&self, t: TensorId) -> bool {
        matches!(self.storages[self.tensors[t.0].storage].kind, StorageKind::Constant { binding: ConstantBinding::Texture, .. } | StorageKind::Activation { texture: true, .. })
    }

    /// Whether a kernel that reads `t` binds it as a uniform buffer (a [`Graph::constant_uniform`],
    /// or an activation [`Graph::with_activation_uniforms`] moved there; its producer still
    /// writes a storage buffer).
    pub fn is_uniform(&self, t: TensorId) -> bool {
        matches!(
            self.storages[self.tensors[t.0].storage].kind,
            StorageKind::Constant { binding: ConstantBinding::Uniform, .. } | StorageKind::Activation { uniform_reads: true, .. }
        )
    }

    fn fits_uniform(&self, numel: usize) -> bool {
        let limit = UNIFORM_WINDOW_BYTES.min(self.profile.limits.max_uniform_buffer_binding_size as usize);
        numel > 0 && numel.is_multiple_of(4) && numel * 4 <= limit
    }

    /// Width and height in texels of the texture `t` is bound as, if it is one
    /// ([`texture_extent`] of its element count).
    pub fn texture_size(&self, t: TensorId) -> Option<[u32; 2]> {
        self.is_texture(t).then(|| texture_extent(self.storages[self.tensors[t.0].storage].numel))
    }

    /// How `node` binds its tensors: the layout of its bind group.
    pub fn bindings(&self, node: &Node) -> Bindings {
        let mask = |ts: &mut dyn Iterator<Item = &TensorId>, bound: &dyn Fn(TensorId) -> bool| ts.enumerate().filter(|(_, &t)| bound(t)).fold(0u32, |m, (i, _)| m | 1 << i);
        let textures = mask(&mut node.reads.iter().chain(&node.writes), &|t| self.is_texture(t));
        // Only reads: the producer of an activation read as a uniform writes its storage buffer.
        let uniforms = mask(&mut node.reads.iter(), &|t| self.is_uniform(t));
        let images = node.key.constants().contains(&(FLAT_IMAGE, 1));
        Bindings { reads: node.reads.len(), writes: node.writes.len(), textures, uniforms, images }
    }

    /// The key and values of `t` when it is a constant held in a buffer (or a view of one), for
    /// ops that derive another constant from it.
    pub fn constant_data(&self, t: TensorId) -> Option<(&str, &Arc<Vec<f32>>)> {
        match &self.storages[self.tensors[t.0].storage].kind {
            StorageKind::Constant { key, data, binding: ConstantBinding::Buffer } => Some((key.as_str(), data)),
            _ => None,
        }
    }

    /// This graph with every kernel that reads a flat texture reading it as a read-only storage
    /// texture instead of a sampled one ([`FLAT_IMAGE`] in flat_texture.wgsl, storage-texture
    /// bindings), where its textures, read and written, number at most `max_storage_textures`
    /// (the device's per-stage limit). The executor asks for it where
    /// `ops::tuning::flat_texture_images` says so, after every texture is placed.
    pub fn with_flat_texture_images(&self, max_storage_textures: u32) -> Graph {
        let mut g = self.clone();
        for node in &mut g.nodes {
            let bindings = self.bindings(node);
            let read_mask = 1u32.checked_shl(bindings.reads as u32).map_or(u32::MAX, |bit| bit - 1);
            let reads_textures = bindings.textures & read_mask != 0;
            if reads_textures && bindings.textures.count_ones() <= max_storage_textures {
                node.key = node.key.clone().with(FLAT_IMAGE, 1);
            }
        }
        g
    }

    /// A fresh activation, to be written by the node that creates it.
    pub fn activation(&mut self, shape: &[usize]) -> TensorId {
        self.new_tensor(shape, StorageKind::Activation { texture: false, uniform_reads: false })
    }

    /// Reshape as a view: same storage, same element order, new shape.
    pub fn reshape(&mut self, t: TensorId, shape: &[usize]) -> Result<TensorId> {
        let src = &self.tensors[t.0];
        let (old, new) = (numel_of(&src.shape), numel_of(shape));
        if old != new {
            return Err(Error::Graph(format!("cannot reshape {:?} to {shape:?}", src.shape)));
        }
        let storage = src.storage;
        self.tensors.push(TensorDesc { shape: shape.to_vec(), storage });
        Ok(TensorId(self.tensors.len() - 1))
    }

    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.tensors[t.0].shape
    }

    pub fn numel(&self, t: TensorId) -> usize {
        numel_of(self.shape(t))
    }

    /// Marks `t` as a result the caller reads back. It stays live until the end of the forward.
    pub fn output(&mut self, name: &str, t: TensorId) {
        self.outputs.push((name.to_string(), t));
    }

    /// Offers `t` as a named intermediate (see [`Graph::taps`]).
    pub fn tap(&mut self, name: &str, t: TensorId) {
        self.taps.push((name.to_string(), t));
    }

    /// Makes every tap an output, read back after the forward (per-stage checks).
    pub fn promote_taps(&mut self) {
        let taps = std::mem::take(&mut self.taps);
        self.outputs.extend(taps);
    }

    /// Offers an attention map of this forward (see [`crate::explain`]).
    pub fn probe(&mut self, probe: Probe) {
        self.probes.push(probe);
    }

    pub fn probe_all(&mut self, probes: impl IntoIterator<Item = Probe>) {
        self.probes.extend(probes);
    }

    /// Makes every tensor a probe reads an output (`probe.<tensor index>`), read back after the
    /// forward: the explain graph.
    pub fn promote_probes(&mut self) {
        let mut seen = std::collections::BTreeSet::new();
        let inputs: Vec<TensorId> = self.probes.iter().flat_map(|p| p.inputs.iter().copied()).filter(|t| seen.insert(t.0)).collect();
        for t in inputs {
            self.outputs.push((probe_output(t), t));
        }
    }

    /// Nodes pushed inside `f` are labelled `prefix.<op>` (e.g. `blocks.0.1.attn.qkv.matmul`),
    /// so a profile or an error points at the layer. `prefix` is the whole label prefix (models
    /// pass their checkpoint scope); an empty one leaves the op's own name.
    pub fn labelled<T>(&mut self, prefix: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        let outer = std::mem::replace(&mut self.label_prefix, prefix.to_string());
        let out = f(self);
        self.label_prefix = outer;
        out
    }

    /// Appends a node. Ops call this after checking shapes; the node's uniform must be the
    /// struct its kernel declares (a mismatch is a bug in the op, caught in debug builds and by
    /// `tests/shaders.rs` for every op and model).
    pub fn push(&mut self, mut node: Node) {
        debug_assert_eq!(
            node.params.type_name,
            node.key.kernel.params_name(),
            "node '{}' hands kernel {} the wrong uniform",
            node.label,
            node.key.kernel.name()
        );
        if !self.label_prefix.is_empty() {
            node.label = format!("{}.{}", self.label_prefix, node.label);
        }
        self.nodes.push(node);
    }

    /// Binding `binding` of the node pushed last can be a texture under `define` (see
    /// [`BindingOffer`]).
    pub fn offer_texture(&mut self, binding: usize, define: &'static str) {
        self.offer_texture_fetched(binding, define, u32::MAX);
    }

    /// [`Graph::offer_texture`] for a read binding whose kernel fetches each texel
    /// `fetches_per_texel` times (a GEMM operand: once per tile of the other dimension).
    pub fn offer_texture_fetched(&mut self, binding: usize, define: &'static str, fetches_per_texel: u32) {
        let node = self.nodes.len() - 1;
        self.texture_offers.push(BindingOffer { node, binding, define, fetches_per_texel });
    }

    /// Read binding `binding` of the node pushed last can be a uniform buffer of
    /// [`UNIFORM_WINDOW_BYTES`] under `define` (see [`BindingOffer`]).
    pub fn offer_uniform(&mut self, binding: usize, define: &'static str) {
        let node = self.nodes.len() - 1;
        self.uniform_offers.push(BindingOffer { node, binding, define, fetches_per_texel: u32::MAX });
    }

    /// A 4-element constant that kernels bind where an optional operand is absent (never read):
    /// binding an operand there instead would keep that operand in a buffer.
    pub fn placeholder(&mut self) -> TensorId {
        const KEY: &str = "wgvit.placeholder";
        let found = self.tensors.iter().position(|d| matches!(&self.storages[d.storage].kind, StorageKind::Constant { key, .. } if key == KEY));
        found.map(TensorId).unwrap_or_else(|| self.new_tensor(&[4], StorageKind::Constant { key: KEY.into(), data: Arc::new(vec![0.0; 4]), binding: ConstantBinding::Buffer }))
    }

    /// This graph with every activation that only offered bindings touch moved to a texture
    /// (the offers' defines set on those nodes). Graph outputs stay in buffers (they are copied
    /// back), and so does an activation any binding without an offer touches. The executor asks
    /// for it where the device wants activations in textures (`ops::tuning::activation_textures`:
    /// lavapipe, where a texel fetch is a vectorised gather and a storage-buffer load a loop over
    /// the SIMD lanes).
    ///
    /// An activation moves only if its readers fetch each texel at least `min_fetches` times in
    /// all (the offers' `fetches_per_texel`; `ops::tuning::texture_min_fetches`). Where texture
    /// stores are costly the executor asks for [`Graph::with_activation_textures_copied`] first,
    /// then this for the activations left.
    pub fn with_activation_textures(&self, min_fetches: u64) -> Graph {
        self.with_activations_bound(&self.texture_offers, |g, storage| g.fits_texture(storage.numel), StorageKind::Activation { texture: true, uniform_reads: false }, true, min_fetches)
    }

    /// [`Graph::with_activation_textures`] for a device where a texture store costs more than a
    /// buffer store and a copy (`DeviceProfile::texture_stores_costly`): an activation of at
    /// least `min_texels` texels whose offered texture reads fetch it at least `min_fetches`
    /// times a texel in all stays in its producer's buffer, and the executor copies it into a
    /// texture right after the producer ([`TextureCopy`]); the offered readers read the texture
    /// (their offers' defines set), and a reader without an offer (a token mean, a pooling) the
    /// buffer, which the copy leaves as it is. The producer needs no texture offer. Graph outputs
    /// and activations written by more than one node stay as they are.
    ///
    /// Session 24 let those other readers be: ACC-ViT's MBConv `project` reads the depthwise
    /// output that its squeeze-excitation's token mean also reads, and `expand` a block input that
    /// the shortcut's pooling reads; HAT-Net's `q` the norm output that its pooling reads.
    /// accvit-tiny took 0.93 and 0.97 of its time (18 more copies a forward, 24 → 23 pipelines),
    /// the other tiny models 0.98–1.00 (`tools/bench_pair.py`, Intel Xeon, 4 × 8 runs).
    pub fn with_activation_textures_copied(&self, min_fetches: u64, min_texels: usize) -> Graph {
        let copied = self.offered(&self.texture_offers, |g, storage| g.fits_texture(storage.numel) && storage.numel / 4 >= min_texels, false, min_fetches, OfferedReads::Some);
        let mut g = self.clone();
        for (s, used) in copied {
            let writes_s = |node: &Node| node.writes.iter().any(|t| self.tensors[t.0].storage == s);
            let producers: Vec<usize> = self.nodes.iter().enumerate().filter(|(_, n)| writes_s(n)).map(|(i, _)| i).collect();
            let &[producer] = producers.as_slice() else { continue };
            g.storages.push(Storage { numel: self.storages[s].numel, kind: StorageKind::Activation { texture: true, uniform_reads: false } });
            let to = g.storages.len() - 1;
            for offer in used {
                let read = &mut g.nodes[offer.node].reads[offer.binding];
                let shape = g.tensors[read.0].shape.clone();
                g.tensors.push(TensorDesc { shape, storage: to });
                *read = TensorId(g.tensors.len() - 1);
                g.nodes[offer.node].key = g.nodes[offer.node].key.clone().with(offer.define, 1);
            }
            g.texture_copies.push(TextureCopy { after: producer, from: s, to });
        }
        g
    }

    /// This graph with no constant read from a uniform buffer where that would split a pipeline:
    /// when nodes of one kernel and overrides read a constant operand, some from uniform buffers
    /// and some (too large for one) from textures, they all read it from textures and share one
    /// pipeline. ACC-ViT's and LaViT's last stages have weights over 64 KiB; with their GEMM kinds
    /// split in two, lavapipe spent 0.5 s more JIT compiling accvit-digits' first forward
    /// (cold start 2.0 → 2.4 s with empty caches) for 1–3 % of its warm time. The executor asks for
    /// it on lavapipe (`ops::tuning::constant_uniforms`).
    pub fn without_split_uniform_constants(&self) -> Graph {
        let mut g = self.clone();
        // (the uniform define, the texture define, the read binding): a GEMM's A and B.
        for (uniform, texture, read) in [("A_UNIFORM", "A_TEXTURE", 0), ("B_UNIFORM", "B_TEXTURE", 1)] {
            let kind = |key: &crate::kernels::PipelineKey| key.clone().with(uniform, 0).with(texture, 0);
            let textured: std::collections::HashSet<_> = g.nodes.iter().filter(|n| n.key.constants().contains(&(texture, 1))).map(|n| kind(&n.key)).collect();
            for i in 0..g.nodes.len() {
                let node = &g.nodes[i];
                if !node.key.constants().contains(&(uniform, 1)) || !textured.contains(&kind(&node.key)) {
                    continue;
                }
                let Some(as_texture) = g.constant_texture(node.reads[read]) else { continue };
                let node = &mut g.nodes[i];
                node.reads[read] = as_texture;
                node.key = node.key.clone().with(uniform, 0).with(texture, 1);
            }
        }
        g
    }

    /// This graph with every activation of at most [`UNIFORM_WINDOW_BYTES`] whose every read is
    /// an offered uniform binding read as a uniform buffer (the offers' defines set on those
    /// nodes); its producer writes its slot buffer as before. Graph outputs keep their buffers.
    /// The executor asks for it before the textures where the device wants it
    /// (`ops::tuning::activation_uniforms`: lavapipe, where a uniform-buffer load is one gather
    /// and a texel fetch takes the sampler's path).
    pub fn with_activation_uniforms(&self) -> Graph {
        self.with_activations_bound(&self.uniform_offers, |g, storage| g.fits_uniform(storage.numel), StorageKind::Activation { texture: false, uniform_reads: true }, false, 0)
    }

    /// Moves to `kind` every plain buffer activation that fits (`fits`), is no graph output, and
    /// whose every use (with `writes_too`, else every read) is in `offers`; sets the offers'
    /// defines on those nodes. A write under `writes_too == false` keeps its storage binding.
    /// An activation whose reads' offers fetch fewer than `min_fetches` times per texel in all
    /// stays.
    fn with_activations_bound(&self, offers: &[BindingOffer], fits: impl Fn(&Graph, &Storage) -> bool, kind: StorageKind, writes_too: bool, min_fetches: u64) -> Graph {
        let promoted = self.offered(offers, fits, writes_too, min_fetches, OfferedReads::All);
        let mut g = self.clone();
        for (s, used) in promoted {
            g.storages[s].kind = kind.clone();
            for offer in used {
                g.nodes[offer.node].key = g.nodes[offer.node].key.clone().with(offer.define, 1);
            }
        }
        g
    }

    /// The plain buffer activations, no graph output, that `fits` and that some node reads, whose
    /// reads (every one, or with [`OfferedReads::Some`] at least one; with `writes_too` also every
    /// write) are bindings of `offers` and whose offered readers fetch each texel at least
    /// `min_fetches` times in all; each with the offers of its uses.
    fn offered<'a>(&self, offers: &'a [BindingOffer], fits: impl Fn(&Graph, &Storage) -> bool, writes_too: bool, min_fetches: u64, reads_offered: OfferedReads) -> Vec<(usize, Vec<&'a BindingOffer>)> {
        let mut uses: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.storages.len()];
        let mut reads: Vec<usize> = vec![0; self.storages.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for (b, t) in node.reads.iter().enumerate() {
                uses[self.tensors[t.0].storage].push((i, b));
                reads[self.tensors[t.0].storage] += 1;
            }
            if writes_too {
                for (b, t) in node.writes.iter().enumerate() {
                    uses[self.tensors[t.0].storage].push((i, node.reads.len() + b));
                }
            }
        }
        let outputs: std::collections::HashSet<usize> = self.outputs.iter().map(|(_, t)| self.tensors[t.0].storage).collect();
        let offers: std::collections::HashMap<(usize, usize), &BindingOffer> = offers.iter().map(|o| ((o.node, o.binding), o)).collect();
        let mut found = Vec::new();
        for (s, storage) in self.storages.iter().enumerate() {
            let plain = matches!(storage.kind, StorageKind::Activation { texture: false, uniform_reads: false });
            if !plain || outputs.contains(&s) || uses[s].is_empty() || (!writes_too && reads[s] == 0) || !fits(self, storage) {
                continue;
            }
            let used: Vec<&BindingOffer> = match reads_offered {
                OfferedReads::All => {
                    let Some(used) = uses[s].iter().map(|u| offers.get(u).copied()).collect() else { continue };
                    used
                }
                OfferedReads::Some => uses[s].iter().filter_map(|u| offers.get(u).copied()).collect(),
            };
            if used.is_empty() {
                continue;
            }
            // Bindings past a node's reads are its writes, which fetch nothing.
            let fetches: u64 = used.iter().filter(|o| o.binding < self.nodes[o.node].reads.len()).map(|o| o.fetches_per_texel as u64).sum();
            if fetches >= min_fetches {
                found.push((s, used));
            }
        }
        found
    }

    pub fn total_flops(&self) -> u64 {
        self.nodes.iter().map(|n| n.flops).sum()
    }

    /// Liveness of every activation/input storage as `[first, last]` node positions (inclusive).
    /// Inputs are live from position 0 (uploaded before the pass); outputs until the last node.
    pub fn liveness(&self) -> Result<Vec<Option<(usize, usize)>>> {
        let mut live: Vec<Option<(usize, usize)>> = vec![None; self.storages.len()];
        let end = self.nodes.len().saturating_sub(1);
        let mut touch = |s: usize, i: usize| {
            live[s] = Some(match live[s] {
                None => (i, i),
                Some((a, b)) => (a.min(i), b.max(i)),
            });
        };
        for &t in &self.inputs {
            touch(self.tensors[t.0].storage, 0);
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for t in node.reads.iter().chain(&node.writes) {
                touch(self.tensors[t.0].storage, i);
            }
        }
        for copy in &self.texture_copies {
            touch(copy.from, copy.after);
            touch(copy.to, copy.after);
        }
        for (_, t) in &self.outputs {
            touch(self.tensors[t.0].storage, end);
        }
        // An activation read before it is written would be garbage: refuse the graph.
        let mut written = vec![false; self.storages.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for t in &node.reads {
                let s = self.tensors[t.0].storage;
                if matches!(self.storages[s].kind, StorageKind::Activation { .. }) && !written[s] {
                    return Err(Error::Graph(format!("node '{}' reads a tensor no earlier node wrote", node.label)));
                }
            }
            for t in &node.writes {
                let s = self.tensors[t.0].storage;
                if !matches!(self.storages[s].kind, StorageKind::Activation { .. }) {
                    return Err(Error::Graph(format!("node '{}' writes to an input or constant", node.label)));
                }
                written[s] = true;
            }
            for copy in self.texture_copies.iter().filter(|c| c.after == i) {
                if !written[copy.from] {
                    return Err(Error::Graph(format!("a texture copy after node '{}' copies a tensor no node wrote", node.label)));
                }
                written[copy.to] = true;
            }
        }
        for (name, t) in &self.outputs {
            let s = self.tensors[t.0].storage;
            if matches!(self.storages[s].kind, StorageKind::Activation { .. }) && !written[s] {
                return Err(Error::Graph(format!("output '{name}' is never written")));
            }
        }
        Ok(live)
    }
}
