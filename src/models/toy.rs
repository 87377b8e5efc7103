//! `toy`: the engine's end-to-end test network, small enough for a committed golden fixture and
//! built from the same core ops the families use. Its PyTorch twin is `tools/make_toy_fixture.py`.
//! (Filled in once the core kernels exist.)

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::weights::Weights;

pub fn build(_g: &mut Graph, _w: &Weights, _input: TensorId) -> Result<TensorId> {
    Err(Error::NotImplemented { id: "toy".into() })
}
