//! `vlsm imgproc OP INPUT OUTPUT [options]` and `vlsm bench imgproc`.
use anyhow::{anyhow, bail, Context, Result};
use imgproc::{ColorConversion, Image};
use std::path::{Path, PathBuf};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// RGB to gray (cv2.COLOR_RGB2GRAY).
    Gray,
    /// RGB to 8-bit L*a*b* (colour input only).
    Lab,
    /// Fixed threshold per channel as cv2.threshold; with --otsu/--triangle on the gray
    /// conversion (OpenCV defines those on one channel only).
    Threshold,
    /// Gray only (cv2.adaptiveThreshold takes one channel): colour input is converted to gray.
    Adaptive,
    /// Per channel (cv2.resize).
    Resize,
    /// Rotation about the centre, per channel (cv2.warpAffine, bilinear).
    Rotate,
    /// Per channel (cv2.blur).
    Blur,
    /// Per channel (cv2.GaussianBlur).
    Gaussian,
    /// Per channel (cv2.medianBlur).
    Median,
    /// Per channel (cv2.erode).
    Erode,
    /// Per channel (cv2.dilate).
    Dilate,
    /// Per channel (cv2.morphologyEx MORPH_OPEN).
    Open,
    /// Per channel (cv2.morphologyEx MORPH_CLOSE).
    Close,
    /// Per channel (cv2.morphologyEx MORPH_GRADIENT).
    Gradient,
    /// Per channel (cv2.Sobel to 16 bits, then cv2.convertScaleAbs).
    Sobel,
    /// Gray only here: colour input is converted to gray first (cv2.Canny on colour, which takes
    /// the strongest channel's gradient, is not implemented).
    Canny,
    /// Gray only (cv2.cornerHarris takes one channel): colour input is converted to gray; writes .npy.
    Harris,
    /// k-means on the pixel values of all channels; each pixel painted with its centre.
    Kmeans,
    /// Gray only (SIFT detects on gray): colour input is converted to gray; writes .json.
    Sift,
}

#[derive(clap::Args, Debug)]
pub struct ImgprocArgs {
    /// Operation to run.
    #[arg(value_enum)]
    pub op: Op,
    /// Input image (PNG, JPEG, TIFF, BMP).
    pub input: PathBuf,
    /// Output file (an image; `.npy` for harris; `.json` for sift).
    pub output: PathBuf,
    #[arg(long, default_value_t = 127.0)]
    pub value: f64,
    /// binary | binary_inv | trunc | tozero | tozero_inv
    #[arg(long = "type", default_value = "binary")]
    pub ty: String,
    #[arg(long)]
    pub otsu: bool,
    #[arg(long)]
    pub triangle: bool,
    #[arg(long, default_value_t = 255.0)]
    pub maxval: f64,
    /// mean | gaussian
    #[arg(long, default_value = "mean")]
    pub method: String,
    /// Block size: adaptive (default 11) or harris (default 2).
    #[arg(long)]
    pub block: Option<usize>,
    #[arg(long, default_value_t = 2.0, allow_hyphen_values = true)]
    pub c: f64,
    #[arg(long)]
    pub width: Option<usize>,
    #[arg(long)]
    pub height: Option<usize>,
    /// nearest | linear | cubic | area
    #[arg(long, default_value = "linear")]
    pub interp: String,
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub angle: f64,
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    #[arg(long, default_value_t = 3)]
    pub ksize: usize,
    #[arg(long, default_value_t = 0.0)]
    pub sigma: f64,
    /// rect | ellipse | cross
    #[arg(long, default_value = "rect")]
    pub shape: String,
    #[arg(long, default_value_t = 1)]
    pub dx: usize,
    #[arg(long, default_value_t = 0)]
    pub dy: usize,
    #[arg(long, default_value_t = 50.0)]
    pub low: f64,
    #[arg(long, default_value_t = 150.0)]
    pub high: f64,
    #[arg(long)]
    pub l2: bool,
    /// Harris' k (default 0.04), or the number of clusters for kmeans (default 4).
    #[arg(long)]
    pub k: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn read(path: &Path) -> Result<Image<u8>> {
    check_input_file(path)?;
    // The reader every command shares: the pixel limit from the header, truncated JPEGs refused.
    Ok(Image::<u8>::from_dynamic(&vlsm::io::read_raster(path)?))
}

/// The input must be an existing regular file (not a directory, FIFO or device).
pub(crate) fn check_input_file(path: &Path) -> Result<()> {
    let md = std::fs::metadata(path).map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
    if md.is_dir() {
        bail!("{}: is a directory, not an image file", path.display());
    }
    if !md.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    Ok(())
}

/// The output must be a file name (not a directory) whose extension says the format.
fn check_output_path(op: Op, path: &Path) -> Result<()> {
    let p = path.display();
    if path.is_dir() || path.as_os_str().to_string_lossy().ends_with(std::path::MAIN_SEPARATOR) {
        bail!("{p}: is a directory; give an output file name");
    }
    if path.file_name().is_none() {
        bail!("{p}: not a file path");
    }
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
    match op {
        // .npy (harris) and .json (sift) are written whatever the name.
        Op::Harris | Op::Sift => {}
        _ => match ext {
            None => bail!("{p}: no file extension; give one of .png, .jpg, .tif, .bmp"),
            Some(e) => {
                let ok = image::ImageFormat::from_extension(&e).is_some_and(|f| f.can_write());
                if !ok {
                    bail!("{p}: cannot write images as .{e}; give one of .png, .jpg, .tif, .bmp");
                }
            }
        },
    }
    Ok(())
}

/// Gray conversion of a colour input (as `IMREAD_GRAYSCALE` would give for lossless files).
fn gray(img: &Image<u8>) -> Result<Image<u8>> {
    Ok(match img.channels() {
        1 => img.clone(),
        2 => Image::from_vec(img.width(), img.height(), 1, img.data().iter().step_by(2).copied().collect())?,
        _ => imgproc::cvt_color(img, ColorConversion::Rgb2Gray)?,
    })
}

/// Encodes in the format the extension names (as `DynamicImage::save` would) and writes atomically.
fn save_image(path: &Path, img: &Image<u8>) -> Result<()> {
    let err = |e: image::ImageError| anyhow!("{}: cannot write image: {e}", path.display());
    let format = image::ImageFormat::from_path(path).map_err(err)?;
    let mut buf = std::io::Cursor::new(Vec::new());
    img.to_dynamic().write_to(&mut buf, format).map_err(err)?;
    vlsm::io::write_atomic(path, buf.get_ref())
}

fn save_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    vlsm::io::write_atomic(path, bytes)
}

fn shape(s: &str) -> Result<imgproc::MorphShape> {
    Ok(match s {
        "rect" => imgproc::MorphShape::Rect,
        "ellipse" => imgproc::MorphShape::Ellipse,
        "cross" => imgproc::MorphShape::Cross,
        o => bail!("unknown shape {o:?} (rect, ellipse, cross)"),
    })
}

pub fn run(a: ImgprocArgs) -> Result<()> {
    let input = &a.input;
    check_output_path(a.op, &a.output)?;
    let src = read(input)?;
    let ctx = |e: imgproc::Error| anyhow!("{}: {e}", input.display());
    let out = &a.output;
    use imgproc::*;
    let img: Image<u8> = match a.op {
        Op::Gray => gray(&src)?,
        Op::Lab => {
            if src.channels() < 3 {
                bail!("{}: lab needs a colour image", input.display());
            }
            cvt_color(&src, ColorConversion::Rgb2Lab).map_err(ctx)?
        }
        Op::Threshold => {
            let ty = match a.ty.as_str() {
                "binary" => ThresholdType::Binary,
                "binary_inv" => ThresholdType::BinaryInv,
                "trunc" => ThresholdType::Trunc,
                "tozero" => ThresholdType::ToZero,
                "tozero_inv" => ThresholdType::ToZeroInv,
                o => bail!("unknown threshold type {o:?}"),
            };
            let method = match (a.otsu, a.triangle) {
                (true, true) => bail!("--otsu and --triangle are exclusive"),
                (true, _) => threshold::ThresholdMethod::Otsu,
                (_, true) => threshold::ThresholdMethod::Triangle,
                _ => threshold::ThresholdMethod::Fixed,
            };
            // A fixed threshold works per channel as cv2's; Otsu and triangle need one channel.
            let src = if method == threshold::ThresholdMethod::Fixed { src } else { gray(&src)? };
            let (t, img) = threshold(&src, a.value, a.maxval, ty, method).map_err(ctx)?;
            if method != threshold::ThresholdMethod::Fixed {
                eprintln!("threshold: {t}");
            }
            img
        }
        Op::Adaptive => {
            let m = match a.method.as_str() {
                "mean" => AdaptiveMethod::Mean,
                "gaussian" => AdaptiveMethod::Gaussian,
                o => bail!("unknown adaptive method {o:?} (mean, gaussian)"),
            };
            adaptive_threshold(&gray(&src)?, a.maxval, m, ThresholdType::Binary, a.block.unwrap_or(11), a.c)
                .map_err(ctx)?
        }
        Op::Resize => {
            let interp = match a.interp.as_str() {
                "nearest" => Interpolation::Nearest,
                "linear" => Interpolation::Linear,
                "cubic" => Interpolation::Cubic,
                "area" => Interpolation::Area,
                o => bail!("unknown interpolation {o:?}"),
            };
            let (w, h) = (
                a.width.ok_or_else(|| anyhow!("resize needs --width"))?,
                a.height.ok_or_else(|| anyhow!("resize needs --height"))?,
            );
            resize(&src, (w, h), interp).map_err(ctx)?
        }
        Op::Rotate => {
            let (w, h) = (src.width() as f64, src.height() as f64);
            let m = get_rotation_matrix_2d(((w - 1.0) / 2.0, (h - 1.0) / 2.0), a.angle, a.scale);
            warp_affine(&src, &m, (src.width(), src.height()), Interpolation::Linear, BorderType::Constant, 0.0)
                .map_err(ctx)?
        }
        Op::Blur => blur(&src, (a.ksize, a.ksize), BorderType::Reflect101).map_err(ctx)?,
        Op::Gaussian => gaussian_blur(&src, (a.ksize, a.ksize), a.sigma, 0.0, BorderType::Reflect101).map_err(ctx)?,
        Op::Median => median_blur(&src, a.ksize).map_err(ctx)?,
        Op::Erode | Op::Dilate | Op::Open | Op::Close | Op::Gradient => {
            let k = get_structuring_element(shape(&a.shape)?, (a.ksize, a.ksize)).map_err(ctx)?;
            let op = match a.op {
                Op::Erode => MorphOp::Erode,
                Op::Dilate => MorphOp::Dilate,
                Op::Open => MorphOp::Open,
                Op::Close => MorphOp::Close,
                _ => MorphOp::Gradient,
            };
            // per channel, as cv2.morphologyEx on a colour image
            morphology_ex(&src, op, &k, 1).map_err(ctx)?
        }
        Op::Sobel => {
            let d = sobel(&src, a.dx, a.dy, a.ksize, BorderType::Reflect101).map_err(ctx)?;
            convert_scale_abs(&d, 1.0, 0.0).map_err(ctx)?
        }
        Op::Canny => canny(&gray(&src)?, a.low, a.high, 3, a.l2).map_err(ctx)?,
        Op::Harris => {
            let r =
                corner_harris(&gray(&src)?, a.block.unwrap_or(2), a.ksize, a.k.unwrap_or(0.04), BorderType::Reflect101)
                    .map_err(ctx)?;
            return save_bytes(out, &npy::to_npy_bytes(r.data(), &[r.height(), r.width()]));
        }
        Op::Kmeans => {
            let data: Vec<f32> = src.data().iter().map(|&v| v as f32).collect();
            let cn = src.channels();
            let k = a.k.unwrap_or(4.0);
            if k < 1.0 || k.fract() != 0.0 {
                bail!("kmeans: --k must be a positive integer, got {k}");
            }
            let r = kmeans(&data, cn, k as usize, 100, 0.01, 3, a.seed).map_err(ctx)?;
            // Each pixel painted with its cluster centre.
            let px: Vec<u8> = r
                .labels
                .iter()
                .flat_map(|&l| r.centers[l].iter().map(|&v| v.round().clamp(0.0, 255.0) as u8))
                .collect();
            Image::from_vec(src.width(), src.height(), cn, px)?
        }
        Op::Sift => {
            let kps = imgproc::sift_detect(&gray(&src)?).map_err(ctx)?;
            let list: Vec<serde_json::Value> = kps
                .iter()
                .map(|k| serde_json::json!({"x": k.x, "y": k.y, "size": k.size, "angle": k.angle, "response": k.response, "octave": k.octave}))
                .collect();
            let body = serde_json::to_vec_pretty(&serde_json::json!({"keypoints": list})).context("sift json")?;
            return save_bytes(out, &body);
        }
    };
    save_image(out, &img)
}

/// `vlsm bench imgproc --image IMG [--json] [--reps N] [--ops a,b]`.
pub fn bench(image: &Path, json: bool, reps: usize, ops: &[String]) -> Result<()> {
    if reps == 0 {
        bail!("--reps must be >= 1");
    }
    if let Some(o) = ops.iter().find(|o| !imgproc::bench::OPS.contains(&o.as_str())) {
        bail!("--ops: unknown op {o:?} (known: {})", imgproc::bench::OPS.join(", "));
    }
    check_input_file(image)?;
    let rgb = Image::<u8>::from(&vlsm::io::read_rgb(image)?);
    let only: Vec<&str> = ops.iter().map(|s| s.as_str()).collect();
    let only = (!only.is_empty()).then_some(only.as_slice());
    let rows = imgproc::bench::run_rgb(&rgb, reps, only).map_err(|e| anyhow!("{}: {e}", image.display()))?;
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            rows.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        for (k, v) in rows {
            println!("{k:24} {v:9.3} ms");
        }
    }
    Ok(())
}
