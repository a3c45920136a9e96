//! Loader for the golden fixtures written by `tools/imgproc_fixtures.py`.
#![allow(dead_code)]
use imgproc::{cvt_color, ColorConversion, Image};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;

pub struct Fixtures {
    pub cases: Vec<Value>,
    arrays: HashMap<String, (String, Vec<usize>, usize)>,
    blob: Vec<u8>,
}

pub fn fx() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/imgproc");
        let cases = std::fs::read_to_string(dir.join("cases.jsonl"))
            .expect("fixtures")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        let arrays: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("arrays.json")).expect("arrays")).expect("json");
        let arrays = arrays
            .as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| {
                let shape =
                    v["shape"].as_array().expect("shape").iter().map(|s| s.as_u64().expect("dim") as usize).collect();
                (
                    k.clone(),
                    (
                        v["dtype"].as_str().expect("dtype").to_string(),
                        shape,
                        v["offset"].as_u64().expect("off") as usize,
                    ),
                )
            })
            .collect();
        let mut blob = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(dir.join("arrays.bin.gz")).expect("blob"))
            .read_to_end(&mut blob)
            .expect("gzip");
        Fixtures { cases, arrays, blob }
    })
}

impl Fixtures {
    pub fn cases(&self, op: &str) -> Vec<&Value> {
        self.cases.iter().filter(|c| c["op"] == op).collect()
    }
    pub fn shape(&self, name: &str) -> Vec<usize> {
        self.arrays[name].1.clone()
    }
    fn raw(&self, name: &str) -> (&str, &[usize], &[u8]) {
        let (dt, shape, off) = &self.arrays[name];
        let n: usize = shape.iter().product();
        let size = match dt.as_str() {
            "|u1" => 1,
            "<i2" | "<u2" => 2,
            "<i4" | "<f4" => 4,
            _ => 8,
        };
        (dt, shape, &self.blob[*off..off + n * size])
    }
    pub fn f64s(&self, name: &str) -> Vec<f64> {
        let (dt, _, b) = self.raw(name);
        match dt {
            "|u1" => b.iter().map(|&v| v as f64).collect(),
            "<i2" => b.chunks(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f64).collect(),
            "<u2" => b.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as f64).collect(),
            "<i4" => b.chunks(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            "<f4" => b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            "<f8" => b.chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
            other => panic!("dtype {other}"),
        }
    }
    /// An input or output array as an image (HxW or HxWxC).
    pub fn image_u8(&self, name: &str) -> Image<u8> {
        let s = self.shape(name);
        let cn = if s.len() == 3 { s[2] } else { 1 };
        Image::from_vec(s[1], s[0], cn, self.f64s(name).iter().map(|&v| v as u8).collect()).unwrap()
    }
    pub fn image_f32(&self, name: &str) -> Image<f32> {
        let s = self.shape(name);
        let cn = if s.len() == 3 { s[2] } else { 1 };
        Image::from_vec(s[1], s[0], cn, self.f64s(name).iter().map(|&v| v as f32).collect()).unwrap()
    }
    pub fn input(&self, c: &Value) -> Image<u8> {
        self.image_u8(&format!("in_{}", c["input"].as_str().unwrap()))
    }
    pub fn input_gray(&self, c: &Value) -> Image<u8> {
        cvt_color(&self.input(c), ColorConversion::Rgb2Gray).unwrap()
    }
    /// `input` or its gray version, as `params.src` says.
    pub fn input_src(&self, c: &Value) -> Image<u8> {
        if c["params"]["src"] == "gray" || c["params"]["gray"] == true {
            self.input_gray(c)
        } else {
            self.input(c)
        }
    }
    pub fn expected(&self, c: &Value) -> Vec<f64> {
        self.f64s(c["output"].as_str().unwrap())
    }
}

/// Compares exactly; returns a description of the mismatch.
pub fn exact(name: &str, got: &[f64], want: &[f64]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{name}: length {} != {}", got.len(), want.len()));
    }
    let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
    if bad.is_empty() {
        return None;
    }
    let maxd = bad.iter().map(|&i| (got[i] - want[i]).abs()).fold(0.0, f64::max);
    Some(format!(
        "{name}: {} of {} differ (max diff {maxd}; first at {}: {} vs {})",
        bad.len(),
        got.len(),
        bad[0],
        got[bad[0]],
        want[bad[0]]
    ))
}

/// Relative comparison: |a - b| <= rel * max(|b|, 1e-3 * max|want|).
pub fn close(name: &str, got: &[f64], want: &[f64], rel: f64) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{name}: length {} != {}", got.len(), want.len()));
    }
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| (got[i] - want[i]).abs() > rel * want[i].abs().max(1e-3 * scale).max(1e-12))
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(format!(
        "{name}: {} of {} outside {rel} (first at {}: {} vs {})",
        bad.len(),
        got.len(),
        bad[0],
        got[bad[0]],
        want[bad[0]]
    ))
}

pub fn to_f64<T: imgproc::Pixel>(img: &Image<T>) -> Vec<f64> {
    img.data().iter().map(|v| v.to_f64()).collect()
}

pub fn report(op: &str, failures: Vec<String>, total: usize) {
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(25).collect();
        panic!(
            "{op}: {} of {total} cases fail:\n{}",
            failures.len(),
            shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        );
    }
    assert!(total > 0, "{op}: no fixture cases");
}

pub fn border(s: &Value) -> imgproc::BorderType {
    match s.as_str().unwrap_or("reflect101") {
        "reflect" => imgproc::BorderType::Reflect,
        "replicate" => imgproc::BorderType::Replicate,
        "constant" => imgproc::BorderType::Constant,
        "wrap" => imgproc::BorderType::Wrap,
        _ => imgproc::BorderType::Reflect101,
    }
}

/// Tolerant comparison for the ops whose OpenCV 5 arithmetic is not reproduced bit for bit:
/// at most `max_diff` off anywhere, and at most `max_frac` of the values differ at all.
pub fn near(name: &str, got: &[f64], want: &[f64], max_diff: f64, max_frac: f64) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{name}: length {} != {}", got.len(), want.len()));
    }
    let diffs: Vec<f64> = got.iter().zip(want).map(|(a, b)| (a - b).abs()).collect();
    let n = diffs.iter().filter(|&&d| d > 0.0).count();
    let maxd = diffs.iter().cloned().fold(0.0, f64::max);
    (maxd > max_diff || n as f64 > max_frac * got.len() as f64)
        .then(|| format!("{name}: {n} of {} differ, max diff {maxd}", got.len()))
}
