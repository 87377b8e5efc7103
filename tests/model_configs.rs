//! Model configurations as data (no GPU): the bundled digit models carry their hyper-parameters in
//! `wgvit.config`, the engine builds them from it, and a bad configuration is an error that names
//! the file, the model and what is wrong.

use std::path::PathBuf;

use wgvit::models::accvit::AccVitConfig;
use wgvit::models::hatnet::HatNetConfig;
use wgvit::models::vvt::VvtConfig;
use wgvit::models::{build_graph, resolve};
use wgvit::weights::meta;
use wgvit::{Error, Weights};

fn bundled(id: &str) -> Weights {
    let rel = format!("assets/models/{id}.safetensors");
    let bytes = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(&rel)).unwrap();
    Weights::from_bytes(&rel, &bytes).unwrap()
}

/// `weights` with `wgvit.config` replaced by `json`.
fn with_config(mut weights: Weights, json: &str) -> Weights {
    weights.metadata.insert(meta::CONFIG.into(), json.into());
    weights
}

#[test]
fn every_bundled_model_builds_from_its_own_metadata() {
    for (id, input) in [("hatnet-digits", 64), ("vvt-digits", 32), ("accvit-digits", 64), ("lavit-digits", 64)] {
        let w = bundled(id);
        assert_eq!(w.model_id(), Some(id));
        assert_eq!(w.metadata.get(meta::INPUT_SIZE).map(String::as_str), Some(input.to_string().as_str()), "{id}");
        let spec = resolve(id, &w).unwrap_or_else(|e| panic!("{e}"));
        let prefix = id.split('-').next().unwrap();
        assert_eq!(spec.config.family().prefix(), prefix);
        let g = build_graph(id, &w, &[2, 3, input, input]).unwrap_or_else(|e| panic!("{id}: {e}"));
        let logits = g.outputs.iter().find(|(n, _)| n == "logits").unwrap().1;
        assert_eq!(g.shape(logits), [2, 10], "{id}");
    }
}

#[test]
fn hatnet_grid_and_pool_come_from_the_config_and_decide_the_sizes() {
    let w = bundled("hatnet-digits");
    let cfg = resolve("hatnet-digits", &w).unwrap().config.get::<HatNetConfig>().cloned().expect("HAT-Net");
    assert_eq!((cfg.grid_sizes, cfg.pool_ratios), ([4, 4, 2, 1], [4, 2, 2, 1]));
    // Stage 0 (ceil(ceil(n/2)/2)) must be a multiple of 8: sides 29..=32, 61..=64, ...
    for side in [29, 32, 61, 64, 96] {
        assert!(cfg.accepts_side(side), "{side}");
        build_graph("hatnet-digits", &w, &[1, 3, side, side]).unwrap_or_else(|e| panic!("{side}: {e}"));
    }
    for side in [28, 33, 48, 60, 65] {
        assert!(!cfg.accepts_side(side), "{side}");
    }
    let err = build_graph("hatnet-digits", &w, &[1, 3, 48, 48]).unwrap_err().to_string();
    assert!(err.contains("hatnet-digits") && err.contains("[4, 4, 2, 1]") && err.contains("29, 30, 31, 32, 61"), "{err}");
    // The built-in variants keep the official 8/7/7/1 grids.
    let tiny = resolve("hatnet-tiny", &Weights::synthetic(0)).unwrap().config.get::<HatNetConfig>().cloned().expect("HAT-Net");
    assert_eq!(tiny.grid_sizes, [8, 7, 7, 1]);
    assert!(tiny.accepts_side(224) && tiny.accepts_side(221) && !tiny.accepts_side(225) && !tiny.accepts_side(112));
}

#[test]
fn accvit_window_and_levels_come_from_the_config() {
    let w = bundled("accvit-digits");
    let cfg = resolve("accvit-digits", &w).unwrap().config.get::<AccVitConfig>().cloned().expect("ACC-ViT");
    assert_eq!((cfg.window, cfg.levels), (2, [3, 2, 1, 0]));
    assert_eq!(cfg.size_unit(), 64);
    let err = build_graph("accvit-digits", &w, &[1, 3, 96, 96]).unwrap_err().to_string();
    assert!(err.contains("multiples of 64") && err.contains("2×2 windows"), "{err}");
}

#[test]
fn a_bad_config_names_the_file_the_model_and_the_problem() {
    let cases: &[(&str, &str, &str)] = &[
        ("hatnet-digits", "{", "EOF"),
        ("hatnet-digits", r#"{"dims": [16, 32, 48, 64]}"#, "missing field"),
        (
            "hatnet-digits",
            r#"{"dims":[16,32,48,64],"head_dim":16,"depths":[1,1,2,1],"kernels":[5,3,3,3],"expansions":[2,2,2,2],"grid_sizes":[4,4,2,1],"pool_ratios":[4,2,2,1],"extra":1}"#,
            "unknown field `extra`",
        ),
        (
            "hatnet-digits",
            r#"{"dims":[16,32,48,64],"head_dim":12,"depths":[1,1,2,1],"kernels":[5,3,3,3],"expansions":[2,2,2,2],"grid_sizes":[4,4,2,1],"pool_ratios":[4,2,2,1]}"#,
            "dims[0] = 16 is not a multiple of head_dim = 12",
        ),
        (
            "hatnet-digits",
            r#"{"dims":[16,32,48,64],"head_dim":16,"depths":[1,1,2,1],"kernels":[5,3,3,3],"expansions":[2,2,2,2],"grid_sizes":[4,0,2,1],"pool_ratios":[4,2,2,1]}"#,
            "grid_sizes[1] is 0",
        ),
        ("vvt-digits", r#"{"dims":[16,32,48,64],"heads":[1,2,3,4],"mlp_ratios":[2,2,2,2],"depths":[1,1,2,1],"fr":[1,2,2,3]}"#, "fr[3]"),
        ("vvt-digits", r#"{"dims":[16,32,48],"heads":[1,2,3,4],"mlp_ratios":[2,2,2,2],"depths":[1,1,2,1],"fr":[1,2,2,4]}"#, "array of length 4"),
        (
            "lavit-digits",
            r#"{"dims":[16,32,64,128],"heads":[1,2,2,4],"depths":[2,2,2,2],"mlp_ratios":[8,8,4,4],"sr_ratios":[8,4,2,1],"patch":[4,2,2,2],"n_va":[2,1,1,1],"psi":false}"#,
            "n_va[0] = 2",
        ),
        (
            "lavit-digits",
            r#"{"dims":[16,32,64,128],"heads":[1,2,2,4],"depths":[2,2,2,2],"mlp_ratios":[8,8,4,4],"sr_ratios":[8,2,2,1],"patch":[4,2,2,2],"n_va":[1,1,1,1],"psi":false}"#,
            "half the previous sr ratio",
        ),
        (
            "accvit-digits",
            r#"{"stem":16,"dims":[16,32,64,128],"depths":[1,1,1,1],"levels":[4,2,1,0],"window":2,"head_dim":32,"conv_dilations":3,"expansion":4,"se_div":4,"mlp_ratio":4}"#,
            "levels[0] = 4",
        ),
        (
            "accvit-digits",
            r#"{"stem":16,"dims":[16,32,64,128],"depths":[1,1,1,1],"levels":[3,2,1,0],"window":9,"head_dim":32,"conv_dilations":3,"expansion":4,"se_div":4,"mlp_ratio":4}"#,
            "window = 9",
        ),
    ];
    for &(id, json, want) in cases {
        let w = with_config(bundled(id), json);
        let err = resolve(id, &w).unwrap_err();
        assert!(matches!(err, Error::BadConfig { .. }), "{id} {json}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("assets/models/{id}.safetensors")) && msg.contains("wgvit.config") && msg.contains(id) && msg.contains(want),
            "{id} {json}: '{msg}' should name the file, the model and '{want}'"
        );
    }
}

#[test]
fn a_config_only_applies_to_the_model_the_metadata_names() {
    // Without wgvit.config, a non-table id is unknown, and the message says how to make it known.
    let mut w = bundled("vvt-digits");
    w.metadata.remove(meta::CONFIG);
    let err = resolve("vvt-digits", &w).unwrap_err().to_string();
    assert!(err.contains("'vvt-digits'") && err.contains("vvt-tiny") && err.contains("wgvit.config"), "{err}");
    // A built-in id with a file describing another model: the table's configuration.
    let w = bundled("vvt-digits");
    let spec = resolve("vvt-micro", &w).unwrap();
    assert_eq!(spec.config.get::<VvtConfig>(), Some(&wgvit::models::vvt::config("micro").unwrap()));
    // A config for a name of no family.
    let mut w = bundled("vvt-digits");
    w.metadata.insert(meta::MODEL.into(), "resnet-digits".into());
    let err = resolve("resnet-digits", &w).unwrap_err().to_string();
    assert!(err.contains("'resnet-digits'"), "{err}");
}

/// The family registry is where ids and usual input sizes come from: every built-in id resolves,
/// and a model's usual size is its family's (toy 32, LaViT the size its weights were made for).
#[test]
fn the_registry_lists_every_family_and_its_usual_input() {
    let ids = wgvit::models::model_ids();
    for id in ["hatnet-tiny", "vvt-micro", "accvit-base", "lavit-micro-psi", "toy"] {
        assert!(ids.iter().any(|i| i == id), "{id} missing from {ids:?}");
    }
    let size = |id: &str| wgvit::models::ModelCard::new(id, &Weights::synthetic(0)).unwrap().input_size();
    assert_eq!(size("toy"), (32, 32));
    assert_eq!(size("hatnet-tiny"), (224, 224));
    assert_eq!(size("lavit-micro"), (64, 64));
    for id in &ids {
        resolve(id, &Weights::synthetic(0)).unwrap_or_else(|e| panic!("{id}: {e}"));
    }
}
