//! The digit models bundled into the binary (`assets/models`, made by `tools/train_digits.py`):
//! `wgvit classify digit.png` works out of the box, and `--model <family>-digits` needs no
//! `--weights`. Their safetensors metadata carries the model id, its configuration, input size,
//! normalisation and labels, so nothing about them is hard-coded here but the file names.

use wgvit::error::Result;
use wgvit::Weights;

/// The model `classify` and `run` use when neither `--model` nor `--weights` is given.
pub const DEFAULT_MODEL: &str = "hatnet-digits";

const BUNDLED: &[(&str, &[u8])] = &[
    ("hatnet-digits", include_bytes!("../../../assets/models/hatnet-digits.safetensors")),
    ("vvt-digits", include_bytes!("../../../assets/models/vvt-digits.safetensors")),
    ("accvit-digits", include_bytes!("../../../assets/models/accvit-digits.safetensors")),
    ("lavit-digits", include_bytes!("../../../assets/models/lavit-digits.safetensors")),
];

/// The bundled model ids, for help and error messages.
pub fn ids() -> String {
    BUNDLED.iter().map(|(id, _)| *id).collect::<Vec<_>>().join(", ")
}

/// The weights of bundled model `id`, if there is one.
pub fn weights(id: &str) -> Option<Result<Weights>> {
    BUNDLED
        .iter()
        .find(|(name, _)| *name == id)
        .map(|(name, bytes)| Weights::from_bytes(&format!("assets/models/{name}.safetensors (bundled)"), bytes))
}
