//! ImageNet-1k's class names, built in (`assets/imagenet1k_labels.txt`, the 1000 ILSVRC-2012
//! classes in their standard index order — synset ids sorted — with the usual short names). A
//! weights file's own names (`wgvit.labels`) win when their count matches the head
//! (`models::ModelCard::labels_for`).

use std::sync::OnceLock;

const IMAGENET1K: &str = include_str!("../assets/imagenet1k_labels.txt");

/// The 1000 ImageNet-1k class names, index = class id.
pub fn imagenet1k() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| IMAGENET1K.lines().map(str::trim).filter(|l| !l.is_empty()).collect())
}
