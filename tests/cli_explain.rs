//! `wgvit explain` as a user runs it: a PNG per image at least 256 pixels on a side, one JSON
//! line per image with every map (non-negative, finite) and a summary that sums to 1, the query
//! marked, and one clear error line for a bad --query or --out. The maps' values are checked
//! against the PyTorch reference in tests/explain.rs.

mod common;

use common::cli::{assert_one_error_line, text, wgvit};

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wgvit-explain-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn explain_writes_a_heat_map_and_json_lines() {
    let out = scratch("json");
    let dir = out.to_str().unwrap();
    let run = wgvit(&["explain", "assets/samples/7.png", "assets/samples/3.png", "--model", "vvt-digits", "--out", dir, "--json", "--query", "5,20"]);
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "explain failed:\n{stderr}");
    let lines: Vec<serde_json::Value> = text(&run.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for (line, stem) in lines.iter().zip(["7", "3"]) {
        assert_eq!(line["model"], "vvt-digits");
        assert_eq!(line["path"], format!("assets/samples/{stem}.png"));
        let maps = line["maps"].as_array().unwrap();
        let names: Vec<&str> = maps.iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["block1.0.attn", "block2.0.attn", "block3.0.attn", "block3.1.attn", "block4.0.attn"]);
        for m in maps {
            let values = m["values"].as_array().unwrap();
            assert_eq!(values.len() as u64, m["height"].as_u64().unwrap() * m["width"].as_u64().unwrap());
            assert!(values.iter().all(|v| v.as_f64().is_some_and(|v| v.is_finite() && v >= 0.0)));
        }
        let summary = &line["summary"];
        assert_eq!((summary["height"].as_u64(), summary["width"].as_u64()), (Some(32), Some(32)));
        let total: f64 = summary["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-4, "summary sums to {total}");
        let png = out.join(format!("{stem}.vvt-digits.png"));
        assert_eq!(line["png"], png.display().to_string());
        let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).to_rgb8();
        assert!(img.width() >= 256 && img.height() >= 256, "{}x{}", img.width(), img.height());
        // The query pixel (5, 20) of the 32x32 input is marked in cyan.
        let scale = img.width() / 32;
        let mark = img.get_pixel(5 * scale + scale / 2 + 3, 20 * scale + scale / 2);
        assert_eq!(mark.0, [0, 255, 255], "query mark");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn explain_runs_every_bundled_model() {
    let out = scratch("all");
    for model in ["hatnet-digits", "vvt-digits", "accvit-digits", "lavit-digits"] {
        let run = wgvit(&["explain", "assets/samples/7.png", "--model", model, "--out", out.to_str().unwrap()]);
        let stdout = text(&run.stdout);
        assert!(run.status.success(), "{model}: {}", text(&run.stderr));
        assert!(stdout.starts_with("assets/samples/7.png: 7 ("), "{model}: {stdout}");
        assert!(out.join(format!("7.{model}.png")).is_file());
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn explain_names_a_bad_query_or_out() {
    let out = scratch("bad");
    let dir = out.to_str().unwrap();
    assert_one_error_line(&["explain", "assets/samples/7.png", "--out", dir, "--query", "7"], &["--query", "'7'", "X,Y"]);
    assert_one_error_line(&["explain", "assets/samples/7.png", "--out", dir, "--query", "64,10"], &["--query 64,10", "64x64"]);
    assert_one_error_line(&["explain", "assets/samples/7.png", "--out", "README.md"], &["README.md", "--out"]);
}
