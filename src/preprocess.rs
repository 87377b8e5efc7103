//! Image → model input, as timm and torchvision evaluate ImageNet classifiers:
//!
//! 1. decode (JPEG, PNG, WebP) and convert to 8-bit RGB (alpha dropped, grey replicated), as
//!    `PIL.Image.open(f).convert("RGB")`;
//! 2. resize with PIL's bicubic filter so that the shorter side is `floor(S / crop_pct)`
//!    (crop_pct 0.875: 224 → 256; timm's `math.floor(img_size / crop_pct)`, torchvision's
//!    `Resize(int)` keeps the aspect ratio with the longer side `int(new_short · long / short)`);
//!    a non-square input size `H×W` resizes to exactly `floor(H / crop_pct) × floor(W / crop_pct)`,
//!    as timm does for a tuple;
//! 3. center-crop `S×S` (torchvision's offsets: `round((in - out) / 2)`, Python's round-half-even);
//! 4. scale to [0, 1], subtract the ImageNet mean and divide by the std, channel-first (f32 as
//!    torchvision: `x / 255`, then `(x - mean) / std`).
//!
//! The resize is PIL's `ImagingResample` re-implemented, not an approximation of it, so the crop
//! matches `img.resize((w, h), Image.BICUBIC)` pixel for pixel on the same decoded image:
//! separable, horizontal pass first; the cubic kernel with a = -0.5 and support 2, stretched by
//! the scale when downsampling (antialiasing); each output's taps from
//! `[int(center - support + 0.5), int(center + support + 0.5))` clipped to the image, normalised
//! to sum 1, then turned into 22-bit fixed point (`PRECISION_BITS = 32 - 8 - 2`, rounded away
//! from zero); accumulation starts at half an LSB and the result is clipped to 0..=255 — the
//! intermediate image between the passes is 8-bit, as in PIL.

use crate::error::{Error, Result};

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (`[r, g, b, r, g, b, ...]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        if width.checked_mul(height).and_then(|n| n.checked_mul(3)) != Some(data.len()) {
            return Err(Error::Invalid(format!("an RGB image of {width}x{height} needs 3 bytes a pixel, got {}", data.len())));
        }
        Ok(Self { width, height, data })
    }
}

/// Largest side of an image decoded, and most bytes the decoder may allocate: a small file
/// declaring a huge image is refused before its pixels are allocated. The pixel count is what
/// bounds memory (256 MiB of decoded pixels: 64 megapixels of RGBA, above any camera's photo); a
/// long thin image (1 × 1,000,000) is fine, its resize only computes the crop.
pub const MAX_IMAGE_SIDE: u32 = 1 << 20;
pub const MAX_DECODE_BYTES: u64 = 256 << 20;

/// Decodes a JPEG, PNG or WebP held in memory (format from the content, not the name). `file`
/// names it in errors.
pub fn decode(file: &str, bytes: &[u8]) -> Result<RgbImage> {
    let fail = |e: image::ImageError| {
        let reason = match e {
            image::ImageError::Limits(_) => format!(
                "cannot decode the image: it is larger than the decode limits ({} MiB of pixels, {MAX_IMAGE_SIDE} px a side)",
                MAX_DECODE_BYTES >> 20
            ),
            e => format!("cannot decode the image: {e}"),
        };
        Error::Io { path: file.to_string(), reason }
    };
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| fail(e.into()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(fail)?;
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w == 0 || h == 0 {
        return Err(Error::Io { path: file.to_string(), reason: "the image is empty (0 pixels)".into() });
    }
    RgbImage::new(w, h, rgb.into_raw())
}

/// Fractional bits of PIL's fixed-point coefficients.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// PIL's bicubic kernel (a = -0.5), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// One axis of a resize: for each output index, the first input index, the tap count and
/// `ksize` fixed-point weights (PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`).
struct Taps {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

/// The taps of output indices `first .. first + len` of a resize from `in_size` to `out_size`
/// (only the window a crop keeps is ever computed, whatever the resized size).
fn taps(in_size: usize, out_size: usize, first: usize, len: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    // At most the whole input contributes to one output.
    let ksize = (support.ceil() as usize * 2 + 1).min(in_size + 1);
    let mut bounds = Vec::with_capacity(len);
    let mut weights = vec![0i32; len * ksize];
    let mut k = vec![0f64; ksize];
    for (i, xx) in (first..first + len).enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero; the bounds are then clipped to the image.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut sum = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            *kx = bicubic(((x + xmin) as f64 - center + 0.5) / filterscale);
            sum += *kx;
        }
        for x in 0..ksize {
            let w = if x < n && sum != 0.0 { k[x] / sum } else if x < n { k[x] } else { 0.0 };
            let fixed = w * (1u32 << PRECISION_BITS) as f64;
            weights[i * ksize + x] = if w < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        bounds.push((xmin, n));
    }
    Taps { ksize, bounds, weights }
}

/// PIL's `clip8`: the accumulator (with its half-LSB start) back to 0..=255.
fn clip8(acc: i64) -> u8 {
    if acc >= 1i64 << (PRECISION_BITS + 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// Columns `x0 .. x0 + cw` of `src` resized to `out_w` columns (every row).
fn resample_horizontal(src: &RgbImage, out_w: usize, x0: usize, cw: usize) -> RgbImage {
    let t = taps(src.width, out_w, x0, cw);
    let mut data = vec![0u8; cw * src.height * 3];
    for y in 0..src.height {
        let row = &src.data[y * src.width * 3..(y + 1) * src.width * 3];
        for (xx, &(xmin, n)) in t.bounds.iter().enumerate() {
            let k = &t.weights[xx * t.ksize..xx * t.ksize + n];
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (x, &w) in k.iter().enumerate() {
                let p = &row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                for c in 0..3 {
                    acc[c] += p[c] as i64 * w as i64;
                }
            }
            let o = (y * cw + xx) * 3;
            for c in 0..3 {
                data[o + c] = clip8(acc[c]);
            }
        }
    }
    RgbImage { width: cw, height: src.height, data }
}

/// Rows `y0 .. y0 + ch` of `src` resized to `out_h` rows.
fn resample_vertical(src: &RgbImage, out_h: usize, y0: usize, ch: usize) -> RgbImage {
    let t = taps(src.height, out_h, y0, ch);
    let stride = src.width * 3;
    let mut data = vec![0u8; src.width * ch * 3];
    for (yy, &(ymin, n)) in t.bounds.iter().enumerate() {
        let k = &t.weights[yy * t.ksize..yy * t.ksize + n];
        for i in 0..stride {
            let mut acc = 1i64 << (PRECISION_BITS - 1);
            for (y, &w) in k.iter().enumerate() {
                acc += src.data[(ymin + y) * stride + i] as i64 * w as i64;
            }
            data[yy * stride + i] = clip8(acc);
        }
    }
    RgbImage { width: src.width, height: ch, data }
}

/// `img.resize((width, height), Image.BICUBIC)` as Pillow computes it for an RGB image.
pub fn resize_bicubic(img: &RgbImage, width: usize, height: usize) -> RgbImage {
    resize_window(img, width, height, (0, 0, width, height))
}

/// The window `(x0, y0, w, h)` of `img` resized to `width × height`, computing only the window's
/// pixels (each the same as in the whole resize): a crop of a huge resize costs what it keeps.
fn resize_window(img: &RgbImage, width: usize, height: usize, (x0, y0, w, h): (usize, usize, usize, usize)) -> RgbImage {
    let columns = if width != img.width {
        resample_horizontal(img, width, x0, w)
    } else {
        crop_pixels(img, x0, 0, w, img.height)
    };
    if height != columns.height {
        resample_vertical(&columns, height, y0, h)
    } else {
        crop_pixels(&columns, 0, y0, columns.width, h)
    }
}

/// The `w × h` pixels at `(x0, y0)` (within the image).
fn crop_pixels(img: &RgbImage, x0: usize, y0: usize, w: usize, h: usize) -> RgbImage {
    if (x0, y0, w, h) == (0, 0, img.width, img.height) {
        return img.clone();
    }
    let mut data = Vec::with_capacity(w * h * 3);
    for y in y0..y0 + h {
        let start = (y * img.width + x0) * 3;
        data.extend_from_slice(&img.data[start..start + w * 3]);
    }
    RgbImage { width: w, height: h, data }
}

/// torchvision's center-crop offset: `int(round((size - crop) / 2.0))`, rounding half to even.
fn crop_offset(size: usize, crop: usize) -> usize {
    let d = size.saturating_sub(crop);
    let q = d / 2;
    if d % 2 == 1 && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

/// The central `width × height` window (at most the whole image).
pub fn center_crop(img: &RgbImage, width: usize, height: usize) -> RgbImage {
    let (x0, y0) = (crop_offset(img.width, width), crop_offset(img.height, height));
    crop_pixels(img, x0, y0, width.min(img.width), height.min(img.height))
}

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// timm's default evaluation crop fraction (224 of 256).
pub const DEFAULT_CROP_PCT: f64 = 0.875;

/// The evaluation transform for an input of `size = (height, width)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    pub size: (usize, usize),
    pub crop_pct: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocess {
    /// ImageNet mean/std, crop fraction 0.875.
    pub fn imagenet(size: (usize, usize)) -> Self {
        Self { size, crop_pct: DEFAULT_CROP_PCT, mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    /// The `(width, height)` an image of `width × height` is resized to before the crop.
    pub fn resized_size(&self, width: usize, height: usize) -> (usize, usize) {
        let scale = |s: usize| ((s as f64 / self.crop_pct).floor() as usize).max(s);
        let (h, w) = self.size;
        if h != w {
            return (scale(w), scale(h));
        }
        let short_target = scale(h);
        let (short, long) = if width <= height { (width, height) } else { (height, width) };
        let long_target = (short_target as f64 * long as f64 / short as f64) as usize;
        if width <= height {
            (short_target, long_target.max(short_target))
        } else {
            (long_target.max(short_target), short_target)
        }
    }

    /// Resize + center crop: the 8-bit image the network sees, before scaling and normalising.
    /// Only the pixels the crop keeps are resized.
    pub fn crop(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = self.resized_size(img.width, img.height);
        let (cw, ch) = (self.size.1.min(w), self.size.0.min(h));
        let window = (crop_offset(w, cw), crop_offset(h, ch), cw, ch);
        resize_window(img, w, h, window)
    }

    /// The whole transform: `[3, H, W]` f32, channel-first, normalised.
    pub fn tensor(&self, img: &RgbImage) -> Vec<f32> {
        let crop = self.crop(img);
        let plane = crop.width * crop.height;
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in crop.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (px[c] as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        out
    }

    /// The inverse of the normalisation: a `[3, H, W]` tensor as the 8-bit RGB crop it shows
    /// (row-major, 3 bytes a pixel; values outside 0 ..= 1 clamped). What `wgvit explain` and
    /// the browser draw the attention over.
    pub fn pixels(&self, tensor: &[f32], (h, w): (usize, usize)) -> Vec<u8> {
        let plane = h * w;
        (0..plane)
            .flat_map(|p| (0..3).map(move |c| ((tensor[c * plane + p] * self.std[c] + self.mean[c]).clamp(0.0, 1.0) * 255.0).round() as u8))
            .collect()
    }

    /// Decodes `bytes` and applies [`Preprocess::tensor`].
    pub fn load(&self, file: &str, bytes: &[u8]) -> Result<Vec<f32>> {
        Ok(self.tensor(&decode(file, bytes)?))
    }
}

impl RgbImage {
    /// An RGB image from interleaved 8-bit RGBA (a canvas's `ImageData`): alpha dropped, as
    /// `PIL.Image.convert("RGB")` does for an RGBA image.
    pub fn from_rgba(width: usize, height: usize, rgba: &[u8]) -> Result<Self> {
        let needed = width.checked_mul(height).and_then(|n| n.checked_mul(4));
        if needed != Some(rgba.len()) {
            let needed = needed.map_or("more than usize::MAX".to_string(), |n| n.to_string());
            return Err(Error::Invalid(format!("an RGBA image of {width}x{height} needs {needed} bytes, got {}", rgba.len())));
        }
        if width == 0 || height == 0 {
            return Err(Error::Invalid("the image is empty (0 pixels)".into()));
        }
        let data = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        Ok(Self { width, height, data })
    }
}

/// The largest input side any model takes (a 16384² image is 3 GiB of f32 already).
pub const MAX_SIDE: usize = 16384;

/// `S` or `HxW` → `(height, width)`.
pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Invalid(format!("size '{s}': expected S or HxW with sides 1 ..= {MAX_SIDE}, e.g. 224 or 224x448"));
    let nums: Vec<usize> = s.split(['x', 'X']).map(|p| p.trim().parse::<usize>().map_err(|_| bad())).collect::<Result<_>>()?;
    match nums[..] {
        [n] if n > 0 && n <= MAX_SIDE => Ok((n, n)),
        [h, w] if h > 0 && w > 0 && h <= MAX_SIDE && w <= MAX_SIDE => Ok((h, w)),
        _ => Err(bad()),
    }
}

/// Softmax probabilities (in f64 for the sum), then the `k` largest as (index, probability);
/// ties go to the lower index.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f64)> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let exps: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| exps[b].total_cmp(&exps[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, exps[i] / sum)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_offsets_round_half_to_even_like_python() {
        // round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, round(3.5) = 4
        assert_eq!([1, 3, 5, 7, 4].map(|d| crop_offset(10 + d, 10)), [0, 2, 2, 4, 2]);
    }

    #[test]
    fn resized_size_follows_timm_and_torchvision() {
        let p = Preprocess::imagenet((224, 224));
        assert_eq!(p.resized_size(500, 375), (341, 256)); // int(256 * 500 / 375) = 341
        assert_eq!(p.resized_size(375, 500), (256, 341));
        assert_eq!(Preprocess::imagenet((32, 32)).resized_size(64, 64), (36, 36)); // floor(32 / 0.875)
        assert_eq!(Preprocess::imagenet((32, 64)).resized_size(100, 100), (73, 36));
    }

    #[test]
    fn taps_sum_to_one_in_fixed_point() {
        for (i, o) in [(100, 36), (64, 73), (7, 3), (3, 7), (1, 5)] {
            let t = taps(i, o, 0, o);
            for (xx, &(_, n)) in t.bounds.iter().enumerate() {
                let s: i64 = t.weights[xx * t.ksize..xx * t.ksize + n].iter().map(|&w| w as i64).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= n as i64, "{i}->{o} at {xx}: {s}");
            }
        }
    }

    #[test]
    fn a_resized_window_equals_the_crop_of_the_whole_resize() {
        let data: Vec<u8> = (0..23 * 17 * 3).map(|i| (i * 37 % 251) as u8).collect();
        let img = RgbImage::new(23, 17, data).unwrap();
        for (w, h, window) in [(40, 30, (5, 3, 20, 21)), (9, 8, (1, 0, 7, 8)), (23, 40, (0, 7, 23, 9)), (60, 17, (13, 2, 30, 15))] {
            let (x0, y0, cw, ch) = window;
            let whole = crop_pixels(&resize_bicubic(&img, w, h), x0, y0, cw, ch);
            assert_eq!(resize_window(&img, w, h, window), whole, "{w}x{h} {window:?}");
        }
    }

    #[test]
    fn rgba_drops_alpha_and_sizes_parse() {
        let img = RgbImage::from_rgba(2, 1, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(img.data, [1, 2, 3, 5, 6, 7]);
        assert!(RgbImage::from_rgba(2, 2, &[0; 8]).is_err());
        assert_eq!(parse_size("224").unwrap(), (224, 224));
        assert_eq!(parse_size("32x64").unwrap(), (32, 64));
        assert!(parse_size("0").is_err() && parse_size("a").is_err());
        assert_eq!(top_k(&[0.0, 2.0, 2.0, 1.0], 2).iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_constant_image_stays_constant() {
        let img = RgbImage::new(9, 5, [10u8, 200, 77].repeat(45)).unwrap();
        for (w, h) in [(4, 3), (20, 11), (9, 2)] {
            let r = resize_bicubic(&img, w, h);
            assert!(r.data.chunks_exact(3).all(|p| p == [10, 200, 77]), "{w}x{h}");
        }
    }
}
