//! A Label Studio ML backend (the routes Label Studio calls on a model it is connected to):
//!
//! - `GET /health`: `{"status": "UP", ...}`; `POST /setup`: `{"model_version": ...}`;
//!   `GET /metrics`, `GET /versions`.
//! - `POST /predict`: `{"tasks": [...], "label_config": "<View>..."}` in, `{"results": [one
//!   prediction per task]}` out; each prediction holds one `brushlabels` result per prompt with
//!   a non-empty mask, in Label Studio's brush RLE ([`ls_rle`]). The image is the task's data
//!   field named by the `<Image value="$field">` the `<BrushLabels toName=...>` points at, given
//!   as a `data:` URI (base64), or a `/data/...` path or URL of the Label Studio given by
//!   `--label-studio-url` (fetched with its `--label-studio-api-key`; no other host). The prompts: the task's `data.prompt` (a string) when it has
//!   one (labelled with the config's only label, else with the prompt itself), else each
//!   `<Label value=...>` of the `<BrushLabels>`.
//! - `POST /train`, `POST /webhook`: start the server's fine-tune on its dataset's saved
//!   corrections (`train::start`, as `POST /api/train`; 403 without `--train`), 201 with its state.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

use crate::api::{bad, with_timeout, ApiError, Upload};
use crate::volume::segment_any;
use crate::AppState;

type St = State<Arc<AppState>>;

/// Most tasks one `/predict` call may carry.
const MAX_TASKS: usize = 64;

/// Paths of this protocol (the access guard asks for the token on them).
pub(crate) fn protected(path: &str) -> bool {
    matches!(path, "/health" | "/setup" | "/predict" | "/train" | "/webhook" | "/metrics" | "/versions")
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health))
        .route("/setup", post(setup))
        .route("/predict", post(predict))
        .route("/train", post(train))
        .route("/webhook", post(train))
        .route("/metrics", get(|| async { Json(json!({})) }))
        .route("/versions", get(versions))
}

fn model_version(st: &AppState) -> String {
    format!("vlsm-{}", st.segmenter().kind_name())
}

async fn health(State(st): St) -> Json<Value> {
    Json(json!({"status": "UP", "model_class": "vlsm", "model_version": model_version(&st)}))
}

async fn versions(State(st): St) -> Json<Value> {
    Json(json!({"versions": [model_version(&st)]}))
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("the body is not valid JSON: {e}")))
}

async fn setup(State(st): St, body: Bytes) -> Result<Json<Value>, ApiError> {
    if !body.is_empty() {
        json_body(&body)?;
    }
    Ok(Json(json!({"model_version": model_version(&st)})))
}

async fn train(State(st): St, body: Bytes) -> Response {
    if !body.is_empty() {
        if let Err(e) = json_body(&body) {
            return e.into_response();
        }
    }
    // Label Studio's payload (the annotation event) is not training data here: the fine-tune
    // reads the corrections saved to the server's dataset, as POST /api/train does.
    match crate::train::start(&st, crate::train::TrainRequest::default()) {
        Ok(status) => (StatusCode::CREATED, Json(json!({"status": "ok", "job": status}))).into_response(),
        Err(e) => e.into_response(),
    }
}

/// One `<BrushLabels>` control of a labeling config.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BrushControl {
    pub from_name: String,
    pub to_name: String,
    pub labels: Vec<String>,
    /// The task data field of the image (`<Image name=to_name value="$field">`).
    pub field: Option<String>,
}

/// The value of attribute `name` in a tag's text (`<Tag a="1" b='2'>`), XML entities decoded.
fn attr(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    while let Some(i) = rest.find(name) {
        let before = rest[..i].chars().last();
        let after = &rest[i + name.len()..];
        let t = after.trim_start();
        if before.is_some_and(|c| c.is_whitespace()) && t.starts_with('=') {
            let v = t[1..].trim_start();
            let q = v.chars().next()?;
            if q == '"' || q == '\'' {
                let end = v[1..].find(q)?;
                let raw = &v[1..1 + end];
                return Some(
                    raw.replace("&quot;", "\"")
                        .replace("&apos;", "'")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&amp;", "&"),
                );
            }
        }
        rest = &rest[i + name.len()..];
    }
    None
}

/// The opening tags named `name` (case-sensitive, as Label Studio's tags are), with their
/// byte offsets.
fn tags<'a>(xml: &'a str, name: &str) -> Vec<(usize, &'a str)> {
    let mut out = Vec::new();
    let open = format!("<{name}");
    let mut from = 0;
    while let Some(i) = xml[from..].find(&open) {
        let s = from + i;
        let next = xml[s + open.len()..].chars().next();
        from = s + open.len();
        if !next.is_some_and(|c| c.is_whitespace() || c == '>' || c == '/') {
            continue;
        }
        match xml[s..].find('>') {
            Some(e) => out.push((s, &xml[s..s + e + 1])),
            None => break,
        }
    }
    out
}

/// The `<BrushLabels>` controls of a labeling config (a small scan, not a full XML parser:
/// Label Studio configs are flat tag lists).
pub(crate) fn brush_controls(config: &str) -> Vec<BrushControl> {
    let images: Vec<(String, String)> =
        tags(config, "Image").into_iter().filter_map(|(_, t)| Some((attr(t, "name")?, attr(t, "value")?))).collect();
    let mut out = Vec::new();
    for (start, t) in tags(config, "BrushLabels") {
        let (Some(from_name), Some(to_name)) = (attr(t, "name"), attr(t, "toName")) else { continue };
        let body_end = if t.ends_with("/>") {
            start + t.len()
        } else {
            config[start..].find("</BrushLabels>").map_or(config.len(), |e| start + e)
        };
        let labels =
            tags(&config[start..body_end], "Label").into_iter().filter_map(|(_, l)| attr(l, "value")).collect();
        let field = images.iter().find(|(n, _)| *n == to_name).map(|(_, v)| v.trim_start_matches('$').to_string());
        out.push(BrushControl { from_name, to_name, labels, field });
    }
    out
}

/// Label Studio's brush RLE of a mask (row-major, `w` x `h`, non-zero = inside) as
/// `label_studio_sdk.converter.brush.mask2rle(mask * 255)` makes it: the RGBA bytes (255 on
/// the mask) run-length coded in thi.ng's rle-pack bit format (a 32-bit count, the word size
/// minus one in 5 bits, four run-length field sizes minus one in 4 bits each for 3, 4, 8, 16;
/// then per run: a repeat bit, the size index, the length minus one, the 8-bit value), padded
/// with zero bits (a whole zero byte when already aligned, as the SDK does).
pub fn ls_rle(mask: &[u8]) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
        total: u64,
    }
    impl Bits {
        fn put(&mut self, v: u64, bits: u32) {
            for i in (0..bits).rev() {
                self.acc = (self.acc << 1) | ((v >> i) & 1);
                self.n += 1;
                self.total += 1;
                if self.n == 8 {
                    self.out.push(self.acc as u8);
                    self.acc = 0;
                    self.n = 0;
                }
            }
        }
    }
    let mut b = Bits { out: Vec::new(), acc: 0, n: 0, total: 0 };
    b.put(mask.len() as u64 * 4, 32);
    b.put(7, 5);
    for s in [3u64, 4, 8, 16] {
        b.put(s - 1, 4);
    }
    let mut i = 0;
    while i < mask.len() {
        let v = mask[i] > 0;
        let mut j = i + 1;
        while j < mask.len() && (mask[j] > 0) == v {
            j += 1;
        }
        let value = if v { 255u64 } else { 0 };
        let len = (j - i) as u64 * 4;
        if len <= 8 {
            b.put(0b100, 3);
            b.put(len - 1, 3);
        } else if len <= 16 {
            b.put(0b101, 3);
            b.put(len - 1, 4);
        } else if len <= 256 {
            b.put(0b110, 3);
            b.put(len - 1, 8);
        } else {
            let mut left = len;
            while left > 1 << 16 {
                b.put(0b111, 3);
                b.put((1 << 16) - 1, 16);
                b.put(value, 8);
                left -= 1 << 16;
            }
            b.put(0b111, 3);
            b.put(left - 1, 16);
        }
        b.put(value, 8);
        i = j;
    }
    let fill = 8 - (b.total % 8) as u32;
    b.put(0, fill);
    b.out
}

/// The Label Studio instance task images may be fetched from.
#[derive(Debug, Default)]
pub(crate) struct Remote {
    /// Without a trailing '/'.
    base: Option<String>,
    key: Option<String>,
}

impl Remote {
    pub(crate) fn new(url: Option<&str>, key: Option<String>) -> anyhow::Result<Self> {
        let base = match url.map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(u) => {
                let rest = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://"));
                let host = rest.map(|r| r.split('/').next().unwrap_or(""));
                if host.is_none_or(|h| h.is_empty() || h.contains('@')) {
                    anyhow::bail!("--label-studio-url {u:?}: expected http(s)://HOST[:PORT][/PATH]");
                }
                Some(u.trim_end_matches('/').to_string())
            }
        };
        let key = key.filter(|k| !k.trim().is_empty());
        if key.as_deref().is_some_and(|k| k.chars().any(|c| !c.is_ascii_graphic())) {
            anyhow::bail!("--label-studio-api-key must be printable ASCII without spaces");
        }
        Ok(Remote { base, key })
    }

    /// The URL a task's image reference points at, when it is under `--label-studio-url`.
    fn url_of(&self, src: &str) -> Result<String, String> {
        let Some(base) = &self.base else {
            return Err("this backend reads images sent inline as base64 data: URIs, or fetches them from the Label Studio given by --label-studio-url (not set)".into());
        };
        if src.starts_with('/') && !src.starts_with("//") {
            return Ok(format!("{base}{src}"));
        }
        if src.strip_prefix(base.as_str()).is_some_and(|r| r.is_empty() || r.starts_with('/')) {
            return Ok(src.to_string());
        }
        Err(format!("not under --label-studio-url {base}; nothing else is fetched"))
    }

    /// Fetches a task image (blocking), at most `max` bytes.
    fn fetch(&self, src: &str, max: usize) -> Result<(Vec<u8>, String), String> {
        let url = self.url_of(src)?;
        let name = url.split(['?', '#']).next().unwrap_or("").rsplit('/').next().unwrap_or("").to_string();
        let bytes = http_get(&url, self.key.as_deref(), max)?;
        Ok((bytes, name))
    }
}

#[cfg(feature = "hub")]
fn http_get(url: &str, key: Option<&str>, max: usize) -> Result<Vec<u8>, String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(std::time::Duration::from_secs(30))).build().into();
    let mut req = agent.get(url);
    if let Some(k) = key {
        req = req.header("Authorization", &format!("Token {k}"));
    }
    let mut resp = req.call().map_err(|e| format!("cannot fetch {url}: {e}"))?;
    resp.body_mut()
        .with_config()
        .limit(max as u64)
        .read_to_vec()
        .map_err(|e| format!("cannot fetch {url}: {e} (at most {max} bytes)"))
}

#[cfg(not(feature = "hub"))]
fn http_get(url: &str, _key: Option<&str>, _max: usize) -> Result<Vec<u8>, String> {
    Err(format!("cannot fetch {url}: this server was built without an HTTP client (feature `hub`)"))
}

/// The bytes of a `data:[mime][;base64],...` URI and a file name for its type.
fn data_uri(s: &str) -> Result<(Vec<u8>, String), String> {
    let rest = s.strip_prefix("data:").ok_or("not a data: URI")?;
    let (meta, payload) = rest.split_once(',').ok_or("a data: URI without a comma")?;
    if !meta.ends_with(";base64") {
        return Err("only base64 data: URIs are read".into());
    }
    let mime = meta.trim_end_matches(";base64").to_ascii_lowercase();
    let ext = match mime.as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpg",
        "image/tiff" => "tif",
        "image/bmp" => "bmp",
        "application/dicom" => "dcm",
        _ => "bin",
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| format!("bad base64 in the data: URI ({e})"))?;
    Ok((bytes, format!("task.{ext}")))
}

async fn predict(State(st): St, body: Bytes) -> Response {
    let limit = st.limits.timeout;
    with_timeout(limit, predict_inner(st, body)).await
}

async fn predict_inner(st: Arc<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req = json_body(&body)?;
    let tasks = match req.get("tasks") {
        Some(Value::Array(t)) => t.clone(),
        Some(Value::Object(_)) => vec![req["tasks"].clone()],
        _ => return Err(bad("the body needs \"tasks\": a list of Label Studio tasks")),
    };
    if tasks.len() > MAX_TASKS {
        return Err(bad(format!("{} tasks; at most {MAX_TASKS} per request", tasks.len())));
    }
    let config = req.get("label_config").and_then(Value::as_str).unwrap_or("");
    let controls = brush_controls(config);
    let Some(ctl) = controls.first().cloned() else {
        return Err(bad("the label_config has no <BrushLabels name=... toName=...> control"));
    };
    let version = model_version(&st);
    let mut results = Vec::with_capacity(tasks.len());
    for (n, task) in tasks.iter().enumerate() {
        let id = task.get("id").cloned().unwrap_or(json!(n));
        let what = format!("task {id}");
        let data = task.get("data").and_then(Value::as_object).ok_or_else(|| bad(format!("{what}: no \"data\"")))?;
        let field = match &ctl.field {
            Some(f) => f.clone(),
            None => data
                .iter()
                .find(|(_, v)| v.as_str().is_some_and(|s| s.starts_with("data:")))
                .map(|(k, _)| k.clone())
                .ok_or_else(|| {
                    bad(format!("{what}: no <Image name={:?} value=\"$field\"> in the label_config", ctl.to_name))
                })?,
        };
        let src = data
            .get(&field)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("{what}: data.{field} is missing or not a string")))?;
        let fetched = if src.starts_with("data:") {
            data_uri(src)
        } else {
            let st2 = st.clone();
            let (src2, max) = (src.to_string(), st.limits.max_upload_bytes);
            tokio::task::spawn_blocking(move || st2.label_studio.fetch(&src2, max))
                .await
                .unwrap_or_else(|e| Err(format!("worker failed: {e}")))
        };
        let (bytes, file_name) =
            fetched.map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, format!("{what}: data.{field}: {e}")))?;
        // The prompts and the label each mask gets.
        let (prompts, labels): (Vec<String>, Vec<String>) =
            match data.get("prompt").and_then(Value::as_str).map(str::trim).filter(|p| !p.is_empty()) {
                Some(p) => {
                    let label = if ctl.labels.len() == 1 { ctl.labels[0].clone() } else { p.to_string() };
                    (vec![p.to_string()], vec![label])
                }
                None if ctl.labels.is_empty() => {
                    return Err(bad(format!(
                        "{what}: no prompt: the <BrushLabels> has no <Label value=...> and the task no data.prompt"
                    )))
                }
                None => (ctl.labels.clone(), ctl.labels.clone()),
            };
        let up = Upload { bytes: Bytes::from(bytes), file_name };
        let s = segment_any(&st, vec![up], prompts.clone(), None, None, false)
            .await
            .map_err(|e| ApiError(e.0, format!("{what}: {}", e.1)))?;
        let [w, h, d] = s.loaded.vol.dims;
        if d != 1 {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{what}: a volume of {d} slices; Label Studio brush labels take 2-D images"),
            ));
        }
        let mut result = Vec::new();
        for (k, label) in labels.iter().enumerate() {
            let mask = &s.pred.masks[k];
            if !mask.iter().any(|&v| v > 0) {
                continue;
            }
            result.push(json!({
                "id": format!("vlsm-{n}-{k}"),
                "from_name": ctl.from_name,
                "to_name": ctl.to_name,
                "type": "brushlabels",
                "origin": "prediction",
                "original_width": w,
                "original_height": h,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": ls_rle(mask), "brushlabels": [label]},
            }));
        }
        results.push(json!({"result": result, "model_version": version}));
    }
    Ok(Json(json!({"results": results, "model_version": version})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_brush_controls_and_their_image_field() {
        let cfg = r#"<View>
  <Image name="image" value="$img" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Liver &amp; gall bladder" background="red"/>
    <Label value='polyp'/>
  </BrushLabels>
  <Labels name="other" toName="image"><Label value="x"/></Labels>
</View>"#;
        let c = brush_controls(cfg);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].from_name, "tag");
        assert_eq!(c[0].to_name, "image");
        assert_eq!(c[0].labels, ["Liver & gall bladder", "polyp"]);
        assert_eq!(c[0].field.as_deref(), Some("img"));
        assert!(brush_controls("<View><Image name=\"i\" value=\"$x\"/></View>").is_empty());
    }

    #[test]
    fn ls_rle_round_trips() {
        let mut mask = vec![0u8; 300 * 250];
        for (i, v) in mask.iter_mut().enumerate() {
            let (x, y) = (i % 300, i / 300);
            *v = u8::from((x as i32 - 100).pow(2) + (y as i32 - 120).pow(2) < 2500 || x == 7 || (y == 3 && x < 3));
        }
        for m in [mask.clone(), vec![0; 10], vec![1; 70_000], vec![1, 0, 1, 1, 0]] {
            let d = crate::testkit::decode_ls_rle(&ls_rle(&m));
            assert_eq!(d.len(), m.len() * 4);
            for (i, &v) in m.iter().enumerate() {
                assert!(d[4 * i..4 * i + 4].iter().all(|&c| c == if v > 0 { 255 } else { 0 }));
            }
        }
    }

    #[test]
    fn data_uris() {
        let (b, n) = data_uri("data:image/png;base64,aGk=").unwrap();
        assert_eq!((b.as_slice(), n.as_str()), (&b"hi"[..], "task.png"));
        assert!(data_uri("http://x/y.png").is_err());
        assert!(data_uri("data:image/png,hi").is_err());
    }
}
