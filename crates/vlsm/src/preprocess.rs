//! Image preprocessing as the reference image processors do it.
//!
//! * [`pil_resize`] / [`pil_resize_gray`] / [`pil_resize_raw`]: Pillow's `Image.resize` on 8-bit
//!   images, bit-exact: for the convolution filters Pillow's `ImagingResample` (separable two-pass
//!   convolution, support scaled by the downscale factor, coefficients normalised then turned into
//!   22-bit fixed point, rounding accumulator, clip to u8 after each pass, horizontal pass first on
//!   only the rows the vertical pass reads — except, since Pillow 13, vertical first when the
//!   height shrinks by more than twice as many pixels as the width); for `Nearest` Pillow's affine scale
//!   (`ImagingScaleAffine`). Re-implemented from the description of Pillow's
//!   `src/libImaging/Resample.c` and `Geometry.c`.
//! * [`ImageProcessorConfig`]: a HF `preprocessor_config.json` (`ViTImageProcessor`,
//!   `CLIPImageProcessor`) and [`ImageProcessorConfig::preprocess`], which reproduces the PIL
//!   ("slow") processor's `pixel_values`: resize (PIL) → center crop → rescale (`f64` multiply,
//!   then `f32`) → normalise (`(x - mean) / std` in `f32`).
//! * [`visual_prompt`]: the CLIPSeg paper's visual prompt engineering, as defined in
//!   `tools/make_clipseg_fixtures.py`.

use candle_core::{Device, Tensor};
use image::{GrayImage, RgbImage};
use serde_json::Value;
use std::path::Path;

/// Errors from preprocessing.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed image processor config {path}: {msg}")]
    Config { path: String, msg: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, PreprocessError>;

/// Pillow resampling filters (`PIL.Image.Resampling`), with Pillow's integer codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest = 0,
    Lanczos = 1,
    Bilinear = 2,
    Bicubic = 3,
    Box = 4,
    Hamming = 5,
}

impl Filter {
    /// From Pillow's integer code (as in `preprocessor_config.json`'s `resample`).
    pub fn from_pil(code: i64) -> Result<Self> {
        Ok(match code {
            0 => Filter::Nearest,
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => {
                return Err(PreprocessError::Invalid(format!(
                    "unknown PIL resample filter {code}"
                )))
            }
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    // C: sin(x) / x * (0.54f + 0.46f * cos(x)) with float literals.
                    x.sin() / x * (0.54f32 as f64 + 0.46f32 as f64 * x.cos())
                }
            }
            Filter::Bicubic => {
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
            Filter::Lanczos => {
                fn sinc(x: f64) -> f64 {
                    if x == 0.0 {
                        1.0
                    } else {
                        let x = x * std::f64::consts::PI;
                        x.sin() / x
                    }
                }
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index, number of taps, and fixed-point coefficients
/// (`ksize` per output pixel).
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    k: Vec<i32>,
}

fn precompute_coeffs(
    in_size: usize,
    in0: f32,
    in1: f32,
    out_size: usize,
    filter: Filter,
) -> Coeffs {
    let scale = (in1 - in0) as f64 / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut kk = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 as f64 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C `(int)` truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let xmax = xmax.max(0) as usize;
        let mut ww = 0.0;
        for (x, slot) in kk.iter_mut().enumerate().take(xmax) {
            let w = filter.eval(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *slot = w;
            ww += w;
        }
        let row = &mut k[xx * ksize..(xx + 1) * ksize];
        for x in 0..xmax {
            let mut w = kk[x];
            if ww != 0.0 {
                w /= ww;
            }
            let f = (1i64 << PRECISION_BITS) as f64;
            row[x] = if w < 0.0 {
                (-0.5 + w * f) as i32
            } else {
                (0.5 + w * f) as i32
            };
        }
        bounds.push((xmin as usize, xmax));
    }
    Coeffs { ksize, bounds, k }
}

#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow `Image.resize((out_w, out_h), filter)` on interleaved 8-bit data with `channels`
/// channels per pixel (1 = "L", 3 = "RGB", 4 = "RGBA" treated per channel, without Pillow's
/// alpha premultiplication). Returns the resized data.
pub fn pil_resize_raw(
    data: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(data.len(), w * h * channels, "pil_resize_raw: data length");
    assert!(
        out_w > 0 && out_h > 0 && w > 0 && h > 0,
        "pil_resize_raw: empty image"
    );
    if w == out_w && h == out_h {
        return data.to_vec();
    }
    let c = channels;
    if filter == Filter::Nearest {
        // ImagingScaleAffine: source coordinate accumulated in f64 from a/2, step a = in/out.
        let ax = w as f32 as f64 / out_w as f64;
        let ay = h as f32 as f64 / out_h as f64;
        let coord = |v: f64| if v < 0.0 { -1i64 } else { v as i64 };
        let mut xin = Vec::with_capacity(out_w);
        let mut xo = ax * 0.5;
        for _ in 0..out_w {
            xin.push(coord(xo).clamp(0, w as i64 - 1) as usize);
            xo += ax;
        }
        let mut out = vec![0u8; out_w * out_h * c];
        let mut yo = ay * 0.5;
        for y in 0..out_h {
            let yi = coord(yo).clamp(0, h as i64 - 1) as usize;
            yo += ay;
            let src = &data[yi * w * c..(yi + 1) * w * c];
            let dst = &mut out[y * out_w * c..(y + 1) * out_w * c];
            for (x, &sx) in xin.iter().enumerate() {
                dst[x * c..(x + 1) * c].copy_from_slice(&src[sx * c..(sx + 1) * c]);
            }
        }
        return out;
    }
    let need_h = out_w != w;
    let need_v = out_h != h;
    if vertical_first(w, h, out_w, out_h) {
        // Pillow >= 13: vertical pass first (all columns), then the horizontal pass.
        let mut cur = data.to_vec();
        if need_v {
            let vert = precompute_coeffs(h, 0.0, h as f32, out_h, filter);
            cur = vertical_pass(&cur, w * c, &vert, out_h);
        }
        if need_h {
            let hz = precompute_coeffs(w, 0.0, w as f32, out_w, filter);
            cur = horizontal_pass(&cur, w, c, 0, out_h, &hz, out_w);
        }
        return cur;
    }
    let mut vert = precompute_coeffs(h, 0.0, h as f32, out_h, filter);
    if !need_h {
        return vertical_pass(data, w * c, &vert, out_h);
    }
    // Horizontal pass over only the rows the vertical pass reads.
    let ybox_first = vert.bounds[0].0;
    let ybox_last = vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1;
    for b in vert.bounds.iter_mut() {
        b.0 -= ybox_first;
    }
    let hz = precompute_coeffs(w, 0.0, w as f32, out_w, filter);
    let tmp = horizontal_pass(data, w, c, ybox_first, ybox_last - ybox_first, &hz, out_w);
    if !need_v {
        return tmp;
    }
    vertical_pass(&tmp, out_w * c, &vert, out_h)
}

/// Pass order of Pillow 13's `ImagingResampleInner` (python-pillow/Pillow#9549, "if height is
/// scaled down significantly more than width, resize vertically first"): vertical first iff the
/// height shrinks by more than twice as many pixels as the width. Determined against Pillow
/// 13.0.0 on a grid of sizes for three source shapes (wide, 4:3, tall); Pillow ≤ 12 always ran
/// the horizontal pass first.
fn vertical_first(w: usize, h: usize, out_w: usize, out_h: usize) -> bool {
    out_h < h && (h as i64 - out_h as i64) > 2 * (w as i64 - out_w as i64)
}

fn horizontal_pass(
    data: &[u8],
    w: usize,
    c: usize,
    row0: usize,
    rows: usize,
    hz: &Coeffs,
    out_w: usize,
) -> Vec<u8> {
    let mut t = vec![0u8; out_w * rows * c];
    for yy in 0..rows {
        let src = &data[(yy + row0) * w * c..(yy + row0 + 1) * w * c];
        let dst = &mut t[yy * out_w * c..(yy + 1) * out_w * c];
        for xx in 0..out_w {
            let (xmin, xmax) = hz.bounds[xx];
            let k = &hz.k[xx * hz.ksize..xx * hz.ksize + xmax];
            for ch in 0..c {
                let mut ss: i32 = 1 << (PRECISION_BITS - 1);
                for (x, &kx) in k.iter().enumerate() {
                    ss = ss.wrapping_add((src[(x + xmin) * c + ch] as i32).wrapping_mul(kx));
                }
                dst[xx * c + ch] = clip8(ss);
            }
        }
    }
    t
}

/// Vertical pass over rows of `stride` bytes.
fn vertical_pass(data: &[u8], stride: usize, vert: &Coeffs, out_h: usize) -> Vec<u8> {
    let mut out = vec![0u8; stride * out_h];
    for yy in 0..out_h {
        let (ymin, ymax) = vert.bounds[yy];
        let k = &vert.k[yy * vert.ksize..yy * vert.ksize + ymax];
        let dst = &mut out[yy * stride..(yy + 1) * stride];
        for (xx, d) in dst.iter_mut().enumerate() {
            let mut ss: i32 = 1 << (PRECISION_BITS - 1);
            for (y, &ky) in k.iter().enumerate() {
                ss = ss.wrapping_add((data[(y + ymin) * stride + xx] as i32).wrapping_mul(ky));
            }
            *d = clip8(ss);
        }
    }
    out
}

/// Pillow `Image.resize((w, h), filter)` of an RGB image, bit-exact.
pub fn pil_resize(img: &RgbImage, w: u32, h: u32, filter: Filter) -> RgbImage {
    let out = pil_resize_raw(
        img.as_raw(),
        img.width() as usize,
        img.height() as usize,
        3,
        w as usize,
        h as usize,
        filter,
    );
    RgbImage::from_raw(w, h, out).expect("buffer size")
}

/// Pillow `Image.resize((w, h), filter)` of an "L" image (e.g. a mask with `Filter::Nearest`).
pub fn pil_resize_gray(img: &GrayImage, w: u32, h: u32, filter: Filter) -> GrayImage {
    let out = pil_resize_raw(
        img.as_raw(),
        img.width() as usize,
        img.height() as usize,
        1,
        w as usize,
        h as usize,
        filter,
    );
    GrayImage::from_raw(w, h, out).expect("buffer size")
}

/// Target of the resize step.
#[derive(Debug, Clone, PartialEq)]
pub enum ResizeTarget {
    /// Resize to exactly `height` x `width` (aspect ratio not kept).
    Exact { height: u32, width: u32 },
    /// Shorter edge to `shortest_edge`, longer edge `int(shortest_edge * long / short)`.
    ShortestEdge(u32),
}

/// The fields of a HF `preprocessor_config.json` that `ViTImageProcessor` /
/// `CLIPImageProcessor` use; defaults follow transformers for the given processor type.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorConfig {
    pub image_processor_type: String,
    pub do_resize: bool,
    pub size: ResizeTarget,
    pub resample: Filter,
    pub do_center_crop: bool,
    /// `(height, width)`
    pub crop_size: (u32, u32),
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

const IMAGENET_STANDARD: [f32; 3] = [0.5, 0.5, 0.5];
#[allow(clippy::excessive_precision)]
const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

impl ImageProcessorConfig {
    /// transformers' `ViTImageProcessor()` defaults (224x224, bilinear, mean = std = 0.5).
    pub fn vit_default() -> Self {
        Self {
            image_processor_type: "ViTImageProcessor".into(),
            do_resize: true,
            size: ResizeTarget::Exact {
                height: 224,
                width: 224,
            },
            resample: Filter::Bilinear,
            do_center_crop: false,
            crop_size: (224, 224),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: IMAGENET_STANDARD,
            image_std: IMAGENET_STANDARD,
        }
    }

    /// transformers' `CLIPImageProcessor()` defaults (shortest edge 224, bicubic, crop 224,
    /// OpenAI CLIP mean/std).
    pub fn clip_default() -> Self {
        Self {
            image_processor_type: "CLIPImageProcessor".into(),
            do_resize: true,
            size: ResizeTarget::ShortestEdge(224),
            resample: Filter::Bicubic,
            do_center_crop: true,
            crop_size: (224, 224),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
        }
    }

    /// The CLIPSeg (CIDAS) processor at `size` x `size`: bilinear, ImageNet mean/std.
    pub fn clipseg(size: u32) -> Self {
        Self {
            size: ResizeTarget::Exact {
                height: size,
                width: size,
            },
            image_mean: [0.485, 0.456, 0.406],
            image_std: [0.229, 0.224, 0.225],
            ..Self::vit_default()
        }
    }

    /// Reads a `preprocessor_config.json`; errors name the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PreprocessError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text).map_err(|e| match e {
            PreprocessError::Config { msg, .. } => PreprocessError::Config {
                path: path.display().to_string(),
                msg,
            },
            e => e,
        })
    }

    /// Parses the JSON text of a `preprocessor_config.json` (unknown fields ignored).
    pub fn from_json_str(text: &str) -> Result<Self> {
        let bad = |msg: String| PreprocessError::Config {
            path: "<string>".into(),
            msg,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("expected a JSON object".into()))?;
        let ty = obj
            .get("image_processor_type")
            .and_then(Value::as_str)
            .unwrap_or("ViTImageProcessor");
        let is_clip = ty.starts_with("CLIPImageProcessor");
        let mut c = if is_clip {
            Self::clip_default()
        } else {
            Self::vit_default()
        };
        c.image_processor_type = ty
            .trim_end_matches("Fast")
            .trim_end_matches("Pil")
            .to_string();
        let get_bool = |k: &str, d: bool| -> Result<bool> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(d),
                Some(Value::Bool(b)) => Ok(*b),
                Some(o) => Err(bad(format!("{k}: expected a boolean, found {o}"))),
            }
        };
        let get_u32 = |k: &str, v: &Value| -> Result<u32> {
            v.as_u64()
                .filter(|n| *n > 0 && *n <= u32::MAX as u64)
                .map(|n| n as u32)
                .ok_or_else(|| bad(format!("{k}: expected a positive integer, found {v}")))
        };
        let size_dict = |k: &str, v: &Value, default_to_square: bool| -> Result<ResizeTarget> {
            if v.is_u64() {
                let s = get_u32(k, v)?;
                return Ok(if default_to_square {
                    ResizeTarget::Exact {
                        height: s,
                        width: s,
                    }
                } else {
                    ResizeTarget::ShortestEdge(s)
                });
            }
            let o = v
                .as_object()
                .ok_or_else(|| bad(format!("{k}: expected an integer or an object")))?;
            match (o.get("height"), o.get("width"), o.get("shortest_edge")) {
                (Some(h), Some(w), _) if !h.is_null() && !w.is_null() => Ok(ResizeTarget::Exact {
                    height: get_u32(&format!("{k}.height"), h)?,
                    width: get_u32(&format!("{k}.width"), w)?,
                }),
                (_, _, Some(s)) if !s.is_null() => Ok(ResizeTarget::ShortestEdge(get_u32(
                    &format!("{k}.shortest_edge"),
                    s,
                )?)),
                _ => Err(bad(format!(
                    "{k}: unsupported size {v} (need height+width or shortest_edge)"
                ))),
            }
        };
        let triple = |k: &str, v: &Value| -> Result<[f32; 3]> {
            if let Some(x) = v.as_f64() {
                return Ok([x as f32; 3]);
            }
            let a = v
                .as_array()
                .ok_or_else(|| bad(format!("{k}: expected a number or a list of 3")))?;
            if a.len() != 3 {
                return Err(bad(format!("{k}: expected 3 values, found {}", a.len())));
            }
            let mut out = [0f32; 3];
            for (o, x) in out.iter_mut().zip(a) {
                *o = x
                    .as_f64()
                    .ok_or_else(|| bad(format!("{k}: not a number: {x}")))?
                    as f32;
            }
            Ok(out)
        };
        c.do_resize = get_bool("do_resize", c.do_resize)?;
        c.do_center_crop = get_bool("do_center_crop", c.do_center_crop)?;
        c.do_rescale = get_bool("do_rescale", c.do_rescale)?;
        c.do_normalize = get_bool("do_normalize", c.do_normalize)?;
        if let Some(v) = obj.get("size").filter(|v| !v.is_null()) {
            c.size = size_dict("size", v, !is_clip)?;
        }
        if let Some(v) = obj.get("crop_size").filter(|v| !v.is_null()) {
            c.crop_size = match size_dict("crop_size", v, true)? {
                ResizeTarget::Exact { height, width } => (height, width),
                ResizeTarget::ShortestEdge(_) => {
                    return Err(bad("crop_size: needs height and width".into()))
                }
            };
        }
        if let Some(v) = obj.get("resample").filter(|v| !v.is_null()) {
            c.resample = Filter::from_pil(
                v.as_i64()
                    .ok_or_else(|| bad(format!("resample: not an integer: {v}")))?,
            )
            .map_err(|e| bad(e.to_string()))?;
        }
        if let Some(v) = obj.get("rescale_factor").filter(|v| !v.is_null()) {
            c.rescale_factor = v
                .as_f64()
                .ok_or_else(|| bad(format!("rescale_factor: not a number: {v}")))?;
        }
        if let Some(v) = obj.get("image_mean").filter(|v| !v.is_null()) {
            c.image_mean = triple("image_mean", v)?;
        }
        if let Some(v) = obj.get("image_std").filter(|v| !v.is_null()) {
            c.image_std = triple("image_std", v)?;
        }
        Ok(c)
    }

    /// Output `(height, width)` of `preprocess` for an input of `w` x `h`.
    pub fn output_size(&self, w: u32, h: u32) -> (u32, u32) {
        let (rh, rw) = self.resize_size(w, h);
        if self.do_center_crop {
            self.crop_size
        } else {
            (rh, rw)
        }
    }

    fn resize_size(&self, w: u32, h: u32) -> (u32, u32) {
        if !self.do_resize {
            return (h, w);
        }
        match self.size {
            ResizeTarget::Exact { height, width } => (height, width),
            ResizeTarget::ShortestEdge(s) => {
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                let new_long = (s as f64 * long as f64 / short as f64) as u32;
                if w <= h {
                    (new_long, s)
                } else {
                    (s, new_long)
                }
            }
        }
    }

    /// The u8 image after resize and center crop (before rescale/normalise).
    pub fn resize_and_crop(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        let (rh, rw) = self.resize_size(w, h);
        let resized = if self.do_resize {
            pil_resize(img, rw, rh, self.resample)
        } else {
            img.clone()
        };
        if self.do_center_crop {
            center_crop(&resized, self.crop_size.0, self.crop_size.1)
        } else {
            resized
        }
    }

    /// `pixel_values` as CHW f32 (length 3*H*W) plus `(H, W)`.
    pub fn preprocess_chw(&self, img: &RgbImage) -> (Vec<f32>, u32, u32) {
        let im = self.resize_and_crop(img);
        let (w, h) = im.dimensions();
        let n = (w * h) as usize;
        let mut out = vec![0f32; 3 * n];
        let raw = im.as_raw();
        for c in 0..3 {
            let (m, s) = (self.image_mean[c], self.image_std[c]);
            let plane = &mut out[c * n..(c + 1) * n];
            for (i, o) in plane.iter_mut().enumerate() {
                let v = raw[i * 3 + c];
                let mut x = if self.do_rescale {
                    (v as f64 * self.rescale_factor) as f32
                } else {
                    v as f32
                };
                if self.do_normalize {
                    x = (x - m) / s;
                }
                *o = x;
            }
        }
        (out, h, w)
    }

    /// `pixel_values` of one image: `[1, 3, H, W]` f32 on the CPU.
    pub fn preprocess(&self, img: &RgbImage) -> Result<Tensor> {
        self.preprocess_batch(std::slice::from_ref(img))
    }

    /// `pixel_values` of several images: `[B, 3, H, W]` f32 on the CPU. All outputs must have
    /// the same size (always true with an exact `size` or a center crop).
    pub fn preprocess_batch(&self, imgs: &[RgbImage]) -> Result<Tensor> {
        if imgs.is_empty() {
            return Err(PreprocessError::Invalid(
                "preprocess_batch: no images".into(),
            ));
        }
        let outs: Vec<(Vec<f32>, u32, u32)> = {
            use rayon::prelude::*;
            imgs.par_iter().map(|im| self.preprocess_chw(im)).collect()
        };
        let (h, w) = (outs[0].1, outs[0].2);
        if let Some(o) = outs.iter().find(|o| (o.1, o.2) != (h, w)) {
            return Err(PreprocessError::Invalid(format!(
                "preprocess_batch: output sizes differ ({}x{} vs {}x{}); use an exact size or a center crop",
                w, h, o.2, o.1
            )));
        }
        let mut data = Vec::with_capacity(outs.len() * 3 * (h * w) as usize);
        for o in &outs {
            data.extend_from_slice(&o.0);
        }
        Ok(Tensor::from_vec(
            data,
            (imgs.len(), 3, h as usize, w as usize),
            &Device::Cpu,
        )?)
    }
}

impl<'de> serde::Deserialize<'de> for ImageProcessorConfig {
    /// Deserialises a `preprocessor_config.json` object with transformers' defaults and
    /// legacy forms (integer `size`/`crop_size`, scalar mean/std); unknown fields are ignored.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Self::from_json_str(&v.to_string()).map_err(serde::de::Error::custom)
    }
}

/// transformers' `center_crop` (top = (H - ch) // 2, left = (W - cw) // 2; zero padding
/// when the image is smaller than the crop).
pub fn center_crop(img: &RgbImage, crop_h: u32, crop_w: u32) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (ch, cw) = (crop_h as i64, crop_w as i64);
    let top = (h - ch).div_euclid(2);
    let left = (w - cw).div_euclid(2);
    // Offsets of the original image inside the (possibly) padded canvas.
    let (nh, nw) = (ch.max(h), cw.max(w));
    let top_pad = (nh - h + 1) / 2;
    let left_pad = (nw - w + 1) / 2;
    let (t0, l0) = if top >= 0 && left >= 0 && top + ch <= h && left + cw <= w {
        (top, left)
    } else {
        (top + top_pad, left + left_pad)
    };
    let inside = top >= 0 && left >= 0 && top + ch <= h && left + cw <= w;
    let mut out = RgbImage::new(crop_w, crop_h);
    for y in 0..ch {
        for x in 0..cw {
            let (cy, cx) = (t0 + y, l0 + x); // canvas coordinates
            let (sy, sx) = if inside {
                (cy, cx)
            } else {
                (cy - top_pad, cx - left_pad)
            };
            if sy >= 0 && sy < h && sx >= 0 && sx < w {
                out.put_pixel(x as u32, y as u32, *img.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    out
}

/// Gaussian sigma of the visual-prompt background blur.
pub const VISUAL_PROMPT_SIGMA: f64 = 2.0;
/// Radius (taps = 2r+1) of the visual-prompt background blur.
pub const VISUAL_PROMPT_RADIUS: usize = 6;
/// Background intensity factor of the visual prompt.
pub const VISUAL_PROMPT_DARKEN: f32 = 0.1;

fn reflect101(i: i64, n: i64) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - i;
    }
    i as usize
}

/// The CLIPSeg paper's visual prompt engineering, as `tools/make_clipseg_fixtures.py`
/// defines it: background (mask ≤ 127) = 0.1 × Gaussian blur (σ 2, radius 6, reflect-101,
/// f32, horizontal then vertical) of the image, foreground kept; rounded `floor(x + 0.5)`;
/// cropped to the mask's bounding box grown by `ceil(max(bw, bh) / 10)` on each side.
pub fn visual_prompt(img: &RgbImage, mask: &GrayImage) -> Result<RgbImage> {
    if img.dimensions() != mask.dimensions() {
        return Err(PreprocessError::Invalid(format!(
            "prompt image is {}x{} but its mask is {}x{}",
            img.width(),
            img.height(),
            mask.width(),
            mask.height()
        )));
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    let r = VISUAL_PROMPT_RADIUS as i64;
    let mut wts: Vec<f64> = (-r..=r)
        .map(|k| (-((k * k) as f64) / (2.0 * VISUAL_PROMPT_SIGMA * VISUAL_PROMPT_SIGMA)).exp())
        .collect();
    let sum: f64 = wts.iter().sum();
    wts.iter_mut().for_each(|x| *x /= sum);
    let wts: Vec<f32> = wts.into_iter().map(|x| x as f32).collect();
    let src: Vec<f32> = img.as_raw().iter().map(|&v| v as f32).collect();
    let mut tmp = vec![0f32; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let mut acc = 0f32;
                for (i, k) in (-r..=r).enumerate() {
                    let sx = reflect101(x as i64 + k, w as i64);
                    acc += wts[i] * src[(y * w + sx) * 3 + c];
                }
                tmp[(y * w + x) * 3 + c] = acc;
            }
        }
    }
    let mut blur = vec![0f32; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let mut acc = 0f32;
                for (i, k) in (-r..=r).enumerate() {
                    let sy = reflect101(y as i64 + k, h as i64);
                    acc += wts[i] * tmp[(sy * w + x) * 3 + c];
                }
                blur[(y * w + x) * 3 + c] = acc;
            }
        }
    }
    let m = mask.as_raw();
    let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0usize, usize::MAX, 0usize);
    for y in 0..h {
        for x in 0..w {
            if m[y * w + x] > 127 {
                x0 = x0.min(x);
                x1 = x1.max(x + 1);
                y0 = y0.min(y);
                y1 = y1.max(y + 1);
            }
        }
    }
    if x0 == usize::MAX {
        return Err(PreprocessError::Invalid(
            "the prompt mask is empty (no pixel > 127)".into(),
        ));
    }
    let mg = (x1 - x0).max(y1 - y0).div_ceil(10);
    let (cx0, cx1) = (x0.saturating_sub(mg), (x1 + mg).min(w));
    let (cy0, cy1) = (y0.saturating_sub(mg), (y1 + mg).min(h));
    let raw = img.as_raw();
    let mut out = RgbImage::new((cx1 - cx0) as u32, (cy1 - cy0) as u32);
    for y in cy0..cy1 {
        for x in cx0..cx1 {
            let mut px = [0u8; 3];
            for (c, p) in px.iter_mut().enumerate() {
                let i = (y * w + x) * 3 + c;
                *p = if m[y * w + x] > 127 {
                    raw[i]
                } else {
                    (VISUAL_PROMPT_DARKEN * blur[i] + 0.5)
                        .floor()
                        .clamp(0.0, 255.0) as u8
                };
            }
            out.put_pixel((x - cx0) as u32, (y - cy0) as u32, image::Rgb(px));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_resize_copies() {
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8, y as u8, 7]));
        assert_eq!(pil_resize(&img, 5, 4, Filter::Bicubic), img);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 99]));
        for f in [
            Filter::Bilinear,
            Filter::Bicubic,
            Filter::Lanczos,
            Filter::Box,
            Filter::Hamming,
            Filter::Nearest,
        ] {
            let out = pil_resize(&img, 11, 50, f);
            assert!(out.pixels().all(|p| p.0 == [200, 10, 99]), "{f:?}");
        }
    }

    #[test]
    fn config_defaults_and_legacy_int_size() {
        let c = ImageProcessorConfig::from_json_str(r#"{"size": 352, "foo": 1}"#).unwrap();
        assert_eq!(
            c.size,
            ResizeTarget::Exact {
                height: 352,
                width: 352
            }
        );
        assert_eq!(c.image_mean, [0.5; 3]);
        let c = ImageProcessorConfig::from_json_str(
            r#"{"image_processor_type": "CLIPImageProcessor", "size": 224, "crop_size": 224}"#,
        )
        .unwrap();
        assert_eq!(c.size, ResizeTarget::ShortestEdge(224));
        assert!(c.do_center_crop);
        assert_eq!(c.resample, Filter::Bicubic);
        assert!(ImageProcessorConfig::from_json_str(r#"{"resample": 9}"#).is_err());
    }
}
