//! Segmenting a volume slice by slice: every slice along a voxel axis through the model in
//! batches (the image encoder once per slice for all conditions), one window for the whole
//! volume. Shared by `vlsm segment` (and meant for `vlsm eval` and the server).

use std::sync::mpsc;

use anyhow::{bail, Result};
use candle_core::Tensor;
use image::{DynamicImage, GrayImage, RgbImage};

use crate::io::{self, SliceData, Volume, VoxelData, WindowMap, Windowing};
use crate::pipeline::{self, Segmenter};

/// Conditions decoded at once for one slice.
pub const PROMPT_BATCH: usize = 16;

#[derive(Debug, Clone, Copy)]
pub struct VolumeOptions {
    /// Voxel axis the slices are cut along (0, 1 or 2).
    pub axis: usize,
    pub windowing: Windowing,
    /// Slices per encoder batch.
    pub batch: usize,
    pub threshold: f32,
    /// Keep the probabilities too.
    pub probs: bool,
    /// DICOM MONOCHROME1 (low values bright): the windowed slices are inverted (255 - v), as a
    /// viewer displays them after the VOI window; the values themselves are unchanged.
    pub invert: bool,
}

/// Per condition: a uint8 0/1 mask and, when asked, f32 probabilities, in the volume's voxel
/// order.
pub struct VolumePrediction {
    pub masks: Vec<Vec<u8>>,
    pub probs: Vec<Vec<f32>>,
}

/// Slice `k` along `axis` as the picture the model sees: RGB data as is, scalar data through
/// `map` (inverted with `invert`, for MONOCHROME1), grey replicated.
pub fn slice_image(vol: &Volume, axis: usize, k: usize, map: Option<&WindowMap>, invert: bool) -> Result<RgbImage> {
    let (w, h, _) = vol.slice_dims(axis);
    Ok(match (vol.slice_values(axis, k), map) {
        (SliceData::Rgb(v), _) => RgbImage::from_raw(w as u32, h as u32, v).expect("slice size"),
        (SliceData::Scalar(v), Some(m)) => {
            let g = GrayImage::from_raw(w as u32, h as u32, m.apply(&v, invert)).expect("slice size");
            DynamicImage::ImageLuma8(g).into_rgb8()
        }
        (SliceData::Scalar(_), None) => bail!("a scalar volume needs a window"),
    })
}

/// The window of a volume (None for RGB data), resolved once over all its voxels.
pub fn volume_window(vol: &Volume, windowing: Windowing) -> Result<Option<WindowMap>> {
    Ok(match &vol.data {
        VoxelData::Scalar(v) => Some(io::resolve_window(v, windowing, None)?),
        VoxelData::Rgb(_) => None,
    })
}

/// Segments every slice of `vol` under the `n` conditions of `cond` ([n, ...]). Slices are cut,
/// windowed and preprocessed on a second thread while the model runs on the previous batch;
/// `on_slice` is called after each slice. Memory: the volume, one mask per condition (one f32
/// volume more per condition with `probs`) and one batch.
pub fn segment_volume(
    seg: &Segmenter,
    vol: &Volume,
    cond: &Tensor,
    o: &VolumeOptions,
    mut on_slice: impl FnMut(),
) -> Result<VolumePrediction> {
    let nc = cond.dim(0)?;
    let nvox = vol.dims.iter().product::<usize>();
    let (w, h, _) = vol.slice_dims(o.axis.min(2));
    let mut masks: Vec<Vec<u8>> = (0..nc).map(|_| vec![0u8; nvox]).collect();
    let mut probs: Vec<Vec<f32>> = if o.probs { (0..nc).map(|_| vec![0f32; nvox]).collect() } else { Vec::new() };
    volume_logits(seg, vol, cond, o, |k, c, logits| {
        let pr = pipeline::probabilities_at(logits, w as u32, h as u32)?;
        let m: Vec<u8> = pr.iter().map(|&p| u8::from(p > o.threshold)).collect();
        io::put_slice(&mut masks[c], vol.dims, o.axis, k, &m);
        if o.probs {
            io::put_slice(&mut probs[c], vol.dims, o.axis, k, &pr);
        }
        if c + 1 == nc {
            on_slice();
        }
        Ok(())
    })?;
    Ok(VolumePrediction { masks, probs })
}

/// Runs every slice of `vol` along `o.axis` through the model under the `n` conditions of
/// `cond` ([n, ...]): `each(k, c, logits)` gets the logits [h', w'] (the model's resolution) of
/// slice `k` under condition `c`, slice by slice, conditions in order. Slices are cut, windowed
/// and preprocessed on a second thread while the model runs on the previous batch. The one
/// slice loop of [`segment_volume`] and `vlsm eval` on volumes.
pub fn volume_logits(
    seg: &Segmenter,
    vol: &Volume,
    cond: &Tensor,
    o: &VolumeOptions,
    mut each: impl FnMut(usize, usize, &Tensor) -> Result<()>,
) -> Result<()> {
    if o.axis > 2 {
        bail!("--axis must be 0, 1 or 2 (a voxel axis), got {}", o.axis);
    }
    if o.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let axis = o.axis;
    let (w, h, n) = vol.slice_dims(axis);
    if (w as u64) * (h as u64) > io::MAX_PIXELS {
        bail!("slices along axis {axis} are {w}x{h}, more than the limit of {} pixels", io::MAX_PIXELS);
    }
    let map = volume_window(vol, o.windowing)?;
    let nc = cond.dim(0)?;
    let (tx, rx) = mpsc::sync_channel::<Result<(Vec<usize>, Tensor)>>(1);
    std::thread::scope(|s| -> Result<()> {
        let map_ref = map.as_ref();
        s.spawn(move || {
            let ks: Vec<usize> = (0..n).collect();
            for chunk in ks.chunks(o.batch) {
                let item = (|| {
                    let imgs: Vec<RgbImage> =
                        chunk.iter().map(|&k| slice_image(vol, axis, k, map_ref, o.invert)).collect::<Result<_>>()?;
                    let refs: Vec<&RgbImage> = imgs.iter().collect();
                    Ok((chunk.to_vec(), seg.pixel_values(&refs)?))
                })();
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        for item in rx {
            let (ks, pv) = item?;
            let feats = seg.encode_images(&pv)?;
            for (&k, f) in ks.iter().zip(&feats) {
                for start in (0..nc).step_by(PROMPT_BATCH) {
                    let len = PROMPT_BATCH.min(nc - start);
                    let logits = seg.decode(f, &cond.narrow(0, start, len)?)?; // [len, h, w]
                    for j in 0..len {
                        each(k, start + j, &logits.get(j)?)?;
                    }
                }
            }
        }
        Ok(())
    })
}
