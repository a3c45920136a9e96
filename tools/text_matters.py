#!/usr/bin/env python3
"""Does the text matter? Segments the test images of each dataset with the right prompt and
with the other modality's prompt, and prints the mean predicted area (fraction of the image).

    python tools/text_matters.py [--vlsm target/release/vlsm] [--model DIR] [--data ../shared/data]
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image

PROMPTS = {"polyp": "polyp", "tumor": "Tumor in the breast ultrasound image."}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vlsm", default="target/release/vlsm")
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default="../shared/data")
    a = ap.parse_args()
    for ds, right in [("busi", "tumor"), ("kvasir_polyp", "polyp"), ("clinicdb_polyp", "polyp")]:
        recs = json.load(open(os.path.join(a.data, ds, "anns", "test.json")))
        imgs = [os.path.join(a.data, ds, "images", r["img_name"]) for r in recs]
        with tempfile.TemporaryDirectory() as out:
            cmd = [a.vlsm, "segment", *imgs, "-p", PROMPTS["polyp"], "-p", PROMPTS["tumor"], "--out", out]
            if a.model:
                cmd += ["--model", a.model]
            subprocess.run(cmd, check=True, capture_output=True)
            area = {}
            for k, key in enumerate(["polyp", "tumor"]):
                fr = []
                for p in imgs:
                    stem = os.path.splitext(os.path.basename(p))[0]
                    m = np.asarray(Image.open(os.path.join(out, f"{stem}.{k}.mask.png"))) > 0
                    fr.append(m.mean())
                area[key] = float(np.mean(fr))
        gt = float(np.mean([(np.asarray(Image.open(os.path.join(a.data, ds, "masks", r["mask_name"]))) > 127).mean()
                            for r in recs]))
        print(f"{ds:15s} n={len(imgs):3d}  mean area with '{PROMPTS[right][:30]}' (right): {area[right]:.4f}  "
              f"with the other prompt: {area['tumor' if right == 'polyp' else 'polyp']:.4f}  (ground truth {gt:.4f})")


if __name__ == "__main__":
    main()
