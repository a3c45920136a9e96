//! Routes, multipart parsing and the segment / save handlers.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use vlsm::io::ReadOptions;
use vlsm::pipeline::{self, Segmenter};

use crate::cache::Entry;
use crate::dataset;
use crate::AppState;

type St = State<Arc<AppState>>;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");
const OPENAPI: &str = include_str!("../assets/openapi.json");
/// Everything the page loads comes from this server; images are data: or blob: URLs.
const CSP: &str =
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/api/openapi.json", get(|| async { asset("application/json", OPENAPI) }))
        .route("/api/health", get(health))
        .route("/api/model", get(model))
        .route("/api/segment", post(segment))
        .route("/api/dataset/save", post(save))
        .merge(crate::monailabel::routes())
        .merge(crate::labelstudio::routes())
        .merge(crate::train::routes())
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// An error answered as `{"error": "<one line>"}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let msg = self.1.replace('\n', " ");
        (self.0, Json(json!({ "error": msg }))).into_response()
    }
}

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

async fn health(State(st): St) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "cache": st.cache.stats(),
        "queue": {"running": st.gate.running(), "waiting": st.gate.waiting(), "max_waiting": st.gate.max_waiting(), "workers": st.gate.workers()},
    }))
}

async fn model(State(st): St) -> Json<Value> {
    let s = &st.segmenter();
    let l = &st.limits;
    let mut v = json!({
        // Only the folder's name: the full path would tell a page more about this machine than it needs.
        "dir": s.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()),
        "kind": s.kind_name(),
        "default_threshold": s.default_threshold(),
        "dataset_enabled": st.dataset.is_some(),
        "limits": {
            "max_upload_bytes": l.max_upload_bytes,
            "max_pixels": l.max_pixels,
            "max_voxels": l.max_voxels,
            "timeout_secs": l.timeout.as_secs_f64(),
            "max_prompts": l.max_prompts,
            "max_prompt_chars": l.max_prompt_chars,
            "max_waiting": st.gate.max_waiting(),
        },
        "cache_capacity": st.cache.stats().capacity,
    });
    // Version, rollback chain and fine-tuning (crate::versions, crate::train).
    if let (Some(o), Value::Object(m)) = (v.as_object_mut(), st.models.describe()) {
        o.extend(m);
        o.insert("train_enabled".into(), json!(st.train.is_some()));
        o.insert("versions".into(), json!(st.train.as_ref().map(|t| t.store.list()).unwrap_or_default()));
    }
    Json(v)
}

/// A file part of a multipart body.
pub(crate) struct Upload {
    pub(crate) bytes: Bytes,
    pub(crate) file_name: String,
}

#[derive(Default)]
pub(crate) struct Form {
    pub(crate) image: Option<Upload>,
    mask: Option<Upload>,
    pub(crate) prompts: Vec<String>,
    pub(crate) threshold: Option<String>,
    slice: Option<String>,
    name: Option<String>,
    pub(crate) return_image: bool,
    /// `volume`: segment every slice (see `crate::volume`).
    pub(crate) volume: bool,
    /// `return`: `json` (default) or `nifti` (volumes).
    pub(crate) ret: Option<String>,
    /// `window`: a preset name or `W,L` (volumes).
    pub(crate) window: Option<String>,
}

pub(crate) fn multipart_error(e: axum::extract::multipart::MultipartError, limit: usize) -> ApiError {
    let status = e.status();
    let mut cur: Option<&dyn std::error::Error> = Some(&e);
    while let Some(x) = cur {
        if x.downcast_ref::<crate::listen::BodyTimeout>().is_some() || x.to_string().contains("body read timed out") {
            return ApiError(StatusCode::REQUEST_TIMEOUT, format!("{x}; the body must arrive faster"));
        }
        cur = x.source();
    }
    // tower-http's limit error reaches us wrapped in the multipart stream error.
    let mut too_large = status == StatusCode::PAYLOAD_TOO_LARGE;
    let mut cur: Option<&dyn std::error::Error> = Some(&e);
    while let Some(x) = cur {
        too_large |= x.to_string().contains("length limit exceeded");
        cur = x.source();
    }
    if too_large {
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        return ApiError(status, format!("request body is larger than the limit of {} bytes", limit));
    }
    ApiError(status, format!("malformed multipart body: {}", e.body_text()))
}

/// Reads every part; `allowed` names the fields this route takes.
async fn read_form(
    mp: Result<Multipart, MultipartRejection>,
    allowed: &[&str],
    limit: usize,
) -> Result<Form, ApiError> {
    let mut mp = mp.map_err(|e| bad(format!("expected a multipart/form-data body: {}", e.body_text())))?;
    let mut form = Form::default();
    while let Some(field) = mp.next_field().await.map_err(|e| multipart_error(e, limit))? {
        let name = field.name().unwrap_or("").to_string();
        if !allowed.contains(&name.as_str()) {
            return Err(bad(format!("unknown form field {name:?} (expected {})", allowed.join(", "))));
        }
        match name.as_str() {
            "image" | "mask" => {
                let file_name = field.file_name().unwrap_or("").to_string();
                let bytes = field.bytes().await.map_err(|e| multipart_error(e, limit))?;
                let up = Some(Upload { bytes, file_name });
                let slot = if name == "image" { &mut form.image } else { &mut form.mask };
                if slot.is_some() {
                    return Err(bad(format!("more than one {name} field")));
                }
                *slot = up;
            }
            _ => {
                // Bytes, not `text()`: that guesses encodings from byte order marks.
                let raw = field.bytes().await.map_err(|e| multipart_error(e, limit))?;
                let text =
                    String::from_utf8(raw.to_vec()).map_err(|_| bad(format!("the {name} field is not valid UTF-8")))?;
                match name.as_str() {
                    "prompt" => form.prompts.push(text),
                    "threshold" => form.threshold = Some(text),
                    "slice" => form.slice = Some(text),
                    "name" => form.name = Some(text),
                    "return_image" => form.return_image = matches!(text.trim(), "1" | "true" | "yes"),
                    "volume" => form.volume = matches!(text.trim(), "1" | "true" | "yes"),
                    "return" => form.ret = Some(text),
                    "window" => form.window = Some(text),
                    _ => unreachable!("checked against allowed"),
                }
            }
        }
    }
    Ok(form)
}

fn parse_slice(s: &Option<String>) -> Result<Option<usize>, ApiError> {
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t.parse().map(Some).map_err(|_| bad(format!("slice must be a non-negative integer, got {t:?}"))),
    }
}

/// Decodes an upload (any format `vlsm::io` reads) after checking its pixel count.
pub(crate) fn decode_image(up: &Upload, slice: Option<usize>, max_pixels: u64) -> Result<RgbImage, ApiError> {
    let shown = if up.file_name.is_empty() { "upload".to_string() } else { up.file_name.clone() };
    let unprocessable = |e: anyhow::Error, tmp: &std::path::Path| {
        let msg = e.to_string().replace(&tmp.display().to_string(), &shown);
        let status = if msg.contains("more than the limit") {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        ApiError(status, format!("cannot read image: {msg}"))
    };
    // vlsm::io reads paths and picks medical formats by extension or magic bytes.
    let lower = up.file_name.to_ascii_lowercase();
    let ext = [".nii.gz", ".nii", ".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"]
        .into_iter()
        .find(|e| lower.ends_with(e))
        .unwrap_or(".bin");
    let internal = |e: std::io::Error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot store upload: {e}"));
    let mut tmp = tempfile::Builder::new().prefix("vlsm-upload-").suffix(ext).tempfile().map_err(internal)?;
    tmp.write_all(&up.bytes).map_err(internal)?;
    tmp.flush().map_err(internal)?;
    let path = tmp.path().to_path_buf();
    let (w, h) = vlsm::io::image_dimensions(&path).map_err(|e| unprocessable(e, &path))?;
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("image is {w}x{h} = {pixels} pixels, more than this server's limit of {max_pixels}"),
        ));
    }
    let opts = ReadOptions { slice, ..Default::default() };
    vlsm::io::read_image_any(&path, &opts).map_err(|e| unprocessable(e, &path))
}

pub(crate) fn png(img: DynamicImage) -> Result<Vec<u8>, ApiError> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, ImageFormat::Png)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode PNG: {e}")))?;
    Ok(buf.into_inner())
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// COCO's uncompressed RLE: column-major run lengths, starting with a run of 0s.
pub fn rle(mask: &GrayImage) -> Value {
    let (w, h) = mask.dimensions();
    let mut counts = Vec::new();
    let (mut cur, mut run) = (false, 0u64);
    for x in 0..w {
        for y in 0..h {
            let v = mask.get_pixel(x, y)[0] > 0;
            if v != cur {
                counts.push(run);
                cur = v;
                run = 0;
            }
            run += 1;
        }
    }
    counts.push(run);
    json!({ "size": [h, w], "counts": counts })
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("worker failed: {e}"))))
}

pub(crate) async fn with_timeout(
    limit: Duration,
    f: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Response {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the request took longer than this server's limit of {} s", limit.as_secs_f64()),
        )
        .into_response(),
    }
}

async fn segment(State(st): St, mp: Result<Multipart, MultipartRejection>) -> Response {
    let limit = st.limits.timeout;
    with_timeout(limit, segment_inner(st, mp)).await
}

pub(crate) fn model_error(e: anyhow::Error) -> ApiError {
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, format!("model failed: {e:#}"))
}

async fn segment_inner(st: Arc<AppState>, mp: Result<Multipart, MultipartRejection>) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    // One model for the whole request, even if a fine-tune switches meanwhile; the cache
    // generation first, so features of an older model are never used or stored.
    let gen = st.cache.generation();
    let seg = st.segmenter();
    let lim = st.limits.clone();
    let form = read_form(
        mp,
        &["image", "prompt", "threshold", "slice", "return_image", "volume", "return", "window"],
        lim.max_upload_bytes,
    )
    .await?;
    if crate::volume::wanted(&form) {
        return crate::volume::segment(st, form).await;
    }
    let up = form.image.ok_or_else(|| bad("missing the image file field \"image\""))?;
    if up.bytes.is_empty() {
        return Err(bad("the image field is empty"));
    }
    if form.prompts.is_empty() {
        return Err(bad("give at least one \"prompt\" field"));
    }
    if form.prompts.len() > lim.max_prompts {
        return Err(bad(format!("{} prompts; at most {} per request", form.prompts.len(), lim.max_prompts)));
    }
    if let Some(p) = form.prompts.iter().find(|p| p.chars().count() > lim.max_prompt_chars) {
        return Err(bad(format!("a prompt has {} characters; at most {}", p.chars().count(), lim.max_prompt_chars)));
    }
    let threshold = match form.threshold.as_deref().map(str::trim) {
        None | Some("") => seg.default_threshold(),
        Some(t) => match t.parse::<f32>() {
            Ok(v) if (0.0..=1.0).contains(&v) => v,
            _ => return Err(bad(format!("threshold must be a number from 0 to 1, got {t:?}"))),
        },
    };
    let slice = parse_slice(&form.slice)?;
    let mut hasher = Sha256::new();
    hasher.update(&up.bytes);
    hasher.update(format!("slice={slice:?}").as_bytes());
    let key: [u8; 32] = hasher.finalize().into();
    // Decode before queueing so that bad uploads fail at once and don't hold the model.
    let max = lim.max_pixels;
    let up = Arc::new(up);
    let image = if gen != st.cache.generation() || !st.cache.contains(&key) || form.return_image {
        let up = up.clone();
        Some(blocking(move || decode_image(&up, slice, max)).await?)
    } else {
        None
    };
    let ticket = st.gate.enter().await.ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the model queue is full ({} waiting); retry later", st.gate.max_waiting()),
        )
    })?;
    let t_queue = t0.elapsed();
    let st2 = st.clone();
    let prompts = form.prompts.clone();
    let return_image = form.return_image;
    let out = blocking(move || {
        let seg: &Segmenter = &seg;
        let t1 = Instant::now();
        // Looked up only now, holding the model: a request that queued behind the one encoding
        // the same image finds its features instead of encoding them again.
        let cached = st2.cache.get_at(gen, &key);
        let hit = cached.is_some();
        let entry = match cached {
            Some(e) => e,
            None => {
                let decoded;
                let img = match &image {
                    Some(i) => i,
                    None => {
                        // Evicted while this request waited.
                        decoded = decode_image(&up, slice, max)?;
                        &decoded
                    }
                };
                let pv = seg.pixel_values(&[img]).map_err(model_error)?;
                let features = seg
                    .encode_images(&pv)
                    .map_err(model_error)?
                    .pop()
                    .ok_or_else(|| model_error(anyhow::anyhow!("no features")))?;
                let e = Arc::new(Entry { features, width: img.width(), height: img.height() });
                st2.cache.insert_at(gen, key, e.clone());
                e
            }
        };
        let t_encode = t1.elapsed();
        let cond = seg.text_conditional(&prompts).map_err(model_error)?;
        let (logits, presence) = seg.decode_with_presence(&entry.features, &cond, threshold).map_err(model_error)?;
        if !st2.model_delay.is_zero() {
            std::thread::sleep(st2.model_delay);
        }
        // Post-processing (full-size probabilities, PNG encoding) takes memory in proportion to
        // the image: take its slot before giving up the model's, so that at most `workers`
        // requests post-process at once and none pile up in between.
        let _post = st2.gate.post_processing_blocking();
        drop(ticket);
        if !st2.post_delay.is_zero() {
            std::thread::sleep(st2.post_delay);
        }
        let t_model = t1.elapsed();
        let (w, h) = (entry.width, entry.height);
        let (_, mh, mw) = logits.dims3().map_err(|e| model_error(e.into()))?;
        let mut results = Vec::with_capacity(prompts.len());
        for (i, prompt) in prompts.iter().enumerate() {
            let l = logits.get(i).map_err(|e| model_error(e.into()))?;
            let probs = pipeline::probabilities_at(&l, w, h).map_err(model_error)?;
            let mut mask = pipeline::threshold_mask(&probs, w, h, threshold).map_err(model_error)?;
            // An absent target (see `pipeline::Presence`) gets an empty mask.
            if !presence[i].present {
                mask.fill(0);
            }
            let area = mask.pixels().filter(|p| p[0] > 0).count();
            let p8: Vec<u8> = probs.iter().map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
            let p8 = GrayImage::from_raw(w, h, p8).expect("size matches");
            results.push(json!({
                "prompt": prompt,
                "area": area,
                "presence": presence[i].presence,
                "present": presence[i].present,
                "mask_png": b64(&png(DynamicImage::ImageLuma8(mask.clone()))?),
                "probs_png": b64(&png(DynamicImage::ImageLuma8(p8))?),
                "rle": rle(&mask),
            }));
        }
        let image_png = match (return_image, image) {
            (true, Some(img)) => Some(b64(&png(DynamicImage::ImageRgb8(img))?)),
            _ => None,
        };
        Ok((
            hit,
            json!({
                "width": w,
                "height": h,
                "model_size": [mh, mw],
                "threshold": threshold,
                "cache": if hit { "hit" } else { "miss" },
                "image_sha256": key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                "image_png": image_png,
                "results": results,
                "timing_ms": {
                    "queue": t_queue.as_secs_f64() * 1e3,
                    "encode": t_encode.as_secs_f64() * 1e3,
                    "model": t_model.as_secs_f64() * 1e3,
                    "total": t0.elapsed().as_secs_f64() * 1e3,
                },
            }),
        ))
    })
    .await?;
    let (hit, out) = out;
    let mut resp = Json(out).into_response();
    resp.headers_mut().insert("x-cache", HeaderValue::from_static(if hit { "hit" } else { "miss" }));
    Ok(resp)
}

async fn save(State(st): St, mp: Result<Multipart, MultipartRejection>) -> Response {
    let limit = st.limits.timeout;
    with_timeout(limit, save_inner(st, mp)).await
}

async fn save_inner(st: Arc<AppState>, mp: Result<Multipart, MultipartRejection>) -> Result<Response, ApiError> {
    if st.dataset.is_none() {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "saving to a dataset is disabled: start the server with --dataset DIR".into(),
        ));
    }
    let lim = st.limits.clone();
    let form = read_form(mp, &["image", "mask", "prompt", "name", "slice"], lim.max_upload_bytes).await?;
    let up = form.image.ok_or_else(|| bad("missing the image file field \"image\""))?;
    let mask_up = form.mask.ok_or_else(|| bad("missing the mask file field \"mask\""))?;
    let prompt = match form.prompts.as_slice() {
        [p] => p.clone(),
        [] => return Err(bad("give one \"prompt\" field")),
        _ => return Err(bad("give exactly one \"prompt\" field")),
    };
    if prompt.chars().count() > lim.max_prompt_chars {
        return Err(bad(format!("the prompt has more than {} characters", lim.max_prompt_chars)));
    }
    let slice = parse_slice(&form.slice)?;
    let given = form
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| Some(up.file_name.clone()).filter(|n| !n.is_empty()));
    let stem = match given {
        Some(n) => dataset::sanitize_name(&n).map_err(|e| bad(format!("bad name: {e}")))?,
        None => {
            let d = Sha256::digest(&up.bytes);
            format!("img-{}", d.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>())
        }
    };
    let max = lim.max_pixels;
    let (image, mask) = blocking(move || {
        let image = decode_image(&up, slice, max)?;
        let mask = decode_image(&mask_up, None, max)?;
        Ok((image, DynamicImage::ImageRgb8(mask).to_luma8()))
    })
    .await?;
    if image.dimensions() != mask.dimensions() {
        let (a, b) = (image.dimensions(), mask.dimensions());
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("mask is {}x{} but the image is {}x{}", b.0, b.1, a.0, a.1),
        ));
    }
    let st2 = st.clone();
    let saved = blocking(move || {
        let ds = st2.dataset.as_ref().expect("checked above");
        dataset::save(ds, &stem, &image, &mask, &prompt)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot save: {e:#}")))
    })
    .await?;
    Ok(Json(saved).into_response())
}
