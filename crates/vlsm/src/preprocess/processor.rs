//! A HF `preprocessor_config.json` (`ViTImageProcessor`, `CLIPImageProcessor`) and the PIL
//! ("slow") processor's `pixel_values`.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;

use super::pil_resize::{pil_resize, Filter};
use super::{PreprocessError, Result};

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
///
/// Deserialises (through [`ConfigJson`]) with transformers' defaults and legacy forms (integer
/// `size`/`crop_size`, scalar mean/std); `null` means the default; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(try_from = "ConfigJson")]
pub struct ImageProcessorConfig {
    pub image_processor_type: String,
    pub do_resize: bool,
    pub size: ResizeTarget,
    pub resample: Filter,
    pub do_center_crop: bool,
    /// `(height, width)`
    pub crop_size: (u32, u32),
    /// How the center crop places its window (transformers and torchvision round differently).
    pub crop_rounding: CropRounding,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

/// Where a center crop's window starts when the margin is odd, and how a too-small image is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CropRounding {
    /// transformers' `center_crop`: top = (H - h) // 2; a smaller image is zero-padded with
    /// ceil((h - H) / 2) rows before it.
    #[default]
    Floor,
    /// torchvision's `CenterCrop` (open_clip): a smaller image is zero-padded with (h - H) // 2
    /// rows before it, then top = int(round((H - h) / 2.0)), Python's round (half to even).
    Torchvision,
}

const IMAGENET_STANDARD: [f32; 3] = [0.5, 0.5, 0.5];
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

impl ImageProcessorConfig {
    /// transformers' `ViTImageProcessor()` defaults (224x224, bilinear, mean = std = 0.5).
    pub fn vit_default() -> Self {
        Self {
            image_processor_type: "ViTImageProcessor".into(),
            do_resize: true,
            size: ResizeTarget::Exact { height: 224, width: 224 },
            resample: Filter::Bilinear,
            do_center_crop: false,
            crop_size: (224, 224),
            crop_rounding: CropRounding::Floor,
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
            crop_rounding: CropRounding::Floor,
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
            size: ResizeTarget::Exact { height: size, width: size },
            image_mean: [0.485, 0.456, 0.406],
            image_std: [0.229, 0.224, 0.225],
            ..Self::vit_default()
        }
    }

    /// open_clip's evaluation transform (`image_transform(size, is_train=False)`) at the vision
    /// tower's `size`: `"shortest"` resize mode is torchvision `Resize(size)` on the PIL image
    /// (shorter side to `size`, longer side truncated), then `CenterCrop(size)`; `squash` is
    /// `Resize((size, size))` alone. Then `ToTensor` (/ 255) and `Normalize(mean, std)`.
    pub fn open_clip(size: u32, resample: Filter, squash: bool, mean: [f32; 3], std: [f32; 3]) -> Self {
        Self {
            image_processor_type: "open_clip".into(),
            do_resize: true,
            size: if squash {
                ResizeTarget::Exact { height: size, width: size }
            } else {
                ResizeTarget::ShortestEdge(size)
            },
            resample,
            do_center_crop: !squash,
            crop_size: (size, size),
            crop_rounding: CropRounding::Torchvision,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: mean,
            image_std: std,
        }
    }

    /// Reads a `preprocessor_config.json`; errors name the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| PreprocessError::Io { path: path.to_path_buf(), source })?;
        Self::from_json_str(&text).map_err(|e| match e {
            PreprocessError::Config { msg, .. } => PreprocessError::Config { path: path.display().to_string(), msg },
            e => e,
        })
    }

    /// Parses the JSON text of a `preprocessor_config.json` (unknown fields ignored).
    pub fn from_json_str(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| PreprocessError::Config { path: "<string>".into(), msg: e.to_string() })
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
        let resized = if self.do_resize { pil_resize(img, rw, rh, self.resample) } else { img.clone() };
        if self.do_center_crop {
            match self.crop_rounding {
                CropRounding::Floor => center_crop(&resized, self.crop_size.0, self.crop_size.1),
                CropRounding::Torchvision => center_crop_torchvision(&resized, self.crop_size.0, self.crop_size.1),
            }
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
                let mut x = if self.do_rescale { (v as f64 * self.rescale_factor) as f32 } else { v as f32 };
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
            return Err(PreprocessError::Invalid("preprocess_batch: no images".into()));
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
        Ok(Tensor::from_vec(data, (imgs.len(), 3, h as usize, w as usize), &Device::Cpu)?)
    }
}

/// `preprocessor_config.json` as written; every key optional (absent or `null` = the default of
/// the processor type, resolved in `TryFrom`).
#[derive(serde::Deserialize)]
#[serde(rename = "ImageProcessorConfig")]
struct ConfigJson {
    #[serde(default, deserialize_with = "de::processor_type")]
    image_processor_type: Option<String>,
    do_resize: Option<bool>,
    do_center_crop: Option<bool>,
    do_rescale: Option<bool>,
    do_normalize: Option<bool>,
    #[serde(default, deserialize_with = "de::size")]
    size: Option<de::Size>,
    #[serde(default, deserialize_with = "de::crop_size")]
    crop_size: Option<de::Size>,
    #[serde(default, deserialize_with = "de::resample")]
    resample: Option<Filter>,
    rescale_factor: Option<f64>,
    #[serde(default, deserialize_with = "de::image_mean")]
    image_mean: Option<[f32; 3]>,
    #[serde(default, deserialize_with = "de::image_std")]
    image_std: Option<[f32; 3]>,
}

impl TryFrom<ConfigJson> for ImageProcessorConfig {
    type Error = String;

    fn try_from(j: ConfigJson) -> std::result::Result<Self, String> {
        let ty = j.image_processor_type.as_deref().unwrap_or("ViTImageProcessor");
        let is_clip = ty.starts_with("CLIPImageProcessor");
        let d = if is_clip { Self::clip_default() } else { Self::vit_default() };
        let crop_size = match j.crop_size {
            None => d.crop_size,
            Some(de::Size::Int(s)) => (s, s),
            Some(de::Size::Exact { height, width }) => (height, width),
            Some(de::Size::ShortestEdge(_)) => return Err("crop_size: needs height and width".into()),
        };
        let c = Self {
            image_processor_type: ty.trim_end_matches("Fast").trim_end_matches("Pil").to_string(),
            do_resize: j.do_resize.unwrap_or(d.do_resize),
            // A bare integer `size` is square for ViT, the shortest edge for CLIP.
            size: match j.size {
                None => d.size,
                Some(de::Size::Int(s)) if is_clip => ResizeTarget::ShortestEdge(s),
                Some(de::Size::Int(s)) => ResizeTarget::Exact { height: s, width: s },
                Some(de::Size::Exact { height, width }) => ResizeTarget::Exact { height, width },
                Some(de::Size::ShortestEdge(s)) => ResizeTarget::ShortestEdge(s),
            },
            resample: j.resample.unwrap_or(d.resample),
            do_center_crop: j.do_center_crop.unwrap_or(d.do_center_crop),
            crop_size,
            crop_rounding: CropRounding::Floor,
            do_rescale: j.do_rescale.unwrap_or(d.do_rescale),
            rescale_factor: j.rescale_factor.unwrap_or(d.rescale_factor),
            do_normalize: j.do_normalize.unwrap_or(d.do_normalize),
            image_mean: j.image_mean.unwrap_or(d.image_mean),
            image_std: j.image_std.unwrap_or(d.image_std),
        };
        c.check_values()?;
        Ok(c)
    }
}

/// Largest side a processor may resize or crop to: far past any model's input, and small enough
/// that the tensor it asks for can be allocated.
pub const MAX_PROCESSOR_SIDE: u32 = 8192;

impl ImageProcessorConfig {
    /// Values no reference processor has: a zero or negative std divides by zero, a huge size
    /// asks for an impossible allocation.
    fn check_values(&self) -> std::result::Result<(), String> {
        if self.image_std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(format!("image_std: {:?}, each must be a positive number", self.image_std));
        }
        if self.image_mean.iter().any(|m| !m.is_finite()) {
            return Err(format!("image_mean: {:?}, each must be a finite number", self.image_mean));
        }
        if !(self.rescale_factor.is_finite() && self.rescale_factor > 0.0) {
            return Err(format!("rescale_factor: {}, must be a positive number", self.rescale_factor));
        }
        let sides = match self.size {
            ResizeTarget::Exact { height, width } => vec![height, width],
            ResizeTarget::ShortestEdge(s) => vec![s],
        };
        for (key, v) in
            sides.iter().map(|&v| ("size", v)).chain([("crop_size", self.crop_size.0), ("crop_size", self.crop_size.1)])
        {
            if v == 0 || v > MAX_PROCESSOR_SIDE {
                return Err(format!("{key}: {v}, must be 1 to {MAX_PROCESSOR_SIDE}"));
            }
        }
        Ok(())
    }
}

/// `deserialize_with` functions for the keys with legacy or lenient forms; errors name the key.
mod de {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    use super::Filter;

    /// `size` / `crop_size`: an integer (legacy) or `{height, width}` or `{shortest_edge}`.
    pub(super) enum Size {
        Int(u32),
        Exact { height: u32, width: u32 },
        ShortestEdge(u32),
    }

    type Out<T, E> = std::result::Result<Option<T>, E>;

    /// The key's value, `None` when it is `null`.
    fn value<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
        Ok(Some(Value::deserialize(d)?).filter(|v| !v.is_null()))
    }

    fn positive(k: &str, v: &Value) -> std::result::Result<u32, String> {
        v.as_u64()
            .filter(|n| *n > 0 && *n <= u32::MAX as u64)
            .map(|n| n as u32)
            .ok_or_else(|| format!("{k}: expected a positive integer, found {v}"))
    }

    fn size_of(k: &str, v: &Value) -> std::result::Result<Size, String> {
        if v.is_u64() {
            return Ok(Size::Int(positive(k, v)?));
        }
        let o = v.as_object().ok_or_else(|| format!("{k}: expected an integer or an object"))?;
        let field = |f: &str| o.get(f).filter(|x| !x.is_null());
        match (field("height"), field("width"), field("shortest_edge")) {
            (Some(h), Some(w), _) => Ok(Size::Exact {
                height: positive(&format!("{k}.height"), h)?,
                width: positive(&format!("{k}.width"), w)?,
            }),
            (_, _, Some(s)) => Ok(Size::ShortestEdge(positive(&format!("{k}.shortest_edge"), s)?)),
            _ => Err(format!("{k}: unsupported size {v} (need height+width or shortest_edge)")),
        }
    }

    /// A number (the same for the three channels) or a list of three numbers.
    fn triple(k: &str, v: &Value) -> std::result::Result<[f32; 3], String> {
        if let Some(x) = v.as_f64() {
            return Ok([x as f32; 3]);
        }
        let a = v.as_array().ok_or_else(|| format!("{k}: expected a number or a list of 3"))?;
        if a.len() != 3 {
            return Err(format!("{k}: expected 3 values, found {}", a.len()));
        }
        let mut out = [0f32; 3];
        for (o, x) in out.iter_mut().zip(a) {
            *o = x.as_f64().ok_or_else(|| format!("{k}: not a number: {x}"))? as f32;
        }
        Ok(out)
    }

    fn keyed<'de, D: Deserializer<'de>, T>(
        d: D,
        k: &str,
        parse: impl Fn(&str, &Value) -> std::result::Result<T, String>,
    ) -> Out<T, D::Error> {
        value(d)?.map(|v| parse(k, &v)).transpose().map_err(D::Error::custom)
    }

    /// Any string (a non-string counts as absent, as transformers' defaults apply then).
    pub(super) fn processor_type<'de, D: Deserializer<'de>>(d: D) -> Out<String, D::Error> {
        Ok(value(d)?.and_then(|v| v.as_str().map(str::to_string)))
    }
    pub(super) fn size<'de, D: Deserializer<'de>>(d: D) -> Out<Size, D::Error> {
        keyed(d, "size", size_of)
    }
    pub(super) fn crop_size<'de, D: Deserializer<'de>>(d: D) -> Out<Size, D::Error> {
        keyed(d, "crop_size", size_of)
    }
    /// Pillow's integer filter code.
    pub(super) fn resample<'de, D: Deserializer<'de>>(d: D) -> Out<Filter, D::Error> {
        keyed(d, "resample", |k, v| {
            let code = v.as_i64().ok_or_else(|| format!("{k}: not an integer: {v}"))?;
            Filter::from_pil(code).map_err(|e| e.to_string())
        })
    }
    pub(super) fn image_mean<'de, D: Deserializer<'de>>(d: D) -> Out<[f32; 3], D::Error> {
        keyed(d, "image_mean", triple)
    }
    pub(super) fn image_std<'de, D: Deserializer<'de>>(d: D) -> Out<[f32; 3], D::Error> {
        keyed(d, "image_std", triple)
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
            let (sy, sx) = if inside { (cy, cx) } else { (cy - top_pad, cx - left_pad) };
            if sy >= 0 && sy < h && sx >= 0 && sx < w {
                out.put_pixel(x as u32, y as u32, *img.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    out
}

/// torchvision's `center_crop` on a PIL image: zero padding of (h - H) // 2 before and
/// (h - H + 1) // 2 after where the image is smaller than the crop, then the window at
/// int(round((H - h) / 2.0)) (Python rounds halves to even).
pub fn center_crop_torchvision(img: &RgbImage, crop_h: u32, crop_w: u32) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (ch, cw) = (crop_h as i64, crop_w as i64);
    let pad_before = |size: i64, crop: i64| if crop > size { (crop - size) / 2 } else { 0 };
    let (top_pad, left_pad) = (pad_before(h, ch), pad_before(w, cw));
    let (ph, pw) = (h.max(ch), w.max(cw)); // padded size
    let offset = |size: i64, crop: i64| {
        let d = size - crop; // >= 0 after padding
        let k = d / 2;
        // d / 2.0 rounded half to even: k + 0.5 goes to k + 1 when k is odd.
        if d % 2 == 1 && k % 2 == 1 {
            k + 1
        } else {
            k
        }
    };
    let (top, left) = (offset(ph, ch), offset(pw, cw));
    let mut out = RgbImage::new(crop_w, crop_h);
    for y in 0..ch {
        for x in 0..cw {
            let (sy, sx) = (top + y - top_pad, left + x - left_pad);
            if sy >= 0 && sy < h && sx >= 0 && sx < w {
                out.put_pixel(x as u32, y as u32, *img.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_crop_rounds_half_to_even() {
        // Column x holds x: the first column kept is the crop's left offset.
        let img = RgbImage::from_fn(9, 1, |x, _| image::Rgb([x as u8, 0, 0]));
        // Margins 1, 3, 5, 7 -> offsets round(0.5)=0, round(1.5)=2, round(2.5)=2, round(3.5)=4.
        for (crop, left) in [(8, 0), (6, 2), (4, 2), (2, 4)] {
            assert_eq!(center_crop_torchvision(&img, 1, crop).get_pixel(0, 0)[0], left, "crop {crop}");
            assert_eq!(center_crop(&img, 1, crop).get_pixel(0, 0)[0], (9 - crop as u8) / 2, "crop {crop}");
        }
        // Smaller than the crop: 9 -> 12 pads 1 before (3 // 2), transformers pads 2 (ceil 1.5).
        let tv = center_crop_torchvision(&img, 1, 12);
        assert_eq!((tv.get_pixel(0, 0)[0], tv.get_pixel(1, 0)[0], tv.get_pixel(9, 0)[0]), (0, 0, 8));
        let hf = center_crop(&img, 1, 12);
        assert_eq!((hf.get_pixel(1, 0)[0], hf.get_pixel(2, 0)[0], hf.get_pixel(10, 0)[0]), (0, 0, 8));
    }

    #[test]
    fn config_defaults_and_legacy_int_size() {
        let c = ImageProcessorConfig::from_json_str(r#"{"size": 352, "foo": 1}"#).unwrap();
        assert_eq!(c.size, ResizeTarget::Exact { height: 352, width: 352 });
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

    #[test]
    fn config_nulls_dicts_scalars_and_errors() {
        let c = ImageProcessorConfig::from_json_str(
            r#"{"image_processor_type": "CLIPImageProcessorFast", "do_resize": null, "image_mean": 0.25,
                "size": {"shortest_edge": 300, "height": null}, "crop_size": {"height": 200, "width": 100}}"#,
        )
        .unwrap();
        assert_eq!(c.image_processor_type, "CLIPImageProcessor");
        assert!(c.do_resize);
        assert_eq!(c.image_mean, [0.25; 3]);
        assert_eq!(c.size, ResizeTarget::ShortestEdge(300));
        assert_eq!(c.crop_size, (200, 100));
        let c =
            ImageProcessorConfig::from_json_str(r#"{"image_processor_type": 7, "size": {"height": 3, "width": 4}}"#)
                .unwrap();
        assert_eq!(
            c,
            ImageProcessorConfig {
                size: ResizeTarget::Exact { height: 3, width: 4 },
                ..ImageProcessorConfig::vit_default()
            }
        );
        for (text, key) in [
            (r#"{"crop_size": {"shortest_edge": 3}}"#, "crop_size"),
            (r#"{"size": {"height": 0, "width": 4}}"#, "size.height"),
            (r#"{"image_std": [1, 2]}"#, "image_std"),
            (r#"{"resample": "bilinear"}"#, "resample"),
        ] {
            let e = ImageProcessorConfig::from_json_str(text).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        assert!(ImageProcessorConfig::from_json_str(r#"{"do_rescale": 1}"#).is_err());
        assert!(ImageProcessorConfig::from_json_str("[1]").is_err());
    }
}
