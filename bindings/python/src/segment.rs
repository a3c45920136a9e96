//! `vlsm.Segmenter` and `vlsm.SegmentResult`: `vlsm segment` on numpy arrays and image files.

use std::path::{Path, PathBuf};

use image::RgbImage;
use numpy::ndarray::Array3;
use numpy::{
    dtype, IntoPyArray, PyArray1, PyArray3, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;
use vlsm::pipeline;

use crate::errors::{guarded, value_error, Failure, Kind};

/// Images per batch through the image encoder (`vlsm segment --batch`'s default).
const IMAGE_BATCH: usize = 4;

/// An error with the exception class it becomes and the file it is about.
pub struct Staged {
    failure: Failure,
    kind: Kind,
    path: Option<PathBuf>,
}

impl Staged {
    pub fn into_py(self) -> PyErr {
        let paths: Vec<&Path> = self.path.as_deref().into_iter().collect();
        self.failure.into_py(self.kind, &paths)
    }
}

/// Runs `f` guarded; its error or panic becomes `kind` (FileNotFoundError when `path` is missing).
fn stage<T>(kind: Kind, path: Option<&Path>, f: impl FnOnce() -> anyhow::Result<T>) -> Result<T, Staged> {
    guarded(f).map_err(|failure| Staged { failure, kind, path: path.map(Path::to_path_buf) })
}

/// The model directory for `model` as `vlsm segment --model` resolves it (`None`: the built-in
/// model).
pub fn resolve_model(model: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match model {
        Some(m) => vlsm::hub::resolve(&m),
        None => pipeline::default_model_dir(),
    }
}

/// A model directory loaded once, segmenting images × prompts as `vlsm segment` does.
///
/// `Segmenter(model=None, threads=None)`: `model` is a model directory (any kind `vlsm segment
/// --model` takes), or None for the built-in model. `threads` caps the worker threads this
/// segmenter's model runs on (default: the process-wide pool, all cores). The model runs with
/// the GIL released, and one segmenter may be used from several Python threads at once.
#[pyclass(frozen, module = "vlsm")]
pub struct Segmenter {
    inner: pipeline::Segmenter,
    pool: Option<rayon::ThreadPool>,
    threads: Option<usize>,
}

/// An image argument, decoded while the GIL is held (arrays) or later (paths).
enum ImageArg {
    Path(PathBuf),
    Pixels(RgbImage),
}

impl Segmenter {
    /// Runs `f` on this segmenter's pool (or the caller's when it has none).
    fn install<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// `vlsm segment` on `images` × `prompts`: masks, probabilities and logits per image.
    fn run(&self, images: Vec<ImageArg>, prompts: &[String], threshold: f32) -> Result<Vec<Output>, Staged> {
        let seg = &self.inner;
        let cond = stage(Kind::Runtime, None, || seg.text_conditionals(prompts))?;
        let mut out = Vec::with_capacity(images.len());
        let mut it = images.into_iter().peekable();
        while it.peek().is_some() {
            let mut batch = Vec::with_capacity(IMAGE_BATCH);
            for arg in it.by_ref().take(IMAGE_BATCH) {
                batch.push(match arg {
                    ImageArg::Pixels(img) => img,
                    ImageArg::Path(p) => stage(Kind::Value, Some(&p), || read_image(&p))?,
                });
            }
            let feats = stage(Kind::Runtime, None, || {
                let refs: Vec<&RgbImage> = batch.iter().collect();
                seg.encode_images(&seg.pixel_values(&refs)?)
            })?;
            for (img, f) in batch.iter().zip(&feats) {
                out.push(stage(Kind::Runtime, None, || decode_one(seg, img, f, &cond, prompts.len(), threshold))?);
            }
        }
        Ok(out)
    }
}

/// One image's outputs, made without the GIL; [`SegmentResult::new`] hands them to numpy.
struct Output {
    masks: Array3<bool>,
    probs: Array3<f32>,
    logits: Array3<f32>,
    areas: Vec<u64>,
    presence: Vec<f32>,
    present: Vec<bool>,
}

/// `vlsm segment`'s outputs for one image and its `n` conditions: the logits and presence of
/// [`pipeline::Segmenter::decode_each`], the probabilities and the mask (empty when the target
/// is absent) of [`pipeline::probabilities_and_mask`].
fn decode_one(
    seg: &pipeline::Segmenter,
    img: &RgbImage,
    f: &pipeline::ImageFeatures,
    cond: &candle_core::Tensor,
    n: usize,
    threshold: f32,
) -> anyhow::Result<Output> {
    let (w, h) = img.dimensions();
    let size = n * (w * h) as usize;
    let (mut masks, mut probs, mut logits) = (Vec::with_capacity(size), Vec::with_capacity(size), vec![]);
    let (mut areas, mut presence, mut present) = (vec![], vec![], vec![]);
    let mut model_hw = (0, 0);
    seg.decode_each(f, cond, threshold, |_, l, p| {
        model_hw = l.dims2()?;
        logits.extend(l.flatten_all()?.to_vec1::<f32>()?);
        let (pr, mask) = pipeline::probabilities_and_mask(l, w, h, threshold, p.present)?;
        probs.extend_from_slice(&pr);
        let before = masks.len();
        masks.extend(mask.as_raw().iter().map(|&v| v > 0));
        areas.push(masks[before..].iter().filter(|&&m| m).count() as u64);
        presence.push(p.presence);
        present.push(p.present);
        Ok(())
    })?;
    let img_shape = (n, h as usize, w as usize);
    Ok(Output {
        masks: Array3::from_shape_vec(img_shape, masks)?,
        probs: Array3::from_shape_vec(img_shape, probs)?,
        logits: Array3::from_shape_vec((n, model_hw.0, model_hw.1), logits)?,
        areas,
        presence,
        present,
    })
}

/// What `vlsm segment` reads for an image path: the same checks, then `io::read_rgb`.
fn read_image(p: &Path) -> anyhow::Result<RgbImage> {
    let md = std::fs::metadata(p).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", p.display()))?;
    if md.is_dir() {
        anyhow::bail!("{}: is a directory, not an image file", p.display());
    }
    vlsm::io::read_rgb(p)
}

/// `image` as an RGB image: a uint8 array H×W×3 (RGB), H×W×1 or H×W (grey, replicated into the
/// three channels as a grey file is), any strides, read-only or not; or a path (str or
/// os.PathLike).
fn image_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<ImageArg> {
    if obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")? {
        return Ok(ImageArg::Path(obj.extract::<PathBuf>()?));
    }
    let Ok(arr) = obj.cast::<PyUntypedArray>() else {
        return Err(PyTypeError::new_err(format!(
            "{name}: expected a numpy uint8 array (H×W×3 RGB or H×W grey) or an image path, got {}",
            obj.get_type().name()?
        )));
    };
    let py = obj.py();
    if !arr.dtype().is_equiv_to(&dtype::<u8>(py)) {
        return Err(value_error(format!("{name}: expected dtype uint8, got {}", arr.dtype())));
    }
    let shape = arr.shape().to_vec();
    let grey = match shape.as_slice() {
        [_, _] | [_, _, 1] => true,
        [_, _, 3] => false,
        _ => {
            return Err(value_error(format!(
                "{name}: expected shape (H, W, 3) for RGB or (H, W) for grey, got {shape:?}"
            )))
        }
    };
    let (h, w) = (shape[0], shape[1]);
    if h == 0 || w == 0 {
        return Err(value_error(format!("{name}: image has zero size ({w}x{h})")));
    }
    if (h as u64) * (w as u64) > vlsm::io::MAX_PIXELS {
        return Err(value_error(format!("{name}: {w}x{h} is more than the limit of {} pixels", vlsm::io::MAX_PIXELS)));
    }
    let typed = arr.cast::<PyArrayDyn<u8>>().map_err(|_| value_error(format!("{name}: expected dtype uint8")))?;
    let ro = typed.try_readonly().map_err(|e| value_error(format!("{name}: cannot read the array: {e}")))?;
    let view = ro.as_array();
    // Logical (C) order whatever the strides: non-contiguous and negative-stride views work.
    let data: Vec<u8> =
        if grey { view.iter().flat_map(|&v| [v, v, v]).collect() } else { view.iter().copied().collect() };
    let img = RgbImage::from_raw(w as u32, h as u32, data).ok_or_else(|| value_error(format!("{name}: bad size")))?;
    Ok(ImageArg::Pixels(img))
}

/// `prompts`: one string or a sequence of strings.
fn prompts_arg(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(vec![s.extract::<String>()?]);
    }
    let bad = || PyTypeError::new_err("prompts: expected a string or a list of strings");
    let mut v = vec![];
    for item in obj.try_iter().map_err(|_| bad())? {
        let item = item?;
        let s = item.cast::<PyString>().map_err(|_| bad())?;
        v.push(s.extract::<String>()?);
    }
    Ok(v)
}

impl Segmenter {
    fn check_prompts(&self, mut prompts: Vec<String>) -> PyResult<Vec<String>> {
        if prompts.is_empty() {
            if self.inner.uses_text() {
                return Err(value_error("prompts: give at least one prompt"));
            }
            // A text-free model needs no prompt; one placeholder gives its one mask per image.
            prompts.push(String::new());
        }
        Ok(prompts)
    }

    fn threshold(&self, threshold: Option<f32>) -> PyResult<f32> {
        match threshold {
            Some(t) if !(0.0..=1.0).contains(&t) => Err(value_error(format!("threshold must be in 0..1, got {t}"))),
            Some(t) => Ok(t),
            None => Ok(self.inner.default_threshold()),
        }
    }

    /// `segment` and `segment_batch`: the prompts and threshold checked, then one result per
    /// image, in order.
    fn segment_images(
        &self,
        py: Python<'_>,
        images: Vec<ImageArg>,
        prompts: &Bound<'_, PyAny>,
        threshold: Option<f32>,
    ) -> PyResult<Vec<Py<SegmentResult>>> {
        let prompts = self.check_prompts(prompts_arg(prompts)?)?;
        let threshold = self.threshold(threshold)?;
        if images.is_empty() {
            return Ok(vec![]);
        }
        let outs = py.detach(|| self.install(|| self.run(images, &prompts, threshold))).map_err(Staged::into_py)?;
        outs.into_iter().map(|o| Py::new(py, SegmentResult::new(py, o, &prompts, threshold))).collect()
    }
}

#[pymethods]
impl Segmenter {
    #[new]
    #[pyo3(signature = (model=None, threads=None))]
    fn new(py: Python<'_>, model: Option<PathBuf>, threads: Option<usize>) -> PyResult<Self> {
        let pool = match threads {
            Some(0) => return Err(value_error("threads must be at least 1")),
            Some(n) => {
                let n = vlsm::threads::cap(n, "threads");
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("vlsm-{i}"))
                    .build()
                    .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start {n} threads: {e}")))?;
                Some(pool)
            }
            None => None,
        };
        let given = model.clone();
        let inner = py
            .detach(|| {
                let dir = stage(Kind::Value, None, || resolve_model(model))?;
                stage(Kind::Value, Some(&dir), || pipeline::Segmenter::load(&dir))
            })
            .map_err(|s| match (&given, s) {
                (Some(g), s) if s.path.is_none() => Staged { path: Some(g.clone()), ..s }.into_py(),
                (_, s) => s.into_py(),
            })?;
        Ok(Segmenter { inner, pool, threads })
    }

    /// Segments one image with one prompt or several: a :class:`SegmentResult`.
    ///
    /// `image` is a numpy uint8 array H×W×3 (RGB) or H×W (grey), or the path of an image
    /// `vlsm segment` reads. `prompts` is a string or a list of strings. `threshold` defaults
    /// to the model's. The image encoder runs once for all the prompts.
    #[pyo3(signature = (image, prompts, threshold=None))]
    fn segment(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        prompts: &Bound<'_, PyAny>,
        threshold: Option<f32>,
    ) -> PyResult<Py<SegmentResult>> {
        let img = image_arg(image, "image")?;
        let mut v = self.segment_images(py, vec![img], prompts, threshold)?;
        Ok(v.remove(0))
    }

    /// Segments several images with the same prompts: a list of :class:`SegmentResult`, one per
    /// image, in order. Images go through the image encoder four at a time, as in
    /// `vlsm segment IMAGE...`.
    #[pyo3(signature = (images, prompts, threshold=None))]
    fn segment_batch(
        &self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        prompts: &Bound<'_, PyAny>,
        threshold: Option<f32>,
    ) -> PyResult<Vec<Py<SegmentResult>>> {
        if images.is_instance_of::<PyString>() || images.hasattr("__fspath__")? {
            return Err(PyTypeError::new_err("images: expected a list of images or paths, got one path"));
        }
        let mut args = vec![];
        for (i, item) in images.try_iter().map_err(|_| PyTypeError::new_err("images: expected a list"))?.enumerate() {
            args.push(image_arg(&item?, &format!("images[{i}]"))?);
        }
        self.segment_images(py, args, prompts, threshold)
    }

    /// The model directory.
    #[getter]
    fn model_dir(&self) -> PathBuf {
        self.inner.dir.clone()
    }

    /// The architecture (`textunet`, `clipseg`, `cris`, ...).
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind_name()
    }

    /// The model's probability threshold (the default of `segment`).
    #[getter]
    fn default_threshold(&self) -> f32 {
        self.inner.default_threshold()
    }

    /// Whether prompts change the output (false for the text-free UNet).
    #[getter]
    fn uses_text(&self) -> bool {
        self.inner.uses_text()
    }

    /// The thread cap given, or None.
    #[getter]
    fn threads(&self) -> Option<usize> {
        self.threads
    }

    fn __repr__(&self) -> String {
        format!("Segmenter(model={:?}, kind={:?})", self.inner.dir.display().to_string(), self.inner.kind_name())
    }
}

/// The outputs for one image: one row per prompt.
///
/// `masks` (bool, N×H×W: the pixels `vlsm segment` writes as 255, empty where the target is not
/// present), `probs` (float32, N×H×W: the probabilities at the image size the masks threshold),
/// `logits` (float32, N×h×w at the model's resolution: what `--logits` writes), `areas` (mask
/// pixels per prompt), `presence` (float32, N: the presence head's probability, or without one
/// the largest probability of the map) and `present` (bool, N: `vlsm segment --json`'s
/// `present`), `threshold`, `prompts`.
#[pyclass(frozen, module = "vlsm")]
pub struct SegmentResult {
    #[pyo3(get)]
    masks: Py<PyArray3<bool>>,
    #[pyo3(get)]
    probs: Py<PyArray3<f32>>,
    #[pyo3(get)]
    logits: Py<PyArray3<f32>>,
    #[pyo3(get)]
    areas: Vec<u64>,
    #[pyo3(get)]
    presence: Py<PyArray1<f32>>,
    #[pyo3(get)]
    present: Py<PyArray1<bool>>,
    #[pyo3(get)]
    threshold: f32,
    #[pyo3(get)]
    prompts: Vec<String>,
}

impl SegmentResult {
    fn new(py: Python<'_>, o: Output, prompts: &[String], threshold: f32) -> Self {
        SegmentResult {
            masks: o.masks.into_pyarray(py).unbind(),
            probs: o.probs.into_pyarray(py).unbind(),
            logits: o.logits.into_pyarray(py).unbind(),
            areas: o.areas,
            presence: o.presence.into_pyarray(py).unbind(),
            present: o.present.into_pyarray(py).unbind(),
            threshold,
            prompts: prompts.to_vec(),
        }
    }
}

#[pymethods]
impl SegmentResult {
    fn __len__(&self) -> usize {
        self.areas.len()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let shape = self.masks.bind(py).shape().to_vec();
        format!(
            "SegmentResult(prompts={:?}, masks=bool{:?}, areas={:?}, present={}, threshold={})",
            self.prompts,
            shape,
            self.areas,
            PyBools(self.present.bind(py).to_vec().unwrap_or_default()),
            self.threshold
        )
    }
}

/// Booleans as a Python list prints them (`[True, False]`).
struct PyBools(Vec<bool>);

impl std::fmt::Display for PyBools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items: Vec<&str> = self.0.iter().map(|&b| if b { "True" } else { "False" }).collect();
        write!(f, "[{}]", items.join(", "))
    }
}

/// Writes a 2-D mask (bool, or uint8 where non-zero is foreground) as a 0/255 PNG, atomically,
/// as `vlsm segment` writes `<stem>.mask.png`.
#[pyfunction]
pub fn write_mask(py: Python<'_>, path: PathBuf, mask: &Bound<'_, PyAny>) -> PyResult<()> {
    let arr = mask.cast::<PyUntypedArray>().map_err(|_| PyTypeError::new_err("mask: expected a numpy array"))?;
    let shape = arr.shape().to_vec();
    let [h, w] = shape[..] else {
        return Err(value_error(format!("mask: expected a 2-D array (H, W), got shape {shape:?}")));
    };
    if h == 0 || w == 0 || h > u32::MAX as usize || w > u32::MAX as usize {
        return Err(value_error(format!("mask: cannot write a {w}x{h} image")));
    }
    let data: Vec<u8> = if let Ok(b) = arr.cast::<PyArrayDyn<bool>>() {
        let ro = b.try_readonly().map_err(|e| value_error(format!("mask: {e}")))?;
        ro.as_array().iter().map(|&v| if v { 255 } else { 0 }).collect()
    } else if let Ok(u) = arr.cast::<PyArrayDyn<u8>>() {
        let ro = u.try_readonly().map_err(|e| value_error(format!("mask: {e}")))?;
        ro.as_array().iter().map(|&v| if v > 0 { 255 } else { 0 }).collect()
    } else {
        return Err(value_error(format!("mask: expected dtype bool or uint8, got {}", arr.dtype())));
    };
    let gray = image::GrayImage::from_raw(w as u32, h as u32, data).ok_or_else(|| value_error("mask: bad size"))?;
    py.detach(|| guarded(|| vlsm::io::write_png_atomic(&path, &image::DynamicImage::ImageLuma8(gray))))
        .map_err(|f| f.into_py(Kind::Value, &[]))
}

/// Panics inside the guard the model calls run under (the tests check it becomes a
/// RuntimeError, not an abort).
#[pyfunction]
pub fn _panic_for_tests(py: Python<'_>) -> PyResult<()> {
    py.detach(|| guarded(|| -> anyhow::Result<()> { panic!("deliberate panic for the tests") }))
        .map_err(|f| f.into_py(Kind::Runtime, &[]))
}
