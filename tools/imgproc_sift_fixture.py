#!/usr/bin/env python3
"""SIFT fixture for crates/imgproc/tests/it/sift.rs: a gray crop of a Kvasir image, rotated and
scaled copies of it (PNG), and OpenCV's count of correct ratio-test matches for each pair.

Usage: python tools/imgproc_sift_fixture.py [--out tests/fixtures/imgproc/sift]
A match is correct when the query keypoint mapped by the known 2x3 transform lies within
TOL pixels of the train keypoint.
"""
import argparse
import json
import os

import cv2
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--out", default="tests/fixtures/imgproc/sift")
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
TOL = 3.0
SRC = "../shared/data/kvasir_polyp/images/cju0qkwl35piu0993l0dewei2.jpg"
here = os.path.dirname(os.path.abspath(__file__))
g = cv2.imread(os.path.join(here, "..", SRC), cv2.IMREAD_GRAYSCALE)
if g is None:
    g = cv2.imread("/work/shared/data/kvasir_polyp/images/cju0qkwl35piu0993l0dewei2.jpg", cv2.IMREAD_GRAYSCALE)
h0, w0 = g.shape
crop = np.ascontiguousarray(g[h0 // 2 - 120:h0 // 2 + 120, w0 // 2 - 160:w0 // 2 + 160])
cv2.imwrite(os.path.join(args.out, "base.png"), crop)
h, w = crop.shape
sift = cv2.SIFT_create()
kq, dq = sift.detectAndCompute(crop, None)
bf = cv2.BFMatcher(cv2.NORM_L2)


def count(img, m):
    kt, dt = sift.detectAndCompute(img, None)
    good = [a for a, b in bf.knnMatch(dq, dt, k=2) if a.distance < 0.75 * b.distance]
    ok = 0
    for mt in good:
        x, y = kq[mt.queryIdx].pt
        px, py = m[0] @ [x, y, 1], m[1] @ [x, y, 1]
        tx, ty = kt[mt.trainIdx].pt
        ok += (px - tx) ** 2 + (py - ty) ** 2 <= TOL * TOL
    return len(kt), len(good), ok


cases = []
for name, angle, scale in [("rot30", 30, 1.0), ("scale07", 0, 0.7), ("rot45_s08", 45, 0.8), ("rot90", 90, 1.0)]:
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    img = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR)
    cv2.imwrite(os.path.join(args.out, name + ".png"), img)
    nk, nm, ok = count(img, m)
    cases.append({"image": name + ".png", "m": m.flatten().tolist(), "opencv_keypoints": nk,
                  "opencv_matches": nm, "opencv_correct": int(ok)})
meta = {"tol": TOL, "ratio": 0.75, "base_keypoints": len(kq), "cases": cases,
        "base_first": [{"x": k.pt[0], "y": k.pt[1], "size": k.size, "angle": k.angle, "octave": k.octave}
                       for k in sorted(kq, key=lambda k: (-k.response))[:10]]}
json.dump(meta, open(os.path.join(args.out, "sift.json"), "w"), indent=1)
print(json.dumps({k: v for k, v in meta.items() if k != "base_first"}, indent=1))
