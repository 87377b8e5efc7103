//! Class names for classifier heads: ImageNet-1k's built in (`assets/imagenet1k_labels.txt`, the
//! 1000 ILSVRC-2012 classes in their standard index order — synset ids sorted — with the usual
//! short names), or the names a weights file carries in its metadata (`wgvit.labels`, one per
//! line), which win when their count matches the head.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::weights::meta;

const IMAGENET1K: &str = include_str!("../assets/imagenet1k_labels.txt");

/// The 1000 ImageNet-1k class names, index = class id.
pub fn imagenet1k() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| IMAGENET1K.lines().map(str::trim).filter(|l| !l.is_empty()).collect())
}

/// Names for a head of `classes` outputs: the weights' own labels when they have exactly that
/// many, else ImageNet-1k's for a 1000-class head, else `None` (callers print indices).
pub fn for_head(classes: usize, metadata: &BTreeMap<String, String>) -> Option<Vec<String>> {
    if let Some(text) = metadata.get(meta::LABELS) {
        let own: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        if own.len() == classes {
            return Some(own);
        }
        log::warn!("metadata '{}' holds {} labels, the head has {classes} classes: ignored", meta::LABELS, own.len());
    }
    (classes == imagenet1k().len()).then(|| imagenet1k().iter().map(|s| s.to_string()).collect())
}
