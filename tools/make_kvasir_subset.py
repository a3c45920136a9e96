#!/usr/bin/env python3
"""A small kvasir_polyp subset in the medvlsm layout for quick training runs (stdlib only).

    python3 tools/make_kvasir_subset.py [--data ../shared/data/kvasir_polyp] [--out ../runs/data/kvasir_subset]
        [--train 40] [--val 10] [--test 10]

images/ and masks/ are symlinks to the source; anns/{train,val,test}.json hold the first N records
of each split. Nothing is copied.
"""
import argparse
import json
import os
import sys


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(here, "../../shared/data/kvasir_polyp"))
    ap.add_argument("--out", default=os.path.join(here, "../../runs/data/kvasir_subset"))
    ap.add_argument("--train", type=int, default=40)
    ap.add_argument("--val", type=int, default=10)
    ap.add_argument("--test", type=int, default=10)
    a = ap.parse_args()
    src = os.path.abspath(a.data)
    if not os.path.isfile(os.path.join(src, "anns", "train.json")):
        sys.exit(f"{src}: not a medvlsm-layout dataset (no anns/train.json)")
    os.makedirs(os.path.join(a.out, "anns"), exist_ok=True)
    for sub in ("images", "masks"):
        link = os.path.join(a.out, sub)
        if not os.path.islink(link):
            os.symlink(os.path.join(src, sub), link)
    for split, n in (("train", a.train), ("val", a.val), ("test", a.test)):
        with open(os.path.join(src, "anns", f"{split}.json")) as f:
            recs = json.load(f)
        tmp = os.path.join(a.out, "anns", f".{split}.json.tmp")
        with open(tmp, "w") as f:
            json.dump(recs[:n], f)
        os.replace(tmp, os.path.join(a.out, "anns", f"{split}.json"))
        print(f"{split}: {min(n, len(recs))} records")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
