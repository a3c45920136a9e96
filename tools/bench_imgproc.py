#!/usr/bin/env python3
"""Time OpenCV (2 threads) on the ops of imgproc::bench::OPS and print them next to the Rust
figures (dev-only).

Usage: python tools/bench_imgproc.py IMAGE [--reps 15] [--ops a,b] [--rust-json FILE | --rust-cmd "CMD"]
By default runs `cargo run --release -p imgproc --example bench -- IMAGE --json`; `--rust-cmd
"vlsm bench imgproc --image IMAGE --json"` times the CLI instead (same code). OpenCV: the version
tools/requirements.txt pins (5.1), 2 threads, IPP as the wheel ships it (on).
"""
import argparse
import json
import math
import os
import shlex
import subprocess
import time

import cv2
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("image")
ap.add_argument("--reps", type=int, default=15)
ap.add_argument("--rust-json")
ap.add_argument("--rust-cmd")
ap.add_argument("--ops", help="comma-separated subset of the ops")
args = ap.parse_args()
cv2.setNumThreads(2)

bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
h, w = rgb.shape[:2]
sc = (round(w * 0.7), round(h * 0.7))
M = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 30, 1.0)
rect5 = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
ell5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
# kmeans4_quarter: RGB pixels of the image at a quarter of each side (area), as float samples
quarter = cv2.resize(rgb, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA).reshape(-1, 3).astype(np.float32)
sharpen = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32)
rgb_f32 = rgb.astype(np.float32) / 255.0


def kmeans4():
    cv2.setRNGSeed(1)
    return cv2.kmeans(quarter, 4, None, (cv2.TERM_CRITERIA_MAX_ITER, 10, 0), 1, cv2.KMEANS_PP_CENTERS)


OPS = {
    "gray": lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
    "lab": lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab),
    "hsv": lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV),
    "otsu": lambda: cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU),
    "adaptive_mean11": lambda: cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 11, 2),
    "adaptive_gauss11": lambda: cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, 11, 2),
    "resize_nearest_half": lambda: cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST),
    "resize_linear_half": lambda: cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_LINEAR),
    "resize_linear_0.7": lambda: cv2.resize(rgb, sc, interpolation=cv2.INTER_LINEAR),
    "resize_cubic_0.7": lambda: cv2.resize(rgb, sc, interpolation=cv2.INTER_CUBIC),
    "resize_area_0.7": lambda: cv2.resize(rgb, sc, interpolation=cv2.INTER_AREA),
    "rotate30": lambda: cv2.warpAffine(rgb, M, (w, h)),
    "blur5": lambda: cv2.blur(rgb, (5, 5)),
    "gaussian5": lambda: cv2.GaussianBlur(rgb, (5, 5), 0),
    "gaussian_s2": lambda: cv2.GaussianBlur(rgb, (0, 0), 2.0),
    "median3": lambda: cv2.medianBlur(rgb, 3),
    "median5": lambda: cv2.medianBlur(rgb, 5),
    "erode5_rect": lambda: cv2.erode(gray, rect5),
    "dilate5_ellipse": lambda: cv2.dilate(gray, ell5),
    "open5_rect": lambda: cv2.morphologyEx(gray, cv2.MORPH_OPEN, rect5),
    "sobel_dx": lambda: cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3),
    "canny": lambda: cv2.Canny(gray, 50, 150),
    "equalize_hist": lambda: cv2.equalizeHist(gray),
    "harris": lambda: cv2.cornerHarris(gray, 2, 3, 0.04),
    "kmeans4_quarter": kmeans4,
    "filter2d_3x3": lambda: cv2.filter2D(rgb, -1, sharpen),
    "canny_100_200": lambda: cv2.Canny(gray, 100, 200),
    "lab_f32": lambda: cv2.cvtColor(rgb_f32, cv2.COLOR_RGB2Lab),
}
if args.ops:
    want = args.ops.split(",")
    unknown = [k for k in want if k not in OPS]
    if unknown:
        raise SystemExit(f"unknown ops {unknown}; known: {', '.join(OPS)}")
    OPS = {k: v for k, v in OPS.items() if k in want}


def median_ms(fn):
    fn()
    ts = []
    for _ in range(args.reps):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return sorted(ts)[len(ts) // 2]


if args.rust_json:
    rust = json.load(open(args.rust_json))
else:
    cmd = shlex.split(args.rust_cmd) if args.rust_cmd else [
        "cargo", "run", "-q", "--release", "-p", "imgproc", "--example", "bench", "--", args.image, "--json"]
    env = dict(os.environ, **({"IMGPROC_BENCH_ONLY": args.ops} if args.ops else {}))
    rust = json.loads(subprocess.check_output(cmd + ["--reps", str(args.reps)] if not args.rust_cmd else cmd, env=env))
cv = {k: median_ms(f) for k, f in OPS.items()}
print(f"opencv {cv2.__version__}, {cv2.getNumThreads()} threads, IPP {'on' if cv2.ipp.useIPP() else 'off'}; "
      f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
print(f"{'op':22} {'rust ms':>9} {'opencv ms':>10} {'ratio':>7}")
ratios = []
for k in OPS:
    r = rust.get(k)
    if r is None:
        print(f"{k:22} {'-':>9} {cv[k]:10.3f}")
        continue
    ratios.append(r / cv[k])
    print(f"{k:22} {r:9.3f} {cv[k]:10.3f} {r / cv[k]:7.2f}")
if ratios:
    print(f"{'geometric mean':22} {'':9} {'':10} {math.exp(sum(map(math.log, ratios)) / len(ratios)):7.2f}")
