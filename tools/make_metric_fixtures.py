#!/usr/bin/env python3
"""Writes the MONAI reference values that crates/vlsm/tests/it/metrics_monai.rs checks.

Dev-only (needs numpy, torch, monai, scipy); tests read the committed JSON.
    python tools/make_metric_fixtures.py   # from the repo root
"""
import json
import os
import warnings

import numpy as np
import torch
from monai.losses import DiceLoss
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

warnings.filterwarnings("ignore")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
rng = np.random.default_rng(1234)


def blobs(h, w, n):
    m = np.zeros((h, w), bool)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(n):
        cy, cx = rng.uniform(-2, h + 2), rng.uniform(-2, w + 2)
        r = rng.uniform(1, max(2, min(h, w) / 3))
        if rng.random() < 0.5:
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            m |= (abs(yy - cy) <= r) & (abs(xx - cx) <= r * rng.uniform(0.3, 2))
    return m


def noise(h, w, p):
    return rng.random((h, w)) < p


def monai_scores(pred, gt):
    p = torch.from_numpy(pred.astype(np.float32))[None, None]
    g = torch.from_numpy(gt.astype(np.float32))[None, None]
    dice = compute_dice(p, g, include_background=True, ignore_empty=False).item()
    iou = compute_iou(p, g, include_background=True, ignore_empty=False).item()
    hd = compute_hausdorff_distance(p, g, include_background=True, percentile=95).item()
    hd100 = compute_hausdorff_distance(p, g, include_background=True).item()
    fin = lambda v: v if np.isfinite(v) else None  # nan/inf -> null: our None
    return dice, iou, fin(hd), fin(hd100)


def enc(m):
    return ["".join("1" if v else "0" for v in row) for row in m]


cases = []


def add(name, pred, gt):
    dice, iou, hd, hd100 = monai_scores(pred, gt)
    cases.append({"name": name, "pred": enc(pred), "target": enc(gt),
                  "dice": dice, "iou": iou, "hd95": hd, "hd100": hd100})


z = np.zeros((12, 10), bool)
one = z.copy(); one[4:7, 3:8] = True
px = z.copy(); px[0, 0] = True
full = np.ones((12, 10), bool)
add("both_empty", z, z)
add("empty_target_fp", one, z)
add("empty_pred_fn", z, one)
add("identical", one, one)
add("single_pixels", px, np.roll(px, (5, 7), (0, 1)))
add("full_vs_block", full, one)
add("full_vs_full", full, full)
for i, (h, w) in enumerate([(16, 16), (23, 37), (48, 64), (64, 48), (31, 29), (40, 40)]):
    gt = blobs(h, w, rng.integers(1, 4))
    add(f"blobs_{i}", blobs(h, w, rng.integers(1, 4)), gt)
    # a prediction near the target: the target with a noisy boundary
    add(f"near_{i}", gt ^ (noise(h, w, 0.05) & blobs(h, w, 3)), gt)
    add(f"speckle_{i}", noise(h, w, 0.2), gt)

soft = []
for i, (n, kind) in enumerate([(50, "random"), (64, "empty_target"), (30, "zeros"), (100, "binary")]):
    p = rng.random(n).astype(np.float32)
    g = (rng.random(n) < 0.4).astype(np.float32)
    if kind == "empty_target":
        g[:] = 0
    if kind == "zeros":
        p[:] = 0; g[:] = 0
    if kind == "binary":
        p = (p > 0.5).astype(np.float32)
    loss = DiceLoss(reduction="none")(torch.from_numpy(p)[None, None], torch.from_numpy(g)[None, None])
    soft.append({"name": kind, "probs": p.tolist(), "target": g.tolist(), "loss": float(loss.flatten()[0])})

out = {"generator": "tools/make_metric_fixtures.py", "monai": __import__("monai").__version__,
       "cases": cases, "soft_dice": soft}
path = os.path.join(ROOT, "tests/fixtures/metrics/monai_cases.json")
with open(path, "w") as f:
    json.dump(out, f, indent=0)
print(path, len(cases), "cases")

