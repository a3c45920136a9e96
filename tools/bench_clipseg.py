#!/usr/bin/env python3
"""Time full-size CLIPSeg (ViT-B/16, reduce_dim 64, complex head, random weights) in
transformers (PyTorch) and onnxruntime, and `vlsm bench clipseg` in the same run.

Dev-only; tests never need it.  Usage:
    python tools/bench_clipseg.py [--size 352] [--batch 1] [--threads 2] [--reps 5]
                                  [--vlsm target/release/vlsm] [--json]
What is timed matches `vlsm bench clipseg`: text encoder on one ~20-token prompt + vision
encoder + decoder, per image (total time / batch), median of --reps runs after a warm-up.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def parse():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=352)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--vlsm", default="target/release/vlsm")
    ap.add_argument("--skip-onnx", action="store_true")
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
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = CLIPSegConfig(
        vision_config={"patch_size": 16},
        use_complex_transposed_convolution=True,
        reduce_dim=64,
        extract_layers=[3, 6, 9],
    )
    model = CLIPSegForImageSegmentation(cfg).eval()
    pv = torch.randn(a.batch, 3, a.size, a.size)
    ids = torch.tensor([[49406] + [320 + i for i in range(18)] + [49407]] * a.batch)
    results = {}

    with torch.inference_mode():
        med, runs = timeit(lambda: model(input_ids=ids, pixel_values=pv).logits, a.reps, a.batch)
    results["pytorch"] = {"median_s_per_image": med, "runs": runs, "version": torch.__version__}

    if not a.skip_onnx:
        import onnxruntime as ort

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, pixel_values):
                return self.m(input_ids=input_ids, pixel_values=pixel_values).logits

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "clipseg.onnx")
            torch.onnx.export(Wrap(model), (ids, pv), path, input_names=["input_ids", "pixel_values"],
                              output_names=["logits"], opset_version=17, dynamo=False)
            so = ort.SessionOptions()
            so.intra_op_num_threads = a.threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            feed = {"input_ids": ids.numpy(), "pixel_values": pv.numpy()}
            med, runs = timeit(lambda: sess.run(None, feed), a.reps, a.batch)
        results["onnxruntime"] = {"median_s_per_image": med, "runs": runs, "version": ort.__version__}

    if a.vlsm and os.path.exists(a.vlsm):
        out = subprocess.run(
            [a.vlsm, "--threads", str(a.threads), "bench", "clipseg", "--size", str(a.size), "--batch",
             str(a.batch), "--reps", str(a.reps), "--json"],
            check=True, capture_output=True, text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        results["vlsm"] = {"median_s_per_image": r["median_s_per_image"], "runs": r["runs_s_per_image"]}

    if a.json:
        print(json.dumps({"size": a.size, "batch": a.batch, "threads": a.threads, "results": results}))
    else:
        print(f"CLIPSeg ViT-B/16 rd64 @{a.size}px batch {a.batch} threads {a.threads}")
        for k, v in results.items():
            print(f"  {k:12s} {v['median_s_per_image']:.3f} s/image")


if __name__ == "__main__":
    sys.exit(main())
