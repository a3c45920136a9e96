"""examples/ray_segment.py on a local Ray instance: the masks are the CLI's, the manifest lists
every (image, prompt) with its area."""

import csv
import subprocess
import sys

import numpy as np
import pytest

from conftest import EXAMPLES, REPO, TINY_CLIPSEG, TINY_IMAGES, read_png

ray = pytest.importorskip("ray", reason="ray is in bindings/python/tests/requirements.txt")


def test_ray_example_writes_the_clis_masks(cli, tmp_path):
    prompts = ["polyp", "a dark region"]
    out = tmp_path / "ray"
    r = subprocess.run(
        [sys.executable, REPO / "examples/ray_segment.py", TINY_IMAGES, "--model", TINY_CLIPSEG, "--out", out,
         "-p", prompts[0], "-p", prompts[1], "--actors", "2", "--cpus-per-actor", "1", "--batch", "2",
         "--num-cpus", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    # A folder: every image in it (masks and visual prompts included) is segmented.
    inputs = sorted(p for p in TINY_IMAGES.iterdir() if p.suffix == ".png")
    cli_out = tmp_path / "cli"
    args = ["segment", *inputs, "--model", TINY_CLIPSEG, "--out", cli_out]
    for p in prompts:
        args += ["-p", p]
    cli(*args)
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(rows) == len(inputs) * len(prompts)
    for row in rows:
        mine = read_png(out / row["mask"])
        assert mine.tobytes() == read_png(cli_out / row["mask"]).tobytes(), row
        assert int(row["area"]) == int((mine == 255).sum())
    assert {r["prompt"] for r in rows} == set(prompts)


def test_ray_example_on_the_examples_with_the_builtin_model(cli, tmp_path):
    out = tmp_path / "ray"
    prompt = "one medium orange round polyp, located in center of the image"
    r = subprocess.run(
        [sys.executable, REPO / "examples/ray_segment.py", *EXAMPLES, "--out", out, "-p", prompt,
         "--actors", "1", "--cpus-per-actor", "2", "--num-cpus", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    cli("segment", *EXAMPLES, "-p", prompt, "--out", tmp_path / "cli")
    for p in EXAMPLES:
        a, b = read_png(out / f"{p.stem}.mask.png"), read_png(tmp_path / "cli" / f"{p.stem}.mask.png")
        assert np.array_equal(a, b), p
