//! `vlsm.imgproc`: the `imgproc` crate on numpy arrays under OpenCV's names, argument orders,
//! flags and return shapes, so that `cv2.X(...)` can be replaced by `vlsm.imgproc.X(...)`.
//!
//! Arrays in: `H×W` or `H×W×C` (C in 1-4), any strides, byte order or writability (they are
//! copied into a native contiguous buffer first). Arrays out: new arrays, `H×W` for one
//! channel, `H×W×C` otherwise, in cv2's dtype. The GIL is released while an operation runs.
//! Unsupported dtypes, shapes, channel counts and flags raise `ValueError` naming the argument;
//! the imgproc crate's own argument errors are `ValueError`s too.
#![allow(non_snake_case, clippy::too_many_arguments)]

use ::imgproc as ip;
use ip::{BorderType, Image, Pixel};
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{
    Element, IntoPyArray, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

// OpenCV constants used by the binding (the Python module exports the full set).
const CV_8U: i32 = 0;
const CV_16U: i32 = 2;
const CV_16S: i32 = 3;
const CV_32S: i32 = 4;
const CV_32F: i32 = 5;
const CV_64F: i32 = 6;
const BORDER_ISOLATED: i32 = 16;
const THRESH_OTSU: i32 = 8;
const THRESH_TRIANGLE: i32 = 16;
const KMEANS_USE_INITIAL_LABELS: i32 = 1;
const KMEANS_PP_CENTERS: i32 = 2;
const TERM_COUNT: i32 = 1;
const TERM_EPS: i32 = 2;

fn verr(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

fn ip_err(e: ip::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn no_dst(op: &str, name: &str, v: &Option<Bound<'_, PyAny>>) -> PyResult<()> {
    match v {
        Some(o) if !o.is_none() => {
            Err(verr(format!("{op}: {name}: output arrays are not supported; use the returned array")))
        }
        _ => Ok(()),
    }
}

// ------------------------------------------------------------------------------------------
// arrays in and out

/// Element types an input array may have.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Depth {
    U8,
    U16,
    I16,
    F32,
}

/// `$body` with the type alias `$T` naming `$depth`'s element type.
macro_rules! with_depth {
    ($depth:expr, $T:ident => $body:expr) => {
        match $depth {
            Depth::U8 => {
                type $T = u8;
                $body
            }
            Depth::U16 => {
                type $T = u16;
                $body
            }
            Depth::I16 => {
                type $T = i16;
                $body
            }
            Depth::F32 => {
                type $T = f32;
                $body
            }
        }
    };
}

impl Depth {
    fn name(self) -> &'static str {
        with_depth!(self, T => T::NAME)
    }
}

/// An image of one of the supported element types.
enum Img {
    U8(Image<u8>),
    U16(Image<u16>),
    I16(Image<i16>),
    F32(Image<f32>),
}

/// `$body` with `$s` bound to the image `$img` holds, whichever its element type.
macro_rules! with_img {
    ($img:expr, |$s:ident| $body:expr) => {
        match $img {
            Img::U8($s) => $body,
            Img::U16($s) => $body,
            Img::I16($s) => $body,
            Img::F32($s) => $body,
        }
    };
}

/// An element type of [`Img`]: its [`Depth`], numpy name, OpenCV depth and opaque alpha.
trait Elem: Pixel + Element {
    const DEPTH: Depth;
    const NAME: &'static str;
    const CV_DEPTH: i32;
    /// The alpha channel's value for an opaque pixel (cv2's for this depth).
    const OPAQUE: Self;
    fn wrap(img: Image<Self>) -> Img;
}

macro_rules! elem {
    ($($t:ty => $variant:ident, $name:literal, $cv:expr, $opaque:expr;)*) => {$(
        impl Elem for $t {
            const DEPTH: Depth = Depth::$variant;
            const NAME: &'static str = $name;
            const CV_DEPTH: i32 = $cv;
            const OPAQUE: Self = $opaque;
            fn wrap(img: Image<Self>) -> Img {
                Img::$variant(img)
            }
        }
    )*};
}

elem! {
    u8 => U8, "uint8", CV_8U, u8::MAX;
    u16 => U16, "uint16", CV_16U, u16::MAX;
    i16 => I16, "int16", CV_16S, i16::MAX;
    f32 => F32, "float32", CV_32F, 1.0;
}

fn depth_of_image<T: Elem>(_: &Image<T>) -> Depth {
    T::DEPTH
}

impl Img {
    fn channels(&self) -> usize {
        with_img!(self, |i| i.channels())
    }
    fn depth(&self) -> Depth {
        with_img!(self, |i| depth_of_image(i))
    }
}

fn as_array<'py>(obj: &Bound<'py, PyAny>, op: &str, name: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    obj.cast::<PyUntypedArray>().cloned().map_err(|_| {
        let ty = obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!("{op}: {name} must be a numpy array, got {ty}"))
    })
}

/// The dtype of `arr` as a [`Depth`], if it is one of ours (any byte order).
fn depth_of(arr: &Bound<'_, PyUntypedArray>) -> Option<Depth> {
    let dt = arr.dtype();
    match (dt.kind(), dt.itemsize()) {
        (b'u', 1) => Some(Depth::U8),
        (b'u', 2) => Some(Depth::U16),
        (b'i', 2) => Some(Depth::I16),
        (b'f', 4) => Some(Depth::F32),
        _ => None,
    }
}

fn dtype_str(arr: &Bound<'_, PyUntypedArray>) -> String {
    arr.dtype().str().map(|s| s.to_string()).unwrap_or_else(|_| "?".into())
}

/// Copies `arr` (already known to hold `T` in some byte order and layout) into a `Vec<T>`.
fn to_vec<T: Element + Copy>(py: Python<'_>, arr: &Bound<'_, PyUntypedArray>) -> PyResult<Vec<T>> {
    let np = py.import("numpy")?;
    let native = np.call_method1("ascontiguousarray", (arr, numpy::dtype::<T>(py)))?;
    let typed = native.cast::<PyArrayDyn<T>>().map_err(PyErr::from)?;
    let ro = typed.readonly();
    let s = ro.as_slice().map_err(|e| verr(e.to_string()))?;
    Ok(s.to_vec())
}

/// `H×W` (1 channel) or `H×W×C` (C in 1-4) array of one of `allowed` dtypes.
fn image_in(obj: &Bound<'_, PyAny>, op: &str, name: &str, allowed: &[Depth]) -> PyResult<Img> {
    let arr = as_array(obj, op, name)?;
    let names = || allowed.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ");
    let depth = depth_of(&arr).filter(|d| allowed.contains(d)).ok_or_else(|| {
        verr(format!("{op}: {name}: dtype {} is not supported (expected {})", dtype_str(&arr), names()))
    })?;
    let shape = arr.shape().to_vec();
    let (h, w, cn) = match shape[..] {
        [h, w] => (h, w, 1),
        [h, w, c] => (h, w, c),
        _ => return Err(verr(format!("{op}: {name}: expected an H×W or H×W×C array, got shape {shape:?}"))),
    };
    if !(1..=4).contains(&cn) {
        return Err(verr(format!("{op}: {name}: {cn} channels are not supported (1-4)")));
    }
    if h == 0 || w == 0 {
        return Err(verr(format!("{op}: {name} is empty (shape {shape:?})")));
    }
    let py = obj.py();
    let mk = |e: ip::Error| verr(format!("{op}: {name}: {e}"));
    Ok(with_depth!(depth, T => T::wrap(Image::from_vec(w, h, cn, to_vec::<T>(py, &arr)?).map_err(mk)?)))
}

/// An 8-bit image with one of `channels` channel counts.
fn u8_in(obj: &Bound<'_, PyAny>, op: &str, name: &str, channels: &[usize]) -> PyResult<Image<u8>> {
    let Img::U8(img) = image_in(obj, op, name, &[Depth::U8])? else { unreachable!("only uint8 allowed") };
    check_cn(op, name, img.channels(), channels)?;
    Ok(img)
}

fn check_cn(op: &str, name: &str, got: usize, ok: &[usize]) -> PyResult<()> {
    if ok.contains(&got) {
        return Ok(());
    }
    let want = ok.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" or ");
    Err(verr(format!("{op}: {name}: {got} channel(s) are not supported (expected {want})")))
}

/// A new numpy array: `H×W` for one channel, `H×W×C` otherwise.
fn image_out<T: Element + Pixel>(py: Python<'_>, img: Image<T>) -> Py<PyAny> {
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let shape: Vec<usize> = if c == 1 { vec![h, w] } else { vec![h, w, c] };
    array_out(py, shape, img.into_vec())
}

fn array_out<T: Element>(py: Python<'_>, shape: Vec<usize>, data: Vec<T>) -> Py<PyAny> {
    let a = ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape matches the data");
    a.into_pyarray(py).into_any().unbind()
}

fn img_out(py: Python<'_>, img: Img) -> Py<PyAny> {
    with_img!(img, |i| image_out(py, i))
}

/// Runs a generic operation on whichever element type `img` holds, without the GIL, and
/// returns the result in the same type.
macro_rules! per_depth {
    ($py:expr, $img:expr, |$s:ident| $body:expr) => {
        with_img!($img, |$s| Elem::wrap($py.detach(move || $body).map_err(ip_err)?))
    };
}

/// A 2-D array of numbers as f64 (any numeric dtype), with its shape.
fn matrix_f64(obj: &Bound<'_, PyAny>, op: &str, name: &str) -> PyResult<(Vec<f64>, usize, usize)> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let arr =
        np.call_method1("asarray", (obj,)).map_err(|_| verr(format!("{op}: {name} must be a 2-D array of numbers")))?;
    let arr = arr.cast::<PyUntypedArray>().map_err(PyErr::from)?.clone();
    let kind = arr.dtype().kind();
    if !matches!(kind, b'u' | b'i' | b'f' | b'b') {
        return Err(verr(format!("{op}: {name}: dtype {} is not numeric", dtype_str(&arr))));
    }
    let shape = arr.shape().to_vec();
    let (r, c) = match shape[..] {
        [r, c] => (r, c),
        [n] => (n, 1),
        _ => return Err(verr(format!("{op}: {name}: expected a 2-D array, got shape {shape:?}"))),
    };
    Ok((to_vec::<f64>(py, &arr)?, r, c))
}

/// A pair of `what` (integers, numbers) from a 2-tuple or 2-list (`ksize`, `dsize`, `anchor`, ...).
fn pair<'py, T: pyo3::conversion::FromPyObjectOwned<'py>>(
    obj: &Bound<'py, PyAny>,
    op: &str,
    name: &str,
    what: &str,
) -> PyResult<(T, T)> {
    let err = || verr(format!("{op}: {name} must be a pair of {what}"));
    let seq: Vec<Bound<'py, PyAny>> = if let Ok(t) = obj.cast::<PyTuple>() {
        t.iter().collect()
    } else if let Ok(l) = obj.cast::<PyList>() {
        l.iter().collect()
    } else {
        return Err(err());
    };
    match &seq[..] {
        [a, b] => Ok((a.extract::<T>().map_err(|_| err())?, b.extract::<T>().map_err(|_| err())?)),
        _ => Err(err()),
    }
}

fn pair_i64(obj: &Bound<'_, PyAny>, op: &str, name: &str) -> PyResult<(i64, i64)> {
    pair(obj, op, name, "integers")
}

fn pair_f64(obj: &Bound<'_, PyAny>, op: &str, name: &str) -> PyResult<(f64, f64)> {
    pair(obj, op, name, "numbers")
}

fn ksize_pos(obj: &Bound<'_, PyAny>, op: &str, name: &str) -> PyResult<(usize, usize)> {
    let (w, h) = pair_i64(obj, op, name)?;
    if w <= 0 || h <= 0 {
        return Err(verr(format!("{op}: {name} ({w}, {h}) must be positive")));
    }
    Ok((w as usize, h as usize))
}

/// The anchor must be the kernel centre: `(-1, -1)` or the centre itself.
fn check_anchor(op: &str, anchor: &Option<Bound<'_, PyAny>>, kw: usize, kh: usize) -> PyResult<()> {
    let Some(a) = anchor.as_ref().filter(|a| !a.is_none()) else { return Ok(()) };
    let (x, y) = pair_i64(a, op, "anchor")?;
    if (x, y) == (-1, -1) || (x, y) == ((kw / 2) as i64, (kh / 2) as i64) {
        return Ok(());
    }
    Err(verr(format!("{op}: anchor ({x}, {y}): only the kernel centre (-1, -1) is supported")))
}

fn border(op: &str, v: i32, allowed: &[BorderType]) -> PyResult<BorderType> {
    let b = match v & !BORDER_ISOLATED {
        0 => Some(BorderType::Constant),
        1 => Some(BorderType::Replicate),
        2 => Some(BorderType::Reflect),
        3 => Some(BorderType::Wrap),
        4 => Some(BorderType::Reflect101),
        _ => None,
    };
    b.filter(|b| allowed.contains(b)).ok_or_else(|| verr(format!("{op}: borderType {v} is not supported")))
}

const BORDERS_ALL: &[BorderType] =
    &[BorderType::Constant, BorderType::Replicate, BorderType::Reflect, BorderType::Wrap, BorderType::Reflect101];
const BORDERS_NO_WRAP: &[BorderType] =
    &[BorderType::Constant, BorderType::Replicate, BorderType::Reflect, BorderType::Reflect101];

fn ddepth_same(op: &str, ddepth: i32, d: Depth) -> PyResult<()> {
    let same = with_depth!(d, T => T::CV_DEPTH);
    if ddepth == -1 || ddepth == same {
        return Ok(());
    }
    Err(verr(format!("{op}: ddepth {ddepth} is not supported for {} input (use -1)", d.name())))
}

// ------------------------------------------------------------------------------------------
// colour

/// Adds or drops the alpha channel (opaque when added) and/or swaps R and B.
fn reorder<T: Elem>(src: &Image<T>, swap: bool, dcn: usize) -> ip::Result<Image<T>> {
    let scn = src.channels();
    let mut out = Vec::with_capacity(src.width() * src.height() * dcn);
    for p in src.data().chunks_exact(scn) {
        let (a, b) = if swap { (p[2], p[0]) } else { (p[0], p[2]) };
        out.extend_from_slice(&[a, p[1], b]);
        if dcn == 4 {
            out.push(if scn == 4 { p[3] } else { T::OPAQUE });
        }
    }
    Image::from_vec(src.width(), src.height(), dcn, out)
}

fn gray_to<T: Elem>(src: &Image<T>, dcn: usize) -> ip::Result<Image<T>> {
    let mut out = Vec::with_capacity(src.width() * src.height() * dcn);
    for &v in src.data() {
        out.extend_from_slice(&[v, v, v]);
        if dcn == 4 {
            out.push(T::OPAQUE);
        }
    }
    Image::from_vec(src.width(), src.height(), dcn, out)
}

/// `cvtColor(src, code[, dst[, dstCn]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, code, dst=None, dstCn=0))]
fn cvtColor(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    code: i32,
    dst: Option<Bound<'_, PyAny>>,
    dstCn: i32,
) -> PyResult<Py<PyAny>> {
    use ip::ColorConversion as C;
    const OP: &str = "cvtColor";
    no_dst(OP, "dst", &dst)?;
    enum Kind {
        Reorder { swap: bool, dcn: usize },
        GrayTo(usize),
        Conv(C),
    }
    let (kind, scn, dcn): (Kind, &[usize], usize) = match code {
        0 => (Kind::Reorder { swap: false, dcn: 4 }, &[3, 4], 4),
        1 => (Kind::Reorder { swap: false, dcn: 3 }, &[3, 4], 3),
        2 => (Kind::Reorder { swap: true, dcn: 4 }, &[3, 4], 4),
        3 => (Kind::Reorder { swap: true, dcn: 3 }, &[3, 4], 3),
        4 => (Kind::Reorder { swap: true, dcn: 3 }, &[3, 4], 3),
        5 => (Kind::Reorder { swap: true, dcn: 4 }, &[3, 4], 4),
        6 | 10 => (Kind::Conv(C::Bgr2Gray), &[3, 4], 1),
        7 | 11 => (Kind::Conv(C::Rgb2Gray), &[3, 4], 1),
        8 => (Kind::GrayTo(3), &[1], 3),
        9 => (Kind::GrayTo(4), &[1], 4),
        40 => (Kind::Conv(C::Bgr2Hsv), &[3, 4], 3),
        41 => (Kind::Conv(C::Rgb2Hsv), &[3, 4], 3),
        44 => (Kind::Conv(C::Bgr2Lab), &[3, 4], 3),
        45 => (Kind::Conv(C::Rgb2Lab), &[3, 4], 3),
        54 => (Kind::Conv(C::Hsv2Bgr), &[3], 3),
        55 => (Kind::Conv(C::Hsv2Rgb), &[3], 3),
        56 => (Kind::Conv(C::Lab2Bgr), &[3], 3),
        57 => (Kind::Conv(C::Lab2Rgb), &[3], 3),
        _ => return Err(verr(format!("{OP}: code {code} is not supported"))),
    };
    if dstCn != 0 && dstCn as usize != dcn {
        return Err(verr(format!("{OP}: dstCn {dstCn} is not supported for code {code} (use 0 or {dcn})")));
    }
    let colour = matches!(kind, Kind::Conv(c) if !matches!(c, C::Bgr2Gray | C::Rgb2Gray));
    let allowed: &[Depth] = if colour { &[Depth::U8, Depth::F32] } else { &[Depth::U8, Depth::U16, Depth::F32] };
    let img = image_in(src, OP, "src", allowed)?;
    check_cn(OP, "src", img.channels(), scn)?;
    let out = match kind {
        Kind::Reorder { swap, dcn } => per_depth!(py, img, |s| reorder(&s, swap, dcn)),
        Kind::GrayTo(dcn) => per_depth!(py, img, |s| gray_to(&s, dcn)),
        Kind::Conv(c) => per_depth!(py, img, |s| ip::cvt_color(&s, c)),
    };
    Ok(img_out(py, out))
}

// ------------------------------------------------------------------------------------------
// thresholds

/// `threshold(src, thresh, maxval, type[, dst]) -> retval, dst`
#[pyfunction]
#[pyo3(signature = (src, thresh, maxval, r#type, dst=None))]
fn threshold(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    thresh: f64,
    maxval: f64,
    r#type: i32,
    dst: Option<Bound<'_, PyAny>>,
) -> PyResult<(f64, Py<PyAny>)> {
    use ip::threshold::ThresholdMethod as M;
    const OP: &str = "threshold";
    no_dst(OP, "dst", &dst)?;
    let ty = threshold_type(OP, "type", r#type & 7)?;
    let method = match r#type & !7 {
        0 => M::Fixed,
        THRESH_OTSU => M::Otsu,
        THRESH_TRIANGLE => M::Triangle,
        _ => return Err(verr(format!("{OP}: type {} is not supported", r#type))),
    };
    let img = image_in(src, OP, "src", &[Depth::U8, Depth::U16, Depth::F32])?;
    if method != M::Fixed {
        if img.depth() != Depth::U8 {
            return Err(verr(format!(
                "{OP}: src: THRESH_OTSU and THRESH_TRIANGLE need uint8 input, got {}",
                img.depth().name()
            )));
        }
        check_cn(OP, "src", img.channels(), &[1])?;
    }
    let (t, out) = with_img!(img, |s| {
        let (t, o) = py.detach(move || ip::threshold(&s, thresh, maxval, ty, method)).map_err(ip_err)?;
        (t, Elem::wrap(o))
    });
    Ok((t, img_out(py, out)))
}

fn threshold_type(op: &str, name: &str, v: i32) -> PyResult<ip::ThresholdType> {
    use ip::ThresholdType as T;
    Ok(match v {
        0 => T::Binary,
        1 => T::BinaryInv,
        2 => T::Trunc,
        3 => T::ToZero,
        4 => T::ToZeroInv,
        _ => return Err(verr(format!("{op}: {name} {v} is not supported"))),
    })
}

/// `adaptiveThreshold(src, maxValue, adaptiveMethod, thresholdType, blockSize, C[, dst]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, maxValue, adaptiveMethod, thresholdType, blockSize, C, dst=None))]
fn adaptiveThreshold(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    maxValue: f64,
    adaptiveMethod: i32,
    thresholdType: i32,
    blockSize: i64,
    C: f64,
    dst: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "adaptiveThreshold";
    no_dst(OP, "dst", &dst)?;
    let method = match adaptiveMethod {
        0 => ip::AdaptiveMethod::Mean,
        1 => ip::AdaptiveMethod::Gaussian,
        _ => return Err(verr(format!("{OP}: adaptiveMethod {adaptiveMethod} is not supported"))),
    };
    let ty = match thresholdType {
        0 | 1 => threshold_type(OP, "thresholdType", thresholdType)?,
        _ => {
            return Err(verr(format!(
                "{OP}: thresholdType {thresholdType} is not supported (THRESH_BINARY or THRESH_BINARY_INV)"
            )))
        }
    };
    if blockSize < 3 || blockSize % 2 == 0 {
        return Err(verr(format!("{OP}: blockSize {blockSize} must be odd and > 1")));
    }
    let s = u8_in(src, OP, "src", &[1])?;
    let out =
        py.detach(move || ip::adaptive_threshold(&s, maxValue, method, ty, blockSize as usize, C)).map_err(ip_err)?;
    Ok(image_out(py, out))
}

// ------------------------------------------------------------------------------------------
// filters

const FILTER_DEPTHS: &[Depth] = &[Depth::U8, Depth::U16, Depth::F32];

/// `GaussianBlur(src, ksize, sigmaX[, dst[, sigmaY[, borderType]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, ksize, sigmaX, dst=None, sigmaY=0.0, borderType=4))]
fn GaussianBlur(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    ksize: &Bound<'_, PyAny>,
    sigmaX: f64,
    dst: Option<Bound<'_, PyAny>>,
    sigmaY: f64,
    borderType: i32,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "GaussianBlur";
    no_dst(OP, "dst", &dst)?;
    let (kw, kh) = pair_i64(ksize, OP, "ksize")?;
    if kw < 0 || kh < 0 || (kw > 0 && kw % 2 == 0) || (kh > 0 && kh % 2 == 0) {
        return Err(verr(format!("{OP}: ksize ({kw}, {kh}) must be odd and positive, or 0 to derive it from sigma")));
    }
    let b = border(OP, borderType, BORDERS_NO_WRAP)?;
    let img = image_in(src, OP, "src", FILTER_DEPTHS)?;
    let k = (kw as usize, kh as usize);
    let out = per_depth!(py, img, |s| ip::gaussian_blur(&s, k, sigmaX, sigmaY, b));
    Ok(img_out(py, out))
}

/// `blur(src, ksize[, dst[, anchor[, borderType]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, ksize, dst=None, anchor=None, borderType=4))]
fn blur(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    ksize: &Bound<'_, PyAny>,
    dst: Option<Bound<'_, PyAny>>,
    anchor: Option<Bound<'_, PyAny>>,
    borderType: i32,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "blur";
    no_dst(OP, "dst", &dst)?;
    let k = ksize_pos(ksize, OP, "ksize")?;
    check_anchor(OP, &anchor, k.0, k.1)?;
    let b = border(OP, borderType, BORDERS_NO_WRAP)?;
    let img = image_in(src, OP, "src", FILTER_DEPTHS)?;
    let out = per_depth!(py, img, |s| ip::blur(&s, k, b));
    Ok(img_out(py, out))
}

/// `boxFilter(src, ddepth, ksize[, dst[, anchor[, normalize[, borderType]]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, ddepth, ksize, dst=None, anchor=None, normalize=true, borderType=4))]
fn boxFilter(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    ddepth: i32,
    ksize: &Bound<'_, PyAny>,
    dst: Option<Bound<'_, PyAny>>,
    anchor: Option<Bound<'_, PyAny>>,
    normalize: bool,
    borderType: i32,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "boxFilter";
    no_dst(OP, "dst", &dst)?;
    let k = ksize_pos(ksize, OP, "ksize")?;
    check_anchor(OP, &anchor, k.0, k.1)?;
    let b = border(OP, borderType, BORDERS_NO_WRAP)?;
    let img = image_in(src, OP, "src", FILTER_DEPTHS)?;
    ddepth_same(OP, ddepth, img.depth())?;
    let out = per_depth!(py, img, |s| ip::box_filter(&s, k, normalize, b));
    Ok(img_out(py, out))
}

/// `medianBlur(src, ksize[, dst]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, ksize, dst=None))]
fn medianBlur(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    ksize: i64,
    dst: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "medianBlur";
    no_dst(OP, "dst", &dst)?;
    if ksize < 3 || ksize % 2 == 0 {
        return Err(verr(format!("{OP}: ksize {ksize} must be odd and > 1")));
    }
    let img = image_in(src, OP, "src", FILTER_DEPTHS)?;
    if img.depth() != Depth::U8 && ksize > 5 {
        return Err(verr(format!("{OP}: ksize {ksize} > 5 needs uint8 src, got {}", img.depth().name())));
    }
    let k = ksize as usize;
    let out = per_depth!(py, img, |s| ip::median_blur(&s, k));
    Ok(img_out(py, out))
}

/// `filter2D(src, ddepth, kernel[, dst[, anchor[, delta[, borderType]]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, ddepth, kernel, dst=None, anchor=None, delta=0.0, borderType=4))]
fn filter2D(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    ddepth: i32,
    kernel: &Bound<'_, PyAny>,
    dst: Option<Bound<'_, PyAny>>,
    anchor: Option<Bound<'_, PyAny>>,
    delta: f64,
    borderType: i32,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "filter2D";
    no_dst(OP, "dst", &dst)?;
    let (k, kh, kw) = matrix_f64(kernel, OP, "kernel")?;
    if kw == 0 || kh == 0 {
        return Err(verr(format!("{OP}: kernel is empty")));
    }
    check_anchor(OP, &anchor, kw, kh)?;
    let b = border(OP, borderType, BORDERS_ALL)?;
    let img = image_in(src, OP, "src", FILTER_DEPTHS)?;
    ddepth_same(OP, ddepth, img.depth())?;
    let k: Vec<f32> = k.iter().map(|&v| v as f32).collect();
    let d = delta as f32;
    let out = per_depth!(py, img, |s| ip::filter_2d(&s, &k, kw, kh, d, b));
    Ok(img_out(py, out))
}

/// `getGaussianKernel(ksize, sigma[, ktype]) -> retval`
#[pyfunction]
#[pyo3(signature = (ksize, sigma, ktype=CV_64F))]
fn getGaussianKernel(py: Python<'_>, ksize: i64, sigma: f64, ktype: i32) -> PyResult<Py<PyAny>> {
    const OP: &str = "getGaussianKernel";
    if ksize <= 0 || ksize % 2 == 0 {
        return Err(verr(format!("{OP}: ksize {ksize} must be odd and positive")));
    }
    let k = ip::get_gaussian_kernel(ksize as usize, sigma).map_err(ip_err)?;
    let n = k.len();
    match ktype {
        CV_64F => Ok(array_out(py, vec![n, 1], k)),
        CV_32F => Ok(array_out(py, vec![n, 1], k.iter().map(|&v| v as f32).collect::<Vec<f32>>())),
        _ => Err(verr(format!("{OP}: ktype {ktype} is not supported (CV_32F or CV_64F)"))),
    }
}

// ------------------------------------------------------------------------------------------
// geometry

fn interpolation(op: &str, name: &str, v: i32) -> PyResult<ip::Interpolation> {
    use ip::Interpolation as I;
    Ok(match v {
        0 => I::Nearest,
        1 => I::Linear,
        2 => I::Cubic,
        3 => I::Area,
        _ => {
            return Err(verr(format!(
                "{op}: {name} {v} is not supported (INTER_NEAREST, INTER_LINEAR, INTER_CUBIC or INTER_AREA)"
            )))
        }
    })
}

/// `resize(src, dsize[, dst[, fx[, fy[, interpolation]]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, dsize, dst=None, fx=0.0, fy=0.0, interpolation=1))]
fn resize(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    dsize: Option<Bound<'_, PyAny>>,
    dst: Option<Bound<'_, PyAny>>,
    fx: f64,
    fy: f64,
    interpolation: i32,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "resize";
    no_dst(OP, "dst", &dst)?;
    let interp = self::interpolation(OP, "interpolation", interpolation)?;
    let img = image_in(src, OP, "src", FILTER_DEPTHS)?;
    let (sh, sw) = {
        let a = as_array(src, OP, "src")?;
        (a.shape()[0], a.shape()[1])
    };
    let given = match dsize.as_ref().filter(|d| !d.is_none()) {
        Some(d) => pair_i64(d, OP, "dsize")?,
        None => (0, 0),
    };
    let (dw, dh) = match given {
        (0, 0) => {
            if !(fx > 0.0 && fy > 0.0 && fx.is_finite() && fy.is_finite()) {
                return Err(verr(format!("{OP}: fx and fy must be positive when dsize is empty (got {fx}, {fy})")));
            }
            let (w, h) = ((sw as f64 * fx).round_ties_even(), (sh as f64 * fy).round_ties_even());
            if w < 1.0 || h < 1.0 {
                return Err(verr(format!("{OP}: fx, fy ({fx}, {fy}) give an empty image")));
            }
            if w > i32::MAX as f64 || h > i32::MAX as f64 {
                return Err(verr(format!("{OP}: fx, fy ({fx}, {fy}) give a too large image")));
            }
            (w as usize, h as usize)
        }
        (w, h) if w > 0 && h > 0 => (w as usize, h as usize),
        (w, h) => return Err(verr(format!("{OP}: dsize ({w}, {h}) must be positive"))),
    };
    let out = per_depth!(py, img, |s| ip::resize(&s, (dw, dh), interp));
    Ok(img_out(py, out))
}

/// `getRotationMatrix2D(center, angle, scale) -> retval`
#[pyfunction]
fn getRotationMatrix2D(py: Python<'_>, center: &Bound<'_, PyAny>, angle: f64, scale: f64) -> PyResult<Py<PyAny>> {
    let c = pair_f64(center, "getRotationMatrix2D", "center")?;
    let m = ip::get_rotation_matrix_2d(c, angle, scale);
    Ok(array_out(py, vec![2, 3], m.to_vec()))
}

/// `warpAffine(src, M, dsize[, dst[, flags[, borderMode[, borderValue]]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, M, dsize, dst=None, flags=1, borderMode=0, borderValue=None))]
fn warpAffine(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    M: &Bound<'_, PyAny>,
    dsize: &Bound<'_, PyAny>,
    dst: Option<Bound<'_, PyAny>>,
    flags: i32,
    borderMode: i32,
    borderValue: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "warpAffine";
    no_dst(OP, "dst", &dst)?;
    if flags & !7 != 0 {
        return Err(verr(format!("{OP}: flags {flags} are not supported (WARP_INVERSE_MAP and others)")));
    }
    // OpenCV warps with INTER_AREA as with INTER_LINEAR.
    let interp = match interpolation(OP, "flags", flags & 7)? {
        ip::Interpolation::Area => ip::Interpolation::Linear,
        i => i,
    };
    let (m, r, c) = matrix_f64(M, OP, "M")?;
    if (r, c) != (2, 3) {
        return Err(verr(format!("{OP}: M must be 2×3, got {r}×{c}")));
    }
    let m: [f64; 6] = m.try_into().expect("six values");
    let d = ksize_pos(dsize, OP, "dsize")?;
    let b = match borderMode {
        0 => BorderType::Constant,
        1 => BorderType::Replicate,
        _ => {
            return Err(verr(format!(
                "{OP}: borderMode {borderMode} is not supported (BORDER_CONSTANT or BORDER_REPLICATE)"
            )))
        }
    };
    let img = image_in(src, OP, "src", FILTER_DEPTHS)?;
    if interp == ip::Interpolation::Linear && img.channels() == 2 && img.depth() != Depth::U8 {
        // OpenCV takes its older fixed-point remap path there, which imgproc has for 8 bits only.
        return Err(verr(format!(
            "{OP}: src: 2-channel {} images are not supported with INTER_LINEAR (1, 3, 4 channels or uint8)",
            img.depth().name()
        )));
    }
    let bv = border_value(OP, &borderValue, img.channels())?;
    let out = per_depth!(py, img, |s| ip::warp_affine(&s, &m, d, interp, b, bv));
    Ok(img_out(py, out))
}

/// A scalar border value, or a sequence whose first `cn` values are equal.
fn border_value(op: &str, v: &Option<Bound<'_, PyAny>>, cn: usize) -> PyResult<f64> {
    let Some(v) = v.as_ref().filter(|v| !v.is_none()) else { return Ok(0.0) };
    // A number is OpenCV's `Scalar(v)`, i.e. `(v, 0, 0, 0)`.
    let vals: Vec<f64> = if let Ok(x) = v.extract::<f64>() {
        vec![x]
    } else {
        v.extract::<Vec<f64>>()
            .map_err(|_| verr(format!("{op}: borderValue must be a number or a sequence of numbers")))?
    };
    let used: Vec<f64> = (0..cn).map(|i| vals.get(i).copied().unwrap_or(0.0)).collect();
    if used.iter().any(|&x| x != used[0]) {
        return Err(verr(format!("{op}: borderValue {vals:?}: only the same value for every channel is supported")));
    }
    Ok(used[0])
}

// ------------------------------------------------------------------------------------------
// morphology

/// `getStructuringElement(shape, ksize[, anchor]) -> retval`
#[pyfunction]
#[pyo3(signature = (shape, ksize, anchor=None))]
fn getStructuringElement(
    py: Python<'_>,
    shape: i32,
    ksize: &Bound<'_, PyAny>,
    anchor: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "getStructuringElement";
    let s = morph_shape(OP, shape)?;
    let k = ksize_pos(ksize, OP, "ksize")?;
    check_anchor(OP, &anchor, k.0, k.1)?;
    let img = ip::get_structuring_element(s, k).map_err(ip_err)?;
    Ok(image_out(py, img))
}

fn morph_shape(op: &str, v: i32) -> PyResult<ip::MorphShape> {
    Ok(match v {
        0 => ip::MorphShape::Rect,
        1 => ip::MorphShape::Cross,
        2 => ip::MorphShape::Ellipse,
        _ => return Err(verr(format!("{op}: shape {v} is not supported (MORPH_RECT, MORPH_CROSS or MORPH_ELLIPSE)"))),
    })
}

/// The kernel as a 0/1 mask (nonzero = on); `None` is OpenCV's default 3×3 rectangle.
fn morph_kernel(op: &str, kernel: &Option<Bound<'_, PyAny>>) -> PyResult<Image<u8>> {
    let Some(k) = kernel.as_ref().filter(|k| !k.is_none()) else {
        return ip::get_structuring_element(ip::MorphShape::Rect, (3, 3)).map_err(ip_err);
    };
    let (v, r, c) = matrix_f64(k, op, "kernel")?;
    if r == 0 || c == 0 {
        return Err(verr(format!("{op}: kernel is empty")));
    }
    Image::from_vec(c, r, 1, v.iter().map(|&x| u8::from(x != 0.0)).collect()).map_err(ip_err)
}

fn morph_common(
    op: &str,
    kernel: &Option<Bound<'_, PyAny>>,
    anchor: &Option<Bound<'_, PyAny>>,
    iterations: i64,
    borderType: i32,
    borderValue: &Option<Bound<'_, PyAny>>,
) -> PyResult<Image<u8>> {
    let k = morph_kernel(op, kernel)?;
    check_anchor(op, anchor, k.width(), k.height())?;
    if iterations < 0 {
        return Err(verr(format!("{op}: iterations {iterations} must not be negative")));
    }
    if borderType & !BORDER_ISOLATED != 0 {
        return Err(verr(format!("{op}: borderType {borderType} is not supported (BORDER_CONSTANT)")));
    }
    if borderValue.as_ref().is_some_and(|v| !v.is_none()) {
        return Err(verr(format!("{op}: borderValue: only the default (morphologyDefaultBorderValue) is supported")));
    }
    Ok(k)
}

/// `erode(src, kernel[, dst[, anchor[, iterations[, borderType[, borderValue]]]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, kernel, dst=None, anchor=None, iterations=1, borderType=0, borderValue=None))]
fn erode(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    kernel: Option<Bound<'_, PyAny>>,
    dst: Option<Bound<'_, PyAny>>,
    anchor: Option<Bound<'_, PyAny>>,
    iterations: i64,
    borderType: i32,
    borderValue: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    no_dst("erode", "dst", &dst)?;
    let args = MorphArgs { kernel, anchor, iterations, border_type: borderType, border_value: borderValue };
    morph(py, "erode", src, ip::MorphOp::Erode, args)
}

/// `dilate(src, kernel[, dst[, anchor[, iterations[, borderType[, borderValue]]]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, kernel, dst=None, anchor=None, iterations=1, borderType=0, borderValue=None))]
fn dilate(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    kernel: Option<Bound<'_, PyAny>>,
    dst: Option<Bound<'_, PyAny>>,
    anchor: Option<Bound<'_, PyAny>>,
    iterations: i64,
    borderType: i32,
    borderValue: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    no_dst("dilate", "dst", &dst)?;
    let args = MorphArgs { kernel, anchor, iterations, border_type: borderType, border_value: borderValue };
    morph(py, "dilate", src, ip::MorphOp::Dilate, args)
}

/// `morphologyEx(src, op, kernel[, dst[, anchor[, iterations[, borderType[, borderValue]]]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, op, kernel, dst=None, anchor=None, iterations=1, borderType=0, borderValue=None))]
fn morphologyEx(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    op: i32,
    kernel: Option<Bound<'_, PyAny>>,
    dst: Option<Bound<'_, PyAny>>,
    anchor: Option<Bound<'_, PyAny>>,
    iterations: i64,
    borderType: i32,
    borderValue: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "morphologyEx";
    use ip::MorphOp as O;
    no_dst(OP, "dst", &dst)?;
    let mop = match op {
        0 => O::Erode,
        1 => O::Dilate,
        2 => O::Open,
        3 => O::Close,
        4 => O::Gradient,
        5 => O::TopHat,
        6 => O::BlackHat,
        _ => return Err(verr(format!("{OP}: op {op} is not supported (MORPH_ERODE ... MORPH_BLACKHAT)"))),
    };
    let args = MorphArgs { kernel, anchor, iterations, border_type: borderType, border_value: borderValue };
    morph(py, OP, src, mop, args)
}

/// The optional arguments erode, dilate and morphologyEx share.
struct MorphArgs<'py> {
    kernel: Option<Bound<'py, PyAny>>,
    anchor: Option<Bound<'py, PyAny>>,
    iterations: i64,
    border_type: i32,
    border_value: Option<Bound<'py, PyAny>>,
}

/// erode, dilate and morphologyEx once the operation is known.
fn morph(py: Python<'_>, op: &str, src: &Bound<'_, PyAny>, mop: ip::MorphOp, a: MorphArgs<'_>) -> PyResult<Py<PyAny>> {
    let k = morph_common(op, &a.kernel, &a.anchor, a.iterations, a.border_type, &a.border_value)?;
    let img = image_in(src, op, "src", FILTER_DEPTHS)?;
    let it = a.iterations as usize;
    let out = if it == 0 && matches!(mop, ip::MorphOp::Erode | ip::MorphOp::Dilate) {
        img // as cv2: zero iterations copy the image
    } else {
        per_depth!(py, img, |s| ip::morphology_ex(&s, mop, &k, it))
    };
    Ok(img_out(py, out))
}

// ------------------------------------------------------------------------------------------
// derivatives and edges

fn i16_to<T: Pixel>(img: &Image<i16>, scale: f64, delta: f64) -> Image<T> {
    img.map(|v| T::from_f64(v as f64 * scale + delta))
}

/// `Sobel(src, ddepth, dx, dy[, dst[, ksize[, scale[, delta[, borderType]]]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, ddepth, dx, dy, dst=None, ksize=3, scale=1.0, delta=0.0, borderType=4))]
fn Sobel(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    ddepth: i32,
    dx: i64,
    dy: i64,
    dst: Option<Bound<'_, PyAny>>,
    ksize: i64,
    scale: f64,
    delta: f64,
    borderType: i32,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "Sobel";
    no_dst(OP, "dst", &dst)?;
    if dx < 0 || dy < 0 || dx + dy == 0 {
        return Err(verr(format!("{OP}: dx {dx}, dy {dy}: need dx >= 0, dy >= 0 and dx + dy > 0")));
    }
    if !matches!(ksize, 1 | 3 | 5 | 7) {
        return Err(verr(format!("{OP}: ksize {ksize} is not supported (1, 3, 5 or 7)")));
    }
    let b = border(OP, borderType, BORDERS_NO_WRAP)?;
    let (dx, dy, k) = (dx as usize, dy as usize, ksize as usize);
    let img = image_in(src, OP, "src", &[Depth::U8, Depth::F32])?;
    let exact_int = scale == 1.0 && delta == 0.0;
    match img {
        Img::U8(s) => match ddepth {
            CV_16S | -1 | CV_8U if exact_int => {
                let r = py.detach(move || ip::sobel(&s, dx, dy, k, b)).map_err(ip_err)?;
                Ok(if ddepth == CV_16S { image_out(py, r) } else { image_out(py, i16_to::<u8>(&r, 1.0, 0.0)) })
            }
            CV_32F => {
                let sc = scale as f32;
                let r = py.detach(move || ip::edges::sobel_f32(&s, dx, dy, k, sc, b)).map_err(ip_err)?;
                let d = delta as f32;
                Ok(image_out(py, if delta == 0.0 { r } else { r.map(|v| v + d) }))
            }
            // Integer kernels on 8-bit data: the f32 sums are exact integers, so f64 is too.
            CV_64F if scale == 1.0 => {
                let r = py.detach(move || ip::edges::sobel_f32(&s, dx, dy, k, 1.0, b)).map_err(ip_err)?;
                let data: Vec<f64> = r.data().iter().map(|&v| v as f64 + delta).collect();
                let (h, w, c) = (r.height(), r.width(), r.channels());
                Ok(array_out(py, if c == 1 { vec![h, w] } else { vec![h, w, c] }, data))
            }
            _ => Err(verr(format!(
                "{OP}: ddepth {ddepth} with scale {scale}, delta {delta} is not supported for uint8 src \
                 (CV_16S/CV_8U with scale 1 and delta 0, CV_32F, or CV_64F with scale 1)"
            ))),
        },
        Img::F32(s) => match ddepth {
            -1 | CV_32F => {
                let sc = scale as f32;
                let r = py.detach(move || ip::edges::sobel_f32(&s, dx, dy, k, sc, b)).map_err(ip_err)?;
                let d = delta as f32;
                Ok(image_out(py, if delta == 0.0 { r } else { r.map(|v| v + d) }))
            }
            _ => Err(verr(format!("{OP}: ddepth {ddepth} is not supported for float32 src (-1 or CV_32F)"))),
        },
        _ => unreachable!("dtype checked above"),
    }
}

/// `Scharr(src, ddepth, dx, dy[, dst[, scale[, delta[, borderType]]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, ddepth, dx, dy, dst=None, scale=1.0, delta=0.0, borderType=4))]
fn Scharr(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    ddepth: i32,
    dx: i64,
    dy: i64,
    dst: Option<Bound<'_, PyAny>>,
    scale: f64,
    delta: f64,
    borderType: i32,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "Scharr";
    no_dst(OP, "dst", &dst)?;
    if !((dx == 1 && dy == 0) || (dx == 0 && dy == 1)) {
        return Err(verr(format!("{OP}: dx {dx}, dy {dy}: exactly one must be 1, the other 0")));
    }
    let b = border(OP, borderType, BORDERS_NO_WRAP)?;
    let s = u8_in(src, OP, "src", &[1, 2, 3, 4])?;
    deriv_i16_out(py, OP, ddepth, scale, delta, move || ip::scharr(&s, dx as usize, dy as usize, b))
}

/// `Laplacian(src, ddepth[, dst[, ksize[, scale[, delta[, borderType]]]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, ddepth, dst=None, ksize=1, scale=1.0, delta=0.0, borderType=4))]
fn Laplacian(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    ddepth: i32,
    dst: Option<Bound<'_, PyAny>>,
    ksize: i64,
    scale: f64,
    delta: f64,
    borderType: i32,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "Laplacian";
    no_dst(OP, "dst", &dst)?;
    if !matches!(ksize, 1 | 3 | 5 | 7) {
        return Err(verr(format!("{OP}: ksize {ksize} is not supported (1, 3, 5 or 7)")));
    }
    let b = border(OP, borderType, BORDERS_NO_WRAP)?;
    let s = u8_in(src, OP, "src", &[1, 2, 3, 4])?;
    deriv_i16_out(py, OP, ddepth, scale, delta, move || ip::laplacian(&s, ksize as usize, b))
}

/// 8-bit derivative computed as CV_16S, returned as CV_16S or saturated to CV_8U
/// (scale 1, delta 0 only: other values would round differently from OpenCV).
fn deriv_i16_out(
    py: Python<'_>,
    op: &str,
    ddepth: i32,
    scale: f64,
    delta: f64,
    f: impl FnOnce() -> ip::Result<Image<i16>> + Send,
) -> PyResult<Py<PyAny>> {
    if scale != 1.0 || delta != 0.0 {
        return Err(verr(format!("{op}: scale {scale}, delta {delta}: only scale 1 and delta 0 are supported")));
    }
    if !matches!(ddepth, CV_16S | CV_8U | -1) {
        return Err(verr(format!("{op}: ddepth {ddepth} is not supported for uint8 src (CV_16S, CV_8U or -1)")));
    }
    let r = py.detach(f).map_err(ip_err)?;
    Ok(if ddepth == CV_16S { image_out(py, r) } else { image_out(py, i16_to::<u8>(&r, 1.0, 0.0)) })
}

/// `Canny(image, threshold1, threshold2[, edges[, apertureSize[, L2gradient]]]) -> edges`
#[pyfunction]
#[pyo3(signature = (image, threshold1, threshold2, edges=None, apertureSize=3, L2gradient=false))]
fn Canny(
    py: Python<'_>,
    image: &Bound<'_, PyAny>,
    threshold1: f64,
    threshold2: f64,
    edges: Option<Bound<'_, PyAny>>,
    apertureSize: i64,
    L2gradient: bool,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "Canny";
    no_dst(OP, "edges", &edges)?;
    // Aperture 7 is refused: imgproc's result differs from OpenCV's there (and its sums overflow).
    if !matches!(apertureSize, 3 | 5) {
        return Err(verr(format!("{OP}: apertureSize {apertureSize} is not supported (3 or 5)")));
    }
    let s = u8_in(image, OP, "image", &[1])?;
    let r =
        py.detach(move || ip::canny(&s, threshold1, threshold2, apertureSize as usize, L2gradient)).map_err(ip_err)?;
    Ok(image_out(py, r))
}

/// `convertScaleAbs(src[, dst[, alpha[, beta]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, dst=None, alpha=1.0, beta=0.0))]
fn convertScaleAbs(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    dst: Option<Bound<'_, PyAny>>,
    alpha: f64,
    beta: f64,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "convertScaleAbs";
    no_dst(OP, "dst", &dst)?;
    let img = image_in(src, OP, "src", &[Depth::U8, Depth::U16, Depth::I16, Depth::F32])?;
    let r = with_img!(img, |s| py.detach(move || ip::convert_scale_abs(&s, alpha, beta))).map_err(ip_err)?;
    Ok(image_out(py, r))
}

// ------------------------------------------------------------------------------------------
// corners and features

/// `cornerHarris(src, blockSize, ksize, k[, dst[, borderType]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, blockSize, ksize, k, dst=None, borderType=4))]
fn cornerHarris(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    blockSize: i64,
    ksize: i64,
    k: f64,
    dst: Option<Bound<'_, PyAny>>,
    borderType: i32,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "cornerHarris";
    no_dst(OP, "dst", &dst)?;
    let (bs, ks) = corner_sizes(OP, blockSize, ksize)?;
    let b = border(OP, borderType, BORDERS_NO_WRAP)?;
    let s = u8_in(src, OP, "src", &[1])?;
    let r = py.detach(move || ip::corner_harris(&s, bs, ks, k, b)).map_err(ip_err)?;
    Ok(image_out(py, r))
}

fn corner_sizes(op: &str, block: i64, ksize: i64) -> PyResult<(usize, usize)> {
    if block <= 0 {
        return Err(verr(format!("{op}: blockSize {block} must be positive")));
    }
    if !matches!(ksize, 1 | 3 | 5 | 7) {
        return Err(verr(format!("{op}: ksize {ksize} is not supported (1, 3, 5 or 7)")));
    }
    Ok((block as usize, ksize as usize))
}

/// `cornerMinEigenVal(src, blockSize[, dst[, ksize[, borderType]]]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, blockSize, dst=None, ksize=3, borderType=4))]
fn cornerMinEigenVal(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    blockSize: i64,
    dst: Option<Bound<'_, PyAny>>,
    ksize: i64,
    borderType: i32,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "cornerMinEigenVal";
    no_dst(OP, "dst", &dst)?;
    let (bs, ks) = corner_sizes(OP, blockSize, ksize)?;
    let b = border(OP, borderType, BORDERS_NO_WRAP)?;
    let s = u8_in(src, OP, "src", &[1])?;
    let r = py.detach(move || ip::corner_min_eigen_val(&s, bs, ks, b)).map_err(ip_err)?;
    Ok(image_out(py, r))
}

/// `goodFeaturesToTrack(image, maxCorners, qualityLevel, minDistance[, corners[, mask[, blockSize[, useHarrisDetector[, k]]]]]) -> corners`
#[pyfunction]
#[pyo3(signature = (image, maxCorners, qualityLevel, minDistance, corners=None, mask=None, blockSize=3, useHarrisDetector=false, k=0.04))]
fn goodFeaturesToTrack(
    py: Python<'_>,
    image: &Bound<'_, PyAny>,
    maxCorners: i64,
    qualityLevel: f64,
    minDistance: f64,
    corners: Option<Bound<'_, PyAny>>,
    mask: Option<Bound<'_, PyAny>>,
    blockSize: i64,
    useHarrisDetector: bool,
    k: f64,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "goodFeaturesToTrack";
    let _ = k;
    no_dst(OP, "corners", &corners)?;
    if mask.as_ref().is_some_and(|m| !m.is_none()) {
        return Err(verr(format!("{OP}: mask is not supported")));
    }
    if blockSize != 3 {
        return Err(verr(format!("{OP}: blockSize {blockSize} is not supported (3)")));
    }
    if useHarrisDetector {
        return Err(verr(format!("{OP}: useHarrisDetector is not supported")));
    }
    let s = u8_in(image, OP, "image", &[1])?;
    let mc = maxCorners.max(0) as usize;
    let pts = py.detach(move || ip::good_features_to_track(&s, mc, qualityLevel, minDistance)).map_err(ip_err)?;
    let n = pts.len();
    let data: Vec<f32> = pts.iter().flat_map(|&(x, y)| [x, y]).collect();
    Ok(array_out(py, vec![n, 1, 2], data))
}

/// `cv2.KeyPoint`'s fields, as SIFT returns them.
#[pyclass(module = "vlsm.imgproc", name = "KeyPoint", get_all, set_all)]
#[derive(Clone)]
struct KeyPoint {
    /// `(x, y)` in pixels.
    pt: (f32, f32),
    /// Diameter of the meaningful neighbourhood.
    size: f32,
    /// Orientation in degrees, [0, 360).
    angle: f32,
    /// Detector response (contrast).
    response: f32,
    /// Packed octave, layer and sub-layer, as OpenCV.
    octave: i32,
    /// Always -1.
    class_id: i32,
}

#[pymethods]
impl KeyPoint {
    #[new]
    #[pyo3(signature = (x=0.0, y=0.0, size=0.0, angle=-1.0, response=0.0, octave=0, class_id=-1))]
    fn new(x: f32, y: f32, size: f32, angle: f32, response: f32, octave: i32, class_id: i32) -> Self {
        KeyPoint { pt: (x, y), size, angle, response, octave, class_id }
    }
    fn __repr__(&self) -> String {
        format!(
            "KeyPoint(pt=({}, {}), size={}, angle={}, response={}, octave={})",
            self.pt.0, self.pt.1, self.size, self.angle, self.response, self.octave
        )
    }
}

/// SIFT with OpenCV's default parameters (`SIFT_create()`).
#[pyclass(module = "vlsm.imgproc", name = "SIFT", frozen)]
struct Sift;

fn sift_gray(obj: &Bound<'_, PyAny>, op: &str) -> PyResult<Image<u8>> {
    let img = u8_in(obj, op, "image", &[1, 3, 4])?;
    if img.channels() == 1 {
        return Ok(img);
    }
    // As OpenCV: colour input is taken as BGR(A) and converted to gray.
    ip::cvt_color(&img, ip::ColorConversion::Bgr2Gray).map_err(ip_err)
}

fn no_mask(op: &str, mask: &Option<Bound<'_, PyAny>>) -> PyResult<()> {
    if mask.as_ref().is_some_and(|m| !m.is_none()) {
        return Err(verr(format!("{op}: mask is not supported")));
    }
    Ok(())
}

fn keypoints_out(py: Python<'_>, kps: Vec<ip::KeyPoint>) -> PyResult<Py<PyAny>> {
    let items: Vec<KeyPoint> = kps
        .into_iter()
        .map(|k| KeyPoint {
            pt: (k.x, k.y),
            size: k.size,
            angle: k.angle,
            response: k.response,
            octave: k.octave,
            class_id: -1,
        })
        .collect();
    Ok(PyTuple::new(py, items)?.into_any().unbind())
}

#[pymethods]
impl Sift {
    /// `detect(image[, mask]) -> keypoints`
    #[pyo3(signature = (image, mask=None))]
    fn detect(&self, py: Python<'_>, image: &Bound<'_, PyAny>, mask: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        no_mask("SIFT.detect", &mask)?;
        let g = sift_gray(image, "SIFT.detect")?;
        let kps = py.detach(move || ip::sift_detect(&g)).map_err(ip_err)?;
        keypoints_out(py, kps)
    }

    /// `detectAndCompute(image, mask[, descriptors[, useProvidedKeypoints]]) -> keypoints, descriptors`
    #[pyo3(signature = (image, mask=None, descriptors=None, useProvidedKeypoints=false))]
    fn detectAndCompute(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        mask: Option<Bound<'_, PyAny>>,
        descriptors: Option<Bound<'_, PyAny>>,
        useProvidedKeypoints: bool,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        const OP: &str = "SIFT.detectAndCompute";
        no_mask(OP, &mask)?;
        no_dst(OP, "descriptors", &descriptors)?;
        if useProvidedKeypoints {
            return Err(verr(format!("{OP}: useProvidedKeypoints is not supported")));
        }
        let g = sift_gray(image, OP)?;
        let (kps, desc) = py.detach(move || ip::sift_detect_and_compute(&g)).map_err(ip_err)?;
        let n = desc.len();
        let d = array_out(py, vec![n, 128], desc.into_iter().flatten().collect::<Vec<f32>>());
        Ok((keypoints_out(py, kps)?, d))
    }

    /// `descriptorSize() -> 128`
    fn descriptorSize(&self) -> i32 {
        128
    }

    /// `descriptorType() -> CV_32F`
    fn descriptorType(&self) -> i32 {
        CV_32F
    }

    /// `defaultNorm() -> NORM_L2`
    fn defaultNorm(&self) -> i32 {
        4
    }

    fn __repr__(&self) -> &'static str {
        "SIFT()"
    }
}

/// `SIFT_create([nfeatures[, nOctaveLayers[, contrastThreshold[, edgeThreshold[, sigma]]]]]) -> SIFT`
///
/// Only OpenCV's defaults are implemented; other values raise `ValueError`.
#[pyfunction]
#[pyo3(signature = (nfeatures=0, nOctaveLayers=3, contrastThreshold=0.04, edgeThreshold=10.0, sigma=1.6, enable_precise_upscale=false))]
fn SIFT_create(
    nfeatures: i64,
    nOctaveLayers: i64,
    contrastThreshold: f64,
    edgeThreshold: f64,
    sigma: f64,
    enable_precise_upscale: bool,
) -> PyResult<Sift> {
    const OP: &str = "SIFT_create";
    let checks = [
        ("nfeatures", nfeatures == 0),
        ("nOctaveLayers", nOctaveLayers == 3),
        ("contrastThreshold", contrastThreshold == 0.04),
        ("edgeThreshold", edgeThreshold == 10.0),
        ("sigma", sigma == 1.6),
        ("enable_precise_upscale", !enable_precise_upscale),
    ];
    if let Some((name, _)) = checks.iter().find(|(_, ok)| !ok) {
        return Err(verr(format!("{OP}: {name}: only OpenCV's default value is supported")));
    }
    Ok(Sift)
}

// ------------------------------------------------------------------------------------------
// histograms and point operations

/// `calcHist(images, channels, mask, histSize, ranges[, hist[, accumulate]]) -> hist`
///
/// One 8-bit image, one channel, no mask, 256 bins over [0, 256).
#[pyfunction]
#[pyo3(signature = (images, channels, mask, histSize, ranges, hist=None, accumulate=false))]
fn calcHist(
    py: Python<'_>,
    images: &Bound<'_, PyAny>,
    channels: Vec<i64>,
    mask: Option<Bound<'_, PyAny>>,
    histSize: Vec<i64>,
    ranges: Vec<f64>,
    hist: Option<Bound<'_, PyAny>>,
    accumulate: bool,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "calcHist";
    no_dst(OP, "hist", &hist)?;
    no_mask(OP, &mask)?;
    if accumulate {
        return Err(verr(format!("{OP}: accumulate is not supported")));
    }
    let imgs: Vec<Bound<'_, PyAny>> = if let Ok(l) = images.cast::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = images.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        vec![images.clone()]
    };
    if imgs.len() != 1 {
        return Err(verr(format!("{OP}: images: exactly one image is supported, got {}", imgs.len())));
    }
    if channels.len() != 1 || channels[0] < 0 {
        return Err(verr(format!("{OP}: channels {channels:?}: exactly one channel index is supported")));
    }
    if histSize != [256] {
        return Err(verr(format!("{OP}: histSize {histSize:?} is not supported ([256])")));
    }
    if ranges != [0.0, 256.0] {
        return Err(verr(format!("{OP}: ranges {ranges:?} are not supported ([0, 256])")));
    }
    let s = u8_in(&imgs[0], OP, "images[0]", &[1, 2, 3, 4])?;
    let c = channels[0] as usize;
    if c >= s.channels() {
        return Err(verr(format!("{OP}: channels [{c}] out of range for {} channel(s)", s.channels())));
    }
    let h = py.detach(move || ip::calc_hist(&s, c)).map_err(ip_err)?;
    Ok(array_out(py, vec![256], h))
}

/// `equalizeHist(src[, dst]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, dst=None))]
fn equalizeHist(py: Python<'_>, src: &Bound<'_, PyAny>, dst: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
    no_dst("equalizeHist", "dst", &dst)?;
    let s = u8_in(src, "equalizeHist", "src", &[1])?;
    let r = py.detach(move || ip::equalize_hist(&s)).map_err(ip_err)?;
    Ok(image_out(py, r))
}

/// `LUT(src, lut[, dst]) -> dst`
#[pyfunction]
#[pyo3(signature = (src, lut, dst=None))]
fn LUT(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    lut: &Bound<'_, PyAny>,
    dst: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    const OP: &str = "LUT";
    no_dst(OP, "dst", &dst)?;
    let arr = as_array(lut, OP, "lut")?;
    if depth_of(&arr) != Some(Depth::U8) {
        return Err(verr(format!("{OP}: lut: dtype {} is not supported (uint8)", dtype_str(&arr))));
    }
    if arr.len() != 256 || arr.shape().iter().filter(|&&d| d != 1).count() > 1 {
        return Err(verr(format!("{OP}: lut must hold 256 values in one channel, got shape {:?}", arr.shape())));
    }
    let t: [u8; 256] = to_vec::<u8>(lut.py(), &arr)?.try_into().expect("256 values");
    let s = u8_in(src, OP, "src", &[1, 2, 3, 4])?;
    let r = py.detach(move || ip::lut(&s, &t)).map_err(ip_err)?;
    Ok(image_out(py, r))
}

// ------------------------------------------------------------------------------------------
// segmentation

fn components_in(obj: &Bound<'_, PyAny>, op: &str, connectivity: i64, ltype: i32) -> PyResult<(Image<u8>, u8)> {
    if connectivity != 4 && connectivity != 8 {
        return Err(verr(format!("{op}: connectivity {connectivity} is not supported (4 or 8)")));
    }
    if ltype != CV_32S {
        return Err(verr(format!("{op}: ltype {ltype} is not supported (CV_32S)")));
    }
    Ok((u8_in(obj, op, "image", &[1])?, connectivity as u8))
}

/// `connectedComponents(image[, labels[, connectivity[, ltype]]]) -> retval, labels`
#[pyfunction]
#[pyo3(signature = (image, labels=None, connectivity=8, ltype=CV_32S))]
fn connectedComponents(
    py: Python<'_>,
    image: &Bound<'_, PyAny>,
    labels: Option<Bound<'_, PyAny>>,
    connectivity: i64,
    ltype: i32,
) -> PyResult<(usize, Py<PyAny>)> {
    const OP: &str = "connectedComponents";
    no_dst(OP, "labels", &labels)?;
    let (s, c) = components_in(image, OP, connectivity, ltype)?;
    let cc = py.detach(move || cv_order(ip::connected_components_with_stats(&s, c), c)).map_err(ip_err)?;
    Ok((cc.count, image_out(py, cc.labels)))
}

/// OpenCV numbers 8-connected components (its default Spaghetti algorithm) in the order their
/// first 2×2 block is met, blocks scanned row pair by row pair; imgproc numbers them in raster
/// order of the first pixel (which is OpenCV's order for 4-connectivity). Renumbers to OpenCV's.
fn cv_order(cc: ip::Result<ip::Components>, connectivity: u8) -> ip::Result<ip::Components> {
    let mut cc = cc?;
    if connectivity != 8 {
        return Ok(cc);
    }
    let (w, h) = (cc.labels.width(), cc.labels.height());
    let mut new = vec![0i32; cc.count];
    let mut next = 1;
    let l = cc.labels.data();
    for by in (0..h).step_by(2) {
        for bx in (0..w).step_by(2) {
            for (x, y) in [(bx, by), (bx + 1, by), (bx, by + 1), (bx + 1, by + 1)] {
                if x < w && y < h {
                    let v = l[y * w + x] as usize;
                    if v != 0 && new[v] == 0 {
                        new[v] = next;
                        next += 1;
                    }
                }
            }
        }
    }
    for v in cc.labels.data_mut() {
        *v = new[*v as usize];
    }
    let (mut stats, mut cents) = (cc.stats.clone(), cc.centroids.clone());
    for old in 1..cc.count {
        stats[new[old] as usize] = cc.stats[old];
        cents[new[old] as usize] = cc.centroids[old];
    }
    cc.stats = stats;
    cc.centroids = cents;
    Ok(cc)
}

type ComponentsOut = (usize, Py<PyAny>, Py<PyAny>, Py<PyAny>);

/// `connectedComponentsWithStats(image[, labels[, stats[, centroids[, connectivity[, ltype]]]]]) -> retval, labels, stats, centroids`
#[pyfunction]
#[pyo3(signature = (image, labels=None, stats=None, centroids=None, connectivity=8, ltype=CV_32S))]
fn connectedComponentsWithStats(
    py: Python<'_>,
    image: &Bound<'_, PyAny>,
    labels: Option<Bound<'_, PyAny>>,
    stats: Option<Bound<'_, PyAny>>,
    centroids: Option<Bound<'_, PyAny>>,
    connectivity: i64,
    ltype: i32,
) -> PyResult<ComponentsOut> {
    const OP: &str = "connectedComponentsWithStats";
    no_dst(OP, "labels", &labels)?;
    no_dst(OP, "stats", &stats)?;
    no_dst(OP, "centroids", &centroids)?;
    let (s, c) = components_in(image, OP, connectivity, ltype)?;
    let cc = py.detach(move || cv_order(ip::connected_components_with_stats(&s, c), c)).map_err(ip_err)?;
    let n = cc.count;
    let st: Vec<i32> = cc.stats.iter().flatten().copied().collect();
    let ce: Vec<f64> = cc.centroids.iter().flat_map(|&(x, y)| [x, y]).collect();
    Ok((n, image_out(py, cc.labels), array_out(py, vec![n, 5], st), array_out(py, vec![n, 2], ce)))
}

/// `kmeans(data, K, bestLabels, criteria, attempts, flags[, centers]) -> compactness, labels, centers`
#[pyfunction]
#[pyo3(signature = (data, K, bestLabels, criteria, attempts, flags, centers=None))]
fn kmeans(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    K: i64,
    bestLabels: Option<Bound<'_, PyAny>>,
    criteria: (i32, i64, f64),
    attempts: i64,
    flags: i32,
    centers: Option<Bound<'_, PyAny>>,
) -> PyResult<(f64, Py<PyAny>, Py<PyAny>)> {
    const OP: &str = "kmeans";
    no_dst(OP, "centers", &centers)?;
    let arr = as_array(data, OP, "data")?;
    if depth_of(&arr) != Some(Depth::F32) {
        return Err(verr(format!("{OP}: data: dtype {} is not supported (float32)", dtype_str(&arr))));
    }
    let shape = arr.shape().to_vec();
    let (n, dims) = match shape[..] {
        [n] => (n, 1),
        [n, d] => (n, d),
        _ => return Err(verr(format!("{OP}: data must be N×dims (or N), got shape {shape:?}"))),
    };
    if n == 0 || dims == 0 {
        return Err(verr(format!("{OP}: data is empty (shape {shape:?})")));
    }
    if K < 1 || K as usize > n {
        return Err(verr(format!("{OP}: K {K} must be in 1..={n}")));
    }
    if flags & !(KMEANS_USE_INITIAL_LABELS | KMEANS_PP_CENTERS) != 0 {
        return Err(verr(format!("{OP}: flags {flags} are not supported")));
    }
    let (ty, max_count, eps) = criteria;
    if ty & !(TERM_COUNT | TERM_EPS) != 0 || ty == 0 {
        return Err(verr(format!(
            "{OP}: criteria type {ty} is not supported (TERM_CRITERIA_EPS and/or TERM_CRITERIA_MAX_ITER)"
        )));
    }
    // As OpenCV: without EPS the tolerance is FLT_EPSILON; without COUNT at most 100 iterations.
    let eps = if ty & TERM_EPS != 0 { eps.max(0.0) } else { f32::EPSILON as f64 };
    let max_iter = if ty & TERM_COUNT != 0 { max_count.clamp(2, i32::MAX as i64) as usize } else { 100 };
    let init = if flags & KMEANS_USE_INITIAL_LABELS != 0 {
        let l = bestLabels
            .as_ref()
            .filter(|l| !l.is_none())
            .ok_or_else(|| verr(format!("{OP}: bestLabels are needed with KMEANS_USE_INITIAL_LABELS")))?;
        let la = as_array(l, OP, "bestLabels")?;
        if la.dtype().kind() != b'i' || la.dtype().itemsize() != 4 || la.len() != n {
            return Err(verr(format!(
                "{OP}: bestLabels must be {n} int32 labels (N×1), got {} of dtype {}",
                la.len(),
                dtype_str(&la)
            )));
        }
        let v = to_vec::<i32>(py, &la)?;
        if v.iter().any(|&x| x < 0 || x as i64 >= K) {
            return Err(verr(format!("{OP}: bestLabels must lie in 0..{K}")));
        }
        ip::segment::KmeansInit::Labels(v.into_iter().map(|x| x as usize).collect())
    } else if flags & KMEANS_PP_CENTERS != 0 {
        ip::segment::KmeansInit::PlusPlus
    } else {
        ip::segment::KmeansInit::Random
    };
    let d = to_vec::<f32>(py, &arr)?;
    let k = K as usize;
    let seed = 0x5EED_u64;
    let r = py
        .detach(move || ip::segment::kmeans_with(&d, dims, k, init, max_iter, eps, attempts.max(1) as usize, seed))
        .map_err(ip_err)?;
    let labels: Vec<i32> = r.labels.iter().map(|&l| l as i32).collect();
    let centers: Vec<f32> = r.centers.into_iter().flatten().collect();
    Ok((r.compactness, array_out(py, vec![n, 1], labels), array_out(py, vec![k, dims], centers)))
}

// ------------------------------------------------------------------------------------------

/// Adds the `imgproc` submodule to the native module (importable as `vlsm._vlsm.imgproc`).
pub fn register(py: Python<'_>, parent: &Bound<'_, PyModule>) -> PyResult<()> {
    let m = PyModule::new(py, "imgproc")?;
    m.add_function(wrap_pyfunction!(cvtColor, &m)?)?;
    m.add_function(wrap_pyfunction!(threshold, &m)?)?;
    m.add_function(wrap_pyfunction!(adaptiveThreshold, &m)?)?;
    m.add_function(wrap_pyfunction!(GaussianBlur, &m)?)?;
    m.add_function(wrap_pyfunction!(blur, &m)?)?;
    m.add_function(wrap_pyfunction!(boxFilter, &m)?)?;
    m.add_function(wrap_pyfunction!(medianBlur, &m)?)?;
    m.add_function(wrap_pyfunction!(filter2D, &m)?)?;
    m.add_function(wrap_pyfunction!(getGaussianKernel, &m)?)?;
    m.add_function(wrap_pyfunction!(resize, &m)?)?;
    m.add_function(wrap_pyfunction!(getRotationMatrix2D, &m)?)?;
    m.add_function(wrap_pyfunction!(warpAffine, &m)?)?;
    m.add_function(wrap_pyfunction!(getStructuringElement, &m)?)?;
    m.add_function(wrap_pyfunction!(erode, &m)?)?;
    m.add_function(wrap_pyfunction!(dilate, &m)?)?;
    m.add_function(wrap_pyfunction!(morphologyEx, &m)?)?;
    m.add_function(wrap_pyfunction!(Sobel, &m)?)?;
    m.add_function(wrap_pyfunction!(Scharr, &m)?)?;
    m.add_function(wrap_pyfunction!(Laplacian, &m)?)?;
    m.add_function(wrap_pyfunction!(Canny, &m)?)?;
    m.add_function(wrap_pyfunction!(convertScaleAbs, &m)?)?;
    m.add_function(wrap_pyfunction!(cornerHarris, &m)?)?;
    m.add_function(wrap_pyfunction!(cornerMinEigenVal, &m)?)?;
    m.add_function(wrap_pyfunction!(goodFeaturesToTrack, &m)?)?;
    m.add_function(wrap_pyfunction!(SIFT_create, &m)?)?;
    m.add_function(wrap_pyfunction!(calcHist, &m)?)?;
    m.add_function(wrap_pyfunction!(equalizeHist, &m)?)?;
    m.add_function(wrap_pyfunction!(LUT, &m)?)?;
    m.add_function(wrap_pyfunction!(connectedComponents, &m)?)?;
    m.add_function(wrap_pyfunction!(connectedComponentsWithStats, &m)?)?;
    m.add_function(wrap_pyfunction!(kmeans, &m)?)?;
    m.add_class::<KeyPoint>()?;
    m.add_class::<Sift>()?;
    parent.add_submodule(&m)?;
    // `from vlsm._vlsm.imgproc import *` looks the submodule up in sys.modules.
    py.import("sys")?.getattr("modules")?.set_item("vlsm._vlsm.imgproc", &m)?;
    Ok(())
}
