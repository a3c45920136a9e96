//! Volumes in `/api/segment` (and the protocol routes): a NIfTI file (`.nii`, `.nii.gz`), a zip
//! of a DICOM series, or one multi-frame DICOM, segmented slice by slice along the last voxel
//! axis with `vlsm::volume::segment_volume` (the code `vlsm segment` runs on volumes), answered
//! as JSON with per-slice RLE masks or, with `return=nifti`, as a `.nii.gz` in the source's
//! geometry (`vlsm::io::write_like`).
//!
//! Limits: `--max-voxels` (checked from the NIfTI header before any voxel is read or inflated;
//! for a series after reading it), and for zips [`MAX_ZIP_ENTRIES`] entries and
//! [`max_zip_bytes`] bytes inflated in all, checked against the central directory before
//! inflating and again while inflating (a lying directory is caught at its declared size).
//! Zip entries are written to a private temporary folder under numbered names, so entry names
//! never become paths.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use image::{DynamicImage, GrayImage};
use serde_json::{json, Value};
use vlsm::io::{self, NiftiHeader, OutputData, Volume, VoxelData, Windowing};
use vlsm::pipeline::Segmenter;
use vlsm::volume::{self as vvol, VolumeOptions, VolumePrediction};

use crate::api::{b64, bad, blocking, model_error, png, rle, ApiError, Form, Upload};
use crate::AppState;

/// Most entries a zipped series may hold.
pub const MAX_ZIP_ENTRIES: usize = 10_000;

static ZIP_INFLATED: AtomicU64 = AtomicU64::new(0);

/// Bytes inflated so far by this process's zip reader (lets a test see that a zip bomb was
/// refused before it was inflated).
pub fn zip_inflated_bytes() -> u64 {
    ZIP_INFLATED.load(Ordering::Relaxed)
}

/// Most bytes a zipped series may inflate to: 4 bytes per voxel of `--max-voxels` plus 64 MiB
/// of headers, at most 4 GiB.
pub fn max_zip_bytes(max_voxels: u64) -> u64 {
    max_voxels.saturating_mul(4).saturating_add(64 << 20).min(4 << 30)
}

/// Slices per encoder batch (as `vlsm segment --batch`'s default).
const BATCH: usize = 4;

fn is_zip(up: &Upload) -> bool {
    up.bytes.starts_with(b"PK\x03\x04")
        || up.bytes.starts_with(b"PK\x05\x06")
        || up.file_name.to_ascii_lowercase().ends_with(".zip")
}

/// Whether a `/api/segment` request asks for a volume: `volume=1`, `return=nifti`, or a zip.
pub(crate) fn wanted(form: &Form) -> bool {
    form.volume
        || form.ret.as_deref().is_some_and(|r| r.trim().eq_ignore_ascii_case("nifti"))
        || form.image.as_ref().is_some_and(is_zip)
}

/// A volume as read from an upload.
pub(crate) struct Loaded {
    pub vol: Volume,
    /// The series' own window (DICOM Window Center/Width), used under `auto`.
    pub file_window: Option<io::Window>,
    /// A MONOCHROME1 series: slices are shown to the model inverted, as viewers show them.
    pub invert: bool,
    /// "nifti" or "dicom-series".
    pub source: &'static str,
    pub notes: Vec<String>,
}

fn shown_name(up: &Upload) -> String {
    if up.file_name.is_empty() {
        "upload".into()
    } else {
        up.file_name.clone()
    }
}

/// 413 for a limit, else 422; `replace` turns temporary paths into names the client knows.
fn read_error(msg: String, replace: &[(String, String)]) -> ApiError {
    let mut msg = msg;
    for (from, to) in replace {
        msg = msg.replace(from.as_str(), to);
    }
    let status = if msg.contains("more than the limit") || msg.contains("more than this server's limit") {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    ApiError(status, format!("cannot read volume: {msg}"))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot store upload: {e}"))
}

fn too_many_voxels(what: &str, dims: [usize; 3], max: u64) -> ApiError {
    let n = dims.iter().map(|&d| d as u64).fold(1u64, |a, d| a.saturating_mul(d));
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "{what}: volume is {}x{}x{} = {n} voxels, more than this server's limit of {max} (--max-voxels)",
            dims[0], dims[1], dims[2]
        ),
    )
}

const IDENTITY: [[f64; 4]; 4] =
    [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];

/// Reads an upload as a volume (blocking): NIfTI, a zip of a DICOM series, or one DICOM file
/// (a multi-frame object is a series of its own). With `max_pixels` > 0, a raster image (PNG,
/// JPEG, ...) is read too, as a one-slice RGB volume (source "image"); with 0 it is refused.
pub(crate) fn load(up: &Upload, max_voxels: u64, max_pixels: u64) -> Result<Loaded, ApiError> {
    let shown = shown_name(up);
    if up.bytes.is_empty() {
        return Err(bad("the image field is empty"));
    }
    let dir = tempfile::Builder::new().prefix("vlsm-volume-").tempdir().map_err(internal)?;
    if is_zip(up) {
        let names = unzip(&up.bytes, dir.path(), max_zip_bytes(max_voxels)).map_err(|e| {
            let status =
                if e.contains("more than") { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::UNPROCESSABLE_ENTITY };
            ApiError(status, format!("cannot read volume: {shown}: {e}"))
        })?;
        let mut replace: Vec<(String, String)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (dir.path().join(entry_file(i)).display().to_string(), format!("{shown}:{n}")))
            .collect();
        replace.push((dir.path().display().to_string(), shown.clone()));
        return series(dir.path(), max_voxels, &shown, &replace);
    }
    let lower = up.file_name.to_ascii_lowercase();
    let ext = [".nii.gz", ".nii", ".dcm", ".dicom"].into_iter().find(|e| lower.ends_with(e)).unwrap_or(".bin");
    let path = dir.path().join(format!("upload{ext}"));
    std::fs::File::create(&path).and_then(|mut f| f.write_all(&up.bytes)).map_err(internal)?;
    let replace = vec![(path.display().to_string(), shown.clone())];
    let kind = io::file_kind(&path).map_err(|e| read_error(e.to_string(), &replace))?;
    match kind {
        io::FileKind::Nifti => {
            let dims = io::volume_dimensions(&path).map_err(|e| read_error(e.to_string(), &replace))?;
            let n = dims.iter().map(|&d| d as u64).fold(1u64, |a, d| a.saturating_mul(d));
            if n > max_voxels {
                return Err(too_many_voxels(&shown, dims, max_voxels));
            }
            let vol = io::read_volume(&path, max_voxels).map_err(|e| read_error(e.to_string(), &replace))?;
            let notes = vol.notes.clone();
            Ok(Loaded { vol, file_window: None, invert: false, source: "nifti", notes })
        }
        io::FileKind::Dicom => series(dir.path(), max_voxels, &shown, &replace),
        io::FileKind::Raster if max_pixels > 0 => {
            let img = crate::api::decode_image(up, None, max_pixels)?;
            let (w, h) = img.dimensions();
            let dims = [w as usize, h as usize, 1];
            let header = NiftiHeader::for_grid(dims, [1.0; 3], IDENTITY).map_err(|e| read_error(format!("{shown}: {e}"), &replace))?;
            let vol = Volume { header, dims, data: VoxelData::Rgb(img.into_raw()), notes: Vec::new() };
            Ok(Loaded { vol, file_window: None, invert: false, source: "image", notes: Vec::new() })
        }
        io::FileKind::Raster => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("cannot read volume: {shown}: not a volume (give a NIfTI file, a zip of a DICOM series, or a multi-frame DICOM)"),
        )),
    }
}

/// Several files of one series (a MONAI Label session of DICOM files) read as one volume; one
/// file is [`load`].
pub(crate) fn load_many(files: &[Upload], max_voxels: u64, max_pixels: u64) -> Result<Loaded, ApiError> {
    match files {
        [] => Err(bad("no image")),
        [one] => load(one, max_voxels, max_pixels),
        many => {
            let total: u64 = many.iter().map(|f| f.bytes.len() as u64).sum();
            if total > max_zip_bytes(max_voxels) {
                return Err(ApiError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the files hold {total} bytes, more than the limit of {}", max_zip_bytes(max_voxels)),
                ));
            }
            let dir = tempfile::Builder::new().prefix("vlsm-volume-").tempdir().map_err(internal)?;
            let mut replace = Vec::new();
            for (i, f) in many.iter().enumerate() {
                let path = dir.path().join(entry_file(i));
                std::fs::write(&path, &f.bytes).map_err(internal)?;
                replace.push((path.display().to_string(), shown_name(f)));
            }
            replace.push((dir.path().display().to_string(), "the uploaded files".into()));
            series(dir.path(), max_voxels, "the uploaded files", &replace)
        }
    }
}

fn series(dir: &Path, max_voxels: u64, shown: &str, replace: &[(String, String)]) -> Result<Loaded, ApiError> {
    let mut s = io::read_dicom_series(dir).map_err(|e| read_error(e.to_string(), replace))?;
    let n = s.dims.iter().map(|&d| d as u64).product::<u64>();
    if n > max_voxels {
        return Err(too_many_voxels(shown, s.dims, max_voxels));
    }
    let header = NiftiHeader::for_grid(s.dims, s.spacing, s.affine_ras())
        .map_err(|e| read_error(format!("{shown}: {e}"), replace))?;
    let notes = s.notes.iter().map(|n| replace.iter().fold(n.clone(), |m, (a, b)| m.replace(a.as_str(), b))).collect();
    let vol =
        Volume { header, dims: s.dims, data: VoxelData::Scalar(std::mem::take(&mut s.values)), notes: Vec::new() };
    Ok(Loaded { vol, file_window: s.window, invert: s.invert, source: "dicom-series", notes })
}

fn entry_file(i: usize) -> String {
    format!("{i:05}.dcm")
}

fn u16_at(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as u64)
}

fn u32_at(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64)
}

/// Extracts the files of a zip archive (stored or deflated entries) into `dir` as numbered
/// files ([`entry_file`]); returns the entry names in that order. Directories and macOS
/// resource forks are skipped. Refused: more than [`MAX_ZIP_ENTRIES`] entries, more than
/// `max_bytes` inflated in all (declared or actual), encrypted entries, other methods, zip64,
/// CRC mismatches, an entry that inflates past its declared size.
pub(crate) fn unzip(z: &[u8], dir: &Path, max_bytes: u64) -> Result<Vec<String>, String> {
    const EOCD: u64 = 0x0605_4b50;
    let short = || "not a zip archive (no end of central directory record)".to_string();
    let lo = z.len().saturating_sub(22 + 65_535);
    let eocd = (lo..=z.len().saturating_sub(22)).rev().find(|&i| u32_at(z, i) == Some(EOCD)).ok_or_else(short)?;
    let total = u16_at(z, eocd + 10).ok_or_else(short)?;
    let cd_size = u32_at(z, eocd + 12).ok_or_else(short)?;
    let cd_off = u32_at(z, eocd + 16).ok_or_else(short)?;
    if total == 0xFFFF || cd_off == 0xFFFF_FFFF || cd_size == 0xFFFF_FFFF {
        return Err("zip64 archives are not supported (more than 65535 entries or 4 GiB)".into());
    }
    if total as usize > MAX_ZIP_ENTRIES {
        return Err(format!("{total} entries, more than the limit of {MAX_ZIP_ENTRIES}"));
    }
    let cut = || "truncated or corrupt zip archive (central directory)".to_string();
    struct Entry {
        name: String,
        method: u64,
        flags: u64,
        crc: u32,
        csize: u64,
        usize: u64,
        local: u64,
    }
    let mut entries = Vec::new();
    let mut pos = cd_off as usize;
    let mut declared = 0u64;
    for _ in 0..total {
        if u32_at(z, pos) != Some(0x0201_4b50) {
            return Err(cut());
        }
        let flags = u16_at(z, pos + 8).ok_or_else(cut)?;
        let method = u16_at(z, pos + 10).ok_or_else(cut)?;
        let crc = u32_at(z, pos + 16).ok_or_else(cut)? as u32;
        let csize = u32_at(z, pos + 20).ok_or_else(cut)?;
        let usize = u32_at(z, pos + 24).ok_or_else(cut)?;
        let nlen = u16_at(z, pos + 28).ok_or_else(cut)? as usize;
        let elen = u16_at(z, pos + 30).ok_or_else(cut)? as usize;
        let clen = u16_at(z, pos + 32).ok_or_else(cut)? as usize;
        let local = u32_at(z, pos + 42).ok_or_else(cut)?;
        let name = z.get(pos + 46..pos + 46 + nlen).ok_or_else(cut)?;
        let name = String::from_utf8_lossy(name).into_owned();
        pos += 46 + nlen + elen + clen;
        if csize == 0xFFFF_FFFF || usize == 0xFFFF_FFFF || local == 0xFFFF_FFFF {
            return Err("zip64 archives are not supported (more than 65535 entries or 4 GiB)".into());
        }
        let skip = name.ends_with('/')
            || name.starts_with("__MACOSX/")
            || name.rsplit('/').next().is_some_and(|b| b.starts_with("._"));
        if skip {
            continue;
        }
        declared = declared.saturating_add(usize);
        if declared > max_bytes {
            return Err(format!("its entries inflate to more than the limit of {max_bytes} bytes"));
        }
        entries.push(Entry { name, method, flags, crc, csize, usize, local });
    }
    if entries.is_empty() {
        return Err("the zip archive holds no files".into());
    }
    let mut names = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let n = &e.name;
        if e.flags & 1 != 0 {
            return Err(format!("{n}: encrypted entries are not supported"));
        }
        let lh = e.local as usize;
        if u32_at(z, lh) != Some(0x0403_4b50) {
            return Err(format!("{n}: truncated or corrupt zip archive (local header)"));
        }
        let nlen = u16_at(z, lh + 26).ok_or_else(cut)? as usize;
        let elen = u16_at(z, lh + 28).ok_or_else(cut)? as usize;
        let start = lh + 30 + nlen + elen;
        let data = z
            .get(start..start.saturating_add(e.csize as usize))
            .ok_or_else(|| format!("{n}: truncated zip archive (the entry's data is cut)"))?;
        let reader: Box<dyn Read + '_> = match e.method {
            0 => Box::new(data),
            8 => Box::new(flate2::read::DeflateDecoder::new(data)),
            m => return Err(format!("{n}: compression method {m} is not supported (only stored and deflated)")),
        };
        // One byte past the declared size tells a lying directory.
        let mut reader = reader.take(e.usize + 1);
        let path = dir.join(entry_file(i));
        let mut out = std::fs::File::create(&path).map_err(|e| format!("cannot store an entry: {e}"))?;
        let mut crc = flate2::Crc::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        loop {
            let k = reader.read(&mut buf).map_err(|err| format!("{n}: corrupt deflate data ({err})"))?;
            if k == 0 {
                break;
            }
            got += k as u64;
            ZIP_INFLATED.fetch_add(k as u64, Ordering::Relaxed);
            if got > e.usize {
                return Err(format!("{n}: inflates to more than its declared {} bytes", e.usize));
            }
            crc.update(&buf[..k]);
            out.write_all(&buf[..k]).map_err(|e| format!("cannot store an entry: {e}"))?;
        }
        if got != e.usize {
            return Err(format!("{n}: inflates to {got} bytes, its header says {}", e.usize));
        }
        if crc.sum() != e.crc {
            return Err(format!("{n}: CRC mismatch (corrupt archive)"));
        }
        names.push(n.clone());
    }
    Ok(names)
}

/// The window a volume gets: the request's, else the file's own under `auto`.
pub(crate) fn windowing(given: Option<&str>, file_window: Option<io::Window>) -> Result<Windowing, ApiError> {
    let w = match given.map(str::trim) {
        None | Some("") => Windowing::Auto,
        Some(t) => io::parse_window(t).map_err(|e| bad(format!("window: {e}")))?,
    };
    Ok(match (w, file_window) {
        (Windowing::Auto, Some(fw)) => Windowing::Fixed(fw),
        (w, _) => w,
    })
}

/// Runs the model over every slice (blocking).
pub(crate) fn run(
    seg: &Segmenter,
    loaded: &Loaded,
    prompts: &[String],
    threshold: f32,
    windowing: Windowing,
    probs: bool,
) -> Result<VolumePrediction, ApiError> {
    let cond = seg.text_conditional(prompts).map_err(model_error)?;
    let o = VolumeOptions { axis: 2, windowing, batch: BATCH, threshold, probs, invert: loaded.invert };
    vvol::segment_volume(seg, &loaded.vol, &cond, &o, || {}).map_err(model_error)
}

/// One label volume from per-prompt masks: 0 background, k + 1 where prompt k's mask is set;
/// where several are set, the most probable (with `pred.probs`) or the last.
pub(crate) fn label_map(pred: &VolumePrediction) -> Vec<u8> {
    let n = pred.masks.first().map_or(0, |m| m.len());
    let mut out = vec![0u8; n];
    for (i, o) in out.iter_mut().enumerate() {
        let mut best: Option<(usize, f32)> = None;
        for (c, m) in pred.masks.iter().enumerate() {
            if m[i] == 0 {
                continue;
            }
            let p = pred.probs.get(c).map_or(1.0, |p| p[i]);
            if best.is_none_or(|(_, bp)| p >= bp) {
                best = Some((c, p));
            }
        }
        if let Some((c, _)) = best {
            *o = (c + 1).min(255) as u8;
        }
    }
    out
}

/// A `.nii.gz` of `data` in `header`'s geometry (`io::write_like`), as bytes.
pub(crate) fn nifti_bytes(header: &NiftiHeader, data: &[u8]) -> Result<Vec<u8>, ApiError> {
    let err = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write the mask volume: {e}"));
    let dir = tempfile::Builder::new().prefix("vlsm-mask-").tempdir().map_err(|e| err(e.to_string()))?;
    let path = dir.path().join("mask.nii.gz");
    io::write_like(&path, header, OutputData::U8(data)).map_err(|e| err(e.to_string()))?;
    std::fs::read(&path).map_err(|e| err(e.to_string()))
}

/// Checks the prompts and the threshold of a request.
pub(crate) fn check_prompts(st: &AppState, prompts: &[String]) -> Result<(), ApiError> {
    let lim = &st.limits;
    if prompts.is_empty() {
        return Err(bad("give at least one \"prompt\" field"));
    }
    if prompts.len() > lim.max_prompts {
        return Err(bad(format!("{} prompts; at most {} per request", prompts.len(), lim.max_prompts)));
    }
    if let Some(p) = prompts.iter().find(|p| p.chars().count() > lim.max_prompt_chars) {
        return Err(bad(format!("a prompt has {} characters; at most {}", p.chars().count(), lim.max_prompt_chars)));
    }
    Ok(())
}

pub(crate) fn parse_threshold(given: Option<&str>, default: f32) -> Result<f32, ApiError> {
    match given.map(str::trim) {
        None | Some("") => Ok(default),
        Some(t) => match t.parse::<f32>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
            _ => Err(bad(format!("threshold must be a number from 0 to 1, got {t:?}"))),
        },
    }
}

/// Takes a model slot (503 when the queue is full).
pub(crate) async fn enter(st: &AppState) -> Result<crate::gate::Ticket, ApiError> {
    st.gate.enter().await.ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the model queue is full ({} waiting); retry later", st.gate.max_waiting()),
        )
    })
}

/// `/api/segment` for a volume: see the module comment.
pub(crate) async fn segment(st: Arc<AppState>, form: Form) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let up = form.image.ok_or_else(|| bad("missing the image file field \"image\""))?;
    check_prompts(&st, &form.prompts)?;
    let ret = form.ret.as_deref().map(|r| r.trim().to_ascii_lowercase()).unwrap_or_default();
    let nifti = match ret.as_str() {
        "" | "json" => false,
        "nifti" => true,
        r => return Err(bad(format!("return must be json or nifti, got {r:?}"))),
    };
    let seg = st.segmenter();
    let threshold = parse_threshold(form.threshold.as_deref(), seg.default_threshold())?;
    let max_voxels = st.limits.max_voxels;
    windowing(form.window.as_deref(), None)?;
    // A volume is read holding a model slot: at most --workers volumes (up to a GiB or more each)
    // are in memory at once, however many requests wait.
    let ticket = enter(&st).await?;
    let t_queue = t0.elapsed();
    let loaded = blocking(move || load(&up, max_voxels, 0)).await?;
    let win = windowing(form.window.as_deref(), loaded.file_window)?;
    let prompts = form.prompts.clone();
    let return_image = form.return_image;
    let out = blocking(move || {
        let t1 = Instant::now();
        let pred = run(&seg, &loaded, &prompts, threshold, win, nifti && prompts.len() > 1)?;
        drop(ticket);
        let t_model = t1.elapsed();
        let vol = &loaded.vol;
        if nifti {
            let data = if prompts.len() == 1 { pred.masks[0].clone() } else { label_map(&pred) };
            return Ok(Err(nifti_bytes(&vol.header, &data)?));
        }
        let (w, h, n) = vol.slice_dims(2);
        let mut results = Vec::with_capacity(prompts.len());
        for (c, prompt) in prompts.iter().enumerate() {
            let m = &pred.masks[c];
            let mut masks = Vec::with_capacity(n);
            let mut areas = Vec::with_capacity(n);
            for k in 0..n {
                let s = io::take_slice(m, vol.dims, 2, k, 1);
                areas.push(s.iter().filter(|&&v| v > 0).count());
                masks.push(rle(&GrayImage::from_raw(w as u32, h as u32, s).expect("slice size")));
            }
            results.push(json!({
                "prompt": prompt,
                "voxels": m.iter().filter(|&&v| v > 0).count(),
                "areas": areas,
                "masks": masks,
            }));
        }
        let slice_pngs = if return_image {
            let map = vvol::volume_window(vol, win).map_err(model_error)?;
            let mut v = Vec::with_capacity(n);
            for k in 0..n {
                let img = vvol::slice_image(vol, 2, k, map.as_ref(), loaded.invert).map_err(model_error)?;
                v.push(Value::String(b64(&png(DynamicImage::ImageRgb8(img))?)));
            }
            Some(v)
        } else {
            None
        };
        let hd = &vol.header;
        Ok(Ok(json!({
            "volume": {
                "source": loaded.source,
                "shape": vol.dims,
                "axis": 2,
                "slices": n,
                "spacing": hd.spacing(),
                "affine": hd.affine(),
                "notes": loaded.notes,
            },
            "width": w,
            "height": h,
            "threshold": threshold,
            "results": results,
            "slice_pngs": slice_pngs,
            "timing_ms": {
                "queue": t_queue.as_secs_f64() * 1e3,
                "model": t_model.as_secs_f64() * 1e3,
                "total": t0.elapsed().as_secs_f64() * 1e3,
            },
        })))
    })
    .await?;
    Ok(match out {
        Ok(j) => Json(j).into_response(),
        Err(bytes) => nifti_response(bytes, "mask.nii.gz", &form.prompts),
    })
}

/// A `.nii.gz` answer; `x-vlsm-labels` lists the prompts in label order (label k + 1 = prompt k).
pub(crate) fn nifti_response(bytes: Vec<u8>, file_name: &str, prompts: &[String]) -> Response {
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // serde_json escapes no non-ASCII: do it here, header values are ASCII.
    let labels: String = serde_json::to_string(prompts)
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii() && !c.is_ascii_control() { c.to_string() } else { format!("\\u{:04x}", c as u32) })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&labels) {
        h.insert("x-vlsm-labels", v);
    }
    r
}

/// What the protocol routes get back: the input read as a volume (a 2-D image is a one-slice
/// volume, source "image") and one mask per prompt.
pub(crate) struct Segmented {
    pub loaded: Loaded,
    pub pred: VolumePrediction,
    pub infer_secs: f64,
}

/// Reads `files` (a volume, a 2-D image, or the files of one DICOM series), takes a model slot and segments every slice under
/// `prompts`; `probs` keeps the probabilities (for [`label_map`]).
pub(crate) async fn segment_any(
    st: &Arc<AppState>,
    files: Vec<Upload>,
    prompts: Vec<String>,
    threshold: Option<f32>,
    window: Option<String>,
    probs: bool,
) -> Result<Segmented, ApiError> {
    check_prompts(st, &prompts)?;
    let seg = st.segmenter();
    let threshold = threshold.unwrap_or_else(|| seg.default_threshold());
    if !(0.0..=1.0).contains(&threshold) {
        return Err(bad(format!("threshold must be a number from 0 to 1, got {threshold}")));
    }
    let (max_voxels, max_pixels) = (st.limits.max_voxels, st.limits.max_pixels);
    windowing(window.as_deref(), None)?;
    // Read holding a model slot (see `segment`).
    let ticket = enter(st).await?;
    let loaded = blocking(move || load_many(&files, max_voxels, max_pixels)).await?;
    let win = windowing(window.as_deref(), loaded.file_window)?;
    blocking(move || {
        let t = Instant::now();
        let pred = run(&seg, &loaded, &prompts, threshold, win, probs)?;
        drop(ticket);
        Ok(Segmented { loaded, pred, infer_secs: t.elapsed().as_secs_f64() })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unzip_reads_stored_and_deflated_and_refuses_bombs() {
        let d = tempfile::tempdir().unwrap();
        let big = vec![7u8; 100_000];
        let entry = |n: &str, d: &[u8], deflate| (n.to_string(), d.to_vec(), deflate);
        let z = crate::testkit::zip_of(&[
            entry("a/x.dcm", b"hello", false),
            entry("dir/", b"", false),
            entry("b.dcm", &big, true),
        ]);
        let names = unzip(&z, d.path(), 1 << 20).unwrap();
        assert_eq!(names, ["a/x.dcm", "b.dcm"]);
        assert_eq!(std::fs::read(d.path().join(entry_file(0))).unwrap(), b"hello");
        assert_eq!(std::fs::read(d.path().join(entry_file(1))).unwrap(), big);
        // Over the byte limit: refused from the directory, before inflating.
        let before = zip_inflated_bytes();
        let e = unzip(&z, tempfile::tempdir().unwrap().path(), 50_000).unwrap_err();
        assert!(e.contains("more than the limit of 50000"), "{e}");
        assert!(zip_inflated_bytes() - before < 50_000);
        // A directory that lies about the size: caught while inflating.
        let mut liar = z.clone();
        let cd = liar.windows(4).rposition(|w| w == 0x0201_4b50u32.to_le_bytes()).unwrap();
        liar[cd + 24..cd + 28].copy_from_slice(&1000u32.to_le_bytes());
        let e = unzip(&liar, tempfile::tempdir().unwrap().path(), 1 << 20).unwrap_err();
        assert!(e.contains("more than its declared 1000 bytes"), "{e}");
        // Not a zip, cut, corrupt.
        assert!(unzip(b"hello", d.path(), 1 << 20).unwrap_err().contains("not a zip"));
        let e = unzip(&z[..z.len() - 30], d.path(), 1 << 20).unwrap_err();
        assert!(e.contains("not a zip") || e.contains("truncated"), "{e}");
        let mut bad = z.clone();
        let at = bad.windows(5).position(|w| w == b"hello").unwrap();
        bad[at] = b'j';
        assert!(unzip(&bad, d.path(), 1 << 20).unwrap_err().contains("CRC"));
    }

    #[test]
    fn label_map_picks_the_most_probable() {
        let pred = VolumePrediction {
            masks: vec![vec![1, 1, 0, 0], vec![0, 1, 1, 0]],
            probs: vec![vec![0.9, 0.6, 0.1, 0.0], vec![0.1, 0.8, 0.7, 0.0]],
        };
        assert_eq!(label_map(&pred), [1, 2, 2, 0]);
    }
}
