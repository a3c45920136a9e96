#!/usr/bin/env python3
"""Time ViT-B/16 and Swin-T classifiers (random weights, 1000 labels) in transformers (PyTorch)
and `vlsm bench vit|swin` in the same run.

Dev-only; tests never need it.  Usage:
    python tools/bench_vit_swin.py [--size 224] [--batch 1] [--threads 2] [--reps 10]
                                   [--vlsm target/release/vlsm] [--json]
What is timed matches `vlsm bench vit|swin`: one forward pass to logits, per image (total time /
batch), median of --reps runs after a warm-up. The two implementations run one after the other,
never concurrently, each with --threads threads.
"""
import argparse
import json
import os
import statistics
import subprocess
import time


def parse():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--vlsm", default="target/release/vlsm")
    ap.add_argument("--models", default="vit,swin")
    ap.add_argument("--json", action="store_true")
    return ap.parse_args()


def timeit(fn, reps, batch):
    fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) / batch)
    return statistics.median(out), out


def main():
    a = parse()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import torch
    from transformers import SwinConfig, SwinForImageClassification, ViTConfig, ViTForImageClassification

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    builders = {
        "vit": lambda: ViTForImageClassification(ViTConfig(num_labels=1000)),
        "swin": lambda: SwinForImageClassification(SwinConfig(num_labels=1000)),
    }
    results = []
    for name in a.models.split(","):
        model = builders[name]().eval()
        pv = torch.randn(a.batch, 3, a.size, a.size)
        kw = {"interpolate_pos_encoding": True} if name == "vit" else {}
        with torch.inference_mode():
            med, runs = timeit(lambda: model(pixel_values=pv, **kw).logits, a.reps, a.batch)
        results.append({"bench": name, "impl": "pytorch", "version": torch.__version__, "threads": a.threads,
                        "size": a.size, "batch": a.batch, "median_s_per_image": med, "runs_s_per_image": runs})
        del model
        cmd = [a.vlsm, "--threads", str(a.threads), "bench", name, "--size", str(a.size), "--batch",
               str(a.batch), "--reps", str(a.reps), "--json"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    if a.json:
        print(json.dumps(results))
        return
    for r in results:
        print(f"{r['bench']:5} {r['impl']:8} {a.size}px batch {a.batch} threads {r['threads']}: "
              f"median {r['median_s_per_image']:.4f} s/image")
    for name in a.models.split(","):
        t = {r["impl"]: r["median_s_per_image"] for r in results if r["bench"] in (name, name + "-b16", name + "-t")}
        if "pytorch" in t and "vlsm" in t:
            print(f"{name}: vlsm / pytorch = {t['vlsm'] / t['pytorch']:.2f}")


if __name__ == "__main__":
    main()
