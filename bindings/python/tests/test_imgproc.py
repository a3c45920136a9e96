"""vlsm.imgproc against cv2 (opencv-python-headless, tests/requirements.txt).

Byte for byte wherever the Rust goldens (crates/imgproc/tests/it/golden.rs) are exact; elsewhere
with the tolerance those goldens use, named at each use:
- bicubic resize of 8-bit images with 1, 3 or 4 channels (cv2 uses IPP): values at most 1 off,
  at most 25 % of them (golden_resize_cubic);
- bicubic warpAffine: at most 2 off, at most 10 % (golden_warp_affine_cubic);
- float32 colour other than RGB->Lab: 1e-4 relative (float32 RGB->Lab is exact: the same table
  and fixed-point interpolation as cv2, golden_lab_f32_table_grid_and_between);
- convertScaleAbs with a fractional alpha: at most 1 off on 5 % (golden "csa");
- cornerHarris 1e-3 relative, cornerMinEigenVal 1e-4 (golden_harris_and_min_eigen);
- goodFeaturesToTrack: 90 % of cv2's corners (golden_good_features_to_track);
- kmeans: cv2's RNG cannot be followed; with KMEANS_USE_INITIAL_LABELS the labels are equal, the
  centres and compactness within 1e-5 relative; seeded runs reach at most 1.02 x cv2's
  compactness (golden_kmeans_inertia_within_2pct);
- SIFT: the criteria of crates/imgproc/tests/it/sift.rs (keypoint count within 20 %, cv2's ten
  strongest keypoints found, >= 90 % of cv2's correct ratio-test matches under rotation/scale).
Float32 results the Rust goldens do not cover (filters, resize, warps, Lab->RGB, Sobel) are
compared within 1e-4 of the result's largest magnitude.

Differences from cv2 found here, in imgproc and not (yet) fixed; the tests pin them down:
- blur / boxFilter with an even kernel area on 8- or 16-bit images: values 1 off on up to 10 %
  (cv2 rounds a float product there); odd areas are exact;
- GaussianBlur on uint16: 1 off on up to 6 % (kernel in float, cv2 in fixed point); filter2D with a non-symmetric kernel on 8/16-bit
  images: 1 off on up to 1 % (float sums in another order);
- resize with INTER_LINEAR / INTER_CUBIC on uint16: 1 off on up to 10 %;
- warpAffine: INTER_NEAREST picks another source pixel on up to 0.01 % of pixels (coordinates
  on a .5 tie), 8-bit INTER_LINEAR is 1 off on up to 0.1 % at sizes beyond the goldens' (333
  wide), 16-bit INTER_LINEAR up to 2 off on 10 %, 16-bit INTER_CUBIC up to 3 off; 2-channel
  uint16/float32 INTER_LINEAR differs by up to 4 % of the range (cv2's fixed-point remap path,
  which imgproc has for uint8 only), so the binding refuses it with ValueError;
- kmeans with KMEANS_USE_INITIAL_LABELS when a cluster empties: cv2 moves the farthest point of
  the largest cluster into it, imgproc keeps the centre (the test uses labels without empties).

cv2's own output depends on the CPU: on AVX-512 machines its HSV->RGB and some warps take other
SIMD paths than on AVX2. imgproc follows the CPU as OpenCV does, but the tests compare the AVX2
paths of both: cv2 starts with OPENCV_CPU_DISABLE=AVX512-SKX,AVX512-CLX and imgproc with
IMGPROC_NO_AVX512=1.
"""
import json
import os
import threading

import numpy as np
import pytest

# Before cv2 is loaded: take OpenCV's AVX2 code paths even on AVX-512 machines (see above).
os.environ.setdefault("OPENCV_CPU_DISABLE", "AVX512-SKX,AVX512-CLX")
os.environ.setdefault("IMGPROC_NO_AVX512", "1")
cv2 = pytest.importorskip("cv2")
import vlsm.imgproc as vi  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SIFT_DIR = os.path.join(ROOT, "tests", "fixtures", "imgproc", "sift")

SIZES = [(37, 53), (401, 333)]  # (height, width): odd on both sides
SIZE_IDS = ["37x53", "401x333"]


def make(shape, dtype, seed=0, smooth=True):
    """A test image: smooth structure plus noise, over the dtype's useful range."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 0.5 + 0.35 * np.sin(xx / 7.0 + seed) * np.cos(yy / 5.0) if smooth else np.zeros((h, w))
    if len(shape) == 3:
        base = np.stack([np.roll(base, 3 * c, axis=1) for c in range(shape[2])], axis=-1)
    v = np.clip(base + rng.normal(0, 0.12, base.shape), 0, 1)
    if dtype == np.uint8:
        return (v * 255).round().astype(np.uint8)
    if dtype == np.uint16:
        return (v * 65535).round().astype(np.uint16)
    return (v * 255).astype(np.float32)


def shape_of(size, cn):
    return size if cn == 1 else (*size, cn)


def same(got, want):
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    if not np.array_equal(got, want):
        d = np.abs(got.astype(np.float64) - want.astype(np.float64))
        pytest.fail(f"{np.count_nonzero(d)} of {d.size} values differ, max {d.max()}")


def close(got, want, rel):
    """The golden's `close`: |got - want| <= rel * max(|want|, 1e-3 * max|want|)."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    g, w = got.astype(np.float64), want.astype(np.float64)
    scale = np.abs(w).max() if w.size else 0.0
    tol = rel * np.maximum(np.maximum(np.abs(w), 1e-3 * scale), 1e-12)
    bad = np.abs(g - w) > tol
    assert not bad.any(), f"{bad.sum()} of {bad.size} outside {rel}, max diff {np.abs(g - w).max()}"


def near(got, want, max_diff, max_frac):
    """The golden's `near`: at most `max_diff` off, on at most `max_frac` of the values."""
    assert got.dtype == want.dtype and got.shape == want.shape
    d = np.abs(got.astype(np.float64) - want.astype(np.float64))
    assert d.max() <= max_diff, f"max diff {d.max()}"
    assert np.count_nonzero(d) <= max_frac * d.size, f"{np.count_nonzero(d)} of {d.size} differ"


def close_scaled(got, want, rel=1e-4):
    """|got - want| <= rel * max|want| (float32 results the Rust goldens do not cover)."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    d = np.abs(got.astype(np.float64) - want.astype(np.float64))
    scale = float(np.abs(want).max()) if want.size else 0.0
    assert d.max() <= rel * max(scale, 1e-6), f"max diff {d.max()} > {rel} * {scale}"


def compare(got, want, dtype, rel=1e-4):
    if np.dtype(dtype) == np.float32:
        close_scaled(got, want, rel)
    else:
        same(got, want)


# ------------------------------------------------------------------------------------------
# constants

def test_constants_equal_cv2():
    names = [n for n in vi.__all__ if isinstance(getattr(vi, n), int)]
    assert len(names) > 70
    for n in names:
        assert getattr(vi, n) == getattr(cv2, n), n


# ------------------------------------------------------------------------------------------
# colour

FWD = [
    ("RGB2GRAY", [3, 4]), ("BGR2GRAY", [3, 4]), ("RGBA2GRAY", [4]), ("BGRA2GRAY", [4]),
    ("GRAY2RGB", [1]), ("GRAY2BGRA", [1]), ("BGR2RGB", [3, 4]), ("RGB2BGR", [3]), ("BGR2BGRA", [3, 4]),
    ("BGRA2BGR", [4]), ("BGR2RGBA", [3]), ("RGBA2BGR", [4]), ("BGRA2RGBA", [4]),
    ("RGB2Lab", [3, 4]), ("BGR2Lab", [3, 4]), ("RGB2HSV", [3, 4]), ("BGR2HSV", [3, 4]),
]
CHANNEL_ONLY = {"RGB2GRAY", "BGR2GRAY", "RGBA2GRAY", "BGRA2GRAY", "GRAY2RGB", "GRAY2BGRA", "BGR2RGB",
                "RGB2BGR", "BGR2BGRA", "BGRA2BGR", "BGR2RGBA", "RGBA2BGR", "BGRA2RGBA"}


def fwd_cases():
    for name, cns in FWD:
        for cn in cns:
            dtypes = [np.uint8, np.uint16, np.float32] if name in CHANNEL_ONLY else [np.uint8, np.float32]
            for dt in dtypes:
                yield pytest.param(name, cn, dt, id=f"{name}-{cn}ch-{np.dtype(dt).name}")


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("name,cn,dtype", list(fwd_cases()))
def test_cvtColor_forward(name, cn, dtype, size):
    src = make(shape_of(size, cn), dtype, seed=cn)
    if dtype == np.float32:
        # cv2's float colour range, from 8-bit values as the golden's fixture
        src = (make(shape_of(size, cn), np.uint8, seed=cn) / 255.0).astype(np.float32)
    code = getattr(cv2, "COLOR_" + name)
    got, want = vi.cvtColor(src, code), cv2.cvtColor(src, code)
    if dtype == np.float32 and "Lab" in name:
        same(got, want)  # cv2's table and fixed-point interpolation, reproduced
    else:
        compare(got, want, dtype)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("name", ["Lab2RGB", "Lab2BGR", "HSV2RGB", "HSV2BGR"])
def test_cvtColor_inverse_u8(name, size):
    src = make((*size, 3), np.uint8, seed=5)
    if name.startswith("HSV"):
        src[..., 0] = src[..., 0] % 180  # 8-bit hue is in [0, 180)
    code = getattr(cv2, "COLOR_" + name)
    same(vi.cvtColor(src, code), cv2.cvtColor(src, code))


@pytest.mark.parametrize("name", ["Lab2RGB", "HSV2BGR"])
def test_cvtColor_inverse_f32(name):
    rng = np.random.default_rng(3)
    if name.startswith("Lab"):
        src = np.stack([rng.uniform(0, 100, (37, 53)), rng.uniform(-100, 100, (37, 53)),
                        rng.uniform(-100, 100, (37, 53))], -1).astype(np.float32)
    else:
        src = np.stack([rng.uniform(0, 360, (37, 53)), rng.uniform(0, 1, (37, 53)),
                        rng.uniform(0, 1, (37, 53))], -1).astype(np.float32)
    code = getattr(cv2, "COLOR_" + name)
    close_scaled(vi.cvtColor(src, code), cv2.cvtColor(src, code), 1e-4)


# ------------------------------------------------------------------------------------------
# thresholds

@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("ty", range(5))
def test_threshold(ty, dtype, cn, size):
    src = make(shape_of(size, cn), dtype)
    t, mx = {np.uint8: (127.6, 200), np.uint16: (30000.5, 60000), np.float32: (127.25, 255.0)}[dtype]
    rt, got = vi.threshold(src, t, mx, ty)
    wt, want = cv2.threshold(src, t, mx, ty)
    assert rt == wt
    same(got, want)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("auto", ["OTSU", "TRIANGLE"])
@pytest.mark.parametrize("ty", range(5))
def test_threshold_auto(ty, auto, size):
    src = make(size, np.uint8, seed=2)
    flags = ty | getattr(cv2, "THRESH_" + auto)
    rt, got = vi.threshold(src, 0, 255, flags)
    wt, want = cv2.threshold(src, 0, 255, flags)
    assert rt == wt
    same(got, want)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("method", [0, 1])
@pytest.mark.parametrize("ty", [0, 1])
@pytest.mark.parametrize("block,c", [(3, 2.0), (11, -3.5), (25, 5.0)])
def test_adaptiveThreshold(method, ty, block, c, size):
    src = make(size, np.uint8, seed=4)
    same(vi.adaptiveThreshold(src, 255, method, ty, block, c), cv2.adaptiveThreshold(src, 255, method, ty, block, c))


# ------------------------------------------------------------------------------------------
# filters

DTYPES = [np.uint8, np.uint16, np.float32]
DT_IDS = ["u8", "u16", "f32"]
BORDERS = [0, 1, 2, 4]


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("ksize,sx,sy", [((3, 3), 0, 0), ((5, 5), 0, 0), ((7, 3), 1.2, 0.8), ((0, 0), 1.5, 0), ((9, 9), 0, 0)])
def test_GaussianBlur(ksize, sx, sy, dtype, cn, size):
    src = make(shape_of(size, cn), dtype)
    got, want = vi.GaussianBlur(src, ksize, sx, sigmaY=sy), cv2.GaussianBlur(src, ksize, sx, sigmaY=sy)
    if dtype == np.uint16:
        near(got, want, 1.0, 0.10)  # mismatch, see the module docstring
    else:
        compare(got, want, dtype)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_GaussianBlur_borders(dtype, border):
    src = make((37, 53, 3), dtype)
    got, want = vi.GaussianBlur(src, (5, 5), 0, borderType=border), cv2.GaussianBlur(src, (5, 5), 0, borderType=border)
    if dtype == np.uint16:
        near(got, want, 1.0, 0.10)  # mismatch, see the module docstring
    else:
        compare(got, want, dtype)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("ksize", [(3, 3), (5, 5), (4, 7)])
@pytest.mark.parametrize("border", BORDERS)
def test_blur(ksize, border, dtype, cn, size):
    src = make(shape_of(size, cn), dtype)
    got, want = vi.blur(src, ksize, borderType=border), cv2.blur(src, ksize, borderType=border)
    if dtype != np.float32 and (ksize[0] * ksize[1]) % 2 == 0:
        near(got, want, 1.0, 0.10)  # even area: mismatch, see the module docstring
    else:
        compare(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("normalize", [True, False])
def test_boxFilter(dtype, normalize):
    src = make((37, 53, 3), dtype)
    for k in ((3, 5), (5, 5)):
        compare(vi.boxFilter(src, -1, k, normalize=normalize), cv2.boxFilter(src, -1, k, normalize=normalize), dtype)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 3, 4])
@pytest.mark.parametrize("dtype,ksize", [(np.uint8, 3), (np.uint8, 5), (np.uint8, 7), (np.uint8, 11),
                                         (np.uint16, 3), (np.uint16, 5), (np.float32, 3), (np.float32, 5)])
def test_medianBlur(dtype, ksize, cn, size):
    src = make(shape_of(size, cn), dtype)
    compare(vi.medianBlur(src, ksize), cv2.medianBlur(src, ksize), dtype)


KERNELS = {
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32),
    "box25": np.ones((5, 5), np.float32) / 25,  # the seed notes' box filter
    "laplace8": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], np.float32),
    "asym3x5": np.arange(15, dtype=np.float64).reshape(3, 5) / 50 - 0.1,
}


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("kname", list(KERNELS))
@pytest.mark.parametrize("border", BORDERS)
def test_filter2D(kname, border, dtype, cn, size):
    src = make(shape_of(size, cn), dtype)
    k = KERNELS[kname]
    got, want = vi.filter2D(src, -1, k, borderType=border), cv2.filter2D(src, -1, k, borderType=border)
    if kname == "asym3x5" and dtype != np.float32:
        near(got, want, 1.0, 0.01)  # mismatch, see the module docstring
    else:
        compare(got, want, dtype)


def test_filter2D_delta():
    src = make((37, 53), np.uint8)
    k = KERNELS["sharpen"]
    same(vi.filter2D(src, -1, k, delta=7.5), cv2.filter2D(src, -1, k, delta=7.5))


@pytest.mark.parametrize("ksize", [1, 3, 5, 7, 9, 11])
@pytest.mark.parametrize("sigma", [0, -1, 0.5, 10])
def test_getGaussianKernel(ksize, sigma):
    close(vi.getGaussianKernel(ksize, sigma), cv2.getGaussianKernel(ksize, sigma), 1e-12)  # golden_gaussian_kernel
    close(vi.getGaussianKernel(ksize, sigma, cv2.CV_32F), cv2.getGaussianKernel(ksize, sigma, ktype=cv2.CV_32F), 1e-6)


# ------------------------------------------------------------------------------------------
# geometry

@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("interp", [0, 1, 2, 3], ids=["nearest", "linear", "cubic", "area"])
@pytest.mark.parametrize("scale", [(0.5, 0.5), (0.37, 0.61), (1.7, 2.3), (2.0, 0.5)])
def test_resize(scale, interp, dtype, cn, size):
    src = make(shape_of(size, cn), dtype)
    h, w = size
    dsize = (max(1, round(w * scale[0])), max(1, round(h * scale[1])))
    got = vi.resize(src, dsize, interpolation=interp)
    want = cv2.resize(src, dsize, interpolation=interp)
    if interp == 2 and dtype == np.uint8 and cn != 2:
        near(got, want, 1.0, 0.25)  # cv2 hands 8-bit bicubic to IPP (golden_resize_cubic)
    elif interp in (1, 2) and dtype == np.uint16:
        near(got, want, 1.0, 0.10)  # mismatch, see the module docstring
    else:
        compare(got, want, dtype)


@pytest.mark.parametrize("interp", [0, 1, 3])
@pytest.mark.parametrize("fx,fy", [(0.5, 0.5), (2.0, 3.0), (0.25, 1.0)])
def test_resize_fx_fy(fx, fy, interp):
    src = make((400, 332, 3), np.uint8)  # fx * width is whole: the same sampling as cv2
    same(vi.resize(src, None, fx=fx, fy=fy, interpolation=interp), cv2.resize(src, None, fx=fx, fy=fy, interpolation=interp))


def test_resize_seed_notes():
    img = make((401, 333, 3), np.uint8)
    dimension = (200, 150)
    same(vi.resize(img, dimension, interpolation=vi.INTER_AREA), cv2.resize(img, dimension, interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("center,angle,scale", [((18.0, 26.0), 30, 1.0), ((0.5, 100.25), -45.5, 0.7), ((200, 166), 90, 1.3)])
def test_getRotationMatrix2D(center, angle, scale):
    got, want = vi.getRotationMatrix2D(center, angle, scale), cv2.getRotationMatrix2D(center, angle, scale)
    assert got.dtype == want.dtype == np.float64 and got.shape == want.shape == (2, 3)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def check_warp(got, want, interp, dtype):
    if interp == 2 and dtype == np.uint8:
        near(got, want, 2.0, 0.10)  # golden_warp_affine_cubic
    elif interp == 2 and dtype == np.uint16:
        near(got, want, 3.0, 0.10)  # no golden for 16 bits: 3 off seen
    elif interp == 0:
        # mismatch: another source pixel on up to 0.01 % of pixels (see the module docstring)
        assert got.dtype == want.dtype and got.shape == want.shape
        px = (got != want).reshape(got.shape[0], got.shape[1], -1).any(-1)
        assert px.sum() <= 1e-4 * px.size, f"{px.sum()} pixels differ"
    elif dtype == np.uint8:
        near(got, want, 1.0, 0.001)  # mismatch, see the module docstring
    elif dtype == np.uint16:
        near(got, want, 2.0, 0.10)  # mismatch, see the module docstring
    else:
        compare(got, want, dtype)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("interp", [0, 1, 2], ids=["nearest", "linear", "cubic"])
@pytest.mark.parametrize("border,bval", [(0, 0), (0, 77), (1, 0)])
def test_warpAffine(interp, border, bval, dtype, cn, size):
    src = make(shape_of(size, cn), dtype)
    h, w = size
    m = cv2.getRotationMatrix2D((w / 2 - 0.3, h / 2 + 0.7), 33.0, 0.9)
    dsize = (w + 5, h - 3)
    bv = (bval,) * 4  # a bare number is Scalar(v, 0, 0, 0) in cv2
    if interp == 1 and cn == 2 and dtype != np.uint8:
        with pytest.raises(ValueError, match="src"):
            vi.warpAffine(src, m, dsize, flags=interp, borderMode=border, borderValue=bv)
        return
    got = vi.warpAffine(src, m, dsize, flags=interp, borderMode=border, borderValue=bv)
    want = cv2.warpAffine(src, m, dsize, flags=interp, borderMode=border, borderValue=bv)
    check_warp(got, want, interp, dtype)


def test_warpAffine_scalar_border_value():
    g = make((37, 53), np.uint8)
    m = cv2.getRotationMatrix2D((20, 20), 20, 1.0)
    same(vi.warpAffine(g, m, (53, 37), borderValue=77), cv2.warpAffine(g, m, (53, 37), borderValue=77))
    rgb = make((37, 53, 3), np.uint8)
    same(vi.warpAffine(rgb, m, (53, 37), borderValue=0), cv2.warpAffine(rgb, m, (53, 37), borderValue=0))
    with pytest.raises(ValueError, match="borderValue"):
        vi.warpAffine(rgb, m, (53, 37), borderValue=77)  # (77, 0, 0): per-channel values


def test_warpAffine_translation_and_shear():
    src = make((37, 53, 3), np.uint8)
    for m in (np.float32([[1, 0, 5.5], [0, 1, -3.25]]), np.float64([[1, 0.3, 0], [0.1, 1, 2]])):
        check_warp(vi.warpAffine(src, m, (60, 40)), cv2.warpAffine(src, m, (60, 40)), 1, np.uint8)


# ------------------------------------------------------------------------------------------
# morphology

@pytest.mark.parametrize("shape", [0, 1, 2], ids=["rect", "cross", "ellipse"])
@pytest.mark.parametrize("ksize", [(1, 1), (3, 3), (5, 5), (7, 4), (4, 9), (15, 15)])
def test_getStructuringElement(shape, ksize):
    same(vi.getStructuringElement(shape, ksize), cv2.getStructuringElement(shape, ksize))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("shape", [0, 1, 2], ids=["rect", "cross", "ellipse"])
@pytest.mark.parametrize("iterations", [1, 2])
def test_erode_dilate(shape, iterations, dtype, cn, size):
    src = make(shape_of(size, cn), dtype)
    k = cv2.getStructuringElement(shape, (5, 5))
    compare(vi.erode(src, k, iterations=iterations), cv2.erode(src, k, iterations=iterations), dtype)
    compare(vi.dilate(src, k, iterations=iterations), cv2.dilate(src, k, iterations=iterations), dtype)


def test_erode_default_kernel():
    src = make((37, 53), np.uint8)
    same(vi.erode(src, None), cv2.erode(src, None))
    same(vi.dilate(src, np.ones((3, 3), np.uint8)), cv2.dilate(src, np.ones((3, 3), np.uint8)))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("op", range(7), ids=["erode", "dilate", "open", "close", "gradient", "tophat", "blackhat"])
@pytest.mark.parametrize("shape", [0, 2], ids=["rect", "ellipse"])
def test_morphologyEx(op, shape, dtype, cn, size):
    src = make(shape_of(size, cn), dtype)
    k = cv2.getStructuringElement(shape, (3, 5))
    compare(vi.morphologyEx(src, op, k), cv2.morphologyEx(src, op, k), dtype)
    compare(vi.morphologyEx(src, op, k, iterations=2), cv2.morphologyEx(src, op, k, iterations=2), dtype)


# ------------------------------------------------------------------------------------------
# derivatives, edges, point operations

@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 3])
@pytest.mark.parametrize("dx,dy", [(1, 0), (0, 1), (1, 1), (2, 0)])
@pytest.mark.parametrize("ksize", [1, 3, 5, 7])
@pytest.mark.parametrize("ddepth", ["CV_16S", "CV_8U", "CV_32F", "CV_64F"])
def test_Sobel_u8(ddepth, ksize, dx, dy, cn, size):
    src = make(shape_of(size, cn), np.uint8)
    dd = getattr(cv2, ddepth)
    got = vi.Sobel(src, dd, dx, dy, ksize=ksize)
    want = cv2.Sobel(src, dd, dx, dy, ksize=ksize)
    if ddepth == "CV_32F":
        close(got, want, 1e-4)  # golden sobel_f32
    else:
        same(got, want)


@pytest.mark.parametrize("scale,delta", [(0.25, 0.0), (1.0, 3.5)])
def test_Sobel_u8_scaled(scale, delta):
    src = make((37, 53), np.uint8)
    close(vi.Sobel(src, cv2.CV_32F, 1, 0, ksize=3, scale=scale, delta=delta),
          cv2.Sobel(src, cv2.CV_32F, 1, 0, ksize=3, scale=scale, delta=delta), 1e-4)
    same(vi.Sobel(src, cv2.CV_64F, 0, 1, ksize=5, delta=delta), cv2.Sobel(src, cv2.CV_64F, 0, 1, ksize=5, delta=delta))


@pytest.mark.parametrize("dx,dy", [(1, 0), (0, 1)])
def test_Sobel_f32(dx, dy):
    src = make((37, 53), np.float32)
    close_scaled(vi.Sobel(src, -1, dx, dy), cv2.Sobel(src, -1, dx, dy), 1e-4)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("dx,dy", [(1, 0), (0, 1)])
def test_Scharr(dx, dy, size):
    src = make(size, np.uint8)
    same(vi.Scharr(src, cv2.CV_16S, dx, dy), cv2.Scharr(src, cv2.CV_16S, dx, dy))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("ksize", [1, 3, 5])
def test_Laplacian(ksize, size):
    src = make(size, np.uint8)
    same(vi.Laplacian(src, cv2.CV_16S, ksize=ksize), cv2.Laplacian(src, cv2.CV_16S, ksize=ksize))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("lo,hi", [(100, 200), (50, 150), (20, 40), (200, 100)])
@pytest.mark.parametrize("aperture", [3, 5])
@pytest.mark.parametrize("l2", [False, True])
def test_Canny(lo, hi, aperture, l2, size):
    src = make(size, np.uint8, seed=7)
    if aperture > 3:
        lo, hi = lo * 16, hi * 16
    same(vi.Canny(src, lo, hi, apertureSize=aperture, L2gradient=l2),
         cv2.Canny(src, lo, hi, apertureSize=aperture, L2gradient=l2))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 3])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (2.5, 10.0), (-0.7, 3.0), (0.33, -20.0)])
def test_convertScaleAbs(alpha, beta, cn, size):
    for dtype in (np.uint8, np.uint16, np.float32):
        src = make(shape_of(size, cn), dtype)
        got, want = vi.convertScaleAbs(src, alpha=alpha, beta=beta), cv2.convertScaleAbs(src, alpha=alpha, beta=beta)
        near(got, want, 1.0, 0.05)  # golden "csa" (fractional alpha)
    s16 = cv2.Sobel(make(size, np.uint8), cv2.CV_16S, 1, 0)
    near(vi.convertScaleAbs(s16, alpha=alpha, beta=beta), cv2.convertScaleAbs(s16, alpha=alpha, beta=beta), 1.0, 0.05)


def test_convertScaleAbs_seed_notes_exact():
    img = make((401, 333, 3), np.uint8)
    same(vi.convertScaleAbs(img, alpha=2.5, beta=10), cv2.convertScaleAbs(img, alpha=2.5, beta=10))
    same(vi.convertScaleAbs(cv2.Sobel(img, cv2.CV_16S, 1, 0)), cv2.convertScaleAbs(cv2.Sobel(img, cv2.CV_16S, 1, 0)))


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("block,ksize,k", [(2, 3, 0.04), (3, 5, 0.06), (5, 1, 0.04)])
def test_cornerHarris_and_minEigen(block, ksize, k, size):
    src = make(size, np.uint8, seed=9)
    close(vi.cornerHarris(src, block, ksize, k), cv2.cornerHarris(src, block, ksize, k), 1e-3)
    close(vi.cornerMinEigenVal(src, block, ksize=ksize), cv2.cornerMinEigenVal(src, block, ksize=ksize), 1e-4)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_goodFeaturesToTrack(size):
    src = make(size, np.uint8, seed=11)
    got = vi.goodFeaturesToTrack(src, 50, 0.01, 3.0)
    want = cv2.goodFeaturesToTrack(src, 50, 0.01, 3.0)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    g = {tuple(p) for p in got.reshape(-1, 2).tolist()}
    found = sum(tuple(p) in g for p in want.reshape(-1, 2).tolist())
    assert found >= 0.9 * len(want)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("cn", [1, 3])
def test_histograms_and_lut(cn, size):
    src = make(shape_of(size, cn), np.uint8)
    for c in range(cn):
        same(vi.calcHist([src], [c], None, [256], [0, 256]), cv2.calcHist([src], [c], None, [256], [0, 256]))
    lut = (255 - np.arange(256) // 2).astype(np.uint8)
    same(vi.LUT(src, lut), cv2.LUT(src, lut))
    if cn == 1:
        same(vi.equalizeHist(src), cv2.equalizeHist(src))


# ------------------------------------------------------------------------------------------
# segmentation

@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
@pytest.mark.parametrize("connectivity", [4, 8])
def test_connectedComponents(connectivity, size):
    _, b = cv2.threshold(make(size, np.uint8, seed=13), 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    n, lab = vi.connectedComponents(b, connectivity=connectivity)
    wn, wlab = cv2.connectedComponents(b, connectivity=connectivity)
    assert n == wn
    same(lab, wlab)
    n, lab, st, cen = vi.connectedComponentsWithStats(b, connectivity=connectivity)
    wn, wlab, wst, wcen = cv2.connectedComponentsWithStats(b, connectivity=connectivity)
    assert n == wn
    same(lab, wlab)
    same(st, wst)
    assert cen.dtype == wcen.dtype and cen.shape == wcen.shape
    np.testing.assert_allclose(cen[1:], wcen[1:], rtol=1e-9)  # golden: centroids 1e-9, background skipped


def blobs(n_per, dims, k, seed):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 255, (k, dims))
    pts = np.concatenate([c + rng.normal(0, 12, (n_per, dims)) for c in centres])
    return np.round(pts).astype(np.float32)


@pytest.mark.parametrize("dims,k", [(1, 2), (3, 3), (3, 5), (2, 4)])
def test_kmeans_initial_labels_equal_cv2(dims, k):
    data = blobs(200, dims, k, seed=dims * 10 + k)
    rng = np.random.default_rng(1)
    # The true labels with 30 % replaced at random: no cluster empties on the way (with empties
    # cv2 and imgproc differ, see the module docstring).
    init = np.repeat(np.arange(k), 200)[:, None].astype(np.int32)
    flip = rng.random(len(init)) < 0.3
    init[flip, 0] = rng.integers(0, k, flip.sum())
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-4)
    c, lab, cen = vi.kmeans(data, k, init.copy(), crit, 1, vi.KMEANS_USE_INITIAL_LABELS)
    wc, wlab, wcen = cv2.kmeans(data, k, init.copy(), crit, 1, cv2.KMEANS_USE_INITIAL_LABELS)
    assert lab.dtype == wlab.dtype == np.int32 and lab.shape == wlab.shape == (len(data), 1)
    assert cen.dtype == wcen.dtype == np.float32 and cen.shape == wcen.shape == (k, dims)
    same(lab, wlab)
    np.testing.assert_allclose(cen, wcen, rtol=1e-5)
    assert abs(c - wc) <= 1e-5 * wc


@pytest.mark.parametrize("flags", ["KMEANS_PP_CENTERS", "KMEANS_RANDOM_CENTERS"])
@pytest.mark.parametrize("dims,k", [(3, 3), (3, 4)])
def test_kmeans_compactness_within_2pct(flags, dims, k):
    # The notes' use: colour quantisation of an image's pixels.
    data = make((61, 47, 3), np.uint8, seed=k).reshape(-1, 3).astype(np.float32)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 0.01)
    c, lab, cen = vi.kmeans(data, k, None, crit, 5, getattr(vi, flags))
    cv2.setRNGSeed(0)
    wc, wlab, wcen = cv2.kmeans(data, k, None, crit, 5, getattr(cv2, flags))
    assert lab.shape == wlab.shape and cen.shape == wcen.shape and lab.dtype == wlab.dtype
    assert c <= wc * 1.02
    # The compactness is what the labels and centres say.
    assert abs(c - ((data - cen[lab[:, 0]]) ** 2).sum()) <= 1e-4 * c


# ------------------------------------------------------------------------------------------
# SIFT (criteria of crates/imgproc/tests/it/sift.rs, against cv2 run here)

def _load(name):
    return cv2.imread(os.path.join(SIFT_DIR, name), cv2.IMREAD_GRAYSCALE)


def _ratio_matches(q, t, ratio):
    d = ((q[:, None, :] - t[None, :, :]) ** 2).sum(-1)
    order = np.argsort(d, axis=1)[:, :2]
    out = []
    for i, (a, b) in enumerate(order):
        if d[i, a] < (ratio ** 2) * d[i, b]:
            out.append((i, a))
    return out


def _correct(kq, kt, matches, m, tol):
    ok = 0
    for qi, ti in matches:
        x, y = kq[qi].pt
        px, py = m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5]
        tx, ty = kt[ti].pt
        ok += (px - tx) ** 2 + (py - ty) ** 2 <= tol * tol
    return ok


@pytest.mark.skipif(not os.path.isdir(SIFT_DIR), reason="SIFT fixture not in this checkout")
def test_sift_against_cv2():
    meta = json.load(open(os.path.join(SIFT_DIR, "sift.json")))
    base = _load("base.png")
    ours, theirs = vi.SIFT_create(), cv2.SIFT_create()
    kq, dq = ours.detectAndCompute(base, None)
    wkq, wdq = theirs.detectAndCompute(base, None)
    assert dq.dtype == wdq.dtype == np.float32 and dq.shape[1] == 128 and dq.shape[0] == len(kq)
    assert 0.8 * len(wkq) < len(kq) < 1.2 * len(wkq)
    strongest = sorted(wkq, key=lambda k: -k.response)[:10]
    for w in strongest:
        assert any(abs(k.pt[0] - w.pt[0]) < 0.05 and abs(k.pt[1] - w.pt[1]) < 0.05
                   and abs(k.size / w.size - 1) < 0.01
                   and abs((k.angle - w.angle + 540) % 360 - 180) < 1.0 and k.octave == w.octave for k in kq), w
    for case in meta["cases"]:
        img = _load(case["image"])
        kt, dt = ours.detectAndCompute(img, None)
        wkt, wdt = theirs.detectAndCompute(img, None)
        ok = _correct(kq, kt, _ratio_matches(dq, dt, meta["ratio"]), case["m"], meta["tol"])
        want = _correct(wkq, wkt, _ratio_matches(wdq, wdt, meta["ratio"]), case["m"], meta["tol"])
        assert ok >= 0.9 * want, (case["image"], ok, want)
    # detect() gives the same keypoints; colour input is taken as BGR as cv2 does.
    assert len(ours.detect(base)) == len(kq)
    bgr = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR)
    assert len(ours.detect(bgr)) == len(theirs.detect(bgr))


def test_sift_flat_image_has_no_descriptors():
    kp, d = vi.SIFT_create().detectAndCompute(np.full((64, 64), 7, np.uint8), None)
    wkp, wd = cv2.SIFT_create().detectAndCompute(np.full((64, 64), 7, np.uint8), None)
    assert len(kp) == len(wkp) == 0
    assert d.shape == wd.shape == (0, 128) and d.dtype == wd.dtype


# ------------------------------------------------------------------------------------------
# array layouts: non-contiguous, read-only, big-endian, H×W×1

def layouts(a):
    nc = np.repeat(a, 2, axis=1)[:, ::2]  # a strided view
    assert not nc.flags.c_contiguous
    ro = a.copy()
    ro.setflags(write=False)
    out = {"noncontig": nc, "readonly": ro, "fortran": np.asfortranarray(a)}
    if a.dtype.itemsize > 1:
        out["bigendian"] = a.astype(a.dtype.newbyteorder(">"))
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_layouts(dtype):
    a = make((37, 53, 3), dtype)
    want_blur = vi.GaussianBlur(a, (5, 5), 0)
    want_res = cv2.resize(a, (20, 30), interpolation=cv2.INTER_AREA)
    for name, v in layouts(a).items():
        same(vi.GaussianBlur(v, (5, 5), 0), want_blur)  # same as from the contiguous array
        compare(vi.resize(v, (20, 30), interpolation=vi.INTER_AREA), want_res, dtype)
        assert v.shape == a.shape, name  # inputs untouched
    g = make((37, 53), np.uint8)
    same(vi.threshold(g[:, :, None], 100, 255, 0)[1], cv2.threshold(g[:, :, None], 100, 255, 0)[1])
    same(vi.medianBlur(g[::-1], 3), cv2.medianBlur(np.ascontiguousarray(g[::-1]), 3))


def test_results_are_new_writable_arrays():
    a = make((37, 53), np.uint8)
    r = vi.blur(a, (3, 3))
    assert r.flags.writeable and r.flags.c_contiguous and r.flags.owndata or r.base is not a


def test_threads_share_the_module():
    a = make((401, 333, 3), np.uint8)
    want = cv2.GaussianBlur(a, (7, 7), 0)
    errors = []

    def work():
        try:
            for _ in range(3):
                same(vi.GaussianBlur(a, (7, 7), 0), want)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


# ------------------------------------------------------------------------------------------
# errors: ValueError naming the argument

U8 = np.zeros((8, 9), np.uint8)
RGB = np.zeros((8, 9, 3), np.uint8)

ERRORS = [
    (lambda: vi.cvtColor(RGB.astype(np.int64), vi.COLOR_RGB2GRAY), "src"),
    (lambda: vi.cvtColor(RGB, 999), "code"),
    (lambda: vi.cvtColor(U8, vi.COLOR_RGB2GRAY), "src"),
    (lambda: vi.cvtColor(RGB.astype(np.uint16), vi.COLOR_RGB2Lab), "src"),
    (lambda: vi.cvtColor(RGB, vi.COLOR_RGB2GRAY, dstCn=3), "dstCn"),
    (lambda: vi.cvtColor(np.zeros((8, 9, 5), np.uint8), vi.COLOR_RGB2GRAY), "src"),
    (lambda: vi.cvtColor(np.zeros((2, 8, 9, 3), np.uint8), vi.COLOR_RGB2GRAY), "src"),
    (lambda: vi.cvtColor(np.zeros((0, 9, 3), np.uint8), vi.COLOR_RGB2GRAY), "src"),
    (lambda: vi.threshold(U8, 0, 255, 9 | 16), "type"),
    (lambda: vi.threshold(U8, 0, 255, 7), "type"),
    (lambda: vi.threshold(U8.astype(np.float32), 0, 255, vi.THRESH_OTSU), "src"),
    (lambda: vi.threshold(RGB, 0, 255, vi.THRESH_OTSU), "src"),
    (lambda: vi.threshold(U8.astype(np.float64), 0, 255, 0), "src"),
    (lambda: vi.adaptiveThreshold(U8, 255, 2, 0, 3, 0), "adaptiveMethod"),
    (lambda: vi.adaptiveThreshold(U8, 255, 0, 2, 3, 0), "thresholdType"),
    (lambda: vi.adaptiveThreshold(U8, 255, 0, 0, 4, 0), "blockSize"),
    (lambda: vi.adaptiveThreshold(RGB, 255, 0, 0, 3, 0), "src"),
    (lambda: vi.GaussianBlur(U8, (4, 4), 0), "ksize"),
    (lambda: vi.GaussianBlur(U8, (3, 3), 0, borderType=3), "borderType"),
    (lambda: vi.GaussianBlur(U8, (3, 3), 0, borderType=99), "borderType"),
    (lambda: vi.GaussianBlur(U8, 3, 0), "ksize"),
    (lambda: vi.blur(U8, (0, 3)), "ksize"),
    (lambda: vi.blur(U8, (3, 3), anchor=(0, 0)), "anchor"),
    (lambda: vi.blur(U8, (3, 3), np.zeros_like(U8)), "dst"),
    (lambda: vi.boxFilter(U8, vi.CV_32F, (3, 3)), "ddepth"),
    (lambda: vi.medianBlur(U8, 4), "ksize"),
    (lambda: vi.medianBlur(U8.astype(np.float32), 7), "ksize"),
    (lambda: vi.filter2D(U8, vi.CV_16S, np.ones((3, 3))), "ddepth"),
    (lambda: vi.filter2D(U8, -1, np.ones((2, 2, 2))), "kernel"),
    (lambda: vi.getGaussianKernel(4, 1.0), "ksize"),
    (lambda: vi.getGaussianKernel(3, 1.0, vi.CV_8U), "ktype"),
    (lambda: vi.resize(U8, (5, 5), interpolation=4), "interpolation"),
    (lambda: vi.resize(U8, (0, 5)), "dsize"),
    (lambda: vi.resize(U8, None), "fx"),
    (lambda: vi.warpAffine(U8, np.eye(3), (9, 8)), "M"),
    (lambda: vi.warpAffine(U8, np.eye(2, 3), (9, 8), flags=vi.INTER_LINEAR | 16), "flags"),
    (lambda: vi.warpAffine(U8, np.eye(2, 3), (9, 8), borderMode=2), "borderMode"),
    (lambda: vi.warpAffine(RGB, np.eye(2, 3), (9, 8), borderValue=(255, 0, 0)), "borderValue"),
    (lambda: vi.getStructuringElement(5, (3, 3)), "shape"),
    (lambda: vi.getStructuringElement(0, (0, 3)), "ksize"),
    (lambda: vi.morphologyEx(U8, 7, None), "op"),
    (lambda: vi.erode(U8, None, iterations=-1), "iterations"),
    (lambda: vi.erode(U8, None, borderType=1), "borderType"),
    (lambda: vi.dilate(U8, None, borderValue=3), "borderValue"),
    (lambda: vi.Sobel(U8, vi.CV_16S, 0, 0), "dx"),
    (lambda: vi.Sobel(U8, vi.CV_16S, 1, 0, ksize=4), "ksize"),
    (lambda: vi.Sobel(U8, vi.CV_16S, 1, 0, scale=2), "ddepth"),
    (lambda: vi.Sobel(U8.astype(np.uint16), vi.CV_32F, 1, 0), "src"),
    (lambda: vi.Scharr(U8, vi.CV_16S, 1, 1), "dx"),
    (lambda: vi.Laplacian(U8, vi.CV_32F), "ddepth"),
    (lambda: vi.Canny(RGB, 50, 100), "image"),
    (lambda: vi.Canny(U8, 50, 100, apertureSize=9), "apertureSize"),
    (lambda: vi.Canny(U8, 50, 100, apertureSize=7), "apertureSize"),
    (lambda: vi.convertScaleAbs(U8.astype(np.float64)), "src"),
    (lambda: vi.cornerHarris(U8, 0, 3, 0.04), "blockSize"),
    (lambda: vi.cornerHarris(U8.astype(np.float32), 2, 3, 0.04), "src"),
    (lambda: vi.goodFeaturesToTrack(U8, 10, 0.01, 1, mask=U8), "mask"),
    (lambda: vi.SIFT_create(nfeatures=100), "nfeatures"),
    (lambda: vi.SIFT_create().detectAndCompute(U8.astype(np.float32), None), "image"),
    (lambda: vi.SIFT_create().detect(U8, U8), "mask"),
    (lambda: vi.calcHist([U8], [0], None, [64], [0, 256]), "histSize"),
    (lambda: vi.calcHist([U8], [1], None, [256], [0, 256]), "channels"),
    (lambda: vi.calcHist([U8, U8], [0], None, [256], [0, 256]), "images"),
    (lambda: vi.equalizeHist(RGB), "src"),
    (lambda: vi.LUT(U8, np.arange(255, dtype=np.uint8)), "lut"),
    (lambda: vi.LUT(U8, np.arange(256, dtype=np.int32)), "lut"),
    (lambda: vi.connectedComponents(U8, connectivity=6), "connectivity"),
    (lambda: vi.connectedComponents(U8, ltype=vi.CV_16U), "ltype"),
    (lambda: vi.connectedComponentsWithStats(U8.astype(np.float32)), "image"),
    (lambda: vi.kmeans(np.zeros((10, 2), np.float64), 2, None, (3, 10, 1.0), 1, 2), "data"),
    (lambda: vi.kmeans(np.zeros((10, 2), np.float32), 11, None, (3, 10, 1.0), 1, 2), "K"),
    (lambda: vi.kmeans(np.zeros((10, 2), np.float32), 2, None, (3, 10, 1.0), 1, 8), "flags"),
    (lambda: vi.kmeans(np.zeros((10, 2), np.float32), 2, None, (0, 10, 1.0), 1, 2), "criteria"),
    (lambda: vi.kmeans(np.zeros((10, 2), np.float32), 2, None, (3, 10, 1.0), 1, 1), "bestLabels"),
    (lambda: vi.kmeans(np.zeros((10, 2), np.float32), 2, np.full((10, 1), 5, np.int32), (3, 10, 1.0), 1, 1),
     "bestLabels"),
]


@pytest.mark.parametrize("call,arg", ERRORS, ids=[f"{i}-{a}" for i, (_, a) in enumerate(ERRORS)])
def test_value_errors_name_the_argument(call, arg):
    with pytest.raises(ValueError, match=rf"\b{arg}\b"):
        call()


def test_non_array_is_a_type_error():
    with pytest.raises(TypeError, match="src"):
        vi.blur([[1, 2], [3, 4]], (3, 3))


def test_nan_is_refused():
    a = np.zeros((8, 9), np.float32)
    a[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vi.GaussianBlur(a, (3, 3), 0)


def test_kernel_limit_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="limit"):
        vi.blur(U8, (1001, 3))


def test_seed_notes_snippets():
    """The cv2 lines of the project's seed notes, with vlsm.imgproc swapped in."""
    img = make((401, 333, 3), np.uint8, seed=21)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    for m in (vi, cv2):
        assert m.COLOR_BGR2GRAY == cv2.COLOR_BGR2GRAY
    same(vi.convertScaleAbs(img, alpha=2.5, beta=10), cv2.convertScaleAbs(img, alpha=2.5, beta=10))
    _, a = vi.threshold(gray, 127, 255, vi.THRESH_BINARY)
    _, b = cv2.threshold(gray, 127, 255, cv2.THRESH_BINARY)
    same(a, b)
    same(vi.resize(img, (166, 200), interpolation=vi.INTER_AREA), cv2.resize(img, (166, 200), interpolation=cv2.INTER_AREA))
    kernel = np.ones((5, 5), np.float32) / 25
    same(vi.filter2D(img, -1, kernel), cv2.filter2D(img, -1, kernel))
    gk, wgk = vi.getGaussianKernel(ksize=3, sigma=10), cv2.getGaussianKernel(ksize=3, sigma=10)
    np.testing.assert_allclose(np.dot(gk, gk.T), np.dot(wgk, wgk.T), rtol=1e-12)
    k8 = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
    same(vi.filter2D(gray, -1, k8), cv2.filter2D(gray, -1, k8))
    same(vi.Canny(gray, 100, 200), cv2.Canny(gray, 100, 200))
    m = vi.getRotationMatrix2D((166, 200), 45, 1)
    check_warp(vi.warpAffine(gray, m, (333, 401)), cv2.warpAffine(gray, m, (333, 401)), 1, np.uint8)
