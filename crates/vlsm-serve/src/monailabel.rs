//! The MONAI Label protocol (the routes 3D Slicer's MONAI Label module, OHIF's MONAI Label
//! mode and `monailabel.client.MONAILabelClient` call), for inference with text prompts:
//!
//! - `GET /info/`: the app (name, description, version, labels) and its models: `vlsm`
//!   (dimension 3: a volume slice by slice) and `vlsm_2d` (dimension 2); both take either.
//! - `POST /infer/{model}`: multipart `file` (a NIfTI volume, a zip of a DICOM series, a
//!   multi-frame DICOM, or a 2-D image) and `params` (JSON) with the text prompt(s):
//!   `"prompt": "liver"`, or `"prompts": ["liver", "spleen"]` (a string is split on `;`), plus
//!   optional `"threshold"` and `"window"`. The label is one uint8 volume, 0 background and
//!   k + 1 for the k-th prompt (the most probable one where masks overlap): `.nii.gz` in the
//!   source's geometry for volumes, PNG for 2-D images. As MONAI Label answers: by default
//!   (`?output=all`) a multipart/form-data body with a `params` JSON part (`label_names`:
//!   prompt -> label value) and the label file part; `?output=image`: the file alone;
//!   `?output=json`: the JSON alone.
//!
//! - `PUT /datastore/?image=ID` (multipart `file`) and `PUT /session/` (multipart `files`, one or
//!   the files of a DICOM series), `GET`/`DELETE /session/{id}`: where 3D Slicer puts a volume
//!   before `POST /infer/{model}?image=ID` or `?session_id=ID`. Kept in memory, at most
//!   [`MAX_UPLOADS`] images and four times `--max-upload-mb` in all (the oldest go first), for an
//!   hour; nothing is written to disk.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use image::{DynamicImage, GrayImage};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::api::{bad, multipart_error, png, with_timeout, ApiError, Upload};
use crate::volume::{label_map, nifti_bytes, segment_any};
use crate::AppState;

type St = State<Arc<AppState>>;

/// The models `/info/` lists, with their dimension.
const MODELS: [(&str, u8); 2] = [("vlsm", 3), ("vlsm_2d", 2)];

/// Paths of this protocol (the access guard asks for the token on them).
pub(crate) fn protected(path: &str) -> bool {
    path == "/info"
        || path.starts_with("/info/")
        || path.starts_with("/infer/")
        || path.starts_with("/datastore")
        || path.starts_with("/session")
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/info/", get(info))
        .route("/info", get(info))
        .route("/infer/{model}", post(infer))
        .route("/datastore/", put(datastore_put))
        .route("/session/", put(session_put).post(session_put))
        .route("/session/{id}", get(session_get).delete(session_delete))
}

/// Most images the datastore and the sessions keep together.
pub const MAX_UPLOADS: usize = 16;
/// How long an upload is kept.
const UPLOAD_TTL: Duration = Duration::from_secs(3600);

struct Stored {
    id: String,
    session: bool,
    files: Vec<Upload>,
    at: Instant,
}

/// The datastore images and sessions (see the module comment).
#[derive(Default)]
pub(crate) struct Uploads(Mutex<Vec<Stored>>);

impl Uploads {
    fn insert(&self, id: String, session: bool, files: Vec<Upload>, max_bytes: usize) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|s| s.id != id && s.at.elapsed() < UPLOAD_TTL);
        v.push(Stored { id, session, files, at: Instant::now() });
        let size = |v: &Vec<Stored>| v.iter().flat_map(|s| &s.files).map(|f| f.bytes.len()).sum::<usize>();
        while v.len() > MAX_UPLOADS || (v.len() > 1 && size(&v) > max_bytes) {
            v.remove(0);
        }
    }

    fn get(&self, id: &str, session: bool) -> Option<Vec<Upload>> {
        let v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.iter().find(|s| s.id == id && s.session == session && s.at.elapsed() < UPLOAD_TTL).map(|s| {
            s.files.iter().map(|f| Upload { bytes: f.bytes.clone(), file_name: f.file_name.clone() }).collect()
        })
    }

    fn remove(&self, id: &str) -> bool {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = v.len();
        v.retain(|s| !(s.id == id && s.session));
        v.len() != n
    }
}

/// A new id: hex of a hash of the content, the time and a counter.
fn new_id(files: &[Upload]) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = Sha256::new();
    for f in files {
        h.update(&f.bytes);
    }
    h.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    h.update(N.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    let d = h.finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Every file part of a multipart body (any field name), and the `params` JSON.
async fn read_files(
    mp: Result<Multipart, MultipartRejection>,
    limit: usize,
) -> Result<(Vec<Upload>, Map<String, Value>), ApiError> {
    let mut mp = mp.map_err(|e| bad(format!("expected a multipart/form-data body: {}", e.body_text())))?;
    let mut files = Vec::new();
    let mut params = Map::new();
    while let Some(field) = mp.next_field().await.map_err(|e| multipart_error(e, limit))? {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field.bytes().await.map_err(|e| multipart_error(e, limit))?;
        match (name.as_str(), file_name) {
            ("params", None) => {
                let v: Value =
                    serde_json::from_slice(&bytes).map_err(|e| bad(format!("params is not valid JSON: {e}")))?;
                match v {
                    Value::Object(m) => params = m,
                    _ => return Err(bad("params must be a JSON object")),
                }
            }
            (_, Some(file_name)) if !bytes.is_empty() => files.push(Upload { bytes, file_name }),
            _ => {}
        }
    }
    Ok((files, params))
}

#[derive(serde::Deserialize, Default)]
struct ImageQuery {
    image: Option<String>,
}

async fn datastore_put(
    State(st): St,
    q: Result<Query<ImageQuery>, axum::extract::rejection::QueryRejection>,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| bad(format!("bad query: {}", e.body_text())))?;
    let (files, _) = read_files(mp, st.limits.max_upload_bytes).await?;
    if files.is_empty() {
        return Err(bad("send the image as the multipart file field \"file\""));
    }
    let id = q.image.filter(|i| !i.trim().is_empty()).unwrap_or_else(|| new_id(&files));
    if id.len() > 256 {
        return Err(bad("the image id is longer than 256 bytes"));
    }
    st.uploads.insert(id.clone(), false, files, 4 * st.limits.max_upload_bytes);
    Ok(Json(json!({"image": id})))
}

async fn session_put(State(st): St, mp: Result<Multipart, MultipartRejection>) -> Result<Json<Value>, ApiError> {
    let (files, _) = read_files(mp, st.limits.max_upload_bytes).await?;
    if files.is_empty() {
        return Err(bad("send the image (or the files of one DICOM series) as multipart file fields \"files\""));
    }
    let id = new_id(&files);
    st.uploads.insert(id.clone(), true, files, 4 * st.limits.max_upload_bytes);
    Ok(Json(json!({"session_id": id, "expiry": UPLOAD_TTL.as_secs()})))
}

async fn session_get(State(st): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    match st.uploads.get(&id, true) {
        Some(files) => Ok(Json(json!({"session_id": id, "files": files.len(), "expiry": UPLOAD_TTL.as_secs()}))),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no session {id:?} (expired or never made)"))),
    }
}

async fn session_delete(State(st): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if st.uploads.remove(&id) {
        Ok(Json(json!({"session_id": id})))
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no session {id:?}")))
    }
}

async fn info(State(st): St) -> Json<Value> {
    let seg = st.segmenter();
    let mut models = Map::new();
    for (name, dim) in MODELS {
        let what = if dim == 3 { "a volume, slice by slice along its last voxel axis" } else { "a 2-D image" };
        models.insert(
            name.to_string(),
            json!({
                "type": "segmentation",
                "dimension": dim,
                "labels": [],
                "description": format!(
                    "vlsm {} model: segments {what} from text prompts (params.prompt or params.prompts)",
                    seg.kind_name()
                ),
                // 3D Slicer shows a model's config as editable options and sends them back as params.
                "config": {"prompts": "", "threshold": seg.default_threshold(), "window": "auto"},
            }),
        );
    }
    Json(json!({
        "name": "vlsm",
        "description": "Language-guided medical image segmentation: the labels are text prompts given per request",
        "version": env!("CARGO_PKG_VERSION"),
        "labels": [],
        "models": models,
        "trainers": {},
        "strategies": {},
        "scoring": {},
        "train_stats": {},
        "datastore": {"total": 0, "completed": 0, "label_tags": {}, "tags": {}},
    }))
}

#[derive(serde::Deserialize, Default)]
struct InferQuery {
    output: Option<String>,
    image: Option<String>,
    session_id: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Output {
    All,
    Image,
    Json,
}

/// The prompts of a `params` object: `prompt` (a string) and/or `prompts` (a list of strings,
/// or a string split on ';').
pub(crate) fn prompts_of(p: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    match p.get("prompt") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.push(s.trim().to_string()),
        Some(_) => return Err(bad("params.prompt must be a string")),
    }
    match p.get("prompts") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.extend(s.split(';').map(|t| t.trim().to_string())),
        Some(Value::Array(a)) => {
            for v in a {
                match v {
                    Value::String(s) => out.push(s.trim().to_string()),
                    _ => return Err(bad("params.prompts must hold strings")),
                }
            }
        }
        Some(_) => return Err(bad("params.prompts must be a list of strings (or one string split on ';')")),
    }
    out.retain(|s| !s.is_empty());
    if out.is_empty() {
        return Err(bad(
            "params needs the text prompt(s): \"prompt\": \"liver\" or \"prompts\": [\"liver\", \"spleen\"]",
        ));
    }
    Ok(out)
}

fn number(p: &Map<String, Value>, key: &str) -> Result<Option<f32>, ApiError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(|v| v as f32)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            s.trim().parse().map(Some).map_err(|_| bad(format!("params.{key} must be a number, got {s:?}")))
        }
        Some(_) => Err(bad(format!("params.{key} must be a number"))),
    }
}

fn text(p: &Map<String, Value>, key: &str) -> Option<String> {
    p.get(key).and_then(Value::as_str).map(str::to_string).filter(|s| !s.trim().is_empty())
}

async fn infer(
    State(st): St,
    Path(model): Path<String>,
    q: Result<Query<InferQuery>, axum::extract::rejection::QueryRejection>,
    mp: Result<Multipart, MultipartRejection>,
) -> Response {
    let limit = st.limits.timeout;
    with_timeout(limit, infer_inner(st, model, q, mp)).await
}

async fn infer_inner(
    st: Arc<AppState>,
    model: String,
    q: Result<Query<InferQuery>, axum::extract::rejection::QueryRejection>,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let Query(q) = q.map_err(|e| bad(format!("bad query: {}", e.body_text())))?;
    if !MODELS.iter().any(|(m, _)| *m == model) {
        let names: Vec<&str> = MODELS.iter().map(|m| m.0).collect();
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no model {model:?}; this server has {}", names.join(", ")),
        ));
    }
    let output = match q.output.as_deref().map(str::trim) {
        None | Some("") | Some("all") => Output::All,
        Some("image") => Output::Image,
        Some("json") => Output::Json,
        Some("dicom_seg") => {
            return Err(bad("output=dicom_seg is not supported here (use `vlsm segment --format dicom-seg`)"))
        }
        Some(o) => return Err(bad(format!("output must be all, image or json, got {o:?}"))),
    };
    let limit = st.limits.max_upload_bytes;
    let mut mp = mp.map_err(|e| bad(format!("expected a multipart/form-data body: {}", e.body_text())))?;
    let mut file: Option<Upload> = None;
    let mut params = Map::new();
    while let Some(field) = mp.next_field().await.map_err(|e| multipart_error(e, limit))? {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(|e| multipart_error(e, limit))?;
        match name.as_str() {
            "file" => {
                if file.is_some() {
                    return Err(bad("more than one file field"));
                }
                file = Some(Upload { bytes, file_name });
            }
            "params" => {
                let v: Value =
                    serde_json::from_slice(&bytes).map_err(|e| bad(format!("params is not valid JSON: {e}")))?;
                match v {
                    Value::Object(m) => params = m,
                    _ => return Err(bad("params must be a JSON object")),
                }
            }
            // A scribble or previous label (MONAI Label's `label`): not used by a text-prompted model.
            "label" => {}
            other => return Err(bad(format!("unknown form field {other:?} (expected file, params, label)"))),
        }
    }
    let files = match (file, q.session_id.filter(|s| !s.is_empty()), q.image.filter(|s| !s.is_empty())) {
        (Some(up), _, _) => vec![up],
        (None, Some(sid), _) => st.uploads.get(&sid, true).ok_or_else(|| {
            ApiError(StatusCode::NOT_FOUND, format!("no session {sid:?} (expired or never made): PUT /session/ first"))
        })?,
        (None, None, Some(id)) => st.uploads.get(&id, false).ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no image {id:?} in this server's datastore: send it as the multipart field \"file\" or PUT /datastore/?image=ID first"),
            )
        })?,
        (None, None, None) => return Err(bad("send the image as the multipart field \"file\" (or ?image=ID, ?session_id=ID)")),
    };
    let prompts = prompts_of(&params)?;
    let threshold = number(&params, "threshold")?;
    let window = text(&params, "window");
    let mut h = Sha256::new();
    for f in &files {
        h.update(&f.bytes);
    }
    let digest = h.finalize();
    let s = segment_any(&st, files, prompts.clone(), threshold, window, prompts.len() > 1).await?;
    let labels = if prompts.len() == 1 { s.pred.masks[0].clone() } else { label_map(&s.pred) };
    let vol = &s.loaded.vol;
    let two_d = s.loaded.source == "image";
    let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let (bytes, file_name, mime) = if two_d {
        let (w, h) = (vol.dims[0] as u32, vol.dims[1] as u32);
        let img = GrayImage::from_raw(w, h, labels.clone()).expect("label size");
        (png(DynamicImage::ImageLuma8(img))?, format!("label_{tag}.png"), "image/png")
    } else {
        let header = vol.header.clone();
        let data = labels.clone();
        let b = crate::api::blocking(move || nifti_bytes(&header, &data)).await?;
        (b, format!("label_{tag}.nii.gz"), "application/gzip")
    };
    let label_names: Map<String, Value> = prompts.iter().enumerate().map(|(k, p)| (p.clone(), json!(k + 1))).collect();
    let voxels: Vec<usize> = (1..=prompts.len()).map(|k| labels.iter().filter(|&&v| v as usize == k).count()).collect();
    let result = json!({
        "label_names": label_names,
        "prompts": prompts,
        "voxels": voxels,
        "model": model,
        "source": s.loaded.source,
        "shape": vol.dims,
        "notes": s.loaded.notes,
        "latencies": {"infer": s.infer_secs, "total": t0.elapsed().as_secs_f64()},
    });
    Ok(match output {
        Output::Json => Json(result).into_response(),
        Output::Image => file_response(bytes, &file_name, mime),
        Output::All => multipart_response(&result, bytes, &file_name, mime),
    })
}

fn file_response(bytes: Vec<u8>, file_name: &str, mime: &'static str) -> Response {
    let mut r = bytes.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// MONAI Label's default answer: a `params` JSON part and the label file part.
fn multipart_response(params: &Value, file: Vec<u8>, file_name: &str, mime: &str) -> Response {
    let params = params.to_string();
    let mut n = 0u32;
    let boundary = loop {
        let h = Sha256::digest([&file[..], params.as_bytes(), &n.to_le_bytes()].concat());
        let b: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let b = format!("vlsm{b}");
        let clash = |d: &[u8]| d.windows(b.len()).any(|w| w == b.as_bytes());
        if !clash(&file) && !clash(params.as_bytes()) {
            break b;
        }
        n += 1;
    };
    let mut body = Vec::with_capacity(file.len() + params.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\nContent-Type: application/json\r\n\r\n{params}\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{file_name}\"\r\nContent-Type: {mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut r = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}")) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_from_params() {
        let p = |v: Value| prompts_of(v.as_object().unwrap());
        assert_eq!(p(json!({"prompt": " liver "})).unwrap(), ["liver"]);
        assert_eq!(p(json!({"prompts": ["a", "b"]})).unwrap(), ["a", "b"]);
        assert_eq!(p(json!({"prompts": "a; b;"})).unwrap(), ["a", "b"]);
        assert_eq!(p(json!({"prompt": "a", "prompts": ["b"]})).unwrap(), ["a", "b"]);
        assert!(p(json!({})).unwrap_err().1.contains("\"prompt\""));
        assert!(p(json!({"prompts": [1]})).is_err());
        assert!(p(json!({"prompt": ""})).is_err());
    }
}
