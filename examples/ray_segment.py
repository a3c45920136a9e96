"""Batch segmentation with Ray Data: one vlsm.Segmenter per actor, on one machine or a cluster.

    python examples/ray_segment.py IMAGES_DIR_OR_FILES... --prompt "polyp" --out out/ \
        [--model DIR] [--actors 2] [--cpus-per-actor 1] [--batch 8] [--address auto]

Reads the images' paths with ray.data, runs ``map_batches`` with a callable class that loads the
model once per actor (an actor pool of ``--actors``, each reserving ``--cpus-per-actor`` CPUs and
running its model on that many threads), writes ``<stem>.mask.png`` (``<stem>.<k>.mask.png``
with several prompts: the names and pixels ``vlsm segment`` writes) into ``--out`` and a
manifest ``manifest.csv`` of (image, prompt, area, mask). The images are decoded by vlsm itself,
as the CLI decodes them, so the masks are the CLI's.

Without ``--address`` it starts a local Ray instance with ``--num-cpus`` CPUs; with
``--address auto`` it joins the cluster this machine belongs to (``ray start --head`` on one node,
``ray start --address HEAD:6379`` on the others; see docs/python.md). On a cluster, the input
and output paths must be on storage every node sees (NFS, a shared volume).
"""

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import ray

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def image_paths(inputs):
    """Folders (their image files, sorted) and files, in order; absolute."""
    out = []
    for i in inputs:
        p = Path(i)
        if p.is_dir():
            out += sorted(q.resolve() for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
        else:
            out.append(p.resolve())
    stems = {}
    for p in out:
        if p.stem in stems:
            sys.exit(f"error: {stems[p.stem]} and {p} would both be written as {p.stem}.mask.png; rename one")
        stems[p.stem] = p
    return [str(p) for p in out]


class SegmentBatch:
    """The map_batches callable: one model per actor, loaded once, reused for every batch."""

    def __init__(self, model, prompts, threads, out):
        import vlsm

        self.vlsm = vlsm
        self.seg = vlsm.Segmenter(model, threads=threads)
        self.prompts = prompts
        self.out = Path(out)

    def __call__(self, batch):
        paths = [str(p) for p in batch["path"]]
        rows = {"image": [], "prompt": [], "area": [], "mask": []}
        for path, r in zip(paths, self.seg.segment_batch(paths, self.prompts)):
            stem = Path(path).stem
            for k, (prompt, area) in enumerate(zip(r.prompts, r.areas)):
                name = f"{stem}.mask.png" if len(r.prompts) == 1 else f"{stem}.{k}.mask.png"
                self.vlsm.write_mask(self.out / name, r.masks[k])
                rows["image"].append(path)
                rows["prompt"].append(prompt)
                rows["area"].append(area)
                rows["mask"].append(name)
        return rows


def write_manifest(path, rows):
    """manifest.csv, atomically (a temp file in the same folder, then a rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest.", suffix=".csv")
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "prompt", "area", "mask"])
        for r in rows:
            w.writerow([r["image"], r["prompt"], r["area"], r["mask"]])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    ap.add_argument("--prompt", "-p", action="append", required=True, help="a text prompt; repeat for several")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    ap.add_argument("--actors", type=int, default=2, help="actors in the pool (one model each)")
    ap.add_argument("--cpus-per-actor", type=int, default=1, help="CPUs each actor reserves and its model's threads")
    ap.add_argument("--batch", type=int, default=8, help="images per map_batches call")
    ap.add_argument("--address", default=None, help="a running cluster ('auto'); default: start a local instance")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local instance (default: all)")
    a = ap.parse_args(argv)

    paths = image_paths(a.inputs)
    if not paths:
        sys.exit("error: no images given")
    a.out.mkdir(parents=True, exist_ok=True)
    out = a.out.resolve()
    if a.address:
        ray.init(address=a.address)
    else:
        ray.init(num_cpus=a.num_cpus, include_dashboard=False)
    t0 = time.perf_counter()
    ds = ray.data.from_items([{"path": p} for p in paths])
    ds = ds.map_batches(
        SegmentBatch,
        fn_constructor_kwargs={"model": a.model, "prompts": a.prompt, "threads": a.cpus_per_actor, "out": str(out)},
        concurrency=a.actors,
        num_cpus=a.cpus_per_actor,
        batch_size=a.batch,
    )
    rows = sorted(ds.take_all(), key=lambda r: (paths.index(r["image"]), r["mask"]))
    seconds = time.perf_counter() - t0
    write_manifest(out / "manifest.csv", rows)
    print(f"{len(paths)} image(s) x {len(a.prompt)} prompt(s) in {seconds:.1f} s "
          f"({len(paths) / seconds:.2f} images/s); wrote {out}", file=sys.stderr)
    ray.shutdown()


if __name__ == "__main__":
    main()
