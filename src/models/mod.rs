//! The model registry: model ids → graph builders. A builder reads its parameters from
//! [`Weights`] by checkpoint name and appends ops to a [`Graph`] for one input shape; shapes it
//! cannot take are an [`Error::BadInputShape`] that says which ones work.

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::weights::Weights;

pub mod accvit;
pub mod hatnet;
pub mod lavit;
pub mod toy;
pub mod vvt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    HatNet,
    Vvt,
    AccVit,
    LaViT,
    /// The engine's own end-to-end test network (conv stem + window attention + MLP).
    Toy,
}

/// Every model id the CLI and API accept.
pub const MODEL_IDS: &[(&str, Family)] = &[
    ("hatnet-tiny", Family::HatNet),
    ("hatnet-small", Family::HatNet),
    ("hatnet-medium", Family::HatNet),
    ("hatnet-large", Family::HatNet),
    ("hatnet-micro", Family::HatNet),
    ("vvt-tiny", Family::Vvt),
    ("vvt-small", Family::Vvt),
    ("vvt-medium", Family::Vvt),
    ("vvt-large", Family::Vvt),
    ("vvt-micro", Family::Vvt),
    ("accvit-tiny", Family::AccVit),
    ("accvit-small", Family::AccVit),
    ("accvit-base", Family::AccVit),
    ("accvit-micro", Family::AccVit),
    ("lavit-tiny", Family::LaViT),
    ("lavit-small", Family::LaViT),
    ("lavit-base", Family::LaViT),
    ("lavit-tiny-psi", Family::LaViT),
    ("lavit-micro", Family::LaViT),
    ("lavit-micro-psi", Family::LaViT),
    ("toy", Family::Toy),
];

pub fn family_of(id: &str) -> Result<Family> {
    MODEL_IDS.iter().find(|(name, _)| *name == id).map(|&(_, f)| f).ok_or_else(|| Error::UnknownModel {
        id: id.to_string(),
        known: MODEL_IDS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
    })
}

/// Builds the forward graph of model `id` for an input of shape `[B, 3, H, W]`; the graph has one
/// input `input` and one output `logits` `[B, classes]`.
pub fn build_graph(id: &str, weights: &Weights, input_shape: &[usize]) -> Result<Graph> {
    let family = family_of(id)?;
    if input_shape.len() != 4 || input_shape[1] != 3 || input_shape.iter().any(|&d| d == 0) {
        return Err(Error::BadInputShape {
            model: id.into(),
            expected: "a non-empty [B, 3, H, W] tensor".into(),
            found: input_shape.to_vec(),
        });
    }
    let mut g = Graph::new();
    let input = g.input("input", input_shape);
    let logits: TensorId = match family {
        Family::Toy => toy::build(&mut g, weights, input)?,
        Family::HatNet => hatnet::build(&mut g, weights, input, &id["hatnet-".len()..])?,
        Family::Vvt => vvt::build(&mut g, weights, input, &id["vvt-".len()..])?,
        Family::AccVit => accvit::build(&mut g, weights, input, &id["accvit-".len()..])?,
        Family::LaViT => lavit::build(&mut g, weights, input, &id["lavit-".len()..])?,
    };
    weights.finish()?;
    g.output("logits", logits);
    Ok(g)
}
