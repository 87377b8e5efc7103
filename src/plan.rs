//! Static memory plan: activations share buffers according to their lifetimes.
//!
//! Each storage is live over an interval of node positions `[first, last]`. Storages are assigned
//! to *slots*, one `wgpu::Buffer` each; a slot holds several storages whose intervals are pairwise
//! disjoint, and is as large as the largest of them. Assignment is greedy by size (largest first,
//! as TFLite's "greedy by size" shared-object planner): a storage goes to the smallest slot that
//! is free over its whole interval — every existing slot is at least as large, since larger
//! storages were placed first — or opens a new slot of its own size.
//!
//! Why slots and not offsets inside one arena: WebGPU tracks usage per *buffer* inside a dispatch,
//! so a node may not bind one buffer read-only (its input) and read-write (its output) at once,
//! even at disjoint ranges. A node's inputs and outputs are live at the same position, so they
//! always land in different slots; whole-buffer bindings also need no offset alignment.

use crate::graph::{Graph, StorageKind};

/// One storage to place: its size and its live interval (node positions, inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub bytes: u64,
    pub first: usize,
    pub last: usize,
}

impl Interval {
    pub fn overlaps_in_time(&self, other: &Interval) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Slot of each interval, in input order.
    pub slot_of: Vec<usize>,
    /// Size of each slot (bytes, 16-byte aligned).
    pub slot_bytes: Vec<u64>,
    /// Total bytes of all slots: what the activations take on the device.
    pub planned_bytes: u64,
    /// What the same storages would take with one buffer each, for reporting.
    pub unshared_bytes: u64,
}

pub fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn padded(bytes: u64) -> u64 {
    align_up(bytes.max(16), 16)
}

pub fn plan_memory(intervals: &[Interval]) -> MemoryPlan {
    let mut order: Vec<usize> = (0..intervals.len()).collect();
    // Largest first; ties by first use so the plan is deterministic.
    order.sort_by(|&a, &b| intervals[b].bytes.cmp(&intervals[a].bytes).then(intervals[a].first.cmp(&intervals[b].first)));
    let mut slot_of = vec![usize::MAX; intervals.len()];
    let mut slot_bytes: Vec<u64> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for &i in &order {
        let me = intervals[i];
        let size = padded(me.bytes);
        let free = (0..slot_bytes.len()).filter(|&s| members[s].iter().all(|&j| !intervals[j].overlaps_in_time(&me)));
        let slot = free.min_by_key(|&s| slot_bytes[s]).unwrap_or_else(|| {
            slot_bytes.push(size);
            members.push(Vec::new());
            slot_bytes.len() - 1
        });
        debug_assert!(slot_bytes[slot] >= size, "slots are filled largest first");
        members[slot].push(i);
        slot_of[i] = slot;
    }
    let planned_bytes = slot_bytes.iter().sum();
    let unshared_bytes = intervals.iter().map(|iv| padded(iv.bytes)).sum();
    MemoryPlan { slot_of, slot_bytes, planned_bytes, unshared_bytes }
}

/// Plans the storages of `graph` that live in slots — inputs and activations that a node or an
/// output touches; constants have buffers of their own — from `live` ([`Graph::liveness`]):
/// with `textures` false those in buffers, with `textures` true the activations in textures
/// (a slot is then a flat texture of the slot's size). Returns the plan (intervals in storage
/// order) and the slot of each storage (`None` if it has none).
pub fn plan_graph(graph: &Graph, live: &[Option<(usize, usize)>], textures: bool) -> (MemoryPlan, Vec<Option<usize>>) {
    let mut planned = Vec::new();
    let mut intervals = Vec::new();
    for (s, storage) in graph.storages.iter().enumerate() {
        let in_texture = match storage.kind {
            StorageKind::Constant { .. } => continue,
            StorageKind::Activation { texture, .. } => texture,
            StorageKind::Input { .. } => false,
        };
        if in_texture != textures {
            continue;
        }
        if let Some((first, last)) = live[s] {
            planned.push(s);
            intervals.push(Interval { bytes: storage.numel as u64 * 4, first, last });
        }
    }
    let plan = plan_memory(&intervals);
    let mut slot_of = vec![None; graph.storages.len()];
    for (k, &s) in planned.iter().enumerate() {
        slot_of[s] = Some(plan.slot_of[k]);
    }
    (plan, slot_of)
}
