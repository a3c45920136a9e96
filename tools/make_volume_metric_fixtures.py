#!/usr/bin/env python3
"""Writes MONAI's 3-D Dice, IoU and HD95 (in mm, with voxel spacing) for small random volumes,
and the per-slice Dice along the last axis (MONAI `compute_dice(ignore_empty=False)` on each
slice as a 2-D image: empty target and prediction give 1):
tests/fixtures/metrics/monai_3d.json, checked by crates/vlsm/tests/it/metrics_3d.rs.

Dev-only (numpy, torch, monai==1.5.1, scipy); tests read the committed JSON.
    python tools/make_volume_metric_fixtures.py   # from the repo root
"""
import json
import os
import warnings

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

warnings.filterwarnings("ignore")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
rng = np.random.default_rng(22)


def blobs(shape, n):
    m = np.zeros(shape, bool)
    g = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    for _ in range(n):
        c = [rng.uniform(s / 4, 3 * s / 4) for s in shape]
        r = [rng.uniform(1.2, max(2, s / 2.5)) for s in shape]
        m |= sum(((gi - ci) / ri) ** 2 for gi, ci, ri in zip(g, c, r)) <= 1
    return m


cases = []
for k in range(12):
    shape = tuple(int(v) for v in rng.integers(4, 18, size=3))
    spacing = [round(float(v), 3) for v in rng.uniform(0.4, 3.0, size=3)]
    if k == 0:
        spacing = [1.0, 1.0, 1.0]
    pred = blobs(shape, int(rng.integers(1, 3)))
    # The target: the prediction moved by up to 2 voxels per axis, plus or minus a blob.
    target = np.roll(pred, tuple(int(v) for v in rng.integers(-2, 3, size=3)), axis=(0, 1, 2))
    target = target | blobs(shape, 1) if k % 2 else target & ~blobs(shape, 1)
    if k == 1:
        pred[:] = False
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    t = torch.from_numpy(target[None, None].astype(np.float32))
    hd = compute_hausdorff_distance(p, t, percentile=95, spacing=spacing).item()
    # Slices along the last axis as a batch of 2-D images.
    ps, ts = p[0].permute(3, 0, 1, 2), t[0].permute(3, 0, 1, 2)
    slice_dice = [float(v) for v in compute_dice(ps, ts, ignore_empty=False).flatten()]
    cases.append({
        "shape": list(shape),  # x, y, z; data below x fastest
        "spacing": spacing,
        "pred": "".join("1" if v else "0" for v in pred.ravel(order="F")),
        "target": "".join("1" if v else "0" for v in target.ravel(order="F")),
        "dice": compute_dice(p, t, ignore_empty=False).item(),
        "iou": compute_iou(p, t, ignore_empty=False).item(),
        "hd95": None if not np.isfinite(hd) else hd,
        "slice_dice": slice_dice,
    })
os.makedirs(os.path.join(ROOT, "tests", "fixtures", "metrics"), exist_ok=True)
with open(os.path.join(ROOT, "tests", "fixtures", "metrics", "monai_3d.json"), "w") as f:
    json.dump(cases, f, indent=0)
print(len(cases), "cases")
