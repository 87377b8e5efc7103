//! The memory planner, without a GPU: `Graph::liveness` → `plan::plan_graph` / `plan_memory`.
//!
//! The invariant under test: two storages that are live at the same node position never share a
//! slot, and a slot is at least as large as every storage in it. On top of it, sharing must
//! actually happen (a chain needs two slots however long it is) and the shapes that stretch a
//! lifetime — residuals, graph outputs, reshape views — must stretch it.

use std::sync::Arc;

use wgvit::graph::{Node, StorageKind};
use wgvit::kernels::{params, PipelineKey, Uniform};
use wgvit::ops::binary::{add, binary, BinaryOp};
use wgvit::ops::unary::activation;
use wgvit::ops::{Activation, Kernel};
use wgvit::plan::{plan_graph, plan_memory, Interval, MemoryPlan};
use wgvit::tensor::Rng;
use wgvit::{Error, Graph, TensorId};

/// Checks `plan` against `intervals`; returns the peak of simultaneously live bytes, the lower
/// bound no plan can beat.
fn check_plan(what: &str, intervals: &[Interval], plan: &MemoryPlan) -> u64 {
    assert_eq!(plan.slot_of.len(), intervals.len(), "{what}: one slot per interval");
    for (i, a) in intervals.iter().enumerate() {
        let slot = plan.slot_of[i];
        assert!(slot < plan.slot_bytes.len(), "{what}: interval {i} has slot {slot} of {}", plan.slot_bytes.len());
        assert!(plan.slot_bytes[slot] >= a.bytes, "{what}: interval {i} ({} B) in slot {slot} of {} B", a.bytes, plan.slot_bytes[slot]);
        for (j, b) in intervals.iter().enumerate().skip(i + 1) {
            if plan.slot_of[j] == slot {
                assert!(!a.overlaps_in_time(b), "{what}: intervals {i} {a:?} and {j} {b:?} are live together in slot {slot}");
            }
        }
    }
    assert!(plan.slot_bytes.iter().all(|&b| b % 16 == 0 && b > 0), "{what}: slots are 16-byte multiples: {:?}", plan.slot_bytes);
    assert_eq!(plan.planned_bytes, plan.slot_bytes.iter().sum::<u64>(), "{what}: planned_bytes");
    assert!(plan.planned_bytes <= plan.unshared_bytes, "{what}: sharing never costs more than one buffer each");
    let end = intervals.iter().map(|iv| iv.last + 1).max().unwrap_or(0);
    (0..end)
        .map(|t| intervals.iter().filter(|iv| iv.first <= t && t <= iv.last).map(|iv| iv.bytes.max(16).div_ceil(16) * 16).sum())
        .max()
        .unwrap_or(0)
}

/// `Graph::liveness`: each storage's `[first, last]` node positions.
type Liveness = Vec<Option<(usize, usize)>>;

/// Plans `g` as the executor does and checks the invariant per storage; returns the plan, the
/// slot of each storage and the liveness.
fn plan(what: &str, g: &Graph) -> (MemoryPlan, Vec<Option<usize>>, Liveness) {
    let live = g.liveness().unwrap_or_else(|e| panic!("{what}: {e}"));
    let (plan, slot_of) = plan_graph(g, &live, false);
    let mut intervals = Vec::new();
    for (s, storage) in g.storages.iter().enumerate() {
        let is_constant = matches!(storage.kind, StorageKind::Constant { .. });
        match (live[s], slot_of[s]) {
            (Some((first, last)), Some(_)) if !is_constant => {
                intervals.push(Interval { bytes: storage.numel as u64 * 4, first, last })
            }
            (None, None) => {}
            (_, None) if is_constant => {}
            other => panic!("{what}: storage {s} ({:?}) has liveness/slot {other:?}", storage.kind),
        }
    }
    let peak = check_plan(what, &intervals, &plan);
    eprintln!(
        "{what}: {} storages, {} slots, planned {} B, unshared {} B, peak live {} B",
        intervals.len(),
        plan.slot_bytes.len(),
        plan.planned_bytes,
        plan.unshared_bytes,
        peak
    );
    (plan, slot_of, live)
}

fn storage(g: &Graph, t: TensorId) -> usize {
    g.tensors[t.0].storage
}

#[test]
fn chain_needs_two_slots_however_long() {
    for len in [1, 2, 3, 10, 50] {
        let mut g = Graph::new();
        let mut t = g.input("x", &[64, 64]);
        for _ in 0..len {
            t = activation(&mut g, t, Activation::Relu).unwrap();
        }
        g.output("y", t);
        let (plan, _, _) = plan(&format!("chain of {len}"), &g);
        assert_eq!(plan.slot_bytes.len(), 2.min(len + 1), "chain of {len}");
        if len >= 2 {
            assert!(plan.planned_bytes < plan.unshared_bytes, "chain of {len} must share");
        }
    }
}

#[test]
fn dead_input_slot_is_reused_by_a_later_tensor() {
    // big [64,64] → y = big + x → z (small) → w = y * z: big is dead after node 0, so w takes its
    // slot; y is read while w is written, so they never share.
    let mut g = Graph::new();
    let x = g.input("x", &[64]);
    let big = g.input("big", &[64, 64]);
    let y = binary(&mut g, big, x, BinaryOp::Add, Activation::None).unwrap();
    let z = g.activation(&[64]);
    g.push(Node {
        label: "shrink".into(),
        key: PipelineKey::new(Kernel::Unary),
        params: Uniform::of(&params::Unary::default()),
        reads: vec![y],
        writes: vec![z],
        workgroups: [1, 1, 1],
        flops: 0,
    });
    let w = binary(&mut g, y, z, BinaryOp::Mul, Activation::None).unwrap();
    g.output("w", w);
    let (plan, slot_of, _) = plan("dead input reuse", &g);
    assert_eq!(slot_of[storage(&g, w)], slot_of[storage(&g, big)]);
    assert_ne!(slot_of[storage(&g, y)], slot_of[storage(&g, w)]);
    assert_eq!(plan.planned_bytes, 2 * 64 * 64 * 4 + 64 * 4);
}

#[test]
fn diamond_branches_get_distinct_slots() {
    let mut g = Graph::new();
    let x = g.input("x", &[32, 32]);
    let a = activation(&mut g, x, Activation::Relu).unwrap();
    let b = activation(&mut g, x, Activation::Gelu).unwrap();
    let c = add(&mut g, a, b).unwrap();
    let d = activation(&mut g, c, Activation::Silu).unwrap();
    g.output("d", d);
    let (_, slot_of, live) = plan("diamond", &g);
    let s = |t| slot_of[storage(&g, t)].unwrap();
    assert_eq!(live[storage(&g, a)], Some((0, 2)));
    assert_eq!(live[storage(&g, b)], Some((1, 2)));
    assert_ne!(s(a), s(b));
    assert_ne!(s(a), s(c));
    assert_ne!(s(b), s(c));
    assert_ne!(s(x), s(a), "x is read while a is written");
    // d is written after a and b die: it can reuse one of their slots.
    assert!(s(d) == s(a) || s(d) == s(b) || s(d) == s(x), "d reuses a dead slot");
}

#[test]
fn residual_keeps_its_source_alive_until_the_late_use() {
    let mut g = Graph::new();
    let x = g.input("x", &[16, 48]);
    let skip = activation(&mut g, x, Activation::None).unwrap(); // node 0
    let mut h = skip;
    for _ in 0..12 {
        h = activation(&mut g, h, Activation::Tanh).unwrap(); // nodes 1..=12
    }
    let y = add(&mut g, h, skip).unwrap(); // node 13
    g.output("y", y);
    let (plan, slot_of, live) = plan("residual over 12 nodes", &g);
    assert_eq!(live[storage(&g, skip)], Some((0, 13)));
    let skip_slot = slot_of[storage(&g, skip)];
    let sharers: Vec<usize> = (0..g.storages.len()).filter(|&s| s != storage(&g, skip) && slot_of[s] == skip_slot).collect();
    assert!(sharers.is_empty(), "the residual is live from the first node to the last: storages {sharers:?} share its slot");
    assert_eq!(plan.slot_bytes.len(), 3, "chain + one residual needs three slots");
}

#[test]
fn graph_outputs_stay_live_to_the_end() {
    let mut g = Graph::new();
    let x = g.input("x", &[256]);
    let early = activation(&mut g, x, Activation::Relu).unwrap(); // node 0, an output
    let mut h = activation(&mut g, early, Activation::Sigmoid).unwrap(); // node 1
    for _ in 0..6 {
        h = activation(&mut g, h, Activation::Tanh).unwrap();
    }
    g.output("early", early);
    g.output("late", h);
    let last = g.nodes.len() - 1;
    let (_, slot_of, live) = plan("early output", &g);
    assert_eq!(live[storage(&g, early)], Some((0, last)));
    let early_slot = slot_of[storage(&g, early)];
    for (s, st) in g.storages.iter().enumerate() {
        if s != storage(&g, early) && matches!(st.kind, StorageKind::Activation { .. }) {
            assert_ne!(slot_of[s], early_slot, "activation {s} would overwrite the early output");
        }
    }
}

#[test]
fn reshape_view_keeps_its_storage_alive() {
    let mut g = Graph::new();
    let x = g.input("x", &[4, 8, 8]);
    let t = activation(&mut g, x, Activation::Relu).unwrap(); // node 0
    let view = g.reshape(t, &[4, 64]).unwrap();
    assert_eq!(storage(&g, view), storage(&g, t), "a reshape is a view");
    let mut h = activation(&mut g, x, Activation::Tanh).unwrap(); // node 1
    for _ in 0..5 {
        h = activation(&mut g, h, Activation::Tanh).unwrap(); // nodes 2..=6
    }
    let h = g.reshape(h, &[4, 64]).unwrap();
    let y = add(&mut g, h, view).unwrap(); // node 7, reads the view
    g.output("y", y);
    let (_, slot_of, live) = plan("reshape view", &g);
    assert_eq!(live[storage(&g, t)], Some((0, 7)), "the view's use at node 7 keeps t alive");
    let t_slot = slot_of[storage(&g, t)];
    for node in 1..7 {
        for w in &g.nodes[node].writes {
            assert_ne!(slot_of[storage(&g, *w)], t_slot, "node {node} would overwrite t before its view is read");
        }
    }
    // Reshapes add no storage.
    assert_eq!(g.storages.len(), g.tensors.len() - 2);
}

#[test]
fn constants_take_no_slot() {
    let mut g = Graph::new();
    let x = g.input("x", &[8, 16]);
    let bias = g.constant("bias", &[16], Arc::new(vec![0.5; 16])).unwrap();
    let y = add(&mut g, x, bias).unwrap();
    g.output("y", y);
    let (plan, slot_of, _) = plan("constant", &g);
    assert_eq!(slot_of[storage(&g, bias)], None);
    assert_eq!(plan.slot_of.len(), 2, "x and y only");
}

/// Random DAGs of element-wise nodes with random sizes, reshapes, residual-style long reads and
/// outputs. Reports the mean planned / unshared and planned / peak-live ratios.
#[test]
fn random_graphs_never_share_a_slot_between_live_storages() {
    let mut rng = Rng::new(0x5eed);
    let (mut planned, mut unshared, mut peak_sum) = (0u64, 0u64, 0u64);
    let graphs = 200;
    for case in 0..graphs {
        let mut g = Graph::new();
        let mut tensors: Vec<TensorId> = Vec::new();
        for i in 0..1 + rng.below(3) {
            let n = 1 + rng.below(4096);
            tensors.push(g.input(&format!("in{i}"), &[n]));
        }
        if rng.below(2) == 0 {
            let n = g.numel(tensors[0]);
            tensors.push(g.constant("c", &[n], Arc::new(vec![1.0; n])).unwrap());
        }
        let nodes = 1 + rng.below(40);
        for _ in 0..nodes {
            // Mostly recent tensors (chains), sometimes an old one (residuals, branches).
            let pick = |rng: &mut Rng, ts: &[TensorId]| {
                if rng.below(4) == 0 { ts[rng.below(ts.len())] } else { ts[ts.len() - 1 - rng.below(ts.len().min(3))] }
            };
            let a = pick(&mut rng, &tensors);
            let t = match rng.below(5) {
                0 => {
                    let same = tensors.iter().copied().filter(|&t| g.numel(t) == g.numel(a)).collect::<Vec<_>>();
                    let b = same[rng.below(same.len())];
                    let b = g.reshape(b, &[g.numel(a)]).unwrap();
                    let a = g.reshape(a, &[g.numel(a)]).unwrap();
                    add(&mut g, a, b).unwrap()
                }
                1 => {
                    let n = g.numel(a);
                    let a = if n.is_multiple_of(2) { g.reshape(a, &[2, n / 2]).unwrap() } else { a };
                    activation(&mut g, a, Activation::Relu).unwrap()
                }
                2 => {
                    // A node producing a tensor of a new size (e.g. a projection).
                    let out = g.activation(&[1 + rng.below(8192)]);
                    g.push(Node {
                        label: "resize".into(),
                        key: PipelineKey::new(Kernel::Unary),
                        params: Uniform::of(&params::Unary::default()),
                        reads: vec![a],
                        writes: vec![out],
                        workgroups: [1, 1, 1],
                        flops: 0,
                    });
                    out
                }
                _ => activation(&mut g, a, Activation::Tanh).unwrap(),
            };
            tensors.push(t);
            if rng.below(8) == 0 {
                g.output(&format!("o{}", g.outputs.len()), t);
            }
        }
        g.output("last", *tensors.last().unwrap());
        let live = g.liveness().unwrap();
        let (plan, _) = plan_graph(&g, &live, false);
        let intervals: Vec<Interval> = g
            .storages
            .iter()
            .enumerate()
            .filter(|(s, st)| !matches!(st.kind, StorageKind::Constant { .. }) && live[*s].is_some())
            .map(|(s, st)| Interval { bytes: st.numel as u64 * 4, first: live[s].unwrap().0, last: live[s].unwrap().1 })
            .collect();
        let peak = check_plan(&format!("random graph {case}"), &intervals, &plan);
        assert!(plan.planned_bytes >= peak, "random graph {case}: below the peak-live lower bound");
        planned += plan.planned_bytes;
        unshared += plan.unshared_bytes;
        peak_sum += peak;
    }
    eprintln!(
        "{graphs} random graphs: planned / unshared = {:.3}, planned / peak live = {:.3}",
        planned as f64 / unshared as f64,
        planned as f64 / peak_sum as f64
    );
    assert!(planned < unshared, "random graphs must share slots");
}

#[test]
fn plan_memory_on_random_intervals() {
    let mut rng = Rng::new(7);
    let (mut planned, mut unshared, mut peak_sum) = (0u64, 0u64, 0u64);
    for case in 0..300 {
        let n = rng.below(60);
        let horizon = 1 + rng.below(80);
        let intervals: Vec<Interval> = (0..n)
            .map(|_| {
                let first = rng.below(horizon);
                let last = first + rng.below(horizon - first).min(1 + rng.below(10));
                Interval { bytes: rng.below(1 << 20) as u64, first, last }
            })
            .collect();
        let plan = plan_memory(&intervals);
        let peak = check_plan(&format!("random intervals {case}"), &intervals, &plan);
        planned += plan.planned_bytes;
        unshared += plan.unshared_bytes;
        peak_sum += peak;
    }
    eprintln!(
        "300 random interval sets: planned / unshared = {:.3}, planned / peak live = {:.3}",
        planned as f64 / unshared as f64,
        planned as f64 / peak_sum as f64
    );
}

#[test]
fn plan_memory_edge_cases() {
    let empty = plan_memory(&[]);
    assert_eq!((empty.slot_bytes.len(), empty.planned_bytes, empty.unshared_bytes), (0, 0, 0));
    // Zero and odd sizes round up to 16-byte multiples (a zero-sized binding is invalid).
    let p = plan_memory(&[Interval { bytes: 0, first: 0, last: 0 }, Interval { bytes: 17, first: 0, last: 0 }]);
    assert_eq!(p.slot_bytes, vec![32, 16]);
    // A smaller storage goes into a free larger slot rather than opening a new one, and into the
    // smallest free one: 100 B fills the 400 B slot's gap, 50 B cannot (live with both).
    let iv = [
        Interval { bytes: 100, first: 0, last: 1 },
        Interval { bytes: 50, first: 1, last: 2 },
        Interval { bytes: 400, first: 2, last: 3 },
        Interval { bytes: 30, first: 3, last: 3 },
    ];
    let p = plan_memory(&iv);
    check_plan("fill", &iv, &p);
    assert_eq!(p.slot_bytes, vec![400, 64]);
    assert_eq!(p.slot_of, vec![0, 1, 0, 1]);
    // Same interval at the same position: never together.
    let iv = [Interval { bytes: 64, first: 3, last: 3 }, Interval { bytes: 64, first: 3, last: 3 }];
    assert_ne!(plan_memory(&iv).slot_of[0], plan_memory(&iv).slot_of[1]);
}

#[test]
fn graph_refuses_reading_before_writing() {
    let mut g = Graph::new();
    let x = g.input("x", &[4]);
    let never_written = g.activation(&[4]);
    let y = g.labelled("blocks.3", |g| add(g, x, never_written)).unwrap();
    g.output("y", y);
    let e = g.liveness().unwrap_err();
    assert!(matches!(&e, Error::Graph(m) if m.contains("blocks.3.add") && m.contains("no earlier node wrote")), "{e}");

    // Written only *after* it is read.
    let mut g = Graph::new();
    let x = g.input("x", &[4]);
    let late = g.activation(&[4]);
    let y = add(&mut g, x, late).unwrap();
    g.push(Node {
        label: "late_writer".into(),
        key: PipelineKey::new(Kernel::Unary),
        params: Uniform::of(&params::Unary::default()),
        reads: vec![x],
        writes: vec![late],
        workgroups: [1, 1, 1],
        flops: 0,
    });
    g.output("y", y);
    assert!(matches!(g.liveness(), Err(Error::Graph(m)) if m.contains("'add'")));
}

#[test]
fn graph_refuses_writing_an_input_or_constant() {
    for target in ["input", "constant"] {
        let mut g = Graph::new();
        let x = g.input("x", &[4]);
        let c = g.constant("w", &[4], Arc::new(vec![1.0; 4])).unwrap();
        let dst = if target == "input" { x } else { c };
        g.push(Node {
            label: format!("overwrite_{target}"),
            key: PipelineKey::new(Kernel::Unary),
            params: Uniform::of(&params::Unary::default()),
            reads: vec![x],
            writes: vec![dst],
            workgroups: [1, 1, 1],
            flops: 0,
        });
        let e = g.liveness().unwrap_err();
        assert!(matches!(&e, Error::Graph(m) if m.contains(&format!("overwrite_{target}")) && m.contains("writes to an input or constant")), "{e}");
    }
    // A view of a constant is still the constant.
    let mut g = Graph::new();
    let x = g.input("x", &[4]);
    let c = g.constant("w", &[2, 2], Arc::new(vec![1.0; 4])).unwrap();
    let view = g.reshape(c, &[4]).unwrap();
    g.push(Node {
        label: "overwrite_view".into(),
        key: PipelineKey::new(Kernel::Unary),
        params: Uniform::of(&params::Unary::default()),
        reads: vec![x],
        writes: vec![view],
        workgroups: [1, 1, 1],
        flops: 0,
    });
    assert!(matches!(g.liveness(), Err(Error::Graph(m)) if m.contains("overwrite_view")));
}

#[test]
fn graph_refuses_unwritten_outputs_and_bad_shapes() {
    let mut g = Graph::new();
    let _x = g.input("x", &[4]);
    let orphan = g.activation(&[4]);
    g.output("logits", orphan);
    assert!(matches!(g.liveness(), Err(Error::Graph(m)) if m.contains("'logits'") && m.contains("never written")));

    let mut g = Graph::new();
    let x = g.input("x", &[2, 3]);
    assert!(matches!(g.reshape(x, &[4, 2]), Err(Error::Graph(m)) if m.contains("[2, 3]") && m.contains("[4, 2]")));
    assert!(matches!(g.constant("w", &[3, 3], Arc::new(vec![0.0; 8])), Err(Error::Graph(m)) if m.contains("'w'") && m.contains("8 values")));
    let b = g.input("b", &[4]);
    assert!(matches!(add(&mut g, x, b), Err(Error::Graph(m)) if m.contains("[4]") && m.contains("[2, 3]")));
}

#[test]
fn an_input_used_as_output_and_an_empty_graph_plan() {
    let mut g = Graph::new();
    let x = g.input("x", &[10]);
    g.output("x", x);
    let (plan, slot_of, live) = plan("no nodes", &g);
    assert_eq!(live[0], Some((0, 0)));
    assert_eq!(slot_of[0], Some(0));
    assert_eq!(plan.slot_bytes, vec![48]);
}
