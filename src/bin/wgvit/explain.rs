//! `wgvit explain`: images → attention maps ([`wgvit::explain`]).
//!
//! For each image: one forward of the explain graph, then `DIR/<image stem>.<model id>.png` (the
//! model's input crop, scaled up to at least [`MIN_SIDE`] pixels, with the summary map overlaid as
//! a heat map, the query marked, and a colour-bar legend below) and, with `--json`, one JSON line
//! on stdout with every map. An image that cannot be read is reported by name and skipped.

use std::path::{Path, PathBuf};

use wgvit::error::{Error, Result};
use wgvit::explain::{AttentionMap, Explanation};
use wgvit::models::ModelCard;
use wgvit::{Engine, HostTensor, Weights};

pub struct Options {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub json: bool,
    /// Input pixel (x, y) whose attention the maps show; `None`: the attention each position receives.
    pub query: Option<(usize, usize)>,
    pub size: crate::cli::InputSize,
}

/// The picture's shorter side is scaled up to at least this many pixels.
const MIN_SIDE: usize = 256;
/// Share of the heat-map colour in a blended pixel.
const HEAT_ALPHA: f32 = 0.6;

/// `--query X,Y`: a pixel of the model's input (x = column, y = row, from 0).
pub fn parse_query(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Invalid(format!("--query '{s}': expected X,Y, a pixel of the model's input (column, row from 0), e.g. 16,20"));
    let (x, y) = s.split_once(',').ok_or_else(bad)?;
    Ok((x.trim().parse().map_err(|_| bad())?, y.trim().parse().map_err(|_| bad())?))
}

pub fn explain(card: ModelCard, weights: Weights, opts: &Options) -> Result<bool> {
    let files = crate::classify::collect(&opts.inputs)?;
    let (h, w) = opts.size.size;
    if let Some((x, y)) = opts.query {
        if x >= w || y >= h {
            return Err(Error::Invalid(format!(
                "--query {x},{y} is outside the model's {w}x{h} input ({}): x must be below {w} and y below {h}",
                opts.size.source
            )));
        }
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::Io { path: opts.out.display().to_string(), reason: format!("--out: cannot create the folder: {e}") })?;
    let prep = card.preprocess_at((h, w));
    crate::cli::tune_software_driver(card.id(), &weights, &[1, 3, h, w]);
    let engine = pollster::block_on(Engine::new())?;
    let model = engine.load(card, weights)?;
    let id = model.id.clone();
    let mut failed = 0usize;
    for path in &files {
        let name = path.display().to_string();
        let outcome = (|| -> Result<()> {
            let pixels = wgvit::io::read_file(path, wgvit::io::MAX_IMAGE_BYTES, "image").and_then(|bytes| prep.load(&name, &bytes))?;
            let input = HostTensor::new(vec![1, 3, h, w], pixels)?;
            let (logits, maps) = pollster::block_on(model.explain(&input, opts.query)).map_err(|e| crate::cli::explain_size(e, &model, 1, &opts.size))?;
            if let Some(&value) = logits.data.iter().find(|v| !v.is_finite()) {
                return Err(Error::NonFiniteOutput { model: id.clone(), input: name.clone(), value });
            }
            let stem = path.file_stem().map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
            let png = opts.out.join(format!("{stem}.{id}.png"));
            let crop = model.card.preprocess.pixels(&input.data, (h, w));
            write_png(&png, &crop, (h, w), &maps.summary, opts.query)?;
            let top = crate::classify::top_k(&logits.data, 1);
            let labels = model.card.labels_for(logits.data.len());
            let label = |c: usize| labels.as_ref().map_or_else(|| format!("class {c}"), |l| l[c].clone());
            if opts.json {
                println!("{}", json_line(&name, &id, &maps, &png));
            } else {
                println!("{name}: {} ({:.1}%), {} maps; wrote {}", label(top[0].0), 100.0 * top[0].1, maps.maps.len(), png.display());
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            failed += 1;
            if opts.json {
                println!("{}", serde_json::json!({ "path": name, "error": e.to_string() }));
            } else {
                eprintln!("error: {e}");
            }
        }
    }
    Ok(failed == 0)
}

fn json_line(path: &str, model: &str, maps: &Explanation, png: &Path) -> String {
    let summary = serde_json::json!({ "height": maps.summary.height, "width": maps.summary.width, "values": maps.summary.values });
    serde_json::json!({
        "path": path,
        "model": model,
        "png": png.display().to_string(),
        "maps": maps.maps,
        "summary": summary,
    })
    .to_string()
}

/// A colour on a perceptually ordered dark-to-bright ramp (black, purple, red, orange, pale
/// yellow) for `t` in 0 ..= 1.
fn heat(t: f32) -> [f32; 3] {
    const STOPS: [[f32; 3]; 5] = [[0.0, 0.0, 4.0], [87.0, 16.0, 110.0], [188.0, 55.0, 84.0], [249.0, 142.0, 9.0], [252.0, 255.0, 164.0]];
    let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (x as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    std::array::from_fn(|c| STOPS[i][c] + f * (STOPS[i + 1][c] - STOPS[i][c]))
}

/// 3×5 glyphs (rows top to bottom, 3 bits each, high bit left) for the legend's numbers.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        'e' => [0, 7, 7, 4, 7],
        _ => return None,
    })
}

/// Draws `text` with its top-left corner at (x, y), `scale` pixels per glyph dot.
fn draw_text(img: &mut image::RgbImage, text: &str, (x, y): (u32, u32), scale: u32) {
    for (i, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        let x0 = x + i as u32 * 4 * scale;
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (x0 + col * scale + dx, y + r as u32 * scale + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, image::Rgb([255, 255, 255]));
                        }
                    }
                }
            }
        }
    }
}

/// The input crop with the summary as a heat map (scaled so its largest value is the brightest
/// colour), the query pixel marked with a cyan cross, and a legend: the colour bar from 0 to the
/// summary's largest value (attention mass per input pixel).
fn write_png(path: &Path, crop: &[u8], (h, w): (usize, usize), summary: &AttentionMap, query: Option<(usize, usize)>) -> Result<()> {
    let scale = MIN_SIDE.div_ceil(h.min(w)).max(1);
    let (ow, oh) = (w * scale, h * scale);
    let legend = 40usize;
    let mut img = image::RgbImage::new(ow as u32, (oh + legend) as u32);
    let peak = summary.values.iter().copied().fold(0f32, f32::max);
    for y in 0..oh {
        for x in 0..ow {
            let (sy, sx) = (y / scale, x / scale);
            let rgb = &crop[3 * (sy * w + sx)..][..3];
            let gray = rgb.iter().map(|&v| v as f32).sum::<f32>() / 3.0;
            let v = if peak > 0.0 { summary.values[sy * w + sx] / peak } else { 0.0 };
            let c = heat(v);
            let px: [u8; 3] = std::array::from_fn(|i| ((1.0 - HEAT_ALPHA) * gray + HEAT_ALPHA * c[i]).round() as u8);
            img.put_pixel(x as u32, y as u32, image::Rgb(px));
        }
    }
    if let Some((qx, qy)) = query {
        let (cx, cy) = ((qx * scale + scale / 2) as i64, (qy * scale + scale / 2) as i64);
        for d in -6i64..=6 {
            for (x, y) in [(cx + d, cy), (cx, cy + d)] {
                if (0..ow as i64).contains(&x) && (0..oh as i64).contains(&y) {
                    img.put_pixel(x as u32, y as u32, image::Rgb([0, 255, 255]));
                }
            }
        }
    }
    let (bar_x0, bar_x1) = (8usize, ow.saturating_sub(8).max(9));
    for x in bar_x0..bar_x1 {
        let c = heat((x - bar_x0) as f32 / (bar_x1 - bar_x0 - 1).max(1) as f32).map(|v| v.round() as u8);
        for y in oh + 6..oh + 18 {
            img.put_pixel(x as u32, y as u32, image::Rgb(c));
        }
    }
    draw_text(&mut img, "0", (bar_x0 as u32, (oh + 22) as u32), 2);
    let label = format!("{peak:.2e}");
    let width = label.len() as u32 * 8;
    draw_text(&mut img, &label, ((bar_x1 as u32).saturating_sub(width), (oh + 22) as u32), 2);
    img.save_with_format(path, image::ImageFormat::Png).map_err(|e| Error::Io { path: path.display().to_string(), reason: format!("cannot write the PNG: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_or_name_the_flag() {
        assert_eq!(parse_query("3,4").unwrap(), (3, 4));
        assert!(parse_query("3").unwrap_err().to_string().contains("--query"));
        assert!(parse_query("-1,2").is_err());
    }

    #[test]
    fn the_ramp_is_ordered() {
        let lum = |t: f32| heat(t).iter().sum::<f32>();
        assert!((0..10).all(|i| lum(i as f32 / 10.0) < lum((i + 1) as f32 / 10.0)));
    }
}
