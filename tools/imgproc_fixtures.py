#!/usr/bin/env python3
"""Write golden fixtures for crates/imgproc from opencv-python (dev-only).

Usage: python tools/imgproc_fixtures.py [--data /work/shared/data] [--out tests/fixtures/imgproc]
Written with opencv-python 5.1.0.95 (tools/requirements.txt) on an x86-64 CPU with AVX-512.

Two places where cv2's output depends on more than OpenCV's own code:
- 8-bit warpAffine (nearest, bilinear; 1, 3, 4 channels): the opencv-python 5.1 wheels hand it to
  Intel IPP (iwiWarpAffine, through the IPP HAL), whose coordinate rounding is not OpenCV's (it
  moves nearest picks at .5 ties and bilinear values by 1). Those cases are written with
  cv2.ipp.setUseIPP(False), i.e. OpenCV's own kernels; params["ipp_differs"] counts the values
  the IPP path gives differently.
- 8-bit HSV->RGB: OpenCV's vector loop truncates and its scalar tail rounds, so the result
  depends on the SIMD width it dispatches to (32-pixel blocks with AVX2, 64 with AVX-512).
  Both are stored: "output" from this process, params["output_avx2"] from a child process run
  with OPENCV_CPU_DISABLE naming the AVX-512 features.

Inputs are stored as .npy (RGB channel order for colour images); every case is one JSON line in
cases.jsonl: {"name", "op", "input", "params", "output"} where output is an .npy file (or a scalar in
params["expect_*"]). The Rust tests read these files only; Python is never needed to run them.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np

cv2.setNumThreads(1)

ap = argparse.ArgumentParser()
ap.add_argument("--data", default="/work/shared/data")
ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "imgproc"))
args = ap.parse_args()
OUT = os.path.abspath(args.out)
os.makedirs(OUT, exist_ok=True)
for f in os.listdir(OUT):
    if f.endswith(".npy") or f.endswith(".jsonl") or f.endswith(".gz") or f.endswith(".json"):
        os.remove(os.path.join(OUT, f))

cases = []
inputs = {}


blob = bytearray()
arrays = {}


def save(name, arr):
    """Append an array to the single packed blob (one gzip file keeps the fixtures small)."""
    arr = np.ascontiguousarray(arr)
    arrays[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": len(blob)}
    blob.extend(arr.tobytes())


def add_input(name, arr):
    inputs[name] = arr
    save("in_" + name, arr)


def case(op, inp, params, out):
    name = f"{op}_{len(cases):04d}"
    entry = {"name": name, "op": op, "input": inp, "params": params}
    if out is not None:
        save(name, out)
        entry["output"] = name
    cases.append(entry)


# ---------------------------------------------------------------- inputs
kv = cv2.imread(os.path.join(args.data, "kvasir_polyp/images/cjyzul1qggwwj07216mhiv5sy.jpg"))
kv_rgb = cv2.cvtColor(kv, cv2.COLOR_BGR2RGB)
add_input("kv", kv_rgb[500:548, 900:964].copy())  # 64x48 crop around texture
add_input("kv2", kv_rgb[200:241, 300:353].copy())  # odd 53x41 crop
cl = cv2.imread(os.path.join(args.data, "clinicdb_polyp/images", sorted(os.listdir(os.path.join(args.data, "clinicdb_polyp/images")))[0]))
add_input("cl", cv2.cvtColor(cl, cv2.COLOR_BGR2RGB)[100:148, 120:184].copy())
rng = np.random.default_rng(7)
add_input("noise", rng.integers(0, 256, (29, 37, 3), dtype=np.uint8))
add_input("px1", np.array([[[200, 17, 90]]], dtype=np.uint8))
add_input("row", rng.integers(0, 256, (1, 9, 3), dtype=np.uint8))
add_input("col", rng.integers(0, 256, (9, 1, 3), dtype=np.uint8))
add_input("s35", rng.integers(0, 256, (3, 5, 3), dtype=np.uint8))
# blocky synthetic image with flat regions (ties for morphology, edges for canny)
syn = np.zeros((40, 50), np.uint8)
cv2.rectangle(syn, (5, 5), (20, 30), 200, -1)
cv2.circle(syn, (35, 20), 10, 90, -1)
syn[32:38, 25:45] = 255
add_input("syn", np.dstack([syn, 255 - syn, syn // 2]))
# every RGB corner and mid value for colour conversions
vals = np.array([0, 1, 2, 7, 31, 64, 100, 127, 128, 129, 200, 254, 255], np.uint8)
grid = np.array(np.meshgrid(vals, vals, vals, indexing="ij")).reshape(3, -1).T
add_input("cube", grid.reshape(13, 169, 3).copy())

AVX512 = "AVX512F,AVX512-COMMON,AVX512-SKX,AVX512-CLX,AVX512-CNL,AVX512-ICL"


def hsv2rgb_avx2(arrays):
    """cv2's 8-bit HSV->RGB of each array with the AVX-512 kernels disabled (a child process)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, *arrays)
        code = ("import sys, cv2, numpy as np; a = np.load(sys.argv[1]); "
                "np.savez(sys.argv[2], *[cv2.cvtColor(a[k], cv2.COLOR_HSV2RGB) for k in a.files])")
        env = dict(os.environ, OPENCV_CPU_DISABLE=AVX512)
        subprocess.run([sys.executable, "-c", code, src, dst], env=env, check=True)
        out = np.load(dst)
        return [out[f"arr_{i}"] for i in range(len(arrays))]


COLOR = ["kv", "kv2", "cl", "noise", "px1", "row", "col", "s35", "syn", "cube"]
GRAY = ["kv", "kv2", "cl", "noise", "px1", "row", "col", "s35", "syn"]


def gray(n):
    return cv2.cvtColor(inputs[n], cv2.COLOR_RGB2GRAY)


# ---------------------------------------------------------------- colour
for n in COLOR:
    im = inputs[n]
    case("cvt_color", n, {"code": "rgb2gray"}, cv2.cvtColor(im, cv2.COLOR_RGB2GRAY))
    case("cvt_color", n, {"code": "bgr2gray"}, cv2.cvtColor(im, cv2.COLOR_BGR2GRAY))
    case("cvt_color", n, {"code": "rgb2lab"}, cv2.cvtColor(im, cv2.COLOR_RGB2Lab))
    case("cvt_color", n, {"code": "bgr2lab"}, cv2.cvtColor(im, cv2.COLOR_BGR2Lab))
    case("cvt_color", n, {"code": "lab2rgb"}, cv2.cvtColor(im, cv2.COLOR_Lab2RGB))
    case("cvt_color", n, {"code": "rgb2hsv"}, cv2.cvtColor(im, cv2.COLOR_RGB2HSV))
    case("cvt_color", n, {"code": "bgr2hsv"}, cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
    avx2_name = f"hsv2rgb_avx2_{n}"
    save(avx2_name, hsv2rgb_avx2([im])[0])
    case("cvt_color", n, {"code": "hsv2rgb", "output_avx2": avx2_name}, cv2.cvtColor(im, cv2.COLOR_HSV2RGB))
    f = im.astype(np.float32) / 255.0
    case("cvt_color_f32", n, {"code": "rgb2lab"}, cv2.cvtColor(f, cv2.COLOR_RGB2Lab))
    case("cvt_color_f32", n, {"code": "rgb2hsv"}, cv2.cvtColor(f, cv2.COLOR_RGB2HSV))
    case("cvt_color_f32", n, {"code": "rgb2gray"}, cv2.cvtColor(f, cv2.COLOR_RGB2GRAY))
    g = gray(n)
    case("cvt_color", n, {"code": "gray2rgb", "from_gray": True}, cv2.cvtColor(g, cv2.COLOR_GRAY2RGB))

# ---------------------------------------------------------------- threshold
TT = {"binary": cv2.THRESH_BINARY, "binary_inv": cv2.THRESH_BINARY_INV, "trunc": cv2.THRESH_TRUNC,
      "tozero": cv2.THRESH_TOZERO, "tozero_inv": cv2.THRESH_TOZERO_INV}
for n in GRAY:
    g = gray(n)
    for t, code in TT.items():
        for v in (0.0, 100.0, 127.5, 254.0, 255.0, -1.0) if n == "kv" else (100.0, 127.5):
            r, o = cv2.threshold(g, v, 200, code)
            case("threshold", n, {"thresh": v, "maxval": 200, "type": t, "expect_value": r}, o)
        for auto, flag in (("otsu", cv2.THRESH_OTSU), ("triangle", cv2.THRESH_TRIANGLE)):
            if t in ("binary", "binary_inv", "tozero"):
                r, o = cv2.threshold(g, 0, 255, code | flag)
                case("threshold", n, {"thresh": 0, "maxval": 255, "type": t, "auto": auto, "expect_value": r}, o)
    for m, mc in (("mean", cv2.ADAPTIVE_THRESH_MEAN_C), ("gaussian", cv2.ADAPTIVE_THRESH_GAUSSIAN_C)):
        for t, tc in (("binary", cv2.THRESH_BINARY), ("binary_inv", cv2.THRESH_BINARY_INV)):
            for b, c in ((3, 2.0), (11, -3.5), (5, 0.0)):
                case("adaptive", n, {"method": m, "type": t, "block": b, "c": c, "maxval": 255},
                     cv2.adaptiveThreshold(g, 255, mc, tc, b, c))
# float threshold
f = gray("kv").astype(np.float32) / 3.0
add_input("kvf", f)
for t, code in TT.items():
    case("threshold_f32", "kvf", {"thresh": 40.0, "maxval": 77.0, "type": t}, cv2.threshold(f, 40.0, 77.0, code)[1])

# ---------------------------------------------------------------- geometry
INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}
# 4 channels take their own kernels in OpenCV's resize and warpAffine (own generator: the shared
# one's later draws stay as they were)
add_input("q4", np.random.default_rng(11).integers(0, 256, (11, 13, 4), dtype=np.uint8))
for n in ["kv", "kv2", "noise", "px1", "row", "col", "s35", "q4"]:
    im = inputs[n]
    h, w = im.shape[:2]
    sizes = [(max(1, w // 2), max(1, h // 2)), (max(1, w // 3), max(1, h // 3)), (w * 2, h * 2),
             (w * 3 // 2 + 1, h * 5 // 3 + 1), (max(1, w * 2 // 3), max(1, h * 3 // 4)), (7, 5), (w + 1, max(1, h - 1))]
    for (dw, dh) in sizes:
        for k, code in INTERP.items():
            case("resize", n, {"width": dw, "height": dh, "interp": k}, cv2.resize(im, (dw, dh), interpolation=code))
            if n == "kv":
                g = gray(n)
                case("resize", n, {"width": dw, "height": dh, "interp": k, "gray": True},
                     cv2.resize(g, (dw, dh), interpolation=code))
    fim = im.astype(np.float32) / 7.0
    for k, code in INTERP.items():
        case("resize_f32", n, {"width": w * 2 // 3 + 1, "height": h * 3 // 2, "interp": k},
             cv2.resize(fim, (w * 2 // 3 + 1, h * 3 // 2), interpolation=code))



def warp_native(im, M, size, ic, bc):
    """warpAffine with OpenCV's own kernels (IPP off), and how many values the IPP path changes."""
    cv2.ipp.setUseIPP(False)
    o = cv2.warpAffine(im, M, size, flags=ic, borderMode=bc, borderValue=(0, 0, 0))
    cv2.ipp.setUseIPP(True)
    ipp = cv2.warpAffine(im, M, size, flags=ic, borderMode=bc, borderValue=(0, 0, 0))
    return o, int((o != ipp).sum())


for n in ["kv", "kv2", "noise", "s35", "px1", "q4"]:
    im = inputs[n]
    h, w = im.shape[:2]
    for angle, scale in ((30.0, 1.0), (45.0, 0.8), (-17.5, 1.3), (90.0, 1.0)):
        M = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, scale)
        case("rotation_matrix", n, {"cx": (w - 1) / 2.0, "cy": (h - 1) / 2.0, "angle": angle, "scale": scale}, M)
        for interp, ic in (("linear", cv2.INTER_LINEAR), ("nearest", cv2.INTER_NEAREST), ("cubic", cv2.INTER_CUBIC)):
            for border, bc in (("constant", cv2.BORDER_CONSTANT), ("replicate", cv2.BORDER_REPLICATE)):
                o, ipp = warp_native(im, M, (w, h), ic, bc)
                case("warp_affine", n, {"m": M.flatten().tolist(), "width": w, "height": h, "interp": interp,
                                        "border": border, "ipp_differs": ipp}, o)
                if n == "kv" and interp == "linear":
                    o, ipp = warp_native(gray(n), M, (w, h), ic, bc)
                    case("warp_affine", n, {"m": M.flatten().tolist(), "width": w, "height": h, "interp": interp,
                                            "border": border, "gray": True, "ipp_differs": ipp}, o)

# ---------------------------------------------------------------- filters
BORDERS = {"reflect101": cv2.BORDER_REFLECT_101, "reflect": cv2.BORDER_REFLECT, "replicate": cv2.BORDER_REPLICATE,
           "constant": cv2.BORDER_CONSTANT, "wrap": cv2.BORDER_WRAP}
for ks in (3, 5, 7, 9, 15, 21, 31):
    for sigma in (0.0, 1.0, 2.5):
        case("gaussian_kernel", "px1", {"ksize": ks, "sigma": sigma}, cv2.getGaussianKernel(ks, sigma, cv2.CV_64F))
for n in ["kv", "kv2", "noise", "px1", "row", "col", "s35", "syn"]:
    im = inputs[n]
    g = gray(n)
    for src, tag in ((im, "rgb"), (g, "gray")):
        for kw, kh in ((3, 3), (5, 5), (3, 5), (7, 1), (11, 11)):
            for b in (("reflect101", "replicate", "constant", "reflect") if (kw, kh) == (3, 5) else ("reflect101",)):
                if b == "wrap" and (kw > src.shape[1] or kh > src.shape[0]):
                    continue
                case("blur", n, {"kw": kw, "kh": kh, "border": b, "src": tag},
                     cv2.blur(src, (kw, kh), borderType=BORDERS[b]))
        for ks, sx, sy in ((3, 0.0, 0.0), (5, 0.0, 0.0), (7, 0.0, 0.0), (5, 1.5, 0.0), (9, 2.0, 0.0), (0, 3.0, 0.0),
                           (3, 1.0, 2.0), (15, 0.0, 0.0), (11, 0.8, 0.0)):
            kk = (ks, ks) if sy == 0.0 else (3, 7)
            for b in (("reflect101", "replicate", "constant", "reflect") if ks == 5 and sx == 0.0 else ("reflect101",)):
                case("gaussian", n, {"kw": kk[0], "kh": kk[1], "sx": sx, "sy": sy, "border": b, "src": tag},
                     cv2.GaussianBlur(src, kk, sx, sigmaY=sy, borderType=BORDERS[b]))
        for ks in (3, 5, 7, 9):
            case("median", n, {"ksize": ks, "src": tag}, cv2.medianBlur(src, ks))
        sharpen = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32)
        case("filter_2d", n, {"kernel": sharpen.flatten().tolist(), "kw": 3, "kh": 3, "src": tag},
             cv2.filter2D(src, -1, sharpen))
        k2 = (np.arange(15, dtype=np.float32).reshape(3, 5) - 6) / 11.0
        case("filter_2d", n, {"kernel": k2.flatten().tolist(), "kw": 5, "kh": 3, "src": tag},
             cv2.filter2D(src, -1, k2))
    for dx, dy, ks in ((1, 0, 3), (0, 1, 3), (1, 1, 3), (1, 0, 5), (0, 2, 5), (1, 0, 1), (0, 1, 1), (2, 0, 7)):
        o = cv2.Sobel(g, cv2.CV_16S, dx, dy, ksize=ks)
        case("sobel", n, {"dx": dx, "dy": dy, "ksize": ks}, o)
        case("sobel_abs", n, {"dx": dx, "dy": dy, "ksize": ks}, cv2.convertScaleAbs(o))
    case("sobel_f32", n, {"dx": 1, "dy": 0, "ksize": 3, "scale": 0.25},
         cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, scale=0.25))
    for dx, dy in ((1, 0), (0, 1)):
        case("scharr", n, {"dx": dx, "dy": dy}, cv2.Scharr(g, cv2.CV_16S, dx, dy))
    for ks in (1, 3, 5):
        case("laplacian", n, {"ksize": ks}, cv2.Laplacian(g, cv2.CV_16S, ksize=ks))

# ---------------------------------------------------------------- morphology
SHAPES = {"rect": cv2.MORPH_RECT, "ellipse": cv2.MORPH_ELLIPSE, "cross": cv2.MORPH_CROSS}
for s, sc in SHAPES.items():
    for kw, kh in ((3, 3), (5, 5), (7, 5), (9, 9), (4, 6), (15, 15), (1, 3)):
        case("structuring_element", "px1", {"shape": s, "kw": kw, "kh": kh}, cv2.getStructuringElement(sc, (kw, kh)))
MOPS = {"erode": cv2.MORPH_ERODE, "dilate": cv2.MORPH_DILATE, "open": cv2.MORPH_OPEN, "close": cv2.MORPH_CLOSE,
        "gradient": cv2.MORPH_GRADIENT, "tophat": cv2.MORPH_TOPHAT, "blackhat": cv2.MORPH_BLACKHAT}
for n in ["kv", "kv2", "noise", "px1", "row", "s35", "syn"]:
    im = inputs[n]
    g = gray(n)
    for src, tag in ((g, "gray"), (im, "rgb")):
        for s, sc in SHAPES.items():
            for ks in (3, 5, 9) if tag == "gray" else (5,):
                k = cv2.getStructuringElement(sc, (ks, ks))
                for op, oc in MOPS.items():
                    case("morph", n, {"op": op, "shape": s, "ksize": ks, "src": tag, "iterations": 1},
                         cv2.morphologyEx(src, oc, k))
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
    case("morph", n, {"op": "erode", "shape": "rect", "ksize": 3, "src": "gray", "iterations": 2},
         cv2.erode(g, k, iterations=2))
    case("morph", n, {"op": "dilate", "shape": "ellipse", "ksize": 5, "src": "gray", "iterations": 3},
         cv2.dilate(g, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)), iterations=3))

# ---------------------------------------------------------------- edges, corners
for n in ["kv", "kv2", "cl", "noise", "syn", "s35", "px1"]:
    g = gray(n)
    for lo, hi, l2 in ((50, 150, False), (20, 60, False), (50, 150, True), (10, 30, True), (100, 101, False)):
        case("canny", n, {"low": lo, "high": hi, "l2": l2, "aperture": 3}, cv2.Canny(g, lo, hi, L2gradient=l2))
    case("canny", n, {"low": 100, "high": 300, "l2": False, "aperture": 5}, cv2.Canny(g, 100, 300, apertureSize=5))
    for bs, ks, k in ((2, 3, 0.04), (3, 3, 0.06), (5, 5, 0.04)):
        case("harris", n, {"block": bs, "ksize": ks, "k": k}, cv2.cornerHarris(g, bs, ks, k))
    case("min_eigen", n, {"block": 3, "ksize": 3}, cv2.cornerMinEigenVal(g, 3, ksize=3))
    pts = cv2.goodFeaturesToTrack(g, 50, 0.01, 3.0)
    case("good_features", n, {"max": 50, "quality": 0.01, "min_dist": 3.0},
         np.zeros((0, 2), np.float32) if pts is None else pts.reshape(-1, 2))

# ---------------------------------------------------------------- point ops, histograms
for n in GRAY:
    g = gray(n)
    case("equalize_hist", n, {}, cv2.equalizeHist(g))
    case("calc_hist", n, {}, cv2.calcHist([g], [0], None, [256], [0, 256]).astype(np.float32).reshape(-1))
    for a, b in ((1.5, 10.0), (-0.7, 3.2), (2.0, -100.0)):
        case("convert_scale_abs", n, {"alpha": a, "beta": b}, cv2.convertScaleAbs(inputs[n], alpha=a, beta=b))
    lut = (255 - np.arange(256) // 2).astype(np.uint8)
    case("lut", n, {"table": "inv_half"}, cv2.LUT(inputs[n], lut))

# ---------------------------------------------------------------- segmentation
for n in ["syn", "kv", "noise"]:
    g = gray(n)
    b = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[1]
    for conn in (4, 8):
        num, labels, stats, cents = cv2.connectedComponentsWithStats(b, connectivity=conn, ltype=cv2.CV_32S)
        case("components", n, {"connectivity": conn, "labels": f"cc_lab_{len(cases):04d}"}, stats.astype(np.int32))
        save(f"cc_lab_{len(cases)-1:04d}", labels.astype(np.int32))
        save(f"cc_cen_{len(cases)-1:04d}", cents.astype(np.float64))
for n in ["kv", "kv2", "cl"]:
    data = inputs[n].reshape(-1, 3).astype(np.float32)
    for k in (2, 4, 8):
        best = None
        for seed in range(3):
            cv2.setRNGSeed(seed)
            comp, _, _ = cv2.kmeans(data, k, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 0.01),
                                    3, cv2.KMEANS_PP_CENTERS)
            best = comp if best is None else min(best, comp)
        case("kmeans", n, {"k": k, "expect_inertia": float(best)}, None)

# ---------------------------------------------------------------- CLI, colour input
# `vlsm imgproc OP in.png out.png ARGS` on a colour PNG against cv2 on the same file (the ops are
# per channel, so BGR or RGB order does not matter). crates/vlsm-cli/tests/it/imgproc_cli.rs.
CLI = os.path.join(OUT, "cli")
os.makedirs(CLI, exist_ok=True)
for f in os.listdir(CLI):
    os.remove(os.path.join(CLI, f))
col = cv2.cvtColor(inputs["kv"], cv2.COLOR_RGB2BGR)
col[::7, ::5] = (255, 0, 40)  # features that differ per channel
cv2.imwrite(os.path.join(CLI, "in.png"), col)
el5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
r3 = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
cli_cases = {
    "erode": (["--ksize", "3"], cv2.erode(col, r3)),
    "dilate": (["--ksize", "5", "--shape", "ellipse"], cv2.dilate(col, el5)),
    "open": (["--ksize", "5", "--shape", "ellipse"], cv2.morphologyEx(col, cv2.MORPH_OPEN, el5)),
    "close": (["--ksize", "3"], cv2.morphologyEx(col, cv2.MORPH_CLOSE, r3)),
    "gradient": (["--ksize", "5", "--shape", "ellipse"], cv2.morphologyEx(col, cv2.MORPH_GRADIENT, el5)),
    "blur": (["--ksize", "5"], cv2.blur(col, (5, 5))),
    "gaussian": (["--ksize", "5"], cv2.GaussianBlur(col, (5, 5), 0)),
    "median": (["--ksize", "3"], cv2.medianBlur(col, 3)),
    "sobel": (["--dx", "1", "--dy", "0", "--ksize", "3"], cv2.convertScaleAbs(cv2.Sobel(col, cv2.CV_16S, 1, 0, ksize=3))),
    "threshold": (["--value", "127", "--type", "binary"], cv2.threshold(col, 127, 255, cv2.THRESH_BINARY)[1]),
}
for op, (cli_args, out) in cli_cases.items():
    cv2.imwrite(os.path.join(CLI, op + ".png"), out)
with open(os.path.join(CLI, "cases.json"), "w") as fh:
    json.dump({op: a for op, (a, _) in cli_cases.items()}, fh, indent=1)

# ---------------------------------------------------------------- float Lab
# cv2's float RGB->Lab interpolates a 33^3 table: every grid point (so every table entry shows in
# the output), then random values between them and outside [0, 1] (clipped), as RGB and BGR.
# Canny with aperture 7 (OpenCV scales the 7x7 derivatives and the thresholds by 1/16), L1 and L2;
# the high thresholds reach past what unscaled derivatives could hold.
for n in ["kv", "kv2", "noise", "syn"]:
    g = gray(n)
    for lo, hi, l2 in ((1000, 3000, False), (2000, 6000, True), (30000, 60000, True), (300, 900, True)):
        case("canny", n, {"low": lo, "high": hi, "l2": l2, "aperture": 7},
             cv2.Canny(g, lo, hi, apertureSize=7, L2gradient=l2))

# The grid input is not stored (the test builds it): pixel (33 * r + g, b) is (r, g, b) / 32.
gv = np.arange(33, dtype=np.float32) / np.float32(32)
lab_grid = np.ascontiguousarray(np.array(np.meshgrid(gv, gv, gv, indexing="ij")).reshape(3, -1).T.reshape(33 * 33, 33, 3))
case("cvt_lab_f32_grid", "lab_grid", {"code": "rgb2lab"}, cv2.cvtColor(lab_grid, cv2.COLOR_RGB2Lab))
lab_rand = np.random.default_rng(21).uniform(-0.05, 1.05, (32, 37, 3)).astype(np.float32)
save("in_lab_rand", lab_rand)
case("cvt_lab_f32_grid", "lab_rand", {"code": "rgb2lab"}, cv2.cvtColor(lab_rand, cv2.COLOR_RGB2Lab))
case("cvt_lab_f32_grid", "lab_rand", {"code": "bgr2lab"}, cv2.cvtColor(lab_rand, cv2.COLOR_BGR2Lab))
lab_rand4 = np.random.default_rng(22).uniform(-0.05, 1.05, (9, 35, 4)).astype(np.float32)
save("in_lab_rand4", lab_rand4)
case("cvt_lab_f32_grid", "lab_rand4", {"code": "rgb2lab"}, cv2.cvtColor(lab_rand4, cv2.COLOR_RGB2Lab))
case("cvt_lab_f32_grid", "lab_rand4", {"code": "bgr2lab"}, cv2.cvtColor(lab_rand4, cv2.COLOR_BGR2Lab))

with open(os.path.join(OUT, "cases.jsonl"), "w") as fh:
    for c in cases:
        fh.write(json.dumps(c) + "\n")
with open(os.path.join(OUT, "arrays.json"), "w") as fh:
    json.dump(arrays, fh, indent=0)
with gzip.open(os.path.join(OUT, "arrays.bin.gz"), "wb", compresslevel=9) as fh:
    fh.write(bytes(blob))
total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
print(f"{len(cases)} cases, {total/1e6:.2f} MB in {OUT}; opencv {cv2.__version__}")
