//! Timing of the main operations on one image (used by `vlsm bench imgproc` and
//! `examples/bench.rs`; compare with `tools/bench_imgproc.py`).
use crate::border::BorderType;
use crate::color::{cvt_color, ColorConversion};
use crate::error::Result;
use crate::geometry::{get_rotation_matrix_2d, resize, warp_affine, Interpolation};
use crate::image::Image;
use crate::morphology::{get_structuring_element, morphology_ex, MorphOp, MorphShape};
use crate::threshold::{adaptive_threshold, threshold, AdaptiveMethod, ThresholdMethod, ThresholdType};
use std::time::Instant;

/// The benchmarked operations, in order; `tools/bench_imgproc.py` runs the same list in OpenCV.
pub const OPS: &[&str] = &[
    "gray",
    "lab",
    "hsv",
    "otsu",
    "adaptive_mean11",
    "adaptive_gauss11",
    "resize_nearest_half",
    "resize_linear_half",
    "resize_linear_0.7",
    "resize_cubic_0.7",
    "resize_area_0.7",
    "rotate30",
    "blur5",
    "gaussian5",
    "gaussian_s2",
    "median3",
    "median5",
    "erode5_rect",
    "dilate5_ellipse",
    "open5_rect",
    "sobel_dx",
    "canny",
    "equalize_hist",
    "harris",
    "kmeans4_quarter",
    "filter2d_3x3",
    "canny_100_200",
    "lab_f32",
];

/// The 3x3 float kernel of `filter2d_3x3` (a sharpening kernel; `tools/bench_imgproc.py` uses the
/// same).
const FILTER_3X3: [f32; 9] = [0.0, -1.0, 0.0, -1.0, 5.0, -1.0, 0.0, -1.0, 0.0];

/// What the ops run on: the RGB image, its gray conversion, the RGB image as f32 in [0, 1]
/// (`lab_f32`) and the RGB pixels of the image resized to a quarter of each side (area
/// interpolation) as f32 samples (`kmeans4_quarter`).
struct Inputs {
    rgb: Image<u8>,
    gray: Image<u8>,
    rgb_f32: Image<f32>,
    quarter: Vec<f32>,
}

impl Inputs {
    fn new(rgb: &Image<u8>) -> Result<Self> {
        let (w, h) = (rgb.width(), rgb.height());
        let quarter = resize(rgb, ((w / 4).max(1), (h / 4).max(1)), Interpolation::Area)?;
        Ok(Self {
            rgb: rgb.clone(),
            gray: cvt_color(rgb, ColorConversion::Rgb2Gray)?,
            rgb_f32: rgb.map(|v| v as f32 / 255.0),
            quarter: quarter.data().iter().map(|&v| v as f32).collect(),
        })
    }
}

fn run_op(op: &str, inp: &Inputs) -> Result<()> {
    let (rgb, gray) = (&inp.rgb, &inp.gray);
    let (w, h) = (rgb.width(), rgb.height());
    let scaled = |f: f64| (((w as f64) * f).round() as usize, ((h as f64) * f).round() as usize);
    match op {
        "gray" => drop(cvt_color(rgb, ColorConversion::Rgb2Gray)?),
        "lab" => drop(cvt_color(rgb, ColorConversion::Rgb2Lab)?),
        "hsv" => drop(cvt_color(rgb, ColorConversion::Rgb2Hsv)?),
        "otsu" => drop(threshold(gray, 0.0, 255.0, ThresholdType::Binary, ThresholdMethod::Otsu)?),
        "adaptive_mean11" => {
            drop(adaptive_threshold(gray, 255.0, AdaptiveMethod::Mean, ThresholdType::Binary, 11, 2.0)?)
        }
        "adaptive_gauss11" => {
            drop(adaptive_threshold(gray, 255.0, AdaptiveMethod::Gaussian, ThresholdType::Binary, 11, 2.0)?)
        }
        "resize_nearest_half" => drop(resize(rgb, (w / 2, h / 2), Interpolation::Nearest)?),
        "resize_linear_half" => drop(resize(rgb, (w / 2, h / 2), Interpolation::Linear)?),
        "resize_linear_0.7" => drop(resize(rgb, scaled(0.7), Interpolation::Linear)?),
        "resize_cubic_0.7" => drop(resize(rgb, scaled(0.7), Interpolation::Cubic)?),
        "resize_area_0.7" => drop(resize(rgb, scaled(0.7), Interpolation::Area)?),
        "rotate30" => {
            let m = get_rotation_matrix_2d(((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0), 30.0, 1.0);
            drop(warp_affine(rgb, &m, (w, h), Interpolation::Linear, BorderType::Constant, 0.0)?)
        }
        "blur5" => drop(crate::filter::blur(rgb, (5, 5), BorderType::Reflect101)?),
        "gaussian5" => drop(crate::filter::gaussian_blur(rgb, (5, 5), 0.0, 0.0, BorderType::Reflect101)?),
        "gaussian_s2" => drop(crate::filter::gaussian_blur(rgb, (0, 0), 2.0, 0.0, BorderType::Reflect101)?),
        "median3" => drop(crate::filter::median_blur(rgb, 3)?),
        "median5" => drop(crate::filter::median_blur(rgb, 5)?),
        "erode5_rect" => {
            drop(morphology_ex(gray, MorphOp::Erode, &get_structuring_element(MorphShape::Rect, (5, 5))?, 1)?)
        }
        "dilate5_ellipse" => {
            drop(morphology_ex(gray, MorphOp::Dilate, &get_structuring_element(MorphShape::Ellipse, (5, 5))?, 1)?)
        }
        "open5_rect" => {
            drop(morphology_ex(gray, MorphOp::Open, &get_structuring_element(MorphShape::Rect, (5, 5))?, 1)?)
        }
        "sobel_dx" => drop(crate::edges::sobel(gray, 1, 0, 3, BorderType::Reflect101)?),
        "canny" => drop(crate::edges::canny(gray, 50.0, 150.0, 3, false)?),
        "equalize_hist" => drop(crate::hist::equalize_hist(gray)?),
        "harris" => drop(crate::features::harris::corner_harris(gray, 2, 3, 0.04, BorderType::Reflect101)?),
        // k-means++ seeding, one attempt, 10 iterations (OpenCV: MAX_ITER only, eps FLT_EPSILON).
        "kmeans4_quarter" => drop(crate::segment::kmeans(&inp.quarter, 3, 4, 10, f32::EPSILON as f64, 1, 1)?),
        "filter2d_3x3" => drop(crate::filter::filter_2d(rgb, &FILTER_3X3, 3, 3, 0.0, BorderType::Reflect101)?),
        "canny_100_200" => drop(crate::edges::canny(gray, 100.0, 200.0, 3, false)?),
        "lab_f32" => drop(cvt_color(&inp.rgb_f32, ColorConversion::Rgb2Lab)?),
        _ => {}
    }
    Ok(())
}

/// Median milliseconds over `reps` runs (after one warm-up) of every op in [`OPS`] on the RGB
/// image `rgb` (single-channel ops use its gray conversion).
pub fn run_image(rgb: &Image<u8>, reps: usize) -> Result<Vec<(String, f64)>> {
    // IMGPROC_BENCH_ONLY=op1,op2 restricts the run (for profiling).
    let only = std::env::var("IMGPROC_BENCH_ONLY").ok();
    let only: Option<Vec<&str>> = only.as_deref().map(|o| o.split(',').collect());
    run_image_ops(rgb, reps, only.as_deref())
}

/// [`run_image`] on the ops named in `only` (all of [`OPS`] when `None`; unknown names are an
/// error).
pub fn run_image_ops(rgb: &Image<u8>, reps: usize, only: Option<&[&str]>) -> Result<Vec<(String, f64)>> {
    if let Some(bad) = only.and_then(|o| o.iter().find(|n| !OPS.contains(n))) {
        return Err(crate::error::Error::BadArg {
            op: "bench",
            msg: format!("unknown op {bad:?} (known: {})", OPS.join(", ")),
        });
    }
    let inp = Inputs::new(rgb)?;
    let mut out = Vec::new();
    for &op in OPS {
        if only.is_some_and(|o| !o.contains(&op)) {
            continue;
        }
        run_op(op, &inp)?;
        let mut times: Vec<f64> = (0..reps.max(1))
            .map(|_| {
                let t = Instant::now();
                let _ = run_op(op, &inp);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        out.push((op.to_string(), times[times.len() / 2]));
    }
    Ok(out)
}

/// Reads `image_path` (decoded by the `image` crate, as RGB) and runs [`run_image`].
pub fn run(image_path: &std::path::Path, reps: usize) -> std::result::Result<Vec<(String, f64)>, String> {
    let img = image::open(image_path).map_err(|e| format!("{}: {e}", image_path.display()))?;
    let rgb = Image::<u8>::from(&img.to_rgb8());
    run_image(&rgb, reps).map_err(|e| e.to_string())
}

/// [`run_image_ops`] on an RGB image the caller decoded.
pub fn run_rgb(rgb: &Image<u8>, reps: usize, only: Option<&[&str]>) -> std::result::Result<Vec<(String, f64)>, String> {
    run_image_ops(rgb, reps, only).map_err(|e| e.to_string())
}
